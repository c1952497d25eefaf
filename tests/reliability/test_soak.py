"""Soak against the real stack: a mixed load of both dialects, streamed and not, clients
that leave mid-stream, one key revoked during the run and (``--soak-kill-engine``, as
``make soak`` runs it) one engine restart by SIGKILL. Pass/fail on what a leak would change:

- sidecar RSS after warm-up grows less than 10%; open fds and sidecar->vLLM connections
  return to their baseline (summed over every sidecar process: the launcher and any
  worker children that listen on the public port);
- every request completes, or ends with its protocol's error (a stream that ends without
  ``data: [DONE]`` / a ``"done": true`` or ``{"error"}`` line is a failure; so are a 500,
  a hang and a refused connection);
- the revoked key gets 401 on its next requests (on new connections, so every worker);
- tokens the sidecar counted per key equal what vLLM reported to that key's clients.

``make test`` runs a short pass (``--soak-seconds`` 40, no engine kill: the engine-fault test
kills the shared engine and asserts one restart, and a CPU engine restart alone takes longer
than the short soak's budget). ``make soak`` runs minutes, with the kill, on its own stack.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from serving.sidecar.keys import KeyLimits, create_key, revoke_key
from tests.conftest import Stack

pytestmark = pytest.mark.e2e

RSS_GROWTH_LIMIT = 0.10
FD_SLACK = 3  # a log rotation or a lazily opened file; a per-request leak is hundreds
SETTLE_S = 30.0  # keepalive connections expire after 5 s (httpx), the queue poller reaps them
REQUEST_TIMEOUT_S = 180.0  # a hang, on a loaded 2-core CPU engine
ENGINE_BACK_S = 900.0
SHORT = {"max_tokens": 24}
LONG = {"max_tokens": 400, "ignore_eos": True}


@dataclass
class Tally:
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    tokens: collections.Counter[str] = field(default_factory=collections.Counter)  # by user
    revoked_after: list[int] = field(default_factory=list)

    def record(self, kind: str, outcome: str, detail: str = "") -> None:
        self.outcomes[f"{kind}: {outcome}"] += 1
        if outcome == "FAILED":
            self.failures.append(f"{kind}: {detail}"[:400])


@dataclass
class Client:
    user: str
    key: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def _error_shape_ok(path: str, response_body: bytes) -> bool:
    try:
        error = json.loads(response_body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    if path.startswith("/v1"):
        return isinstance(error, dict) and {"message", "type", "code"} <= set(error)
    return isinstance(error, str)


async def _refused(tally: Tally, kind: str, path: str, response: httpx.Response) -> None:
    body = await response.aread()
    if response.status_code >= 500 and response.status_code not in (502, 503, 504):
        tally.record(kind, "FAILED", f"{response.status_code} {body[:200]!r}")
    elif not _error_shape_ok(path, body):
        tally.record(kind, "FAILED", f"{response.status_code} not in the protocol shape {body[:200]!r}")
    else:
        tally.record(kind, f"error {response.status_code}")
        # back off, as a client would (Retry-After is 5 s; a quarter keeps the load on)
        await asyncio.sleep(float(response.headers.get("retry-after", "1")) / 4)


T = TypeVar("T")


async def _read_stream(response: httpx.Response, tally: Tally, kind: str, leave: bool,
                       parse: Callable[[str], T]) -> list[T] | None:
    """The stream's non-blank lines, parsed; None when the client left after three of them
    (`leave`) or the stream was cut, both recorded in `tally`."""
    lines: list[T] = []
    try:
        async for line in response.aiter_lines():
            if line.strip():
                lines.append(parse(line))
            if leave and len(lines) == 3:
                tally.record(kind, "left mid-stream")
                return None
    except httpx.HTTPError as exc:
        tally.record(kind, "FAILED", f"stream cut ({type(exc).__name__}) after {lines[-2:]}")
        return None
    return lines


async def openai_chat(http: httpx.AsyncClient, who: Client, tally: Tally, *, stream: bool,
                      leave: bool = False) -> None:
    kind = f"openai {'stream' if stream else 'json'}{' leave' if leave else ''}"
    body: dict[str, Any] = {"model": "gpt-oss-20b", **(LONG if leave else SHORT),
                            "messages": [{"role": "user", "content": "Tell me about tides."}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    path = "/v1/chat/completions"
    async with http.stream("POST", path, json=body, headers=who.headers()) as response:
        if response.status_code != 200:
            await _refused(tally, kind, path, response)
            return
        if not stream:
            try:
                usage = json.loads(await response.aread())["usage"]
            except httpx.HTTPError as exc:
                tally.record(kind, "FAILED", f"body cut: {type(exc).__name__}")
                return
            tally.tokens[who.user] += usage["prompt_tokens"] + usage["completion_tokens"]
            tally.record(kind, "completed")
            return
        lines = await _read_stream(response, tally, kind, leave, str)
        if lines is None:
            return
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    if not lines or lines[-1] != "data: [DONE]":
        tally.record(kind, "FAILED", f"stream ended without [DONE]: {lines[-2:]}")
    elif any("error" in event for event in events):
        tally.record(kind, "error event then [DONE]")
    else:
        usage = next(e["usage"] for e in reversed(events) if e.get("usage"))
        tally.tokens[who.user] += usage["prompt_tokens"] + usage["completion_tokens"]
        tally.record(kind, "completed")


async def ollama(http: httpx.AsyncClient, who: Client, tally: Tally, *, route: str,
                 stream: bool, leave: bool = False) -> None:
    kind = f"ollama {route} {'stream' if stream else 'json'}{' leave' if leave else ''}"
    body: dict[str, Any] = {"model": "gpt-oss:20b", "stream": stream, "think": "low",
                            "options": {"num_predict": 400 if leave else 24}}
    if route == "chat":
        body["messages"] = [{"role": "user", "content": "Why is the sea salty?"}]
    else:
        body["prompt"] = "Why is the sea salty?"
    path = f"/api/{route}"
    async with http.stream("POST", path, json=body, headers=who.headers()) as response:
        if response.status_code != 200:
            await _refused(tally, kind, path, response)
            return
        lines = await _read_stream(response, tally, kind, leave, json.loads)
        if lines is None:
            return
    last = lines[-1] if lines else {}
    if last.get("done") is True:
        tally.tokens[who.user] += last.get("prompt_eval_count", 0) + last.get("eval_count", 0)
        tally.record(kind, "completed")
    elif isinstance(last.get("error"), str):
        tally.record(kind, "error line")
    else:
        tally.record(kind, "FAILED", f"ended without done or error: {lines[-2:]}")


class SidecarProcesses:
    """Every sidecar process: the launcher and its descendants that listen on the public
    port (N with SERVING_WORKERS=N), read with psutil."""

    def __init__(self, stack: Stack) -> None:
        self.launcher = psutil.Process(stack.process.pid)
        self.port = int(stack.sidecar_url.rsplit(":", 1)[1])
        self.vllm_port = int(stack.vllm_url.rsplit(":", 1)[1])

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in [self.launcher, *self.launcher.children(recursive=True)]:
            try:
                sockets = proc.net_connections(kind="tcp")
            except psutil.Error:
                continue
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in sockets):
                found.append(proc)
        return found

    def sample(self) -> dict[str, float]:
        rss = fds = upstream = 0
        procs = self.processes()
        for proc in procs:
            try:
                rss += proc.memory_info().rss
                fds += proc.num_fds()
                upstream += sum(1 for c in proc.net_connections(kind="tcp")
                                if c.raddr and c.raddr.port == self.vllm_port
                                and c.status == psutil.CONN_ESTABLISHED)
            except psutil.Error:
                continue
        return {"processes": len(procs), "rss_mib": rss / 2**20, "fds": fds,
                "upstream": upstream}


async def sidecar_tokens(http: httpx.AsyncClient, admin: Client) -> collections.Counter[str]:
    """sidecar_tokens_total summed per user (prompt + completion)."""
    text = (await http.get("/metrics", headers=admin.headers())).text
    counts: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        if line.startswith("sidecar_tokens_total{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:
                                                               line.index("}")].split(","))
            counts[labels["user"].strip('"')] += int(float(line.rsplit(" ", 1)[1]))
    return counts


async def _load_loop(stop: asyncio.Event, make_request: Any) -> None:
    while not stop.is_set():
        await make_request()


async def run_soak(stack: Stack, seconds: float, kill_engine: bool) -> dict[str, Any]:
    admin = Client("admin", stack.admin_key)
    users = {name: Client(name, create_key(stack.keys_file, user=name, permissions=["chat"],
                                           limits=KeyLimits(tokens_per_minute=10**9))[0])
             for name in ("soak-openai", "soak-ollama", "soak-leaver", "soak-revoked")}
    tally, procs = Tally(), SidecarProcesses(stack)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=stack.sidecar_url, timeout=REQUEST_TIMEOUT_S,
                                 limits=limits) as http:
        async def guarded(label: str, make: Any) -> None:
            """A connection closed before any answer byte (a keep-alive connection the server
            closed as it was reused) is retried once on a new one, as clients do; a failure
            after the answer began is recorded where it happened (a cut stream fails)."""
            for attempt in (1, 2):
                try:
                    await make()
                    return
                except httpx.TransportError as exc:
                    if attempt == 2:
                        tally.record(label, "FAILED", f"no answer twice: {type(exc).__name__}")
                    else:
                        tally.record(label, "retried: connection closed before the answer")
                except (httpx.HTTPError, ValueError, KeyError, StopIteration) as exc:
                    tally.record(label, "FAILED", f"{type(exc).__name__}: {exc}")
                    return

        a, o, leaver, revoked = (users[n] for n in users)
        kinds = [
            ("openai json", lambda: openai_chat(http, a, tally, stream=False)),
            ("openai stream", lambda: openai_chat(http, a, tally, stream=True)),
            ("openai stream", lambda: openai_chat(http, a, tally, stream=True)),
            ("ollama chat stream", lambda: ollama(http, o, tally, route="chat", stream=True)),
            ("ollama generate json",
             lambda: ollama(http, o, tally, route="generate", stream=False)),
            ("ollama chat json", lambda: ollama(http, o, tally, route="chat", stream=False)),
            ("openai stream leave",
             lambda: openai_chat(http, leaver, tally, stream=True, leave=True)),
            ("ollama chat stream leave",
             lambda: ollama(http, leaver, tally, route="chat", stream=True, leave=True)),
            ("openai json (revoked key)", lambda: openai_chat(http, revoked, tally, stream=False)),
        ]
        mix = [lambda label=label, make=make: guarded(label, make) for label, make in kinds]
        for _ in range(2):  # warm-up at the soak's concurrency: every kind at once, twice
            await asyncio.gather(*(make() for make in mix))
        await asyncio.sleep(3)
        before_tokens = await sidecar_tokens(http, admin)
        tally.tokens.clear()
        tally.outcomes.clear()
        baseline = procs.sample()
        peak_rss = baseline["rss_mib"]
        started = time.monotonic()
        stop = asyncio.Event()
        workers = [asyncio.create_task(_load_loop(stop, make)) for make in mix]
        events: dict[str, float] = {}

        async def watch_memory() -> None:
            nonlocal peak_rss
            while not stop.is_set():
                peak_rss = max(peak_rss, procs.sample()["rss_mib"])
                await asyncio.sleep(2)

        watcher = asyncio.create_task(watch_memory())
        phase = seconds / (3 if kill_engine else 2)
        await asyncio.sleep(phase)
        if kill_engine:
            pid = stack.engine()["pid"]
            assert isinstance(pid, int)
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            await asyncio.sleep(5)
            while (await http.get("/ready")).status_code != 200:
                assert time.monotonic() - killed < ENGINE_BACK_S, "engine did not come back"
                await asyncio.sleep(2)
            events["engine back after s"] = round(time.monotonic() - killed, 1)
            await asyncio.sleep(phase / 2)
        record = revoke_key(stack.keys_file, revoked.user)
        assert record, "nothing revoked"
        events["revoked at s"] = round(time.monotonic() - started, 1)
        for _ in range(8):  # each on a new connection, so every worker is asked
            async with httpx.AsyncClient(base_url=stack.sidecar_url, timeout=30) as fresh:
                response = await fresh.post("/v1/chat/completions", headers=revoked.headers(),
                                            json={"model": "gpt-oss-20b", **SHORT,
                                                  "messages": [{"role": "user", "content": "x"}]})
                tally.revoked_after.append(response.status_code)
        await asyncio.sleep(phase / (2 if kill_engine else 1))
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), REQUEST_TIMEOUT_S * 2)
        await watcher
        events["load s"] = round(time.monotonic() - started, 1)
        after_tokens = await sidecar_tokens(http, admin)
    settle_deadline = time.monotonic() + SETTLE_S
    final = procs.sample()
    while (final["upstream"] > baseline["upstream"] or final["fds"] > baseline["fds"] + FD_SLACK) \
            and time.monotonic() < settle_deadline:
        await asyncio.sleep(1)
        final = procs.sample()
    counted = {u: after_tokens[u] - before_tokens[u] for u in ("soak-openai", "soak-ollama")}
    return {"tally": tally, "baseline": baseline, "final": final, "peak_rss_mib": peak_rss,
            "counted": counted, "events": events}


def test_soak(stack: Stack, request: pytest.FixtureRequest) -> None:
    seconds = float(request.config.getoption("--soak-seconds"))
    kill_engine = bool(request.config.getoption("--soak-kill-engine"))
    result = asyncio.run(run_soak(stack, seconds, kill_engine))
    tally: Tally = result["tally"]
    baseline, final = result["baseline"], result["final"]
    growth = (final["rss_mib"] - baseline["rss_mib"]) / baseline["rss_mib"]
    reported = {u: tally.tokens[u] for u in ("soak-openai", "soak-ollama")}
    print("\nSOAK FIGURES")
    print(f"  duration: {result['events']}  (asked {seconds:.0f} s, engine kill: {kill_engine})")
    print(f"  requests: {sum(tally.outcomes.values())}")
    for outcome, count in sorted(tally.outcomes.items()):
        print(f"    {outcome}: {count}")
    print(f"  sidecar processes: {final['processes']}")
    print(f"  RSS MiB: baseline {baseline['rss_mib']:.1f}, peak {result['peak_rss_mib']:.1f}, "
          f"final {final['rss_mib']:.1f} ({growth:+.1%})")
    print(f"  open fds: baseline {baseline['fds']}, final {final['fds']}")
    print(f"  sidecar->vLLM connections: baseline {baseline['upstream']}, final {final['upstream']}")
    print(f"  tokens per key, sidecar vs vLLM's usage: {result['counted']} vs {reported}")
    print(f"  revoked key, next requests: {tally.revoked_after}")
    for failure in tally.failures[:20]:
        print(f"  ! {failure}")
    print()
    assert tally.failures == []
    assert growth < RSS_GROWTH_LIMIT
    assert final["fds"] <= baseline["fds"] + FD_SLACK
    assert final["upstream"] <= baseline["upstream"]
    assert tally.revoked_after == [401] * 8
    assert result["counted"] == reported
    assert all(reported.values()), "no request completed for a key"
    completed = sum(n for o, n in tally.outcomes.items() if o.endswith("completed"))
    left = sum(n for o, n in tally.outcomes.items() if o.endswith("left mid-stream"))
    assert completed >= 10 and left >= 2, tally.outcomes
    if kill_engine:
        assert any("error" in o for o in tally.outcomes), "the kill touched no request"
