"""The Anthropic Messages API end to end: the official `anthropic` SDK against the real stack.

The SDK sends its key as `x-api-key`; vLLM serves /v1/messages itself and gpt-oss's
reasoning comes back as `thinking` blocks. The smoke checkpoint is a toy: the assertions
check structure (thinking and text present, usage counted), never exact words.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from serving.config import SERVED_MODEL_NAMES
from serving.sidecar.keys import create_key

pytestmark = pytest.mark.e2e

MODEL = SERVED_MODEL_NAMES[0]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
# The SDK (2.x) has no `temperature` argument any more; vLLM still takes it in the body.
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def client(stack: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.sidecar_url, api_key=stack.chat_key, timeout=120)


def _tokens(stack: Any, kind: str) -> float:
    text = httpx.get(f"{stack.sidecar_url}/metrics", timeout=10,
                     headers={"Authorization": f"Bearer {stack.admin_key}"}).text
    labels = (f'kind="{kind}"', 'route="/v1/messages"')
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("sidecar_tokens_total{") and all(x in line for x in labels))


def test_message_has_thinking_and_text_and_usage(client: anthropic.Anthropic, stack: Any) -> None:
    before = _tokens(stack, "completion")
    message = client.messages.create(model=MODEL, max_tokens=200, extra_body=GREEDY,
                                     messages=QUESTION)  # type: ignore[arg-type]
    kinds = [block.type for block in message.content]
    assert "thinking" in kinds and "text" in kinds, message.content
    text = "".join(b.text for b in message.content if b.type == "text")
    thinking = "".join(b.thinking for b in message.content if b.type == "thinking")
    assert text.strip() and thinking.strip()
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert _tokens(stack, "completion") - before == message.usage.output_tokens


def test_streamed_message_relays_thinking_and_text_deltas(
    client: anthropic.Anthropic, stack: Any
) -> None:
    before = _tokens(stack, "completion")
    deltas: list[str] = []
    with client.messages.stream(model=MODEL, max_tokens=200, extra_body=GREEDY,
                                messages=QUESTION) as stream:  # type: ignore[arg-type]
        for event in stream:
            if event.type == "content_block_delta":
                deltas.append(event.delta.type)
        final = stream.get_final_message()
    assert "thinking_delta" in deltas and "text_delta" in deltas, deltas
    assert [b.type for b in final.content if b.type in ("thinking", "text")][-1] == "text"
    assert final.usage.output_tokens > 0
    assert _tokens(stack, "completion") - before == final.usage.output_tokens


def test_key_and_permission_are_enforced_with_anthropic_errors(stack: Any) -> None:
    wrong = anthropic.Anthropic(base_url=stack.sidecar_url, api_key="sk-gos-wrong")
    with pytest.raises(anthropic.AuthenticationError) as denied:
        wrong.messages.create(model=MODEL, max_tokens=8, messages=QUESTION)  # type: ignore[arg-type]
    assert denied.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    models_key, _ = create_key(stack.keys_file, user="models-only", permissions=["models"])
    no_chat = anthropic.Anthropic(base_url=stack.sidecar_url, api_key=models_key)
    with pytest.raises(anthropic.PermissionDeniedError):
        no_chat.messages.create(model=MODEL, max_tokens=8, messages=QUESTION)  # type: ignore[arg-type]


def test_empty_tool_list_is_accepted(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=100, extra_body=GREEDY, tools=[],
                                     messages=QUESTION)  # type: ignore[arg-type]
    assert message.stop_reason in ("end_turn", "max_tokens")
