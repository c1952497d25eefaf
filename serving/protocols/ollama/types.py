"""Ollama's request bodies as pydantic models (the shapes of ollama/api/types.go).

Routes parse bodies with :func:`parse_body`, which turns a validation failure into a 400
that names the field (``options.temperature: Input should be a valid number``) instead of
FastAPI's 422. Unknown top-level fields are ignored, as Ollama does; unknown ``options`` are
kept (``extra="allow"``) so the translator can log them.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from serving.errors import BadRequest

ThinkLevel = Literal["low", "medium", "high"]
# "" and "json" are Ollama's string formats; an object is a JSON schema.
Format = Literal["", "json"] | dict[str, Any]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Options(BaseModel):
    """``options``: sampling parameters plus load-time knobs that a served engine ignores."""

    model_config = ConfigDict(extra="allow")

    # runtime (mapped onto vLLM sampling parameters, see translate.OPTION_MAP)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    num_predict: int | None = None
    stop: list[str] | str | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    num_ctx: int | None = Field(default=None, ge=1)
    # Not an Ollama option, but the seed code puts it here: honoured like the top-level field.
    format: Format | None = None
    # accepted, no effect on vLLM (see translate.IGNORED_OPTIONS)
    typical_p: float | None = None
    tfs_z: float | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    repeat_last_n: int | None = None
    penalize_newline: bool | None = None
    num_keep: int | None = None
    numa: bool | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    gpu_layers: int | None = None
    main_gpu: int | None = None
    low_vram: bool | None = None
    f16_kv: bool | None = None
    logits_all: bool | None = None
    vocab_only: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    embedding_only: bool | None = None
    num_thread: int | None = None


class ToolCallFunction(_Wire):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    index: int | None = None


class ToolCall(_Wire):
    id: str | None = None
    function: ToolCallFunction


class Message(_Wire):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | None = None
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class ToolFunction(_Wire):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Wire):
    type: Literal["function"] = "function"
    function: ToolFunction


# Ollama's default is to stream; null counts as absent (Go *bool semantics).
OllamaStream = Annotated[bool, BeforeValidator(lambda value: True if value is None else value)]


class _Inference(_Wire):
    model: str = Field(min_length=1)
    stream: OllamaStream = True
    format: Format | None = None
    options: Options | None = None
    keep_alive: float | str | None = None
    think: bool | ThinkLevel | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class GenerateRequest(_Inference):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = False
    images: list[str] | None = None


class ChatRequest(_Inference):
    messages: list[Message] | None = None
    tools: list[Tool] | None = None


class _Named(_Wire):
    """Requests that name a model: ``model`` (current) or ``name`` (older clients, seeds)."""

    model: str | None = None
    name: str | None = None

    @property
    def target(self) -> str:
        value = self.model or self.name
        if not value:
            raise BadRequest("model is required", param="model")
        return value


class ShowRequest(_Named):
    verbose: bool | None = None


class DeleteRequest(_Named):
    pass


class PullRequest(_Named):
    stream: bool = True
    insecure: bool | None = None


class PushRequest(_Named):
    stream: bool = True
    insecure: bool | None = None


class CreateRequest(_Named):
    """``/api/create``: the current fields (``from``, ``system``, ``parameters``,
    ``messages``, ...) or the legacy ``modelfile`` string."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    stream: OllamaStream = True
    from_: str | None = Field(default=None, alias="from")
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[Message] | None = None
    template: str | None = None
    license: str | list[str] | None = None
    modelfile: str | None = None
    adapters: dict[str, str] | None = None
    files: dict[str, str] | None = None
    draft_files: dict[str, str] | None = None
    quantize: str | None = None
    quantization: str | None = None
    remote_host: str | None = None


class CopyRequest(_Wire):
    source: str = Field(min_length=1)
    destination: str = Field(min_length=1)


class EmbedRequest(BaseModel):
    """/api/embed."""

    model_config = ConfigDict(extra="ignore")
    model: str
    input: str | list[str]
    truncate: bool = Field(default=True, description="Cut inputs to the model's context.")
    options: dict[str, Any] | None = None
    keep_alive: str | int | float | None = None
    dimensions: int | None = Field(default=None, ge=1)


class EmbeddingsRequest(BaseModel):
    """/api/embeddings, the legacy single-prompt shape: `{"model", "prompt"}` →
    `{"embedding": [...]}`."""

    model_config = ConfigDict(extra="ignore")
    model: str
    prompt: str
    options: dict[str, Any] | None = None
    keep_alive: str | int | float | None = None


M = TypeVar("M", bound=BaseModel)
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ns|us|µs|ms|s|m|h)?\s*$")


def is_zero_duration(value: float | str | None) -> bool:
    """Whether ``keep_alive`` is zero: ``0``, ``"0"``, ``"0s"``, ``"0m"`` (Go durations; a
    bare number counts as seconds)."""
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == 0
    match = _DURATION.match(value)
    return match is not None and float(match.group(1)) == 0


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("str", "bool", "int", "float", "dict[str,any]", "list[str]") or "[" in item:
            continue  # union branch names pydantic adds to the location
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "body"


def parse_body(model: type[M], raw: bytes) -> M:
    """Validate a JSON body; any problem becomes a 400 naming the offending field."""
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"invalid JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _location(tuple(first["loc"]))
        raise BadRequest(f"invalid value for '{field}': {first['msg']}", param=field) from None


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra=` for a route that parses its JSON body itself (Ollama's clients and
    examples send it without a JSON content type): the body's schema, as a component.
    The `x-components` are moved into the schema's components when the app renders it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components = {**schema.pop("$defs", {}), model.__name__: schema}
    reference = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": reference}}}, "x-components": components}
