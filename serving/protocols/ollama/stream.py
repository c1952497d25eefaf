"""vLLM's SSE chunks -> Ollama NDJSON objects (the request direction is translate.py).

Pure functions: no I/O and no clock reads (the route passes ``now_ns`` and ``created_at``).
Tool calls are sent to the client once complete (Ollama never streams partial arguments), in
one chunk before the final ``done`` line. Timings (ns, ``time.perf_counter_ns``):
``load_duration`` = request received -> vLLM accepted it (the model itself is always loaded),
``prompt_eval_duration`` = accepted -> first token (time to first token),
``eval_duration`` = first -> last token, ``total_duration`` = received -> done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from serving.errors import ServingError
from serving.protocols.ollama.context import build_context
from serving.protocols.ollama.logprobs import choice_logprobs

# vLLM finish_reason -> Ollama done_reason.
DONE_REASON: dict[str, str] = {"stop": "stop", "length": "length", "tool_calls": "stop"}

Kind = Literal["chat", "generate"]


@dataclass
class StreamState:
    """What one translated response has seen so far; timings in ns (perf_counter_ns)."""

    kind: Kind
    model: str  # the name the client asked for, echoed back as Ollama does
    show_thinking: bool
    started_ns: int
    accepted_ns: int | None = None  # upstream answered (response headers)
    first_token_ns: int | None = None
    last_token_ns: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    content: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] = field(default_factory=list)
    want_context: bool = False
    dropped_tool_calls: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)  # those sent, Ollama's shape


def parse_sse_line(line: str) -> dict[str, Any] | None:
    """One SSE line -> its JSON event; None for blank lines, comments and ``[DONE]``."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    event = json.loads(data)
    return event if isinstance(event, dict) else None


def _decode(data: bytes) -> Any:
    """One event's JSON, decoded by msgspec (C, several times json's speed on these small
    objects); a malformed event raises ValueError like json.loads."""
    try:
        return _JSON_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from exc


def encode_ndjson(objects: list[dict[str, Any]]) -> bytes:
    """Ollama NDJSON: one compact JSON object per line, UTF-8 (as Ollama's Go server writes
    it); a character is never split across lines or chunks."""
    return b"".join(_JSON_ENCODER.encode(o) + b"\n" for o in objects)


_JSON_DECODER = msgspec.json.Decoder()
_JSON_ENCODER = msgspec.json.Encoder()


