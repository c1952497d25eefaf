"""Fakes for the Ollama protocol tests: saved vLLM SSE streams and a fake vLLM handler."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DATA = Path(__file__).parent / "data"
Handler = Callable[[httpx.Request], httpx.Response]


def saved_stream(name: str) -> bytes:
    """A vLLM SSE body captured from the real engine (see data/README.md)."""
    return (DATA / f"{name}.sse").read_bytes()


def saved_request(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.request.json").read_text())


def sse(*events: dict[str, Any]) -> bytes:
    return (
        b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    )


def models_list(max_model_len: int = 8192, root: str = "/models/smoke") -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "id": "gpt-oss-20b",
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": "vllm",
                "root": root,
                "parent": None,
                "max_model_len": max_model_len,
            }
        ],
    }


@dataclass
class FakeVLLM:
    """Answers /v1/models, and the chat/completions paths with a canned SSE body."""

    stream: bytes = b""
    status: int = 200
    error: dict[str, Any] | None = None
    max_model_len: int = 8192
    root: str = "/models/smoke"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=models_list(self.max_model_len, self.root))
        if self.status != 200:
            return httpx.Response(self.status, json=self.error or {"error": {"message": "boom"}})
        return httpx.Response(
            200, content=self.stream, headers={"content-type": "text/event-stream"}
        )
