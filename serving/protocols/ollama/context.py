"""Ollama's ``context`` (a conversation as token ids) in gpt-oss's harmony format.

``/api/generate`` answers with ``context`` = the prompt ids vLLM rendered (harmony,
o200k_harmony vocabulary) followed by the ids it generated, so the numbers are the real ones
the model saw. A client sends them back to continue the conversation; we decode them with
``openai_harmony`` into chat messages and let vLLM render the next prompt (it regenerates
the system message and drops old analysis, as gpt-oss requires). Pure functions, no I/O.
"""

from __future__ import annotations

import functools
from typing import Any

from openai_harmony import HarmonyEncoding, HarmonyEncodingName, HarmonyError, load_harmony_encoding

from serving.errors import BadRequest

VOCAB_SIZE = 201088  # o200k_harmony: 199998 ordinary ids + the harmony specials
START, END, MESSAGE, RETURN, CALL = 200006, 200007, 200008, 200002, 200012
_INSTRUCTIONS = "# Instructions\n\n"
_TOOLS = "\n\n# Tools"


@functools.cache
def harmony_encoding() -> HarmonyEncoding:
    """The gpt-oss encoding; its vocabulary is compiled into openai_harmony (no download)."""
    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


def build_context(prompt_ids: list[int], completion_ids: list[int]) -> list[int]:
    """The conversation so far as harmony ids: prompt + completion.

    A final ``<|return|>`` becomes ``<|end|>`` (how harmony stores a finished answer in
    history); a completion cut short (``done_reason: length``) is kept as it is, the
    decoder tolerates an unterminated last message.
    """
    ids = list(prompt_ids) + list(completion_ids)
    if ids and ids[-1] == RETURN:
        ids[-1] = END
    return ids


def _parse(ids: list[int]) -> list[Any]:
    encoding = harmony_encoding()
    try:
        return list(encoding.parse_messages_from_completion_tokens(ids, None))
    except HarmonyError:
        # A completion cut inside a header (`<|start|>assistant<|channel|>ana`): drop the
        # unfinished message and keep the rest of the conversation.
        cut = max((i for i, tok in enumerate(ids) if tok == START), default=0)
        if cut == 0:
            raise
        return list(encoding.parse_messages_from_completion_tokens(ids[:cut], None))


def _text(message: Any) -> str:
    return "".join(part.text for part in message.content if hasattr(part, "text"))


def _developer_instructions(text: str) -> str | None:
    if not text.startswith(_INSTRUCTIONS):
        return None
    return text[len(_INSTRUCTIONS) :].split(_TOOLS, 1)[0]


def context_to_messages(ids: list[int]) -> list[dict[str, Any]]:
    """Decode a ``context`` into OpenAI chat messages (reasoning carried as ``reasoning``).

    Raises BadRequest when the ids are not a harmony conversation.
    """
    if not ids:
        return []
    if any(not 0 <= tok < VOCAB_SIZE for tok in ids):
        raise BadRequest(
            f"invalid context: token ids must be in [0, {VOCAB_SIZE})", param="context"
        )
    try:
        parsed = _parse(ids)
    except HarmonyError as exc:
        raise BadRequest(
            f"invalid context: not a harmony conversation ({exc})", param="context"
        ) from None
    messages: list[dict[str, Any]] = []
    reasoning: list[str] = []
    call_ids: dict[str, str] = {}
    for index, message in enumerate(parsed):
        role = message.author.role.value
        text = _text(message)
        if role == "system":
            continue  # vLLM writes a fresh one (date, reasoning effort) every turn
        if role == "developer":
            instructions = _developer_instructions(text)
            if instructions:
                messages.append({"role": "system", "content": instructions})
        elif role == "user":
            messages.append({"role": "user", "content": text})
        elif role == "tool":
            name = (message.author.name or "").removeprefix("functions.")
            messages.append(
                {"role": "tool", "tool_call_id": call_ids.get(name, ""), "content": text}
            )
        elif message.channel == "analysis":
            reasoning.append(text)
        elif (message.recipient or "").startswith("functions."):
            name = message.recipient.removeprefix("functions.")
            call_ids[name] = f"call_ctx_{index}"
            call = {
                "id": call_ids[name],
                "type": "function",
                "function": {"name": name, "arguments": text},
            }
            messages.append(_assistant(reasoning, tool_calls=[call]))
            reasoning = []
        else:
            messages.append(_assistant(reasoning, content=text))
            reasoning = []
    if reasoning:
        messages.append(_assistant(reasoning))
    return messages


def _assistant(reasoning: list[str], **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": fields.get("content") or ""}
    if reasoning:
        message["reasoning"] = "".join(reasoning)
    if "tool_calls" in fields:
        message["tool_calls"] = fields["tool_calls"]
    return message
