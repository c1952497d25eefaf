"""Supervising the vLLM child process: start, log, readiness, restart policy, clean stop.

Restart policy: a crashed engine is restarted (with backoff) up to `max_restarts` times,
because a transient fault (OOM on a burst, a CUDA error) should not take a node's endpoint
down for good; after that the launcher exits non-zero with the tail of vLLM's log, and the
process manager (Kubernetes, systemd) decides. While the engine is down the sidecar's
/ready says why and requests get 503 + Retry-After.

Output: vLLM's stdout and stderr always go to its log file (`log_path`). They reach the
console (as `serving.vllm` log records) only when `echo` is on (`serving up --verbose`);
otherwise the console gets the last lines of the log whenever the engine exits on its own.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from serving.config import child_environment
from serving.logging_setup import MAX_LOG_BYTES
from serving.sidecar.engine_state import EngineState

log = logging.getLogger(__name__)
engine_log = logging.getLogger("serving.vllm")

_PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 15.0
TAIL_LINES = 40


class EngineFailed(Exception):
    """vLLM exited and will not be restarted; `tail` holds its last log lines."""

    def __init__(self, message: str, tail: Sequence[str]) -> None:
        super().__init__(message)
        self.tail = list(tail)


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # If the launcher is SIGKILLed, the kernel sends vLLM SIGTERM: no orphaned engine.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


async def _exit_code(process: asyncio.subprocess.Process) -> int:
    """The child's exit code as soon as it exits. `process.wait()` also waits for its pipes
    to close, which never happens while an orphaned worker still holds stdout."""
    while process.returncode is None:  # noqa: ASYNC110 - no event exists for "exited"
        await asyncio.sleep(0.2)
    return process.returncode


@dataclass(frozen=True)
class EngineJob:
    """One engine process and how to supervise it (the parameter object of EngineSupervisor)."""

    argv: Sequence[str]
    env: Mapping[str, str]  # the plan's variables, on top of this process's environment
    log_path: Path
    ready_url: str  # answers 200 once the engine serves
    ready_timeout_s: float
    max_restarts: int
    echo: bool = False  # vLLM's output also on the console (`serving up --verbose`)


class EngineSupervisor:
    def __init__(self, job: EngineJob, *, state: EngineState) -> None:
        self.job = job
        self.env = child_environment(job.env)
        self.state = state
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.ready_event = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = False

    @property
    def log_path(self) -> Path:
        return self.job.log_path

    async def run(self) -> None:
        """Run until stopped; raises EngineFailed when the restart budget is spent."""
        while True:
            code = await self._run_once()
            if self._stopping:
                return
            if self.state.restarts >= self.job.max_restarts:
                self.state.set("dead", exit_code=code)
                raise EngineFailed(f"vLLM exited with code {code}; not restarting", self.tail)
            self.state.restarts += 1
            backoff = min(2.0**self.state.restarts, 30.0)
            log.error(
                "vLLM exited with code %s; restart %d/%d in %.0fs%s",
                code, self.state.restarts, self.job.max_restarts, backoff, self._tail_text(),
            )
            self.state.set("restarting", exit_code=code)
            await asyncio.sleep(backoff)
            if self._stopping:  # stopped during the backoff: do not start another engine
                return

    async def _run_once(self) -> int:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            *self.job.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: we stop vLLM and its workers together
            preexec_fn=die_with_parent,
        )
        self.state.set("starting" if self.state.restarts == 0 else "restarting",
                       pid=self._process.pid)
        log.info("vLLM started (pid %d); its output goes to %s%s", self._process.pid,
                 self.log_path, "" if self.job.echo else " (--verbose shows it here)")
        pump = asyncio.create_task(self._pump_logs(self._process))
        ready = asyncio.create_task(self._wait_ready())
        code = await _exit_code(self._process)
        ready.cancel()
        # The engine's workers (vLLM's EngineCore) outlive a crashed parent and would keep
        # the log pipe open and hold GPU memory: sweep the whole process group.
        self._kill_group(self._process.pid)
        try:
            await asyncio.wait_for(pump, 5.0)
        except TimeoutError:
            pump.cancel()
        self.ready_event.clear()
        return code

    async def _pump_logs(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        sink = self.log_path.open("ab")
        try:
            async for raw in process.stdout:
                if sink.tell() > MAX_LOG_BYTES:  # keep one previous file, like the sidecar's
                    sink.close()
                    self.log_path.replace(self.log_path.with_suffix(".log.1"))
                    sink = self.log_path.open("ab")
                sink.write(raw)
                sink.flush()
                line = raw.decode("utf-8", "replace").rstrip()
                self.tail.append(line)
                if self.job.echo:
                    engine_log.info("%s", line)
        finally:
            sink.close()

    def _tail_text(self) -> str:
        """The log's last lines for a console that has not seen them (empty when echoing).
        The final exit's lines travel in EngineFailed instead."""
        if self.job.echo or not self.tail:
            return ""
        return f". Last lines of {self.log_path}:\n" + "\n".join(self.tail)

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.job.ready_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                try:
                    if (await client.get(self.job.ready_url)).status_code == 200:
                        self.state.set("running")
                        self.ready_event.set()
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(1.0)
        log.error("vLLM not ready after %.0fs; stopping it", self.job.ready_timeout_s)
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._process is None or self._process.returncode is not None:
            return
        try:
            os.killpg(self._process.pid, sig)
        except ProcessLookupError:
            pass

    async def stop(self) -> None:
        """SIGTERM the engine's process group, SIGKILL what is left after a grace period."""
        self._stopping = True
        self.state.set("stopping")
        process = self._process
        if process is None or process.returncode is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(_exit_code(process), STOP_GRACE_S)
        except TimeoutError:
            log.warning("vLLM ignored SIGTERM for %.0fs; killing it", STOP_GRACE_S)
        # Workers may outlive the main process: sweep the whole group either way.
        self._kill_group(process.pid)
        await process.wait()

    @staticmethod
    def _kill_group(pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
