"""The seed cookbook's OpenAI Agents SDK snippet (LiteLLM model, one function tool) against
the real stack, in both dialects. Only the URL, the key and the model name differ from the
cookbook; the smoke checkpoint is a toy, so the run is checked for structure (the tool was
called with a city, a final answer came back), never for words.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

# LiteLLM fetches its model price list from the internet at import unless told otherwise.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.extensions.models.litellm_model import LitellmModel

pytestmark = [
    pytest.mark.e2e,
    # LiteLLM's GitHub Copilot provider, built at its first call, trips a pydantic warning.
    pytest.mark.filterwarnings("ignore:.* the `ReadOnly` qualifier:UserWarning"),
]


def run_cookbook(model: str, base_url: str, api_key: str) -> tuple[str, list[str]]:
    """The cookbook's code, with `base_url` and the key passed to LitellmModel."""
    calls: list[str] = []
    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str):  # type: ignore[no-untyped-def]
        calls.append(city)  # the cookbook prints here
        return f"The weather in {city} is sunny."

    async def main() -> str:
        agent = Agent(
            name="Assistant",
            instructions="You only respond in haikus.",
            model=LitellmModel(model=model, base_url=base_url, api_key=api_key),
            tools=[get_weather],
        )
        result = await Runner.run(agent, "What's the weather in Tokyo?")
        return str(result.final_output)

    return asyncio.run(main()), calls


@pytest.mark.parametrize("dialect", ["ollama", "openai"])
def test_cookbook_agent_calls_the_tool_and_answers(stack: Any, dialect: str) -> None:
    if dialect == "ollama":
        output, calls = run_cookbook("ollama_chat/gpt-oss:20b", stack.sidecar_url,
                                     stack.chat_key)
    else:
        output, calls = run_cookbook("openai/gpt-oss-20b", f"{stack.sidecar_url}/v1",
                                     stack.chat_key)
    assert calls and all(isinstance(city, str) and city for city in calls), calls
    assert output.strip()
