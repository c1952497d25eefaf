"""The plan's types and the argv pieces every profile shares.

``EnginePlan`` is what ``serving.launcher.plan.build_plan`` returns: the exact vLLM command,
its environment, and the memory table / concurrency figures that justify the numbers in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from serving.config import EngineSettings
from serving.launcher import vllm_flags as flags
from serving.launcher.hardware import Gpu
from serving.launcher.models import (
    GiB,
    KvCapacity,
    ModelSpec,
    kv_blocks_decoding,
    kv_blocks_per_request,
)

FULL_CONTEXT = 131072
SHORT_CONTEXT = 4096


class PlanRefused(Exception):
    """The hardware cannot hold what was asked; the message says what would fit."""

    def __init__(
        self,
        message: str,
        *,
        largest_context: int | None = None,
        largest_concurrency: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.largest_context = largest_context
        self.largest_concurrency = largest_concurrency


@dataclass(frozen=True)
class MemoryRow:
    item: str
    bytes: int
    note: str = ""


@dataclass(frozen=True)
class Concurrency:
    """How many sequences fit at once in one engine (one data-parallel rank)."""

    max_model_len: int
    at_max_model_len: float  # vLLM's "Maximum concurrency for <max_model_len> tokens"
    kv_cache_tokens: int  # vLLM's "KV cache size: <n> tokens"
    full_context_sequences: float | None  # 131072-token sequences (None: context < 131072)
    short_sequences: float  # 4K-token sequences, vLLM's admission worst case (prefill)
    short_sequences_decoding: float  # 4K-token sequences once decoding (window freed)
    data_parallel: int = 1


@dataclass(frozen=True)
class EnginePlan:
    profile: Literal["cpu", "cuda"]
    argv: tuple[str, ...]
    env: Mapping[str, str]
    max_model_len: int
    quantization: str
    served_model_names: tuple[str, ...]
    model: str
    model_family: str
    memory: tuple[MemoryRow, ...]
    memory_budget_bytes: int
    concurrency: Concurrency
    kv_bytes_per_token: int
    gpu: Gpu | None = None
    gpu_count: int = 0
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    max_num_seqs: int = 0
    max_num_batched_tokens: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """Stable machine-readable form (``serving plan --json``; k8s overlays read it)."""
        gpu = None
        if self.gpu is not None:
            gpu = {
                "name": self.gpu.name,
                "count": self.gpu_count,
                "total_bytes": self.gpu.total_bytes,
                "compute_capability": list(self.gpu.compute_capability),
                "generation": self.gpu.generation,
            }
        c = self.concurrency
        return {
            "profile": self.profile,
            "model": self.model,
            "model_family": self.model_family,
            "served_model_names": list(self.served_model_names),
            "quantization": self.quantization,
            "gpu": gpu,
            "tensor_parallel_size": self.tensor_parallel_size,
            "data_parallel_size": self.data_parallel_size,
            "max_model_len": self.max_model_len,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "memory": {
                "budget_bytes": self.memory_budget_bytes,
                "rows": [{"item": r.item, "bytes": r.bytes, "note": r.note} for r in self.memory],
            },
            "concurrency": {
                "max_model_len": c.max_model_len,
                "at_max_model_len": round(c.at_max_model_len, 2),
                "kv_cache_tokens": c.kv_cache_tokens,
                "full_context_tokens": FULL_CONTEXT,
                "full_context_sequences": c.full_context_sequences,
                "short_context_tokens": SHORT_CONTEXT,
                "short_sequences": c.short_sequences,
                "short_sequences_decoding": c.short_sequences_decoding,
                "data_parallel_size": c.data_parallel,
            },
            "argv": list(self.argv),
            "env": dict(self.env),
            "notes": list(self.notes),
        }


def fmt_gib(value: int) -> str:
    return f"{value / GiB:.2f} GiB"


def serve_flags(engine: EngineSettings, names: tuple[str, ...]) -> list[str]:
    return [
        "--host",
        engine.vllm_host,
        "--port",
        str(engine.vllm_port),
        "--served-model-name",
        *names,
        *flags.ACCESS_LOG_FLAGS,
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
        *flags.SYNTHETIC_WEIGHTS_FLAGS,
        "--tokenizer",
        str(smoke_model_dir),
    ]


def short_counts(
    spec: ModelSpec, num_blocks: int, block: int, in_flight: int
) -> tuple[float, float]:
    admission = kv_blocks_per_request(
        spec, SHORT_CONTEXT, block_size=block, in_flight_tokens=in_flight
    )
    decoding = kv_blocks_decoding(spec, SHORT_CONTEXT, block_size=block)
    return round(num_blocks / admission, 1), round(num_blocks / decoding, 1)


def concurrency_for(
    spec: ModelSpec, cap: KvCapacity, max_len: int, block: int, in_flight: int, dp: int
) -> Concurrency:
    full = None
    if max_len >= FULL_CONTEXT:
        per = kv_blocks_per_request(
            spec, FULL_CONTEXT, block_size=block, in_flight_tokens=in_flight
        )
        full = round(cap.num_blocks / per, 2)
    short, short_decoding = short_counts(spec, cap.num_blocks, block, in_flight)
    return Concurrency(
        max_model_len=max_len,
        at_max_model_len=cap.max_concurrency,
        kv_cache_tokens=cap.kv_cache_tokens,
        full_context_sequences=full,
        short_sequences=short,
        short_sequences_decoding=short_decoding,
        data_parallel=dp,
    )
