"""The CUDA profile: fit gpt-oss on the detected (or preset) GPUs, or refuse with advice.

Per GPU, ``memory`` splits vLLM's budget into the terms vLLM itself charges; the rest is KV
cache, counted in vLLM's block arithmetic (``kv_cache``) so the concurrency shown is what
vLLM logs. ``topology`` tries every tensor x data parallel layout and picks one by an
explicit objective; ``refusal`` explains when none fits.
"""

from __future__ import annotations

import sys
from pathlib import Path

from serving.catalogue import catalogue_for
from serving.config import EngineSettings
from serving.launcher.hardware import Gpu, Hardware
from serving.launcher.plan import cards, flags
from serving.launcher.plan.embedding_share import embedding_gpu_fraction
from serving.launcher.plan.kv_cache import concurrency_for, kv_cache_bytes_per_token
from serving.launcher.plan.model_spec import ModelSpec, model_spec
from serving.launcher.plan.refusal import refusal
from serving.launcher.plan.throughput import sidecar_workers
from serving.launcher.plan.topology import Fit, FitRequest, choose, fits
from serving.launcher.plan.types import EnginePlan, PlanRefused, TopologyOption, fmt_gib


def _check_request(gpu: Gpu, spec: ModelSpec, max_len: int) -> None:
    if gpu.compute_capability < (8, 0):
        raise PlanRefused(
            f"{gpu.name} is {gpu.sm}; vLLM {flags.VLLM_VERSION_CHECKED} runs gpt-oss (MXFP4 "
            "MoE, attention sinks) on compute capability 8.0+ (Ampere, Ada, Hopper, Blackwell)."
        )
    if max_len > spec.max_context:
        raise PlanRefused(
            f"max_model_len {max_len:,} is beyond {spec.name}'s "
            f"{spec.max_context:,}-token context.",
            largest_context=spec.max_context,
        )


def cuda_plan(
    hardware: Hardware, engine: EngineSettings, smoke_model_dir: Path | None
) -> EnginePlan:
    spec = model_spec(engine.model_family)
    gpu = min(hardware.gpus, key=lambda g: (g.total_bytes, g.free_bytes))
    max_len = engine.max_model_len or spec.max_context
    _check_request(gpu, spec, max_len)
    request = FitRequest(spec, gpu, len(hardware.gpus), max_len, engine)
    layout, options = choose(request)
    if not fits(request, layout):
        raise refusal(request, layout)
    return _result(hardware, request, layout, options, smoke_model_dir)


def _argv(request: FitRequest, layout: Fit, smoke_model_dir: Path | None) -> list[str]:
    engine, spec = request.engine, request.spec
    model = _model_id(engine)
    tp, dp = layout.tensor_parallel, layout.data_parallel
    parallel = [flags.TENSOR_PARALLEL_FLAG, str(tp)] if tp > 1 else []
    parallel += [flags.DATA_PARALLEL_FLAG, str(dp)] if dp > 1 else []
    return [
        sys.executable,
        "-m",
        flags.API_SERVER_MODULE,
        *flags.model_args(engine, spec, model, smoke_model_dir),
        *flags.serve_flags(engine, catalogue_for(engine.model_family).served_names),
        "--max-model-len",
        str(request.max_model_len),
        "--gpu-memory-utilization",
        f"{layout.shape.utilization:.3g}",
        "--max-num-seqs",
        str(layout.shape.max_num_seqs),
        "--max-num-batched-tokens",
        str(layout.shape.max_num_batched_tokens),
        *parallel,
        *(["--kv-cache-dtype", "fp8"] if engine.kv_cache_dtype == "fp8" else []),
        *flags.GENERATION_FLAGS.get(request.gpu.generation, ()),
        *flags.TOOL_CALL_FLAGS,
        *flags.REASONING_FLAGS,
        *engine.extra_vllm_args,
    ]


