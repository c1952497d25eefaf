"""Per-request timing metrics and their aggregation, following ``vllm bench serve``.

Pure functions only: no I/O, no Locust, no clocks. The definitions (also in
``benchmarks/README.md``):

- TTFT: request sent -> first chunk that carries generated text (``content`` or
  reasoning), not the role-only chunk.
- ITL: every gap between two consecutive text-carrying chunks.
- TPOT: ``(E2EL - TTFT) / (output_tokens - 1)`` when the server reports more than one
  output token.
- E2EL: request sent -> last byte of the response.

Percentiles use linear interpolation between closest ranks (numpy's default), computed
from the raw per-request records, never from Locust's rounded buckets.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)


@dataclass(frozen=True)
class Timing:
    """Timing of one request, in seconds, from the moment it was sent."""

    e2el: float
    ttft: float | None
    itl: tuple[float, ...]
    tpot: float | None


@dataclass
class RequestRecord:
    """One request as written to ``raw.jsonl`` (one JSON object a line)."""

    api: str
    workload: str
    target: str
    start: float  # wall clock (epoch seconds) when the request was sent
    ok: bool
    status: int
    e2el: float
    ttft: float | None = None
    tpot: float | None = None
    itl: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    token_source: str = "usage"  # "usage": the server's count; "chunks": usage missing
    chunks: int = 0
    error: str | None = None
    step: int = 0
    concurrency: int = 0

    @property
    def end(self) -> float:
        return self.start + self.e2el

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(**data)


def compute_timing(
    sent: float,
    token_chunk_times: Sequence[float],
    done: float,
    output_tokens: int,
    *,
    streamed: bool,
) -> Timing:
    """Derive TTFT/ITL/TPOT/E2EL from monotonic timestamps of the text-carrying chunks.

    ``sent`` is when the request left, ``done`` when the last byte arrived. For a
    non-streaming request TTFT, ITL and TPOT are undefined (``None``/empty).
    """
    e2el = done - sent
    if not streamed or not token_chunk_times:
        return Timing(e2el=e2el, ttft=None, itl=(), tpot=None)
    ttft = token_chunk_times[0] - sent
    itl = tuple(b - a for a, b in itertools.pairwise(token_chunk_times))
    tpot = (e2el - ttft) / (output_tokens - 1) if output_tokens > 1 else None
    return Timing(e2el=e2el, ttft=ttft, itl=itl, tpot=tpot)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: Sequence[float], *, scale: float = 1000.0) -> dict[str, float]:
    """mean/median/p90/p95/p99 of ``values`` (seconds), scaled (default: to ms)."""
    if not values:
        return {"mean": math.nan, **{f"p{q}": math.nan for q in PERCENTILES}}
    stats = {"mean": scale * sum(values) / len(values)}
    stats.update({f"p{q}": scale * percentile(values, q) for q in PERCENTILES})
    return stats


@dataclass(frozen=True)
class Slo:
    """The latency target: p50 and p95 end-to-end latency within ``e2el_s``."""

    e2el_s: float = 4.0
    max_error_rate: float = 0.01


def summarize(records: Sequence[RequestRecord], slo: Slo) -> dict[str, Any]:
    """Aggregate one group of requests (one step of a sweep, one target of a round).

    The duration runs from the first request sent to the last one finished, so the
    throughputs count every token produced in the window (``vllm bench serve``'s way).
    """
    done = [r for r in records if r.ok]
    failed = len(records) - len(done)
    duration = (max(r.end for r in records) - min(r.start for r in records)) if records else 0.0
    per_s = (lambda x: x / duration) if duration > 0 else (lambda x: 0.0)
    output_tokens = sum(r.output_tokens for r in done)
    prompt_tokens = sum(r.prompt_tokens for r in done)
    within_slo = [r for r in done if r.e2el <= slo.e2el_s]
    return {
        "requests": len(records),
        "completed": len(done),
        "failed": failed,
        "error_rate": failed / len(records) if records else 0.0,
        "duration_s": duration,
        "request_throughput": per_s(len(done)),
        "output_throughput": per_s(output_tokens),
        "total_token_throughput": per_s(output_tokens + prompt_tokens),
        "goodput": per_s(len(within_slo)),
        "output_tokens": output_tokens,
        "prompt_tokens": prompt_tokens,
        "mean_output_tokens": output_tokens / len(done) if done else 0.0,
        "token_source_chunks": sum(1 for r in done if r.token_source != "usage"),
        "e2el_ms": distribution([r.e2el for r in done]),
        "ttft_ms": distribution([r.ttft for r in done if r.ttft is not None]),
        "tpot_ms": distribution([r.tpot for r in done if r.tpot is not None]),
        "itl_ms": distribution([gap for r in done for gap in r.itl]),
        "errors": _error_counts(records),
    }


def _error_counts(records: Iterable[RequestRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        if not record.ok:
            key = record.error or f"HTTP {record.status}"
            counts[key[:120]] = counts.get(key[:120], 0) + 1
    return counts


def meets_slo(summary: dict[str, Any], slo: Slo) -> bool:
    e2el = summary["e2el_ms"]
    limit_ms = slo.e2el_s * 1000.0
    return (
        summary["completed"] > 0
        and summary["error_rate"] <= slo.max_error_rate
        and e2el["p50"] <= limit_ms
        and e2el["p95"] <= limit_ms
    )


def slo_verdict(
    steps: Sequence[dict[str, Any]], slo: Slo, *, key: str = "concurrency"
) -> dict[str, Any]:
    """The highest load level of the passing run that starts at the lowest level.

    ``steps`` are step summaries carrying ``key`` ("concurrency", or "rate" for constant
    arrival-rate sweeps). Levels are walked in increasing order; the first failing level
    ends the walk, so a lucky pass above a failure does not count.
    """
    best: dict[str, Any] | None = None
    for step in sorted(steps, key=lambda s: s[key]):
        if not meets_slo(step, slo):
            break
        best = step
    verdict: dict[str, Any] = {"level_kind": key, "max_level": None, "slo_e2el_s": slo.e2el_s}
    if best is not None:
        verdict.update(
            max_level=best[key],
            p50_e2el_s=best["e2el_ms"]["p50"] / 1000.0,
            p95_e2el_s=best["e2el_ms"]["p95"] / 1000.0,
            goodput=best["goodput"],
            output_throughput=best["output_throughput"],
        )
    return verdict


def verdict_line(verdict: dict[str, Any], workload: str) -> str:
    """The one line printed at the end of a sweep."""
    head = f"SLO verdict ({workload}, p50 & p95 E2E <= {verdict['slo_e2el_s']:g} s):"
    if verdict["max_level"] is None:
        return f"{head} no level met the target"
    unit = "concurrency" if verdict["level_kind"] == "concurrency" else "arrival rate (req/s)"
    return (
        f"{head} max {unit} {verdict['max_level']:g} (p50 {verdict['p50_e2el_s']:.2f} s, "
        f"p95 {verdict['p95_e2el_s']:.2f} s), goodput {verdict['goodput']:.2f} req/s, "
        f"{verdict['output_throughput']:.1f} output tok/s"
    )
