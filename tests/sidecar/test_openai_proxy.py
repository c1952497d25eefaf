"""The OpenAI pass-through, auth and error mapping against a fake vLLM."""

from __future__ import annotations

import json
import os

import httpx

from tests.fake_vllm import unreachable

CHAT = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hej! Hur mår du?"}]}

SSE_EVENTS = [
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n',
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"reasoning":"T\\u00e4nker \\"h\\u00e5rt\\""}}]}\n\n',
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Bra, tack! \xc3\xa5\xc3\xa4\xc3\xb6"}}]}\n\n',
    b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}\n\n',
    b"data: [DONE]\n\n",
]


def completion_body() -> dict[str, object]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Bra",
                                            "reasoning": "think"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }


class Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self):
        for chunk in self.chunks:
            yield chunk


def split_badly(events: list[bytes]) -> Chunks:
    """Network reads that cut events (and a UTF-8 character) in arbitrary places."""
    blob = b"".join(events)
    return Chunks([blob[i : i + 7] for i in range(0, len(blob), 7)])


async def test_missing_key_is_401_in_openai_shape(sidecar):
    async with sidecar(lambda r: httpx.Response(200, json={})) as sc:
        response = await sc.client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "authentication_error" and error["code"] == "missing_api_key"
    assert sc.seen == []  # never reached vLLM


async def test_wrong_key_is_401_and_x_api_key_header_works(sidecar):
    async with sidecar(lambda r: httpx.Response(200, json=completion_body())) as sc:
        wrong = await sc.client.post("/v1/chat/completions", json=CHAT,
                                     headers={"Authorization": "Bearer sk-gos-nope"})
        right = await sc.client.post("/v1/chat/completions", json=CHAT,
                                     headers={"x-api-key": sc.keys.admin})
    assert wrong.status_code == 401
    assert right.status_code == 200


async def test_key_without_permission_is_403(sidecar):
    async with sidecar(lambda r: httpx.Response(200, json={"data": []})) as sc:
        response = await sc.client.get("/v1/models", headers=sc.auth(sc.keys.chat))
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    assert sc.seen == []


async def test_non_streaming_adds_reasoning_content_and_forwards_body(sidecar):
    async with sidecar(lambda r: httpx.Response(200, json=completion_body())) as sc:
        response = await sc.client.post("/v1/chat/completions", json=CHAT, headers=sc.auth())
    message = response.json()["choices"][0]["message"]
    assert message["reasoning"] == message["reasoning_content"] == "think"
    forwarded = json.loads(sc.seen[0].content)
    assert forwarded["messages"][0]["content"] == "Hej! Hur mår du?"
    assert sc.seen[0].headers["x-request-id"] == response.headers["x-request-id"]


async def test_alias_can_be_turned_off(sidecar):
    handler = lambda r: httpx.Response(200, json=completion_body())
    async with sidecar(handler, reasoning_content_alias=False) as sc:
        response = await sc.client.post("/v1/chat/completions", json=CHAT, headers=sc.auth())
    assert "reasoning_content" not in response.json()["choices"][0]["message"]


async def test_streaming_relays_events_adds_alias_and_strips_injected_usage(sidecar):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=split_badly(SSE_EVENTS),
                              headers={"content-type": "text/event-stream"})

    async with sidecar(handler) as sc:
        response = await sc.client.post(
            "/v1/chat/completions", json={**CHAT, "stream": True}, headers=sc.auth())
        metrics = (await sc.client.get("/metrics", headers=sc.auth())).text
    forwarded = json.loads(sc.seen[0].content)
    assert forwarded["stream_options"] == {"include_usage": True}
    events = [e for e in response.content.split(b"\n\n") if e]
    assert len(events) == 4  # the usage-only chunk we asked for is not shown to the client
    reasoning = json.loads(events[1][5:])["choices"][0]["delta"]
    assert reasoning["reasoning"] == reasoning["reasoning_content"] == 'Tänker "hårt"'
    assert "åäö" in events[2].decode("utf-8")
    assert events[-1] == b"data: [DONE]"
    assert 'sidecar_tokens_total{kind="completion",route="/v1/chat/completions",user="admin"} 7.0' in metrics


async def test_client_asked_usage_is_kept(sidecar):
    handler = lambda r: httpx.Response(200, stream=Chunks(SSE_EVENTS))
    async with sidecar(handler) as sc:
        body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        response = await sc.client.post("/v1/chat/completions", json=body, headers=sc.auth())
    assert b'"usage":{"prompt_tokens":12' in response.content


