"""The vLLM plan: a pure function from (hardware, engine settings) to a frozen plan.

``build_plan`` picks the profile: vLLM's CPU build with the smoke checkpoint when there is no
GPU (or ``SERVING_ENGINE=cpu``), else the CUDA profile. Neither starts anything. The modules
in the order a reader needs them:

- ``types``: what comes out (``EnginePlan``: argv, environment, served names, and the memory,
  concurrency and topology figures behind them) and ``PlanRefused``.
- ``model_spec``: the model's architecture numbers and names, read from ``config.json``.
- ``cpu`` and ``cuda``: the two profiles. ``cuda`` fits gpt-oss on the GPUs in the best
  tensor x data parallel layout (``topology``) from a memory model in vLLM's own terms
  (``memory``, ``mxfp4_layout``, ``kv_cache``, ``cards``, ``embedding_share``), estimates
  the decode rate and the sidecar workers it needs (``throughput``), or refuses with what
  would fit (``refusal``).
- ``flags``: every vLLM-version-specific flag and variable, in one place.
- ``vllm_log``: reads vLLM's start-up memory lines back, to compare them with the plan.
"""

from __future__ import annotations

from pathlib import Path

from serving.config import EngineSettings
from serving.launcher.hardware import Hardware
from serving.launcher.plan.cpu import cpu_plan
from serving.launcher.plan.cuda import cuda_plan
from serving.launcher.plan.kv_cache import kv_cache_bytes_per_token
from serving.launcher.plan.types import (
    Concurrency,
    EnginePlan,
    MemoryRow,
    PlanRefused,
    TopologyOption,
)

__all__ = [
    "Concurrency",
    "EnginePlan",
    "MemoryRow",
    "PlanRefused",
    "TopologyOption",
    "build_plan",
    "kv_cache_bytes_per_token",
]


def build_plan(
    hardware: Hardware, engine: EngineSettings, *, smoke_model_dir: Path | None
) -> EnginePlan:
    """The plan for this hardware; raises PlanRefused when it cannot hold the request."""
    if engine.engine == "cpu" or not hardware.gpus:
        if engine.engine == "cuda":
            raise PlanRefused(
                "SERVING_ENGINE=cuda but no NVIDIA GPU was found"
                + (f" ({hardware.nvml_error})" if hardware.nvml_error else "")
                + "; run `python -m serving doctor`, or SERVING_ENGINE=auto for the CPU profile."
            )
        return cpu_plan(hardware, engine, smoke_model_dir)
    return cuda_plan(hardware, engine, smoke_model_dir)


