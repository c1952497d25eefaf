"""The Anthropic dialect: `/v1/messages` passed through to vLLM, which serves it itself
(`routes`, built on the OpenAI dialect's `forward`). Errors in Anthropic's shape."""
