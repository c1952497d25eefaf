"""OpenAI-dialect request normalisation and the one-entry /v1/models listing, pure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import Response

from serving.catalogue import catalogue_for
from serving.config import SERVED_MODEL_NAMES
from serving.protocols.ollama.modelfile import Preset
from serving.protocols.ollama.models import ModelRegistry
from serving.protocols.openai.compat import models_response, normalise

PRESET = Preset(base="gpt-oss:20b", system="You are Mario.",
                parameters={"temperature": 0.8, "num_predict": 50, "stop": ["<x>"], "top_k": 5},
                messages=[{"role": "user", "content": "Who are you?"},
                          {"role": "assistant", "content": "It's-a me!"}], created=42)


@pytest.fixture
def names(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(catalogue_for("gpt-oss-20b"), tmp_path / "aliases.json")
    registry.copy("gpt-oss:20b", "team-model")
    registry.save_preset("mario", PRESET)
    return registry


class NoFile(ModelRegistry):
    """A catalogue whose file must not be read (served names need no lookup)."""

    def _read(self) -> Any:
        raise AssertionError("the aliases file was read for a served name")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/messages"])
def test_empty_tools_and_orphan_tool_choice_are_dropped(path: str, tmp_path: Path) -> None:
    names = NoFile(catalogue_for("gpt-oss-20b"), tmp_path / "a.json")
    out = normalise(path, {"model": "gpt-oss:20b", "tools": [], "tool_choice": "auto"}, names)
    assert out == {"model": "gpt-oss:20b"}
    out = normalise(path, {"model": "gpt-oss-20b", "tool_choice": "none"}, names)
    assert out == {"model": "gpt-oss-20b"}
    tools = [{"type": "function", "function": {"name": "f"}}]
    kept = normalise(path, {"model": "gpt-oss-20b", "tools": tools, "tool_choice": "auto"}, names)
    assert kept["tools"] == tools and kept["tool_choice"] == "auto"


def test_copies_resolve_to_the_served_name_and_unknown_names_pass(names: ModelRegistry) -> None:
    assert normalise("/v1/chat/completions", {"model": "team-model"}, names)["model"] == \
        "gpt-oss-20b"
    assert normalise("/v1/completions", {"model": "gpt-oss"}, names)["model"] == "gpt-oss-20b"
    assert normalise("/v1/chat/completions", {"model": "llama3"}, names)["model"] == "llama3"


def test_preset_on_chat_completions(names: ModelRegistry) -> None:
    out = normalise("/v1/chat/completions", {
        "model": "mario", "temperature": 0.1, "max_completion_tokens": 9,
        "messages": [{"role": "user", "content": "Jump!"}]}, names)
    assert out["model"] == "gpt-oss-20b"
    assert [m["content"] for m in out["messages"]] == [
        "You are Mario.", "Who are you?", "It's-a me!", "Jump!"]
    # the request's own values win; a field set under another name is not set twice
    assert out["temperature"] == 0.1 and "max_tokens" not in out
    assert out["stop"] == ["<x>"] and out["top_k"] == 5
    own = normalise("/v1/chat/completions", {"model": "mario", "messages": [
        {"role": "developer", "content": "Be Luigi."}]}, names)
    assert own["messages"][-1]["content"] == "Be Luigi." and len(own["messages"]) == 3


def test_preset_on_responses_and_messages(names: ModelRegistry) -> None:
    responses = normalise("/v1/responses", {"model": "mario", "input": "Jump!"}, names)
    assert responses["instructions"] == "You are Mario."
    assert responses["input"][-1] == {"role": "user", "content": "Jump!"}
    assert responses["max_output_tokens"] == 50 and "top_k" not in responses
    messages = normalise("/v1/messages", {
        "model": "mario", "max_tokens": 10, "messages": [{"role": "user", "content": "Jump!"}]},
        names)
    assert messages["system"] == "You are Mario." and messages["stop_sequences"] == ["<x>"]
    assert len(messages["messages"]) == 3 and messages["max_tokens"] == 10


def _models(*ids: str) -> Response:
    cards = [{"id": i, "object": "model", "root": "/m", "max_model_len": 4096,
              "created": 1, "permission": [{"id": f"p-{i}"}]} for i in ids]
    return Response(json.dumps({"object": "list", "data": cards}), 200)


def test_models_listing_has_one_entry_per_model_plus_presets(names: ModelRegistry) -> None:
    listed = json.loads(bytes(models_response(_models(*SERVED_MODEL_NAMES, "my-lora"),
                                              names).body))["data"]
    assert [c["id"] for c in listed] == ["gpt-oss-20b", "my-lora", "mario:latest"]
    mario = listed[-1]
    assert mario["parent"] == "gpt-oss-20b" and mario["max_model_len"] == 4096
    assert mario["created"] == 42 and "permission" not in mario
    # vLLM listing only an alias still yields the canonical name; errors pass as they came
    only_alias = json.loads(bytes(models_response(_models("gpt-oss:20b"), names).body))
    assert only_alias["data"][0]["id"] == "gpt-oss-20b"
    error = Response(b'{"error": "x"}', 503)
    assert models_response(error, names) is error
