"""Modelfile presets, pure: parsing, /api/create bodies, rendering, applying to requests."""

from __future__ import annotations

import pytest

from serving.errors import BadRequest
from serving.protocols.ollama.modelfile import (
    Preset,
    apply_to_chat,
    apply_to_generate,
    build_preset,
    check_refusals,
    parameters_text,
    parse_modelfile,
    render_modelfile,
    spec_from_create,
)
from serving.protocols.ollama.types import ChatRequest, CreateRequest, GenerateRequest

GUIDE = '''# the Ollama guide's example
FROM gpt-oss:20b
PARAMETER temperature 0.8
parameter num_ctx 4096
PARAMETER stop "<|end|>"
PARAMETER stop "User:"
SYSTEM """You are a helpful
chatbot."""
MESSAGE user Is the sky blue?
MESSAGE assistant "Yes, it is."
'''


def test_parses_the_guide_modelfile_with_typed_parameters() -> None:
    spec = parse_modelfile(GUIDE)
    assert spec.base == "gpt-oss:20b"
    assert spec.system == "You are a helpful\nchatbot."
    assert spec.parameters == {"temperature": 0.8, "num_ctx": 4096, "stop": ["<|end|>", "User:"]}
    assert spec.messages == [{"role": "user", "content": "Is the sky blue?"},
                             {"role": "assistant", "content": "Yes, it is."}]
    assert spec.refused == []


@pytest.mark.parametrize(("text", "message"), [
    ("SYSTEM hi", "no FROM line"),
    ("FROM x\nSTOP now", "line 2: unknown instruction 'STOP'"),
    ("FROM x\nMESSAGE tool hi", "message role must be one of"),
    ('FROM x\nSYSTEM """never closed', "unterminated"),
    ("FROM x\nPARAMETER temperature hot", "invalid value for parameter 'temperature'"),
    ("FROM x\nPARAMETER flavour 3", "unknown parameter 'flavour'"),
])
def test_bad_modelfiles_are_400_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_modelfile(text)


@pytest.mark.parametrize(("text", "reason"), [
    ("FROM gpt-oss:20b\nADAPTER ./lora.safetensors", "ADAPTER needs other weights"),
    ("FROM gpt-oss:20b\nTEMPLATE {{ .Prompt }}", "harmony"),
    ("FROM gpt-oss:20b\nDRAFT ./small", "draft"),
])
def test_instructions_needing_other_weights_are_refused(text: str, reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        check_refusals(parse_modelfile(text))


def test_current_create_fields_and_legacy_modelfile_combine() -> None:
    req = CreateRequest.model_validate({
        "model": "mario", "from": "gpt-oss:20b", "system": "You are Mario.",
        "parameters": {"temperature": 0.5, "stop": "<x>"},
        "messages": [{"role": "user", "content": "hi"}],
    })
    spec = spec_from_create(req)
    assert (spec.base, spec.system) == ("gpt-oss:20b", "You are Mario.")
    assert spec.parameters == {"temperature": 0.5, "stop": ["<x>"]}
    assert spec.messages == [{"role": "user", "content": "hi"}]
    legacy = spec_from_create(CreateRequest.model_validate(
        {"name": "old", "modelfile": GUIDE, "system": "override"}))
    assert legacy.base == "gpt-oss:20b" and legacy.system == "override"
    assert legacy.parameters["temperature"] == 0.8
    for field in ({"quantize": "q4_K_M"}, {"adapters": {"a": "sha256:1"}},
                  {"files": {"m.gguf": "sha256:1"}}, {"template": "{{ .Prompt }}"}):
        spec = spec_from_create(CreateRequest.model_validate({"model": "m", "from": "x", **field}))
        with pytest.raises(BadRequest, match="cannot create this model"):
            check_refusals(spec)
    with pytest.raises(BadRequest, match="'from' is required"):
        check_refusals(spec_from_create(CreateRequest.model_validate({"model": "m"})))


def test_rendered_modelfile_parses_back_to_the_same_preset() -> None:
    preset = build_preset(parse_modelfile(GUIDE), None, created=1)
    text = render_modelfile("my-chatbot:latest", preset)
    assert "FROM gpt-oss:20b" in text and 'SYSTEM """You are a helpful\nchatbot."""' in text
    again = build_preset(parse_modelfile(text), None, created=1)
    assert again == preset
    assert parameters_text(preset.parameters).splitlines()[0].split() == ["temperature", "0.8"]


def test_preset_on_a_preset_inherits_what_it_does_not_set() -> None:
    parent = Preset(base="gpt-oss:20b", system="Be brief.", parameters={"temperature": 0.2,
                    "top_k": 5}, messages=[{"role": "user", "content": "hi"}])
    child = build_preset(parse_modelfile("FROM parent\nPARAMETER temperature 0.9"), parent, 2)
    assert child.base == "gpt-oss:20b" and child.system == "Be brief."
    assert child.parameters == {"temperature": 0.9, "top_k": 5}
    assert child.messages == parent.messages


PRESET = Preset(base="gpt-oss:20b", system="You are Mario.",
                parameters={"temperature": 0.8, "num_predict": 50},
                messages=[{"role": "user", "content": "Who are you?"},
                          {"role": "assistant", "content": "It's-a me!"}])


def test_chat_gets_system_messages_and_options_under_the_request() -> None:
    req = ChatRequest.model_validate({"model": "mario", "options": {"temperature": 0.1},
                                      "messages": [{"role": "user", "content": "Jump!"}]})
    out = apply_to_chat(req, PRESET)
    assert [(m.role, m.content) for m in out.messages or []] == [
        ("system", "You are Mario."), ("user", "Who are you?"),
        ("assistant", "It's-a me!"), ("user", "Jump!")]
    assert out.options is not None
    assert (out.options.temperature, out.options.num_predict) == (0.1, 50)
    own = ChatRequest.model_validate({"model": "mario", "messages": [
        {"role": "system", "content": "Be Luigi."}, {"role": "user", "content": "Jump!"}]})
    assert next(m.content for m in apply_to_chat(own, PRESET).messages or []) == "Who are you?"


def test_generate_gets_system_and_prefix_unless_context_or_raw() -> None:
    req = GenerateRequest.model_validate({"model": "mario", "prompt": "Jump!"})
    out, prefix = apply_to_generate(req, PRESET)
    assert out.system == "You are Mario." and prefix == PRESET.messages
    _, prefix = apply_to_generate(
        GenerateRequest.model_validate({"model": "m", "prompt": "x", "context": [1]}), PRESET)
    assert prefix == []
    raw, prefix = apply_to_generate(
        GenerateRequest.model_validate({"model": "m", "prompt": "x", "raw": True}), PRESET)
    assert raw.system is None and prefix == [] and raw.options is not None
