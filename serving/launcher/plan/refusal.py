"""The refusal when the cards cannot hold the request: the numbers, the largest context that
fits, and the smallest number of such cards that holds the full context."""

from __future__ import annotations

from dataclasses import replace

from serving.launcher.plan import cards
from serving.launcher.plan.embedding_share import embedding_gpu_fraction
from serving.launcher.plan.kv_cache import (
    kv_block_bytes,
    largest_context,
    request_bytes,
    short_counts,
)
from serving.launcher.plan.topology import FIT_MARGIN_BYTES, Fit, FitRequest, choose, fits
from serving.launcher.plan.types import SHORT_CONTEXT, PlanRefused, fmt_gib

MAX_CARDS = 8


def cards_for_full_context(request: FitRequest) -> int | None:
    """The smallest count of cards like this one (more than now) whose best layout fits."""
    for count in (2, 4, 8):
        if count > request.gpus:
            layout, _ = choose(replace(request, gpus=count))
            if fits(request, layout):
                return count
    return None


def _headline(request: FitRequest, layout: Fit) -> str:
    gpu, tp = request.gpu, layout.tensor_parallel
    fixed = layout.budget - layout.kv_bytes
    per_seq = request_bytes(request.spec, request.max_model_len, layout.blocks)
    return (
        f"{request.spec.name} with a {request.max_model_len:,}-token context does not fit on "
        f"{request.gpus} x {gpu.name} ({fmt_gib(gpu.total_bytes)})"
        + (f" with tensor parallelism {tp}" if tp > 1 else "")
        + f": vLLM may use {fmt_gib(layout.budget)} per GPU (--gpu-memory-utilization "
        f"{layout.shape.utilization:.2f} of the {fmt_gib(layout.shape.cuda_total)} CUDA "
        f"reports); weights and reserves take {fmt_gib(fixed)}, leaving "
        f"{fmt_gib(max(layout.kv_bytes, 0))} for the KV cache, and one "
        f"{request.max_model_len:,}-token sequence needs {fmt_gib(per_seq)}."
    )


def _context_advice(request: FitRequest, layout: Fit) -> tuple[list[str], int, float | None]:
    b = layout.blocks
    block_bytes = kv_block_bytes(request.spec, b.dtype_bytes, b.block_size, b.tensor_parallel)
    blocks = max(0, layout.kv_bytes - FIT_MARGIN_BYTES) // block_bytes  # as ``fits`` counts
    largest = largest_context(request.spec, blocks, layout.blocks) if layout.kv_bytes > 0 else 0
    if largest < 2048:
        return ["The weights alone leave no useful room for a KV cache on this card."], 0, None
    parts = [
        f"Largest context that fits: {largest:,} tokens (SERVING_MAX_MODEL_LEN={largest}, "
        f"or `python -m serving plan --max-model-len {largest}`)."
    ]
    short = None
    if largest >= SHORT_CONTEXT:
        short, _ = short_counts(
            request.spec, blocks, layout.blocks.block_size, layout.blocks.in_flight_tokens
        )
        parts.append(f"With it, about {short:g} concurrent {SHORT_CONTEXT}-token sequences fit.")
    return parts, largest, short


def refusal(request: FitRequest, layout: Fit) -> PlanRefused:
    gpu, engine = request.gpu, request.engine
    parts = [_headline(request, layout)]
    share = embedding_gpu_fraction(gpu.total_bytes, engine)
    if share:
        parts.append(
            f"The embedding engine holds {fmt_gib(int(share * gpu.total_bytes))} of "
            "it: SERVING_EMBEDDING_MODEL=off gives that to gpt-oss."
        )
    advice, largest, short = _context_advice(request, layout)
    parts += advice
    needed = cards_for_full_context(request)
    if needed is not None:
        parts.append(
            f"{needed} cards like this one hold the full {request.max_model_len:,}-token "
            f"context (`--gpus {needed}`; see `python -m serving plan --gpu ... --gpus {needed}`)."
        )
    parts.append(
        "One card for it: "
        + ("a 24 GB RTX 3090/4090 or larger." if request.spec.name == "gpt-oss-20b"
           else "an 80 GB H100 (Hopper layout) with a shorter context, or a 141 GB H200.")
    )
    if gpu.free_bytes < gpu.total_bytes * cards.card_class(gpu).utilization:
        parts.append(
            f"Other processes hold {fmt_gib(gpu.total_bytes - gpu.free_bytes)} of this GPU; "
            "stopping them frees that memory (see `python -m serving doctor`)."
        )
    return PlanRefused(
        " ".join(parts),
        largest_context=largest or None,
        largest_concurrency=short,
        cards_for_full_context=needed,
    )
