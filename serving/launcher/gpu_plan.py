"""The CUDA profile: fit gpt-oss on the detected (or preset) GPUs, or refuse with advice.

Memory model, per GPU (each term a row of the plan's memory table):
``budget = gpu_memory_utilization x total`` holds the weights (from the model config: MXFP4
experts + bf16 rest, split by tensor parallelism), an MXFP4 kernel-layout allowance, the
CUDA context, activations at ``max_num_batched_tokens``, sampler buffers for
``max_num_seqs``, CUDA graphs and a safety margin; the rest is KV cache, counted in vLLM's
own block arithmetic (``models.kv_capacity``) so the concurrency shown is what vLLM logs.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from serving.config import EngineSettings
from serving.launcher import vllm_flags as flags
from serving.launcher.embedding_plan import embedding_gpu_fraction
from serving.launcher.engine_plan import (
    SHORT_CONTEXT,
    EnginePlan,
    MemoryRow,
    PlanRefused,
    concurrency_for,
    fmt_gib,
    model_args,
    serve_flags,
    short_counts,
)
from serving.launcher.hardware import Gpu, Hardware
from serving.launcher.models import (
    GiB,
    KvCapacity,
    ModelSpec,
    kv_block_bytes,
    kv_blocks_decoding,
    kv_blocks_per_request,
    kv_cache_bytes_per_token,
    kv_capacity,
    model_spec,
)

DEFAULT_GPU_UTILIZATION = 0.92
MAX_NUM_SEQS_CAP = 256
# Reserve estimates (per GPU). vLLM profiles the real peak at start-up; these keep the plan
# on the safe side of it until a GPU run (benchmarks/results/) measures them.
CUDA_CONTEXT_BYTES = int(0.6 * GiB)
MULTI_GPU_COMM_BYTES = int(0.4 * GiB)  # NCCL / custom all-reduce buffers when TP or DP > 1
SAMPLER_BUFFERS = 3  # fp32 logits, probabilities, sort scratch per sequence


@dataclass(frozen=True)
class _Fit:
    """One candidate layout on one GPU: its memory rows and what the KV cache holds."""

    rows: tuple[MemoryRow, ...]
    budget: int
    kv_bytes: int
    utilization: float
    max_num_seqs: int
    max_num_batched_tokens: int
    capacity: KvCapacity


@dataclass(frozen=True)
class CardClass:
    """Defaults by card size: small cards trade prefill speed and margins for KV cache."""

    below_gib: float
    utilization: float
    batched_tokens: int  # --max-num-batched-tokens (2048 is vLLM's own default below 70 GiB)
    cuda_graph_bytes: int
    safety_bytes: int


CARD_CLASSES: tuple[CardClass, ...] = (
    CardClass(20, 0.95, 1024, int(0.5 * GiB), int(0.25 * GiB)),  # 16 GB cards
    CardClass(40, DEFAULT_GPU_UTILIZATION, 2048, int(0.75 * GiB), int(0.5 * GiB)),  # 24-32 GB
    CardClass(64, DEFAULT_GPU_UTILIZATION, 4096, int(0.75 * GiB), int(0.5 * GiB)),  # 40-48 GB
    CardClass(math.inf, DEFAULT_GPU_UTILIZATION, 8192, int(1.0 * GiB), int(0.5 * GiB)),
)


def card_class(gpu: Gpu) -> CardClass:
    return next(c for c in CARD_CLASSES if gpu.total_bytes < c.below_gib * GiB)


def _utilization(gpu: Gpu, engine: EngineSettings) -> float:
    if engine.gpu_memory_utilization is not None:
        return engine.gpu_memory_utilization
    # vLLM refuses to start when free memory is below utilization x total.
    free_fraction = (gpu.free_bytes - 256 * 1024**2) / gpu.total_bytes
    target = card_class(gpu).utilization
    # The companion embedding engine (serving.launcher.embedding_plan) shares this GPU.
    target = round(target - embedding_gpu_fraction(gpu.total_bytes, engine), 3)
    return max(0.0, min(target, math.floor(free_fraction * 100) / 100))


def _fit(
    gpu: Gpu,
    spec: ModelSpec,
    tp: int,
    dp: int,
    max_len: int,
    engine: EngineSettings,
    dtype_bytes: int,
    max_num_seqs: int,
) -> _Fit:
    util = _utilization(gpu, engine)
    budget = int(gpu.total_bytes * util)
    cls = card_class(gpu)
    mnbt = engine.max_num_batched_tokens or cls.batched_tokens
    q = spec.num_attention_heads * spec.head_dim
    act_per_token = 2 * (
        8 * spec.hidden_size + 2 * q + spec.experts_per_token * 3 * spec.intermediate_size
    )
    comm = MULTI_GPU_COMM_BYTES if tp * dp > 1 else 0
    rows = [
        MemoryRow(
            "weights",
            math.ceil(spec.weight_bytes() / tp),
            f"{spec.quantization} experts + bf16 rest" + (f", 1/{tp} per GPU" if tp > 1 else ""),
        ),
        MemoryRow(
            "MXFP4 kernel layout",
            math.ceil(spec.layout_allowance_bytes() / tp),
            "repacked/padded experts (allowance)",
        ),
        MemoryRow(
            "CUDA context",
            CUDA_CONTEXT_BYTES + comm,
            "driver, cuBLAS" + (", NCCL buffers" if comm else ""),
        ),
        MemoryRow("activations", mnbt * act_per_token, f"--max-num-batched-tokens {mnbt}"),
        MemoryRow(
            "sampler",
            max_num_seqs * spec.vocab_size * 4 * SAMPLER_BUFFERS,
            f"fp32 logits for --max-num-seqs {max_num_seqs}",
        ),
        MemoryRow("CUDA graphs", cls.cuda_graph_bytes, "captured decode batches"),
        MemoryRow("safety margin", cls.safety_bytes, "fragmentation, profiling error"),
    ]
    kv = budget - sum(r.bytes for r in rows)
    rows.append(MemoryRow("KV cache", max(kv, 0), "the rest of the budget"))
    cap = kv_capacity(
        spec,
        kv,
        max_model_len=max_len,
        dtype_bytes=dtype_bytes,
        block_size=flags.GPU_BLOCK_SIZE,
        in_flight_tokens=flags.GPU_BATCHES_IN_FLIGHT * mnbt,
        tensor_parallel=tp,
    )
    return _Fit(tuple(rows), budget, kv, util, max_num_seqs, mnbt, cap)


def _fit_tuned(
    gpu: Gpu,
    spec: ModelSpec,
    tp: int,
    dp: int,
    max_len: int,
    engine: EngineSettings,
    dtype_bytes: int,
) -> _Fit:
    """Choose max_num_seqs: as many 4K-token decoding sequences as the KV cache holds, where
    each sequence also costs its sampler buffers (so the two are solved together)."""
    if engine.max_num_seqs is not None:
        return _fit(gpu, spec, tp, dp, max_len, engine, dtype_bytes, engine.max_num_seqs)
    bare = _fit(gpu, spec, tp, dp, max_len, engine, dtype_bytes, 0)
    blocks = kv_blocks_decoding(spec, SHORT_CONTEXT, block_size=flags.GPU_BLOCK_SIZE)
    block_bytes = kv_block_bytes(spec, dtype_bytes, flags.GPU_BLOCK_SIZE, tp)
    per_seq = blocks * block_bytes + spec.vocab_size * 4 * SAMPLER_BUFFERS
    seqs = int(min(MAX_NUM_SEQS_CAP, max(bare.kv_bytes, 0) // per_seq))
    seqs = max(1, seqs - seqs % 8 if seqs >= 16 else seqs)
    return _fit(gpu, spec, tp, dp, max_len, engine, dtype_bytes, seqs)


def _largest_context(spec: ModelSpec, fit: _Fit) -> int:
    """Longest max_model_len for which one sequence fits in this layout's KV cache."""
    low, high = 0, spec.max_context
    in_flight = flags.GPU_BATCHES_IN_FLIGHT * fit.max_num_batched_tokens
    while low < high:
        mid = (low + high + 1) // 2
        need = kv_blocks_per_request(
            spec, mid, block_size=flags.GPU_BLOCK_SIZE, in_flight_tokens=in_flight
        )
        low, high = (mid, high) if need <= fit.capacity.num_blocks else (low, mid - 1)
    return low - low % 1024 if low >= 1024 else low


