"""Ollama parity end to end: the Ollama guide's curl bodies (no Content-Type), a Modelfile
preset made with the `ollama` client and used by name from both dialects, logprobs,
keep_alive 0, and `tools: []` through the `openai` SDK. Structure only, never words: the
smoke checkpoint is a toy."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
import ollama
import openai
import pytest

pytestmark = pytest.mark.e2e

MODEL = "gpt-oss:20b"
GREEDY = {"temperature": 0}


def curl(stack: Any, path: str, body: dict[str, Any], method: str = "POST") -> dict[str, Any]:
    """As the Ollama API guide does it: `curl URL -d '{...}'` (no Content-Type header)."""
    out = subprocess.run(
        ["curl", "-sS", "-X", method, f"{stack.sidecar_url}{path}", "-H",
         f"Authorization: Bearer {stack.admin_key}", "-d", json.dumps(body)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    parsed: dict[str, Any] = json.loads(out)
    return parsed


@pytest.fixture(scope="module")
def client(stack: Any) -> ollama.Client:
    return ollama.Client(host=stack.sidecar_url, timeout=120,
                         headers={"Authorization": f"Bearer {stack.admin_key}"})


def test_guide_curl_bodies_for_embeddings_and_chat(stack: Any) -> None:
    legacy = curl(stack, "/api/embeddings", {"model": "all-minilm", "prompt": "Llamas are "
                                             "members of the camelid family"})
    assert len(legacy["embedding"]) == 384
    embed = curl(stack, "/api/embed", {"model": MODEL, "input": ["a", "b"]})
    assert len(embed["embeddings"]) == 2
    chat = curl(stack, "/api/chat", {"model": MODEL, "stream": False, "options": GREEDY,
                                     "messages": [{"role": "user", "content": "Hi!"}]})
    assert chat["done"] is True and chat["message"]["role"] == "assistant"


def test_modelfile_preset_is_listed_shown_used_on_both_dialects_and_deleted(
    stack: Any, client: ollama.Client
) -> None:
    try:
        status = client.create(model="my-chatbot", from_="gpt-oss:20b",
                               system="You are a helpful chatbot.",
                               parameters={"temperature": 0, "num_predict": 64})
        assert status.status == "success"
        names = [m.model for m in client.list().models]
        assert names[:2] == ["gpt-oss:20b", "my-chatbot:latest"]  # then the embedding model
        shown = client.show("my-chatbot")
        assert shown.modelfile and "FROM gpt-oss:20b" in shown.modelfile
        assert 'SYSTEM "You are a helpful chatbot."' in shown.modelfile
        reply = client.chat(model="my-chatbot", stream=False,
                            messages=[{"role": "user", "content": "Hello!"}])
        assert reply.model == "my-chatbot" and reply.eval_count and reply.eval_count <= 64
        openai_client = openai.OpenAI(base_url=f"{stack.sidecar_url}/v1",
                                      api_key=stack.admin_key, timeout=120)
        completion = openai_client.chat.completions.create(
            model="my-chatbot:latest", messages=[{"role": "user", "content": "Hello!"}])
        assert completion.usage is not None and completion.usage.completion_tokens <= 64
        assert [m.id for m in openai_client.models.list()] == ["gpt-oss-20b",
                                                                "my-chatbot:latest"]
        with pytest.raises(ollama.ResponseError) as refused:
            client.create(model="other", from_="llama3.2")
        assert refused.value.status_code == 400 and "not served here" in refused.value.error
    finally:
        client.delete("my-chatbot")
    assert "my-chatbot:latest" not in [m.model for m in client.list().models]


def test_logprobs_in_ollama_shape(client: ollama.Client) -> None:
    reply = client.chat(model=MODEL, stream=False, options={**GREEDY, "num_predict": 32},
                        logprobs=True, top_logprobs=2,
                        messages=[{"role": "user", "content": "Hi!"}])
    assert reply.logprobs, reply
    first = reply.logprobs[0]
    assert isinstance(first.token, str) and first.logprob <= 0
    assert first.top_logprobs is not None and len(first.top_logprobs) == 2


def test_keep_alive_zero_answers_unload(client: ollama.Client) -> None:
    assert client.generate(model=MODEL, keep_alive=0).done_reason == "unload"
    assert client.generate(model=MODEL).done_reason == "load"


def test_empty_tool_list_through_the_openai_sdk(stack: Any) -> None:
    openai_client = openai.OpenAI(base_url=f"{stack.sidecar_url}/v1", api_key=stack.admin_key,
                                  timeout=120)
    reply = openai_client.chat.completions.create(
        model="gpt-oss:20b", tools=[], max_tokens=64, temperature=0,
        messages=[{"role": "user", "content": "Hi!"}])
    assert reply.choices[0].finish_reason in ("stop", "length")
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    empty = httpx.post(f"{stack.sidecar_url}/v1/chat/completions", timeout=120, headers=headers,
                       json={"model": "gpt-oss-20b", "tools": [], "tool_choice": "auto",
                             "max_tokens": 32, "messages": [{"role": "user", "content": "Hi"}]})
    assert empty.status_code == 200, empty.text
    raw = httpx.post(f"{stack.sidecar_url}/v1/chat/completions", timeout=30,
                     headers={"Authorization": f"Bearer {stack.admin_key}",
                              "Content-Type": "application/json"},
                     content=b'{"model": "gpt-oss-20b", "messages": [\xff]}')
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
