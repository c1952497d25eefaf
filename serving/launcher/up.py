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
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from serving.config import EngineSettings, PathSettings, SidecarSettings
from serving.launcher import workers as workers_mod
from serving.launcher.console import STATUS
from serving.launcher.embedding_plan import EmbeddingPlan, build_embedding_plan
from serving.launcher.hardware import detect_hardware
from serving.launcher.plan import EnginePlan, build_plan
from serving.launcher.process import EngineFailed, EngineJob, EngineSupervisor
from serving.sidecar.app import create_app
from serving.sidecar.engine_state import EngineState
from serving.sidecar.gc_tuning import tune_for_serving
from serving.sidecar.health import all_metrics_text
from serving.sidecar.keys import KeyLimits, create_key, read_key_file
from serving.sidecar.state import SidecarControl, services_of
from serving.sidecar.worker import CHAT_STATE_FILE, EMBEDDING_STATE_FILE

log = logging.getLogger(__name__)
FIRST_KEY_FILENAME = "admin.key"


@dataclass(frozen=True)
class LaunchSettings:
    paths: PathSettings
    sidecar: SidecarSettings
    engine: EngineSettings
    verbose: bool = False  # vLLM's output on the console too (always in its log file)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the launcher owns shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_plans(settings: LaunchSettings) -> tuple[EnginePlan, EmbeddingPlan | None]:
    """The chat engine's plan and the embedding engine's (None when embeddings are off)."""
    hardware = detect_hardware()
    smoke_dir: Path | None = None
    engine = settings.engine
    # The smoke checkpoint carries the real gpt-oss tokenizer, so synthetic-weight runs on a
    # GPU host without hub access use it too.
    if (engine.synthetic_weights or engine.engine == "cpu"
            or (engine.engine == "auto" and not hardware.gpus)):
        from serving.launcher.smoke_cache import use_smoke_checkpoint

        smoke_dir = use_smoke_checkpoint(settings.paths.cache_dir)
    chat = build_plan(hardware, settings.engine, smoke_model_dir=smoke_dir)
    embedding = build_embedding_plan(
        hardware, settings.engine, served_name=settings.sidecar.embedding_model_name)
    return chat, embedding


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


def _supervisor(
    settings: LaunchSettings, argv: Sequence[str], env: Mapping[str, str], url: str, name: str
) -> EngineSupervisor:
    job = EngineJob(
        argv,
        env,
        log_path=settings.paths.log_dir / f"{name}.log",
        ready_url=f"{url}/v1/models",
        ready_timeout_s=settings.engine.ready_timeout_s,
        max_restarts=settings.engine.max_restarts,
        echo=settings.verbose,
    )
    return EngineSupervisor(job, state=EngineState())


