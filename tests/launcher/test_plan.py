"""The plan for fake inventories: argv, env and the numbers behind them."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from serving.catalogue import FAMILIES
from serving.cli import main as serving_main
from serving.config import SERVED_MODEL_NAMES, EngineSettings, SidecarSettings
from serving.launcher.hardware import Gpu, Hardware, preset_hardware
from serving.launcher.plan import EnginePlan, PlanRefused, build_plan
from serving.launcher.plan.kv_cache import kv_cache_bytes_per_token
from serving.launcher.plan.model_spec import MODEL_CONFIGS_DIR, GiB, model_spec

MiB = 1024**2
SERVER = (sys.executable, "-m", "vllm.entrypoints.openai.api_server")


def engine(**overrides: object) -> EngineSettings:
    return EngineSettings.model_validate(overrides)


def flag(plan: EnginePlan, name: str) -> str:
    argv = list(plan.argv)
    return argv[argv.index(name) + 1]


def gpu_plan(preset: str, count: int = 1, **overrides: object) -> EnginePlan:
    return build_plan(preset_hardware(preset, count), engine(**overrides), smoke_model_dir=None)


def assert_common(plan: EnginePlan) -> None:
    argv = list(plan.argv)
    assert plan.argv[:3] == SERVER
    assert flag(plan, "--host") == "127.0.0.1" and flag(plan, "--port") == "8001"
    names = argv.index("--served-model-name")
    assert (
        tuple(argv[names + 1 : names + 1 + len(plan.served_model_names)]) == plan.served_model_names
    )
    assert flag(plan, "--tool-call-parser") == "openai"
    assert "--enable-auto-tool-choice" in argv
    assert flag(plan, "--reasoning-parser") == "openai_gptoss"
    assert flag(plan, "--max-model-len") == str(plan.max_model_len)
    assert sum(r.bytes for r in plan.memory) == plan.memory_budget_bytes or plan.profile == "cpu"


def test_shipped_configs_give_the_published_architecture() -> None:
    small, big = model_spec("gpt-oss-20b"), model_spec("gpt-oss-120b")
    assert (small.num_layers, small.full_attention_layers, small.sliding_attention_layers) == (
        24,
        12,
        12,
    )
    assert (big.num_layers, big.full_attention_layers, big.num_experts) == (36, 18, 128)
    for spec in (small, big):
        assert (spec.num_kv_heads, spec.head_dim, spec.sliding_window) == (8, 64, 128)
        assert spec.max_context == 131072 and spec.quantization == "mxfp4"
        layer_types = json.loads((MODEL_CONFIGS_DIR / spec.name / "config.json").read_text())[
            "layer_types"
        ]
        assert layer_types.count("full_attention") == spec.full_attention_layers
    # parameter counts and checkpoint sizes of the model card: 20.9B / 116.8B, ~13.8 / ~65 GB
    assert small.param_count == pytest.approx(20.91e9, rel=0.005)
    assert big.param_count == pytest.approx(116.83e9, rel=0.005)
    assert small.weight_bytes() == pytest.approx(13.76e9, rel=0.01)
    assert big.weight_bytes() == pytest.approx(65.25e9, rel=0.01)


def test_kv_bytes_per_token_is_full_attention_layers_only() -> None:
    spec = model_spec("gpt-oss-20b")
    assert kv_cache_bytes_per_token(spec, 2) == 12 * 2 * 8 * 64 * 2 == 24576
    assert kv_cache_bytes_per_token(spec, 2) * 131072 == 3 * GiB
    assert kv_cache_bytes_per_token(spec, 2, tensor_parallel=2) == 12288
    assert kv_cache_bytes_per_token(spec, 1) == 12288


def test_rtx3090_holds_the_full_context_beside_the_embedding_engine() -> None:
    with_embeddings = gpu_plan("rtx3090")
    # 1 GiB of the card (0.042) goes to the companion embedding engine, the rest to gpt-oss
    assert flag(with_embeddings, "--gpu-memory-utilization") == "0.878"
    # calibrated (tests/launcher/data/published_runs.json): 1.79 before, about 1.94 published
    assert with_embeddings.concurrency.full_context_sequences == pytest.approx(1.97, abs=0.01)
    assert any("SERVING_EMBEDDING_MODEL=off" in n for n in with_embeddings.notes)
    plan = gpu_plan("rtx3090", embedding_model="off")
    assert_common(plan)
    assert plan.profile == "cuda" and plan.quantization == "mxfp4"
    assert plan.max_model_len == 131072
    assert flag(plan, "--model") == "openai/gpt-oss-20b"
    assert flag(plan, "--gpu-memory-utilization") == "0.92"
    assert flag(plan, "--attention-backend") == "TRITON_ATTN"
    assert flag(plan, "--moe-backend") == "marlin"
    assert flag(plan, "--max-num-batched-tokens") == "2048"
    assert flag(plan, "--max-num-seqs") == str(plan.max_num_seqs) == "64"
    assert "--tensor-parallel-size" not in plan.argv and "--data-parallel-size" not in plan.argv
    assert plan.env == {}
    assert plan.served_model_names == SERVED_MODEL_NAMES
    # vLLM's block arithmetic by hand: 16-token blocks of 12 layers x 2048 bytes/token; one
    # 131072-token request: 8192 full-attention blocks + cdiv(127 + 2 x 2048, 16) + 1 = 265
    kv = plan.memory[-1]
    assert kv.item == "KV cache"
    blocks = kv.bytes // (16 * 24576)
    assert plan.concurrency.at_max_model_len == pytest.approx(blocks / (8192 + 265))
    assert plan.concurrency.full_context_sequences == pytest.approx(2.27, abs=0.01)
    assert plan.concurrency.kv_cache_tokens == int(blocks / 8457 * 131072)
    assert plan.concurrency.short_sequences_decoding > plan.concurrency.short_sequences > 30


def test_rtx4090_is_ada_with_the_same_kernels() -> None:
    plan = gpu_plan("rtx4090")
    assert_common(plan)
    assert plan.gpu is not None and plan.gpu.generation == "ada"
    assert flag(plan, "--attention-backend") == "TRITON_ATTN"
    assert plan.concurrency.full_context_sequences is not None
    assert plan.concurrency.full_context_sequences >= 1.75


def test_a100_80gb_gets_larger_batches() -> None:
    plan = gpu_plan("a100-80g")
    assert_common(plan)
    assert flag(plan, "--moe-backend") == "marlin"
    assert flag(plan, "--max-num-batched-tokens") == "8192"
    assert plan.max_num_seqs == 256
    assert plan.concurrency.full_context_sequences == pytest.approx(16.46, abs=0.2)


def test_h100_uses_vllm_defaults_for_hopper() -> None:
    plan = gpu_plan("h100")
    assert_common(plan)
    assert "--attention-backend" not in plan.argv and "--moe-backend" not in plan.argv
    assert plan.concurrency.full_context_sequences is not None
    assert plan.concurrency.full_context_sequences > 16


def sixteen_gb_card() -> Hardware:
    total = 16376 * MiB
    return Hardware(gpus=(Gpu(0, "NVIDIA RTX A4000", total, total, (8, 6)),), cpu_count=8)


def test_16gb_card_refuses_full_context_and_names_what_fits() -> None:
    with pytest.raises(PlanRefused, match="SERVING_EMBEDDING_MODEL=off"):
        build_plan(sixteen_gb_card(), engine(), smoke_model_dir=None)
    with pytest.raises(PlanRefused) as refused:
        build_plan(sixteen_gb_card(), engine(embedding_model="off"), smoke_model_dir=None)
    error = refused.value
    assert error.largest_context is not None and 4096 <= error.largest_context < 32768
    assert f"SERVING_MAX_MODEL_LEN={error.largest_context}" in error.message
    assert "24 GB" in error.message and "--gpus 2" in error.message
    # the advice is true: that context does plan
    plan = build_plan(
        sixteen_gb_card(),
        engine(max_model_len=error.largest_context, embedding_model="off"),
        smoke_model_dir=None,
    )
    assert plan.max_model_len == error.largest_context
    assert plan.concurrency.at_max_model_len >= 1
    assert flag(plan, "--gpu-memory-utilization") == "0.95"


def test_two_3090s_cannot_hold_120b_four_can_with_tensor_parallel() -> None:
    with pytest.raises(PlanRefused, match="4 cards like this one") as refused:
        gpu_plan("rtx3090", 2, model_family="gpt-oss-120b")
    assert refused.value.largest_context is None  # weights alone overflow each card
    plan = gpu_plan("rtx3090", 4, model_family="gpt-oss-120b")
    assert_common(plan)
    assert flag(plan, "--tensor-parallel-size") == "4"
    assert "--data-parallel-size" not in plan.argv
    assert flag(plan, "--model") == "openai/gpt-oss-120b"
    assert plan.served_model_names[0] == "gpt-oss-120b"
    assert plan.catalogue == FAMILIES["gpt-oss-120b"]
    assert plan.kv_bytes_per_token == 18 * 2 * 2 * 64 * 2


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_sidecar_env_of_the_plan_gives_the_sidecar_the_plan_catalogue(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the k8s overlays' plan.env carries: the sidecar built from it expects exactly
    the model vLLM is told to serve (family, served names, Ollama name)."""
    plan = gpu_plan("h100", model_family=family)
    assert plan.sidecar_env()["SERVING_MODEL_FAMILY"] == family
    assert plan.to_json()["sidecar_env"] == plan.sidecar_env()
    for name, value in plan.sidecar_env().items():
        monkeypatch.setenv(name, value)
    assert SidecarSettings().catalogue() == plan.catalogue == FAMILIES[family]
    monkeypatch.delenv("SERVING_SERVED_MODEL_NAMES")  # the family alone says the same
    assert SidecarSettings().catalogue() == plan.catalogue


