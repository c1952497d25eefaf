"""What the plan assumes about a card: CUDA-visible memory, defaults by size, bandwidth.

vLLM multiplies ``--gpu-memory-utilization`` by the total that CUDA reports
(``torch.cuda.mem_get_info``, ``vllm/v1/worker/utils.py`` ``request_memory``), which is
0.4-0.5 GiB below NVML's total; and it refuses to start unless that much is free once its
own CUDA context exists. The context itself is outside the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from serving.config import EngineSettings
from serving.launcher.hardware import Gpu
from serving.launcher.plan.embedding_share import embedding_gpu_fraction
from serving.launcher.plan.types import GiB

DEFAULT_GPU_UTILIZATION = 0.92
# NVML total minus CUDA's total, where no published figure for the card exists. Published:
# H100 80GB 81559 MiB (NVML) vs 79.18 GiB (CUDA, llm-d-benchmark) = 0.47 GiB; RTX 3090
# 24576 MiB vs 23.56 GiB ("Free memory on device (22.93/23.56 GiB)", vLLM log of 8 x RTX
# 3090 in github.com/wtdcode/vllm-backport/issues/34) = 0.44 GiB.
CUDA_RESERVED_BYTES = int(0.45 * GiB)
CUDA_TOTAL_BY_NAME: dict[str, int] = {
    "NVIDIA H100 80GB HBM3": int(79.18 * GiB),
    "NVIDIA GeForce RTX 3090": int(23.56 * GiB),
}
# Driver + torch context of vLLM's worker before its memory snapshot (llm-d-benchmark, H100:
# "Free memory on device 78.57/79.18 GiB on startup"): must be free, is not in the budget.
CUDA_CONTEXT_BYTES = int(0.6 * GiB)
# Spec-sheet memory bandwidth (GB/s) for the decode-rate estimate (``throughput``).
BANDWIDTH_GBPS: dict[str, float] = {
    "RTX 3090": 936,
    "RTX 4090": 1008,
    "RTX 4080": 717,
    "A100-SXM4-40GB": 1555,
    "A100-SXM4-80GB": 2039,
    "A100 80GB PCIe": 1935,
    "L40S": 864,
    "H100 80GB HBM3": 3350,
    "H100 PCIe": 2000,
    "H200": 4800,
}
GENERATION_BANDWIDTH_GBPS = {"ampere": 936.0, "ada": 864.0, "hopper": 3350.0, "blackwell": 8000.0}


@dataclass(frozen=True)
class CardClass:
    """Defaults by card size: small cards trade prefill speed for KV cache."""

    below_gib: float
    utilization: float
    batched_tokens: int  # --max-num-batched-tokens (2048 is vLLM's own default below 70 GiB)


CARD_CLASSES: tuple[CardClass, ...] = (
    CardClass(20, 0.95, 1024),  # 16 GB cards
    CardClass(40, DEFAULT_GPU_UTILIZATION, 2048),  # 24-32 GB
    CardClass(64, DEFAULT_GPU_UTILIZATION, 4096),  # 40-48 GB
    CardClass(math.inf, DEFAULT_GPU_UTILIZATION, 8192),
)


def card_class(gpu: Gpu) -> CardClass:
    return next(c for c in CARD_CLASSES if gpu.total_bytes < c.below_gib * GiB)


def cuda_total(gpu: Gpu) -> int:
    """The total CUDA reports for this card (vLLM's base for the utilization)."""
    return CUDA_TOTAL_BY_NAME.get(gpu.name, gpu.total_bytes - CUDA_RESERVED_BYTES)


def utilization(gpu: Gpu, engine: EngineSettings) -> float:
    """--gpu-memory-utilization: the card class default, less the embedding engine's share,
    capped by what is free once the CUDA context exists (vLLM refuses to start otherwise)."""
    if engine.gpu_memory_utilization is not None:
        return engine.gpu_memory_utilization
    total = cuda_total(gpu)
    cuda_free = gpu.free_bytes - (gpu.total_bytes - total) - CUDA_CONTEXT_BYTES
    free_fraction = (cuda_free - 128 * 1024**2) / total
    target = round(card_class(gpu).utilization - embedding_gpu_fraction(gpu.total_bytes, engine), 3)
    return max(0.0, min(target, math.floor(free_fraction * 100) / 100))


def bandwidth_bytes_per_s(gpu: Gpu) -> float:
    gbps = next((v for k, v in BANDWIDTH_GBPS.items() if k in gpu.name), None)
    return (gbps or GENERATION_BANDWIDTH_GBPS.get(gpu.generation, 936.0)) * 1e9