def _parallel_options(spec: ModelSpec, n: int) -> list[int]:
    return [t for t in (1, 2, 4, 8) if t <= n and spec.num_attention_heads % t == 0 and n % t == 0]


def _request_bytes(spec: ModelSpec, fit: _Fit, tokens: int, tp: int, dtype_bytes: int) -> int:
    blocks = kv_blocks_per_request(
        spec,
        tokens,
        block_size=flags.GPU_BLOCK_SIZE,
        in_flight_tokens=flags.GPU_BATCHES_IN_FLIGHT * fit.max_num_batched_tokens,
    )
    return blocks * kv_block_bytes(spec, dtype_bytes, flags.GPU_BLOCK_SIZE, tp)


def _bigger_layout(
    gpu: Gpu, spec: ModelSpec, max_len: int, engine: EngineSettings, dtype_bytes: int
) -> int | None:
    """The smallest tensor-parallel size on cards like this one that would hold the request."""
    for tp in (2, 4, 8):
        if spec.num_attention_heads % tp == 0:
            fit = _fit_tuned(gpu, spec, tp, 1, max_len, engine, dtype_bytes)
            if fit.capacity.max_concurrency >= 1:
                return tp
    return None


def _refusal(
    spec: ModelSpec,
    gpu: Gpu,
    n: int,
    max_len: int,
    fit: _Fit,
    tp: int,
    engine: EngineSettings,
    dtype_bytes: int,
) -> PlanRefused:
    card = f"{n} x {gpu.name} ({fmt_gib(gpu.total_bytes)})"
    fixed = sum(r.bytes for r in fit.rows if r.item != "KV cache")
    per_seq = _request_bytes(spec, fit, max_len, tp, dtype_bytes)
    parts = [
        f"{spec.name} with a {max_len:,}-token context does not fit on {card}"
        + (f" with tensor parallelism {tp}" if tp > 1 else "")
        + f": vLLM may use {fmt_gib(fit.budget)} per GPU (--gpu-memory-utilization "
        f"{fit.utilization:.2f}); weights and reserve take {fmt_gib(fixed)}, leaving "
        f"{fmt_gib(max(fit.kv_bytes, 0))} for the KV cache, and one {max_len:,}-token sequence "
        f"needs {fmt_gib(per_seq)}."
    ]
    embedding_share = embedding_gpu_fraction(gpu.total_bytes, engine)
    if embedding_share:
        parts.append(
            f"The embedding engine holds {fmt_gib(int(embedding_share * gpu.total_bytes))} of "
            "it: SERVING_EMBEDDING_MODEL=off gives that to gpt-oss."
        )
    largest = _largest_context(spec, fit) if fit.kv_bytes > 0 else 0
    short = None
    if largest >= 2048:
        parts.append(
            f"Largest context that fits: {largest:,} tokens (SERVING_MAX_MODEL_LEN={largest}, "
            f"or `python -m serving plan --max-model-len {largest}`)."
        )
        if largest >= SHORT_CONTEXT:
            short, _ = short_counts(
                spec,
                fit.capacity.num_blocks,
                flags.GPU_BLOCK_SIZE,
                flags.GPU_BATCHES_IN_FLIGHT * fit.max_num_batched_tokens,
            )
            parts.append(
                f"With it, about {short:g} concurrent {SHORT_CONTEXT}-token sequences fit."
            )
    else:
        parts.append("The weights alone leave no useful room for a KV cache on this card.")
    bigger = _bigger_layout(gpu, spec, max_len, engine, dtype_bytes) if tp < 8 else None
    if bigger is not None and bigger > n:
        parts.append(
            f"{bigger} cards like this one with tensor parallelism {bigger} hold the full request "
            f"(`--gpus {bigger}`)."
        )
    one_card = (
        spec.weight_bytes()
        + spec.layout_allowance_bytes()
        + (fixed - sum(r.bytes for r in fit.rows if r.item in ("weights", "MXFP4 kernel layout")))
        + _request_bytes(spec, fit, max_len, 1, dtype_bytes)
    )
    parts.append(
        f"One card needs about {fmt_gib(int(one_card / DEFAULT_GPU_UTILIZATION))} in total "
        + (
            "(a 24 GB RTX 3090/4090 or larger)."
            if spec.name == "gpt-oss-20b"
            else "(an 80 GB A100/H100 or larger)."
        )
    )
    if gpu.free_bytes < gpu.total_bytes * card_class(gpu).utilization:
        parts.append(
            f"Other processes hold {fmt_gib(gpu.total_bytes - gpu.free_bytes)} of this GPU; "
            "stopping them frees that memory (see `python -m serving doctor`)."
        )
    return PlanRefused(" ".join(parts), largest_context=largest or None, largest_concurrency=short)


