"""Processes the tests start (the stack, replicas, Open WebUI, fakes): free ports, waiting until
one is ready, stopping it. Standard library and pytest only: the browser test imports this from
.venv-webui, which does not have the project's packages."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout_s: float = 3.0) -> int | None:
    """The status `url` answers a GET with, or None if it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def wait_ready(ready: str | Callable[[], bool], process: subprocess.Popen[bytes], log: Path,
               timeout_s: float, interval_s: float = 2.0) -> None:
    """Return once `ready` holds (a URL: answers 200); fail the test at once if `process`
    exits first, or after `timeout_s`, with the tail of its `log`."""
    check = (lambda: http_status(ready) == 200) if isinstance(ready, str) else ready
    deadline = time.monotonic() + timeout_s
    while not check():
        if process.poll() is not None:
            pytest.fail(f"{process.args!r} exited with {process.returncode} before ready:\n"
                        f"{_tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"not ready after {timeout_s:.0f}s: {process.args!r}\n{_tail(log)}")
        time.sleep(interval_s)


def stop(process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else ""
