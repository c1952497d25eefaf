"""Body bounds checked on the bytes before parsing (serving/sidecar/body_guard.py): the pure
check against a reference computed from the parsed JSON, and the middleware on every route."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.sidecar.app import DIALECTS
from serving.sidecar.body_guard import BodyLimits, BodyRejected, check_body
from tests.sidecar_fixture import openapi_schema, operations

SMALL = BodyLimits(max_depth=4, max_items=5, max_messages=3, max_string_bytes=24)
CHAT: dict[str, Any] = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "hi"}]}


def verdict(body: bytes, limits: BodyLimits) -> str:
    try:
        check_body(body, limits)
    except BodyRejected as err:
        return err.code
    return "ok"


def reference(value: Any, body: bytes, limits: BodyLimits) -> str:
    """What the guard must answer, from the parsed value (checked in the guard's order)."""
    strings: list[int] = []
    depth = items = objects = 0

    def walk(node: Any, level: int) -> None:
        nonlocal depth, items, objects
        if isinstance(node, (dict, list)):
            depth = max(depth, level + 1)
            items = max(items, len(node))
            children = list(node.values()) if isinstance(node, dict) else node
            if isinstance(node, dict):
                strings.extend(len(json.dumps(k, ensure_ascii=b"\\u" in body)) - 2 for k in node)
            else:
                objects = max(objects, sum(isinstance(c, dict) for c in node))
            for child in children:
                walk(child, level + 1)
        elif isinstance(node, str):
            strings.append(len(json.dumps(node, ensure_ascii=b"\\u" in body).encode()) - 2)

    walk(value, 0)
    if strings and max(strings) > limits.max_string_bytes:
        return "string_too_long"
    if depth > limits.max_depth:
        return "json_too_deep"
    if items > limits.max_items:
        return "too_many_items"
    if objects > limits.max_messages:
        return "too_many_messages"
    return "ok"


# Strings full of what trips a naive scanner: quotes, backslashes, brackets, commas, NaN.
_TRICKY = st.text(alphabet=st.sampled_from(list('a"\\[]{},: NaNInfinityé😀\n')), max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | _TRICKY,
    lambda inner: st.lists(inner, max_size=7) | st.dictionaries(_TRICKY, inner, max_size=7),
    max_leaves=40,
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(value=_JSON, ascii_only=st.booleans(), pad=st.booleans())
def test_the_guard_agrees_with_the_parsed_json(value: Any, ascii_only: bool, pad: bool) -> None:
    """Any JSON value, with strings made of quotes, backslashes and brackets: the bytes scan
    finds the same depth, items, objects per array and longest string as the parser. With
    `pad`, 5,000 extra strings send the scan down its many-strings path."""
    if pad:
        value = [value, ["s"] * 5000]
        limits = BodyLimits(max_depth=SMALL.max_depth, max_items=6000, max_messages=3,
                            max_string_bytes=SMALL.max_string_bytes)
    else:
        limits = SMALL
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert verdict(body, limits) == reference(value, body, limits), body[:300]


@pytest.mark.parametrize("body, code", [
    (b'{"options":' + b"[" * 50_000 + b"]" * 50_000 + b"}", "json_too_deep"),
    (b'{"a":"\\\\"' + b',"b":' + b"[" * 70 + b"]" * 70 + b"}", "json_too_deep"),  # "\\" ends
    (b'{"a":"\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', "ok"),
    (b'{"t":NaN}', "invalid_json"),
    (b'{"t":-Infinity}', "invalid_json"),
    (b'{"t":[1,Infinity]}', "invalid_json"),
    (b'{"t":"NaN and Infinity are words"}', "ok"),
    (b'{"c":"\\ud800"}', "invalid_unicode"),
    (b'{"c":"\\udc00x"}', "invalid_unicode"),
    (b'{"c":"\\ud83d\\ude00"}', "ok"),  # a pair: an escaped emoji
    (b'{"c":"\\ud83d\\u0041"}', "invalid_unicode"),
    (b'{"c":"\\\\ud800"}', "ok"),  # a backslash, then the text "ud800"
    (b'{"c":"\\\\\\ud800"}', "invalid_unicode"),  # a backslash, then a lone surrogate
    (b'{"c":"\xed\xa0\x80"}', "invalid_encoding"),  # a surrogate encoded as UTF-8
    (b'{"c":"\xed\x95\x9c\xea\xb5\xad"}', "ok"),  # Korean: ED lead byte, valid
    ('{"c":"hi"}'.encode("utf-16"), "invalid_encoding"),
    ('{"c":"hi"}'.encode("utf-32-le"), "invalid_encoding"),
    (b'{"c":"unterminated' + b"[" * 100, "invalid_json"),
    (b"", "ok"),
    (b"   ", "ok"),
    (b"not json at all", "ok"),  # left to the route's parser
])
def test_shapes(body: bytes, code: str) -> None:
    assert verdict(body, BodyLimits()) == code


def test_limits_at_their_edge() -> None:
    limits = BodyLimits(max_depth=3, max_items=4, max_messages=2, max_string_bytes=1024)
    assert verdict(b"[[[]]]", limits) == "ok"
    assert verdict(b"[[[[]]]]", limits) == "json_too_deep"
    assert verdict(b"[1,2,3,4]", limits) == "ok"
    assert verdict(b"[1,2,3,4,5]", limits) == "too_many_items"
    assert verdict(b'{"a":1,"b":2,"c":3,"d":4,"e":5}', limits) == "too_many_items"
    assert verdict(b'{"messages":[{},{}]}', limits) == "ok"
    assert verdict(b'{"messages":[{},{},{}]}', limits) == "too_many_messages"
    assert verdict(b'{"messages":[{},[],{}],"tools":[{},{}]}', limits) == "ok"
    assert verdict(b'"' + b"x" * 1024 + b'"', limits) == "ok"
    assert verdict(b'"' + b"x" * 1025 + b'"', limits) == "string_too_long"


def test_large_bodies_use_the_scan_not_the_shortcut() -> None:
    """Past 64 KiB the byte counts are skipped; the verdicts stay the same."""
    many: dict[str, Any] = {"model": "m",
                            "messages": [{"role": "user", "content": "x, [y] {z}" * 5}] * 2000}
    assert verdict(json.dumps(many).encode(), BodyLimits()) == "ok"
    many["messages"] = many["messages"] * 6
    assert verdict(json.dumps(many).encode(), BodyLimits()) == "too_many_messages"
    ids = {"model": "m", "prompt": list(range(300_000))}
    assert verdict(json.dumps(ids).encode(), BodyLimits()) == "too_many_items"


# --- through the app: every route that takes a body, in its protocol's error shape ---

def posted(sc: Any) -> list[httpx.Request]:
    """What reached the fake vLLM, without the sidecar's own polls of its /metrics."""
    return [r for r in sc.seen if r.method != "GET"]


def _body_routes(app: Any) -> list[tuple[str, str]]:
    return [(m, p) for m, p in operations(openapi_schema(app)) if m in ("POST", "DELETE", "PUT")]


async def test_every_body_route_refuses_deep_nesting_in_its_protocol_shape(sidecar):
    deep = b'{"model":"gpt-oss-20b","x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    async with sidecar(lambda r: httpx.Response(200, json={})) as sc:
        app = sc.client._transport.app  # type: ignore[attr-defined]
        routes = _body_routes(app)
        assert {("POST", "/v1/chat/completions"), ("POST", "/api/generate"),
                ("POST", "/api/chat"), ("DELETE", "/api/delete")} <= set(routes)
        for method, path in routes:
            response = await sc.client.request(method, path, content=deep, headers={
                **sc.auth(), "content-type": "application/json"})
            assert response.status_code == 400, (method, path, response.text)
            assert response.headers["x-request-id"]
            error = response.json()["error"]
            if path.startswith("/v1/messages"):  # Anthropic's error shape
                assert error["type"] == "invalid_request_error"
                assert "SERVING_MAX_JSON_DEPTH" in error["message"]
            elif path.startswith("/v1"):
                assert error["code"] == "json_too_deep"
                assert error["type"] == "invalid_request_error"
                assert "SERVING_MAX_JSON_DEPTH" in error["message"]
            else:
                assert "SERVING_MAX_JSON_DEPTH" in error
        metrics = (await sc.client.get("/metrics", headers=sc.auth())).text
    assert posted(sc) == []
    assert 'status="400"' in metrics


async def test_limits_come_from_the_settings(sidecar):
    async with sidecar(lambda r: httpx.Response(200, json={}), max_json_depth=3,
                            max_messages=2) as sc:
        deep = await sc.client.post("/api/chat", json={**CHAT, "x": [[[1]]]}, headers=sc.auth())
        many = await sc.client.post("/v1/chat/completions",
                                    json={**CHAT, "messages": CHAT["messages"] * 3},
                                    headers=sc.auth())
    assert deep.status_code == 400
    assert deep.json() == {"error": "JSON nesting deeper than 3 levels (SERVING_MAX_JSON_DEPTH)."}
    assert many.status_code == 400
    assert many.json()["error"]["code"] == "too_many_messages"
    assert "limit is 2 (SERVING_MAX_MESSAGES)" in many.json()["error"]["message"]


async def test_an_accepted_body_reaches_vllm_unchanged(sidecar):
    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}
    body = json.dumps({**CHAT, "messages": CHAT["messages"] * 100,
                       "temperature": 0.5}).encode()
    async with sidecar(lambda r: httpx.Response(200, json=reply)) as sc:

        async def chunks():  # sent in pieces: the guard gathers them and replays one body
            for start in range(0, len(body), 1000):
                yield body[start:start + 1000]

        response = await sc.client.post("/v1/chat/completions", content=chunks(),
                                         headers={**sc.auth(), "content-type": "application/json"})
    assert response.status_code == 200
    forwarded = json.loads(posted(sc)[-1].content)
    assert forwarded["messages"] == CHAT["messages"] * 100 and forwarded["temperature"] == 0.5


async def test_a_streamed_body_over_the_size_limit_is_413_in_the_protocol_shape(sidecar):
    async with sidecar(lambda r: httpx.Response(200, json={}), max_body_bytes=4096) as sc:

        async def chunks():  # no content-length: the size is only known while reading
            for _ in range(10):
                yield b" " * 1000

        openai = await sc.client.post("/v1/chat/completions", content=chunks(),
                                      headers=sc.auth())
        ollama = await sc.client.post("/api/chat", content=chunks(), headers=sc.auth())
    assert openai.status_code == 413 and openai.json()["error"]["code"] == "payload_too_large"
    assert ollama.status_code == 413 and "SERVING_MAX_BODY_BYTES" in ollama.json()["error"]
    assert posted(sc) == []


async def test_duplicate_keys_the_last_one_is_what_vllm_gets(sidecar):
    """Python's json keeps the last duplicate; the sidecar forwards what it parsed, so what
    it checked (the model name) is what vLLM sees."""
    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}
    body = b'{"model":"other","model":"gpt-oss-20b","messages":[{"role":"user","content":"a"}]}'
    async with sidecar(lambda r: httpx.Response(200, json=reply)) as sc:
        response = await sc.client.post("/v1/chat/completions", content=body, headers={
            **sc.auth(), "content-type": "application/json"})
    assert response.status_code == 200
    assert json.loads(posted(sc)[-1].content)["model"] == "gpt-oss-20b"


