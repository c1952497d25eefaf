"""The server's own token counters (vLLM's Prometheus ``/metrics``), to check our counts."""

from __future__ import annotations

import urllib.request

GENERATION_TOKENS = "vllm:generation_tokens_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
CACHED_PROMPT_TOKENS = "vllm:prompt_tokens_cached_total"  # prefix-cache hits
COUNTERS: tuple[str, ...] = (GENERATION_TOKENS, PROMPT_TOKENS, CACHED_PROMPT_TOKENS)


def prometheus_counter(text: str, name: str) -> float:
    """Sum of every series of counter ``name`` in Prometheus text format (0 if absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        if series == name or series.startswith(name + "{"):
            total += float(value)
    return total


def fetch_counters(metrics_url: str, timeout_s: float = 10.0) -> dict[str, float] | None:
    """Generated, prompt and prefix-cached token totals; None when unreachable."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8", "replace")
    except OSError:
        return None
    return {name: prometheus_counter(text, name) for name in COUNTERS}
