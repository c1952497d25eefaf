# Hardware plan and doctor (serving/launcher/{hardware,doctor}.py, serving/launcher/plan/).
# make plan GPU=rtx3090 [GPUS=2] [MODEL=gpt-oss-120b] [MAX_MODEL_LEN=65536]
GPU ?=
GPUS ?=
MODEL ?=
MAX_MODEL_LEN ?=
PLAN_ARGS = $(if $(GPU),--gpu $(GPU)) $(if $(GPUS),--gpus $(GPUS)) \
	$(if $(MODEL),--model $(MODEL)) $(if $(MAX_MODEL_LEN),--max-model-len $(MAX_MODEL_LEN))

.PHONY: plan plan-all doctor test-plan

plan: $(VENV_STAMP) ## vLLM plan for this host or GPU=<preset> (memory table + command)
	$(PY) -m serving plan $(PLAN_ARGS)

plan-all: $(VENV_STAMP) ## what fits on every GPU preset (gpt-oss-20b, full context)
	@for gpu in rtx4080 rtx3090 rtx4090 a100-40g l40s a100-80g h100 h200; do \
	  echo "== $$gpu"; $(PY) -m serving plan --gpu $$gpu | grep -E 'sequences at once|REFUSED' \
	  | cut -c1-160 || true; \
	done

doctor: $(VENV_STAMP) ## detected hardware and whether the plan fits, with advice
	$(PY) -m serving doctor

test-plan: $(VENV_STAMP) ## unit tests of hardware detection, plan and doctor (no engine)
	$(PY) -m pytest -q tests/launcher/test_plan.py tests/launcher/test_hardware.py \
		tests/launcher/test_doctor.py tests/launcher/test_topology.py \
		tests/launcher/test_calibration.py tests/launcher/test_vllm_log.py
