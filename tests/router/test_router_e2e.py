"""End to end: `python -m serving up --replicas 2` (two real sidecar+vLLM stacks, Redis, the
router), started once for this module, driven with the real clients through the router."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from benchmarks.prefix_workload import (
    CONVERSATIONS,
    DOC_WORDS,
    MAX_TOKENS,
    STACK_ENV,
    TURNS,
    make_conversations,
    run_policy,
)
from serving.launcher.replicas import ReplicaLayout, ReplicaRequest, plan_replicas
from serving.launcher.router_config import REPLICA_HEADER, RouterConfig
from serving.sidecar.keys import KeyLimits, create_key
from tests.processes import stop, wait_ready
from tests.router.conftest import free_port, start_router

# Two more vLLM engines next to the session's stack: 10+ minutes on 2 cores, so `make test`
# runs the router's fake-replica tests (real HAProxy) and `make test-router` runs these too.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.environ.get("SERVING_TEST_REPLICAS") != "1",
                       reason="2-replica e2e: make test-router"),
]
REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 1800.0
CHAT = {"model": "gpt-oss-20b", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Hi"}]}


@dataclass
class ReplicaStack:
    url: str
    layout: ReplicaLayout
    admin_key: str
    process: subprocess.Popen[bytes]

    def engine_pid(self, index: int) -> int:
        body = httpx.get(f"{self.layout.replicas[index].url}/ready", timeout=5).json()
        return int(body["engine"]["pid"])


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_base() -> int:
    """A replica port base whose every port is free, below the ephemeral range (where other
    processes' client sockets and free_port() land)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000, 100)
        ports = [base - 21, base - 9, *(base + 10 * i + k for i in range(2) for k in range(4))]
        if all(_bindable(p) for p in ports):
            return base
    raise AssertionError("no free port range for the replicas")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaStack]:
    state = tmp_path_factory.mktemp("replicas")
    port = free_port()
    base = _free_port_base()
    env = {**os.environ, **STACK_ENV, "SERVING_STATE_DIR": str(state), "SERVING_PORT": str(port),
           "SERVING_MAX_RESTARTS": "2"}
    env.pop("SERVING_REDIS_URL", None)
    layout = plan_replicas(ReplicaRequest(2, public_host="127.0.0.1", public_port=port,
                                          state_dir=state, keys_file=state / "keys.json",
                                          port_base=base))
    with (state / "up.out").open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", "up", "--replicas", "2",
             "--replica-port-base", str(base)],
            cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_ready(lambda: all(_ready(r.url) for r in layout.replicas), process,
                   state / "up.out", READY_TIMEOUT_S, interval_s=3)
        yield ReplicaStack(url=f"http://127.0.0.1:{port}", layout=layout,
                           admin_key=(state / "admin.key").read_text().strip(), process=process)
    finally:
        stop(process, timeout_s=120)


def test_openai_dialect_through_the_router(stack: ReplicaStack) -> None:
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.admin_key, max_retries=0)
    reply = client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    message = reply.choices[0].message
    assert message.content or (message.model_extra or {}).get("reasoning")
    chunks = list(client.chat.completions.create(**CHAT, stream=True))  # type: ignore[call-overload]
    assert len(chunks) > 2
    response = client.responses.create(model="gpt-oss-20b", input="Hi", max_output_tokens=32)
    assert response.output
    anonymous = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    with pytest.raises(openai.AuthenticationError):
        anonymous.responses.create(model="gpt-oss-20b", input="Hi", max_output_tokens=16)
    assert httpx.post(f"{stack.url}/v1/chat/completions", json=CHAT,
                      timeout=30).status_code == 401


def test_ollama_dialect_through_the_router(stack: ReplicaStack) -> None:
    client = ollama.Client(host=stack.url,
                           headers={"Authorization": f"Bearer {stack.admin_key}"})
    chat = client.chat(model="gpt-oss:20b", messages=[{"role": "user", "content": "Hi"}],
                       options={"num_predict": 16})
    assert chat.message.role == "assistant"
    parts = list(client.generate(model="gpt-oss:20b", prompt="Hi", stream=True,
                                 options={"num_predict": 16}))
    assert parts[-1].done
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        anonymous = ollama.Client(host=stack.url, headers=headers)
        with pytest.raises(ollama.ResponseError) as refused:
            anonymous.chat(model="gpt-oss:20b", messages=[{"role": "user", "content": "Hi"}])
        assert refused.value.status_code == 401
        with pytest.raises(ollama.ResponseError) as refused:
            anonymous.generate(model="gpt-oss:20b", prompt="Hi")
        assert refused.value.status_code == 401


def test_a_limited_key_gets_exactly_its_requests_per_minute_across_replicas(
        stack: ReplicaStack) -> None:
    key, _ = create_key(stack.layout.keys_file, user="limited", permissions=["chat"],
                        limits=KeyLimits(5, None, None))
    statuses: Counter[int] = Counter()
    replicas: Counter[str] = Counter()
    for i in range(8):  # different sessions: the router spreads them over both replicas
        response = httpx.post(f"{stack.url}/v1/chat/completions",
                              json={**CHAT, "max_tokens": 1},
                              headers={"Authorization": f"Bearer {key}",
                                       "X-Session-Id": f"user-{i}"}, timeout=60)
        statuses[response.status_code] += 1
        replicas[response.headers[REPLICA_HEADER]] += 1
    assert statuses == Counter({200: 5, 429: 3})
    assert len(replicas) == 2, replicas


