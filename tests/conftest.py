"""Session-wide fixtures. `stack` starts the real product once: `python -m serving up` with
vLLM's CPU build, the smoke checkpoint and the sidecar on free loopback ports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.sidecar.keys import create_key
from tests.processes import free_port, stop, wait_ready

REPO = Path(__file__).resolve().parent.parent
# First run builds the smoke checkpoint (minutes on 2 cores) before vLLM loads it.
STACK_READY_TIMEOUT_S = 1500.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The engine-fault test kills vLLM under the shared stack: run it after everything else."""
    last = [item for item in items if "test_zz_engine_fault" in item.nodeid]
    items[:] = [item for item in items if item not in last] + last


@pytest.fixture
def sidecar(tmp_path: Path) -> Callable[..., Any]:
    """`async with sidecar(fake=None, **settings) as sc:` the real app in process over a fake
    vLLM (tests/sidecar_fixture.py)."""
    from tests.sidecar_fixture import starter

    return starter(tmp_path)


@dataclass
class Stack:
    sidecar_url: str
    vllm_url: str
    metrics_url: str
    admin_key: str
    chat_key: str
    keys_file: Path
    state_dir: Path
    vllm_log: Path
    model_dir: Path
    process: subprocess.Popen[bytes]

    def engine(self) -> dict[str, object]:
        """The launcher's view of vLLM (phase, pid, restarts) from /ready."""
        body = httpx.get(f"{self.sidecar_url}/ready", timeout=5).json()
        engine = body.get("engine")
        assert isinstance(engine, dict), body
        return engine


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state_dir = tmp_path_factory.mktemp("stack-state")
    sidecar_port, vllm_port, metrics_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "SERVING_STATE_DIR": str(state_dir),
        "SERVING_PORT": str(sidecar_port),
        "SERVING_VLLM_PORT": str(vllm_port),
        "SERVING_METRICS_PORT": str(metrics_port),
        "SERVING_ENGINE": "cpu",
        "SERVING_MAX_RESTARTS": "2",
    }
    log_path = state_dir / "launcher.out"
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", "up"],
            cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{sidecar_port}"
    try:
        wait_ready(f"{url}/ready", process, log_path, STACK_READY_TIMEOUT_S)
        keys_file = state_dir / "keys.json"
        chat_key, _ = create_key(keys_file, user="chat-only", permissions=["chat"])
        ready = httpx.get(f"{url}/ready", timeout=5).json()
        model_dir = Path(str(ready.get("model")))
        yield Stack(
            sidecar_url=url,
            vllm_url=f"http://127.0.0.1:{vllm_port}",
            metrics_url=f"http://127.0.0.1:{metrics_port}",
            admin_key=(state_dir / "admin.key").read_text().strip(),
            chat_key=chat_key,
            keys_file=keys_file,
            state_dir=state_dir,
            vllm_log=state_dir / "logs" / "vllm.log",
            model_dir=model_dir,
            process=process,
        )
    finally:
        stop(process)
