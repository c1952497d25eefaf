# Several replicas behind a router (docs/router.md).
#
#   make serve-replicas                 2 x (sidecar + vLLM) behind HAProxy on :8000, Redis
#   make serve-replicas REPLICAS=3 ROUTER_POLICY=roundrobin
#   make bench-prefix                   multi-turn shared-prefix workload: affinity vs round
#                                       robin (TTFT p50, prefix-cache hit rate) -> benchmarks/results/
#   make test-router                    router tests (fake replicas) + the 2-replica e2e
#   make k8s-router-config              re-render k8s/components/router/haproxy.cfg

REPLICAS ?= 2
ROUTER_POLICY ?= affinity

.PHONY: serve-replicas bench-prefix test-router test-router-services k8s-router-config

# HAProxy (the router) and redis-server (shared limits) come from Debian.
test-router-services:
	@missing=""; for p in haproxy redis-server; do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo ">> installing$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "error: install$$missing (apt-get install$$missing)"; exit 1; fi; fi

serve-replicas: $(VENV_STAMP) test-router-services ## N replicas behind the router (REPLICAS=2)
	$(PY) -m serving up --replicas $(REPLICAS) --router-policy $(ROUTER_POLICY)

bench-prefix: $(VENV_STAMP) test-router-services ## routing benchmark: affinity vs round robin
	$(PY) -m benchmarks.prefix_workload --results-dir $(RESULTS_DIR)

test-router: $(VENV_STAMP) test-router-services ## router tests incl. the 2-replica e2e
	SERVING_TEST_REPLICAS=1 $(PY) -m pytest tests/router tests/k8s/test_router_manifests.py $(PYTEST_ARGS)

k8s-router-config: $(VENV_STAMP)
	$(PY) -m serving.launcher.router_config > k8s/components/router/haproxy.cfg

# `make test` and `make test-unit` run the router tests too: install their programs first.
test test-unit test-e2e: test-router-services
