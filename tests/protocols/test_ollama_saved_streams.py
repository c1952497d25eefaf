"""Real vLLM SSE streams (captured from the smoke checkpoint, see data/capture.py) in,
Ollama NDJSON out: exactly the reviewed golden lines, and the structure each case needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from serving.protocols.ollama.context import context_to_messages
from tests.protocols.data.capture import CASES, replay, translate

DATA = Path(__file__).parent / "data"


def run(name: str) -> list[dict[str, Any]]:
    case = json.loads((DATA / f"{name}.request.json").read_text())
    _, _, state = translate(case)
    return replay((DATA / f"{name}.sse").read_bytes(), state)


@pytest.mark.parametrize("name", sorted(CASES))
def test_saved_stream_matches_golden_ndjson(name: str) -> None:
    expected = [
        json.loads(line) for line in (DATA / f"{name}.expected.ndjson").read_text().splitlines()
    ]
    assert run(name) == expected


def text(lines: list[dict[str, Any]], field: str) -> str:
    return "".join(line.get(field) or line.get("message", {}).get(field) or "" for line in lines)


def test_generate_stream_has_thinking_then_response_and_context() -> None:
    *deltas, done = run("generate_thinking")
    assert text(deltas, "thinking") and text(deltas, "response")
    assert done["done"] is True and done["done_reason"] == "stop"
    assert done["eval_count"] > 0 and done["prompt_eval_count"] > 0
    history = context_to_messages(done["context"])
    assert history[0] == {"role": "user", "content": "Why is the sky blue?"}
    assert history[-1]["role"] == "assistant" and history[-1]["content"] == text(deltas, "response")
    assert history[-1]["reasoning"] == text(deltas, "thinking")


def test_swedish_characters_arrive_whole() -> None:
    *deltas, done = run("generate_swedish")
    answer = text(deltas, "response") + text(deltas, "thinking")
    assert answer and "\ufffd" not in answer
    history = context_to_messages(done["context"])
    assert history[0]["content"] == "Svara på svenska: Hej! Kan du förstå åäö?"


def test_raw_generate_has_no_thinking_and_no_context() -> None:
    *deltas, done = run("generate_raw")
    assert text(deltas, "response").startswith("<|channel|>")  # harmony markup verbatim
    assert not text(deltas, "thinking")
    assert "context" not in done


def test_num_predict_stops_with_length() -> None:
    *_, done = run("generate_length")
    assert done["done_reason"] == "length" and done["eval_count"] == 5


def test_tool_call_is_reported_once_with_object_arguments() -> None:
    lines = run("chat_tool_call")
    calls = [c for line in lines for c in line["message"].get("tool_calls", [])]
    assert len(calls) == 1
    assert calls[0]["function"]["name"] == "get_weather"
    assert isinstance(calls[0]["function"]["arguments"], dict) and calls[0]["function"]["arguments"]
    assert lines[-1]["done"] is True


def test_format_json_answer_parses() -> None:
    lines = run("chat_format_json")
    assert isinstance(json.loads(text(lines, "content")), dict)


def test_tool_result_turn_answers_in_content() -> None:
    lines = run("chat_tool_result")
    assert text(lines, "content") and text(lines, "thinking")
    assert not any(line["message"].get("tool_calls") for line in lines)


def test_think_false_stream_has_no_thinking() -> None:
    lines = run("chat_think_false")
    assert text(lines, "content") and not text(lines, "thinking")
    sse = (DATA / "chat_think_false.sse").read_text()
    assert '"reasoning"' in sse  # the model did reason; the translation hid it
