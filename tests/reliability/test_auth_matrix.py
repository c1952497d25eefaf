"""No route reaches vLLM without a valid key holding the route's permission.

Every operation of the app's OpenAPI schema is tried with no key, a wrong key, a revoked
key and a key without the permission: 401, 401, 401, 403, and the fake vLLM sees nothing.
The permission table below must name every authenticated route, so a new route cannot
slip in without deciding its permission here.
"""

from __future__ import annotations

import json
import warnings

import httpx
import pytest

from tests.reliability.conftest import UNAUTHENTICATED
from tests.sidecar_fixture import Sidecar, Start, build_app, openapi_schema, operations

# Which permission each authenticated operation needs (the contract's permission list).
PERMISSION: dict[tuple[str, str], str] = {
    ("POST", "/v1/chat/completions"): "chat",
    ("POST", "/v1/completions"): "completions",
    ("POST", "/v1/responses"): "chat",
    ("POST", "/v1/messages"): "chat",
    ("POST", "/v1/messages/count_tokens"): "chat",
    ("POST", "/v1/embeddings"): "embeddings",
    ("GET", "/v1/models"): "models",
    ("GET", "/v1/models/{model_id}"): "models",
    ("POST", "/api/generate"): "chat",
    ("POST", "/api/chat"): "chat",
    ("POST", "/api/embed"): "embeddings",
    ("POST", "/api/embeddings"): "embeddings",
    ("GET", "/api/tags"): "models",
    ("POST", "/api/show"): "models",
    ("GET", "/api/ps"): "models",
    ("POST", "/api/copy"): "admin",
    ("DELETE", "/api/delete"): "admin",
    ("POST", "/api/pull"): "admin",
    ("POST", "/api/push"): "admin",
    ("POST", "/api/create"): "admin",
    ("GET", "/metrics"): "metrics",  # user names and engine internals: never public
}
BODY: dict[str, object] = {
    "model": "gpt-oss-20b", "messages": [{"role": "user", "content": "hi"}], "prompt": "hi",
    "input": "hi", "source": "gpt-oss:20b", "destination": "mine", "stream": False,
}


def _request(sc: Sidecar, method: str, path: str, headers: dict[str, str]) -> httpx.Request:
    url = path.replace("{model_id}", "gpt-oss-20b")
    json_body = BODY if method in ("POST", "DELETE") else None
    return sc.client.build_request(method, url, json=json_body, headers=headers)


def _other_key(sc: Sidecar, permission: str) -> str:
    return sc.keys.models if permission == "chat" else sc.keys.chat


async def test_permission_table_covers_every_authenticated_route(sidecar: Start) -> None:
    async with sidecar() as sc:
        schema_ops = {op for op in operations(openapi_schema(sc.app)) if op not in UNAUTHENTICATED}
        assert schema_ops == set(PERMISSION)


async def test_every_route_refuses_missing_wrong_revoked_and_unpermitted_keys(
    sidecar: Start,
) -> None:
    async with sidecar() as sc:
        failures = []
        for method, path in operations(openapi_schema(sc.app)):
            if (method, path) in UNAUTHENTICATED:
                continue
            permission = PERMISSION[(method, path)]
            cases = [
                ("no key", {}, 401),
                ("wrong key", {"Authorization": "Bearer sk-gos-" + "x" * 43}, 401),
                ("wrong x-api-key", {"x-api-key": "sk-gos-nope"}, 401),
                ("revoked key", {"Authorization": f"Bearer {sc.keys.revoked}"}, 401),
                ("empty bearer", {"Authorization": "Bearer "}, 401),
                (f"key without {permission!r}",
                 {"Authorization": f"Bearer {_other_key(sc, permission)}"}, 403),
            ]
            for name, headers, expected in cases:
                response = await sc.client.send(_request(sc, method, path, headers))
                body = response.json()
                error = body["error"]
                shaped = isinstance(error, dict) if path.startswith("/v1") else isinstance(error, str)
                if response.status_code != expected or not shaped:
                    failures.append(f"{method} {path} with {name}: {response.status_code} {body}")
        assert failures == []
        assert [str(r.url) for r in sc.fake.seen] == []  # nothing reached vLLM


async def test_the_right_key_does_reach_vllm(sidecar: Start) -> None:
    """The matrix above is only meaningful if the same requests pass with a good key."""
    async with sidecar() as sc:
        for method, path in [("POST", "/v1/chat/completions"), ("GET", "/v1/models"),
                             ("POST", "/api/chat")]:
            headers = {"Authorization": f"Bearer {sc.keys.admin}"}
            response = await sc.client.send(_request(sc, method, path, headers))
            assert response.status_code == 200, (path, response.text)
        assert len(sc.fake.seen) >= 3


async def test_unauthenticated_routes_reveal_no_engine_internals(sidecar: Start) -> None:
    async with sidecar() as sc:
        for method, path in sorted(UNAUTHENTICATED):
            response = await sc.client.request(method, path)
            assert response.status_code in (200, 404, 503), (method, path)
            assert sc.keys.admin not in response.text


@pytest.mark.parametrize("escape", ["..%2F..%2Fmetrics", "%2E%2E/%2E%2E/version", "%2e%2e%2fhealth"])
async def test_model_id_cannot_walk_out_of_v1_models(sidecar: Start, escape: str) -> None:
    """/v1/models/{model_id} forwards the id to vLLM; a decoded "../" must stay inside."""
    async with sidecar() as sc:
        response = await sc.client.get(f"/v1/models/{escape}",
                                       headers={"Authorization": f"Bearer {sc.keys.models}"})
        assert response.status_code == 404
        assert all(r.url.path.startswith("/v1/models/") for r in sc.fake.seen), [
            str(r.url) for r in sc.fake.seen]


async def test_control_characters_in_model_id_are_a_client_error(sidecar: Start) -> None:
    async with sidecar() as sc:
        transport = httpx.ASGITransport(app=sc.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
            response = await client.get("/v1/models/%1F",
                                        headers={"Authorization": f"Bearer {sc.keys.models}"})
        assert response.status_code < 500, response.text


def test_openapi_is_clean(tmp_path) -> None:
    """Generating the schema warns about nothing (GET and HEAD / shared an operation id)."""
    from tests.fake_vllm import FakeVLLM

    app = build_app(tmp_path, FakeVLLM())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schema = app.openapi()
    ids = [op["operationId"] for item in schema["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_every_body_is_in_the_schema_as_a_component(tmp_path) -> None:
    """The Ollama routes parse their bodies themselves (clients send JSON without a JSON
    content type), yet the schema documents each body, so clients and the fuzz see them."""
    from tests.fake_vllm import FakeVLLM

    schema = build_app(tmp_path, FakeVLLM()).openapi()
    components = schema["components"]["schemas"]
    posted = {(method, path): operation for path, item in schema["paths"].items()
              for method, operation in item.items() if method in ("post", "delete")}
    assert ("post", "/api/chat") in posted and ("delete", "/api/delete") in posted
    for (method, path), operation in posted.items():
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        reference = body.get("schema", {}).get("$ref", "")
        assert reference.startswith("#/components/schemas/"), f"{method} {path}: {body}"
        assert reference.rsplit("/", 1)[1] in components
    assert "x-components" not in json.dumps(schema)
    assert components["ChatRequest"]["properties"]["messages"]
