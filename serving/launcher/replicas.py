"""`python -m serving up --replicas N`: N sidecar+vLLM stacks behind one router, on one host.

Each replica is the ordinary launcher (`python -m serving up`) in a child process with its own
loopback ports and state directory, and the same key file; a redis-server shares the per-key
limits between them; HAProxy (serving.launcher.router_config) is the only public port.
Replicas are equals: the router health-checks each one's /ready, so a replica that is
starting, draining or whose engine is down leaves rotation and comes back by itself.

Stop (SIGINT/SIGTERM): the router stops accepting (soft stop: open streams go on), each
replica drains as `serving up` does, then the router and Redis stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import shutil
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from serving.config import PathSettings, child_environment
from serving.launcher.router_config import (
    RouterConfig,
    RouterPolicy,
    loopback_backends,
    render_haproxy_config,
)

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 90.0
_PR_SET_PDEATHSIG = 1


class ReplicasRefused(Exception):
    """Local multi-replica mode cannot start (a missing program, a bad count)."""


@dataclass(frozen=True)
class Replica:
    index: int
    port: int
    vllm_port: int
    embedding_port: int
    metrics_port: int
    state_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class ReplicaLayout:
    """Ports and directories of a local multi-replica deployment (a pure plan)."""

    replicas: tuple[Replica, ...]
    router: RouterConfig
    state_dir: Path
    keys_file: Path
    redis_url: str | None  # an existing Redis; None: start one on redis_port
    redis_port: int

    def replica_env(self, replica: Replica, base: Mapping[str, str]) -> dict[str, str]:
        """The environment of one replica's `serving up`."""
        env = {
            **base,
            "SERVING_HOST": "127.0.0.1",
            "SERVING_PORT": str(replica.port),
            "SERVING_VLLM_PORT": str(replica.vllm_port),
            "SERVING_EMBEDDING_PORT": str(replica.embedding_port),
            "SERVING_METRICS_PORT": str(replica.metrics_port),
            "SERVING_STATE_DIR": str(replica.state_dir),
            "SERVING_KEYS_FILE": str(self.keys_file),
            "SERVING_ALIASES_FILE": str(self.state_dir / "aliases.json"),
            "SERVING_REDIS_URL": self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0",
        }
        # Replicas share the host: no companion embedding engine unless asked for, and one
        # GPU each when the host has several.
        env.setdefault("SERVING_EMBEDDING_MODEL", "off")
        env.setdefault("CUDA_VISIBLE_DEVICES", str(replica.index))
        return env


@dataclass(frozen=True)
class ReplicaRequest:
    """What `serving up --replicas N` asks for: the parameter object of ``plan_replicas``."""

    count: int
    public_host: str
    public_port: int
    state_dir: Path
    keys_file: Path
    policy: RouterPolicy = "affinity"
    port_base: int | None = None  # default: public port + 100 (8000 → replicas on 8100, 8110)
    redis_url: str | None = None  # an existing Redis; None: start one