async def test_upstream_errors_pass_through_with_status(sidecar):
    error = {"error": {"message": "The model `x` does not exist.", "type": "NotFoundError",
                       "param": "model", "code": 404}}
    async with sidecar(lambda r: httpx.Response(404, json=error)) as sc:
        response = await sc.client.post("/v1/chat/completions", json={**CHAT, "model": "x"},
                                        headers=sc.auth())
    assert response.status_code == 404
    assert response.json() == error


async def test_engine_down_is_503_with_retry_after(sidecar):
    async with sidecar(unreachable(httpx.ConnectError)) as sc:
        response = await sc.client.post("/v1/chat/completions", json=CHAT, headers=sc.auth())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "engine_unavailable"


async def test_engine_timeout_is_504(sidecar):
    async with sidecar(unreachable(httpx.ReadTimeout, "slow")) as sc:
        response = await sc.client.post("/v1/chat/completions", json=CHAT, headers=sc.auth())
    assert response.status_code == 504


async def test_stream_broken_midway_ends_with_sse_error_then_done(sidecar):
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield SSE_EVENTS[0]
            raise httpx.RemoteProtocolError("peer closed connection")

    async with sidecar(lambda r: httpx.Response(200, stream=Broken())) as sc:
        response = await sc.client.post("/v1/chat/completions", json={**CHAT, "stream": True},
                                        headers=sc.auth())
    events = [e for e in response.content.split(b"\n\n") if e]
    assert json.loads(events[-2][5:])["error"]["code"] == "engine_unavailable"
    assert events[-1] == b"data: [DONE]"


async def test_malformed_json_is_400(sidecar):
    async with sidecar(lambda r: httpx.Response(200, json={})) as sc:
        response = await sc.client.post(
            "/v1/chat/completions", content=b'{"model": "gpt-oss-20b", "messages": [',
            headers={**sc.auth(), "content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Malformed JSON body")
    assert sc.seen == []


async def test_wrong_type_names_the_field(sidecar):
    async with sidecar(lambda r: httpx.Response(200, json={})) as sc:
        response = await sc.client.post("/v1/chat/completions",
                                        json={"model": "gpt-oss-20b", "messages": "hi"},
                                        headers=sc.auth())
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"


async def test_oversized_body_is_413(sidecar):
    async with sidecar(lambda r: httpx.Response(200, json={}), max_body_bytes=2048) as sc:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
        response = await sc.client.post("/v1/chat/completions", json=big, headers=sc.auth())
    assert response.status_code == 413
    assert "2048" in response.json()["error"]["message"]


async def test_key_file_changes_are_picked_up_without_restart(sidecar):
    from serving.sidecar.keys import create_key, revoke_key

    async with sidecar(lambda r: httpx.Response(200, json=completion_body())) as sc:
        new_key, record = create_key(sc.keys.file, user="bob", permissions=["chat"])
        assert (await sc.client.post("/v1/chat/completions", json=CHAT,
                                     headers=sc.auth(new_key))).status_code == 200
        revoke_key(sc.keys.file, record.key_id)
        os.utime(sc.keys.file, (0, 0))  # same-second rewrites must still be noticed
        assert (await sc.client.post("/v1/chat/completions", json=CHAT,
                                     headers=sc.auth(new_key))).status_code == 401


async def test_health_needs_no_key_and_ready_reports_unreachable(sidecar):
    async with sidecar(unreachable(httpx.ConnectError, "refused")) as sc:
        health = await sc.client.get("/health")
        ready = await sc.client.get("/ready")
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 503
    assert ready.json()["reason"].startswith("engine unreachable")


async def test_ready_when_model_listed(sidecar):
    models = {"data": [{"id": "gpt-oss-20b", "root": "/models/x", "max_model_len": 8192}]}
    async with sidecar(lambda r: httpx.Response(200, json=models)) as sc:
        ready = await sc.client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["max_model_len"] == 8192


async def test_unknown_route_is_404_in_protocol_shape(sidecar):
    async with sidecar(lambda r: httpx.Response(200, json={})) as sc:
        openai_404 = await sc.client.get("/v1/nope", headers=sc.auth())
        ollama_404 = await sc.client.get("/api/nope", headers=sc.auth())
    assert openai_404.status_code == 404 and "message" in openai_404.json()["error"]
    assert ollama_404.status_code == 404 and isinstance(ollama_404.json()["error"], str)