async def serve(
    settings: LaunchSettings, plan: EnginePlan, embedding: EmbeddingPlan | None = None
) -> int:
    chat = _supervisor(settings, plan.argv, plan.env, settings.sidecar.upstream_url, "vllm")
    engines = {"chat": chat}
    # The sidecar expects exactly the names the plan told vLLM to serve (/ready, model routes).
    sidecar = settings.sidecar.with_catalogue(plan.catalogue)
    if embedding is not None:
        engines["embedding"] = _supervisor(
            settings, embedding.argv, embedding.env, embedding.url, "vllm-embedding")
        sidecar = sidecar.model_copy(update={"embedding_upstream_url": embedding.url})
    frontend = _frontend(settings, sidecar, engines, plan)
    metrics = workers_mod.metrics_server(sidecar, frontend.metrics)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)

    engine_tasks = [asyncio.create_task(e.run(), name=n) for n, e in engines.items()]
    server_task = asyncio.create_task(frontend.run(), name="sidecar")
    metrics_task = asyncio.create_task(workers_mod.serve_metrics(metrics))
    announce = asyncio.create_task(_announce_when_ready(engines.values(), settings, plan))
    stop_task = asyncio.create_task(stop_requested.wait())
    done, _ = await asyncio.wait(
        {*engine_tasks, server_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
    )
    exit_code = _exit_code(done, engine_tasks, server_task)
    log.info("shutting down: readiness off, %ss for in-flight requests", sidecar.shutdown_grace_s)
    await frontend.drain()
    with contextlib.suppress(Exception):
        await server_task
    await asyncio.gather(*(e.stop() for e in engines.values()))
    if metrics is not None:
        metrics.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(metrics_task, 5.0)
    await frontend.aclose()
    for task in (*engine_tasks, announce, stop_task):
        task.cancel()
    log.info("stopped (exit code %d)", exit_code)
    return exit_code


class _InProcessSidecar:
    """One worker: the sidecar runs in the launcher and reads the engines' state directly."""

    def __init__(self, sidecar: SidecarSettings, engines: Mapping[str, EngineSupervisor]) -> None:
        embedding = engines.get("embedding")
        self.control = SidecarControl(engine=engines["chat"].state,
                                      embedding_engine=embedding.state if embedding else None)
        self.app = create_app(sidecar, control=self.control)
        self.server = _Server(uvicorn.Config(
            self.app, host=sidecar.host, port=sidecar.port, log_config=None,
            access_log=False,  # the sidecar writes its own one-line access log
            timeout_graceful_shutdown=int(sidecar.shutdown_grace_s)))

    async def run(self) -> None:
        tune_for_serving()
        await self.server.serve()

    async def metrics(self) -> bytes:
        return await all_metrics_text(services_of(self.app))

    async def drain(self) -> None:
        """Readiness off and no new connections; uvicorn then waits for in-flight requests."""
        self.control.drain()
        self.server.should_exit = True

    async def aclose(self) -> None:
        return None


class _WorkerSidecars:
    """N worker processes on one port; the engines' state reaches them through mirror files."""

    def __init__(self, sidecar: SidecarSettings, engines: Mapping[str, EngineSupervisor],
                 count: int, shared: Path) -> None:
        workers_mod.prepare_shared_state(shared)
        for name, engine in engines.items():
            engine.state.mirror = shared / (EMBEDDING_STATE_FILE if name == "embedding"
                                            else CHAT_STATE_FILE)
            engine.state.write_mirror(engine.state.mirror)
        self.grace_s = sidecar.shutdown_grace_s
        self.pool = workers_mod.WorkerPool(sidecar, count)
        self.metrics, self.aclose = workers_mod.pool_metrics_source(sidecar)

    async def run(self) -> None:
        await self.pool.run()

    async def drain(self) -> None:
        await self.pool.drain(self.grace_s)


def _frontend(
    settings: LaunchSettings, sidecar: SidecarSettings,
    engines: Mapping[str, EngineSupervisor], plan: EnginePlan,
) -> _InProcessSidecar | _WorkerSidecars:
    count = sidecar.workers or plan.sidecar_workers
    if count == 1:
        return _InProcessSidecar(sidecar, engines)
    shared = (settings.paths.state_dir / "run").resolve()
    log.info("starting %d sidecar workers on port %d", count, sidecar.port)
    return _WorkerSidecars(
        sidecar.model_copy(update={"shared_state_dir": shared}), engines, count, shared)


def _exit_code(
    done: set[asyncio.Task[Any]],
    engine_tasks: list[asyncio.Task[Any]],
    server_task: asyncio.Task[Any],
) -> int:
    for task in engine_tasks:
        failure = task.exception() if task in done else None
        if isinstance(failure, EngineFailed):
            log.error("%s engine: %s. Last lines of its log:\n%s",
                      task.get_name(), failure, "\n".join(failure.tail))
            return 1
    if server_task in done and server_task.exception() is not None:
        log.error("sidecar failed: %r", server_task.exception())
        return 1
    return 0


async def _announce_when_ready(
    engines: Iterable[EngineSupervisor], settings: LaunchSettings, plan: EnginePlan
) -> None:
    engines = list(engines)
    started = time.monotonic()
    while waiting := [e for e in engines if not e.ready_event.is_set()]:
        last = next((line for line in reversed(waiting[0].tail) if line.strip()), "")
        last = last.split(") ", 1)[-1] if last.startswith("(") else last  # "(APIServer pid=1) "
        log.info("engine: loading %s, %.0f s (log: %s)%s",
                 " + ".join(e.log_path.stem for e in waiting), time.monotonic() - started,
                 waiting[0].log_path.parent, f"  last: {last[:100]}" if last else "",
                 extra={STATUS: "engine"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiting[0].ready_event.wait(), 1.0)
    log.info("engine: ready after %.0f s", time.monotonic() - started)
    log.info("%s", banner(settings, plan))
