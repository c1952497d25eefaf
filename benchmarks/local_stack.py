"""Start the fake upstream and a sidecar in front of it, for proxy-overhead runs.

Both are subprocesses on free loopback ports with a throw-away key file; everything is
stopped and removed on exit. The sidecar is started with ``python -m serving sidecar``
(falling back to uvicorn + ``create_app`` when that subcommand is not there).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

KEY_PATTERN = re.compile(r"sk-gos-[A-Za-z0-9_-]{20,}")
SIDECAR_FALLBACK = (
    "import uvicorn, sys\n"
    "from serving.config import SidecarSettings\n"
    "from serving.sidecar.app import create_app\n"
    "s = SidecarSettings()\n"
    "uvicorn.run(create_app(s), host='127.0.0.1', port=s.port, log_level='warning',\n"
    "            access_log=False)\n"
)


class StackError(RuntimeError):
    """A process of the local stack did not come up; the message says where its log is."""


@dataclass(frozen=True)
class FakeStack:
    upstream_url: str
    sidecar_url: str
    api_key: str
    workdir: Path
    sidecar_command: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_http(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 60.0
) -> None:
    """Wait until ``url`` answers at all (any HTTP status) or the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{process.args!r} exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise StackError(f"{url} did not answer within {timeout_s:g} s:\n{_tail(log)}")


@contextmanager
def _process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _create_key(env: dict[str, str], keys_file: Path) -> str:
    cli = [
        sys.executable,
        "-m",
        "serving",
        "keys",
        "create",
        "--user",
        "bench",
        "--permissions",
        "all",
    ]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60, check=False)
    match = KEY_PATTERN.search(done.stdout)
    if match:
        return match.group(0)
    from serving.sidecar.keys import create_key  # the CLI is not there yet: same file, same format

    key, _ = create_key(keys_file, user="bench", permissions=["all"])
    return key


def _start_sidecar(
    stack: ExitStack, env: dict[str, str], port: int, workdir: Path
) -> tuple[str, str]:
    url = f"http://127.0.0.1:{port}"
    attempts = (
        [sys.executable, "-m", "serving", "sidecar", "--port", str(port)],
        [sys.executable, "-c", SIDECAR_FALLBACK],
    )
    failures = []
    for number, argv in enumerate(attempts):
        log = workdir / f"sidecar-{number}.log"
        with ExitStack() as attempt:
            process = attempt.enter_context(_process(argv, env, log))
            try:
                wait_http(url + "/health", process, log)
            except StackError as exc:
                failures.append(str(exc))
                continue
            stack.push(attempt.pop_all())
            return url, " ".join(
                argv[1:4]
            ) if number == 0 else "uvicorn + serving.sidecar.app.create_app"
    raise StackError("the sidecar did not start: " + " | ".join(failures))


@contextmanager
def fake_stack(chunks: int = 16, chunk_delay_ms: float = 0.0) -> Iterator[FakeStack]:
    """Fake upstream + sidecar on free loopback ports, torn down on exit."""
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-stack-")))
        upstream_port, sidecar_port = free_port(), free_port()
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        fake_argv = [
            sys.executable,
            "-m",
            "benchmarks",
            "fake-upstream",
            "--port",
            str(upstream_port),
            "--chunks",
            str(chunks),
            "--chunk-delay-ms",
            str(chunk_delay_ms),
        ]
        fake_log = workdir / "fake-upstream.log"
        fake = stack.enter_context(_process(fake_argv, dict(os.environ), fake_log))
        wait_http(upstream_url + "/health", fake, fake_log)
        keys_file = workdir / "keys.json"
        env = {
            **os.environ,
            "SERVING_STATE_DIR": str(workdir),
            "SERVING_KEYS_FILE": str(keys_file),
            "SERVING_UPSTREAM_URL": upstream_url,
            "SERVING_PORT": str(sidecar_port),
            "SERVING_HOST": "127.0.0.1",
        }
        api_key = _create_key(env, keys_file)
        sidecar_url, command = _start_sidecar(stack, env, sidecar_port, workdir)
        yield FakeStack(upstream_url, sidecar_url, api_key, workdir, command)
