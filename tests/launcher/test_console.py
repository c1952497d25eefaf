"""The launcher's console: quiet by default, progress lines, everything kept in the log file."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.launcher.console import (
    STATUS,
    Console,
    SmokeTrainingProgress,
    configure_console,
    progress_bar,
)

REPO = Path(__file__).resolve().parents[2]


def record(name: str, msg: str, *args: object, level: int = logging.INFO,
           status: str | None = None) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    if status is not None:
        setattr(rec, STATUS, status)
    return rec


def console(*, verbose: bool = False, tty: bool = False) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(out, verbose=verbose, tty=tty), out


def emit(handler: logging.Handler, rec: logging.LogRecord) -> None:
    handler.handle(rec)  # filters first, as a logger would


def test_quiet_console_drops_trainer_steps_and_uvicorn_chatter_but_not_warnings():
    con, out = console()
    emit(con, record("serving.smoke.train", "smoke training step %d/%d", 1, 280))
    emit(con, record("uvicorn.error", "Uvicorn running on %s", "http://127.0.0.1:8000"))
    emit(con, record("uvicorn.error", "port in use", level=logging.ERROR))
    emit(con, record("serving.launcher.up", "gpt-oss serving is ready"))
    text = out.getvalue()
    assert "smoke training step" not in text and "Uvicorn running" not in text
    assert "ERROR uvicorn.error: port in use" in text
    assert "gpt-oss serving is ready" in text and "serving.launcher.up" not in text


def test_verbose_console_keeps_everything_in_the_full_format():
    con, out = console(verbose=True)
    emit(con, record("serving.smoke.train", "smoke training step %d/%d", 1, 280))
    emit(con, record("serving.vllm", "INFO: Started server process"))
    assert "INFO  serving.smoke.train: smoke training step 1/280" in out.getvalue()
    assert "serving.vllm: INFO: Started server process" in out.getvalue()


def test_progress_off_a_terminal_prints_at_most_once_per_interval_per_key():
    con, out = console()
    for second in range(5):
        emit(con, record("p", "engine: loading, %d s", second, status="engine"))
    emit(con, record("p", "smoke checkpoint: training", status="smoke"))
    lines = out.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "engine: loading, 0 s", "smoke checkpoint: training"]


def test_progress_on_a_terminal_redraws_one_line_that_a_log_line_ends():
    con, out = console(tty=True)
    emit(con, record("p", "engine: loading, %d s", 1, status="engine"))
    emit(con, record("p", "engine: loading, %d s", 2, status="engine"))
    emit(con, record("serving.launcher.up", "ready"))
    text = out.getvalue()
    assert text.count("\r\033[K") == 2
    live, rest = text.rsplit("\r\033[K", 1)[1].split("\n", 1)
    assert live.endswith("engine: loading, 2 s")
    assert rest.endswith("ready\n")


def test_trainer_steps_become_a_progress_bar(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="serving.launcher.progress"):
        SmokeTrainingProgress().handle(record(
            "serving.smoke.train",
            "smoke training step %d/%d loss %.4f (%.0f s elapsed, %.2f s/step)",
            140, 280, 1.5, 90.0, 0.64))
    seen = [r for r in caplog.records if r.name == "serving.launcher.progress"]
    assert len(seen) == 1 and getattr(seen[0], STATUS) == "smoke"
    assert seen[0].getMessage() == (
        f"smoke checkpoint: training {progress_bar(0.5)} 140/280 steps, 90 s, about 90 s left")


def test_trainer_still_logs_the_step_line_the_progress_bar_reads():
    """The bar parses serving/smoke/train.py's log call; if that line changes, this fails."""
    source = (REPO / "serving" / "smoke" / "train.py").read_text()
    assert '"smoke training step %d/%d loss %.4f (%.0f s elapsed, %.2f s/step)"' in source


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    trainer = logging.getLogger("serving.smoke.train")
    trainer.handlers[:] = [h for h in trainer.handlers if not isinstance(h, SmokeTrainingProgress)]


def test_progress_updates_stay_out_of_the_log_file(tmp_path: Path, restore_logging: None):
    log_file = tmp_path / "serving.log"
    configure_console(log_file)
    logging.getLogger("serving.launcher.up").info("engine: loading, 3 s", extra={STATUS: "engine"})
    logging.getLogger("serving.launcher.up").info("engine: ready after 90 s")
    logging.getLogger("serving.smoke.train").info("smoke training step %d/%d", 1, 280)
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = log_file.read_text()
    assert "engine: ready after 90 s" in text and "smoke training step 1/280" in text
    assert "engine: loading" not in text