def cuda_plan(
    hardware: Hardware, engine: EngineSettings, smoke_model_dir: Path | None
) -> EnginePlan:
    spec = model_spec(engine.model_family)
    gpus = hardware.gpus
    gpu = min(gpus, key=lambda g: (g.total_bytes, g.free_bytes))
    if gpu.compute_capability < (8, 0):
        raise PlanRefused(
            f"{gpu.name} is {gpu.sm}; vLLM {flags.VLLM_VERSION_CHECKED} runs gpt-oss (MXFP4 "
            "MoE, attention sinks) on compute capability 8.0+ (Ampere, Ada, Hopper, Blackwell)."
        )
    max_len = engine.max_model_len or spec.max_context
    if max_len > spec.max_context:
        raise PlanRefused(
            f"max_model_len {max_len:,} is beyond {spec.name}'s "
            f"{spec.max_context:,}-token context.",
            largest_context=spec.max_context,
        )
    dtype_bytes = 1 if engine.kv_cache_dtype == "fp8" else 2
    n = len(gpus)
    options = _parallel_options(spec, n)
    fit = tp = None
    for tp in options:
        fit = _fit_tuned(gpu, spec, tp, n // tp, max_len, engine, dtype_bytes)
        if fit.capacity.max_concurrency >= 1:
            break
    assert fit is not None and tp is not None  # options always holds tp=1
    if fit.capacity.max_concurrency < 1:
        raise _refusal(spec, gpu, n, max_len, fit, tp, engine, dtype_bytes)
    dp = n // tp
    return _cuda_result(
        hardware, engine, smoke_model_dir, spec, gpu, fit, tp, dp, max_len, dtype_bytes
    )


def _cuda_result(
    hardware: Hardware,
    engine: EngineSettings,
    smoke_model_dir: Path | None,
    spec: ModelSpec,
    gpu: Gpu,
    fit: _Fit,
    tp: int,
    dp: int,
    max_len: int,
    dtype_bytes: int,
) -> EnginePlan:
    model = engine.model
    if (
        engine.model_family != "gpt-oss-20b"
        and model == EngineSettings.model_fields["model"].default
    ):
        model = spec.hf_id or model  # the default id names 20b; follow the chosen family
    parallel: list[str] = []
    if tp > 1:
        parallel += [flags.TENSOR_PARALLEL_FLAG, str(tp)]
    if dp > 1:
        parallel += [flags.DATA_PARALLEL_FLAG, str(dp)]
    argv = [
        sys.executable,
        "-m",
        flags.API_SERVER_MODULE,
        *model_args(engine, spec, model, smoke_model_dir),
        *serve_flags(engine, spec.served_names),
        "--max-model-len",
        str(max_len),
        "--gpu-memory-utilization",
        f"{fit.utilization:.3g}",
        "--max-num-seqs",
        str(fit.max_num_seqs),
        "--max-num-batched-tokens",
        str(fit.max_num_batched_tokens),
        *parallel,
        *(["--kv-cache-dtype", "fp8"] if engine.kv_cache_dtype == "fp8" else []),
        *flags.GENERATION_FLAGS.get(gpu.generation, ()),
        *flags.TOOL_CALL_FLAGS,
        *flags.REASONING_FLAGS,
        *engine.extra_vllm_args,
    ]
    notes = [flags.GENERATION_NOTES.get(gpu.generation, "")]
    if tp > 1:
        notes.append(f"Tensor parallel {tp}: {spec.name}'s weights do not fit one card.")
    if dp > 1:
        notes.append(
            f"Data parallel {dp}: {dp} engine replicas behind one API server (vLLM's own)."
        )
    if len({g.total_bytes for g in hardware.gpus}) > 1:
        notes.append(f"Mixed GPUs: planned for the smallest, {gpu.name}.")
    embedding_share = embedding_gpu_fraction(gpu.total_bytes, engine)
    if embedding_share:
        notes.append(
            f"The companion embedding engine gets {embedding_share:.3g} of the card "
            f"({fmt_gib(int(embedding_share * gpu.total_bytes))}); SERVING_EMBEDDING_MODEL=off "
            "gives it to the KV cache."
        )
    if (round(fit.utilization + embedding_share, 3) < card_class(gpu).utilization
            and engine.gpu_memory_utilization is None):
        notes.append(
            f"Other processes hold {fmt_gib(gpu.total_bytes - gpu.free_bytes)}; "
            f"utilization lowered to {fit.utilization:.2f}."
        )
    return EnginePlan(
        profile="cuda",
        argv=tuple(argv),
        env={},
        max_model_len=max_len,
        quantization=spec.quantization,
        served_model_names=spec.served_names,
        model=str(spec.config_dir) if engine.synthetic_weights else model,
        model_family=spec.name,
        memory=fit.rows,
        memory_budget_bytes=fit.budget,
        concurrency=concurrency_for(
            spec,
            fit.capacity,
            max_len,
            flags.GPU_BLOCK_SIZE,
            flags.GPU_BATCHES_IN_FLIGHT * fit.max_num_batched_tokens,
            dp,
        ),
        kv_bytes_per_token=kv_cache_bytes_per_token(spec, dtype_bytes, tensor_parallel=tp),
        gpu=gpu,
        gpu_count=len(hardware.gpus),
        tensor_parallel_size=tp,
        data_parallel_size=dp,
        gpu_memory_utilization=fit.utilization,
        max_num_seqs=fit.max_num_seqs,
        max_num_batched_tokens=fit.max_num_batched_tokens,
        notes=tuple(n for n in notes if n),
    )