def test_affinity_keeps_conversations_on_one_replica_and_triples_the_prefix_hit_rate(
        stack: ReplicaStack, tmp_path: Path) -> None:
    rr = start_router(tmp_path, RouterConfig(
        bind_host="127.0.0.1", bind_port=free_port(), backends=stack.layout.router.backends,
        policy="roundrobin"))
    metrics = [f"http://127.0.0.1:{r.vllm_port}/metrics" for r in stack.layout.replicas]
    try:
        time.sleep(4)  # two passing health checks per replica
        results = {}
        for seed, (policy, url) in enumerate((("roundrobin", rr.url), ("affinity", stack.url))):
            conversations = make_conversations(100 + seed, CONVERSATIONS, DOC_WORDS, TURNS)
            results[policy] = asyncio.run(run_policy(url, stack.admin_key, policy,
                                                     conversations, MAX_TOKENS, metrics))
    finally:
        rr.process.terminate()
        rr.process.wait(10)
    affinity, roundrobin = results["affinity"], results["roundrobin"]
    print(json.dumps([affinity.summary(), roundrobin.summary()], indent=1))
    assert affinity.failed == roundrobin.failed == 0
    assert affinity.sticky_conversations == CONVERSATIONS, affinity.landed
    assert len({turns[0] for turns in affinity.landed.values()}) == 2, affinity.landed
    assert roundrobin.sticky_conversations == 0, roundrobin.landed
    assert affinity.hit_rate >= 3 * roundrobin.hit_rate, (affinity.hit_rate,
                                                          roundrobin.hit_rate)
    assert affinity.hit_rate > 0.3


LONG = {"model": "gpt-oss-20b", "max_tokens": 2000, "ignore_eos": True, "stream": True,
        "messages": [{"role": "user", "content": "Write a very long story."}]}


def _session_on(stack: ReplicaStack, replica: str) -> str:
    """A session id the router maps to `replica` (hashing is deterministic)."""
    for i in range(100):
        response = httpx.get(f"{stack.url}/v1/models", timeout=30,
                             headers={"Authorization": f"Bearer {stack.admin_key}",
                                      "X-Session-Id": f"probe-{i}"})
        if response.headers[REPLICA_HEADER] == replica:
            return f"probe-{i}"
    raise AssertionError(f"no session maps to {replica}")


class OpenStream(threading.Thread):
    def __init__(self, url: str, key: str, session: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.session = url, key, session
        self.lines: list[str] = []
        self.streaming = threading.Event()
        self.replica = ""
        self.broken: Exception | None = None

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}", "X-Session-Id": self.session}
        try:
            with httpx.stream("POST", f"{self.url}/v1/chat/completions", json=LONG,
                              headers=headers, timeout=120) as response:
                self.replica = response.headers[REPLICA_HEADER]
                for line in response.iter_lines():
                    if line:
                        self.lines.append(line)
                    if len(self.lines) == 5:
                        self.streaming.set()
        except httpx.HTTPError as exc:  # recorded; the test asserts on how streams ended
            self.broken = exc


def test_killed_engine_streams_end_with_errors_new_requests_succeed_and_it_rejoins(
        stack: ReplicaStack) -> None:
    to_r0, to_r1 = _session_on(stack, "r0"), _session_on(stack, "r1")
    streams = [OpenStream(stack.url, stack.admin_key, s) for s in (to_r0, to_r0, to_r1)]
    for stream in streams:
        stream.start()
    for stream in streams:
        assert stream.streaming.wait(120), "stream did not start"
    # Bounded loads may move the second r0 session to r1: go by where each one landed.
    on_r0 = [s for s in streams if s.replica == "r0"]
    on_r1 = [s for s in streams if s.replica == "r1"]
    assert on_r0 and on_r1, [s.replica for s in streams]
    os.kill(stack.engine_pid(0), signal.SIGKILL)
    killed_at = time.monotonic()
    for stream in on_r0:
        stream.join(timeout=30)
        assert not stream.is_alive(), "a stream on the killed engine outlived it"
        assert stream.broken is None, stream.broken
        assert stream.lines[-1] == "data: [DONE]"
        error = json.loads(stream.lines[-2].removeprefix("data: "))["error"]
        assert error["code"] == "engine_unavailable"
    assert all(s.is_alive() for s in on_r1), "a stream on the healthy replica was cut"
    print(f"streams on r0 ended within {time.monotonic() - killed_at:.1f}s of kill -9")

    # New requests while r0's engine is down: every one succeeds, on r1 (the router retries
    # r0's 503 before its health checks notice, and skips r0 after).
    auth = {"Authorization": f"Bearer {stack.admin_key}"}
    served: Counter[str] = Counter()
    until = time.monotonic() + 10
    while time.monotonic() < until or sum(served.values()) < 5:
        response = httpx.post(f"{stack.url}/v1/chat/completions", json={**CHAT, "max_tokens": 2},
                              headers={**auth, "X-Session-Id": to_r0}, timeout=60)
        assert response.status_code == 200, response.text
        served[response.headers[REPLICA_HEADER]] += 1
    assert served.keys() == {"r1"}, served
    for stream in on_r1:  # untouched by the other replica's fault: they finish normally
        stream.join(timeout=600)
        assert not stream.is_alive() and stream.broken is None, stream.broken
        assert stream.lines[-1] == "data: [DONE]"
        assert '"error"' not in stream.lines[-2]

    deadline = time.monotonic() + 900
    while not _ready(stack.layout.replicas[0].url):
        assert stack.process.poll() is None, "the replicas launcher exited"
        assert time.monotonic() < deadline, "r0 did not come back"
        time.sleep(3)
    time.sleep(4)  # `rise` passing checks
    back = httpx.post(f"{stack.url}/v1/chat/completions", json={**CHAT, "max_tokens": 2},
                      headers={**auth, "X-Session-Id": to_r0}, timeout=120)
    assert back.status_code == 200
    assert back.headers[REPLICA_HEADER] == "r0"

