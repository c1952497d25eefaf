# Reliability: fuzz, faults and shutdown figures (tests/reliability/, docs/reliability.md).
# Short versions of all of these run in `make test`.
FUZZ_EXAMPLES ?= 350
FUZZ_LOG := .serving/fuzz.log
SOAK_SECONDS ?= 180
SOAK_LOG := .serving/soak.log

.PHONY: fuzz reliability-figures soak body-guard-cost

fuzz: $(VENV_STAMP) ## long schemathesis fuzz (>= 10,000 requests, every route); prints the figures
	@mkdir -p .serving
	@echo ">> fuzzing ($(FUZZ_EXAMPLES) examples per operation and mode; log: $(FUZZ_LOG))"
	@$(PY) -m pytest tests/reliability/test_fuzz.py -q -s -p no:cacheprovider \
	  --fuzz-examples=$(FUZZ_EXAMPLES) > $(FUZZ_LOG) 2>&1; status=$$?; \
	  sed -n '/FUZZ FIGURES/,/^$$/p' $(FUZZ_LOG); tail -n 3 $(FUZZ_LOG); \
	  requests=$$(awk '/^  requests:/{print $$2}' $(FUZZ_LOG)); \
	  test $$status -eq 0 && test "$${requests:-0}" -ge 10000 || \
	  { echo "fuzz failed or ran fewer than 10,000 requests (see $(FUZZ_LOG))"; exit 1; }
	@echo ">> malformed-body shapes and mutations ($(FUZZ_EXAMPLES) mutations per route)"
	@$(PY) -m pytest tests/reliability/test_fuzz_shapes.py -q -p no:cacheprovider \
	  --fuzz-examples=$(FUZZ_EXAMPLES)

# Its own stack (starts vLLM: about 2 min on a CPU host), SOAK_SECONDS of mixed load, one
# engine SIGKILL and restart, one key revoked; bounded (each wait has a deadline).
soak: $(VENV_STAMP) test-services ## soak: mixed load, disconnects, engine restart, key revoked; prints the figures
	@mkdir -p .serving
	@echo ">> soak: $(SOAK_SECONDS) s of load plus the engine restart (log: $(SOAK_LOG))"
	@$(PY) -m pytest tests/reliability/test_soak.py -m e2e -q -s -p no:cacheprovider \
	  --soak-seconds=$(SOAK_SECONDS) --soak-kill-engine > $(SOAK_LOG) 2>&1; status=$$?; \
	  sed -n '/SOAK FIGURES/,/^$$/p' $(SOAK_LOG); tail -n 3 $(SOAK_LOG); exit $$status

reliability-figures: $(VENV_STAMP) ## fault, slow-client and shutdown tests with their figures
	$(PY) -m pytest tests/reliability -m "not e2e" -q -s -p no:cacheprovider \
	  --deselect tests/reliability/test_fuzz.py 2>&1 | grep -E '^FIGURE|passed|failed'

body-guard-cost: $(VENV_STAMP) ## CPU µs of the body guard per body (4 MiB included), beside json.loads
	@$(PY) -m tests.reliability.body_guard_cost