def test_120b_fits_one_h100() -> None:
    plan = gpu_plan("h100", model_family="gpt-oss-120b")
    assert plan.tensor_parallel_size == 1
    assert plan.concurrency.at_max_model_len >= 1


def test_two_cards_with_20b_take_the_layout_with_most_full_context_sequences() -> None:
    plan = gpu_plan("rtx3090", 2)
    by_tp = {o.tensor_parallel: o for o in plan.topology}
    assert set(by_tp) == {1, 2} and by_tp[1].data_parallel == 2
    chosen = next(o for o in plan.topology if o.chosen)
    # vLLM splits the experts over DP ranks too; TP also halves the dense weights per card,
    # so it holds more whole 131072-token sequences and wins the first criterion
    assert chosen.full_length_sequences == max(o.full_length_sequences for o in plan.topology)
    assert chosen is by_tp[2] and by_tp[2].full_length_sequences > by_tp[1].full_length_sequences
    assert flag(plan, "--tensor-parallel-size") == "2"
    assert "--data-parallel-size" not in plan.argv
    assert plan.concurrency.data_parallel == 1


def test_memory_held_by_others_lowers_utilization() -> None:
    total = 24576 * MiB
    busy = Gpu(0, "NVIDIA GeForce RTX 3090", total, total - 3 * GiB, (8, 6))
    plan = build_plan(Hardware(gpus=(busy,)), engine(), smoke_model_dir=None)
    utilization = float(flag(plan, "--gpu-memory-utilization"))
    assert utilization * total <= busy.free_bytes
    assert any("Other processes" in note for note in plan.notes)


