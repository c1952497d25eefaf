"""One logging configuration for the launcher and the sidecar: console plus a file."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

MAX_LOG_BYTES = 50 * 1024 * 1024
FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"
# Records with this attribute are console progress updates (serving.launcher.console),
# redrawn every second: they never reach the log file.
PROGRESS_ATTR = "console_status"


def _not_a_progress_update(record: logging.LogRecord) -> bool:
    return not hasattr(record, PROGRESS_ATTR)


def configure_logging(log_file: Path | None = None, *, level: int = logging.INFO,
                      console: logging.Handler | None = None) -> None:
    """`console` replaces the plain stderr handler (`serving up` passes its own)."""
    handlers: list[logging.Handler] = [console or logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        # Bounded: in a container the state dir is a size-limited emptyDir.
        file_handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=MAX_LOG_BYTES, backupCount=2, encoding="utf-8")
        file_handler.addFilter(_not_a_progress_update)
        handlers.append(file_handler)
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)
    # httpx logs every request at INFO, which would double our access log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
