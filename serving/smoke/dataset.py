"""Training conversations for the smoke checkpoint, rendered token-exact by openai_harmony.

Each example is ``(prompt_ids, completion_ids)``. The prompt is what vLLM renders for a chat
request (system message with reasoning effort and date, optional developer message with
instructions and/or the ``get_weather`` function, the conversation so far, then
``<|start|>assistant``); the completion is what the model must emit after it:

- an ``analysis`` message, then a ``final`` message ending in ``<|return|>``, or
- when ``get_weather`` is offered and the user asks about the weather: an ``analysis``
  message, then ``commentary to=functions.get_weather <|constrain|>json`` with JSON
  arguments, ending in ``<|call|>``.

The texts are deliberately few and fixed (the model is tiny). Every plain answer carries
å, ä and ö (Swedish prompts get a Swedish answer, English ones an English answer that ends
with a Swedish greeting), so UTF-8 round trips can be tested end to end whatever the prompt.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

from openai_harmony import (
    Author,
    Conversation,
    DeveloperContent,
    HarmonyEncoding,
    Message,
    ReasoningEffort,
    RenderConversationConfig,
    Role,
    SystemContent,
    ToolDescription,
)

DATA_VERSION = 2  # bump when the generator below changes what it produces

CITIES = (
    "Stockholm",
    "Göteborg",
    "Malmö",
    "Uppsala",
    "Kiruna",
    "Västerås",
    "Oslo",
    "Helsinki",
    "Tokyo",
    "Paris",
    "London",
    "Berlin",
    "New York",
    "Madrid",
    "Rome",
    "Sydney",
    "Toronto",
)
WEATHER_EN = (
    "What is the weather in {city}?",
    "What's the weather like in {city} today?",
    "Is it raining in {city}?",
    "How cold is it in {city} right now?",
    "Weather in {city}?",
    "Can you check the weather in {city} for me?",
    "Will it be sunny in {city}?",
)
WEATHER_SV = (
    "Vad är vädret i {city}?",
    "Hur är vädret i {city} idag?",
    "Regnar det i {city}?",
    "Hur kallt är det i {city} just nu?",
    "Blir det sol i {city} i morgon?",
)
QUESTIONS_EN = (
    "Hello!",
    "Who are you?",
    "What is 2 + 2?",
    "Tell me a joke.",
    "Write a haiku about the sea.",
    "Explain what a GPU is.",
    "What is the capital of France?",
    "Say something nice.",
    "How do I make pancakes?",
    "Summarize the plot of Hamlet.",
    "Why is the sky blue?",
    "Give me three tips for sleeping better.",
    "What does HTTP stand for?",
    "Count to five.",
    "Translate 'good morning' to German.",
    "What is Python?",
    "Recommend a book.",
    "Hi, how are you today?",
    "What time zone is Tokyo in?",
    "Write one sentence about cats.",
    "What is machine learning?",
    "Is water wet?",
    "Name a prime number.",
    "Thanks!",
)
QUESTIONS_SV = (
    "Hej!",
    "Vem är du?",
    "Vad är 2 + 2?",
    "Berätta ett skämt.",
    "Skriv en dikt om sjön.",
    "Vad är huvudstaden i Sverige?",
    "Säg något snällt.",
    "Hur gör man pannkakor?",
    "Varför är himlen blå?",
    "Ge mig tre tips för bättre sömn.",
    "Vad betyder åäö?",
    "Rekommendera en bok.",
    "Hur mår du idag?",
    "Tack så mycket!",
    "Vad är maskininlärning?",
)
INSTRUCTIONS = (
    None,
    None,
    "You are a helpful assistant.",
    "Answer in one sentence.",
    "You only respond in haikus.",
    "Du är en hjälpsam assistent.",
    "Be concise.",
)
TOOL_DESCRIPTIONS = (
    "Get the current weather for a location.",
    "Get current weather in a given city",
    "Returns the weather forecast.",
    "",
)
TOOL_RESULTS = (
    '{"temperature": 18, "condition": "sunny"}',
    "The weather in {city} is sunny.",
    '{"temp_c": -3, "sky": "snow"}',
    "Regn och 12 grader i {city}.",
)
ANALYSIS = {
    ReasoningEffort.LOW: "The user asks a question. Answer briefly.",
    ReasoningEffort.MEDIUM: "The user asks a question. I should answer briefly and clearly.",
    ReasoningEffort.HIGH: "The user asks a question. Let me think step by step. "
    "I should answer briefly and clearly.",
}
FINAL = {
    "en": "This is a short answer from a small test model. Hälsningar från Malmö!",
    "sv": "Det här är ett kort svar från en liten testmodell. Hälsningar från Göteborg!",
}
WEATHER_CALL_ANALYSIS = "The user asks about the weather. I should call get_weather."
NO_TOOL_ANALYSIS = "The user asks about the weather, but no tool is available."
NO_TOOL_FINAL = {
    "en": "I cannot check the weather, but I hope it is nice.",
    "sv": "Jag kan inte se vädret, men jag hoppas att det är fint ute.",
}
TOOL_RESULT_ANALYSIS = "The tool returned the weather. I should report it."
TOOL_RESULT_FINAL = {
    "en": "Here is the weather from the tool. Have a nice day!",
    "sv": "Här är vädret från verktyget. Ha en fin dag!",
}
EFFORTS = (ReasoningEffort.LOW, ReasoningEffort.MEDIUM, ReasoningEffort.HIGH)
# vLLM's chat path renders an assistant tool call from the history with content type "json".
HISTORY_CALL_CONTENT_TYPE = "json"
CALL_CONTENT_TYPE = "<|constrain|>json"


@dataclass(frozen=True)
class Example:
    prompt: list[int]
    completion: list[int]
    kind: str  # "answer" | "call" | "no_tool" | "tool_result"


def weather_tool(param: str, description: str) -> ToolDescription:
    schema = {
        "type": "object",
        "properties": {param: {"type": "string", "description": "City name"}},
        "required": [param],
    }
    if description.startswith("Get current"):  # the seed's schema: no property description
        schema["properties"] = {param: {"type": "string"}}
    return ToolDescription.new("get_weather", description, parameters=schema)


def _assistant(text: str, channel: str) -> Message:
    return Message.from_role_and_content(Role.ASSISTANT, text).with_channel(channel)


def _call(param: str, city: str, content_type: str) -> Message:
    arguments = json.dumps({param: city}, ensure_ascii=False)
    return (
        _assistant(arguments, "commentary")
        .with_recipient("functions.get_weather")
        .with_content_type(content_type)
    )


def _date(rng: random.Random) -> str:
    return f"{rng.randint(2024, 2027)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _preamble(
    rng: random.Random, effort: ReasoningEffort, tools: ToolDescription | None
) -> list[Message]:
    system = (
        SystemContent.new().with_reasoning_effort(effort).with_conversation_start_date(_date(rng))
    )
    messages = [Message.from_role_and_content(Role.SYSTEM, system)]
    instructions = rng.choice(INSTRUCTIONS)
    if instructions is not None or tools is not None:
        developer = DeveloperContent.new()
        if instructions is not None:
            developer = developer.with_instructions(instructions)
        if tools is not None:
            developer = developer.with_function_tools([tools])
        messages.append(Message.from_role_and_content(Role.DEVELOPER, developer))
    return messages


def _history(rng: random.Random) -> list[Message]:
    """An earlier exchange (analysis dropped, as vLLM does for finished turns), sometimes."""
    if rng.random() > 0.25:
        return []
    lang = "sv" if rng.random() < 0.3 else "en"
    question = rng.choice(QUESTIONS_SV if lang == "sv" else QUESTIONS_EN)
    return [Message.from_role_and_content(Role.USER, question), _assistant(FINAL[lang], "final")]


def make_example(rng: random.Random, encoding: HarmonyEncoding) -> Example:
    effort = rng.choice(EFFORTS)
    lang = "sv" if rng.random() < 0.3 else "en"
    city = rng.choice(CITIES)
    param = rng.choice(("location", "city"))
    kind = rng.choices(("answer", "call", "no_tool", "tool_result"), weights=(50, 30, 10, 10))[0]
    offers_tool = kind in ("call", "tool_result") or (kind == "answer" and rng.random() < 0.3)
    tool = weather_tool(param, rng.choice(TOOL_DESCRIPTIONS)) if offers_tool else None
    if kind == "answer":
        user = rng.choice(QUESTIONS_SV if lang == "sv" else QUESTIONS_EN)
    else:
        user = rng.choice(WEATHER_SV if lang == "sv" else WEATHER_EN).format(city=city)
    context = _preamble(rng, effort, tool) + _history(rng)
    context.append(Message.from_role_and_content(Role.USER, user))
    if kind == "tool_result":
        result = rng.choice(TOOL_RESULTS).replace("{city}", city)
        context.append(_call(param, city, HISTORY_CALL_CONTENT_TYPE))
        context.append(
            Message.from_author_and_content(Author.new(Role.TOOL, "functions.get_weather"), result)
            .with_channel("commentary")
            .with_recipient("assistant")
        )
    reply = _reply(kind, lang, effort, param, city)
    return _render(encoding, context, reply, kind)


def _reply(kind: str, lang: str, effort: ReasoningEffort, param: str, city: str) -> list[Message]:
    if kind == "call":
        return [
            _assistant(WEATHER_CALL_ANALYSIS, "analysis"),
            _call(param, city, CALL_CONTENT_TYPE),
        ]
    if kind == "no_tool":
        return [_assistant(NO_TOOL_ANALYSIS, "analysis"), _assistant(NO_TOOL_FINAL[lang], "final")]
    if kind == "tool_result":
        return [
            _assistant(TOOL_RESULT_ANALYSIS, "analysis"),
            _assistant(TOOL_RESULT_FINAL[lang], "final"),
        ]
    return [_assistant(ANALYSIS[effort], "analysis"), _assistant(FINAL[lang], "final")]


def _render(
    encoding: HarmonyEncoding, context: list[Message], reply: list[Message], kind: str
) -> Example:
    prompt = encoding.render_conversation_for_completion(
        Conversation.from_messages(context), Role.ASSISTANT
    )
    full = encoding.render_conversation_for_training(
        Conversation.from_messages(context + reply),
        RenderConversationConfig(auto_drop_analysis=False),
    )
    if full[: len(prompt)] != prompt:
        raise RuntimeError("harmony rendered the training text with a different prompt prefix")
    return Example(prompt=prompt, completion=full[len(prompt) :], kind=kind)


def examples(seed: int, encoding: HarmonyEncoding) -> Iterator[Example]:
    """An endless, seeded stream of examples."""
    rng = random.Random(seed)
    while True:
        yield make_example(rng, encoding)


def sample_rendered_ids(encoding: HarmonyEncoding, count: int = 6) -> list[list[int]]:
    """A few full conversations (prompt + completion ids) for tokenizer checks."""
    stream = examples(7, encoding)
    return [example.prompt + example.completion for example in (next(stream) for _ in range(count))]
