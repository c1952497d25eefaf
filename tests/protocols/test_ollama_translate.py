"""Ollama request -> vLLM OpenAI request: the mapping tables and their edge cases."""

from __future__ import annotations

import json

import pytest

from serving.errors import BadRequest
from serving.protocols.ollama.context import harmony_encoding
from serving.protocols.ollama.translate import (
    IGNORED_OPTIONS,
    OPTION_MAP,
    ollama_chat_to_openai,
    ollama_generate_to_openai,
    options_to_sampling,
)
from serving.protocols.ollama.types import ChatRequest, GenerateRequest, Options, parse_body
from tests.ollama_samples import SEED_OPTIONS


def generate(**fields: object) -> GenerateRequest:
    return parse_body(GenerateRequest, json.dumps({"model": "gpt-oss:20b", **fields}).encode())


def chat(**fields: object) -> ChatRequest:
    return parse_body(ChatRequest, json.dumps({"model": "gpt-oss:20b", **fields}).encode())


def test_seed_options_table_maps_to_vllm_sampling() -> None:
    out = options_to_sampling(Options.model_validate(SEED_OPTIONS), max_model_len=8192)
    assert out.body == {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 40,
        "repetition_penalty": 1.1,
        "seed": 42,
        "max_tokens": 512,
        "stop": ["\n", "###"],
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
    }
    assert set(out.ignored_options) == {
        "tfs_z",
        "typical_p",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
        "num_gpu",
        "gpu_layers",
        "main_gpu",
        "low_vram",
        "f16_kv",
        "vocab_only",
        "use_mmap",
        "use_mlock",
    }
    assert set(out.ignored_options) <= set(IGNORED_OPTIONS)
    assert out.notes == []  # 4096 fits in 8192


def test_every_mapped_option_has_a_model_field() -> None:
    assert set(OPTION_MAP) <= set(Options.model_fields)


@pytest.mark.parametrize("value", [-1, -2])
def test_num_predict_unlimited_sends_no_max_tokens(value: int) -> None:
    assert "max_tokens" not in options_to_sampling(Options(num_predict=value)).body


def test_num_ctx_above_served_context_is_clamped_not_refused() -> None:
    out = options_to_sampling(Options(num_ctx=131072), max_model_len=8192)
    assert out.notes == ["num_ctx 131072 clamped to the served context 8192"]
    assert "num_ctx" not in out.body and "num_ctx" not in out.ignored_options


def test_random_seed_and_disabled_top_k_are_left_to_the_engine() -> None:
    assert options_to_sampling(Options(seed=-1, top_k=0)).body == {}


def test_single_stop_string_becomes_a_list() -> None:
    assert options_to_sampling(Options(stop="###")).body == {"stop": ["###"]}


def test_unknown_option_is_reported_ignored() -> None:
    out = options_to_sampling(Options.model_validate({"flash_attention": True}))
    assert out.ignored_options == ["flash_attention"] and out.body == {}


def test_generate_builds_a_streamed_chat_request_with_token_ids() -> None:
    t = ollama_generate_to_openai(
        generate(prompt="Hej", system="Be brief", options={"temperature": 0}),
        upstream_model="gpt-oss:20b",
    )
    assert t.path == "/v1/chat/completions"
    assert t.body["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Hej"},
    ]
    assert t.body["stream"] is True and t.body["stream_options"] == {"include_usage": True}
    assert t.body["return_token_ids"] is True and t.body["temperature"] == 0
    assert "reasoning_effort" not in t.body  # think absent: the engine's default effort


@pytest.mark.parametrize(
    ("think", "effort"),
    [(True, "medium"), (False, "low"), ("low", "low"), ("medium", "medium"), ("high", "high")],
)
def test_think_maps_to_reasoning_effort(think: object, effort: str) -> None:
    for t in (
        ollama_generate_to_openai(generate(prompt="x", think=think), upstream_model="m"),
        ollama_chat_to_openai(
            chat(messages=[{"role": "user", "content": "x"}], think=think), upstream_model="m"
        ),
    ):
        assert t.body["reasoning_effort"] == effort


def test_format_json_top_level_and_inside_options() -> None:
    top = ollama_generate_to_openai(generate(prompt="x", format="json"), upstream_model="m")
    seed = ollama_generate_to_openai(
        generate(prompt="x", options={"format": "json"}), upstream_model="m"
    )
    assert top.body["response_format"] == seed.body["response_format"] == {"type": "json_object"}
    assert "format" not in seed.ignored_options


def test_format_schema_becomes_json_schema() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    t = ollama_chat_to_openai(
        chat(messages=[{"role": "user", "content": "x"}], format=schema), upstream_model="m"
    )
    assert t.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "ollama_format", "schema": schema},
    }


