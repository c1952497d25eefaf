"""The engine supervisor with a stand-in engine: a tiny HTTP server in a child process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from serving.launcher.process import EngineFailed, EngineJob, EngineSupervisor
from serving.sidecar.engine_state import EngineState
from tests.conftest import free_port

FAKE_ENGINE = textwrap.dedent("""
    import http.server, os, subprocess, sys
    # A grandchild, as vLLM's engine core is: stopping must take it down too.
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b'{"data": []}')
        def log_message(self, *a): print("request", flush=True)
    print("fake engine up", flush=True)
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")


def supervisor(
    tmp_path: Path, *, max_restarts: int, echo: bool = False
) -> tuple[EngineSupervisor, EngineState]:
    port = free_port()
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE_ENGINE)
    state = EngineState()
    job = EngineJob(
        [sys.executable, str(script), str(port)], {},
        log_path=tmp_path / "vllm.log", ready_url=f"http://127.0.0.1:{port}/v1/models",
        ready_timeout_s=30, max_restarts=max_restarts, echo=echo,
    )
    return EngineSupervisor(job, state=state), state


def group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process left in the group? Zombies await a reaper, not us."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


async def wait_for(predicate, limit_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


async def test_ready_then_restart_after_kill_then_clean_stop(tmp_path: Path):
    sup, state = supervisor(tmp_path, max_restarts=1)
    task = asyncio.create_task(sup.run())
    await asyncio.wait_for(sup.ready_event.wait(), 20)
    assert state.phase == "running"
    first_pid = state.pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    await wait_for(lambda: state.phase == "restarting")
    await wait_for(lambda: state.phase == "running" and state.pid != first_pid)
    assert state.restarts == 1 and state.last_exit_code == -signal.SIGKILL
    second_pid = state.pid
    await sup.stop()
    await asyncio.wait_for(task, 10)
    assert not group_alive(second_pid)
    assert "fake engine up" in (tmp_path / "vllm.log").read_text()


async def test_gives_up_with_log_tail_when_restarts_are_spent(tmp_path: Path):
    sup, state = supervisor(tmp_path, max_restarts=0)
    task = asyncio.create_task(sup.run())
    await asyncio.wait_for(sup.ready_event.wait(), 20)
    assert state.pid is not None
    os.killpg(state.pid, signal.SIGKILL)
    with pytest.raises(EngineFailed) as failure:
        await asyncio.wait_for(task, 20)
    assert state.phase == "dead"
    assert "fake engine up" in failure.value.tail


async def test_quiet_engine_output_goes_to_its_log_only(tmp_path: Path, caplog):
    """Without --verbose vLLM's lines stay in vllm.log; the console sees none of them."""
    sup, _state = supervisor(tmp_path, max_restarts=0)
    with caplog.at_level("INFO"):
        task = asyncio.create_task(sup.run())
        await asyncio.wait_for(sup.ready_event.wait(), 20)
        await sup.stop()
        await asyncio.wait_for(task, 10)
    assert "fake engine up" in (tmp_path / "vllm.log").read_text()
    assert not [r for r in caplog.records if r.name == "serving.vllm"]
    assert "fake engine up" not in caplog.text
    assert "--verbose shows it here" in caplog.text


async def test_verbose_engine_output_reaches_the_console(tmp_path: Path, caplog):
    sup, _state = supervisor(tmp_path, max_restarts=0, echo=True)
    with caplog.at_level("INFO"):
        task = asyncio.create_task(sup.run())
        await asyncio.wait_for(sup.ready_event.wait(), 20)
        await sup.stop()
        await asyncio.wait_for(task, 10)
    assert "fake engine up" in [r.getMessage() for r in caplog.records if r.name == "serving.vllm"]


async def test_quiet_engine_crash_prints_the_log_tail(tmp_path: Path, caplog):
    """A crash that will be restarted shows the engine's last lines on the console."""
    sup, state = supervisor(tmp_path, max_restarts=1)
    with caplog.at_level("INFO"):
        task = asyncio.create_task(sup.run())
        await asyncio.wait_for(sup.ready_event.wait(), 20)
        assert state.pid is not None
        os.kill(state.pid, signal.SIGKILL)
        await wait_for(lambda: state.phase == "restarting")
        await sup.stop()
        await asyncio.wait_for(task, 10)
    crash = [r.getMessage() for r in caplog.records
             if r.name == "serving.launcher.process" and "restart 1/1" in r.getMessage()]
    assert len(crash) == 1
    assert f"Last lines of {tmp_path / 'vllm.log'}" in crash[0]
    assert "fake engine up" in crash[0]
