"""What the OpenAI-dialect routes (and /v1/messages) normalise before vLLM sees a request,
and the one-entry-per-model `/v1/models` listing. Pure functions, no I/O: the catalogue of
names is passed in, and read (one small file) only for a name vLLM does not serve itself.

- ``tools: []`` is dropped (vLLM 0.32 answers it 400; OpenAI, Ollama and Anthropic accept
  it, and Open WebUI and agent frameworks send it), and so is a ``tool_choice`` left with
  no tools to choose from.
- A model name that is not one of vLLM's served names but is known to the Ollama side (a
  copy made with /api/copy, ``gpt-oss:latest``, a preset made with /api/create) is replaced
  by the served name; a preset also brings its system prompt, opening messages and
  parameters, under whatever the request sets itself. The response then names the served
  model (the stream is passed through untouched).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from fastapi import Response
from fastapi.responses import JSONResponse

from serving.errors import NotFound
from serving.protocols.ollama.modelfile import Preset


class Catalogue(Protocol):
    """The served names, and a lookup of any other name (raises NotFound if unknown)."""

    served_names: tuple[str, ...]

    def lookup(self, name: str) -> tuple[str, Preset | None]: ...

    def presets(self) -> dict[str, Preset]: ...


# Preset PARAMETER (Ollama option) -> request field, per upstream path.
_SAMPLING = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
             "min_p": "min_p", "seed": "seed", "num_predict": "max_tokens", "stop": "stop",
             "repeat_penalty": "repetition_penalty", "presence_penalty": "presence_penalty",
             "frequency_penalty": "frequency_penalty"}
PRESET_FIELDS: dict[str, dict[str, str]] = {
    "/v1/chat/completions": _SAMPLING,
    "/v1/completions": _SAMPLING,
    "/v1/responses": {"temperature": "temperature", "top_p": "top_p",
                      "num_predict": "max_output_tokens"},
    "/v1/messages": {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
                     "stop": "stop_sequences"},
}
# Fields that already set the same thing under another name (max_completion_tokens, ...).
_SAME_AS = {"max_tokens": ("max_completion_tokens",)}


def normalise(path: str, payload: dict[str, Any], names: Catalogue) -> dict[str, Any]:
    """The request as vLLM should see it (``payload`` is changed in place and returned)."""
    if "tools" in payload and not payload["tools"]:
        del payload["tools"]
    if "tool_choice" in payload and not payload.get("tools"):
        del payload["tool_choice"]
    model = payload.get("model")
    if not isinstance(model, str) or model in names.served_names:
        return payload
    try:
        upstream, preset = names.lookup(model)
    except NotFound:
        return payload  # vLLM answers an unknown model in its own words
    payload["model"] = upstream
    if preset is not None:
        apply_preset(path, payload, preset)
    return payload


def _sampling(path: str, payload: dict[str, Any], parameters: dict[str, Any]) -> None:
    for option, value in parameters.items():
        target = PRESET_FIELDS.get(path, {}).get(option)
        if target is None or any(k in payload for k in (target, *_SAME_AS.get(target, ()))):
            continue
        if (option == "num_predict" and value < 1) or (option == "top_k" and value < 1):
            continue  # Ollama's "unlimited" / "disabled"
        payload[target] = [value] if option == "stop" and isinstance(value, str) else value


def _with_system(messages: list[Any], system: str | None,
                 opening: list[dict[str, str]]) -> list[Any]:
    """Ollama's order: the preset's messages first; its system prompt before all, unless
    the request starts with a system (or developer) message of its own."""
    out = [*opening, *messages]
    first = messages[0] if messages else None
    own_system = isinstance(first, dict) and first.get("role") in ("system", "developer")
    if system and not own_system:
        out.insert(0, {"role": "system", "content": system})
    return out


def apply_preset(path: str, payload: dict[str, Any], preset: Preset) -> None:
    _sampling(path, payload, preset.parameters)
    if path == "/v1/chat/completions" and isinstance(payload.get("messages"), list):
        payload["messages"] = _with_system(payload["messages"], preset.system, preset.messages)
    elif path == "/v1/responses":
        if preset.system and not payload.get("instructions"):
            payload["instructions"] = preset.system
        given = payload.get("input")
        items = [{"role": "user", "content": given}] if isinstance(given, str) else given
        if preset.messages and isinstance(items, list):
            payload["input"] = [*preset.messages, *items]
    elif path == "/v1/messages":
        if preset.system and not payload.get("system"):
            payload["system"] = preset.system
        opening = [m for m in preset.messages if m["role"] in ("user", "assistant")]
        if opening and isinstance(payload.get("messages"), list):
            payload["messages"] = [*opening, *payload["messages"]]


def models_response(response: Response, names: Catalogue) -> Response:
    """vLLM's /v1/models with each served model once, under its canonical name (the first
    served name), followed by the presets made with /api/create; other cards (LoRA
    adapters) kept. Any other answer is returned as it came."""
    if response.status_code != 200:
        return response
    try:
        listing = json.loads(bytes(response.body))
        cards = list(listing["data"])
    except (ValueError, KeyError, TypeError):
        return response
    canonical = names.served_names[0]
    served = set(names.served_names)
    base = next((c for c in cards if c.get("id") == canonical),
                next((c for c in cards if c.get("id") in served), None))
    kept = [c for c in cards if c.get("id") not in served]
    if base is not None:
        kept.insert(0, {**base, "id": canonical})
        kept += [_preset_card(base, canonical, name, preset)
                 for name, preset in sorted(names.presets().items())]
    return JSONResponse({**listing, "data": kept})


def _preset_card(base: dict[str, Any], canonical: str, name: str,
                 preset: Preset) -> dict[str, Any]:
    card = {**base, "id": name, "parent": canonical, "created": preset.created or base.get(
        "created", 0)}
    card.pop("permission", None)  # vLLM's permission ids are per card
    return card
