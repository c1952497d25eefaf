"""vLLM stream events -> Ollama NDJSON objects (pure; fixed clock and timestamps)."""

from __future__ import annotations

import json

import pytest

from serving.errors import ServingError
from serving.protocols.ollama.context import RETURN, harmony_encoding
from serving.protocols.ollama.stream import (
    StreamState,
    aggregate,
    final_lines,
    openai_chunk_to_ollama,
    parse_sse_line,
)

AT = "2026-01-01T00:00:00.000000000Z"


def delta(**fields: object) -> dict[str, object]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": fields}]}


def finish(reason: str) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def usage(prompt: int, completion: int) -> dict[str, object]:
    return {
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def feed(
    state: StreamState, events: list[dict[str, object]], start: int = 1000
) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i, event in enumerate(events):
        out += openai_chunk_to_ollama(event, state, now_ns=start + i * 100, created_at=AT)
    return out


def test_sse_lines() -> None:
    assert parse_sse_line('data: {"a": 1}') == {"a": 1}
    assert parse_sse_line("data: [DONE]") is None
    assert parse_sse_line("") is None and parse_sse_line(": keep-alive") is None
    with pytest.raises(ValueError):
        parse_sse_line("data: {broken")


def test_generate_stream_thinking_then_response_then_done() -> None:
    state = StreamState(
        kind="generate", model="gpt-oss:20b", show_thinking=True, started_ns=0, accepted_ns=400
    )
    lines = feed(
        state,
        [
            delta(role="assistant", content=""),
            delta(reasoning="Think"),
            delta(reasoning=" more"),
            delta(content="Hej "),
            delta(content="då"),
            finish("stop"),
            usage(12, 5),
        ],
    )
    assert lines == [
        {
            "model": "gpt-oss:20b",
            "created_at": AT,
            "response": "",
            "thinking": "Think",
            "done": False,
        },
        {
            "model": "gpt-oss:20b",
            "created_at": AT,
            "response": "",
            "thinking": " more",
            "done": False,
        },
        {"model": "gpt-oss:20b", "created_at": AT, "response": "Hej ", "done": False},
        {"model": "gpt-oss:20b", "created_at": AT, "response": "då", "done": False},
    ]
    (done,) = final_lines(state, now_ns=2000, created_at=AT)
    assert done == {
        "model": "gpt-oss:20b",
        "created_at": AT,
        "response": "",
        "done": True,
        "done_reason": "stop",
        "total_duration": 2000,
        "load_duration": 400,
        "prompt_eval_count": 12,
        "prompt_eval_duration": 600,
        "eval_count": 5,
        "eval_duration": 500,
    }


def test_think_false_hides_thinking_but_keeps_the_answer() -> None:
    state = StreamState(kind="chat", model="m", show_thinking=False, started_ns=0)
    lines = feed(state, [delta(reasoning="secret"), delta(content="Hi"), finish("stop")])
    assert lines == [
        {
            "model": "m",
            "created_at": AT,
            "message": {"role": "assistant", "content": "Hi"},
            "done": False,
        }
    ]
    result = aggregate(state, now_ns=5000, created_at=AT)
    assert "thinking" not in result["message"] and result["message"]["content"] == "Hi"


def test_chat_aggregate_has_thinking_content_and_length_reason() -> None:
    state = StreamState(kind="chat", model="m", show_thinking=True, started_ns=0)
    feed(
        state,
        [
            delta(reasoning="a"),
            delta(reasoning_content="b"),
            delta(content="Hö"),
            finish("length"),
            usage(3, 4),
        ],
    )
    result = aggregate(state, now_ns=9000, created_at=AT)
    assert result["message"] == {"role": "assistant", "content": "Hö", "thinking": "ab"}
    assert result["done"] is True and result["done_reason"] == "length"
    assert result["eval_count"] == 4 and result["prompt_eval_count"] == 3


def test_tool_call_fragments_are_joined_and_sent_whole_before_done() -> None:
    state = StreamState(kind="chat", model="m", show_thinking=True, started_ns=0)
    feed(
        state,
        [
            delta(reasoning="Use the tool."),
            delta(
                tool_calls=[
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            ),
            delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}]),
            delta(tool_calls=[{"index": 0, "function": {"arguments": '"Malmö"}'}}]),
            finish("tool_calls"),
        ],
    )
    calls_line, done = final_lines(state, now_ns=10_000, created_at=AT)
    assert calls_line["message"]["tool_calls"] == [
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Malmö"}}}
    ]
    assert calls_line["done"] is False
    assert done["done"] is True and done["done_reason"] == "stop"
    assert "tool_calls" not in done["message"]


