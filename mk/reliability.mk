# Reliability: fuzz, faults and shutdown figures (tests/reliability/, docs/reliability.md).
# Short versions of all of these run in `make test`.
FUZZ_EXAMPLES ?= 350
FUZZ_LOG := .serving/fuzz.log

.PHONY: fuzz reliability-figures

fuzz: $(VENV_STAMP) ## long schemathesis fuzz (>= 10,000 requests, every route); prints the figures
	@mkdir -p .serving
	@echo ">> fuzzing ($(FUZZ_EXAMPLES) examples per operation and mode; log: $(FUZZ_LOG))"
	@$(PY) -m pytest tests/reliability/test_fuzz.py -q -s -p no:cacheprovider \
	  --fuzz-examples=$(FUZZ_EXAMPLES) > $(FUZZ_LOG) 2>&1; status=$$?; \
	  sed -n '/FUZZ FIGURES/,/^$$/p' $(FUZZ_LOG); tail -n 3 $(FUZZ_LOG); \
	  requests=$$(awk '/^  requests:/{print $$2}' $(FUZZ_LOG)); \
	  test $$status -eq 0 && test "$${requests:-0}" -ge 10000 || \
	  { echo "fuzz failed or ran fewer than 10,000 requests (see $(FUZZ_LOG))"; exit 1; }

reliability-figures: $(VENV_STAMP) ## fault, slow-client and shutdown tests with their figures
	$(PY) -m pytest tests/reliability -m "not e2e" -q -s -p no:cacheprovider \
	  --deselect tests/reliability/test_fuzz.py 2>&1 | grep -E '^FIGURE|passed|failed'
