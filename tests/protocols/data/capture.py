"""Capture real vLLM SSE streams for the Ollama translation tests (run by hand).

    .venv/bin/python -m tests.protocols.data.capture http://127.0.0.1:8101

For each case: the Ollama request is translated by ollama_translate (as the route does),
sent to vLLM, and the raw SSE body saved as ``<case>.sse`` beside ``<case>.request.json``
(the Ollama request). ``<case>.expected.ndjson`` is what ollama_stream makes of the stream
with a fixed clock; review it by eye once, then the tests hold it fixed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from serving.protocols.ollama.stream import (
    StreamState,
    final_lines,
    openai_chunk_to_ollama,
    parse_sse_line,
)
from serving.protocols.ollama.translate import ollama_chat_to_openai, ollama_generate_to_openai
from serving.protocols.ollama.types import ChatRequest, GenerateRequest
from tests.ollama_samples import WEATHER_TOOL as WEATHER

HERE = Path(__file__).parent
MODEL = "gpt-oss:20b"
GREEDY = {"temperature": 0}  # the smoke model is a toy: sampled output drifts off-format
CASES: dict[str, dict[str, object]] = {
    "generate_thinking": {
        "kind": "generate",
        "model": MODEL,
        "prompt": "Why is the sky blue?",
        "options": GREEDY,
    },
    "generate_swedish": {
        "kind": "generate",
        "model": MODEL,
        "think": "high",
        "options": GREEDY,
        "prompt": "Svara på svenska: Hej! Kan du förstå åäö?",
    },
    "generate_raw": {
        "kind": "generate",
        "model": MODEL,
        "raw": True,
        "options": {**GREEDY, "num_predict": 24},
        "prompt": "<|start|>user<|message|>Hej!<|end|><|start|>assistant",
    },
    "generate_length": {
        "kind": "generate",
        "model": MODEL,
        "prompt": "Tell me a joke.",
        "options": {**GREEDY, "num_predict": 5},
    },
    "chat_tool_call": {
        "kind": "chat",
        "model": MODEL,
        "tools": [WEATHER],
        "options": GREEDY,
        "messages": [{"role": "user", "content": "What is the weather in Malmö?"}],
    },
    "chat_tool_result": {
        "kind": "chat",
        "model": MODEL,
        "tools": [WEATHER],
        "options": GREEDY,
        "messages": [
            {"role": "user", "content": "What is the weather in Malmö?"},
            {
                "role": "assistant",
                "content": "",
                "thinking": "The user asks about the weather. I should call get_weather.",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Malmö"}}}
                ],
            },
            {
                "role": "tool",
                "tool_name": "get_weather",
                "content": '{"temperature": 18, "condition": "sunny"}',
            },
        ],
    },
    "chat_think_false": {
        "kind": "chat",
        "model": MODEL,
        "think": False,
        "options": GREEDY,
        "messages": [{"role": "user", "content": "Hello!"}],
    },
    "chat_format_json": {
        "kind": "chat",
        "model": MODEL,
        "format": "json",
        "options": {**GREEDY, "num_predict": 256},
        "messages": [{"role": "user", "content": "Give me a JSON object."}],
    },
}


def translate(case: dict[str, object]) -> tuple[str, dict[str, object], StreamState]:
    body = {k: v for k, v in case.items() if k != "kind"}
    if case["kind"] == "chat":
        t = ollama_chat_to_openai(ChatRequest.model_validate(body), upstream_model=MODEL)
    else:
        req = GenerateRequest.model_validate(body)
        t = ollama_generate_to_openai(req, upstream_model=MODEL)
    state = StreamState(
        kind=case["kind"],
        model=MODEL,
        show_thinking=body.get("think") is not False,  # type: ignore[arg-type]
        started_ns=0,
        accepted_ns=0,
        want_context=case["kind"] == "generate" and not body.get("raw"),
    )
    return t.path, t.body, state


def replay(sse: bytes, state: StreamState) -> list[dict[str, object]]:
    """The Ollama lines for a saved stream; the clock ticks 1000 ns per event."""
    out: list[dict[str, object]] = []
    now = 0
    for line in sse.decode("utf-8").splitlines():
        event = parse_sse_line(line)
        if event is not None:
            now += 1000
            out += openai_chunk_to_ollama(event, state, now_ns=now, created_at="T")
    return out + final_lines(state, now_ns=now + 1000, created_at="T")


def main(url: str) -> None:
    for name, case in CASES.items():
        path, body, state = translate(case)
        response = httpx.post(url + path, json=body, timeout=300)
        response.raise_for_status()
        (HERE / f"{name}.request.json").write_text(json.dumps(case, ensure_ascii=False, indent=1))
        (HERE / f"{name}.sse").write_bytes(response.content)
        lines = replay(response.content, state)
        expected = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in lines)
        (HERE / f"{name}.expected.ndjson").write_text(expected)
        print(f"{name}: {len(response.content)} bytes, {len(lines)} Ollama lines")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8101")
