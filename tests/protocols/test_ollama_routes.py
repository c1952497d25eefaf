"""/api/* routes through the real app; vLLM faked with httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import httpx

from serving.protocols.ollama.routes import NdjsonRelay
from serving.protocols.ollama.stream import StreamState
from serving.relay_response import RelayResponse
from serving.sidecar.interface import Call
from tests.fake_vllm import FakeVLLM, sse, unreachable


def chunks() -> bytes:
    return sse(
        {
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
            "prompt_token_ids": [200006, 1428, 200008, 12194, 200007, 200006, 173781],
        },
        {"choices": [{"index": 0, "delta": {"reasoning": "Think"}, "token_ids": [200005]}]},
        {"choices": [{"index": 0, "delta": {"content": "Hej Björn"}, "token_ids": [200008]}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "token_ids": [200002]}]},
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}},
    )


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line]


async def test_generate_non_stream_seed_shape(sidecar: Any) -> None:
    async with sidecar(FakeVLLM(stream=chunks())) as sc:
        r = await sc.client.post(
            "/api/generate",
            headers=sc.auth(sc.keys.chat),
            json={
                "model": "gpt-oss:20b",
                "prompt": "Hej!",
                "stream": False,
                "options": {"temperature": 0.7, "num_predict": 64, "mirostat": 0},
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["response"] == "Hej Björn" and body["thinking"] == "Think"
        assert body["done"] is True and body["done_reason"] == "stop"
        assert body["model"] == "gpt-oss:20b"
        assert body["context"][-1] == 200007  # <|return|> stored as <|end|>
        for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
            assert isinstance(body[key], int) and body[key] >= 0
        assert body["prompt_eval_count"] == 7 and body["eval_count"] == 3
        (sent,) = sc.upstream_bodies("/v1/chat/completions")
        assert sent["model"] == "gpt-oss:20b" and sent["max_tokens"] == 64
        assert sent["temperature"] == 0.7 and "mirostat" not in sent


async def test_generate_stream_is_ndjson_ending_in_done(sidecar: Any) -> None:
    async with sidecar(FakeVLLM(stream=chunks())) as sc:
        r = await sc.client.post(
            "/api/generate", headers=sc.auth(), json={"model": "gpt-oss", "prompt": "Hej!"}
        )
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
        out = lines(r)
        assert [o.get("thinking", "") for o in out[:-1]] == ["Think", ""]
        assert "".join(o["response"] for o in out) == "Hej Björn"
        assert all(o["model"] == "gpt-oss" and "created_at" in o for o in out)
        assert out[-1]["done"] is True and out[-1]["eval_count"] == 3 and "context" in out[-1]
        assert "Björn".encode() in r.content  # raw UTF-8, not \u escapes


async def test_chat_non_stream(sidecar: Any) -> None:
    async with sidecar(FakeVLLM(stream=chunks())) as sc:
        r = await sc.client.post(
            "/api/chat",
            headers=sc.auth(),
            json={
                "model": "openai/gpt-oss-20b",
                "stream": False,
                "think": "high",
                "messages": [{"role": "user", "content": "Hej"}],
            },
        )
        body = r.json()
        assert body["message"] == {"role": "assistant", "content": "Hej Björn", "thinking": "Think"}
        (sent,) = sc.upstream_bodies("/v1/chat/completions")
        assert sent["reasoning_effort"] == "high" and "return_token_ids" not in sent


async def test_unknown_model_404_in_ollama_words(sidecar: Any) -> None:
    async with sidecar(FakeVLLM(stream=chunks())) as sc:
        r = await sc.client.post(
            "/api/generate", headers=sc.auth(), json={"model": "llama3", "prompt": "x"}
        )
        assert r.status_code == 404 and r.json() == {"error": "model 'llama3' not found"}
        assert sc.seen == []


async def test_wrong_option_type_is_a_400_naming_the_field(sidecar: Any) -> None:
    async with sidecar(FakeVLLM(stream=chunks())) as sc:
        r = await sc.client.post(
            "/api/generate",
            headers=sc.auth(),
            json={"model": "gpt-oss:20b", "prompt": "x", "options": {"temperature": "hot"}},
        )
        assert r.status_code == 400 and "options.temperature" in r.json()["error"]


async def test_auth_errors_are_ollama_shaped(sidecar: Any) -> None:
    async with sidecar(FakeVLLM(stream=chunks())) as sc:
        r = await sc.client.post("/api/chat", json={"model": "gpt-oss:20b", "messages": []})
        assert r.status_code == 401 and isinstance(r.json()["error"], str)
        r = await sc.client.post(
            "/api/generate",
            headers=sc.auth(sc.keys.models),
            json={"model": "gpt-oss:20b", "prompt": "x"},
        )
        assert r.status_code == 403
        r = await sc.client.post(
            "/api/generate",
            headers=sc.auth(sc.keys.chat),
            json={"model": "gpt-oss:20b", "prompt": "x", "raw": True},
        )
        assert r.status_code == 403 and "completions" in r.json()["error"]


async def test_engine_errors_keep_their_status(sidecar: Any) -> None:
    fake = FakeVLLM(status=400, error={"error": {"message": "prompt too long", "code": 400}})
    async with sidecar(fake) as sc:
        r = await sc.client.post(
            "/api/generate",
            headers=sc.auth(),
            json={"model": "gpt-oss:20b", "prompt": "x", "stream": False},
        )
        assert r.status_code == 400 and r.json() == {"error": "prompt too long"}


async def test_engine_down_is_503_with_retry_after(sidecar: Any) -> None:
    async with sidecar(unreachable(httpx.ConnectError, "refused")) as sc:
        r = await sc.client.post(
            "/api/generate",
            headers=sc.auth(),
            json={"model": "gpt-oss:20b", "prompt": "x", "stream": False},
        )
        assert r.status_code == 503 and "Retry-After" in r.headers
        assert isinstance(r.json()["error"], str)
        r = await sc.client.get("/api/tags", headers=sc.auth())
        assert r.status_code == 503


async def test_error_after_stream_began_is_a_final_error_line(sidecar: Any) -> None:
    broken = sse(
        {"choices": [{"index": 0, "delta": {"content": "Hej"}}]},
        {"error": {"message": "engine failed mid-stream", "code": 500}},
    )
    async with sidecar(FakeVLLM(stream=broken)) as sc:
        r = await sc.client.post(
            "/api/chat",
            headers=sc.auth(),
            json={"model": "gpt-oss:20b", "messages": [{"role": "user", "content": "x"}]},
        )
        out = lines(r)
        assert out[0]["message"]["content"] == "Hej"
        assert out[-1] == {"error": "engine failed mid-stream"}


async def test_empty_prompt_answers_loaded(sidecar: Any) -> None:
    async with sidecar(FakeVLLM()) as sc:
        r = await sc.client.post("/api/generate", headers=sc.auth(), json={"model": "gpt-oss:20b"})
        assert r.json()["done_reason"] == "load" and sc.seen == []


async def test_raw_generate_uses_completions(sidecar: Any) -> None:
    stream = sse(
        {"choices": [{"index": 0, "text": "ok"}]},
        {"choices": [{"index": 0, "text": "", "finish_reason": "length"}]},
    )
    async with sidecar(FakeVLLM(stream=stream)) as sc:
        r = await sc.client.post(
            "/api/generate",
            headers=sc.auth(),
            json={"model": "gpt-oss:20b", "prompt": "<|start|>user", "raw": True, "stream": False},
        )
        assert r.json()["response"] == "ok" and r.json()["done_reason"] == "length"
        (sent,) = sc.upstream_bodies("/v1/completions")
        assert sent["prompt"] == "<|start|>user"


async def test_embeddings_are_refused_for_now(sidecar: Any) -> None:
    async with sidecar(FakeVLLM()) as sc:
        for path in ("/api/embed", "/api/embeddings"):
            r = await sc.client.post(
                path, headers=sc.auth(), json={"model": "gpt-oss:20b", "prompt": "x", "input": "x"}
            )
            assert r.status_code == 400 and "does not support embeddings" in r.json()["error"]


async def test_version_and_root_need_no_key(sidecar: Any) -> None:
    async with sidecar(FakeVLLM()) as sc:
        assert (await sc.client.get("/")).text == "Ollama is running"
        assert (await sc.client.head("/")).status_code == 200
        assert "version" in (await sc.client.get("/api/version")).json()


class _EndlessBody(httpx.AsyncByteStream):
    """An upstream SSE body that never ends; records whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "H\xc3\xa4j"}}]}\n\n'
        await anyio.sleep(3600)
        yield b""

    async def aclose(self) -> None:
        self.closed = True


async def test_client_disconnect_closes_the_upstream_request() -> None:
    counted: list[int] = []

    class _Call:  # what NdjsonRelay uses of the sidecar's Call
        request_id = "r1"

        def record_tokens(self, *, prompt_tokens: int, completion_tokens: int) -> None:
            counted.append(prompt_tokens + completion_tokens)

    call = cast(Call, _Call())
    body = _EndlessBody()
    state = StreamState(kind="chat", model="m", show_thinking=True, started_ns=0)
    received: list[bytes] = []

    async def consume() -> None:  # the relay, with a client that never disconnects itself
        async def never_disconnects() -> dict[str, Any]:
            await anyio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message.get("body"):
                received.append(message["body"])

        relay = NdjsonRelay(call, httpx.Response(200, stream=body), state)
        await RelayResponse(relay)({"type": "http", "method": "POST"}, never_disconnects, send)

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await anyio.sleep(0.2)
        group.cancel_scope.cancel()  # the client went away: Starlette cancels the stream
    assert json.loads(received[0])["message"]["content"] == "Häj"
    assert body.closed  # closing the upstream connection makes vLLM abort the request
    assert counted == [0]  # accounted once, with what the stream reported (no usage yet)
