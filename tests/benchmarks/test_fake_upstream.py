"""The fake OpenAI upstream answers like vLLM and keeps vLLM's token counters."""

from __future__ import annotations

import json

import httpx

from benchmarks.fake_upstream import FakeConfig, create_fake_upstream
from benchmarks.server_counters import GENERATION_TOKENS, prometheus_counter
from benchmarks.streams import parse_openai_sse_line


def _client(cfg: FakeConfig) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_fake_upstream(cfg)), base_url="http://fake"
    )


async def test_stream_has_role_reasoning_content_usage_and_done() -> None:
    async with _client(FakeConfig(chunks=6, reasoning_chunks=2)) as client:
        body = {
            "model": "gpt-oss-20b",
            "messages": [{"role": "user", "content": "one two three"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        response = await client.post("/v1/chat/completions", json=body)
        lines = [line for line in response.content.split(b"\n") if line.startswith(b"data:")]
        events = [parse_openai_sse_line(line) for line in lines]
        assert not events[0].has_text  # role chunk first, as vLLM sends it
        assert sum(e.has_text for e in events) == 6
        assert json.loads(lines[1][5:])["choices"][0]["delta"] == {"reasoning": "t0 "}
        assert json.loads(lines[3][5:])["choices"][0]["delta"] == {"content": "t2 "}
        usage = next(e for e in events if e.completion_tokens is not None)
        assert (usage.completion_tokens, usage.prompt_tokens) == (6, 3)
        assert events[-1].done

        capped = await client.post(
            "/v1/chat/completions", json={**body, "max_tokens": 4, "stream": False}
        )
        assert capped.json()["usage"]["completion_tokens"] == 4
        metrics = (await client.get("/metrics")).text
        assert prometheus_counter(metrics, GENERATION_TOKENS) == 10.0
        assert (await client.get("/v1/models")).json()["data"][0]["id"] == "gpt-oss-20b"
        assert (await client.get("/nope")).status_code == 404


def test_prometheus_counter_sums_series_and_ignores_lookalikes() -> None:
    text = (
        "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n"
        'vllm:generation_tokens_total{engine="0",model_name="gpt-oss-20b"} 120.0\n'
        'vllm:generation_tokens_total{engine="1",model_name="gpt-oss-20b"} 30.0\n'
        'vllm:generation_tokens_created{engine="0"} 1.7e9\n'
    )
    assert prometheus_counter(text, GENERATION_TOKENS) == 150.0
    assert prometheus_counter(text, "vllm:prompt_tokens_total") == 0.0