class SSEEvents:
    """vLLM's SSE byte reads -> parsed events, each parsed once straight from the bytes
    (no text decoding of the stream, no line objects). An incomplete event waits for its end.
    Raises ValueError on an event that is not JSON."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, read: bytes) -> list[dict[str, Any]]:
        if self._held:
            read = self._held + read
        end = read.rfind(b"\n\n")
        if end < 0:
            self._held = read
            return []
        self._held = read[end + 2:]
        events = []
        for raw in read[:end].split(b"\n\n"):
            if raw.startswith(b"data: {"):  # vLLM's form; [DONE] and comments are skipped
                event = _decode(raw[6:])
            elif raw.startswith(b"data:{"):
                event = _decode(raw[5:])
            else:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


def _line(state: StreamState, created_at: str, content: str, thinking: str) -> dict[str, Any]:
    if state.kind == "generate":
        obj: dict[str, Any] = {"model": state.model, "created_at": created_at, "response": content}
        if thinking:
            obj["thinking"] = thinking
    else:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        obj = {"model": state.model, "created_at": created_at, "message": message}
    obj["done"] = False
    return obj


def _merge_tool_call(state: StreamState, delta: dict[str, Any]) -> None:
    slot = state.tool_calls.setdefault(
        int(delta.get("index", len(state.tool_calls))), {"id": None, "name": "", "arguments": ""}
    )
    function = delta.get("function") or {}
    if delta.get("id"):
        slot["id"] = delta["id"]
    if function.get("name"):
        slot["name"] = function["name"]
    if function.get("arguments"):
        slot["arguments"] += function["arguments"]


def openai_chunk_to_ollama(
    chunk: dict[str, Any], state: StreamState, *, now_ns: int, created_at: str
) -> list[dict[str, Any]]:
    """One vLLM stream event -> zero or more Ollama NDJSON objects (never the final one)."""
    if "error" in chunk:
        error = chunk["error"]
        raise ServingError(
            error.get("message", str(error)) if isinstance(error, dict) else str(error)
        )
    if usage := chunk.get("usage"):
        state.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        state.completion_tokens = int(usage.get("completion_tokens") or 0)
    if chunk.get("prompt_token_ids"):
        state.prompt_token_ids = list(chunk["prompt_token_ids"])
    out: list[dict[str, Any]] = []
    for choice in chunk.get("choices") or []:
        if state.first_token_ns is None:
            state.first_token_ns = now_ns
        state.last_token_ns = now_ns
        state.token_ids.extend(choice.get("token_ids") or [])
        delta = choice.get("delta")
        if delta is None:  # /v1/completions (raw)
            content, thinking = choice.get("text") or "", ""
        else:
            content = delta.get("content") or ""
            thinking = delta.get("reasoning") or delta.get("reasoning_content") or ""
            if state.kind == "chat":  # generate has no tools; a "call" there is noise
                for call in delta.get("tool_calls") or []:
                    _merge_tool_call(state, call)
        state.content.append(content)
        state.thinking.append(thinking)
        shown_thinking = thinking if state.show_thinking else ""
        if content or shown_thinking:
            out.append(_line(state, created_at, content, shown_thinking))
            if logprobs := choice_logprobs(choice):
                out[-1]["logprobs"] = logprobs
                state.logprobs.extend(logprobs)
        if choice.get("finish_reason"):
            state.finish_reason = choice["finish_reason"]
    return out


def ollama_tool_calls(state: StreamState) -> list[dict[str, Any]]:
    """The complete tool calls in Ollama's shape (arguments as an object).

    A call vLLM parsed out of malformed output (no name, arguments that are not a JSON
    object) is left out and kept in ``state.dropped_tool_calls`` for the log: the rest of
    the answer is still worth returning.
    """
    calls = []
    for index in sorted(state.tool_calls):
        slot = state.tool_calls[index]
        try:
            arguments = json.loads(slot["arguments"] or "{}")
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict) or not slot["name"]:
            if slot not in state.dropped_tool_calls:
                state.dropped_tool_calls.append(slot)
            continue
        calls.append({"function": {"index": index, "name": slot["name"], "arguments": arguments}})
    return calls


def _timings(state: StreamState, now_ns: int) -> dict[str, Any]:
    accepted = state.accepted_ns if state.accepted_ns is not None else state.started_ns
    first = state.first_token_ns if state.first_token_ns is not None else now_ns
    last = state.last_token_ns if state.last_token_ns is not None else now_ns
    return {
        "done_reason": DONE_REASON.get(state.finish_reason or "stop", state.finish_reason),
        "total_duration": now_ns - state.started_ns,
        "load_duration": accepted - state.started_ns,
        "prompt_eval_count": state.prompt_tokens,
        "prompt_eval_duration": first - accepted,
        "eval_count": state.completion_tokens,
        "eval_duration": last - first,
    }


def final_lines(state: StreamState, *, now_ns: int, created_at: str) -> list[dict[str, Any]]:
    """The streamed tail: a tool-call chunk (chat, when the model called tools) + ``done``."""
    out: list[dict[str, Any]] = []
    calls = ollama_tool_calls(state)
    if calls and state.kind == "chat":
        line = _line(state, created_at, "", "")
        line["message"]["tool_calls"] = calls
        out.append(line)
    done = _line(state, created_at, "", "")
    done["done"] = True
    done.update(_timings(state, now_ns))
    if state.want_context and state.prompt_token_ids is not None:
        done["context"] = build_context(state.prompt_token_ids, state.token_ids)
    out.append(done)
    return out


def aggregate(state: StreamState, *, now_ns: int, created_at: str) -> dict[str, Any]:
    """The non-streamed answer: one object with the whole text and the final fields."""
    content = "".join(state.content)
    thinking = "".join(state.thinking) if state.show_thinking else ""
    obj = _line(state, created_at, content, thinking)
    calls = ollama_tool_calls(state)
    if calls and state.kind == "chat":
        obj["message"]["tool_calls"] = calls
    obj["done"] = True
    obj.update(_timings(state, now_ns))
    if state.logprobs:
        obj["logprobs"] = state.logprobs
    if state.want_context and state.prompt_token_ids is not None:
        obj["context"] = build_context(state.prompt_token_ids, state.token_ids)
    return obj
