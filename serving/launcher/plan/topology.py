"""Fit the model on N cards in every tensor x data parallel layout, and choose one.

Objective, in order: (1) whole ``max_model_len`` sequences held at once, all engines
together (a data-parallel engine holds only whole sequences of its own); (2) the expected
output tokens/s (``throughput``); (3) the smaller tensor-parallel size. Layouts where no
engine holds one full-length sequence (with ``FIT_MARGIN_BYTES`` to spare) do not fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from serving.config import EngineSettings
from serving.launcher.hardware import Gpu
from serving.launcher.plan import cards, flags, memory, mxfp4_layout
from serving.launcher.plan.kv_cache import (
    BlockLayout,
    KvCapacity,
    kv_blocks_decoding,
    kv_capacity,
    request_bytes,
)
from serving.launcher.plan.model_spec import ModelSpec
from serving.launcher.plan.throughput import DecodeShape, expected_output_tokens_per_s
from serving.launcher.plan.types import SHORT_CONTEXT, GiB, MemoryRow, TopologyOption

MAX_NUM_SEQS_CAP = 256
# vLLM's profile is within about 0.1 GiB of the run (tests/launcher/data/); a plan keeps this
# much KV cache beyond one full-length request so that an unlucky profile still starts.
FIT_MARGIN_BYTES = int(0.25 * GiB)


@dataclass(frozen=True)
class FitRequest:
    """What is being fitted: the parameter object of ``fit`` and ``choose``."""

    spec: ModelSpec
    gpu: Gpu
    gpus: int
    max_model_len: int
    engine: EngineSettings

    @property
    def dtype_bytes(self) -> int:
        return 1 if self.engine.kv_cache_dtype == "fp8" else 2


@dataclass(frozen=True)
class Fit:
    """One layout on one GPU: its memory rows and what the KV cache holds."""

    tensor_parallel: int
    data_parallel: int
    shape: memory.WorkerShape
    rows: tuple[MemoryRow, ...]
    capacity: KvCapacity
    blocks: BlockLayout

    @property
    def kv_bytes(self) -> int:
        return memory.kv_bytes(self.rows)

    @property
    def budget(self) -> int:
        return self.shape.budget

    @property
    def weight_bytes(self) -> int:
        return sum(r.bytes for r in self.rows if r.item in ("weights", "MXFP4 kernel layout"))


def _fit(request: FitRequest, tp: int, dp: int, max_num_seqs: int) -> Fit:
    gpu, engine = request.gpu, request.engine
    shape = memory.WorkerShape(
        spec=request.spec,
        layout=mxfp4_layout.layout_for(gpu.generation),
        cuda_total=cards.cuda_total(gpu),
        utilization=cards.utilization(gpu, engine),
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=(
            engine.max_num_batched_tokens or cards.card_class(gpu).batched_tokens
        ),
        tensor_parallel=tp,
        data_parallel=dp,
    )
    rows = memory.memory_rows(shape)
    blocks = BlockLayout(
        flags.GPU_BLOCK_SIZE,
        flags.GPU_BATCHES_IN_FLIGHT * shape.max_num_batched_tokens,
        request.dtype_bytes,
        tp,
    )
    cap = kv_capacity(
        request.spec, memory.kv_bytes(rows), blocks, max_model_len=request.max_model_len
    )
    return Fit(tp, dp, shape, rows, cap, blocks)


def fit(request: FitRequest, tp: int, dp: int) -> Fit:
    """The layout with max_num_seqs chosen: as many 4K-token decoding sequences as the KV
    cache holds (capped), re-checked because the sampler's peak grows with it."""
    if request.engine.max_num_seqs is not None:
        return _fit(request, tp, dp, request.engine.max_num_seqs)
    current = _fit(request, tp, dp, 1)
    spec = request.spec
    per_seq = kv_blocks_decoding(spec, SHORT_CONTEXT, block_size=flags.GPU_BLOCK_SIZE)
    for _ in range(8):
        seqs = int(min(MAX_NUM_SEQS_CAP, current.capacity.num_blocks // per_seq))
        seqs = max(1, seqs - seqs % 8 if seqs >= 16 else seqs)
        candidate = _fit(request, tp, dp, seqs)
        if candidate.capacity.num_blocks // per_seq >= seqs or seqs == 1:
            return candidate
        current = candidate
    return candidate


def fits(request: FitRequest, layout: Fit) -> bool:
    need = request_bytes(request.spec, request.max_model_len, layout.blocks)
    return layout.kv_bytes - FIT_MARGIN_BYTES >= need


def full_length_sequences(layout: Fit) -> int:
    return layout.data_parallel * math.floor(layout.capacity.max_concurrency)


def option_for(request: FitRequest, layout: Fit) -> TopologyOption:
    decode = DecodeShape(
        spec=request.spec,
        weight_bytes_per_gpu=layout.weight_bytes,
        batch_per_engine=layout.shape.max_num_seqs,
        engines=layout.data_parallel,
        tensor_parallel=layout.tensor_parallel,
        bandwidth_bytes_per_s=cards.bandwidth_bytes_per_s(request.gpu),
        kv_dtype_bytes=request.dtype_bytes,
    )
    ok = fits(request, layout)
    return TopologyOption(
        tensor_parallel=layout.tensor_parallel,
        data_parallel=layout.data_parallel,
        fits=ok,
        full_length_sequences=full_length_sequences(layout) if ok else 0,
        kv_cache_bytes=layout.kv_bytes,
        expected_output_tokens_per_s=expected_output_tokens_per_s(decode) if ok else 0.0,
    )


def parallel_sizes(spec: ModelSpec, gpus: int) -> list[int]:
    return [t for t in (1, 2, 4, 8) if t <= gpus and spec.num_attention_heads % t == 0
            and gpus % t == 0]


def choose(request: FitRequest) -> tuple[Fit, tuple[TopologyOption, ...]]:
    """Every layout of ``request.gpus`` cards, and the best by the module's objective (the
    largest tensor-parallel layout when none fits: the refusal explains it)."""
    sizes = parallel_sizes(request.spec, request.gpus)
    layouts = [fit(request, tp, request.gpus // tp) for tp in sizes]
    options = [option_for(request, layout) for layout in layouts]

    def rank(i: int) -> tuple[int, float, int]:
        o = options[i]
        return (o.full_length_sequences, o.expected_output_tokens_per_s, -o.tensor_parallel)

    fitting = [i for i, o in enumerate(options) if o.fits]
    best = max(fitting, key=rank) if fitting else len(layouts) - 1
    options[best] = replace(options[best], chosen=True)
    return layouts[best], tuple(options)
