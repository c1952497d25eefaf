"""Embedding routes against a fake embedding engine (the real one is in tests/e2e)."""

from __future__ import annotations

import json

import httpx

VECTOR = [0.6, 0.8]


def fake_engine(request: httpx.Request) -> httpx.Response:
    assert request.url.host == "embed", "embeddings must go to the embedding engine"
    body = json.loads(request.content)
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    return httpx.Response(200, json={
        "object": "list", "model": body["model"],
        "data": [{"index": i, "object": "embedding", "embedding": VECTOR}
                 for i in range(len(inputs))],
        "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)},
    })


async def test_api_embed_with_the_chat_model_name_is_answered_by_the_embedding_model(sidecar):
    async with sidecar(fake_engine, embedding_upstream_url="http://embed") as sc:
        response = await sc.client.post("/api/embed", headers=sc.auth(),
                                        json={"model": "gpt-oss:20b", "input": ["a", "b"]})
    body = response.json()
    assert response.status_code == 200
    assert body["model"] == "all-minilm"
    assert body["embeddings"] == [VECTOR, VECTOR]
    assert body["prompt_eval_count"] == 6 and body["total_duration"] > 0
    forwarded = json.loads(sc.seen[0].content)
    assert forwarded["model"] == "all-minilm" and forwarded["truncate_prompt_tokens"] == -1


async def test_legacy_api_embeddings_shape(sidecar):
    async with sidecar(fake_engine, embedding_upstream_url="http://embed") as sc:
        response = await sc.client.post("/api/embeddings", headers=sc.auth(),
                                        json={"model": "gpt-oss:20b", "prompt": "hej"})
    assert response.json()["embedding"] == VECTOR


async def test_openai_embeddings_pass_through(sidecar):
    async with sidecar(fake_engine, embedding_upstream_url="http://embed") as sc:
        response = await sc.client.post("/v1/embeddings", headers=sc.auth(),
                                        json={"model": "gpt-oss-20b", "input": "hello"})
    assert response.status_code == 200
    assert response.json()["model"] == "all-minilm"
    assert response.json()["data"][0]["embedding"] == VECTOR


async def test_embeddings_off_is_400_in_each_protocol(sidecar):
    async with sidecar(fake_engine) as sc:
        ollama = await sc.client.post("/api/embed", headers=sc.auth(),
                                      json={"model": "gpt-oss:20b", "input": "x"})
        openai = await sc.client.post("/v1/embeddings", headers=sc.auth(),
                                      json={"model": "gpt-oss-20b", "input": "x"})
    assert ollama.status_code == 400 and "does not support embeddings" in ollama.json()["error"]
    assert openai.status_code == 400
    assert "does not support embeddings" in openai.json()["error"]["message"]
    assert sc.seen == []


async def test_unknown_model_is_404(sidecar):
    async with sidecar(fake_engine, embedding_upstream_url="http://embed") as sc:
        response = await sc.client.post("/api/embed", headers=sc.auth(),
                                        json={"model": "llama3", "input": "x"})
    assert response.status_code == 404
    assert response.json() == {"error": "model 'llama3' not found"}


async def test_embeddings_need_the_permission(sidecar):
    async with sidecar(fake_engine, embedding_upstream_url="http://embed") as sc:
        response = await sc.client.post("/api/embed", headers=sc.auth(sc.keys.chat),
                                        json={"model": "gpt-oss:20b", "input": "x"})
    assert response.status_code == 403
