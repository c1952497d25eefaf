"""Unit-test helpers: the sidecar app against a fake vLLM (httpx.MockTransport)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

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
    keys_file: Path
    seen: list[httpx.Request]

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}


@pytest.fixture
def make_sidecar(tmp_path: Path) -> Callable[..., object]:
    """`async with make_sidecar(handler) as sc:` builds an app whose vLLM is `handler`."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def factory(handler: Handler, **overrides: object) -> AsyncIterator[Sidecar]:
        keys_file = Path(str(overrides.pop("keys_file", tmp_path / "keys.json")))
        admin_key, _ = create_key(keys_file, user="admin", permissions=["all"])
        chat_key, _ = create_key(keys_file, user="alice", permissions=["chat"])
        seen: list[httpx.Request] = []

        def recording(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        settings = SidecarSettings(
            keys_file=keys_file, aliases_file=tmp_path / "aliases.json", **overrides
        )
        app = create_app(settings, transport=httpx.MockTransport(recording))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
                yield Sidecar(client, admin_key, chat_key, keys_file, seen)

    return factory
