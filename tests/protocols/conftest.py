"""Fixtures for the Ollama protocol tests: the real sidecar app in front of a fake vLLM."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.config import SidecarSettings
from serving.sidecar.app import create_app
from serving.sidecar.keys import create_key

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class Sidecar:
    client: httpx.AsyncClient
    admin_key: str
    chat_key: str
    models_key: str
    seen: list[httpx.Request]
    aliases_file: Path

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    def upstream_bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.seen if r.url.path == path]


@pytest.fixture
def sidecar(tmp_path: Path) -> Callable[..., Any]:
    """`async with sidecar(handler) as sc:` the real app, vLLM replaced by `handler`."""

    @asynccontextmanager
    async def factory(handler: Handler, **overrides: Any) -> AsyncIterator[Sidecar]:
        keys_file = tmp_path / "keys.json"
        admin_key, _ = create_key(keys_file, user="admin", permissions=["all"])
        chat_key, _ = create_key(keys_file, user="alice", permissions=["chat"])
        models_key, _ = create_key(keys_file, user="bob", permissions=["models"])
        seen: list[httpx.Request] = []

        def recording(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        aliases = tmp_path / "state" / "aliases.json"
        settings = SidecarSettings(keys_file=keys_file, aliases_file=aliases, **overrides)
        app = create_app(settings, transport=httpx.MockTransport(recording))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
                yield Sidecar(client, admin_key, chat_key, models_key, seen, aliases)

    return factory
