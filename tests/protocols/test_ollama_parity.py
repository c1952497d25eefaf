"""Ollama parity through the real app and a fake vLLM: curl bodies without Content-Type,
Modelfile presets (/api/create) on both dialects, logprobs, keep_alive 0."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.fake_vllm import models_list, sse

CHUNKS = sse(
    {"choices": [{"index": 0, "delta": {"reasoning": "Hm."}}]},
    {"choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": {"content": [
        {"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
         "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                          {"token": "Yo", "logprob": -2.5, "bytes": [89, 111]}]}]}}]},
    {"choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop",
                  "logprobs": {"content": [{"token": "!", "logprob": -0.2, "bytes": [33],
                                            "top_logprobs": []}]}}]},
    {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
)
RAW_CHUNKS = sse(
    {"choices": [{"index": 0, "text": "ok", "logprobs": {
        "tokens": ["ok"], "token_logprobs": [-0.3], "top_logprobs": [{"ok": -0.3, "no": -1.9}],
        "text_offset": [0]}}]},
    {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
)


def fake(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/models":
        return httpx.Response(200, json=models_list())
    if request.url.path == "/v1/embeddings":
        return httpx.Response(200, json={"model": "all-minilm", "data": [
            {"index": 0, "embedding": [0.6, 0.8]}], "usage": {"prompt_tokens": 2}})
    body = json.loads(request.content)
    if not body.get("stream"):  # the OpenAI pass-through, not streamed
        return httpx.Response(200, json={"choices": [], "usage": {}})
    stream = RAW_CHUNKS if request.url.path == "/v1/completions" else CHUNKS
    return httpx.Response(200, content=stream, headers={"content-type": "text/event-stream"})


MODEL = "gpt-oss:20b"
# One body for every /api route that takes one; a route missing here fails the test.
BODIES: dict[str, dict[str, Any]] = {
    "/api/generate": {"model": MODEL, "prompt": "hi", "stream": False},
    "/api/chat": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                  "stream": False},
    "/api/embed": {"model": MODEL, "input": "hi"},
    "/api/embeddings": {"model": MODEL, "prompt": "hi"},
    "/api/show": {"model": MODEL},
    "/api/copy": {"source": MODEL, "destination": "curl-copy"},
    "/api/delete": {"model": "curl-copy"},
    "/api/pull": {"model": MODEL, "stream": False},
    "/api/create": {"model": "curl-preset", "from": MODEL, "stream": False},
    "/api/push": {"model": MODEL},
}


async def test_every_api_route_accepts_json_without_content_type(sidecar: Any) -> None:
    async with sidecar(fake, embedding_upstream_url="http://embed") as sc:
        app_routes = {(route.path, method)  # type: ignore[attr-defined]
                      for route in sc.client._transport.app.routes  # type: ignore[attr-defined]
                      for method in getattr(route, "methods", ())
                      if route.path.startswith("/api/")  # type: ignore[attr-defined]
                      and method in ("POST", "DELETE")}
        assert {path for path, _ in app_routes} == set(BODIES)
        for path, method in sorted(app_routes, key=lambda pm: pm[0] == "/api/delete"):
            r = await sc.client.request(method, path, headers=sc.auth(),
                                        content=json.dumps(BODIES[path]).encode())
            assert "content-type" not in r.request.headers  # as curl -d sends it
            if path == "/api/push":  # refused for what it asks, not for its body
                assert r.status_code == 400 and "not supported" in r.json()["error"]
            else:
                assert r.status_code == 200, (path, r.text)


async def _create(sc: Any, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return await sc.client.post("/api/create", headers=sc.auth(key), json=body)


async def test_preset_lifecycle_on_both_dialects(sidecar: Any) -> None:
    async with sidecar(fake) as sc:
        r = await _create(sc, {"model": "mario", "from": "gpt-oss", "system": "You are Mario.",
                               "parameters": {"temperature": 0.8, "num_predict": 40}})
        assert [json.loads(line)["status"] for line in r.text.splitlines()][-1] == "success"
        tags = (await sc.client.get("/api/tags", headers=sc.auth())).json()
        assert [m["name"] for m in tags["models"]] == ["gpt-oss:20b", "mario:latest"]
        show = (await sc.client.post("/api/show", headers=sc.auth(),
                                     json={"model": "mario"})).json()
        assert 'SYSTEM "You are Mario."' in show["modelfile"]
        assert "PARAMETER temperature 0.8" in show["modelfile"]
        assert show["system"] == "You are Mario." and show["details"]["parent_model"] == \
            "gpt-oss:latest"
        assert show["parameters"].split() == ["num_predict", "40", "temperature", "0.8"]

        await sc.client.post("/api/chat", headers=sc.auth(), json={
            "model": "mario", "stream": False, "messages": [{"role": "user", "content": "Hi"}]})
        await sc.client.post("/api/generate", headers=sc.auth(), json={
            "model": "mario", "stream": False, "prompt": "Hi", "options": {"temperature": 0}})
        await sc.client.post("/v1/chat/completions", headers=sc.auth(), json={
            "model": "mario", "messages": [{"role": "user", "content": "Hi"}]})
        listed = (await sc.client.get("/v1/models", headers=sc.auth())).json()["data"]
        assert [card["id"] for card in listed] == ["gpt-oss-20b", "mario:latest"]

        r = await sc.client.request("DELETE", "/api/delete", headers=sc.auth(),
                                    json={"model": "mario"})
        assert r.status_code == 200
        gone = await sc.client.post("/api/chat", headers=sc.auth(), json={
            "model": "mario", "messages": [{"role": "user", "content": "Hi"}]})
        assert gone.status_code == 404
    ollama_chat, ollama_generate, openai_chat = sc.upstream_bodies("/v1/chat/completions")
    for sent in (ollama_chat, ollama_generate, openai_chat):
        assert sent["model"] == "gpt-oss-20b"
        assert sent["messages"][0] == {"role": "system", "content": "You are Mario."}
        assert sent["max_tokens"] == 40
    assert ollama_chat["temperature"] == openai_chat["temperature"] == 0.8
    assert ollama_generate["temperature"] == 0  # the request's own option wins


async def test_legacy_modelfile_string_and_copy_of_a_preset(sidecar: Any) -> None:
    modelfile = 'FROM gpt-oss:20b\nPARAMETER top_k 7\nMESSAGE user """Who are you?"""\n'
    async with sidecar(fake) as sc:
        r = await _create(sc, {"name": "legacy", "modelfile": modelfile, "stream": False})
        assert r.json() == {"status": "success"}
        await sc.client.post("/api/copy", headers=sc.auth(),
                             json={"source": "legacy", "destination": "legacy-2"})
        show = (await sc.client.post("/api/show", headers=sc.auth(),
                                     json={"model": "legacy-2"})).json()
        assert show["messages"] == [{"role": "user", "content": "Who are you?"}]
        await sc.client.post("/api/chat", headers=sc.auth(), json={
            "model": "legacy-2", "stream": False,
            "messages": [{"role": "user", "content": "Hi"}]})
    sent = sc.upstream_bodies("/v1/chat/completions")[0]
    assert sent["top_k"] == 7
    assert [m["content"] for m in sent["messages"]] == ["Who are you?", "Hi"]


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"model": "x", "from": "llama3:8b"}, 400, "not served here"),
    ({"model": "x", "modelfile": "FROM gpt-oss:20b\nADAPTER ./lora"}, 400, "ADAPTER"),
    ({"model": "x", "from": "gpt-oss:20b", "quantize": "q4_K_M"}, 400, "quantize"),
    ({"model": "gpt-oss:20b", "from": "gpt-oss:20b"}, 400, "served model already"),
    ({"model": "x", "modelfile": "SYSTEM hi"}, 400, "no FROM line"),
])
async def test_create_refusals_are_clear_400s(sidecar: Any, body: dict[str, Any], status: int,
                                             needle: str) -> None:
    async with sidecar(fake) as sc:
        r = await _create(sc, body)
        tags = (await sc.client.get("/api/tags", headers=sc.auth())).json()
    assert r.status_code == status and needle in r.json()["error"], r.text
    assert len(tags["models"]) == 1


async def test_create_needs_the_admin_permission(sidecar: Any) -> None:
    async with sidecar(fake) as sc:
        r = await _create(sc, {"model": "x", "from": MODEL}, key=sc.keys.chat)
    assert r.status_code == 403


async def test_logprobs_in_ollama_shape_streamed_and_not(sidecar: Any) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
            "logprobs": True, "top_logprobs": 2}
    async with sidecar(fake) as sc:
        streamed = await sc.client.post("/api/chat", headers=sc.auth(), json=body)
        whole = (await sc.client.post("/api/chat", headers=sc.auth(),
                                      json={**body, "stream": False})).json()
        too_many = await sc.client.post("/api/chat", headers=sc.auth(),
                                        json={**body, "top_logprobs": 21})
    sent = sc.upstream_bodies("/v1/chat/completions")[0]
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    with_logprobs = [line for line in lines if "logprobs" in line]
    assert [line["message"]["content"] for line in with_logprobs] == ["Hi", "!"]
    first = with_logprobs[0]["logprobs"][0]
    assert first == {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [
        {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
        {"token": "Yo", "logprob": -2.5, "bytes": [89, 111]}]}
    assert [entry["token"] for entry in whole["logprobs"]] == ["Hi", "!"]
    assert too_many.status_code == 400 and "top_logprobs" in too_many.json()["error"]


async def test_raw_generate_logprobs_from_the_completions_shape(sidecar: Any) -> None:
    async with sidecar(fake) as sc:
        r = await sc.client.post("/api/generate", headers=sc.auth(), json={
            "model": MODEL, "prompt": "<|start|>user", "raw": True, "stream": False,
            "logprobs": True, "top_logprobs": 2})
    assert sc.upstream_bodies("/v1/completions")[0]["logprobs"] == 2
    assert r.json()["logprobs"] == [{"token": "ok", "logprob": -0.3, "bytes": [111, 107],
                                     "top_logprobs": [
                                         {"token": "ok", "logprob": -0.3, "bytes": [111, 107]},
                                         {"token": "no", "logprob": -1.9, "bytes": [110, 111]}]}]


@pytest.mark.parametrize(("keep_alive", "reason"), [
    (0, "unload"), ("0", "unload"), ("0s", "unload"), ("0m", "unload"),
    ("5m", "load"), (-1, "load"), (None, "load")])
async def test_keep_alive_zero_with_nothing_to_do_answers_unload(
    sidecar: Any, keep_alive: Any, reason: str
) -> None:
    extra = {} if keep_alive is None else {"keep_alive": keep_alive}
    async with sidecar(fake) as sc:
        generate = await sc.client.post("/api/generate", headers=sc.auth(),
                                        json={"model": MODEL, **extra})
        chat = await sc.client.post("/api/chat", headers=sc.auth(),
                                    json={"model": MODEL, "messages": [], **extra})
    assert generate.json()["done_reason"] == chat.json()["done_reason"] == reason
    assert generate.json()["done"] is True and sc.upstream_bodies("/v1/chat/completions") == []


async def test_api_chat_accepts_an_empty_tool_list(sidecar: Any) -> None:
    async with sidecar(fake) as sc:
        r = await sc.client.post("/api/chat", headers=sc.auth(), json={
            "model": MODEL, "stream": False, "tools": [],
            "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200
    sent = sc.upstream_bodies("/v1/chat/completions")[0]
    assert "tools" not in sent and "tool_choice" not in sent
