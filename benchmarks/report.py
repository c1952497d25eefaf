"""The HTML report of a sweep, with matplotlib plots (PNG files beside ``report.html``).

``python -m benchmarks report RESULTS_DIR`` re-renders it from ``summary.json`` and
``raw.jsonl``.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.metrics import RequestRecord, verdict_line
from benchmarks.results import read_records, read_summary

PLOTS: tuple[tuple[str, str], ...] = (
    ("latency.png", "End-to-end latency and time to first token"),
    ("throughput.png", "Throughput"),
    ("itl.png", "Inter-token latency distribution"),
    ("errors.png", "Error rate"),
)


def _level(step: dict[str, Any]) -> float:
    return step["rate"] if step.get("rate") else step["concurrency"]


def _log2_axis(ax: Any, x: list[float]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [f"{v:g}" for v in x])
    ax.minorticks_off()
    ax.grid(True, alpha=0.3)


def _ms_to_s(value: float | None) -> float:
    return math.nan if value is None else value / 1000.0


def _plot_latency(steps: list[dict[str, Any]], xlabel: str, slo_s: float, path: Path) -> None:
    x = [_level(s) for s in steps]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "e2el_ms", "E2E latency"), (axes[1], "ttft_ms", "TTFT")):
        for q, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^:")):
            ax.plot(x, [_ms_to_s(s[key][q]) for s in steps], style, label=q)
        ax.set(title=title, xlabel=xlabel, ylabel="seconds")
        _log2_axis(ax, x)
    axes[0].axhline(slo_s, color="red", linewidth=1, label=f"SLO {slo_s:g} s")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_throughput(steps: list[dict[str, Any]], xlabel: str, path: Path) -> None:
    x = [_level(s) for s in steps]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(x, [s["output_throughput"] for s in steps], "o-")
    axes[0].set(title="Output tokens/s", xlabel=xlabel, ylabel="tokens/s")
    axes[1].plot(x, [s["request_throughput"] for s in steps], "o-", label="completed")
    axes[1].plot(x, [s["goodput"] for s in steps], "s--", label="goodput (within SLO)")
    axes[1].set(title="Requests/s", xlabel=xlabel, ylabel="requests/s")
    axes[1].legend()
    for ax in axes:
        _log2_axis(ax, x)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_itl(
    steps: list[dict[str, Any]], records: list[RequestRecord], xlabel: str, path: Path
) -> None:
    by_step: dict[int, list[float]] = {}
    for record in records:
        if record.ok:
            by_step.setdefault(record.step, []).extend(gap * 1000.0 for gap in record.itl)
    fig, ax = plt.subplots(figsize=(11, 4))
    data = [by_step.get(s["step"], []) or [math.nan] for s in steps]
    ax.boxplot(data, tick_labels=[f"{_level(s):g}" for s in steps], showfliers=False)
    ax.set(
        title="Inter-token latency per level (whiskers 1.5 IQR, outliers hidden)",
        xlabel=xlabel,
        ylabel="ms",
    )
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_errors(steps: list[dict[str, Any]], xlabel: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(11, 3))
    ax.bar(
        [f"{_level(s):g}" for s in steps],
        [100.0 * s["error_rate"] for s in steps],
        color="firebrick",
    )
    ax.set(title="Failed requests", xlabel=xlabel, ylabel="% of requests")
    ax.set_ylim(0, max([5.0] + [100.0 * s["error_rate"] * 1.2 for s in steps]))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(steps: list[dict[str, Any]], xlabel: str) -> str:
    head = [
        xlabel,
        "ok",
        "failed",
        "out tok/s",
        "req/s",
        "goodput",
        "E2E p50",
        "E2E p95",
        "E2E p99",
        "TTFT p50",
        "TTFT p95",
        "TTFT p99",
        "TPOT p50",
        "ITL p50",
        "ITL p99",
        "out tokens",
        "server out tokens",
    ]
    rows = []
    for s in steps:
        e, t = s["e2el_ms"], s["ttft_ms"]
        cells = [
            _fmt(_level(s), 0),
            s["completed"],
            s["failed"],
            _fmt(s["output_throughput"]),
            _fmt(s["request_throughput"], 2),
            _fmt(s["goodput"], 2),
            _fmt(e["p50"], 0),
            _fmt(e["p95"], 0),
            _fmt(e["p99"], 0),
            _fmt(t["p50"], 0),
            _fmt(t["p95"], 0),
            _fmt(t["p99"], 0),
            _fmt(s["tpot_ms"]["p50"]),
            _fmt(s["itl_ms"]["p50"]),
            _fmt(s["itl_ms"]["p99"]),
            s["output_tokens"],
            _fmt((s.get("server_tokens") or {}).get("output"), 0),
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
    note = (
        "<p>Latencies in ms; throughputs per second; <i>server out tokens</i>: the engine's own "
        "<code>vllm:generation_tokens_total</code> delta over the step, when a metrics URL "
        "was given.</p>"
    )
    return f"<table>{header}{''.join(rows)}</table>{note}"


def _errors(steps: list[dict[str, Any]]) -> str:
    items = [
        f"<li>step {s['step']}: {html.escape(k)} &times; {n}</li>"
        for s in steps
        for k, n in s["errors"].items()
    ]
    return f"<ul>{''.join(items)}</ul>" if items else "<p>No failed requests.</p>"


STYLE = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
.verdict{font-size:1.1em;padding:.6em;background:#eef5ee;border-left:4px solid #393}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}img{max-width:100%}"""


def render_report(out: Path) -> Path:
    """Write the PNG plots and ``report.html`` into ``out``; return the HTML path."""
    summary = read_summary(out)
    records = read_records(out / "raw.jsonl")
    steps, run, verdict = summary["steps"], summary["run"], summary["verdict"]
    xlabel = "arrival rate (req/s)" if run.get("rates") else "concurrent users"
    _plot_latency(steps, xlabel, run["slo_e2el_s"], out / "latency.png")
    _plot_throughput(steps, xlabel, out / "throughput.png")
    _plot_itl(steps, records, xlabel, out / "itl.png")
    _plot_errors(steps, xlabel, out / "errors.png")
    images = "".join(
        f'<h2>{html.escape(title)}</h2><img src="{name}" alt="{html.escape(title)}">'
        for name, title in PLOTS
    )
    environment = html.escape(json.dumps(summary["environment"], indent=2))
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>Benchmark {html.escape(out.name)}</title>
<style>{STYLE}</style></head><body>
<h1>Benchmark: {html.escape(run["api"])} / {html.escape(run["workload"])}</h1>
<p class="verdict">{html.escape(verdict_line(verdict, run["workload"]))}</p>
<p>Target {html.escape(run["base_url"])}, model {html.escape(run["model"])},
{run["step_seconds"]:g} s per step, seed {run["seed"]}.
Metric definitions: <code>benchmarks/README.md</code>.</p>
<h2>Results per level</h2>{_table(steps, xlabel)}
{images}
<h2>Errors</h2>{_errors(steps)}
<h2>Environment (hardware, versions, served model, plan)</h2><pre>{environment}</pre>
<h2>Run settings</h2><pre>{html.escape(json.dumps(run, indent=2))}</pre>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
