"""Pure helpers for the OpenAI pass-through: the SSE relay's byte scanner, the reasoning
alias and usage capture.

The pass-through never parses an event as JSON unless the bytes say it holds the usage
chunk (one per stream). It works on whole network reads: it holds back only an incomplete
last event (so an edit never straddles two reads), copies vLLM's `reasoning` field to
`reasoning_content` with one bytes regex when the read contains it, and relays everything
else as received, without copies. `benchmarks/relay.py` measures the whole relay per token.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# A JSON string literal (escapes included) or null, as vLLM serializes the field.
_REASONING = re.compile(rb'"reasoning":("(?:[^"\\]|\\.)*"|null)')
_REASONING_KEY = b'"reasoning":'
_ALREADY_ALIASED = b'"reasoning_content":'
_USAGE_KEYS = (b'"usage":{', b'"usage": {')
_EVENT_END = b"\n\n"


def alias_reasoning(payload: bytes) -> bytes:
    """Add `"reasoning_content": <same value>` next to every `"reasoning"` key."""
    if _REASONING_KEY not in payload or _ALREADY_ALIASED in payload:
        return payload
    return _REASONING.sub(rb'"reasoning":\1,"reasoning_content":\1', payload)


def alias_reasoning_in_json(body: dict[str, Any]) -> dict[str, Any]:
    """The same for a parsed non-streaming chat completion."""
    for choice in body.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and "reasoning" in message:
            message.setdefault("reasoning_content", message["reasoning"])
    return body


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _has_usage(data: bytes) -> bool:
    return _USAGE_KEYS[0] in data or _USAGE_KEYS[1] in data


def event_data(event: bytes) -> bytes | None:
    """The `data:` payload of one SSE event (vLLM sends one data line per event)."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None


def usage_from_event(data: bytes) -> Usage | None:
    """vLLM's usage chunk (`"usage": {...}`), parsed only when the bytes say it is there."""
    if not _has_usage(data):
        return None
    try:
        usage = json.loads(data).get("usage") or {}
    except (ValueError, AttributeError):
        return None
    # OpenAI's names, or Anthropic's (/v1/messages: the `message_delta` event's usage).
    return Usage(int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0),
                 int(usage.get("completion_tokens") or usage.get("output_tokens") or 0))


def is_usage_only_event(data: bytes) -> bool:
    """The final chunk that exists only because we asked for usage (`"choices":[]`)."""
    return b'"choices":[]' in data and usage_from_event(data) is not None


class SSERelay:
    """Turns vLLM's SSE reads into what our client gets, one read at a time.

    `feed(read)` returns the bytes to send now (possibly empty: an incomplete event is held
    until its end arrives); `usage` is set once the usage chunk went by. With `strip_usage`,
    the usage-only chunk that the sidecar asked for (the client did not) is dropped.
    """

    def __init__(self, *, alias: bool, strip_usage: bool) -> None:
        self.alias = alias
        self.strip_usage = strip_usage
        self.usage: Usage | None = None
        self._held = b""

    def feed(self, read: bytes) -> bytes:
        if self._held:
            read = self._held + read
        end = read.rfind(_EVENT_END)
        if end < 0:
            self._held = read
            return b""
        end += len(_EVENT_END)
        if end == len(read):
            self._held = b""
            complete = read
        else:
            self._held = read[end:]
            complete = read[:end]
        if _has_usage(complete):
            complete = self._take_usage(complete)
        if self.alias and _REASONING_KEY in complete:
            complete = alias_reasoning(complete)
        return complete

    def flush(self) -> bytes:
        """Whatever is left when the upstream ends (normally nothing)."""
        rest, self._held = self._held, b""
        return rest

    def _take_usage(self, complete: bytes) -> bytes:
        """The rare slow path: split into events, record usage, maybe drop its chunk."""
        kept = []
        for event in complete.split(_EVENT_END)[:-1]:
            data = event_data(event)
            usage = usage_from_event(data) if data is not None else None
            if usage is not None:
                self.usage = usage
                if self.strip_usage and data is not None and is_usage_only_event(data):
                    continue
            kept.append(event + _EVENT_END)
        return b"".join(kept)


def error_event(message: str, *, code: str, error_type: str) -> bytes:
    """An SSE error event followed by the terminator, for failures after the stream began."""
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return b"data: " + json.dumps(body).encode() + b"\n\ndata: [DONE]\n\n"
