"""Proxy overhead: the same load, interleaved, direct to the engine vs through proxies.

Every round runs each target once in a latency phase (few users: what one request pays)
and once in a throughput phase (many users: the most requests/s the path carries), the
target order rotating between rounds so drift in the machine's load hits all targets
alike. Latency percentiles pool the records of all rounds; throughput is the median over
rounds. Ratios and added milliseconds are against the first target (the direct one).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.locustfile import USER_CLASSES, BenchContext
from benchmarks.metrics import RequestRecord, Slo, distribution, summarize
from benchmarks.results import clean_nan
from benchmarks.sweep import StepSpec, run_step
from benchmarks.workloads import PromptSource, load_workloads

PHASES: tuple[str, ...] = ("latency", "throughput")


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str
    api: str = "openai-chat-stream"
    api_key: str = ""


@dataclass
class OverheadConfig:
    targets: list[Target]
    workload: str = "chat"
    model: str = "gpt-oss-20b"
    rounds: int = 3
    latency_users: int = 1
    throughput_users: int = 32
    step_seconds: float = 10.0
    drain_seconds: float = 30.0
    seed: int = 1
    warmup_seconds: float = (
        2.0  # per target, not recorded: connections, caches, JIT-less warm paths
    )
    results_dir: Path = Path("benchmarks/results")
    notes: dict[str, Any] = field(default_factory=dict)


def _phase_users(config: OverheadConfig, phase: str) -> int:
    return config.latency_users if phase == "latency" else config.throughput_users


def _run_rounds(
    config: OverheadConfig, emit: Callable[[str], None], raw: Any
) -> list[dict[str, Any]]:
    workload = load_workloads()[config.workload]
    steps: list[dict[str, Any]] = []
    for target in config.targets if config.warmup_seconds > 0 else ():
        context = BenchContext(
            workload, PromptSource(workload, -1), target.api_key, config.model, target.name
        )
        run_step(
            StepSpec(
                -1,
                USER_CLASSES[target.api],
                target.base_url,
                config.throughput_users,
                config.warmup_seconds,
                context,
                config.drain_seconds,
                None,
                f"[warm-up] {target.name}",
            ),
            lambda _: None,
        )
    for round_no in range(config.rounds):
        shift = round_no % len(config.targets)
        order = config.targets[shift:] + config.targets[:shift]
        for phase in PHASES:
            for target in order:
                index = len(steps)
                label = f"[round {round_no + 1}/{config.rounds} {phase}] {target.name}"
                context = BenchContext(
                    workload,
                    PromptSource(workload, config.seed * 1000 + index),
                    target.api_key,
                    config.model,
                    target.name,
                )
                spec = StepSpec(
                    index,
                    USER_CLASSES[target.api],
                    target.base_url,
                    _phase_users(config, phase),
                    config.step_seconds,
                    context,
                    config.drain_seconds,
                    None,
                    label,
                )
                records = run_step(spec, emit)
                for record in records:
                    raw.write(json.dumps(record.to_json()) + "\n")
                summary = summarize(records, Slo())
                emit(
                    f"{label}: {summary['completed']} ok, {summary['failed']} failed, "
                    f"{summary['request_throughput']:.1f} req/s, "
                    f"E2E p50 {summary['e2el_ms']['p50']:.2f} ms"
                )
                steps.append(
                    {
                        "round": round_no,
                        "phase": phase,
                        "target": target.name,
                        "summary": summary,
                        "records": records,
                    }
                )
    return steps


def _aggregate(steps: list[dict[str, Any]], target: str) -> dict[str, Any]:
    latency_records: list[RequestRecord] = [
        r
        for s in steps
        if s["target"] == target and s["phase"] == "latency"
        for r in s["records"]
        if r.ok
    ]
    tput = [s["summary"] for s in steps if s["target"] == target and s["phase"] == "throughput"]
    failed = sum(s["summary"]["failed"] for s in steps if s["target"] == target)
    return {
        "latency_requests": len(latency_records),
        "failed_requests": failed,
        "e2el_ms": distribution([r.e2el for r in latency_records]),
        "ttft_ms": distribution([r.ttft for r in latency_records if r.ttft is not None]),
        "max_request_throughput": statistics.median(s["request_throughput"] for s in tput)
        if tput
        else 0.0,
        "max_output_throughput": statistics.median(s["output_throughput"] for s in tput)
        if tput
        else 0.0,
    }


def _compare(base: dict[str, Any], other: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: float, b: float) -> float | None:
        return b / a if a and a == a and b == b else None  # a == a: not NaN

    def added(a: float, b: float) -> float | None:
        return b - a if a == a and b == b else None

    out: dict[str, float | None] = {}
    for metric in ("e2el_ms", "ttft_ms"):
        for q in ("p50", "p99"):
            out[f"{metric}_{q}_ratio"] = ratio(base[metric][q], other[metric][q])
            out[f"{metric}_{q}_added_ms"] = added(base[metric][q], other[metric][q])
    out["max_throughput_ratio"] = ratio(
        base["max_request_throughput"], other["max_request_throughput"]
    )
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or value != value else format(value, spec)


def report_lines(result: dict[str, Any]) -> list[str]:
    base_name = result["targets"][0]["name"]
    lines = [
        f"{'target':<18}{'E2E p50':>10}{'E2E p99':>10}{'TTFT p50':>10}{'TTFT p99':>10}"
        f"{'max req/s':>11}{'failed':>8}"
    ]
    for target in result["targets"]:
        a = result["aggregate"][target["name"]]
        lines.append(
            f"{target['name']:<18}"
            f"{_fmt(a['e2el_ms']['p50'], '10.2f')}{_fmt(a['e2el_ms']['p99'], '10.2f')}"
            f"{_fmt(a['ttft_ms']['p50'], '10.2f')}{_fmt(a['ttft_ms']['p99'], '10.2f')}"
            f"{a['max_request_throughput']:11.1f}{a['failed_requests']:8d}"
        )
    for name, c in result["comparison"].items():
        lines.append(
            f"{name} vs {base_name}: E2E p50 x{_fmt(c['e2el_ms_p50_ratio'], '.3f')} "
            f"(+{_fmt(c['e2el_ms_p50_added_ms'], '.2f')} ms), "
            f"p99 x{_fmt(c['e2el_ms_p99_ratio'], '.3f')}; "
            f"TTFT p50 x{_fmt(c['ttft_ms_p50_ratio'], '.3f')} "
            f"(+{_fmt(c['ttft_ms_p50_added_ms'], '.2f')} ms), "
            f"p99 x{_fmt(c['ttft_ms_p99_ratio'], '.3f')}; "
            f"max throughput x{_fmt(c['max_throughput_ratio'], '.3f')} "
            f"[targets: +<1 ms p50 and TTFT, >= 0.95 throughput]"
        )
    return lines


def run_overhead(config: OverheadConfig, emit: Callable[[str], None]) -> Path:
    out = config.results_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-overhead"
    out.mkdir(parents=True, exist_ok=False)
    names = [t.name for t in config.targets]
    emit(f"Proxy overhead: {', '.join(names)}; {config.rounds} rounds -> {out}")
    with (out / "raw.jsonl").open("w", encoding="utf-8") as raw:
        steps = _run_rounds(config, emit, raw)
    aggregate = {name: _aggregate(steps, name) for name in names}
    result = {
        "config": {
            **asdict(config),
            "results_dir": str(config.results_dir),
            "targets": [{**asdict(t), "api_key": "<redacted>"} for t in config.targets],
        },
        "targets": [{"name": t.name, "base_url": t.base_url, "api": t.api} for t in config.targets],
        "steps": [{k: v for k, v in s.items() if k != "records"} for s in steps],
        "aggregate": aggregate,
        "comparison": {name: _compare(aggregate[names[0]], aggregate[name]) for name in names[1:]},
    }
    (out / "overhead.json").write_text(
        json.dumps(clean_nan(result), indent=2, default=str) + "\n", encoding="utf-8"
    )
    lines = report_lines(result)
    (out / "overhead.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for line in lines:
        emit(line)
    return out
