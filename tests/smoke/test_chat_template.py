"""The checkpoint's chat template renders what openai_harmony renders (as vLLM does)."""

from __future__ import annotations

import datetime
from pathlib import Path

from openai_harmony import (
    Author,
    Conversation,
    DeveloperContent,
    HarmonyEncoding,
    Message,
    ReasoningEffort,
    Role,
    SystemContent,
    ToolDescription,
)
from transformers import AutoTokenizer

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get current weather in a given city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}


def _system(effort: ReasoningEffort | None = None) -> Message:
    content = SystemContent.new().with_conversation_start_date(datetime.date.today().isoformat())
    if effort is not None:
        content = content.with_reasoning_effort(effort)
    return Message.from_role_and_content(Role.SYSTEM, content)


def _harmony(encoding: HarmonyEncoding, messages: list[Message]) -> str:
    conversation = Conversation.from_messages(messages)
    return encoding.decode_utf8(
        encoding.render_conversation_for_completion(conversation, Role.ASSISTANT)
    )


def test_plain_multi_turn_chat(tokenizer_dir: Path, encoding: HarmonyEncoding) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    chat = [
        {"role": "user", "content": "Hej!"},
        {"role": "assistant", "content": "Hallå där."},
        {"role": "user", "content": "Hur mår du?"},
    ]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    expected = _harmony(
        encoding,
        [
            _system(),
            Message.from_role_and_content(Role.USER, "Hej!"),
            Message.from_role_and_content(Role.ASSISTANT, "Hallå där.").with_channel("final"),
            Message.from_role_and_content(Role.USER, "Hur mår du?"),
        ],
    )
    assert rendered == expected


def test_tool_call_and_result(tokenizer_dir: Path, encoding: HarmonyEncoding) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Malmö"}'},
    }
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Malmö?"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    rendered = tokenizer.apply_chat_template(
        chat, tools=[TOOL], tokenize=False, add_generation_prompt=True, reasoning_effort="high"
    )
    function = TOOL["function"]
    tool = ToolDescription.new(
        "get_weather", function["description"], parameters=function["parameters"]
    )
    developer = DeveloperContent.new().with_instructions("Be brief.").with_function_tools([tool])
    expected = _harmony(
        encoding,
        [
            _system(ReasoningEffort.HIGH),
            Message.from_role_and_content(Role.DEVELOPER, developer),
            Message.from_role_and_content(Role.USER, "Weather in Malmö?"),
            Message.from_role_and_content(Role.ASSISTANT, '{"city": "Malmö"}')
            .with_channel("commentary")
            .with_recipient("functions.get_weather")
            .with_content_type("<|constrain|>json"),
            Message.from_author_and_content(Author.new(Role.TOOL, "functions.get_weather"), "sunny")
            .with_channel("commentary")
            .with_recipient("assistant"),
        ],
    )
    assert rendered == expected
