"""A few seconds of load against the real stack; our token counts must equal vLLM's own."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.server_counters import GENERATION_TOKENS, prometheus_counter

REPO = Path(__file__).resolve().parents[2]


def _vllm_generated(stack: Any) -> float:
    return prometheus_counter(
        httpx.get(stack.vllm_url + "/metrics", timeout=10).text, GENERATION_TOKENS
    )


def _run(stack: Any, out: Path, api: str) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "benchmarks",
        "run",
        "--base-url",
        stack.sidecar_url,
        "--api-key",
        stack.admin_key,
        "--api",
        api,
        "--concurrency",
        "2",
        "--step-seconds",
        "3",
        "--drain-seconds",
        "120",
        "--no-plan",
        "--results-dir",
        str(out),
    ]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SLO verdict" in done.stdout
    (run_dir,) = out.iterdir()
    assert (run_dir / "report.html").exists() and (run_dir / "latency.png").exists()
    records = [json.loads(line) for line in (run_dir / "raw.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"records": records, "summary": summary}


def _check(records: list[dict[str, Any]], summary: dict[str, Any], server_delta: float) -> None:
    assert records, "no request completed in the step"
    assert all(r["ok"] for r in records), [r["error"] for r in records if not r["ok"]][:3]
    assert all(r["token_source"] == "usage" and r["output_tokens"] > 0 for r in records)
    assert sum(r["output_tokens"] for r in records) == server_delta
    step = summary["steps"][0]
    assert step["output_throughput"] > 0 and step["ttft_ms"]["p50"] > 0
    assert all(0 < r["ttft"] <= r["e2el"] for r in records)


@pytest.mark.e2e
def test_openai_stream_bench_agrees_with_vllm_counters(stack: Any, tmp_path: Path) -> None:
    before = _vllm_generated(stack)
    result = _run(stack, tmp_path, "openai-chat-stream")
    time.sleep(1.0)  # vLLM publishes its counters from the engine loop
    _check(result["records"], result["summary"], _vllm_generated(stack) - before)
    models = result["summary"]["environment"]["endpoint"]["models"]
    assert "gpt-oss-20b" in {m["id"] for m in models["data"]}


@pytest.mark.e2e
def test_ollama_chat_bench_agrees_with_vllm_counters(stack: Any, tmp_path: Path) -> None:
    before = _vllm_generated(stack)
    result = _run(stack, tmp_path, "ollama-chat")
    time.sleep(1.0)
    _check(result["records"], result["summary"], _vllm_generated(stack) - before)
