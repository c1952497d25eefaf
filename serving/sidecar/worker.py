"""One sidecar worker process: `python -m serving.sidecar.worker` (started by the launcher).

With `SERVING_WORKERS=N` > 1 the launcher starts N of these. Each binds the public port with
SO_REUSEPORT, so the kernel spreads new connections over the workers and each runs its own
event loop on its own core. Everything a worker must agree on with the others lives in the
launcher's shared state directory (`SERVING_SHARED_STATE_DIR`): the engines' state mirrors,
the host's limit counters and the Prometheus files. Keys are re-read from the key file by
every worker on change, so a revocation reaches all of them on their next request.
SIGTERM: readiness turns 503, new connections stop, in-flight requests get the grace period.
"""

from __future__ import annotations

import logging
import socket
import sys

import uvicorn

from serving.config import PathSettings, SidecarSettings
from serving.logging_setup import configure_logging
from serving.sidecar.app import create_app
from serving.sidecar.engine_state import EngineStateView
from serving.sidecar.gc_tuning import tune_for_serving
from serving.sidecar.state import SidecarControl

log = logging.getLogger(__name__)
CHAT_STATE_FILE = "engine-chat.json"
EMBEDDING_STATE_FILE = "engine-embedding.json"


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other workers can bind too (the kernel balances between them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def main() -> int:
    settings = SidecarSettings()
    shared = settings.shared_state_dir
    index = sys.argv[1] if len(sys.argv) > 1 else "0"
    configure_logging(PathSettings().log_dir / f"sidecar-worker-{index}.log")
    if shared is None:
        log.error("serving.sidecar.worker is started by the launcher (SERVING_WORKERS > 1)")
        return 2
    # The launcher writes the mirrors before it starts workers; a standalone sidecar
    # (`serving sidecar`, vLLM started elsewhere) has none, and no engine state to report.
    chat, embedding = (shared / name for name in (CHAT_STATE_FILE, EMBEDDING_STATE_FILE))
    control = SidecarControl(
        engine=EngineStateView(chat) if chat.exists() else None,
        embedding_engine=EngineStateView(embedding) if embedding.exists() else None)
    app = create_app(settings, control=control)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            control.drain()  # /ready says 503 for as long as requests drain
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    server = Server(uvicorn.Config(
        app, log_config=None, access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s)))
    tune_for_serving()
    server.run(sockets=[reuseport_socket(settings.host, settings.port)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