def test_malformed_tool_call_is_dropped_and_the_answer_kept() -> None:
    state = StreamState(kind="chat", model="m", show_thinking=True, started_ns=0)
    feed(
        state,
        [
            delta(content="Hej"),
            delta(tool_calls=[{"index": 0, "function": {"name": "f", "arguments": "[1"}}]),
            delta(tool_calls=[{"index": 1, "function": {"name": "g", "arguments": "{}"}}]),
        ],
    )
    result = aggregate(state, now_ns=1, created_at=AT)
    assert result["message"]["content"] == "Hej"
    assert result["message"]["tool_calls"] == [
        {"function": {"index": 1, "name": "g", "arguments": {}}}
    ]
    assert state.dropped_tool_calls == [{"id": None, "name": "f", "arguments": "[1"}]


def test_generate_ignores_tool_calls() -> None:
    state = StreamState(kind="generate", model="m", show_thinking=True, started_ns=0)
    feed(
        state,
        [delta(tool_calls=[{"index": 0, "function": {"name": "x<|end|>", "arguments": "no"}}])],
    )
    assert aggregate(state, now_ns=1, created_at=AT)["response"] == ""
    assert state.tool_calls == {} and state.dropped_tool_calls == []


def test_completion_chunks_for_raw_generate() -> None:
    state = StreamState(kind="generate", model="m", show_thinking=True, started_ns=0)
    lines = feed(
        state,
        [
            {"object": "text_completion", "choices": [{"index": 0, "text": "å"}]},
            {"choices": [{"index": 0, "text": "ä", "finish_reason": "stop"}]},
        ],
    )
    assert [line["response"] for line in lines] == ["å", "ä"]
    assert "context" not in aggregate(state, now_ns=1, created_at=AT)


def test_upstream_error_event_raises() -> None:
    state = StreamState(kind="chat", model="m", show_thinking=True, started_ns=0)
    with pytest.raises(ServingError, match="engine died"):
        openai_chunk_to_ollama(
            {"error": {"message": "engine died", "code": 500}}, state, now_ns=1, created_at=AT
        )


def test_context_is_prompt_ids_plus_completion_ids() -> None:
    enc = harmony_encoding()
    prompt = enc.encode(
        "<|start|>user<|message|>Hi<|end|><|start|>assistant", allowed_special="all"
    )
    completion = enc.encode("<|channel|>final<|message|>Hej<|return|>", allowed_special="all")
    state = StreamState(
        kind="generate", model="m", show_thinking=True, started_ns=0, want_context=True
    )
    feed(
        state,
        [
            {"choices": [], "prompt_token_ids": prompt},
            {"choices": [{"index": 0, "delta": {"content": "Hej"}, "token_ids": completion}]},
        ],
    )
    context = aggregate(state, now_ns=1, created_at=AT)["context"]
    assert context[: len(prompt)] == prompt and RETURN not in context
    assert enc.decode_utf8(context).endswith("<|channel|>final<|message|>Hej<|end|>")


def test_lines_serialize_multibyte_text_whole() -> None:
    state = StreamState(kind="generate", model="m", show_thinking=True, started_ns=0)
    lines = feed(state, [delta(content="🇸🇪 Björn åker")])
    encoded = json.dumps(lines[0], ensure_ascii=False).encode()
    assert json.loads(encoded.decode("utf-8"))["response"] == "🇸🇪 Björn åker"
