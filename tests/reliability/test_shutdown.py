"""Graceful shutdown of the launcher (`serving.launcher.up.serve`), with the fake vLLM as
its engine so it runs in seconds: SIGTERM -> no new requests (readiness off) -> in-flight
streams finish within the grace period -> the engine is stopped -> exit code 0.

Why the launcher and not a bare `python -m serving sidecar`: the shutdown order (readiness
off, uvicorn's grace, then the engine) is the launcher's code; a bare uvicorn sidecar only
shows uvicorn's own behaviour. The engine is the only part replaced.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from serving.sidecar.keys import create_key
from tests.conftest import REPO, free_port
from tests.reliability.procs import Launcher

CHAT = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def _stream_through_sigterm(launcher: Launcher) -> tuple[list[str], float, float, str]:
    """Start a stream, SIGTERM after its first events, read it to its end. Returns the
    stream's lines, seconds from SIGTERM to the stream's end and to the process's exit, and
    what a new client got meanwhile."""
    headers = {"Authorization": f"Bearer {launcher.key}"}
    lines: list[str] = []
    with httpx.Client(base_url=launcher.url, timeout=60) as client, \
            client.stream("POST", "/v1/chat/completions", json=CHAT, headers=headers) as response:
        assert response.status_code == 200
        sent_at = 0.0
        newcomer = ""
        try:
            for line in response.iter_lines():
                if line:
                    lines.append(line)
                if len(lines) == 3 and not sent_at:
                    launcher.process.send_signal(signal.SIGTERM)
                    sent_at = time.perf_counter()
                    time.sleep(0.3)
                    try:
                        newcomer = str(httpx.get(f"{launcher.url}/ready", timeout=2).status_code)
                    except httpx.HTTPError as exc:
                        newcomer = type(exc).__name__
        except httpx.HTTPError as exc:
            lines.append(f"<{type(exc).__name__}>")
        stream_end = time.perf_counter() - sent_at
    code = launcher.process.wait(timeout=60)
    assert code == 0
    return lines, stream_end, time.perf_counter() - sent_at, newcomer


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_an_in_flight_stream_finish_then_exits_0(launcher_factory, workers) -> None:
    launcher = launcher_factory(grace=10, chunks=40, delay_ms=50, workers=workers)  # a 2 s stream
    lines, stream_end, exited, newcomer = _stream_through_sigterm(launcher)
    print(f"\nFIGURE graceful shutdown ({workers} workers): in-flight 2 s stream completed {stream_end:.2f} s after "
          f"SIGTERM, exit 0 after {exited:.2f} s; a new client meanwhile got {newcomer}")
    assert lines[-1] == "data: [DONE]"
    assert not any("error" in line for line in lines)
    assert sum(1 for line in lines if '"content":"t' in line) == 39  # every token arrived
    assert newcomer in ("503", "ConnectError")  # no new work accepted
    assert exited < 30  # the 10 s grace is the budget; a hang would hit wait(timeout=60)
    assert not psutil.pid_exists(launcher.engine_pid)  # the engine was stopped too


def test_sigterm_cuts_streams_longer_than_the_grace_period(launcher_factory) -> None:
    launcher = launcher_factory(grace=1, chunks=5000, delay_ms=20)  # a 100 s stream
    lines, stream_end, exited, _ = _stream_through_sigterm(launcher)
    print(f"\nFIGURE shutdown with 1 s grace: a 100 s stream was cut {stream_end:.2f} s after "
          f"SIGTERM, exit 0 after {exited:.2f} s")
    assert lines[-1] != "data: [DONE]"
    # Cut at the 1 s grace, not after the 100 s the stream would run; the upper bounds
    # leave room for a loaded CI machine while still telling 'cut' from 'ran on'.
    assert 0.9 < stream_end < 20
    assert exited < 30
    assert not psutil.pid_exists(launcher.engine_pid)


def test_key_file_readable_by_others_is_refused_at_start(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    create_key(keys, user="x", permissions=["chat"])
    assert keys.stat().st_mode & 0o777 == 0o600
    keys.chmod(0o644)
    result = subprocess.run(
        [sys.executable, "-m", "serving", "sidecar", "--port", str(free_port())],
        cwd=REPO, env={**os.environ, "SERVING_KEYS_FILE": str(keys),
                       "SERVING_STATE_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "chmod 600" in result.stderr
    json.loads(keys.read_text())  # untouched
