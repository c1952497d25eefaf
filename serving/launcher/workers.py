"""Sidecar workers and the metrics port: what the launcher runs besides the engines.

`SERVING_WORKERS=1` (CPU hosts, small GPUs): the sidecar runs inside the launcher. N > 1:
N `serving.sidecar.worker` processes share the public port (SO_REUSEPORT); the launcher
starts them after the engines' state mirrors exist, restarts one that dies, and drains them
all on shutdown (SIGTERM, then the grace period, then SIGKILL). Either way the launcher
serves Prometheus metrics on the metrics port: all workers' counts (prometheus_client's
multiprocess files) followed by vLLM's metrics, fetched at most every 250 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import mark_process_dead

from serving.config import SidecarSettings, child_environment
from serving.launcher.process import die_with_parent
from serving.sidecar.metrics import prometheus_dir, sidecar_metrics_text
from serving.upstream import EngineMetricsCache, engine_client

log = logging.getLogger(__name__)
RESTART_BACKOFF_S = 1.0
MetricsSource = Callable[[], Awaitable[bytes]]


def worker_environment(settings: SidecarSettings) -> dict[str, str]:
    """The worker's settings as the SERVING_* variables it reads back (JSON for lists)."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        text = json.dumps(value) if isinstance(value, list | dict) else str(value)
        env[f"SERVING_{name.upper()}"] = text
    shared = settings.shared_state_dir
    if shared is not None:  # read by prometheus_client when the worker imports it
        env["PROMETHEUS_MULTIPROC_DIR"] = str(prometheus_dir(shared))
    return env


def prepare_shared_state(shared: Path) -> None:
    """A fresh shared directory per launch: stale Prometheus files would add old counts."""
    directory = prometheus_dir(shared)
    assert directory is not None
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)


class WorkerPool:
    """N sidecar worker processes on one port."""

    def __init__(self, settings: SidecarSettings, count: int) -> None:
        assert settings.shared_state_dir is not None
        self.settings = settings
        self.count = count
        self.env = child_environment(worker_environment(settings))
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "serving.sidecar.worker", str(index),
            env=self.env, stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent)  # a SIGKILLed launcher leaves no worker on the port
        self.processes[index] = process
        log.info("sidecar worker %d started (pid %d)", index, process.pid)
        return process

    async def run(self) -> None:
        """Start the workers and keep them running until `drain()`."""
        await asyncio.gather(*(self._keep_running(i) for i in range(self.count)))

    async def _keep_running(self, index: int) -> None:
        while not self._stopping:
            process = await self._spawn(index)
            code = await process.wait()
            mark_process_dead(process.pid, str(prometheus_dir(self.settings.shared_state_dir)))
            if self._stopping:
                return
            log.error("sidecar worker %d exited with %s; restarting", index, code)
            await asyncio.sleep(RESTART_BACKOFF_S)

    async def drain(self, grace_s: float) -> None:
        """SIGTERM every worker (each drains its own requests), SIGKILL any left after grace."""
        self._stopping = True
        live = [p for p in self.processes.values() if p.returncode is None]
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s + 5.0
        for process in live:
            try:
                await asyncio.wait_for(process.wait(), max(deadline - time.monotonic(), 0.1))
            except TimeoutError:
                log.warning("sidecar worker pid %d still running after the grace; killing it",
                            process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


def pool_metrics_source(
    settings: SidecarSettings,
) -> tuple[MetricsSource, Callable[[], Awaitable[None]]]:
    """The metrics port's source for N workers (their files + the engine's cached metrics),
    and the function that closes its engine client."""
    client = engine_client(settings.upstream_url, connect_timeout_s=2.0, read_timeout_s=2.0)
    cache = EngineMetricsCache(client)

    async def source() -> bytes:
        own = sidecar_metrics_text(None, prometheus_dir(settings.shared_state_dir))
        return own + await cache.text()

    return source, client.aclose


def metrics_app(source: MetricsSource) -> Callable[..., Awaitable[None]]:
    """A minimal ASGI app: `GET /metrics`, nothing else (no framework: it is scraped often)."""

    async def app(scope: dict, receive: Callable, send: Callable) -> None:  # type: ignore[type-arg]
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            status, body, kind = 200, await source(), CONTENT_TYPE_LATEST
        else:
            status, body, kind = 404, b"only GET /metrics here\n", "text/plain"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", kind.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def metrics_server(settings: SidecarSettings, source: MetricsSource) -> uvicorn.Server | None:
    if settings.metrics_port == 0:
        return None
    server = _QuietServer(uvicorn.Config(
        metrics_app(source), host=settings.metrics_host, port=settings.metrics_port,
        log_config=None, access_log=False, lifespan="off"))
    return server


async def serve_metrics(server: uvicorn.Server | None) -> None:
    """Serve the metrics port; a port that cannot be bound is logged, never fatal (the public
    /metrics with a `metrics` key still works). uvicorn exits with SystemExit on bind errors."""
    if server is None:
        return
    try:
        await server.serve()
    except (SystemExit, OSError):
        log.warning("metrics port %s:%s could not be served (in use?); scrape /metrics on the "
                    "public port with a `metrics` key instead (SERVING_METRICS_PORT changes it)",
                    server.config.host, server.config.port)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the launcher owns shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_standalone(settings: SidecarSettings, count: int) -> int:
    """`serving sidecar` with N workers (vLLM started elsewhere): the pool and the metrics
    port until SIGTERM/SIGINT, then a drain."""
    assert settings.shared_state_dir is not None
    prepare_shared_state(settings.shared_state_dir)
    pool = WorkerPool(settings, count)
    source, close_source = pool_metrics_source(settings)
    metrics = metrics_server(settings, source)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(pool.run()), asyncio.create_task(serve_metrics(metrics))]
    await stop.wait()
    await pool.drain(settings.shutdown_grace_s)
    if metrics is not None:
        metrics.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    await close_source()
    return 0
