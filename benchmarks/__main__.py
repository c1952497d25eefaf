"""``python -m benchmarks {run,overhead,report,fake-upstream}``: the benchmark CLI.

``run`` and ``overhead`` import Locust, which monkey-patches the process with gevent,
so they import it first thing and only in those commands.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

DEFAULT_RESULTS = Path("benchmarks/results")


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.replace(" ", "").split(",") if part]


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.replace(" ", "").split(",") if part]


def _emit(line: str) -> None:
    print(line, flush=True)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workload", default="chat", help="profile in benchmarks/workloads.toml")
    parser.add_argument("--model", default="gpt-oss-20b")
    parser.add_argument("--step-seconds", type=float, default=30.0, help="length of each load step")
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=60.0,
        help="after a step, how long in-flight requests may take to finish",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="sweep load levels against one endpoint, write a report")
    run.add_argument("--base-url", default="http://127.0.0.1:8000")
    run.add_argument("--api-key", default="", help="Bearer key (sent as Authorization header)")
    run.add_argument(
        "--api",
        default="openai-chat-stream",
        choices=["openai-chat-stream", "openai-chat", "ollama-chat", "ollama-generate"],
    )
    run.add_argument(
        "--concurrency", type=_ints, default=[1, 2, 4, 8, 16, 32, 64], help="e.g. 1,2,4,8"
    )
    run.add_argument(
        "--rates", type=_floats, default=[], help="constant arrival rates (req/s) instead"
    )
    run.add_argument(
        "--max-users", type=int, default=64, help="users available to an arrival-rate step"
    )
    run.add_argument(
        "--slo-e2e-s", type=float, default=4.0, help="p50 and p95 E2E must stay within this"
    )
    run.add_argument(
        "--metrics-url",
        default="",
        help="the engine's Prometheus /metrics (e.g. http://127.0.0.1:8001/metrics): "
        "its token counters are recorded per step next to ours",
    )
    run.add_argument("--no-plan", action="store_true", help="skip `python -m serving plan --json`")
    _common(run)

    over = sub.add_parser("overhead", help="direct vs through-proxy latency and throughput")
    over.add_argument(
        "--direct-url", default="http://127.0.0.1:8001", help="the engine itself (vLLM)"
    )
    over.add_argument("--proxy-url", default="http://127.0.0.1:8000", help="the sidecar")
    over.add_argument(
        "--proxy",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="another OpenAI-compatible gateway to compare (repeatable)",
    )
    over.add_argument(
        "--api-key", default="", help="key for the proxies (the direct target gets it too)"
    )
    over.add_argument("--no-ollama", action="store_true", help="skip the sidecar's Ollama route")
    over.add_argument(
        "--with-fake-upstream",
        action="store_true",
        help="start the fake upstream and a sidecar on free ports and use those",
    )
    over.add_argument("--fake-chunks", type=int, default=16)
    over.add_argument("--rounds", type=int, default=3)
    over.add_argument(
        "--warmup-seconds", type=float, default=2.0, help="unrecorded load per target first"
    )
    over.add_argument("--latency-users", type=int, default=1)
    over.add_argument("--throughput-users", type=int, default=32)
    _common(over)

    report = sub.add_parser("report", help="re-render report.html from a results directory")
    report.add_argument("results", type=Path)

    fake = sub.add_parser("fake-upstream", help="serve the fake OpenAI upstream (benchmark tool)")
    fake.add_argument("--port", type=int, default=8199)
    fake.add_argument("--chunks", type=int, default=16)
    fake.add_argument("--reasoning-chunks", type=int, default=4)
    fake.add_argument("--chunk-delay-ms", type=float, default=0.0)
    fake.add_argument("--first-token-delay-ms", type=float, default=0.0)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    import locust  # noqa: F401  (gevent monkey-patching before anything opens a socket)

    from benchmarks.sweep import SweepConfig, run_sweep

    config = SweepConfig(
        base_url=args.base_url.rstrip("/"),
        api_key=args.api_key,
        api=args.api,
        workload=args.workload,
        model=args.model,
        concurrency=args.concurrency,
        rates=args.rates,
        max_users=args.max_users,
        step_seconds=args.step_seconds,
        drain_seconds=args.drain_seconds,
        seed=args.seed,
        slo_e2el_s=args.slo_e2e_s,
        results_dir=args.results_dir,
        plan_cmd=not args.no_plan,
        metrics_url=args.metrics_url,
    )
    run_sweep(config, _emit)
    return 0


def _overhead_targets(args: argparse.Namespace, direct: str, proxy: str, key: str) -> list:  # type: ignore[type-arg]
    from benchmarks.overhead import Target

    targets = [
        Target("direct", direct, "openai-chat-stream", key),
        Target("sidecar-openai", proxy, "openai-chat-stream", key),
    ]
    if not args.no_ollama:
        targets.append(Target("sidecar-ollama", proxy, "ollama-chat", key))
    for item in args.proxy:
        name, _, url = item.partition("=")
        if not url:
            raise SystemExit(f"--proxy wants NAME=URL, got {item!r}")
        targets.append(Target(name, url.rstrip("/"), "openai-chat-stream", key))
    return targets


def _cmd_overhead(args: argparse.Namespace) -> int:
    import locust  # noqa: F401  (gevent monkey-patching first)

    from benchmarks.local_stack import fake_stack
    from benchmarks.overhead import OverheadConfig, run_overhead

    def go(direct: str, proxy: str, key: str, notes: dict[str, str]) -> None:
        config = OverheadConfig(
            targets=_overhead_targets(args, direct.rstrip("/"), proxy.rstrip("/"), key),
            workload=args.workload,
            model=args.model,
            rounds=args.rounds,
            latency_users=args.latency_users,
            throughput_users=args.throughput_users,
            step_seconds=args.step_seconds,
            drain_seconds=args.drain_seconds,
            seed=args.seed,
            warmup_seconds=args.warmup_seconds,
            results_dir=args.results_dir,
            notes=notes,
        )
        run_overhead(config, _emit)

    if args.with_fake_upstream:
        with fake_stack(chunks=args.fake_chunks) as stack:
            where = f"sidecar {stack.sidecar_url} ({stack.sidecar_command})"
            _emit(f"fake upstream {stack.upstream_url}, {where}")
            go(
                stack.upstream_url,
                stack.sidecar_url,
                stack.api_key,
                {"upstream": "fake", "chunks": str(args.fake_chunks)},
            )
    else:
        go(args.direct_url, args.proxy_url, args.api_key, {"upstream": "vllm"})
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from benchmarks.report import render_report

    print(render_report(args.results))
    return 0


def _cmd_fake(args: argparse.Namespace) -> int:
    from benchmarks.fake_upstream import FakeConfig, serve

    serve(
        args.port,
        FakeConfig(
            args.chunks,
            args.reasoning_chunks,
            args.first_token_delay_ms / 1000.0,
            args.chunk_delay_ms / 1000.0,
        ),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    commands = {
        "run": _cmd_run,
        "overhead": _cmd_overhead,
        "report": _cmd_report,
        "fake-upstream": _cmd_fake,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