def test_pre_ampere_and_too_long_context_are_refused() -> None:
    turing = Gpu(0, "Tesla T4", 15360 * MiB, 15360 * MiB, (7, 5))
    with pytest.raises(PlanRefused, match=r"compute capability 8\.0"):
        build_plan(Hardware(gpus=(turing,)), engine(), smoke_model_dir=None)
    with pytest.raises(PlanRefused, match="beyond") as refused:
        gpu_plan("h100", max_model_len=262144)
    assert refused.value.largest_context == 131072


def test_fp8_kv_cache_halves_bytes_per_token() -> None:
    plan = gpu_plan("h100", kv_cache_dtype="fp8")
    assert flag(plan, "--kv-cache-dtype") == "fp8"
    assert plan.kv_bytes_per_token == 12288


def test_synthetic_weights_load_the_shipped_config_with_the_smoke_tokenizer(tmp_path: Path) -> None:
    plan = build_plan(
        preset_hardware("h100"),
        engine(synthetic_weights=True, extra_vllm_args=["--seed", "7"]),
        smoke_model_dir=tmp_path,
    )
    assert flag(plan, "--model") == str(model_spec("gpt-oss-20b").config_dir)
    assert flag(plan, "--load-format") == "dummy"
    assert flag(plan, "--tokenizer") == str(tmp_path)
    assert plan.argv[-2:] == ("--seed", "7")
    with pytest.raises(PlanRefused, match="tokenizer"):
        gpu_plan("h100", synthetic_weights=True)


