"""The clients people point at gpt-oss, against the real app and a fake vLLM: Anthropic
Messages, empty tool lists, one /v1/models entry per model, client-error types."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.fake_vllm import FakeVLLM, streamed

MESSAGES = {"model": "gpt-oss-20b", "max_tokens": 64,
            "messages": [{"role": "user", "content": "Hej!"}]}
ANTHROPIC_ANSWER = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "gpt-oss-20b",
    "content": [{"type": "thinking", "thinking": "Greeting.", "signature": ""},
                {"type": "text", "text": "Hej hej!"}],
    "stop_reason": "end_turn", "usage": {"input_tokens": 11, "output_tokens": 5},
}
# What vLLM 0.32 streams for /v1/messages (event names + data, usage in message_delta).
ANTHROPIC_EVENTS = [
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"gpt-oss-20b","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":0}}}\n\n',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Greeting."}}\n\n',
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hej \xc3\xa5!"}}\n\n',
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":11,"output_tokens":5}}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
]


def messages(request: httpx.Request) -> httpx.Response:
    if json.loads(request.content).get("stream"):
        return streamed(b"".join(ANTHROPIC_EVENTS), size=7)
    return httpx.Response(200, json=ANTHROPIC_ANSWER)


def fake_vllm() -> FakeVLLM:
    """vLLM with the Anthropic answers above; chat and responses as the fake answers them."""
    count = lambda request: httpx.Response(200, json={"input_tokens": 11})
    return FakeVLLM(routes={"/v1/messages": messages, "/v1/messages/count_tokens": count})


async def _tokens(sc: Any, kind: str) -> str:
    text = (await sc.client.get("/metrics", headers=sc.auth())).text
    lines = [line for line in text.splitlines()
             if line.startswith("sidecar_tokens_total{") and f'kind="{kind}"' in line
             and 'route="/v1/messages"' in line]
    return lines[0].rsplit(" ", 1)[1] if lines else "none"


async def test_messages_with_x_api_key_are_passed_through_and_counted(sidecar: Any) -> None:
    async with sidecar(fake_vllm()) as sc:
        r = await sc.client.post("/v1/messages", json=MESSAGES,
                                 headers={"x-api-key": sc.keys.chat,
                                          "anthropic-version": "2023-06-01"})
        prompt, completion = await _tokens(sc, "prompt"), await _tokens(sc, "completion")
    assert r.status_code == 200 and r.json() == ANTHROPIC_ANSWER
    assert (prompt, completion) == ("11.0", "5.0")
    forwarded = sc.upstream_bodies("/v1/messages")[0]
    assert forwarded == MESSAGES  # untouched: no stream_options added


async def test_streamed_messages_are_relayed_byte_for_byte_and_counted(sidecar: Any) -> None:
    async with sidecar(fake_vllm()) as sc:
        r = await sc.client.post("/v1/messages", json={**MESSAGES, "stream": True},
                                 headers={"x-api-key": sc.keys.chat})
        prompt, completion = await _tokens(sc, "prompt"), await _tokens(sc, "completion")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.content == b"".join(ANTHROPIC_EVENTS)
    assert (prompt, completion) == ("11.0", "5.0")  # once: message_start's usage is nested
    assert "stream_options" not in sc.upstream_bodies("/v1/messages")[0]


async def test_messages_errors_have_anthropic_shape_and_client_types(sidecar: Any) -> None:
    async with sidecar(fake_vllm()) as sc:
        missing = await sc.client.post("/v1/messages", json=MESSAGES)
        no_chat = await sc.client.post("/v1/messages", json=MESSAGES,
                                       headers={"x-api-key": sc.keys.models})
        invalid = await sc.client.post("/v1/messages", json={"model": "m"},
                                       headers={"x-api-key": sc.keys.chat})
        count = await sc.client.post("/v1/messages/count_tokens", json=MESSAGES,
                                     headers={"x-api-key": sc.keys.chat})
    assert missing.status_code == 401
    assert missing.json() == {"type": "error", "error": {
        "type": "authentication_error", "message": missing.json()["error"]["message"]}}
    assert no_chat.status_code == 403 and no_chat.json()["error"]["type"] == "permission_error"
    assert invalid.status_code == 400
    assert invalid.json()["error"]["type"] == "invalid_request_error"
    assert "messages" in invalid.json()["error"]["message"]
    assert count.json() == {"input_tokens": 11}
    assert not any(r.url.path == "/v1/messages" for r in sc.seen)


async def test_models_lists_the_canonical_name_once_and_aliases_still_work(sidecar: Any) -> None:
    async with sidecar(fake_vllm()) as sc:
        listed = (await sc.client.get("/v1/models", headers=sc.auth(sc.keys.models))).json()
        await sc.client.post("/api/copy", headers=sc.auth(),
                             json={"source": "gpt-oss:20b", "destination": "team-model"})
        for name in ("gpt-oss:20b", "openai/gpt-oss-20b", "team-model", "gpt-oss:latest"):
            r = await sc.client.post("/v1/chat/completions", headers=sc.auth(), json={
                "model": name, "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200
    assert [card["id"] for card in listed["data"]] == ["gpt-oss-20b"]
    sent = [b["model"] for b in sc.upstream_bodies("/v1/chat/completions")]
    assert sent == ["gpt-oss:20b", "openai/gpt-oss-20b", "gpt-oss-20b", "gpt-oss-20b"]


async def test_empty_tools_are_accepted_on_every_route_that_takes_tools(sidecar: Any) -> None:
    bodies = {
        "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
        "/v1/responses": {"input": "hi"},
        "/v1/messages": {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    }
    async with sidecar(fake_vllm()) as sc:
        for path, body in bodies.items():
            r = await sc.client.post(path, headers=sc.auth(), json={
                "model": "gpt-oss-20b", "tools": [], "tool_choice": "auto", **body})
            assert r.status_code == 200, (path, r.text)
            sent = sc.upstream_bodies(path)[0]
            assert "tools" not in sent and "tool_choice" not in sent, path


async def test_bodies_that_are_not_json_or_utf8_are_client_errors(sidecar: Any) -> None:
    async with sidecar(fake_vllm()) as sc:
        answers = [
            await sc.client.post("/v1/chat/completions", content=content,
                                 headers={**sc.auth(), "content-type": "application/json"})
            for content in (b"{not json", b'{"model": "\xff\xfe"}', b"[1, 2]")
        ]
        wrong_method = await sc.client.get("/v1/chat/completions", headers=sc.auth())
    for r in [*answers, wrong_method]:
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["error"]["type"] == "invalid_request_error", r.text
    assert sc.seen == []


async def test_the_anthropic_sdk_reads_answers_streams_and_errors(sidecar: Any) -> None:
    """The real `anthropic` client over the app (the e2e test does the same on the engine)."""
    import anthropic
    import httpx2  # the transport library the anthropic SDK uses

    async with sidecar(fake_vllm()) as sc:
        app = sc.client._transport.app
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app))
        client = anthropic.AsyncAnthropic(base_url="http://sidecar", api_key=sc.keys.chat,
                                          http_client=http)
        message = await client.messages.create(**MESSAGES)
        async with client.messages.stream(**MESSAGES) as stream:
            deltas = [event.delta.type async for event in stream
                      if event.type == "content_block_delta"]
            final = await stream.get_final_message()
        denied = anthropic.AsyncAnthropic(base_url="http://sidecar", api_key="sk-gos-wrong",
                                          http_client=http, max_retries=0)
        try:
            await denied.messages.create(**MESSAGES)
            raise AssertionError("a wrong key was accepted")
        except anthropic.AuthenticationError as exc:
            error = exc.body
        await http.aclose()
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.usage.output_tokens == 5
    assert deltas == ["thinking_delta", "text_delta"]
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.usage.output_tokens == 5
    assert isinstance(error, dict) and error["error"]["type"] == "authentication_error"
    assert sc.seen[0].headers.get("x-api-key") is None  # the key stays at the sidecar
