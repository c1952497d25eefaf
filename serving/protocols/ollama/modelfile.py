"""Modelfile presets: a name over the served weights with its own system prompt, parameters
and opening messages (what ``ollama create`` makes from ``FROM``/``SYSTEM``/``PARAMETER``/
``MESSAGE``). Pure functions, no I/O: parsing a Modelfile, turning an ``/api/create`` body
into a :class:`Preset`, rendering it back for ``/api/show``, and applying it to a request.

Anything that needs other weights or another prompt format (``ADAPTER``, ``DRAFT``, files,
``quantize``, ``TEMPLATE``, a ``FROM`` that is not the served model) is refused with a 400
that says why: the deployment serves one fixed gpt-oss checkpoint in the harmony format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from serving.errors import BadRequest
from serving.protocols.ollama.types import (
    ChatRequest,
    CreateRequest,
    GenerateRequest,
    Message,
    Options,
)

_COMMANDS = frozenset({"from", "system", "parameter", "message", "template", "adapter",
                       "license", "draft", "renderer", "parser", "requires"})
_ROLES = frozenset({"system", "user", "assistant"})
# Modelfile instructions and /api/create fields this deployment cannot honour, and why.
_REFUSED: dict[str, str] = {
    "adapter": "ADAPTER needs other weights (a LoRA adapter)",
    "files": "creating from files needs other weights",
    "draft": "DRAFT needs a second (draft) model",
    "quantize": "quantize would need other weights (the served checkpoint is MXFP4)",
    "template": "TEMPLATE cannot change the prompt format: gpt-oss uses harmony, "
                "which the engine renders",
    "remote_host": "remote models are not served here",
}
_FIXED = "this deployment serves one fixed model"


@dataclass(frozen=True)
class Preset:
    """What /api/create stored for one name (kept in the aliases file)."""

    base: str  # the name given in FROM (a served name or alias, normalised)
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    created: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"from": self.base, "system": self.system, "parameters": self.parameters,
                "messages": self.messages, "license": self.license, "created": self.created}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preset:
        return cls(base=str(data["from"]), system=data.get("system"),
                   parameters=dict(data.get("parameters") or {}),
                   messages=[dict(m) for m in data.get("messages") or []],
                   license=list(data.get("license") or []), created=int(data.get("created") or 0))


@dataclass
class ModelfileSpec:
    """A parsed Modelfile (or /api/create body) before the base model is resolved."""

    base: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _unquote(text: str, lines: list[str], index: int) -> tuple[str, int]:
    """The argument starting at ``text`` (``\"\"\"`` blocks may span lines); next line index."""
    if text.startswith('"""'):
        rest = text[3:]
        collected: list[str] = []
        while '"""' not in rest:
            collected.append(rest)
            index += 1
            if index >= len(lines):
                raise BadRequest('Modelfile: unterminated """ block', param="modelfile")
            rest = lines[index]
        collected.append(rest[: rest.index('"""')])
        return "\n".join(collected), index + 1
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1], index + 1
    return text, index + 1


def parse_modelfile(text: str) -> ModelfileSpec:
    """Ollama's Modelfile grammar: one instruction per line (case-insensitive), ``#``
    comments, arguments plain, ``"quoted"`` or in ``\"\"\"`` blocks spanning lines."""
    spec = ModelfileSpec()
    lines = text.replace("\r\n", "\n").split("\n")
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if not line or line.startswith("#"):
            index += 1
            continue
        number = index + 1
        command, _, rest = line.partition(" ")
        command, rest = command.lower(), rest.strip()
        if command not in _COMMANDS:
            raise BadRequest(f"Modelfile line {number}: unknown instruction "
                             f"'{command.upper()}'", param="modelfile")
        head = ""
        if command in ("parameter", "message"):
            head, _, rest = rest.partition(" ")
            rest = rest.strip()
        value, index = _unquote(rest, lines, index)
        _apply(spec, command, head, value, number)
    if spec.base is None:
        raise BadRequest("Modelfile: no FROM line", param="modelfile")
    return spec


def _apply(spec: ModelfileSpec, command: str, head: str, value: str, number: int) -> None:
    if command == "from":
        spec.base = value
    elif command == "system":
        spec.system = value
    elif command == "license":
        spec.license.append(value)
    elif command == "parameter":
        _add_parameter(spec.parameters, head, value)
    elif command == "message":
        if head not in _ROLES:
            raise BadRequest(f"Modelfile line {number}: message role must be one of "
                             '"system", "user", or "assistant"', param="modelfile")
        spec.messages.append({"role": head, "content": value})
    elif command in _REFUSED:
        spec.refused.append(command)
    # renderer / parser / requires: harmony is fixed and rendered by the engine; ignored.


def _add_parameter(parameters: dict[str, Any], name: str, value: Any) -> None:
    name = name.lower()
    if name == "stop":
        values = value if isinstance(value, list) else [value]
        parameters["stop"] = [*parameters.get("stop", []), *(str(v) for v in values)]
        return
    if name not in Options.model_fields or name == "format":
        raise BadRequest(f"unknown parameter '{name}'", param="parameters")
    try:
        parameters[name] = getattr(Options.model_validate({name: value}), name)
    except ValidationError as exc:
        raise BadRequest(f"invalid value for parameter '{name}': "
                         f"{exc.errors()[0]['msg']}", param="parameters") from None