async def _behind_the_guard(path: str, incoming: list[dict[str, Any]],
                            reads: int) -> list[dict[str, Any]]:
    """The first `reads` messages an app behind the middleware receives of a POST to `path`
    whose client sends `incoming`; the middleware must send nothing itself."""
    from serving.sidecar.body_guard import BodyGuardMiddleware

    seen: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for _ in range(reads):
            seen.append(await receive())

    async def send(message: Any) -> None:
        raise AssertionError(f"nothing is sent for an accepted body: {message}")

    guard = BodyGuardMiddleware(app, limits=BodyLimits(), dialects=DIALECTS)
    await guard({"type": "http", "method": "POST", "path": path, "state": {}}, receive, send)
    return seen


async def test_the_middleware_replays_the_body_then_passes_the_disconnect_through():
    """The app sees the whole body once, then the client's own messages: a disconnect
    still reaches the route (it aborts the upstream request)."""
    incoming = [{"type": "http.request", "body": b'{"a": [1, ', "more_body": True},
                {"type": "http.request", "body": b"2]}", "more_body": False},
                {"type": "http.disconnect"}]
    seen = await _behind_the_guard("/api/chat", incoming, reads=2)
    assert seen == [{"type": "http.request", "body": b'{"a": [1, 2]}', "more_body": False},
                    {"type": "http.disconnect"}]


async def test_the_middleware_leaves_bodyless_requests_alone():
    from serving.sidecar.body_guard import BodyGuardMiddleware

    async def receive() -> dict[str, Any]:
        raise AssertionError("a GET is not read by the guard")

    called = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope["method"])

    await BodyGuardMiddleware(app, limits=BodyLimits(), dialects=DIALECTS)(
        {"type": "http", "method": "GET", "path": "/v1/models"}, receive, None)
    assert called == ["GET"]


async def test_a_client_that_leaves_mid_body_reaches_the_app_as_a_disconnect():
    incoming = [{"type": "http.request", "body": b'{"a": ', "more_body": True},
                {"type": "http.disconnect"}]
    seen = await _behind_the_guard("/v1/chat/completions", incoming, reads=1)
    assert seen == [{"type": "http.disconnect"}]


def test_items_are_counted_per_container_not_across_deeper_ones() -> None:
    """Found by the property test under CI's profile: the tokens of nested containers
    between two siblings were once counted as items of the level above."""
    body = b'[[null, null, null, null, null], {"": [], ":": []}]'
    assert verdict(body, SMALL) == reference(json.loads(body), body, SMALL) == "ok"
    assert verdict(b"[1,2,3,4,5,6]", SMALL) == "too_many_items"
