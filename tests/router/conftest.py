"""Fixtures for the router tests: a real HAProxy from our rendered config, fake replicas."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from serving.launcher.router_config import (
    ReadinessCheck,
    RouterConfig,
    loopback_backends,
    render_haproxy_config,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FakeReplica:
    """A replica stand-in: records what reached it; /ready answers `ready`."""

    name: str
    server: ThreadingHTTPServer
    ready: bool = True
    seen: list[dict[str, object]] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # health checks close their connections abruptly; that is not an error here


def _handler(replica: FakeReplica) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/ready":
                status = 200 if replica.ready else 503
                self._send(status, b'{"status": "x"}')
                return
            self._record(b"")
            self._send(200, b"{}")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            self._record(body)
            if self.path == "/stream":
                self._stream()
                return
            self._send(200, json.dumps({"replica": replica.name}).encode())

        def _record(self, body: bytes) -> None:
            replica.seen.append({"path": self.path, "headers": dict(self.headers.items()),
                                 "body": body})

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _stream(self) -> None:
            # First chunk, then wait for the test to release the second: a buffering
            # router would hold the first chunk back and the test would see nothing.
            self.send_response(200)
            self.send_header("content-type", "application/x-ndjson")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for line in (b'{"n": 1}\n', b'{"n": 2}\n'):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                replica.gate.wait(10)
            self.wfile.write(b"0\r\n\r\n")

    return Handler


@pytest.fixture
def replicas() -> Iterator[list[FakeReplica]]:
    made: list[FakeReplica] = []
    for i in range(2):
        replica = FakeReplica(name=f"r{i}", server=None)  # type: ignore[arg-type]
        replica.server = QuietServer(("127.0.0.1", 0), _handler(replica))
        threading.Thread(target=replica.server.serve_forever, daemon=True).start()
        made.append(replica)
    yield made
    for replica in made:
        replica.gate.set()
        replica.server.shutdown()
        replica.server.server_close()


@dataclass
class Router:
    url: str
    config: RouterConfig
    process: subprocess.Popen[bytes]


def start_router(tmp_path: Path, config: RouterConfig) -> Router:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.fail("haproxy not installed: `make test-router-services` installs it (apt)")
    path = tmp_path / f"haproxy-{config.bind_port}.cfg"
    path.write_text(render_haproxy_config(config), encoding="utf-8")
    process = subprocess.Popen([haproxy, "-db", "-f", str(path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{config.bind_port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/ready", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return Router(url=url, config=config, process=process)


@pytest.fixture
def make_router(tmp_path: Path, replicas: list[FakeReplica]) -> Iterator[object]:
    started: list[Router] = []

    def make(**overrides: object) -> Router:
        config = RouterConfig(
            bind_host="127.0.0.1", bind_port=free_port(),
            backends=loopback_backends([r.port for r in replicas]),
            check=ReadinessCheck(interval_ms=200), **overrides)  # type: ignore[arg-type]
        router = start_router(tmp_path, config)
        started.append(router)
        # Both replicas pass `rise` health checks before the test starts.
        time.sleep(0.2 * (config.check.rise + 1))
        return router

    yield make
    for router in started:
        router.process.terminate()
        router.process.wait(10)
