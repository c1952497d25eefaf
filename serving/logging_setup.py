"""One logging configuration for the launcher and the sidecar: console plus a file."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

MAX_LOG_BYTES = 50 * 1024 * 1024
FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"


def configure_logging(log_file: Path | None = None, *, level: int = logging.INFO) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        # Bounded: in a container the state dir is a size-limited emptyDir.
        handlers.append(logging.handlers.RotatingFileHandler(
            log_file, maxBytes=MAX_LOG_BYTES, backupCount=2, encoding="utf-8"))
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)
    # httpx logs every request at INFO, which would double our access log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