def plan_replicas(request: ReplicaRequest) -> ReplicaLayout:
    """Replica i listens on port_base + 10*i (sidecar), +1 (vLLM), +2 (embeddings), +3
    (metrics); the router on the public port, its metrics on port_base - 9, Redis on
    port_base - 21."""
    count, state_dir = request.count, request.state_dir
    if count < 2:
        raise ReplicasRefused("--replicas needs at least 2 (one replica is plain `serving up`)")
    base = request.port_base if request.port_base is not None else request.public_port + 100
    replicas = tuple(
        Replica(
            index=i,
            port=base + 10 * i,
            vllm_port=base + 10 * i + 1,
            embedding_port=base + 10 * i + 2,
            metrics_port=base + 10 * i + 3,
            state_dir=state_dir / f"replica-{i}",
        )
        for i in range(count)
    )
    if base + 10 * count > 65535 or base - 21 < 1024:
        raise ReplicasRefused(f"replica ports from {base} do not fit; choose another port")
    router = RouterConfig(
        bind_host=request.public_host,
        bind_port=request.public_port,
        backends=loopback_backends([r.port for r in replicas]),
        policy=request.policy,
        metrics_port=base - 9,
    )
    return ReplicaLayout(
        replicas=replicas,
        router=router,
        state_dir=state_dir,
        keys_file=request.keys_file,
        redis_url=request.redis_url,
        redis_port=base - 21,
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _program(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ReplicasRefused(
            f"{name} is not installed: `make serve-replicas` installs it "
            f"(apt-get install {package})")
    return path


async def _spawn(argv: list[str], env: Mapping[str, str], log_path: Path,
                 ) -> asyncio.subprocess.Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            *argv, env=dict(env), stdout=sink, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent,
            start_new_session=True)  # Ctrl-C reaches this process, which stops them in order


async def _exited(process: asyncio.subprocess.Process) -> object:
    return await process.wait()


async def _stop(process: asyncio.subprocess.Process, sig: int, timeout_s: float) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        await asyncio.wait_for(process.wait(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def _announce_when_ready(layout: ReplicaLayout, admin_key: Path) -> None:
    async with httpx.AsyncClient(timeout=3) as client:
        for replica in layout.replicas:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{replica.url}/ready")).status_code == 200:
                        break
                await asyncio.sleep(2)
    host = layout.router.bind_host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{layout.router.bind_port}"
    log.info("\n  %d replicas ready behind the router (%s policy): %s\n  API key: %s\n",
             len(layout.replicas), layout.router.policy, url, admin_key)


async def run_replicas(
    layout: ReplicaLayout, admin_key: Path, extra_env: Mapping[str, str] | None = None
) -> int:
    """Start Redis, the replicas and the router; supervise; stop them all in order."""
    haproxy = _program("haproxy", "haproxy")
    redis_server = None if layout.redis_url else _program("redis-server", "redis-server")
    router_dir = layout.state_dir / "router"
    router_dir.mkdir(parents=True, exist_ok=True)
    config_path = router_dir / "haproxy.cfg"
    config_path.write_text(render_haproxy_config(layout.router), encoding="utf-8")

    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)

    redis = None
    if redis_server is not None:
        redis_dir = layout.state_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        redis = await _spawn(
            [redis_server, "--bind", "127.0.0.1", "--port", str(layout.redis_port),
             "--save", "", "--appendonly", "no", "--dir", str(redis_dir)],
            child_environment({}), redis_dir / "redis.log")
    children = [
        await _spawn([sys.executable, "-m", "serving", "up"],
                     layout.replica_env(replica, child_environment(extra_env or {})),
                     replica.state_dir / "launcher.out")
        for replica in layout.replicas
    ]
    router = await _spawn([haproxy, "-db", "-f", str(config_path)], child_environment({}),
                          router_dir / "haproxy.log")
    log.info("router on %s:%d (HAProxy, %s), replicas on %s; logs under %s",
             layout.router.bind_host, layout.router.bind_port, layout.router.policy,
             ", ".join(str(r.port) for r in layout.replicas), layout.state_dir)
    announce = asyncio.create_task(_announce_when_ready(layout, admin_key))
    exit_code = await _supervise(layout, children, router, redis, stop_requested)
    announce.cancel()
    # Soft stop: the router stops accepting but finishes open streams; replicas drain.
    with contextlib.suppress(ProcessLookupError):
        if router.returncode is None:
            router.send_signal(signal.SIGUSR1)
    await asyncio.gather(*(_stop(c, signal.SIGTERM, STOP_TIMEOUT_S) for c in children))
    await _stop(router, signal.SIGTERM, 10)
    if redis is not None:
        await _stop(redis, signal.SIGTERM, 10)
    log.info("stopped %d replicas, the router and Redis (exit code %d)",
             len(children), exit_code)
    return exit_code


async def _supervise(
    layout: ReplicaLayout,
    children: list[asyncio.subprocess.Process],
    router: asyncio.subprocess.Process,
    redis: asyncio.subprocess.Process | None,
    stop_requested: asyncio.Event,
) -> int:
    """Run until asked to stop (0) or until the router, Redis or every replica is gone (1).
    A replica that exits alone is left out of rotation by the router's health checks."""
    essential: dict[asyncio.Task[object], str] = {
        asyncio.create_task(_exited(router)): "router"}
    if redis is not None:
        essential[asyncio.create_task(_exited(redis))] = "redis"
    replica_tasks: dict[asyncio.Task[object], Replica] = {
        asyncio.create_task(_exited(c)): r for c, r in zip(children, layout.replicas, strict=True)}
    stop_task = asyncio.create_task(stop_requested.wait())
    pending: set[asyncio.Task[object]] = {stop_task, *essential, *replica_tasks}
    exit_code = 0
    while True:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if stop_task in done:
            break
        if any(task in essential for task in done):
            name = next(essential[t] for t in done if t in essential)
            log.error("%s exited; stopping (see %s)", name, layout.state_dir)
            exit_code = 1
            break
        for task in done:
            replica = replica_tasks[task]
            log.error("replica %d exited with %s (log: %s); the router keeps it out of "
                      "rotation", replica.index, task.result(),
                      replica.state_dir / "launcher.out")
        if not any(t in pending for t in replica_tasks):
            log.error("every replica has exited")
            exit_code = 1
            break
    for task in pending:
        task.cancel()
    return exit_code


def up_replicas(
    count: int,
    policy: RouterPolicy,
    port: int | None,
    extra_env: Mapping[str, str],
    port_base: int | None = None,
) -> int:
    """The `serving up --replicas N` entry point (called by serving.cli)."""
    from serving.config import SidecarSettings
    from serving.launcher.up import ensure_first_key

    paths = PathSettings()
    sidecar = SidecarSettings()
    keys_file = (sidecar.keys_file if "keys_file" in sidecar.model_fields_set
                 else paths.keys_file)
    layout = plan_replicas(ReplicaRequest(
        count,
        public_host=sidecar.host,
        public_port=port or sidecar.port,
        state_dir=paths.state_dir.resolve(),
        keys_file=keys_file.resolve(),
        policy=policy,
        port_base=port_base,
        redis_url=sidecar.redis_url,
    ))
    created = ensure_first_key(paths, layout.keys_file)
    if created is not None:
        log.info("created the first API key (permissions: all): %s", created)
    return asyncio.run(run_replicas(layout, paths.state_dir / "admin.key", extra_env))
