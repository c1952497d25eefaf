"""The launcher's console: phase lines, one live progress line, vLLM's output kept out.

`serving up` prints what a person starting the product wants to see: the phases (checkpoint
build, engine load, ready) with progress, then the ready banner. Everything else goes to
the log files only: vLLM's own start-up (`.serving/logs/vllm.log`, see process.py), the
smoke trainer's per-step lines (`serving.log`; shown here as a progress bar), uvicorn's
start-up chatter. `--verbose` puts all of it back on the console, in the full log format.

Progress updates are log records with ``extra={STATUS: key}``: on a terminal they redraw
one line in place; elsewhere (CI, a file) they print at most every `plain_every_s` per key,
so a log of `make test`'s stack start stays short. They never reach the log files.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

from serving.logging_setup import FORMAT, PROGRESS_ATTR, configure_logging

STATUS = PROGRESS_ATTR  # record attribute: the progress key ("engine", "smoke") or absent
BAR_WIDTH = 24
# Loggers whose INFO records stay in the log file unless --verbose: the trainer's steps
# (shown as a bar instead) and uvicorn's start-up lines (the banner carries the URL).
QUIET_LOGGERS = ("serving.smoke.train", "uvicorn.error")


def status_key(record: logging.LogRecord) -> str | None:
    key = getattr(record, STATUS, None)
    return key if isinstance(key, str) else None


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class _ShortFormatter(logging.Formatter):
    """`12:00:01 message`; warnings and errors keep their level and origin."""

    def __init__(self) -> None:
        super().__init__(datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        self._style._fmt = (
            "%(asctime)s %(message)s" if record.levelno < logging.WARNING
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return super().format(record)


def _quiet(record: logging.LogRecord) -> bool:
    return not (record.levelno < logging.WARNING and record.name.startswith(QUIET_LOGGERS))


class Console(logging.StreamHandler):  # type: ignore[type-arg]
    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False,
                 tty: bool | None = None, plain_every_s: float = 30.0) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.verbose = verbose
        self.tty = self.stream.isatty() if tty is None else tty
        self.plain_every_s = plain_every_s
        self._live = False
        self._last_plain: dict[str, float] = {}
        self.setFormatter(logging.Formatter(FORMAT) if verbose else _ShortFormatter())
        if not verbose:
            self.addFilter(_quiet)

    def emit(self, record: logging.LogRecord) -> None:
        key = status_key(record)
        if key is not None:
            self._status(record, key)
            return
        self.acquire()
        try:
            self._end_live_line()  # a log line ends the progress line it interrupts
        finally:
            self.release()
        super().emit(record)

    def _status(self, record: logging.LogRecord, key: str) -> None:
        if not self.tty:
            now = time.monotonic()
            if now - self._last_plain.get(key, -self.plain_every_s) >= self.plain_every_s:
                self._last_plain[key] = now
                super().emit(record)
            return
        width = shutil.get_terminal_size((100, 20)).columns - 1
        line = self.format(record)[:width]
        self.acquire()
        try:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
            self._live = True
        finally:
            self.release()

    def _end_live_line(self) -> None:
        if self._live:
            self.stream.write("\n")
            self._live = False

    def close(self) -> None:
        self.acquire()
        try:
            self._end_live_line()
        finally:
            self.release()
        super().close()


class SmokeTrainingProgress(logging.Handler):
    """The smoke trainer logs a line every few steps (serving/smoke/train.py, whose source
    is part of the checkpoint's hash and so is not touched for display): re-emit those as
    a progress bar. Other records pass by."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.out = logging.getLogger("serving.launcher.progress")

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if not isinstance(args, tuple):
            return
        if str(record.msg).startswith("smoke training step") and len(args) == 5:
            step, steps, _loss, elapsed, per_step = (float(a) for a in args)  # type: ignore[arg-type]
            left = max(0.0, (steps - step) * per_step)
            self.out.info("smoke checkpoint: training %s %d/%d steps, %.0f s, about %.0f s left",
                          progress_bar(step / steps), step, steps, elapsed, left,
                          extra={STATUS: "smoke"})
        elif str(record.msg).startswith("smoke self-check") and args:
            self.out.info("smoke checkpoint: checking greedy output %s", args[0],
                          extra={STATUS: "smoke"})


def configure_console(log_file: Path | None, *, verbose: bool = False) -> Console:
    """Logging for `serving up`: the console above plus the full log in `log_file`."""
    console = Console(verbose=verbose)
    configure_logging(log_file, console=console)
    trainer = logging.getLogger("serving.smoke.train")
    for handler in [h for h in trainer.handlers if isinstance(h, SmokeTrainingProgress)]:
        trainer.removeHandler(handler)
    if not verbose:
        trainer.addHandler(SmokeTrainingProgress())
    return console
