"""The seed's raw HTTP request shapes (seeds/000, 003) against the real stack."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import httpx
import pytest

from serving.protocols.ollama.context import context_to_messages, harmony_encoding
from tests.ollama_samples import SEED_OPTIONS as SEED_ROWS

pytestmark = pytest.mark.e2e

MODEL = "gpt-oss:20b"
# The smoke model is a toy: sampled output drifts off the harmony format now and then, so
# tests that assert on content add greedy decoding to the seed's request shapes.
GREEDY = {"temperature": 0}
# Every row of the seed's options table plus its system configuration, with this test's
# context size, stop and penalties.
SEED_OPTIONS = {**SEED_ROWS, "num_ctx": 2048, "stop": ["###"], "presence_penalty": 0.0,
                "frequency_penalty": 0.0}


def post(stack: Any, path: str, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return httpx.post(
        f"{stack.sidecar_url}{path}",
        json=body,
        timeout=120,
        headers={"Authorization": f"Bearer {stack.chat_key}"},
        **kwargs,
    )


def test_seed_options_table_is_accepted(stack: Any) -> None:
    r = post(
        stack,
        "/api/generate",
        {
            "model": MODEL,
            "prompt": "Write a Python function to sort a list",
            "stream": False,
            "options": SEED_OPTIONS,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    # Sampled at the seed's temperature 0.7: assert the shape, not that the toy stayed on format.
    assert isinstance(body["response"], str) and body["done"] is True
    assert 0 < body["eval_count"] <= 512


def test_num_predict_limits_the_answer(stack: Any) -> None:
    body = post(
        stack,
        "/api/generate",
        {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 1}},
    ).json()
    assert body["eval_count"] == 1 and body["done_reason"] == "length"


def test_seed_format_json_inside_options(stack: Any) -> None:
    r = post(
        stack,
        "/api/generate",
        {
            "model": MODEL,
            "stream": False,
            "prompt": "Return valid JSON with name and age.",
            "options": {"temperature": 0, "format": "json", "num_predict": 256},
        },
    )
    assert isinstance(json.loads(r.json()["response"]), dict)


def test_seed_streaming_with_thinking(stack: Any) -> None:
    with httpx.stream(
        "POST",
        f"{stack.sidecar_url}/api/generate",
        timeout=120,
        headers={"Authorization": f"Bearer {stack.chat_key}"},
        json={
            "model": MODEL,
            "prompt": "Write a haiku about programming",
            "stream": True,
            "options": GREEDY,
        },
    ) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        chunks = [json.loads(line) for line in r.iter_lines() if line]
    assert all(set(c) >= {"model", "created_at", "done"} for c in chunks)
    assert "".join(c.get("thinking", "") for c in chunks[:-1])
    assert "".join(c["response"] for c in chunks[:-1])
    assert chunks[-1]["done"] is True and "context" in chunks[-1]


def test_seed_conversation_manager_context_round_trip(stack: Any) -> None:
    context: list[int] = []
    turns = []
    for prompt in ("My name is Alice", "What is my name?"):
        result = post(
            stack,
            "/api/generate",
            {
                "model": MODEL,
                "prompt": prompt,
                "context": context,
                "stream": False,
                "options": GREEDY,
            },
        ).json()
        assert "context" in result, result
        turns.append(result)
        context = result["context"]
    first, second = turns
    assert len(second["context"]) > len(first["context"])
    history = context_to_messages(second["context"])
    users = [m["content"] for m in history if m["role"] == "user"]
    assert users == ["My name is Alice", "What is my name?"]
    assert sum(1 for m in history if m["role"] == "assistant" and m["content"]) == 2


def test_seed_swedish_text_survives_exactly(stack: Any) -> None:
    swedish = "Hej! Kan du förstå åäö? Björn åker på semester till Göteborg."
    r = post(
        stack,
        "/api/generate",
        {
            "model": MODEL,
            "prompt": f"Svara på svenska: {swedish}",
            "stream": False,
            "options": GREEDY,
        },
    )
    assert r.headers["content-type"].startswith("application/json")
    body = json.loads(r.content.decode("utf-8"))
    assert body["response"]
    decoded = harmony_encoding().decode_utf8(body["context"])
    assert f"Svara på svenska: {swedish}" in decoded


def test_swedish_stream_lines_are_whole_utf8(stack: Any) -> None:
    body = {
        "model": MODEL,
        "options": GREEDY,
        "messages": [{"role": "user", "content": "Vad betyder åäö?"}],
    }
    raw = post(stack, "/api/chat", body).content
    lines = [json.loads(line.decode("utf-8")) for line in raw.splitlines() if line]
    text = "".join(
        m["message"].get("content", "") + m["message"].get("thinking", "") for m in lines
    )
    assert text and "\ufffd" not in text  # no character was split between two deltas


def test_seed_health_check_via_tags(stack: Any) -> None:
    r = httpx.get(
        f"{stack.sidecar_url}/api/tags",
        timeout=5,
        headers={"Authorization": f"Bearer {stack.admin_key}"},
    )
    assert r.status_code == 200
    assert any(m["name"] == "gpt-oss:20b" for m in r.json()["models"])
    body = post(
        stack,
        "/api/generate",
        {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 1}},
    ).json()
    assert body["done"] is True


def test_seed_chat_class_sends_assistant_messages_back(stack: Any) -> None:
    messages: list[dict[str, Any]] = []
    for text in ("Hello!", "What can you help me with?"):
        messages.append({"role": "user", "content": text})
        result = post(
            stack,
            "/api/chat",
            {"model": MODEL, "messages": messages, "stream": False, "options": GREEDY},
        ).json()
        messages.append(result["message"])  # includes `thinking`, sent back as-is
        assert result["message"]["content"]


def test_seed_batch_with_aiohttp(stack: Any) -> None:
    async def batch(prompts: list[str]) -> list[str]:
        headers = {"Authorization": f"Bearer {stack.chat_key}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            tasks = [
                session.post(
                    f"{stack.sidecar_url}/api/generate",
                    json={"model": MODEL, "prompt": p, "stream": False, "options": GREEDY},
                )
                for p in prompts
            ]
            responses = await asyncio.gather(*tasks)
            return [(await response.json())["response"] for response in responses]

    results = asyncio.run(
        batch(["What is AI?", "Explain quantum computing", "Write a Python hello world"])
    )
    assert len(results) == 3 and all(results)