def smoke_dir(tmp_path: Path) -> Path:
    config = json.loads((MODEL_CONFIGS_DIR / "gpt-oss-20b" / "config.json").read_text())
    config.pop("quantization_config")
    config.update(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=64,
        num_local_experts=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        torch_dtype="bfloat16",
        layer_types=["sliding_attention", "full_attention"],
    )
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_no_gpu_gives_the_cpu_profile_with_the_smoke_checkpoint(tmp_path: Path) -> None:
    model = smoke_dir(tmp_path)
    plan = build_plan(Hardware(cpu_count=2), engine(), smoke_model_dir=model)
    assert plan.profile == "cpu" and plan.quantization == "bf16"
    assert plan.catalogue == FAMILIES["gpt-oss-20b"]  # the smoke checkpoint stands in for 20b
    assert plan.argv == (
        *SERVER,
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        "8001",
        "--served-model-name",
        *SERVED_MODEL_NAMES,
        "--disable-uvicorn-access-log",
        "--max-model-len",
        "8192",
        "--dtype",
        "bfloat16",
        "--max-num-seqs",
        "64",
        "--max-num-batched-tokens",
        "2048",
        "--tool-call-parser",
        "openai",
        "--enable-auto-tool-choice",
        "--reasoning-parser",
        "openai_gptoss",
        "--override-generation-config",
        '{"temperature": 0.0}',
    )
    assert dict(plan.env) == {
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CPU_OMP_THREADS_BIND": "auto",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "1",
    }
    # 1 full-attention layer x 2 KV heads x 64 x bf16
    assert plan.kv_bytes_per_token == 512
    # 128-token blocks: 2 GiB / 64 KiB = 32768; per request 64 + cdiv(127 + 2048, 128) + 1 = 82
    assert plan.concurrency.at_max_model_len == pytest.approx(32768 / 82)
    assert plan.concurrency.kv_cache_tokens == math.floor(32768 / 82 * 8192)


def test_cpu_engine_wins_over_a_gpu_and_cuda_without_gpu_is_refused(tmp_path: Path) -> None:
    model = smoke_dir(tmp_path)
    plan = build_plan(
        preset_hardware("h100"), engine(engine="cpu", vllm_port=8101), smoke_model_dir=model
    )
    assert plan.profile == "cpu" and flag(plan, "--port") == "8101"
    with pytest.raises(PlanRefused, match="no NVIDIA GPU"):
        build_plan(Hardware(), engine(engine="cuda"), smoke_model_dir=model)
    with pytest.raises(PlanRefused, match="smoke checkpoint"):
        build_plan(Hardware(), engine(), smoke_model_dir=None)


def test_cli_json_has_the_stable_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert serving_main(["plan", "--gpu", "rtx3090", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert {"argv", "env", "max_model_len", "memory", "concurrency", "profile", "gpu"} <= set(body)
    assert body["gpu"]["name"] == "NVIDIA GeForce RTX 3090"
    assert body["max_model_len"] == 131072
    assert sum(r["bytes"] for r in body["memory"]["rows"]) == body["memory"]["budget_bytes"]
    assert body["argv"][:3] == list(SERVER)


def test_cli_table_and_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    assert serving_main(["plan", "--gpu", "rtx3090"]) == 0
    out = capsys.readouterr().out
    assert "131072-token sequences at once: 1.97" in out
    assert "--attention-backend TRITON_ATTN" in out
    assert serving_main(["plan", "--gpu", "rtx4080"]) == 2
    assert "SERVING_EMBEDDING_MODEL=off" in capsys.readouterr().out
