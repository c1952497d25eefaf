"""A rough decode-rate estimate, and the sidecar worker count that follows from it.

Assumption (stated, not measured): decode is memory-bandwidth-bound. One decode step of a
batch of B sequences reads every weight on the GPU once (with B >= 16 nearly every expert is
hit) plus the KV of every sequence, at ``BANDWIDTH_EFFICIENCY`` of the spec-sheet bandwidth;
parallel layouts add a fixed collective cost per layer and step. Sequences are assumed at
``SHORT_CONTEXT`` (4096) tokens. This ranks topologies and sizes the sidecar; it is not a
benchmark (``make bench`` measures the real figure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from serving.launcher.plan.kv_cache import kv_block_bytes, kv_blocks_decoding
from serving.launcher.plan.model_spec import ModelSpec
from serving.launcher.plan.types import SHORT_CONTEXT

BANDWIDTH_EFFICIENCY = 0.7
COLLECTIVE_SECONDS_PER_LAYER = 20e-6  # one all-reduce / all-gather per layer, NVLink-class
# Tokens/s one sidecar worker relays with headroom on its core. `make bench-relay` measured
# 57 µs of CPU per token on the OpenAI route and 82 on the Ollama route at 256 streams
# (benchmarks/results/20261130-184122-relay/): 10,000 tok/s is 57-82 % of one core, which
# leaves room for request setup bursts without pushing stream p99 up.
SIDECAR_WORKER_TOKENS_PER_S = 10_000
MAX_SIDECAR_WORKERS = 8


@dataclass(frozen=True)
class DecodeShape:
    spec: ModelSpec
    weight_bytes_per_gpu: int
    batch_per_engine: int
    engines: int
    tensor_parallel: int
    bandwidth_bytes_per_s: float
    kv_dtype_bytes: int = 2


def expected_output_tokens_per_s(shape: DecodeShape) -> float:
    """Output tokens/s of all engines together, each decoding ``batch_per_engine``."""
    spec, block = shape.spec, 16
    blocks = kv_blocks_decoding(spec, SHORT_CONTEXT, block_size=block)
    kv_per_seq = blocks * kv_block_bytes(spec, shape.kv_dtype_bytes, block, shape.tensor_parallel)
    step_bytes = shape.weight_bytes_per_gpu + shape.batch_per_engine * kv_per_seq
    step_s = step_bytes / (shape.bandwidth_bytes_per_s * BANDWIDTH_EFFICIENCY)
    if shape.tensor_parallel * shape.engines > 1:
        step_s += COLLECTIVE_SECONDS_PER_LAYER * spec.num_layers * (
            2 if shape.tensor_parallel > 1 else 1
        )
    return shape.engines * shape.batch_per_engine / step_s


def sidecar_workers(output_tokens_per_s: float) -> int:
    """ceil(expected rate / SIDECAR_WORKER_TOKENS_PER_S), between 1 and MAX_SIDECAR_WORKERS."""
    needed = math.ceil(output_tokens_per_s / SIDECAR_WORKER_TOKENS_PER_S)
    return max(1, min(MAX_SIDECAR_WORKERS, needed))
