"""The API dialects the sidecar speaks: one package each, `openai`, `anthropic`, `ollama`.

Each package has thin routes, pure translation, and its own error shape (its router's
`Dialect`). Protocol code depends on the sidecar only through `serving.sidecar.interface`
(a typed `Call` handed in by a FastAPI dependency) and reaches vLLM only through
`serving.upstream`. Shared by the dialects: `names` (the model names and user-made
aliases/presets) and `embedding_engine` (the companion embedding engine).
"""
