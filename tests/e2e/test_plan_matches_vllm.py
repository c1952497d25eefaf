"""The plan's KV arithmetic against what the real engine computed for the smoke checkpoint.

vLLM 0.32 logs at start-up (vllm/v1/worker/cpu_worker.py, vllm/v1/core/kv_cache_utils.py):
  "Explicitly set (2.0/23.54) GiB for KV cache on node 0."
  "CPU KV cache size: 3,273,113 tokens, Maximum concurrency for 8,192 tokens per request: 399.55x"
From the KV bytes, the reported concurrency and the plan's per-request block count, the bytes
per token follow; they must equal ``kv_cache_bytes_per_token`` for the checkpoint's config.
"""

from __future__ import annotations

import re

import pytest

from serving.config import EngineSettings
from serving.launcher.hardware import Hardware
from serving.launcher.plan import build_plan
from serving.launcher.plan import flags as vllm_flags
from serving.launcher.plan.kv_cache import (
    BlockLayout,
    kv_blocks_per_request,
    kv_cache_bytes_per_token,
    kv_capacity,
)
from serving.launcher.plan.model_spec import DTYPE_BYTES, GiB, local_spec

CAPACITY = re.compile(
    r"(?:CPU|GPU)(?: \+ host)? KV cache size: ([\d,]+) tokens, "
    r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x"
)
KV_SPACE = re.compile(r"Explicitly set \(([\d.]+)/[\d.]+\) GiB for KV cache")

pytestmark = pytest.mark.e2e


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_kv_bytes_per_token_match_vllm(stack) -> None:  # type: ignore[no-untyped-def]
    log = stack.vllm_log.read_text(errors="replace")
    capacity = CAPACITY.findall(log)
    space = KV_SPACE.findall(log)
    assert capacity, f"no KV cache size line in {stack.vllm_log}"
    assert space, f"no explicit KV cache space line in {stack.vllm_log}"
    tokens, max_len, concurrency = (
        _number(capacity[-1][0]),
        _number(capacity[-1][1]),
        float(capacity[-1][2]),
    )
    kv_bytes = round(float(space[-1]) * GiB)

    plan = build_plan(
        Hardware(cpu_count=2), EngineSettings(engine="cpu"), smoke_model_dir=stack.model_dir
    )
    assert plan.max_model_len == max_len, "the stack ran another max_model_len than the plan"
    spec = local_spec(stack.model_dir)
    argv = list(plan.argv)
    dtype_bytes = DTYPE_BYTES[argv[argv.index("--dtype") + 1]]
    block = vllm_flags.CPU_BLOCK_SIZE
    in_flight = vllm_flags.CPU_BATCHES_IN_FLIGHT * plan.max_num_batched_tokens

    # bytes per token implied by vLLM: pool bytes / (blocks in the pool x tokens per block);
    # a pool block holds one page per layer of the largest KV group.
    per_request = kv_blocks_per_request(spec, max_len, block_size=block, in_flight_tokens=in_flight)
    implied_block_bytes = kv_bytes / (concurrency * per_request)
    group_layers = max(spec.full_attention_layers, spec.sliding_attention_layers)
    implied_per_token = implied_block_bytes / block * spec.full_attention_layers / group_layers
    assert implied_per_token == pytest.approx(kv_cache_bytes_per_token(spec, dtype_bytes), rel=0.01)

    predicted = kv_capacity(
        spec, kv_bytes, BlockLayout(block, in_flight, dtype_bytes), max_model_len=max_len
    )
    assert predicted.max_concurrency == pytest.approx(concurrency, abs=0.01)
    assert predicted.kv_cache_tokens == pytest.approx(tokens, rel=0.001)
    assert plan.concurrency.kv_cache_tokens == predicted.kv_cache_tokens
