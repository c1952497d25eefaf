"""The companion embedding engine's plan."""

from __future__ import annotations

from serving.config import EngineSettings
from serving.launcher.embedding_plan import build_embedding_plan, packaged_model_dir
from serving.launcher.hardware import Hardware, preset_hardware


def argv_flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_cpu_serves_the_packaged_minilm_with_the_pooling_runner_on_loopback():
    plan = build_embedding_plan(Hardware(gpus=(), cpu_count=2), EngineSettings(),
                                served_name="all-minilm")
    assert plan is not None
    model_dir = packaged_model_dir()
    assert model_dir is not None and argv_flag(plan.argv, "--model") == str(model_dir)
    assert argv_flag(plan.argv, "--runner") == "pooling"
    assert argv_flag(plan.argv, "--host") == "127.0.0.1"
    assert argv_flag(plan.argv, "--port") == "8002"
    assert plan.env["VLLM_CPU_OMP_THREADS_BIND"] == "1"  # the chat engine's worker has core 0
    assert plan.env["HF_HUB_OFFLINE"] == "1"


def test_gpu_share_is_one_gib_of_the_card():
    plan = build_embedding_plan(preset_hardware("rtx3090", 1), EngineSettings(),
                                served_name="all-minilm")
    assert plan is not None
    assert argv_flag(plan.argv, "--gpu-memory-utilization") == "0.042"
    assert "--enforce-eager" in plan.argv


def test_off_and_beside_120b_by_default():
    hardware = preset_hardware("h100", 1)
    assert build_embedding_plan(hardware, EngineSettings(embedding_model="off"),
                                served_name="x") is None
    assert build_embedding_plan(hardware, EngineSettings(model_family="gpt-oss-120b"),
                                served_name="x") is None
    explicit = EngineSettings(model_family="gpt-oss-120b", embedding_model="BAAI/bge-small")
    plan = build_embedding_plan(hardware, explicit, served_name="x")
    assert plan is not None and argv_flag(plan.argv, "--model") == "BAAI/bge-small"
