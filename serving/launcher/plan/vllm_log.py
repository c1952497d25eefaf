"""Read vLLM's start-up memory lines back, to set them beside the plan's prediction.

The formats are vLLM 0.32's own (``v1/worker/gpu_model_runner.py``: "Model loading took %s GiB
memory and %.6f seconds"; ``v1/worker/gpu_worker.py``: "Available KV cache memory: %s GiB";
``v1/core/kv_cache_utils.py``: "%s KV cache size: %s tokens, Maximum concurrency for %s
tokens per request: %.2fx"). Older releases wrote "Model loading took X GiB and ..." (no
"memory"); both are read. The last occurrence wins (a restarted engine logs again).
"""

from __future__ import annotations

import re

_WEIGHTS = re.compile(r"Model loading took (-?[\d.]+) GiB")
_KV = re.compile(r"Available KV cache memory: (-?[\d.]+) GiB")
_CAPACITY = re.compile(
    r"KV cache size: ([\d,]+) tokens, Maximum concurrency for ([\d,]+) tokens per request: "
    r"([\d.]+)x"
)


def parse_vllm_memory_log(text: str) -> dict[str, float | int]:
    """``weights_gib``, ``kv_cache_gib`` and, when logged, ``kv_cache_tokens``,
    ``max_model_len`` and ``max_concurrency``; keys are absent when their line is."""
    found: dict[str, float | int] = {}
    if weights := _WEIGHTS.findall(text):
        found["weights_gib"] = float(weights[-1])
    if kv := _KV.findall(text):
        found["kv_cache_gib"] = float(kv[-1])
    if capacity := _CAPACITY.findall(text):
        tokens, max_len, concurrency = capacity[-1]
        found["kv_cache_tokens"] = int(tokens.replace(",", ""))
        found["max_model_len"] = int(max_len.replace(",", ""))
        found["max_concurrency"] = float(concurrency)
    return found
