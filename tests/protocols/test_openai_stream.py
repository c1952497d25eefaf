"""SSE framing and the reasoning alias (its cost is a benchmark figure, not a test)."""

from __future__ import annotations

import json

from serving.protocols.openai_stream import (
    SSEEventSplitter,
    alias_reasoning,
    is_usage_only_event,
    usage_from_event,
)

CHUNK = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
    b'"model":"gpt-oss-20b","choices":[{"index":0,"delta":{"reasoning":"The user asks \\"why\\"'
    b' \\u00e5"},"logprobs":null,"finish_reason":null}]}\n\n'
)


def test_alias_copies_the_exact_value_including_escapes():
    out = alias_reasoning(CHUNK)
    delta = json.loads(out[6:])["choices"][0]["delta"]
    assert delta["reasoning_content"] == delta["reasoning"] == 'The user asks "why" å'


def test_alias_leaves_other_chunks_byte_identical():
    content = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    assert alias_reasoning(content) is content
    already = b'data: {"choices":[{"delta":{"reasoning":"a","reasoning_content":"a"}}]}\n\n'
    assert alias_reasoning(already) is already


def test_splitter_reassembles_events_cut_anywhere():
    events = [CHUNK, b"data: [DONE]\n\n"]
    blob = b"".join(events)
    for cut in range(1, len(blob)):
        splitter = SSEEventSplitter()
        assert splitter.feed(blob[:cut]) + splitter.feed(blob[cut:]) == events


def test_usage_detection():
    usage = b'{"id":"x","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}'
    found = usage_from_event(usage)
    assert found is not None and (found.prompt_tokens, found.completion_tokens) == (5, 2)
    assert is_usage_only_event(usage)
    assert usage_from_event(b'{"choices":[{"delta":{"content":"usage"}}]}') is None
