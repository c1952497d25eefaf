"""Runs last (file order): kill vLLM under the sidecar and watch it come back."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest

pytestmark = pytest.mark.e2e

CHAT = {"model": "gpt-oss-20b", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}


# About 30 s of generation on the CPU engine (8192-token context): the streams cannot end
# on their own before the kill, even after a slow start (a 13 s stall was seen in CI).
LONG = {"max_tokens": 7900, "ignore_eos": True, "stream": True,
        "messages": [{"role": "user", "content": "Write a very long story."}]}


class OpenStream(threading.Thread):
    """A long streaming request that records its last lines and when it ended."""

    def __init__(self, url: str, body: dict[str, object], key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.key = url, body, key
        self.lines: list[str] = []
        self.streaming = threading.Event()
        self.ended_at: float | None = None

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.stream("POST", self.url, json=self.body, headers=headers, timeout=60) as r:
            for line in r.iter_lines():
                if line:
                    self.lines.append(line)
                if len(self.lines) == 5:
                    self.streaming.set()
        self.ended_at = time.monotonic()


def test_killed_engine_ends_open_streams_turns_ready_503_and_comes_back(stack):
    auth = {"Authorization": f"Bearer {stack.admin_key}"}
    # Two streams that outlive the kill (ignore_eos). The Ollama route shares the proxy's
    # error path; Ollama has no ignore_eos, so its final {"error"} line is asserted against
    # a fake engine in tests/reliability/test_faults.py instead.
    streams = [
        OpenStream(f"{stack.sidecar_url}/v1/chat/completions", {"model": "gpt-oss-20b", **LONG},
                   stack.admin_key)
        for _ in range(2)
    ]
    for stream in streams:
        stream.start()
    for stream in streams:
        assert stream.streaming.wait(60), "stream did not start"
    assert all(s.ended_at is None for s in streams), "a stream ended before the kill"
    pid = stack.engine()["pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    for stream in streams:
        stream.join(timeout=10)
        assert stream.ended_at is not None, "a stream outlived the engine"
        assert stream.ended_at - killed_at < 5.0, stream.ended_at - killed_at
    for stream in streams:
        assert stream.lines[-1] == "data: [DONE]"
        error = json.loads(stream.lines[-2].removeprefix("data: "))["error"]
        assert error["code"] == "engine_unavailable"
    streams_ended_after = max(s.ended_at or 0 for s in streams) - killed_at

    while httpx.get(f"{stack.sidecar_url}/ready", timeout=5).status_code != 503:
        assert time.monotonic() - killed_at < 15, "/ready still 200 15 s after kill -9"
        time.sleep(0.1)
    not_ready_after = time.monotonic() - killed_at
    assert httpx.get(f"{stack.sidecar_url}/health", timeout=5).json() == {"status": "ok"}

    refused = httpx.post(f"{stack.sidecar_url}/v1/chat/completions", json=CHAT, headers=auth,
                         timeout=30)
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) > 0

    # The launcher restarts the engine (restart policy) and service resumes.
    deadline = time.monotonic() + 600
    while httpx.get(f"{stack.sidecar_url}/ready", timeout=5).status_code != 200:
        assert stack.process.poll() is None, "launcher gave up instead of restarting vLLM"
        assert time.monotonic() < deadline, "engine did not come back within 10 minutes"
        time.sleep(2)
    assert stack.engine()["restarts"] == 1
    again = httpx.post(f"{stack.sidecar_url}/v1/chat/completions", json=CHAT, headers=auth,
                       timeout=120)
    assert again.status_code == 200
    print(f"streams ended {streams_ended_after:.2f}s and /ready turned 503 "
          f"{not_ready_after:.2f}s after kill -9")
