"""`python -m serving up`: plan, start vLLM, serve the sidecar, supervise both, stop cleanly.

The sidecar runs in this process (uvicorn) so that it sees the engine's state directly;
vLLM runs as a child in its own process group. Signals are handled here, not by uvicorn:
SIGTERM/SIGINT → readiness turns 503, in-flight requests get `shutdown_grace_s` to finish,
then vLLM is stopped, and the exit code is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from serving.config import EngineSettings, PathSettings, SidecarSettings
from serving.launcher.hardware import detect_hardware
from serving.launcher.plan import EnginePlan, build_plan
from serving.launcher.process import EngineFailed, EngineSupervisor
from serving.sidecar.app import create_app
from serving.sidecar.engine_state import EngineState
from serving.sidecar.keys import KeyLimits, create_key, read_key_file

log = logging.getLogger(__name__)
FIRST_KEY_FILENAME = "admin.key"


@dataclass(frozen=True)
class LaunchSettings:
    paths: PathSettings
    sidecar: SidecarSettings
    engine: EngineSettings


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the launcher owns shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_plan(settings: LaunchSettings) -> EnginePlan:
    hardware = detect_hardware()
    smoke_dir: Path | None = None
    engine = settings.engine
    # The smoke checkpoint carries the real gpt-oss tokenizer, so synthetic-weight runs on a
    # GPU host without hub access use it too.
    if (engine.synthetic_weights or engine.engine == "cpu"
            or (engine.engine == "auto" and not hardware.gpus)):
        from serving.smoke import ensure_smoke_checkpoint

        smoke_dir = ensure_smoke_checkpoint(settings.paths.cache_dir)
    return build_plan(hardware, settings.engine, smoke_model_dir=smoke_dir)


def ensure_first_key(paths: PathSettings, keys_file: Path) -> Path | None:
    """On a fresh install, create an admin key and keep it (mode 0600) where the user finds it."""
    if any(not r.revoked for r in read_key_file(keys_file).values()):
        return None
    if keys_file.exists() and not os.access(keys_file.parent, os.W_OK):  # a Secret mount
        log.warning("no active API key in %s (read-only): every request gets 401 until the "
                    "key file holds one (see docs/deploy.md)", keys_file)
        return None
    key, _ = create_key(keys_file, user="admin", permissions=["all"], limits=KeyLimits())
    key_path = paths.state_dir / FIRST_KEY_FILENAME
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.touch(mode=0o600)
    key_path.write_text(key + "\n", encoding="utf-8")
    return key_path


def banner(settings: LaunchSettings, plan: EnginePlan) -> str:
    url = f"http://{_display_host(settings.sidecar.host)}:{settings.sidecar.port}"
    key_path = settings.paths.state_dir / FIRST_KEY_FILENAME
    key_hint = f"$(cat {key_path})" if key_path.exists() else "<your key>"
    return "\n".join([
        "",
        f"  gpt-oss serving is ready: {url}  (profile {plan.profile}, "
        f"context {plan.max_model_len} tokens, {plan.quantization})",
        f"  OpenAI base URL: {url}/v1     Ollama host: {url}",
        f"  API key: {key_path if key_path.exists() else 'see python -m serving keys --help'}",
        "  Try it:",
        f"    curl -s {url}/v1/chat/completions -H \"Authorization: Bearer {key_hint}\" \\",
        "      -H 'Content-Type: application/json' \\",
        "      -d '{\"model\": \"gpt-oss-20b\", \"messages\": [{\"role\": \"user\", "
        "\"content\": \"Hello!\"}]}'",
        "",
    ])


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


async def serve(settings: LaunchSettings, plan: EnginePlan) -> int:
    state = EngineState()
    supervisor = EngineSupervisor(
        plan.argv,
        plan.env,
        state=state,
        log_path=settings.paths.log_dir / "vllm.log",
        ready_url=f"{settings.sidecar.upstream_url}/v1/models",
        ready_timeout_s=settings.engine.ready_timeout_s,
        max_restarts=settings.engine.max_restarts,
    )
    app = create_app(settings.sidecar, engine=state)
    server = _Server(uvicorn.Config(
        app,
        host=settings.sidecar.host,
        port=settings.sidecar.port,
        log_config=None,
        access_log=False,  # the sidecar writes its own one-line access log
        timeout_graceful_shutdown=int(settings.sidecar.shutdown_grace_s),
    ))
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)

    engine_task = asyncio.create_task(supervisor.run(), name="engine")
    server_task = asyncio.create_task(server.serve(), name="sidecar")
    announce = asyncio.create_task(_announce_when_ready(supervisor, settings, plan))
    stop_task = asyncio.create_task(stop_requested.wait())
    done, _ = await asyncio.wait(
        {engine_task, server_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
    )
    exit_code = 0
    if engine_task in done and isinstance(engine_task.exception(), EngineFailed):
        failure = engine_task.exception()
        assert isinstance(failure, EngineFailed)
        log.error("%s. Last lines of vLLM's log:\n%s", failure, "\n".join(failure.tail))
        exit_code = 1
    elif server_task in done and server_task.exception() is not None:
        log.error("sidecar failed: %r", server_task.exception())
        exit_code = 1
    log.info("shutting down: readiness off, %ss for in-flight requests",
             settings.sidecar.shutdown_grace_s)
    app.state.draining = True
    server.should_exit = True
    with contextlib.suppress(Exception):
        await server_task
    await supervisor.stop()
    for task in (engine_task, announce, stop_task):
        task.cancel()
    log.info("stopped (exit code %d)", exit_code)
    return exit_code


async def _announce_when_ready(
    supervisor: EngineSupervisor, settings: LaunchSettings, plan: EnginePlan
) -> None:
    await supervisor.ready_event.wait()
    log.info("%s", banner(settings, plan))
