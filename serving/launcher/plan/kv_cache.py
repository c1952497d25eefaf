"""What the KV cache costs, in vLLM 0.32's own block arithmetic.

Mirrors the hybrid KV cache manager (``vllm/v1/core/kv_cache_utils.py``): full-attention and
sliding-window layers form separate groups that draw blocks from one shared pool; a request
of length L holds ``cdiv(L, block)`` blocks in the full group and at most
``cdiv(min(window - 1 + in_flight_tokens, L), block) + 1`` blocks in the sliding group
(``SlidingWindowSpec.max_admission_blocks_per_request``). So the concurrency shown is what
vLLM logs at start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from serving.launcher.plan.model_spec import ModelSpec
from serving.launcher.plan.types import FULL_CONTEXT, SHORT_CONTEXT, Concurrency


def kv_cache_bytes_per_token(spec: ModelSpec, dtype_bytes: int, *, tensor_parallel: int = 1) -> int:
    """KV bytes one more token of context costs on one GPU: the full-attention layers only.

    ``full_layers x 2 (K and V) x kv_heads x head_dim x dtype_bytes``; gpt-oss-20b in bf16:
    12 x 2 x 8 x 64 x 2 = 24576 bytes (24 KiB) per token, 3 GiB for 131072 tokens.
    Sliding-window layers cost a bounded amount per sequence (see ``kv_blocks_per_request``).
    """
    kv_heads = max(1, spec.num_kv_heads // tensor_parallel)
    return spec.full_attention_layers * 2 * kv_heads * spec.head_dim * dtype_bytes


def _layer_token_bytes(spec: ModelSpec, dtype_bytes: int, tensor_parallel: int) -> int:
    return 2 * max(1, spec.num_kv_heads // tensor_parallel) * spec.head_dim * dtype_bytes


def kv_block_bytes(
    spec: ModelSpec, dtype_bytes: int, block_size: int, tensor_parallel: int = 1
) -> int:
    """Bytes of one block of vLLM's shared pool: one page for every layer of the largest group."""
    group_layers = max(spec.full_attention_layers, spec.sliding_attention_layers)
    return group_layers * block_size * _layer_token_bytes(spec, dtype_bytes, tensor_parallel)


def kv_blocks_per_request(
    spec: ModelSpec, tokens: int, *, block_size: int, in_flight_tokens: int
) -> int:
    """Pool blocks one request of ``tokens`` tokens reserves (vLLM's admission bound)."""
    full = math.ceil(tokens / block_size) if spec.full_attention_layers else 0
    sliding = 0
    if spec.sliding_attention_layers:
        held = min(spec.sliding_window - 1 + in_flight_tokens, tokens)
        sliding = math.ceil(held / block_size) + 1  # +1: the window may straddle a block
    return full + sliding


def kv_blocks_decoding(spec: ModelSpec, tokens: int, *, block_size: int) -> int:
    """Blocks a request holds while decoding (out-of-window sliding blocks already freed)."""
    full = math.ceil(tokens / block_size) if spec.full_attention_layers else 0
    sliding = 0
    if spec.sliding_attention_layers:
        sliding = math.ceil(min(spec.sliding_window, tokens) / block_size) + 1
    return full + sliding


@dataclass(frozen=True)
class KvCapacity:
    """What vLLM will report at start-up for a pool of ``kv_bytes``."""

    num_blocks: int
    max_concurrency: float  # "Maximum concurrency for <max_model_len> tokens per request"
    kv_cache_tokens: int  # "KV cache size: <n> tokens" (= int(max_concurrency * max_model_len))


@dataclass(frozen=True)
class BlockLayout:
    """How one engine pages its KV cache: block size and tokens in flight per request."""

    block_size: int
    in_flight_tokens: int
    dtype_bytes: int = 2
    tensor_parallel: int = 1


def kv_capacity(
    spec: ModelSpec, kv_bytes: int, layout: BlockLayout, *, max_model_len: int
) -> KvCapacity:
    """Mirror of vLLM 0.32 ``get_kv_cache_config_from_groups`` + ``get_kv_cache_capacity``."""
    per_block = kv_block_bytes(spec, layout.dtype_bytes, layout.block_size, layout.tensor_parallel)
    num_blocks = max(0, kv_bytes) // per_block
    per_request = kv_blocks_per_request(
        spec, max_model_len, block_size=layout.block_size, in_flight_tokens=layout.in_flight_tokens
    )
    concurrency = num_blocks / per_request
    return KvCapacity(num_blocks, concurrency, int(concurrency * max_model_len))


def request_bytes(spec: ModelSpec, tokens: int, layout: BlockLayout) -> int:
    """KV bytes (per GPU) that vLLM reserves for one request of ``tokens`` tokens."""
    blocks = kv_blocks_per_request(
        spec, tokens, block_size=layout.block_size, in_flight_tokens=layout.in_flight_tokens
    )
    return blocks * kv_block_bytes(
        spec, layout.dtype_bytes, layout.block_size, layout.tensor_parallel
    )


def largest_context(spec: ModelSpec, num_blocks: int, layout: BlockLayout) -> int:
    """Longest max_model_len for which one sequence fits in ``num_blocks`` (1024-aligned)."""
    low, high = 0, spec.max_context
    while low < high:
        mid = (low + high + 1) // 2
        need = kv_blocks_per_request(
            spec, mid, block_size=layout.block_size, in_flight_tokens=layout.in_flight_tokens
        )
        low, high = (mid, high) if need <= num_blocks else (low, mid - 1)
    return low - low % 1024 if low >= 1024 else low


def short_counts(
    spec: ModelSpec, num_blocks: int, block: int, in_flight: int
) -> tuple[float, float]:
    admission = kv_blocks_per_request(
        spec, SHORT_CONTEXT, block_size=block, in_flight_tokens=in_flight
    )
    decoding = kv_blocks_decoding(spec, SHORT_CONTEXT, block_size=block)
    return round(num_blocks / admission, 1), round(num_blocks / decoding, 1)


def concurrency_for(
    spec: ModelSpec, cap: KvCapacity, max_len: int, layout: BlockLayout, dp: int
) -> Concurrency:
    full = None
    block, in_flight = layout.block_size, layout.in_flight_tokens
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
