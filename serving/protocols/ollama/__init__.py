"""The Ollama dialect, translated onto vLLM's OpenAI API.

Read in this order: `routes` (/api/generate, /api/chat: validate, translate, call, translate
back), `types` (the request bodies), `translate` (Ollama request -> OpenAI request),
`stream` (vLLM's SSE -> Ollama NDJSON), then the helpers `context` (the `context` token
array), `logprobs`, `modelfile` (/api/create presets), `models` (names, /api/tags, /api/show
payloads), `model_routes` (the model-management routes) and `embeddings`. Errors in
Ollama's shape (`{"error": "..."}`).
"""
