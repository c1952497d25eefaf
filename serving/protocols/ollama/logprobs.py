"""Ollama's ``logprobs`` / ``top_logprobs``, both directions. Pure functions, no I/O.

Request: ``logprobs: true`` (+ ``top_logprobs: n``, 0..20) becomes OpenAI's chat fields of
the same names; raw generation (``/v1/completions``) takes ``logprobs: n`` instead.
Response: Ollama puts a top-level ``logprobs`` list on each chunk (and all of them on a
non-streamed answer), one ``{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}``
per generated token: the shape of OpenAI's chat ``choice.logprobs.content`` entries, so chat
passes them on as they are and the completions shape is converted.
"""

from __future__ import annotations

from typing import Any

from serving.errors import BadRequest

MAX_TOP_LOGPROBS = 20  # Ollama's limit (and OpenAI's)


def logprob_fields(
    logprobs: bool | None, top_logprobs: int | None, *, raw: bool
) -> dict[str, Any]:
    """The upstream request fields for Ollama's ``logprobs``/``top_logprobs``."""
    top = top_logprobs or 0
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise BadRequest(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}",
                         param="top_logprobs")
    if not logprobs:
        return {}  # top_logprobs only applies when logprobs is true (Ollama's rule)
    if raw:
        return {"logprobs": top}
    return {"logprobs": True, "top_logprobs": top} if top else {"logprobs": True}


def _entry(token: str, logprob: float, raw_bytes: list[int] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"token": token, "logprob": logprob}
    entry["bytes"] = raw_bytes if raw_bytes is not None else list(token.encode("utf-8"))
    return entry


def _from_chat(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in content:
        entry = _entry(str(item.get("token", "")), float(item.get("logprob", 0.0)),
                       item.get("bytes"))
        top = item.get("top_logprobs") or []
        if top:
            entry["top_logprobs"] = [
                _entry(str(t.get("token", "")), float(t.get("logprob", 0.0)), t.get("bytes"))
                for t in top]
        out.append(entry)
    return out


def _from_completions(logprobs: dict[str, Any]) -> list[dict[str, Any]]:
    tokens = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    out = []
    for index, token in enumerate(tokens):
        value = values[index] if index < len(values) and values[index] is not None else 0.0
        entry = _entry(str(token), float(value), None)
        top = tops[index] if index < len(tops) and tops[index] else {}
        if top:
            entry["top_logprobs"] = [_entry(str(t), float(v), None) for t, v in top.items()]
        out.append(entry)
    return out


def choice_logprobs(choice: dict[str, Any]) -> list[dict[str, Any]]:
    """One streamed OpenAI choice's ``logprobs`` in Ollama's shape ([] when absent)."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return []
    content = logprobs.get("content")
    if isinstance(content, list):
        return _from_chat(content)
    if "tokens" in logprobs:
        return _from_completions(logprobs)
    return []
