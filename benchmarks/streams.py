"""Reading streamed responses line by line: OpenAI SSE and Ollama NDJSON.

Pure functions: each takes one line (bytes) and says whether it carried generated text,
whether it carried the server's token counts, and whether it reported an error. The
Locust users time the lines; these functions only read them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Delta fields that carry generated tokens. vLLM puts gpt-oss reasoning in `reasoning`;
# the sidecar also copies it to `reasoning_content`; tool calls are generated tokens too.
OPENAI_TEXT_FIELDS: tuple[str, ...] = ("content", "reasoning", "reasoning_content", "tool_calls")
OLLAMA_CHAT_TEXT_FIELDS: tuple[str, ...] = ("content", "thinking", "tool_calls")
OLLAMA_GENERATE_TEXT_FIELDS: tuple[str, ...] = ("response", "thinking")


@dataclass(frozen=True)
class LineEvent:
    """What one line of a response stream told us."""

    has_text: bool = False
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    error: str | None = None
    done: bool = False


EMPTY = LineEvent()


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _any_text(holder: Any, fields: tuple[str, ...]) -> bool:
    return isinstance(holder, dict) and any(holder.get(name) for name in fields)


def openai_usage(body: dict[str, Any]) -> tuple[int | None, int | None]:
    """(completion_tokens, prompt_tokens) from a response or chunk's ``usage``."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return None, None
    return usage.get("completion_tokens"), usage.get("prompt_tokens")


def parse_openai_sse_line(line: bytes) -> LineEvent:
    """One line of ``/v1/chat/completions`` or ``/v1/completions`` with ``stream: true``."""
    text = line.strip()
    if not text.startswith(b"data:"):
        return EMPTY  # blank separators, ": comments", "event:" lines
    payload = text[5:].strip()
    if payload == b"[DONE]":
        return LineEvent(done=True)
    try:
        chunk = json.loads(payload)
    except ValueError:
        return LineEvent(error="unparseable SSE data line")
    if "error" in chunk:
        return LineEvent(error=_error_text(chunk["error"]))
    has_text = False
    for choice in chunk.get("choices") or ():
        if _any_text(choice.get("delta"), OPENAI_TEXT_FIELDS) or choice.get("text"):
            has_text = True
    completion, prompt = openai_usage(chunk)
    return LineEvent(has_text=has_text, completion_tokens=completion, prompt_tokens=prompt)


def parse_ollama_line(line: bytes, *, generate: bool) -> LineEvent:
    """One NDJSON line of ``/api/chat`` (``generate=False``) or ``/api/generate``."""
    text = line.strip()
    if not text:
        return EMPTY
    try:
        obj = json.loads(text)
    except ValueError:
        return LineEvent(error="unparseable NDJSON line")
    if "error" in obj:
        return LineEvent(error=_error_text(obj["error"]))
    if generate:
        has_text = _any_text(obj, OLLAMA_GENERATE_TEXT_FIELDS)
    else:
        has_text = _any_text(obj.get("message"), OLLAMA_CHAT_TEXT_FIELDS)
    done = bool(obj.get("done"))
    return LineEvent(
        has_text=has_text,
        completion_tokens=obj.get("eval_count") if done else None,
        prompt_tokens=obj.get("prompt_eval_count") if done else None,
        done=done,
    )


def parse_openai_body(body: bytes) -> LineEvent:
    """A whole non-streaming OpenAI response."""
    try:
        obj = json.loads(body)
    except ValueError:
        return LineEvent(error="unparseable JSON body")
    if "error" in obj:
        return LineEvent(error=_error_text(obj["error"]))
    completion, prompt = openai_usage(obj)
    return LineEvent(has_text=True, completion_tokens=completion, prompt_tokens=prompt, done=True)
