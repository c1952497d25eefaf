"""Runs last (file order): kill vLLM under the sidecar and watch it come back."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

pytestmark = pytest.mark.e2e

CHAT = {"model": "gpt-oss-20b", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}


def test_killed_engine_turns_ready_503_and_comes_back(stack):
    auth = {"Authorization": f"Bearer {stack.admin_key}"}
    pid = stack.engine()["pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)

    killed_at = time.monotonic()
    while httpx.get(f"{stack.sidecar_url}/ready", timeout=5).status_code != 503:
        assert time.monotonic() - killed_at < 5, "/ready still 200 five seconds after kill -9"
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
    print(f"/ready turned 503 {not_ready_after:.2f}s after kill -9")
