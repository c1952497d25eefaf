"""Headless sweeps: Locust as a library, one bounded step per load level.

Each step starts N users, lets them run for ``step_seconds``, then stops them
gracefully: in-flight requests finish (up to ``drain_seconds``) so every token the server
produced for the step is counted. Raw records are appended to ``raw.jsonl`` as the run
goes; percentiles are computed from them at the end.

Importing this module imports Locust, which monkey-patches the process with gevent: use
it from the CLI (``python -m benchmarks run``), not from a test process.
"""

from __future__ import annotations

import json
import logging
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust import constant_pacing
from locust.env import Environment
from locust.event import Events

from benchmarks.environment_info import collect_environment
from benchmarks.locustfile import USER_CLASSES, BenchContext, LLMUser
from benchmarks.metrics import RequestRecord, Slo, slo_verdict, summarize, verdict_line
from benchmarks.results import write_summary
from benchmarks.server_counters import (
    CACHED_PROMPT_TOKENS,
    GENERATION_TOKENS,
    PROMPT_TOKENS,
    fetch_counters,
)
from benchmarks.workloads import PromptSource, load_workloads

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepSpec:
    """One bounded load step against one target."""

    index: int
    user_class: type[LLMUser]
    host: str
    users: int
    seconds: float
    context: BenchContext
    drain_seconds: float = 60.0
    rate: float | None = None  # constant arrival rate (req/s over all users), else closed loop
    label: str = ""


def _paced(user_class: type[LLMUser], users: int, rate: float) -> type[LLMUser]:
    """The user class with each user starting a request every ``users / rate`` seconds."""
    return type(user_class.__name__, (user_class,), {"wait_time": constant_pacing(users / rate)})


def run_step(
    spec: StepSpec, progress: Callable[[str], None], interval_s: float = 2.0
) -> list[RequestRecord]:
    """Run one step to completion and return its request records."""
    records: list[RequestRecord] = []
    user_class = _paced(spec.user_class, spec.users, spec.rate) if spec.rate else spec.user_class
    env = Environment(
        user_classes=[user_class],
        host=spec.host,
        events=Events(),
        stop_timeout=spec.drain_seconds,
        parsed_options=Namespace(bench_context=spec.context, headless=True),
    )

    def on_request(context: dict[str, Any], **_: Any) -> None:
        record = context.get("record")
        if isinstance(record, RequestRecord):
            record.step, record.concurrency = spec.index, spec.users
            records.append(record)

    env.events.request.add_listener(on_request)
    runner = env.create_local_runner()
    started = time.monotonic()
    runner.start(spec.users, spawn_rate=min(spec.users, 100))
    while (left := spec.seconds - (time.monotonic() - started)) > 0:
        gevent.sleep(min(interval_s, left))
        progress(_progress_line(spec, records, time.monotonic() - started))
    runner.stop()  # graceful: waits up to drain_seconds for in-flight requests
    runner.quit()
    return records


