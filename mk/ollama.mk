# Ollama API (serving/protocols/ollama_*): unit tests, end-to-end tests, fixture capture.
OLLAMA_VLLM_URL ?= http://127.0.0.1:8101

.PHONY: test-ollama test-ollama-e2e ollama-fixtures

test-ollama: $(VENV_STAMP) ## Ollama translation + route unit tests (no engine)
	$(PY) -m pytest tests/protocols -k ollama -m "not e2e" $(PYTEST_ARGS)

test-ollama-e2e: $(VENV_STAMP) ## Ollama API on the real stack: official client + seed shapes
	$(PY) -m pytest tests/e2e -k ollama -m e2e $(PYTEST_ARGS)

ollama-fixtures: $(VENV_STAMP) ## re-capture vLLM streams for tests/protocols/data (OLLAMA_VLLM_URL=...)
	$(PY) -m tests.protocols.data.capture $(OLLAMA_VLLM_URL)
