"""The one in-process sidecar of the tests: the real app (`create_app`) in front of the fake
vLLM (tests/fake_vllm.py) through `httpx.MockTransport`, with a temporary key file.

The `sidecar` fixture (tests/conftest.py) hands out `start`::

    async with sidecar() as sc:                     # the default fake vLLM
    async with sidecar(FakeVLLM(stream=...)) as sc:  # a narrowed one
    async with sidecar(handler, max_body_bytes=2048) as sc:  # any handler, settings overrides
        r = await sc.client.post("/v1/chat/completions", json=..., headers=sc.auth())
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from serving.config import SidecarSettings
from serving.sidecar.app import create_app
from serving.sidecar.engine_state import EngineState
from serving.sidecar.keys import create_key, revoke_key
from tests.fake_vllm import FakeVLLM

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class Keys:
    admin: str  # user `admin`, permission `all`
    chat: str  # user `alice`, only `chat`
    models: str  # user `bob`, only `models`
    revoked: str  # user `gone`, had `all`, revoked
    file: Path


def make_keys(state_dir: Path) -> Keys:
    keys_file = state_dir / "keys.json"
    admin, _ = create_key(keys_file, user="admin", permissions=["all"])
    chat, _ = create_key(keys_file, user="alice", permissions=["chat"])
    models, _ = create_key(keys_file, user="bob", permissions=["models"])
    revoked, record = create_key(keys_file, user="gone", permissions=["all"])
    revoke_key(keys_file, record.key_id)
    return Keys(admin, chat, models, revoked, keys_file)


def build_app(state_dir: Path, fake: FakeVLLM | Handler, engine: EngineState | None = None,
              **overrides: Any) -> FastAPI:
    """The real app over `fake`, its key file and aliases in `state_dir`; `engine` is the
    launcher's view of the engine (None: no launcher, as `serving sidecar` runs)."""
    settings = SidecarSettings(**{"keys_file": state_dir / "keys.json",
                                  "aliases_file": state_dir / "aliases.json", **overrides})
    return create_app(settings, engine=engine, transport=httpx.MockTransport(fake))


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
class Sidecar:
    app: FastAPI
    client: httpx.AsyncClient
    keys: Keys
    fake: FakeVLLM
    aliases_file: Path

    @property
    def seen(self) -> list[httpx.Request]:
        """Every request that reached the fake vLLM (its /metrics polls aside)."""
        return self.fake.seen

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.keys.admin}"}

    def upstream_bodies(self, path: str) -> list[dict[str, Any]]:
        return self.fake.bodies(path)


Start = Callable[..., AbstractAsyncContextManager[Sidecar]]


def starter(state_dir: Path) -> Start:
    """`start(fake=None, engine=None, **settings_overrides)`: an async context manager of a
    running `Sidecar` whose vLLM is `fake` (a `FakeVLLM`, a plain handler, or a default
    `FakeVLLM`) and whose launcher view of the engine is `engine`."""

    @asynccontextmanager
    async def start(fake: FakeVLLM | Handler | None = None, engine: EngineState | None = None,
                    **overrides: Any) -> AsyncIterator[Sidecar]:
        keys = make_keys(state_dir)
        vllm = fake if isinstance(fake, FakeVLLM) else FakeVLLM(answer=fake)
        aliases = state_dir / "state" / "aliases.json"
        app = build_app(state_dir, vllm, engine, aliases_file=aliases, **overrides)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
                yield Sidecar(app, client, keys, vllm, aliases)

    return start
