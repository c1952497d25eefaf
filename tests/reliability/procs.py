"""Real processes for the fault tests: the fake upstream and `python -m serving sidecar`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from serving.sidecar.keys import create_key
from tests.conftest import REPO
from tests.processes import free_port, stop, wait_ready

START_TIMEOUT_S = 120.0  # a start on 2 loaded cores; a broken start fails at once (exit)


class _Process:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=sink,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        stop(self.process, timeout_s=15)


class FakeUpstream(_Process):
    def __init__(self, tmp: Path, *, chunks: int = 16, chunk_delay_ms: float = 0.0,
                 first_byte_delay_ms: float = 0.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "tests.fake_vllm", "--port", str(self.port),
                "--chunks", str(chunks), "--chunk-delay-ms", str(chunk_delay_ms),
                "--first-byte-delay-ms", str(first_byte_delay_ms)]
        super().__init__(argv, dict(os.environ), tmp / f"fake-upstream-{self.port}.log")
        wait_ready(f"{self.url}/v1/models", self.process, self.log, START_TIMEOUT_S, interval_s=0.1)

    def state(self) -> dict[str, int]:
        result: dict[str, int] = httpx.get(f"{self.url}/fake/state", timeout=5).json()
        return result

    def __enter__(self) -> FakeUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class SidecarProcess(_Process):
    """`python -m serving sidecar` with its own state dir, key file and an `all` key."""

    def __init__(self, tmp: Path, upstream_url: str, **env: str) -> None:
        state_dir = tmp / "state"
        state_dir.mkdir(exist_ok=True)
        keys_file = state_dir / "keys.json"
        self.key, _ = create_key(keys_file, user="reliability", permissions=["all"])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ, "SERVING_UPSTREAM_URL": upstream_url, "SERVING_KEYS_FILE": str(keys_file),
            "SERVING_STATE_DIR": str(state_dir), "SERVING_ALIASES_FILE": str(state_dir / "aliases.json"),
            **{f"SERVING_{k.upper()}": v for k, v in env.items()},
        }
        argv = [sys.executable, "-m", "serving", "sidecar", "--port", str(self.port)]
        super().__init__(argv, full_env, tmp / f"sidecar-{self.port}.log")
        wait_ready(f"{self.url}/health", self.process, self.log, START_TIMEOUT_S, interval_s=0.1)

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", headers=self.auth(), timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

    def __enter__(self) -> SidecarProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class Launcher:
    def __init__(self, tmp: Path, grace: float, chunks: int, delay_ms: float,
                 workers: int = 1) -> None:
        self.state_dir = tmp / f"state-{free_port()}"
        self.key, _ = create_key(self.state_dir / "keys.json", user="shutdown", permissions=["all"])
        self.port, self.engine_port, self.metrics_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.log = tmp / "launcher.out"
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.fake_launcher", "--state-dir",
                 str(self.state_dir), "--port", str(self.port), "--engine-port",
                 str(self.engine_port), "--grace", str(grace), "--chunks", str(chunks),
                 "--chunk-delay-ms", str(delay_ms), "--workers", str(workers),
                 "--metrics-port", str(self.metrics_port)],
                cwd=REPO, env=dict(os.environ), stdout=sink, stderr=subprocess.STDOUT)
        wait_ready(f"{self.url}/ready", self.process, self.log, START_TIMEOUT_S, interval_s=0.1)
        self.engine_pid = int(httpx.get(f"{self.url}/ready").json()["engine"]["pid"])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if psutil.pid_exists(self.engine_pid):
            os.kill(self.engine_pid, signal.SIGKILL)
