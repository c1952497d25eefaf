"""Fixtures of the reliability tests: options, the unauthenticated routes, the launcher.
The in-process sidecar is tests/sidecar_fixture.py (fixture `sidecar` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.procs import Launcher

# Routes that answer without a key, by design (probes, docs, Ollama server detection).
UNAUTHENTICATED = {
    ("GET", "/health"), ("GET", "/live"), ("GET", "/ready"), ("GET", "/docs"),
    ("GET", "/openapi.json"), ("GET", "/"), ("HEAD", "/"), ("GET", "/api/version"),
    ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-examples", type=int, default=None,
                     help="examples per operation and generation mode in test_fuzz.py")
    parser.addoption("--soak-seconds", type=float, default=40.0,
                     help="load duration of test_soak.py (make soak: minutes)")
    parser.addoption("--soak-kill-engine", action="store_true", default=False,
                     help="test_soak.py SIGKILLs vLLM once mid-run (make soak)")


@pytest.fixture
def launcher_factory(tmp_path: Path) -> Iterator[object]:
    started: list[Launcher] = []

    def make(grace: float, chunks: int, delay_ms: float, workers: int = 1) -> Launcher:
        launcher = Launcher(tmp_path, grace, chunks, delay_ms, workers)
        started.append(launcher)
        return launcher

    yield make
    for launcher in started:
        launcher.kill()
