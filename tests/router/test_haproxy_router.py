"""The rendered router config, run by a real HAProxy in front of fake replicas: the caller's
key reaches the replica on every route of both dialects, streams are relayed as they come,
conversations stick to one replica, and a replica that is not ready leaves rotation."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import httpx
import pytest

from serving.launcher.router_config import (
    REPLICA_HEADER,
    RouterConfig,
    render_haproxy_config,
)

ROUTES = [
    ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/responses"),
    ("POST", "/v1/messages"), ("POST", "/v1/embeddings"), ("GET", "/v1/models"),
    ("POST", "/api/chat"), ("POST", "/api/generate"), ("POST", "/api/embed"),
    ("GET", "/api/tags"), ("POST", "/api/show"), ("GET", "/api/ps"),
]


def test_every_route_reaches_a_replica_with_the_callers_key(make_router, replicas):
    router = make_router()
    body = {"model": "gpt-oss:20b", "messages": [{"role": "user", "content": "hi"}]}
    for method, path in ROUTES:
        for header in ({"Authorization": "Bearer sk-caller"}, {"x-api-key": "sk-caller"}):
            response = httpx.request(method, f"{router.url}{path}", headers=header,
                                     json=body if method == "POST" else None, timeout=10)
            assert response.status_code == 200, path
            seen = [s for r in replicas for s in r.seen if s["path"] == path][-1]
            headers = {k.lower(): v for k, v in seen["headers"].items()}
            name, value = next(iter(header.items()))
            assert headers.get(name.lower()) == value, (path, name)
            if method == "POST":
                assert json.loads(seen["body"]) == body  # the body arrives as it was sent


def test_streams_are_relayed_chunk_by_chunk(make_router, replicas):
    router = make_router()
    with httpx.stream("POST", f"{router.url}/stream", json={"x": 1}, timeout=10) as response:
        lines = response.iter_lines()
        assert json.loads(next(lines)) == {"n": 1}  # arrives while the replica still holds n=2
        for replica in replicas:
            replica.gate.set()
        assert json.loads(next(lines)) == {"n": 2}


def _conversation(i: int, turns: int) -> list[dict[str, object]]:
    history = [{"role": "system", "content": f"Document {i}: " + "lorem ipsum " * 200}]
    bodies: list[dict[str, object]] = []
    for t in range(turns):
        history = [*history, {"role": "user", "content": f"question {t}"}]
        bodies.append({"model": "gpt-oss-20b", "messages": history})
        history = [*history, {"role": "assistant", "content": f"answer {t}"}]
    return bodies


def _landings(router, conversations: int, turns: int) -> dict[int, list[str]]:
    landed: dict[int, list[str]] = {i: [] for i in range(conversations)}
    for t in range(turns):  # interleaved, as concurrent users would be
        for i in range(conversations):
            body = _conversation(i, turns)[t]
            response = httpx.post(f"{router.url}/v1/chat/completions", json=body, timeout=10)
            landed[i].append(response.headers[REPLICA_HEADER])
    return landed


def test_affinity_keeps_each_conversation_on_one_replica_and_spreads_them(make_router):
    landed = _landings(make_router(policy="affinity"), conversations=9, turns=4)
    assert all(len(set(replicas)) == 1 for replicas in landed.values()), landed
    assert len({replicas[0] for replicas in landed.values()}) == 2, landed


def test_round_robin_moves_conversations_between_replicas(make_router):
    landed = _landings(make_router(policy="roundrobin"), conversations=9, turns=4)
    assert all(len(set(replicas)) == 2 for replicas in landed.values()), landed


def test_session_header_overrides_the_body(make_router):
    router = make_router(policy="affinity")
    replicas_seen: Counter[str] = Counter()
    for i in range(10):
        body = {"messages": [{"role": "user", "content": f"different {i}"}]}
        response = httpx.post(f"{router.url}/api/chat", json=body,
                              headers={"X-Session-Id": "agent-7"}, timeout=10)
        replicas_seen[response.headers[REPLICA_HEADER]] += 1
    assert len(replicas_seen) == 1


def test_a_replica_that_is_not_ready_leaves_rotation_without_failed_requests(
        make_router, replicas):
    router = make_router(policy="roundrobin")
    replicas[0].ready = False  # draining, starting, or its engine is down
    # Requests sent while the router has not yet seen the failed checks still succeed:
    # the replica answers them (it is still up), and afterwards none go there.
    statuses: Counter[int] = Counter()
    threads = []

    def call() -> None:
        statuses[httpx.post(f"{router.url}/api/chat", json={}, timeout=10).status_code] += 1

    for _ in range(20):
        thread = threading.Thread(target=call)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    assert statuses == Counter({200: 20})
    # Once the router has seen `fall` failed checks, r0 gets nothing (wait for that with a
    # generous deadline instead of a fixed sleep: health checks run late on a loaded host).
    _wait_for(lambda: _replica_of(router) == "r1" and _replica_of(router) == "r1")
    before = len(replicas[0].seen)
    for _ in range(10):
        assert _replica_of(router) == "r1"
    assert len(replicas[0].seen) == before
    replicas[0].ready = True
    _wait_for(lambda: _replica_of(router) == "r0")


def _replica_of(router) -> str:
    response = httpx.post(f"{router.url}/api/chat", json={}, timeout=10)
    assert response.status_code == 200
    return response.headers[REPLICA_HEADER]


def _wait_for(condition, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "the router did not react to /ready"
        time.sleep(0.1)


def test_a_refused_connection_is_retried_on_the_other_replica(make_router, replicas):
    router = make_router(policy="roundrobin")
    replicas[0].server.shutdown()
    replicas[0].server.server_close()  # the port now refuses, before any health check fails
    for _ in range(6):
        response = httpx.post(f"{router.url}/v1/chat/completions", json={"m": 1}, timeout=10)
        assert response.status_code == 200
        assert response.headers[REPLICA_HEADER] == "r1"


def test_render_refuses_unknown_policies_and_empty_pools():
    with pytest.raises(ValueError, match="policy"):
        render_haproxy_config(RouterConfig("127.0.0.1", 1, (), policy="random"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backends"):
        render_haproxy_config(RouterConfig("127.0.0.1", 1, ()))
