# Benchmarks (benchmarks/, see benchmarks/README.md).
#
#   make bench                 sweep concurrency levels against the running stack, write a report
#   make bench BASE_URL=https://gw.example.com API_KEY=sk-... CONCURRENCY=1,4,16 STEP_SECONDS=60
#   make bench RATES=0.5,1,2   constant arrival rates (req/s) instead of concurrency levels
#   make bench-overhead        direct-to-vLLM vs sidecar (OpenAI and Ollama routes), interleaved
#   make bench-overhead FAKE=1 the same against a fake upstream: the proxy's own cost
#   make bench-overhead PROXIES="other=http://127.0.0.1:9000"   compare another gateway too
#
# API_KEY empty: a key for user "bench" (chat,models) is created in the local key file.

BASE_URL ?= http://127.0.0.1:8000
API_KEY ?=
BENCH_API ?= openai-chat-stream
WORKLOAD ?= chat
CONCURRENCY ?= 1,2,4,8,16,32,64
RATES ?=
STEP_SECONDS ?= 30
DRAIN_SECONDS ?= 60
SEED ?= 1
SLO_E2E_S ?= 4
# vLLM's own counters, recorded next to ours; only meaningful for the local stack.
VLLM_METRICS_URL ?= $(if $(filter http://127.0.0.1:8000,$(BASE_URL)),http://127.0.0.1:8001/metrics,)
RESULTS_DIR ?= benchmarks/results
BENCH_ARGS ?=

DIRECT_URL ?= http://127.0.0.1:8001
PROXY_URL ?= $(BASE_URL)
PROXIES ?=
ROUNDS ?= 3
OVERHEAD_STEP_SECONDS ?= 10
LATENCY_USERS ?= 1
THROUGHPUT_USERS ?= 32
FAKE ?=
OVERHEAD_ARGS ?=

# The key is resolved in the recipe's shell, so it is created only when a bench target runs.
BENCH_KEY = $$( [ -n "$(API_KEY)" ] && echo "$(API_KEY)" || \
	$(PY) -m serving keys create --user bench --permissions chat,models 2>/dev/null)

.PHONY: bench bench-overhead

bench: $(VENV_STAMP) ## load sweep + HTML report in benchmarks/results/ (BASE_URL, API_KEY, CONCURRENCY, STEP_SECONDS)
	@key="$(BENCH_KEY)"; test -n "$$key" || { echo "no API key: pass API_KEY=..." >&2; exit 2; }; \
	$(PY) -m benchmarks run --base-url "$(BASE_URL)" --api-key "$$key" --api $(BENCH_API) \
		--workload $(WORKLOAD) $(if $(RATES),--rates $(RATES),--concurrency $(CONCURRENCY)) \
		--step-seconds $(STEP_SECONDS) --drain-seconds $(DRAIN_SECONDS) --seed $(SEED) \
		--slo-e2e-s $(SLO_E2E_S) --metrics-url "$(VLLM_METRICS_URL)" --results-dir $(RESULTS_DIR) \
		$(BENCH_ARGS)

bench-overhead: $(VENV_STAMP) ## proxy overhead: direct vs sidecar routes (FAKE=1: fake upstream)
ifeq ($(FAKE),)
	@key="$(BENCH_KEY)"; test -n "$$key" || { echo "no API key: pass API_KEY=..." >&2; exit 2; }; \
	$(PY) -m benchmarks overhead --direct-url "$(DIRECT_URL)" --proxy-url "$(PROXY_URL)" \
		--api-key "$$key" $(foreach p,$(PROXIES),--proxy $(p)) --rounds $(ROUNDS) \
		--step-seconds $(OVERHEAD_STEP_SECONDS) --latency-users $(LATENCY_USERS) \
		--throughput-users $(THROUGHPUT_USERS) --workload $(WORKLOAD) --results-dir $(RESULTS_DIR) \
		$(OVERHEAD_ARGS)
else
	$(PY) -m benchmarks overhead --with-fake-upstream $(foreach p,$(PROXIES),--proxy $(p)) \
		--rounds $(ROUNDS) --step-seconds $(OVERHEAD_STEP_SECONDS) --latency-users $(LATENCY_USERS) \
		--throughput-users $(THROUGHPUT_USERS) --workload $(WORKLOAD) --results-dir $(RESULTS_DIR) \
		$(OVERHEAD_ARGS)
endif

# Relay cost per token (benchmarks/relay.py): paced fake vLLM, wrk, the sidecar with 1 and
# RELAY_WORKERS workers, nginx as the C reference; interleaved rounds; results + table.
RELAY_CONCURRENCY ?= 64,256
RELAY_ROUNDS ?= 3
RELAY_SECONDS ?= 20
RELAY_WORKERS ?= 2
RELAY_ARGS ?=

.PHONY: bench-relay gpu-check bench-tools

bench-tools: ## wrk and nginx (Debian) for bench-relay
	@command -v wrk >/dev/null && command -v nginx >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx >/dev/null; \
	  else echo "bench-relay needs wrk (and nginx for the reference): apt-get install wrk nginx"; exit 2; fi; }

bench-relay: $(VENV_STAMP) bench-tools ## relay CPU µs per token and delivered tok/s: sidecar x1/xN vs direct and nginx
	$(PY) -m benchmarks.relay --concurrency $(RELAY_CONCURRENCY) --rounds $(RELAY_ROUNDS) \
		--duration-s $(RELAY_SECONDS) --workers $(RELAY_WORKERS) --results-dir $(RESULTS_DIR) $(RELAY_ARGS)

gpu-check: $(VENV_STAMP) ## on a lent GPU (no internet): plan vs vLLM memory, short sweep, overhead (< 8 min)
	$(PY) -m benchmarks.gpu_check --budget-s 470 --results-dir $(RESULTS_DIR)
