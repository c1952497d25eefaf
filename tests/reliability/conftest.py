"""Fixtures of the reliability tests: an in-process sidecar over a fake vLLM, and keys."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from serving.config import SidecarSettings
from serving.sidecar.app import create_app
from serving.sidecar.keys import create_key, revoke_key
from tests.reliability.fakes import FakeVLLM
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


@dataclass
class Keys:
    admin: str  # permission `all`
    chat: str  # only `chat`
    models: str  # only `models`
    revoked: str  # had `all`, revoked
    keys_file: Path


def make_keys(state_dir: Path) -> Keys:
    keys_file = state_dir / "keys.json"
    admin, _ = create_key(keys_file, user="fuzz-admin", permissions=["all"])
    chat, _ = create_key(keys_file, user="chat-only", permissions=["chat"])
    models, _ = create_key(keys_file, user="models-only", permissions=["models"])
    revoked, record = create_key(keys_file, user="gone", permissions=["all"])
    revoke_key(keys_file, record.key_id)
    return Keys(admin, chat, models, revoked, keys_file)


def build_app(state_dir: Path, fake: FakeVLLM, **overrides: Any) -> FastAPI:
    settings = SidecarSettings(keys_file=state_dir / "keys.json",
                               aliases_file=state_dir / "aliases.json", **overrides)
    return create_app(settings, transport=httpx.MockTransport(fake))


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document. A duplicate operation id (GET and HEAD / share one) is
    reported by test_openapi_is_clean; the other tests still use the document."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Duplicate Operation ID")
        return app.openapi()


def operations(schema: dict[str, Any]) -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, item in schema["paths"].items()
            for method in item if method in ("get", "post", "put", "patch", "delete", "head")]


@dataclass
class InProcess:
    app: FastAPI
    client: httpx.AsyncClient
    fake: FakeVLLM
    keys: Keys


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[InProcess]:
    keys = make_keys(tmp_path)
    fake = FakeVLLM()
    app = build_app(tmp_path, fake)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
            yield InProcess(app, client, fake, keys)


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
