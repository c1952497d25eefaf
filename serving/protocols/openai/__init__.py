"""The OpenAI dialect: `/v1/chat/completions`, `/v1/completions`, `/v1/responses`,
`/v1/models` passed through to vLLM (`routes`, relayed by `stream`, normalised by `compat`)
and `/v1/embeddings` (`embeddings`, the companion engine). Errors in OpenAI's shape."""