def spec_from_create(req: CreateRequest) -> ModelfileSpec:
    """The /api/create body (current fields, or the legacy ``modelfile`` string, whose
    instructions the fields override) as one spec; refusals listed, not yet raised."""
    spec = parse_modelfile(req.modelfile) if req.modelfile else ModelfileSpec()
    if req.from_:
        spec.base = req.from_
    if req.system is not None:
        spec.system = req.system
    for name, value in (req.parameters or {}).items():
        _add_parameter(spec.parameters, name, value)
    if req.messages is not None:
        spec.messages = [{"role": m.role, "content": m.content or ""} for m in req.messages]
    if req.license:
        spec.license = [req.license] if isinstance(req.license, str) else list(req.license)
    given = {"adapter": req.adapters, "files": req.files, "draft": req.draft_files,
             "quantize": req.quantize or req.quantization, "template": req.template,
             "remote_host": req.remote_host}
    spec.refused += [name for name, value in given.items() if value]
    return spec


def check_refusals(spec: ModelfileSpec) -> None:
    if spec.refused:
        reasons = "; ".join(_REFUSED[name] for name in dict.fromkeys(spec.refused))
        raise BadRequest(f"cannot create this model: {reasons}. {_FIXED.capitalize()} "
                         "(gpt-oss); a preset may set FROM, SYSTEM, PARAMETER and MESSAGE",
                         param="modelfile")
    if not spec.base:
        raise BadRequest("'from' is required: the served model (e.g. gpt-oss:20b) or an "
                         "alias of it", param="from")


def build_preset(spec: ModelfileSpec, parent: Preset | None, created: int) -> Preset:
    """The preset to store; built on another preset, it inherits what it does not set
    (parameters merged, the newer winning), as Ollama layers a model on its parent."""
    if parent is None:
        return Preset(spec.base or "", spec.system, dict(spec.parameters), list(spec.messages),
                      list(spec.license), created)
    return Preset(
        base=parent.base,
        system=spec.system if spec.system is not None else parent.system,
        parameters={**parent.parameters, **spec.parameters},
        messages=list(spec.messages) or list(parent.messages),
        license=list(spec.license) or list(parent.license),
        created=created,
    )


# --- rendering, for /api/show -------------------------------------------------------------
def _quote(text: str) -> str:
    if "\n" in text or text != text.strip() or '"' in text:
        return f'"""{text}"""'
    return f'"{text}"' if " " in text else text


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return _quote(value) if isinstance(value, str) else str(value)


def parameter_lines(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    lines = []
    for name, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            text = _value(item)
            lines.append((name, f'"{text}"' if name == "stop" and text == item else text))
    return lines


def parameters_text(parameters: dict[str, Any]) -> str:
    """Ollama's /api/show ``parameters``: one ``name value`` line each, aligned."""
    return "\n".join(f"{name:<30} {value}" for name, value in parameter_lines(parameters))


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._:/-]")


def render_modelfile(name: str, preset: Preset) -> str:
    """The preset as a Modelfile that parse_modelfile reads back to the same preset."""
    out = ['# Modelfile generated by "ollama show"',
           "# To build a new Modelfile based on this, replace FROM with:",
           f"# FROM {_SAFE_NAME.sub('', name)}", "", f"FROM {preset.base}"]
    if preset.system is not None:
        out.append(f"SYSTEM {_quote(preset.system)}")
    out += [f"PARAMETER {n} {v}" for n, v in parameter_lines(preset.parameters)]
    out += [f"MESSAGE {m['role']} {_quote(m['content'])}" for m in preset.messages]
    out += [f"LICENSE {_quote(text)}" for text in preset.license]
    return "\n".join(out) + "\n"


# --- applying a preset to an Ollama request ------------------------------------------------
def merged_options(preset: Preset, options: Options | None) -> Options:
    """The preset's parameters under the request's own options (the request wins)."""
    given = options.model_dump(exclude_none=True) if options is not None else {}
    return Options.model_validate({**preset.parameters, **given})


def apply_to_chat(req: ChatRequest, preset: Preset) -> ChatRequest:
    """Ollama's order: preset messages before the request's; the preset's system prompt
    first unless the request starts with its own."""
    own = list(req.messages or [])
    messages = [Message(role=m["role"], content=m["content"])  # type: ignore[arg-type]
                for m in preset.messages] + own
    if preset.system and not (own and own[0].role == "system"):
        messages.insert(0, Message(role="system", content=preset.system))
    return req.model_copy(update={"messages": messages,
                                  "options": merged_options(preset, req.options)})


def apply_to_generate(req: GenerateRequest, preset: Preset) -> tuple[GenerateRequest,
                                                                      list[dict[str, Any]]]:
    """The request with the preset's system prompt and options, plus the preset's messages
    to put before the prompt (none when a ``context`` carries the conversation)."""
    update: dict[str, Any] = {"options": merged_options(preset, req.options)}
    if req.system is None and preset.system is not None and not req.raw:
        update["system"] = preset.system
    prefix = [] if req.context or req.raw else [dict(m) for m in preset.messages]
    return req.model_copy(update=update), prefix
