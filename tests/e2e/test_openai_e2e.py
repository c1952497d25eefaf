"""The OpenAI API end to end: the official `openai` SDK against the real stack."""

from __future__ import annotations

import json
import re
import time

import httpx
import openai
import pytest

from serving.config import SERVED_MODEL_NAMES
from tests.prometheus_text import metric_sum

pytestmark = pytest.mark.e2e

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string", "description": "City name"}},
            "required": ["location"],
        },
    },
}


@pytest.fixture(scope="module")
def client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.sidecar_url}/v1", api_key=stack.admin_key, timeout=120)


def test_models_lists_the_model_once_under_its_canonical_name(client):
    assert [m.id for m in client.models.list()] == [SERVED_MODEL_NAMES[0]]


@pytest.mark.parametrize("model", SERVED_MODEL_NAMES)
def test_chat_returns_reasoning_and_content(client, model):
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0, max_tokens=200,
    )
    message = reply.choices[0].message
    extra = message.model_extra or {}
    assert message.content and message.content.strip()
    assert extra.get("reasoning") and extra.get("reasoning_content") == extra["reasoning"]
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


def test_streaming_carries_reasoning_then_content_and_usage(client):
    stream = client.chat.completions.create(
        model="gpt-oss-20b", messages=[{"role": "user", "content": "Tell me about the sea."}],
        temperature=0, max_tokens=200, stream=True, stream_options={"include_usage": True},
    )
    reasoning, content, usage = "", "", None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            reasoning += extra.get("reasoning_content") or ""
            content += choice.delta.content or ""
    assert reasoning.strip() and content.strip()
    assert usage is not None and usage.completion_tokens > 0


def test_tool_call_is_parsed_once_with_json_arguments(client):
    reply = client.chat.completions.create(
        model="gpt-oss-20b", tools=[WEATHER_TOOL], temperature=0, max_tokens=200,
        messages=[{"role": "user", "content": "What is the weather in Stockholm?"}],
    )
    calls = reply.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1, calls
    assert calls[0].function.name == "get_weather"
    assert isinstance(json.loads(calls[0].function.arguments), dict)
    assert reply.choices[0].finish_reason == "tool_calls"


def test_utf8_round_trip_of_swedish_text(client):
    text = "Räksmörgås på ön, åäö ÅÄÖ"
    reply = client.completions.create(
        model="gpt-oss-20b", prompt=text, max_tokens=8, temperature=0, echo=True
    )
    assert reply.choices[0].text.startswith(text)
    chat = client.chat.completions.create(
        model="gpt-oss-20b", messages=[{"role": "user", "content": f"Översätt: {text}"}],
        temperature=0, max_tokens=100,
    )
    assert chat.choices[0].message.content is not None
    assert "\ufffd" not in chat.choices[0].message.content


def test_responses_api_returns_reasoning_and_message(client):
    response = client.responses.create(model="gpt-oss-20b", input="Hello there!",
                                       max_output_tokens=200)
    kinds = [item.type for item in response.output]
    assert "reasoning" in kinds and "message" in kinds
    assert response.output_text.strip()


def test_missing_and_wrong_keys_are_401(stack):
    missing = httpx.post(f"{stack.sidecar_url}/v1/chat/completions", timeout=10,
                         json={"model": "gpt-oss-20b", "messages": []})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    wrong = openai.OpenAI(base_url=f"{stack.sidecar_url}/v1", api_key="sk-gos-not-a-real-key")
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_key_without_permission_is_403(stack):
    chat_only = openai.OpenAI(base_url=f"{stack.sidecar_url}/v1", api_key=stack.chat_key)
    with pytest.raises(openai.PermissionDeniedError):
        chat_only.models.list()


def _vllm_gauge(stack, name: str) -> float:
    return metric_sum(httpx.get(f"{stack.vllm_url}/metrics", timeout=30).text, name)


def _tokens_once_quiet(stack, quiet_s: float = 3, within_s: float = 90) -> float:
    """vLLM's generated-token count once it has stopped moving and nothing runs."""
    deadline = time.monotonic() + within_s
    last, quiet_since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        now = _vllm_gauge(stack, "vllm:generation_tokens_total")
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif (time.monotonic() - quiet_since >= quiet_s
              and _vllm_gauge(stack, "vllm:num_requests_running") == 0):
            return now
        time.sleep(0.5)
    return last


def test_client_disconnect_aborts_the_request_in_vllm(stack):
    """Counted in tokens, not seconds: had the abort not reached vLLM, the request would go
    on to its 4000 tokens (`ignore_eos`); aborted, it stops within a few engine steps."""
    max_tokens = 4000
    body = {"model": "gpt-oss-20b", "stream": True, "max_tokens": max_tokens, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Write a very long story."}]}
    before = _tokens_once_quiet(stack)
    with httpx.stream("POST", f"{stack.sidecar_url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {stack.admin_key}"}, timeout=60) as r:
        assert any(re.search(r'"(reasoning|content)":"[^"]', line) for line in r.iter_lines())
    generated = _tokens_once_quiet(stack) - before
    assert 1 <= generated < max_tokens * 0.1, generated


def test_sidecar_metrics_count_requests_and_tokens(stack, client):
    client.chat.completions.create(model="gpt-oss-20b", max_tokens=50,
                                   messages=[{"role": "user", "content": "Hi"}])
    assert httpx.get(f"{stack.sidecar_url}/metrics", timeout=5).status_code == 401
    chat_only = {"Authorization": f"Bearer {stack.chat_key}"}
    assert httpx.get(f"{stack.sidecar_url}/metrics", headers=chat_only, timeout=5).status_code == 403
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    public = httpx.get(f"{stack.sidecar_url}/metrics", headers=admin, timeout=5).text
    private = httpx.get(f"{stack.metrics_url}/metrics", timeout=5).text  # the metrics port: no key
    for text in (public, private):
        _assert_counts(text)


def _assert_counts(text: str) -> None:
    assert re.search(r'sidecar_requests_total\{method="POST",route="/v1/chat/completions",'
                     r'status="200",user="admin"\} [1-9]', text)
    assert 'sidecar_tokens_total{kind="completion",route="/v1/chat/completions",user="admin"}' in text
    assert "vllm:generation_tokens_total" in text  # vLLM's metrics, scraped through the sidecar