def _progress_line(spec: StepSpec, records: list[RequestRecord], elapsed: float) -> str:
    ok = [r for r in records if r.ok]
    tokens = sum(r.output_tokens for r in ok)
    p50 = sorted(r.e2el for r in ok)[len(ok) // 2] if ok else float("nan")
    return (
        f"  {spec.label} {elapsed:5.1f}/{spec.seconds:g} s | "
        f"{len(ok)} ok, {len(records) - len(ok)} failed"
        f" | {tokens / max(elapsed, 1e-9):.1f} output tok/s | p50 E2E {p50 * 1000:.0f} ms"
    )


@dataclass
class SweepConfig:
    base_url: str
    api_key: str
    api: str = "openai-chat-stream"
    workload: str = "chat"
    model: str = "gpt-oss-20b"
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    rates: list[float] = field(default_factory=list)  # if set: arrival-rate sweep
    max_users: int = 64  # users available to an arrival-rate step
    step_seconds: float = 30.0
    drain_seconds: float = 60.0
    seed: int = 1
    slo_e2el_s: float = 4.0
    results_dir: Path = Path("benchmarks/results")
    plan_cmd: bool = True
    metrics_url: str = ""  # the engine's Prometheus /metrics: token counters checked per step


def _out_dir(results_dir: Path, host: str) -> Path:
    out = results_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{host}"
    out.mkdir(parents=True, exist_ok=False)
    return out


def run_sweep(config: SweepConfig, emit: Callable[[str], None]) -> Path:
    """Run every level, write raw records, summary and report; return the output dir."""
    workload = load_workloads()[config.workload]
    user_class = USER_CLASSES[config.api]
    environment = collect_environment(config.base_url, config.api_key, run_plan=config.plan_cmd)
    out = _out_dir(config.results_dir, environment["host"]["hostname"])
    levels: list[tuple[int, float | None]] = (
        [(config.max_users, rate) for rate in config.rates]
        if config.rates
        else [(users, None) for users in config.concurrency]
    )
    emit(f"Benchmark {config.api} / {config.workload} against {config.base_url} -> {out}")
    steps: list[dict[str, Any]] = []
    with (out / "raw.jsonl").open("w", encoding="utf-8") as raw:
        for index, (users, rate) in enumerate(levels):
            label = f"[step {index + 1}/{len(levels)}] " + (
                f"rate {rate:g}/s" if rate else f"concurrency {users}"
            )
            context = BenchContext(
                workload=workload,
                prompts=PromptSource(workload, config.seed * 1000 + index),
                api_key=config.api_key,
                model=config.model,
                target=config.base_url,
            )
            spec = StepSpec(
                index,
                user_class,
                config.base_url,
                users,
                config.step_seconds,
                context,
                config.drain_seconds,
                rate,
                label,
            )
            emit(f"{label}: {users} users for {config.step_seconds:g} s")
            before = fetch_counters(config.metrics_url) if config.metrics_url else None
            records = run_step(spec, emit)
            if config.metrics_url:
                gevent.sleep(0.5)  # let the engine's stats loop publish the last iteration
            after = fetch_counters(config.metrics_url) if config.metrics_url else None
            for record in records:
                raw.write(json.dumps(record.to_json()) + "\n")
            raw.flush()
            summary = summarize(records, Slo(config.slo_e2el_s))
            summary.update(
                step=index, concurrency=users, rate=rate, server_tokens=_delta(before, after)
            )
            steps.append(summary)
            emit(_step_line(label, summary))
    verdict = slo_verdict(
        steps, Slo(config.slo_e2el_s), key="rate" if config.rates else "concurrency"
    )
    run = {**asdict(config), "results_dir": str(config.results_dir), "api_key": "<redacted>"}
    write_summary(out, {"run": run, "environment": environment, "steps": steps, "verdict": verdict})
    _render(out)
    emit(verdict_line(verdict, config.workload))
    emit(f"Report: {out / 'report.html'}")
    return out


def _delta(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, float] | None:
    """Tokens the server itself counted during a step (None without a metrics URL)."""
    if before is None or after is None:
        return None
    return {
        "output": after[GENERATION_TOKENS] - before[GENERATION_TOKENS],
        "prompt": after[PROMPT_TOKENS] - before[PROMPT_TOKENS],
        "prompt_cached": after[CACHED_PROMPT_TOKENS] - before[CACHED_PROMPT_TOKENS],
    }


def _render(out: Path) -> None:
    try:
        from benchmarks.report import render_report

        render_report(out)
    except Exception:  # the raw data and summary are written; a plotting failure must not lose them
        logger.exception("could not render the HTML report in %s", out)


def _step_line(label: str, s: dict[str, Any]) -> str:
    e2e = s["e2el_ms"]
    server = s.get("server_tokens")
    check = ""
    if server:
        check = (
            f" | server counted {server['output']:.0f} output tokens (we {s['output_tokens']}),"
            f" prefix-cache hits {server['prompt_cached']:.0f}/{server['prompt']:.0f} prompt tokens"
        )
    return (
        f"{label} done: {s['completed']} ok / {s['failed']} failed in {s['duration_s']:.1f} s | "
        f"{s['output_throughput']:.1f} output tok/s | {s['request_throughput']:.2f} req/s | "
        f"E2E p50/p95/p99 {e2e['p50']:.0f}/{e2e['p95']:.0f}/{e2e['p99']:.0f} ms | "
        f"TTFT p50 {s['ttft_ms']['p50']:.0f} ms | ITL p50 {s['itl_ms']['p50']:.1f} ms{check}"
    )
