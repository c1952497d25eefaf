"""Malformed bodies the schema-driven fuzz (test_fuzz.py) does not generate, on every route
that takes a body, in process over the fake vLLM: deep nesting, huge arrays and strings,
invalid UTF-8, lone surrogates, duplicate keys, NaN/Infinity, wrong and missing content
types, and random mutations of valid bodies. Every answer: no 5xx, and a 4xx in the route's
protocol error shape.

``make test`` replays the same inputs every run (derandomized); ``make fuzz`` passes
``--fuzz-examples`` and explores new ones.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fake_vllm import FakeVLLM
from tests.sidecar_fixture import Start, build_app, make_keys, openapi_schema, operations

CHAT: dict[str, Any] = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "hi"}]}
OLLAMA = {"model": "gpt-oss:20b", "prompt": "hi", "stream": False,
          "messages": [{"role": "user", "content": "hi"}]}
DEEP = 50_000
SHAPES: dict[str, bytes] = {
    "deep array": b'{"model":"gpt-oss-20b","options":' + b"[" * DEEP + b"]" * DEEP + b"}",
    "deep object": b'{"model":"gpt-oss-20b","x":' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}",
    "deep, unterminated": b'{"model":"gpt-oss-20b","x":' + b"[" * DEEP,
    "huge array of ints": b'{"model":"gpt-oss-20b","prompt":[' + b"1," * 400_000 + b"1]}",
    "huge messages": json.dumps({**CHAT, "messages": CHAT["messages"] * 20_000}).encode(),
    "huge string": json.dumps({**CHAT, "prompt": "x" * 3_000_000}).encode(),
    "invalid utf-8": b'{"model":"gpt-oss-20b","prompt":"\xff\xfe\xc3"}',
    "encoded surrogate": b'{"model":"gpt-oss-20b","prompt":"\xed\xa0\x80"}',
    "lone high surrogate": b'{"model":"gpt-oss-20b","prompt":"\\ud800","messages":'
                           b'[{"role":"user","content":"\\ud800"}]}',
    "lone low surrogate": b'{"model":"gpt-oss-20b","prompt":"a\\udfff"}',
    "utf-16 body": json.dumps(OLLAMA).encode("utf-16"),
    "duplicate keys": b'{"model":"x","model":"gpt-oss-20b","stream":true,"stream":false,'
                      b'"messages":[],"messages":[{"role":"user","content":"hi"}]}',
    "NaN": b'{"model":"gpt-oss-20b","temperature":NaN,"options":{"temperature":NaN}}',
    "Infinity": b'{"model":"gpt-oss-20b","max_tokens":Infinity,"options":{"seed":-Infinity}}',
    "not json": b"model=gpt-oss-20b&prompt=hi",
    "empty": b"",
    "json scalar": b"42",
    "json array": b'[{"model":"gpt-oss-20b"}]',
    "trailing garbage": json.dumps(OLLAMA).encode() + b"}}}",
}
CONTENT_TYPES = ("application/json", "text/plain", None, "application/x-www-form-urlencoded")
MUTATION_EXAMPLES_DEFAULT = 25


def body_routes() -> list[tuple[str, str]]:
    schema = openapi_schema(build_app_for_listing())
    return [(m, p) for m, p in operations(schema) if m in ("POST", "PUT", "DELETE", "PATCH")]


def build_app_for_listing() -> Any:
    from pathlib import Path

    return build_app(Path("/nonexistent-state"), FakeVLLM())


def assert_protocol_answer(path: str, response: httpx.Response, label: str) -> None:
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
    if response.status_code < 400:
        return
    body = response.json()
    error = body["error"]
    if path.startswith("/v1/messages"):  # Anthropic's shape, as its SDK expects
        assert body["type"] == "error" and {"message", "type"} <= set(error), label
    elif path.startswith("/v1"):
        assert isinstance(error, dict), label
        assert {"message", "type", "param", "code"} <= set(error), label
    else:
        assert isinstance(error, str) and error, label


@pytest.mark.parametrize("method, path", body_routes(), ids=lambda v: str(v))
async def test_malformed_shapes_never_5xx(sidecar: Start, method: str, path: str) -> None:
    async with sidecar() as sc:
        auth = {"Authorization": f"Bearer {sc.keys.admin}"}
        statuses: dict[str, int] = {}
        for name, body in SHAPES.items():
            for content_type in CONTENT_TYPES:
                headers = dict(auth) if content_type is None else {**auth, "content-type": content_type}
                response = await sc.client.request(method, path, content=body, headers=headers)
                label = f"{method} {path} {name} ({content_type})"
                assert_protocol_answer(path, response, label)
                statuses[f"{name} ({content_type})"] = response.status_code
        # The shapes the guard owns are refused whatever the content type says.
        for name in ("deep array", "deep object", "huge messages", "huge string", "NaN",
                     "lone high surrogate", "encoded surrogate", "utf-16 body"):
            assert {statuses[f"{name} ({ct})"] for ct in CONTENT_TYPES} == {400}, (name, statuses)
        assert statuses["deep, unterminated (application/json)"] == 400


def _mutations(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """A valid body, then broken: spliced bytes, wrapped deep, a value made NaN or a lone
    surrogate, a key duplicated, a list made huge."""
    text = json.dumps(valid).encode()
    splice = st.tuples(st.integers(0, len(text)), st.binary(max_size=8)).map(
        lambda cut: text[:cut[0]] + cut[1] + text[cut[0]:])
    wrap = st.integers(60, 3000).map(
        lambda depth: text[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}")
    word = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b'"\\ud83d"', b'"\\udc00"',
                            b'"\xed\xb0\x80"', b'"\xff"', b"[" * 100 + b"]" * 100])
    replace = word.map(lambda w: text.replace(b'"hi"', w, 1))
    duplicate = st.just(text[:-1] + b"," + text[1:])
    huge = st.integers(10_001, 30_000).map(
        lambda n: json.dumps({**valid, "messages": [{"role": "user", "content": "a"}] * n,
                              "context": list(range(n))}).encode())
    return st.one_of(splice, wrap, replace, duplicate, huge)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/responses",
                                  "/api/chat", "/api/generate", "/api/show"])
def test_mutated_bodies_never_5xx(tmp_path: Any, path: str, request: pytest.FixtureRequest) -> None:

    asked = request.config.getoption("--fuzz-examples", default=None)
    keys = make_keys(tmp_path)
    app = build_app(tmp_path, FakeVLLM())
    valid = {**(CHAT if path.startswith("/v1") else OLLAMA),
             "prompt": "hi", "input": "hi", "stream": False}
    auth = {"Authorization": f"Bearer {keys.admin}", "content-type": "application/json"}

    @settings(max_examples=int(asked or MUTATION_EXAMPLES_DEFAULT), deadline=None,
              database=None, derandomize=asked is None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(body=_mutations(valid))
    def run(body: bytes) -> None:
        import anyio

        async def send() -> httpx.Response:
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://sidecar") as client:
                return await client.post(path, content=body, headers=auth)

        assert_protocol_answer(path, anyio.run(send), f"POST {path} {body[:120]!r}")

    run()
