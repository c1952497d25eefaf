"""Ollama requests -> vLLM's OpenAI API (the other direction is stream.py).

Pure functions, no I/O.
The tables below are the whole mapping; read them first.

Decisions, recorded where a reader looks for them:
- ``num_ctx`` is clamped, never refused: the served context is fixed at vLLM's
  ``max_model_len`` (a dedicated server does not reload per request). A larger value is
  logged and has no effect; a smaller one does not shrink the context.
- ``num_predict`` -1/-2/absent: no ``max_tokens`` (vLLM generates until the context is full).
- ``think``: gpt-oss always reasons. ``true`` -> effort medium, a level -> that effort,
  ``false`` -> effort low and the thinking is left out of the response, absent -> vLLM's
  default effort and the thinking is shown (what Ollama does for gpt-oss).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from serving.errors import BadRequest
from serving.protocols.ollama.context import context_to_messages
from serving.protocols.ollama.logprobs import logprob_fields
from serving.protocols.ollama.types import ChatRequest, GenerateRequest, Message, Options

# Ollama option -> vLLM sampling parameter (OpenAI request field).
OPTION_MAP: dict[str, str] = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "num_predict": "max_tokens",
    "stop": "stop",
    "repeat_penalty": "repetition_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}

# Accepted and ignored (logged once per process): why each has no effect here.
_LOAD_TIME = "load-time setting; the launcher fixes it for the whole deployment"
_RETIRED = "sampler that vLLM does not implement"
IGNORED_OPTIONS: dict[str, str] = {
    **dict.fromkeys(
        (
            "numa",
            "num_batch",
            "num_gpu",
            "gpu_layers",
            "main_gpu",
            "low_vram",
            "f16_kv",
            "logits_all",
            "vocab_only",
            "use_mmap",
            "use_mlock",
            "embedding_only",
            "num_thread",
            "num_keep",
        ),
        _LOAD_TIME,
    ),
    **dict.fromkeys(
        (
            "tfs_z",
            "typical_p",
            "mirostat",
            "mirostat_tau",
            "mirostat_eta",
            "penalize_newline",
            "repeat_last_n",
        ),
        _RETIRED,
    ),
}

# Ollama ``think`` -> vLLM ``reasoning_effort`` (None: the engine's default).
THINK_EFFORT: dict[object, str | None] = {
    None: None,
    True: "medium",
    False: "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
}


@dataclass
class Translation:
    """An upstream request body plus what the route needs to know about it."""

    path: str  # /v1/chat/completions or /v1/completions
    body: dict[str, Any]
    ignored_options: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def format_to_response_format(fmt: object) -> dict[str, Any] | None:
    """Ollama ``format`` ("json" or a JSON schema) -> OpenAI ``response_format``."""
    if fmt in (None, ""):
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "ollama_format", "schema": fmt}}
    raise BadRequest(f'invalid format {fmt!r}: use "json" or a JSON schema object', param="format")


def options_to_sampling(
    options: Options | None, *, max_model_len: int | None = None
) -> Translation:
    """Map ``options`` onto sampling fields; report ignored options and clamping."""
    out = Translation(path="", body={})
    if options is None:
        return out
    given = options.model_dump(exclude_none=True)
    for name, value in given.items():
        target = OPTION_MAP.get(name)
        if target is None:
            if name in IGNORED_OPTIONS or name not in ("num_ctx", "format"):
                out.ignored_options.append(name)
            continue
        if name == "num_predict" and value < 1:
            continue  # -1 / -2: until the context is full
        if (name == "top_k" and value < 1) or (name == "seed" and value < 0):
            continue  # Ollama's "disabled" / "random"
        out.body[target] = [value] if name == "stop" and isinstance(value, str) else value
    num_ctx = options.num_ctx
    if num_ctx is not None and max_model_len is not None and num_ctx > max_model_len:
        out.notes.append(f"num_ctx {num_ctx} clamped to the served context {max_model_len}")
    return out


def _common(
    req: ChatRequest | GenerateRequest, upstream_model: str, max_model_len: int | None
) -> Translation:
    out = options_to_sampling(req.options, max_model_len=max_model_len)
    body: dict[str, Any] = {
        "model": upstream_model,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    body.update(out.body)
    fmt = (
        req.format
        if req.format not in (None, "")
        else (req.options.format if req.options else None)
    )
    response_format = format_to_response_format(fmt)
    if response_format is not None:
        body["response_format"] = response_format
    raw = isinstance(req, GenerateRequest) and bool(req.raw)
    body.update(logprob_fields(req.logprobs, req.top_logprobs, raw=raw))
    out.body = body
    return out


def _tool_call_ids(messages: list[Message]) -> dict[tuple[int, int], str]:
    return {
        (m_index, c_index): call.id or f"call_{m_index}_{c_index}"
        for m_index, message in enumerate(messages)
        for c_index, call in enumerate(message.tool_calls or [])
    }


def chat_messages_to_openai(messages: list[Message]) -> list[dict[str, Any]]:
    """Ollama chat messages -> OpenAI ones. Tool results find their call by ``tool_name``
    (Ollama has no call ids), the most recent unanswered call of that name first."""
    ids = _tool_call_ids(messages)
    pending: list[tuple[str, str]] = []  # (call id, function name), unanswered
    out: list[dict[str, Any]] = []
    for m_index, message in enumerate(messages):
        if message.images:
            raise BadRequest(
                "gpt-oss is a text-only model: images are not supported", param="images"
            )
        item: dict[str, Any] = {"role": message.role, "content": message.content or ""}
        if message.role == "assistant":
            if message.thinking:
                item["reasoning"] = message.thinking
            calls = []
            for c_index, call in enumerate(message.tool_calls or []):
                args = call.function.arguments
                arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
                call_id = ids[(m_index, c_index)]
                pending.append((call_id, call.function.name))
                calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": call.function.name, "arguments": arguments},
                    }
                )
            if calls:
                item["tool_calls"] = calls
        elif message.role == "tool":
            item["tool_call_id"] = message.tool_call_id or _answer(pending, message.tool_name)
        out.append(item)
    return out


def _answer(pending: list[tuple[str, str]], name: str | None) -> str:
    for position in range(len(pending) - 1, -1, -1):
        if name is None or pending[position][1] == name:
            return pending.pop(position)[0]
    return ""


def ollama_chat_to_openai(
    req: ChatRequest, *, upstream_model: str, max_model_len: int | None = None
) -> Translation:
    """``POST /api/chat`` -> ``POST /v1/chat/completions`` (always streamed upstream)."""
    out = _common(req, upstream_model, max_model_len)
    out.path = "/v1/chat/completions"
    out.body["messages"] = chat_messages_to_openai(req.messages or [])
    effort = THINK_EFFORT[req.think]
    if effort is not None:
        out.body["reasoning_effort"] = effort
    if req.tools:
        out.body["tools"] = [tool.model_dump(exclude_none=True) for tool in req.tools]
        out.body["tool_choice"] = "auto"
    return out


def ollama_generate_to_openai(
    req: GenerateRequest,
    *,
    upstream_model: str,
    max_model_len: int | None = None,
    prefix: list[dict[str, Any]] | None = None,
) -> Translation:
    """``POST /api/generate`` -> chat completions (harmony rendered by vLLM), or
    ``/v1/completions`` with the prompt verbatim when ``raw`` is true. ``prefix``: a
    preset's opening messages, put before the prompt."""
    if req.template:
        raise BadRequest(
            "custom templates are not supported: gpt-oss uses the harmony format, "
            "which the engine renders; send raw: true with a rendered prompt instead",
            param="template",
        )
    if req.suffix:
        raise BadRequest("gpt-oss does not support insert (suffix)", param="suffix")
    if req.images:
        raise BadRequest("gpt-oss is a text-only model: images are not supported", param="images")
    out = _common(req, upstream_model, max_model_len)
    if req.raw:
        out.path = "/v1/completions"
        out.body["prompt"] = req.prompt or ""
        out.body.setdefault("max_tokens", None)  # vLLM's completions default is 16 tokens
        # The client rendered harmony itself, so it gets harmony back: <|channel|> etc. kept.
        out.body["skip_special_tokens"] = False
        return out
    history = context_to_messages(list(req.context or [])) + list(prefix or [])
    if req.system is not None:
        history = [m for m in history if m["role"] != "system"]
        history.insert(0, {"role": "system", "content": req.system})
    out.path = "/v1/chat/completions"
    out.body["messages"] = [*history, {"role": "user", "content": req.prompt or ""}]
    out.body["return_token_ids"] = True  # the real harmony ids, for ``context``
    effort = THINK_EFFORT[req.think]
    if effort is not None:
        out.body["reasoning_effort"] = effort
    return out
