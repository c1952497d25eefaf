# Smoke checkpoint (serving/smoke/): the tiny gpt-oss model CPU hosts serve.
# `make smoke` (in the Makefile) builds or reuses it; these targets check and serve it alone.
SMOKE_PORT ?= 8101

.PHONY: smoke-path smoke-test smoke-serve

smoke-path: $(VENV_STAMP) ## path of the smoke checkpoint (built first if missing)
	@$(PY) -m serving.smoke 2>/dev/null | tail -n 1

smoke-test: $(VENV_STAMP) ## unit tests of the smoke checkpoint recipe and tokenizer (no training)
	$(PY) -m pytest -q tests/smoke

smoke-serve: $(VENV_STAMP) ## vLLM CPU alone on the smoke checkpoint (SMOKE_PORT=8101), no sidecar
	VLLM_CPU_KVCACHE_SPACE=1 $(PY) -m vllm.entrypoints.openai.api_server --model "$$($(PY) -m serving.smoke | tail -n 1)" \
		--served-model-name gpt-oss-20b --host 127.0.0.1 --port $(SMOKE_PORT) \
		--max-model-len 8192 --enable-auto-tool-choice --tool-call-parser openai \
		--reasoning-parser openai_gptoss
