"""SSE framing and the reasoning alias (its cost is a benchmark figure, not a test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.protocols.openai.stream import (
    SSERelay,
    alias_reasoning,
    is_usage_only_event,
    usage_from_event,
)
from tests.fake_vllm import sse_events

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


RECORDED = sorted((Path(__file__).parent / "data").glob("*.sse"))


def _relay_all(reads: list[bytes], **kwargs: bool) -> bytes:
    relay = SSERelay(**kwargs)
    return b"".join(relay.feed(read) for read in reads) + relay.flush()


def test_relay_reassembles_events_cut_anywhere():
    blob = CHUNK + b"data: [DONE]\n\n"
    for cut in range(1, len(blob)):
        assert _relay_all([blob[:cut], blob[cut:]], alias=False, strip_usage=False) == blob
        aliased = _relay_all([blob[:cut], blob[cut:]], alias=True, strip_usage=False)
        assert aliased == alias_reasoning(CHUNK) + b"data: [DONE]\n\n"


def test_relay_holds_an_incomplete_event_until_its_end():
    relay = SSERelay(alias=True, strip_usage=False)
    assert relay.feed(CHUNK[:40]) == b""
    assert relay.feed(CHUNK[40:]) == alias_reasoning(CHUNK)


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_recorded_vllm_streams_pass_byte_for_byte(path: Path):
    """Real vLLM streams, relayed in reads of every size from 1 event to the whole stream:
    the bytes out equal the bytes in, apart from the alias and the stripped usage chunk."""
    upstream = path.read_bytes()
    events = sse_events(upstream)
    usage_only = [e for e in events if is_usage_only_event(e[6:].strip())]
    assert len(usage_only) == 1, "the recordings asked for usage"
    for per_read in (1, 2, 7, len(events)):
        reads = [b"".join(events[i:i + per_read]) for i in range(0, len(events), per_read)]
        assert _relay_all(reads, alias=False, strip_usage=False) == upstream
        stripped = _relay_all(reads, alias=False, strip_usage=True)
        assert stripped == b"".join(e for e in events if e not in usage_only)
        aliased = _relay_all(reads, alias=True, strip_usage=False)
        assert aliased == b"".join(alias_reasoning(e) for e in events)


def test_relay_records_usage_whether_or_not_it_strips_it():
    usage = b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n'
    for strip in (False, True):
        relay = SSERelay(alias=False, strip_usage=strip)
        out = relay.feed(CHUNK + usage + b"data: [DONE]\n\n")
        assert relay.usage is not None and relay.usage.completion_tokens == 2
        assert (usage in out) is not strip


def test_usage_detection():
    usage = b'{"id":"x","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}'
    found = usage_from_event(usage)
    assert found is not None and (found.prompt_tokens, found.completion_tokens) == (5, 2)
    assert is_usage_only_event(usage)
    assert usage_from_event(b'{"choices":[{"delta":{"content":"usage"}}]}') is None
