"""Embeddings from the real companion engine (all-MiniLM-L6-v2 on vLLM's pooling runner)."""

from __future__ import annotations

import math

import ollama
import openai
import pytest

pytestmark = pytest.mark.e2e


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture(scope="module")
def ollama_client(stack) -> ollama.Client:
    return ollama.Client(host=stack.sidecar_url,
                         headers={"Authorization": f"Bearer {stack.admin_key}"})


def test_ollama_embed_real_vectors(ollama_client):
    sentences = ["The cat sits on the mat.", "The cat sits on the mat.",
                 "Quarterly tax filings are due in April."]
    response = ollama_client.embed(model="gpt-oss:20b", input=sentences)
    vectors = response.embeddings
    assert response.model == "all-minilm"  # says which model answered
    assert len(vectors) == 3 and all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-3) for v in vectors)
    assert cosine(vectors[0], vectors[1]) == pytest.approx(1.0, abs=1e-4)
    assert cosine(vectors[0], vectors[2]) < 0.5
    assert response.prompt_eval_count and response.prompt_eval_count > 0


def test_ollama_legacy_embeddings(ollama_client):
    response = ollama_client.embeddings(model="gpt-oss:20b", prompt="Hej, hur mår du?")
    assert len(response.embedding) == 384


def test_openai_sdk_embeddings(stack):
    client = openai.OpenAI(base_url=f"{stack.sidecar_url}/v1", api_key=stack.admin_key)
    result = client.embeddings.create(model="gpt-oss-20b", input=["hello world", "hello world"])
    assert result.model == "all-minilm"
    first, second = (item.embedding for item in result.data)
    assert len(first) == 384 and cosine(first, second) == pytest.approx(1.0, abs=1e-4)


def test_ready_reports_both_engines(stack):
    import httpx

    body = httpx.get(f"{stack.sidecar_url}/ready", timeout=5).json()
    assert body["engine"]["phase"] == "running"
    assert body["embedding_engine"]["phase"] == "running"


def test_tags_list_the_embedding_model_with_its_capability(stack):
    import httpx

    tags = httpx.get(f"{stack.sidecar_url}/api/tags", timeout=10,
                     headers={"Authorization": f"Bearer {stack.admin_key}"}).json()
    by_name = {m["name"]: m for m in tags["models"]}
    assert by_name["all-minilm:latest"]["capabilities"] == ["embedding"]
    assert "thinking" in by_name["gpt-oss:20b"]["capabilities"]