def test_raw_goes_verbatim_to_completions_without_the_16_token_default() -> None:
    prompt = "<|start|>user<|message|>Hi<|end|><|start|>assistant"
    t = ollama_generate_to_openai(generate(prompt=prompt, raw=True), upstream_model="m")
    assert t.path == "/v1/completions"
    assert t.body["prompt"] == prompt and t.body["max_tokens"] is None
    assert t.body["skip_special_tokens"] is False  # harmony markup comes back verbatim
    assert "messages" not in t.body and "return_token_ids" not in t.body


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("template", "{{ .Prompt }}", "templates are not supported"),
        ("suffix", "end", "does not support insert"),
        ("images", ["aGVsbG8="], "text-only"),
    ],
)
def test_unsupported_generate_fields_are_refused_clearly(
    field: str, value: object, words: str
) -> None:
    with pytest.raises(BadRequest, match=words) as info:
        ollama_generate_to_openai(generate(prompt="x", **{field: value}), upstream_model="m")
    assert info.value.param == field


def test_chat_tools_and_tool_results_carry_into_the_next_turn() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages = [
        {"role": "system", "content": "You help."},
        {"role": "user", "content": "Weather in Göteborg?"},
        {
            "role": "assistant",
            "content": "",
            "thinking": "Need the tool.",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Göteborg"}}}
            ],
        },
        {"role": "tool", "tool_name": "get_weather", "content": "12 °C"},
    ]
    t = ollama_chat_to_openai(chat(messages=messages, tools=tools), upstream_model="gpt-oss-20b")
    out = t.body["messages"]
    assert t.body["tools"] == tools and t.body["tool_choice"] == "auto"
    assistant, tool = out[2], out[3]
    assert assistant["reasoning"] == "Need the tool."
    call = assistant["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Göteborg"}
    assert tool == {"role": "tool", "content": "12 °C", "tool_call_id": call["id"]}


def test_tool_results_match_calls_by_name() -> None:
    calls = [
        {"function": {"name": "a", "arguments": {}}},
        {"function": {"name": "b", "arguments": {}}},
    ]
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": calls},
        {"role": "tool", "tool_name": "b", "content": "B"},
        {"role": "tool", "tool_name": "a", "content": "A"},
    ]
    out = ollama_chat_to_openai(chat(messages=messages), upstream_model="m").body["messages"]
    ids = {c["function"]["name"]: c["id"] for c in out[1]["tool_calls"]}
    assert out[2]["tool_call_id"] == ids["b"] and out[3]["tool_call_id"] == ids["a"]


def test_chat_images_are_refused() -> None:
    with pytest.raises(BadRequest, match="text-only"):
        ollama_chat_to_openai(
            chat(messages=[{"role": "user", "content": "x", "images": ["aGk="]}]),
            upstream_model="m",
        )


def test_context_round_trip_continues_the_conversation() -> None:
    enc = harmony_encoding()
    rendered = (
        "<|start|>system<|message|>You are ChatGPT.<|end|>"
        "<|start|>developer<|message|># Instructions\n\nAnswer in Swedish<|end|>"
        "<|start|>user<|message|>My name is Åsa<|end|>"
        "<|start|>assistant<|channel|>analysis<|message|>Greet Åsa.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Hej Åsa!<|end|>"
    )
    context = enc.encode(rendered, allowed_special="all")
    t = ollama_generate_to_openai(
        generate(prompt="What is my name?", context=context), upstream_model="m"
    )
    assert t.body["messages"] == [
        {"role": "system", "content": "Answer in Swedish"},
        {"role": "user", "content": "My name is Åsa"},
        {"role": "assistant", "content": "Hej Åsa!", "reasoning": "Greet Åsa."},
        {"role": "user", "content": "What is my name?"},
    ]
    replaced = ollama_generate_to_openai(
        generate(prompt="x", context=context, system="New"), upstream_model="m"
    ).body["messages"]
    assert replaced[0] == {"role": "system", "content": "New"}
    assert [m["role"] for m in replaced].count("system") == 1


@pytest.mark.parametrize("context", [[5, 6, 7], [999_999], [-1]])
def test_invalid_context_is_a_400(context: list[int]) -> None:
    with pytest.raises(BadRequest, match="invalid context"):
        ollama_generate_to_openai(generate(prompt="x", context=context), upstream_model="m")


def test_null_fields_count_as_absent() -> None:
    req = parse_body(
        GenerateRequest,
        b'{"model": "m", "prompt": "x", "stream": null, "raw": null,'
        b' "options": null, "format": null, "context": null, "think": null}',
    )
    assert req.stream is True and not req.raw
    assert parse_body(ChatRequest, b'{"model": "m", "messages": null}').messages is None
