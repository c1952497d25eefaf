"""The official `ollama` Python client (sync and async) against the real stack.

The smoke checkpoint is a toy: assertions check structure (thinking and content present, a
parsed tool call, durations measured), never exact words.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import ollama
import pytest

from tests.ollama_samples import WEATHER_TOOL

pytestmark = pytest.mark.e2e

MODEL = "gpt-oss:20b"
# The smoke model is a toy: sampled output drifts off the harmony format now and then, so
# tests that assert on content decode greedily.
GREEDY = {"temperature": 0}


def client(stack: Any, key: str | None = None) -> ollama.Client:
    return ollama.Client(
        host=stack.sidecar_url,
        timeout=120,
        headers={"Authorization": f"Bearer {key or stack.admin_key}"},
    )


def async_client(stack: Any) -> ollama.AsyncClient:
    return ollama.AsyncClient(
        host=stack.sidecar_url, timeout=120, headers={"Authorization": f"Bearer {stack.admin_key}"}
    )


def assert_final_timings(final: Any) -> None:
    assert final.done is True and final.done_reason in ("stop", "length")
    assert final.prompt_eval_count > 0 and final.eval_count > 0
    assert final.total_duration > 0 and final.eval_duration > 0
    assert final.prompt_eval_duration > 0 and final.load_duration >= 0
    parts = final.load_duration + final.prompt_eval_duration + final.eval_duration
    assert parts <= final.total_duration


def test_generate_non_stream(stack: Any) -> None:
    r = client(stack).generate(
        model=MODEL, prompt="Why is the sky blue?", stream=False, options=GREEDY
    )
    assert r.response and r.thinking
    assert r.context and all(isinstance(t, int) for t in r.context)
    assert_final_timings(r)


def test_generate_stream_carries_thinking_deltas(stack: Any) -> None:
    parts = list(
        client(stack).generate(model=MODEL, prompt="Tell me a joke.", stream=True, options=GREEDY)
    )
    *deltas, final = parts
    assert "".join(p.thinking or "" for p in deltas) and "".join(p.response for p in deltas)
    assert all(p.done is False for p in deltas)
    first_answer = next(i for i, p in enumerate(deltas) if p.response)
    assert any(p.thinking for p in deltas[:first_answer])  # thinking comes first
    assert_final_timings(final)


@pytest.mark.parametrize("think", ["low", "medium", "high", True])
def test_think_levels_return_thinking(stack: Any, think: Any) -> None:
    r = client(stack).chat(
        model=MODEL,
        think=think,
        stream=False,
        options=GREEDY,
        messages=[{"role": "user", "content": "What is 2 + 2?"}],
    )
    assert r.message.thinking and r.message.content


def test_think_false_hides_thinking(stack: Any) -> None:
    r = client(stack).chat(
        model=MODEL,
        think=False,
        stream=False,
        options=GREEDY,
        messages=[{"role": "user", "content": "Hello!"}],
    )
    assert r.message.content and not r.message.thinking


def test_chat_tools_round_trip(stack: Any) -> None:
    c = client(stack)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Stockholm?"}]
    r = c.chat(model=MODEL, messages=messages, tools=[WEATHER_TOOL], stream=False, options=GREEDY)
    assert r.message.tool_calls, r.message
    call = r.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(call.function.arguments, dict) and call.function.arguments
    assert len(r.message.tool_calls) == 1  # the same call is never reported twice
    messages += [
        r.message,
        {
            "role": "tool",
            "tool_name": "get_weather",
            "content": '{"temperature": 18, "condition": "sunny"}',
        },
    ]
    follow = c.chat(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], stream=False, options=GREEDY
    )
    assert follow.message.content and not follow.message.tool_calls


def test_chat_stream_tool_call_arrives_whole(stack: Any) -> None:
    parts = list(
        client(stack).chat(
            model=MODEL,
            stream=True,
            options=GREEDY,
            tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "Weather in Göteborg?"}],
        )
    )
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    assert parts[-1].done is True


def test_format_json_parses(stack: Any) -> None:
    r = client(stack).chat(
        model=MODEL,
        format="json",
        stream=False,
        options={**GREEDY, "num_predict": 256},
        messages=[{"role": "user", "content": "Give me a JSON object."}],
    )
    assert isinstance(json.loads(r.message.content), dict)


def test_list_show_ps(stack: Any) -> None:
    c = client(stack)
    names = [m.model for m in c.list().models]
    # the served model once, as Ollama lists it (then the embedding model)
    assert names[0] == "gpt-oss:20b" and "gpt-oss:latest" not in names
    show = c.show("gpt-oss:latest")
    max_len = httpx.get(f"{stack.vllm_url}/v1/models").json()["data"][0]["max_model_len"]
    assert show.modelinfo["gptoss.context_length"] == max_len
    assert {"completion", "tools", "thinking"} <= set(show.capabilities or [])
    assert show.details and show.details.quantization_level
    (loaded,) = c.ps().models
    assert loaded.context_length == max_len


def test_version_without_key(stack: Any) -> None:
    assert httpx.get(f"{stack.sidecar_url}/api/version").json()["version"]
    assert httpx.get(f"{stack.sidecar_url}/").text == "Ollama is running"


def test_copy_and_delete_alias(stack: Any) -> None:
    c = client(stack)
    assert c.copy(MODEL, "e2e-alias").status == "success"
    r = c.generate(model="e2e-alias", prompt="Hello!", stream=False, options=GREEDY)
    assert r.response and r.model == "e2e-alias"
    assert c.delete("e2e-alias").status == "success"
    with pytest.raises(ollama.ResponseError) as info:
        c.generate(model="e2e-alias", prompt="Hello!")
    assert info.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as info:
        c.delete(MODEL)
    assert info.value.status_code == 400


def test_errors_are_response_errors_with_status(stack: Any) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client(stack).chat(model="llama3", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404 and "not found" in info.value.error
    with pytest.raises(ollama.ResponseError) as info:
        client(stack, key="sk-gos-wrong").list()
    assert info.value.status_code == 401
    with pytest.raises(ollama.ResponseError) as info:
        client(stack, key=stack.chat_key).copy(MODEL, "nope")
    assert info.value.status_code == 403
    with pytest.raises(ollama.ResponseError) as info:
        client(stack).generate(model=MODEL, prompt="x", options={"temperature": "hot"})
    assert info.value.status_code == 400 and "temperature" in info.value.error


async def test_async_chat_stream_and_generate(stack: Any) -> None:
    c = async_client(stack)
    thinking = content = ""
    async for part in await c.chat(
        model=MODEL, stream=True, options=GREEDY, messages=[{"role": "user", "content": "Hej!"}]
    ):
        thinking += part.message.thinking or ""
        content += part.message.content or ""
    assert thinking and content
    r = await c.generate(model=MODEL, prompt="Count to five.", stream=False, options=GREEDY)
    assert r.response and r.done