def _model_id(engine: EngineSettings) -> str:
    if engine.model == EngineSettings.model_fields["model"].default:
        return catalogue_for(engine.model_family).hf_id  # the default names 20b; follow the family
    return engine.model


def _topology_note(options: tuple[TopologyOption, ...]) -> str:
    if len(options) < 2:
        return ""
    chosen = next(o for o in options if o.chosen)
    others = "; ".join(
        f"{o.label}: "
        + (f"{o.full_length_sequences} full-length sequences, "
           f"~{o.expected_output_tokens_per_s:,.0f} tok/s" if o.fits else "does not fit")
        for o in options if not o.chosen
    )
    return (
        f"Topology {chosen.label}: {chosen.full_length_sequences} full-length sequences at once, "
        f"~{chosen.expected_output_tokens_per_s:,.0f} output tok/s (most full-context "
        f"sequences first, then throughput). Alternatives: {others}."
    )


def _notes(
    hardware: Hardware, request: FitRequest, layout: Fit, options: tuple[TopologyOption, ...]
) -> list[str]:
    gpu, engine = request.gpu, request.engine
    notes = [flags.GENERATION_NOTES.get(gpu.generation, ""), _topology_note(options)]
    if layout.data_parallel > 1:
        notes.append(
            f"Data parallel {layout.data_parallel}: {layout.data_parallel} engines behind one API "
            "server (vLLM's own); the MoE experts are still split over all cards."
        )
    if len({g.total_bytes for g in hardware.gpus}) > 1:
        notes.append(f"Mixed GPUs: planned for the smallest, {gpu.name}.")
    share = embedding_gpu_fraction(gpu.total_bytes, engine)
    if share:
        notes.append(
            f"The companion embedding engine gets {share:.3g} of the card "
            f"({fmt_gib(int(share * gpu.total_bytes))}); SERVING_EMBEDDING_MODEL=off "
            "gives it to the KV cache."
        )
    if (round(layout.shape.utilization + share, 3) < cards.card_class(gpu).utilization
            and engine.gpu_memory_utilization is None):
        notes.append(
            f"Other processes hold {fmt_gib(gpu.total_bytes - gpu.free_bytes)}; "
            f"utilization lowered to {layout.shape.utilization:.2f}."
        )
    return [n for n in notes if n]


def _result(
    hardware: Hardware,
    request: FitRequest,
    layout: Fit,
    options: tuple[TopologyOption, ...],
    smoke_model_dir: Path | None,
) -> EnginePlan:
    spec, engine = request.spec, request.engine
    chosen = next(o for o in options if o.chosen)
    kv_row = layout.rows[-1]
    return EnginePlan(
        profile="cuda",
        argv=tuple(_argv(request, layout, smoke_model_dir)),
        env={},
        max_model_len=request.max_model_len,
        quantization=spec.quantization,
        catalogue=catalogue_for(engine.model_family),
        model=str(spec.config_dir) if engine.synthetic_weights else _model_id(engine),
        model_family=spec.name,
        memory=(*layout.rows[:-1], kv_row),
        memory_budget_bytes=layout.budget,
        concurrency=concurrency_for(
            spec, layout.capacity, request.max_model_len, layout.blocks, layout.data_parallel
        ),
        kv_bytes_per_token=kv_cache_bytes_per_token(
            spec, request.dtype_bytes, tensor_parallel=layout.tensor_parallel
        ),
        gpu=request.gpu,
        gpu_count=len(hardware.gpus),
        tensor_parallel_size=layout.tensor_parallel,
        data_parallel_size=layout.data_parallel,
        gpu_memory_utilization=layout.shape.utilization,
        max_num_seqs=layout.shape.max_num_seqs,
        max_num_batched_tokens=layout.shape.max_num_batched_tokens,
        notes=tuple(_notes(hardware, request, layout, options)),
        topology=options,
        sidecar_workers=sidecar_workers(chosen.expected_output_tokens_per_s),
        expected_output_tokens_per_s=chosen.expected_output_tokens_per_s,
    )
