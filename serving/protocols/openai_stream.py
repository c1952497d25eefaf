"""Pure helpers for the OpenAI pass-through: SSE framing, the reasoning alias, usage capture.

The pass-through does not re-encode SSE. It only splits the byte stream at event boundaries
(so an edit never straddles two network reads) and, when asked, copies vLLM's `reasoning`
field to `reasoning_content` with one bytes regex, which costs microseconds per chunk (about
5 us measured; the sidecar's whole cost per request is measured by `make bench-overhead`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# A JSON string literal (escapes included) or null, as vLLM serializes the field.
_REASONING = re.compile(rb'"reasoning":("(?:[^"\\]|\\.)*"|null)')
_ALREADY_ALIASED = b'"reasoning_content":'


def alias_reasoning(payload: bytes) -> bytes:
    """Add `"reasoning_content": <same value>` next to every `"reasoning"` key."""
    if b'"reasoning":' not in payload or _ALREADY_ALIASED in payload:
        return payload
    return _REASONING.sub(rb'"reasoning":\1,"reasoning_content":\1', payload)


def alias_reasoning_in_json(body: dict[str, Any]) -> dict[str, Any]:
    """The same for a parsed non-streaming chat completion."""
    for choice in body.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and "reasoning" in message:
            message.setdefault("reasoning_content", message["reasoning"])
    return body


class SSEEventSplitter:
    """Re-frames an arbitrary byte stream into complete SSE events (terminated by a blank line)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        events: list[bytes] = []
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                return events
            events.append(self._buffer[: end + 2])
            self._buffer = self._buffer[end + 2 :]

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


def event_data(event: bytes) -> bytes | None:
    """The `data:` payload of one SSE event (vLLM sends one data line per event)."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None


def usage_from_event(data: bytes) -> Usage | None:
    """vLLM's usage chunk (`"usage": {...}`), parsed only when the bytes say it is there."""
    if b'"usage":{' not in data and b'"usage": {' not in data:
        return None
    try:
        usage = json.loads(data).get("usage") or {}
    except ValueError:
        return None
    # OpenAI's names, or Anthropic's (/v1/messages: the `message_delta` event's usage).
    return Usage(int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0),
                 int(usage.get("completion_tokens") or usage.get("output_tokens") or 0))


def is_usage_only_event(data: bytes) -> bool:
    """The final chunk that exists only because we asked for usage (`"choices":[]`)."""
    return b'"choices":[]' in data and usage_from_event(data) is not None


def error_event(message: str, *, code: str, error_type: str) -> bytes:
    """An SSE error event followed by the terminator, for failures after the stream began."""
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return b"data: " + json.dumps(body).encode() + b"\n\ndata: [DONE]\n\n"
