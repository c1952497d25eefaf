"""Metric computations on hand-made chunk timings, stream parsing, seeded prompts."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.metrics import (
    RequestRecord,
    Slo,
    compute_timing,
    percentile,
    slo_verdict,
    summarize,
    verdict_line,
)
from benchmarks.streams import parse_ollama_line, parse_openai_body, parse_openai_sse_line
from benchmarks.workloads import PromptSource, load_workloads, openai_chat_body


def test_streamed_timing_follows_vllm_bench_definitions() -> None:
    # sent at t=10.0; text chunks at 10.5, 10.6, 10.8, 11.1; last byte at 11.2; 5 tokens
    timing = compute_timing(10.0, [10.5, 10.6, 10.8, 11.1], 11.2, 5, streamed=True)
    assert timing.e2el == pytest.approx(1.2)
    assert timing.ttft == pytest.approx(0.5)
    assert timing.itl == pytest.approx((0.1, 0.2, 0.3))
    assert timing.tpot == pytest.approx((1.2 - 0.5) / 4)  # (E2EL - TTFT) / (tokens - 1)


def test_one_token_has_no_tpot_and_non_streamed_has_no_ttft() -> None:
    single = compute_timing(0.0, [0.3], 0.4, 1, streamed=True)
    assert single.ttft == pytest.approx(0.3)
    assert single.tpot is None and single.itl == ()
    whole = compute_timing(0.0, [0.9], 1.0, 40, streamed=False)
    assert whole.e2el == pytest.approx(1.0)
    assert whole.ttft is None and whole.tpot is None and whole.itl == ()


def test_percentile_interpolates_like_numpy() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == pytest.approx(4.8)  # numpy.percentile(values, 95)
    assert percentile(values, 99) == pytest.approx(4.96)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def _record(
    start: float, e2el: float, tokens: int, *, ok: bool = True, ttft: float = 0.1
) -> RequestRecord:
    return RequestRecord(
        api="openai-chat-stream",
        workload="chat",
        target="t",
        start=start,
        ok=ok,
        status=200 if ok else 500,
        e2el=e2el,
        ttft=ttft,
        itl=[0.01, 0.03],
        output_tokens=tokens,
        prompt_tokens=10,
        error=None if ok else "HTTP 500: boom",
    )


def test_summary_throughput_goodput_and_errors() -> None:
    records = [
        _record(100.0, 1.0, 20),
        _record(100.5, 3.0, 40),
        _record(101.0, 5.0, 60),  # finishes at 106.0: the window is 100.0 .. 106.0
        _record(101.0, 0.2, 0, ok=False),
    ]
    s = summarize(records, Slo(e2el_s=4.0))
    assert s["completed"] == 3 and s["failed"] == 1
    assert s["error_rate"] == pytest.approx(0.25)
    assert s["duration_s"] == pytest.approx(6.0)
    assert s["output_tokens"] == 120
    assert s["output_throughput"] == pytest.approx(20.0)
    assert s["request_throughput"] == pytest.approx(0.5)
    assert s["goodput"] == pytest.approx(2 / 6.0)  # two finished within 4 s
    assert s["total_token_throughput"] == pytest.approx((120 + 30) / 6.0)
    assert s["e2el_ms"]["p50"] == pytest.approx(3000.0)
    assert s["itl_ms"]["p50"] == pytest.approx(20.0)
    assert s["errors"] == {"HTTP 500: boom": 1}
    assert json.dumps(RequestRecord.from_json(records[0].to_json()).to_json()) == json.dumps(
        records[0].to_json()
    )


def _step(
    concurrency: int, p50_ms: float, p95_ms: float, error_rate: float = 0.0
) -> dict[str, object]:
    return {
        "concurrency": concurrency,
        "completed": 10,
        "error_rate": error_rate,
        "goodput": 2.0,
        "output_throughput": 100.0 * concurrency,
        "e2el_ms": {"p50": p50_ms, "p95": p95_ms},
    }


def test_slo_verdict_stops_at_first_failing_level() -> None:
    steps = [_step(1, 900, 1500), _step(2, 1500, 3000), _step(4, 3500, 4500), _step(8, 3000, 3900)]
    verdict = slo_verdict(steps, Slo(e2el_s=4.0))
    assert verdict["max_level"] == 2  # 4 fails on p95; the pass at 8 above a failure does not count
    assert verdict["p95_e2el_s"] == pytest.approx(3.0)
    line = verdict_line(verdict, "chat")
    assert "max concurrency 2" in line and "goodput 2.00 req/s" in line
    errors = slo_verdict([_step(1, 900, 1500, error_rate=0.5)], Slo())
    assert errors["max_level"] is None
    assert "no level met" in verdict_line(errors, "chat")


def test_openai_sse_lines() -> None:
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n'
    assert not parse_openai_sse_line(role).has_text  # the role-only chunk is not a token
    assert parse_openai_sse_line(b'data: {"choices":[{"delta":{"reasoning":"hm"}}]}').has_text
    assert parse_openai_sse_line(
        b'data: {"choices":[{"delta":{"reasoning_content":"hm"}}]}'
    ).has_text
    assert parse_openai_sse_line(b'data: {"choices":[{"delta":{"content":"Hi"}}]}').has_text
    usage = parse_openai_sse_line(
        b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":12}}'
    )
    assert (usage.has_text, usage.completion_tokens, usage.prompt_tokens) == (False, 12, 7)
    assert parse_openai_sse_line(b"data: [DONE]\n").done
    assert parse_openai_sse_line(b'data: {"error":{"message":"overloaded"}}').error == "overloaded"
    assert parse_openai_sse_line(b"\n") == parse_openai_sse_line(b": keep-alive\n")
    body = parse_openai_body(b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9}}')
    assert (body.completion_tokens, body.done) == (9, True)


def test_ollama_ndjson_lines() -> None:
    assert parse_ollama_line(
        b'{"message":{"role":"assistant","thinking":"hm"},"done":false}', generate=False
    ).has_text
    assert not parse_ollama_line(
        b'{"message":{"role":"assistant","content":""},"done":false}', generate=False
    ).has_text
    assert parse_ollama_line(b'{"response":"Hi","done":false}', generate=True).has_text
    final = parse_ollama_line(b'{"done":true,"eval_count":31,"prompt_eval_count":8}', generate=True)
    assert (final.done, final.completion_tokens, final.prompt_tokens) == (True, 31, 8)
    assert (
        parse_ollama_line(b'{"error":"model not found"}', generate=False).error == "model not found"
    )


def test_prompts_are_seeded_and_never_share_a_prefix() -> None:
    workloads = load_workloads()
    assert {"chat", "long-prompt", "long-generation"} <= set(workloads)
    chat = workloads["chat"]
    first = [PromptSource(chat, seed=3).next_prompt() for _ in range(2)]
    assert first[0] == first[1]  # same seed, same sequence
    source = PromptSource(chat, seed=3)
    prompts = [source.next_prompt() for _ in range(50)]
    openings = {p.split("\n")[1][:40] for p in prompts}
    assert len(openings) == 50
    low, high = chat.prompt_words
    assert all(low <= len(p.split("\n")[1].split()) <= high for p in prompts)
    long_prompt = PromptSource(workloads["long-prompt"], seed=1).next_prompt()
    assert 4000 <= len(long_prompt.split("\n")[1].split()) <= 8000
    body = openai_chat_body(chat, prompts[0], "gpt-oss-20b", stream=True)
    assert body["stream_options"] == {"include_usage": True}
    assert (
        body["reasoning_effort"] == chat.reasoning_effort and body["max_tokens"] == chat.max_tokens
    )
