"""The plan's types: what ``build_plan`` returns and what it refuses with.

``EnginePlan`` holds the exact vLLM command, its environment, the model catalogue it serves
(family and names, which the sidecar must expect: ``sidecar_env``), and the memory table /
concurrency / topology figures that justify the numbers in it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from serving.catalogue import ModelCatalogue
from serving.launcher.hardware import Gpu

GiB = 1024**3
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
        cards_for_full_context: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.largest_context = largest_context
        self.largest_concurrency = largest_concurrency
        self.cards_for_full_context = cards_for_full_context


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
class TopologyOption:
    """One way to use the cards: tensor parallel x data parallel, and what it gives."""

    tensor_parallel: int
    data_parallel: int
    fits: bool
    full_length_sequences: int  # whole max_model_len sequences at once, all engines
    kv_cache_bytes: int  # per GPU
    expected_output_tokens_per_s: float  # all engines, at the planned batch (rough)
    chosen: bool = False

    @property
    def label(self) -> str:
        return f"tp {self.tensor_parallel} x dp {self.data_parallel}"

    def to_json(self) -> dict[str, Any]:
        return {
            "tensor_parallel_size": self.tensor_parallel,
            "data_parallel_size": self.data_parallel,
            "fits": self.fits,
            "full_length_sequences": self.full_length_sequences,
            "kv_cache_gib": round(self.kv_cache_bytes / GiB, 2),
            "expected_output_tokens_per_s": round(self.expected_output_tokens_per_s),
            "chosen": self.chosen,
        }


@dataclass(frozen=True)
class EnginePlan:
    profile: Literal["cpu", "cuda"]
    argv: tuple[str, ...]
    env: Mapping[str, str]
    max_model_len: int
    quantization: str
    catalogue: ModelCatalogue  # what vLLM serves it as; the sidecar must expect the same
    model: str
    model_family: str  # the checkpoint's spec: the family, or "smoke" / a local dir's name
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
    topology: tuple[TopologyOption, ...] = ()
    sidecar_workers: int = 1
    expected_output_tokens_per_s: float = 0.0

    @property
    def served_model_names(self) -> tuple[str, ...]:
        return self.catalogue.served_names

    def sidecar_env(self) -> dict[str, str]:
        """The sidecar settings that make it expect this plan's model (SidecarSettings reads
        them; the k8s overlays' plan.env carries them)."""
        return {
            "SERVING_MODEL_FAMILY": self.catalogue.family,
            # pydantic-settings reads a tuple field from the environment as JSON
            "SERVING_SERVED_MODEL_NAMES": json.dumps(list(self.served_model_names),
                                                     separators=(",", ":")),
        }

    def row_bytes(self, item: str) -> int:
        return sum(r.bytes for r in self.memory if r.item == item)

    @property
    def predicted_weights_bytes(self) -> int:
        """What vLLM should log as "Model loading took X GiB" (per GPU)."""
        return self.row_bytes("weights") + self.row_bytes("MXFP4 kernel layout")

    @property
    def predicted_kv_cache_bytes(self) -> int:
        """What vLLM should log as "Available KV cache memory: Y GiB" (per GPU)."""
        return self.row_bytes("KV cache")

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
        return {
            "profile": self.profile,
            "model": self.model,
            "model_family": self.model_family,
            "served_model_names": list(self.served_model_names),
            "sidecar_env": self.sidecar_env(),
            "quantization": self.quantization,
            "gpu": gpu,
            "tensor_parallel_size": self.tensor_parallel_size,
            "data_parallel_size": self.data_parallel_size,
            "max_model_len": self.max_model_len,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "predicted": {
                "weights_gib": round(self.predicted_weights_bytes / GiB, 2),
                "kv_cache_gib": round(self.predicted_kv_cache_bytes / GiB, 2),
            },
            "memory": {
                "budget_bytes": self.memory_budget_bytes,
                "rows": [{"item": r.item, "bytes": r.bytes, "note": r.note} for r in self.memory],
            },
            "concurrency": _concurrency_json(self.concurrency),
            "topology": [option.to_json() for option in self.topology],
            "sidecar_workers": self.sidecar_workers,
            "expected_output_tokens_per_s": round(self.expected_output_tokens_per_s),
            "argv": list(self.argv),
            "env": dict(self.env),
            "notes": list(self.notes),
        }


def _concurrency_json(c: Concurrency) -> dict[str, Any]:
    return {
        "max_model_len": c.max_model_len,
        "at_max_model_len": round(c.at_max_model_len, 2),
        "kv_cache_tokens": c.kv_cache_tokens,
        "full_context_tokens": FULL_CONTEXT,
        "full_context_sequences": c.full_context_sequences,
        "short_context_tokens": SHORT_CONTEXT,
        "short_sequences": c.short_sequences,
        "short_sequences_decoding": c.short_sequences_decoding,
        "data_parallel_size": c.data_parallel,
    }


def fmt_gib(value: int) -> str:
    return f"{value / GiB:.2f} GiB"
