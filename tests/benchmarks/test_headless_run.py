"""Short headless runs of the real CLI against the fake upstream (no vLLM; seconds).

The runs are subprocesses: Locust monkey-patches its process with gevent, which must not
happen to the pytest process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.server_counters import GENERATION_TOKENS, prometheus_counter
from tests.processes import free_port, http_status, stop, wait_ready

REPO = Path(__file__).resolve().parents[2]
CHUNKS = 12


@pytest.fixture
def fake_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "benchmarks",
        "fake-upstream",
        "--port",
        str(port),
        "--chunks",
        str(CHUNKS),
        "--chunk-delay-ms",
        "1",
    ]
    log = tmp_path_factory.mktemp("fake-upstream") / "out.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(lambda: http_status(url + "/health") is not None, process, log, 30, 0.1)
        yield url
    finally:
        stop(process, timeout_s=10)


def _bench(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _one_step(url: str, api: str, concurrency: int, results: Path) -> dict[str, Any]:
    """A half-second run at one concurrency; its step from summary.json."""
    _bench(
        "run",
        "--base-url",
        url,
        "--api",
        api,
        "--concurrency",
        str(concurrency),
        "--step-seconds",
        "0.5",
        "--no-plan",
        "--results-dir",
        str(results),
    )
    (out,) = results.iterdir()
    step: dict[str, Any] = json.loads((out / "summary.json").read_text())["steps"][0]
    return step


def _generated(url: str) -> float:
    return prometheus_counter(httpx.get(url + "/metrics", timeout=5).text, GENERATION_TOKENS)


def test_sweep_writes_records_summary_report_consistent_with_server(
    fake_upstream: str, tmp_path: Path
) -> None:
    before = _generated(fake_upstream)
    stdout = _bench(
        "run",
        "--base-url",
        fake_upstream,
        "--api-key",
        "sk-test",
        "--concurrency",
        "1,3",
        "--step-seconds",
        "1.5",
        "--no-plan",
        "--results-dir",
        str(tmp_path),
        "--metrics-url",
        fake_upstream + "/metrics",
    )
    server_total = _generated(fake_upstream) - before
    assert "[step 2/2] concurrency 3" in stdout  # progress lines
    assert "SLO verdict (chat, p50 & p95 E2E <= 4 s): max concurrency 3" in stdout

    (out,) = tmp_path.iterdir()
    for name in (
        "raw.jsonl",
        "summary.json",
        "summary.csv",
        "report.html",
        "latency.png",
        "throughput.png",
        "itl.png",
        "errors.png",
    ):
        assert (out / name).stat().st_size > 0, name
    records = [json.loads(line) for line in (out / "raw.jsonl").read_text().splitlines()]
    assert records and all(r["ok"] and r["token_source"] == "usage" for r in records)
    assert all(r["output_tokens"] == CHUNKS and r["chunks"] == CHUNKS for r in records)
    assert all(0 < r["ttft"] <= r["e2el"] and len(r["itl"]) == CHUNKS - 1 for r in records)
    assert (
        sum(r["output_tokens"] for r in records) == server_total
    )  # nothing lost, nothing double-counted

    summary = json.loads((out / "summary.json").read_text())
    assert [s["concurrency"] for s in summary["steps"]] == [1, 3]
    for step in summary["steps"]:
        mine = [r for r in records if r["step"] == step["step"]]
        assert step["completed"] == len(mine) and step["failed"] == 0
        assert step["output_tokens"] == step["server_tokens"]["output"] == CHUNKS * len(mine)
        assert step["output_throughput"] == pytest.approx(
            step["output_tokens"] / step["duration_s"]
        )
        assert step["output_throughput"] > 0 and step["ttft_ms"]["p50"] > 0
        assert step["ttft_ms"]["p50"] <= step["e2el_ms"]["p50"]
    assert summary["environment"]["endpoint"]["models"]["data"][0]["id"] == "gpt-oss-20b"
    assert summary["run"]["api_key"] == "<redacted>"
    html = (out / "report.html").read_text()
    assert "SLO verdict" in html and 'src="latency.png"' in html


def test_ollama_user_and_non_streaming_user_parse_their_apis(
    fake_upstream: str, tmp_path: Path
) -> None:
    # The fake speaks OpenAI only: the Ollama user must report failures, never crash or count tokens.
    step = _one_step(fake_upstream, "ollama-chat", 1, tmp_path / "ollama")
    assert (
        step["completed"] == 0 and step["failed"] > 0 and "HTTP 404" in next(iter(step["errors"]))
    )

    step = _one_step(fake_upstream, "openai-chat", 2, tmp_path / "plain")
    assert step["completed"] > 0 and step["failed"] == 0
    assert step["output_tokens"] == CHUNKS * step["completed"]
    assert step["ttft_ms"]["p50"] is None  # undefined without streaming (null in JSON)


def test_overhead_run_starts_fake_stack_and_prints_ratios(tmp_path: Path) -> None:
    stdout = _bench(
        "overhead",
        "--with-fake-upstream",
        "--rounds",
        "1",
        "--step-seconds",
        "1",
        "--warmup-seconds",
        "0.5",
        "--throughput-users",
        "4",
        "--drain-seconds",
        "10",
        "--results-dir",
        str(tmp_path),
        timeout=180,
    )
    assert "sidecar-openai vs direct: E2E p50 x" in stdout
    assert "sidecar-ollama" in stdout
    (out,) = tmp_path.iterdir()
    result = json.loads((out / "overhead.json").read_text())
    for name in ("direct", "sidecar-openai"):
        aggregate = result["aggregate"][name]
        assert aggregate["failed_requests"] == 0 and aggregate["latency_requests"] > 0
        assert aggregate["max_request_throughput"] > 0
    ratios = result["comparison"]["sidecar-openai"]
    assert ratios["e2el_ms_p50_ratio"] > 0 and ratios["max_throughput_ratio"] > 0
    assert [s["phase"] for s in result["steps"]].count("throughput") == 3
