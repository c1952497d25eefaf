"""The seed cookbook's OpenAI Agents SDK snippet (LiteLLM model, one function tool) against
the real stack, in both dialects. Only the URL, the key and the model name differ from the
cookbook; the smoke checkpoint is a toy, so the run is checked for structure (the tool was
called with a city, a final answer came back), never for words.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
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


@pytest.fixture(scope="module")
def greedy(stack: Any) -> Any:
    """The toy checkpoint drifts when sampled, so the model name is a preset that decodes
    greedily (Modelfile `PARAMETER temperature 0`): only the name changes in the snippet."""
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    body = {"model": "gpt-oss-greedy", "from": "gpt-oss:20b", "parameters": {"temperature": 0},
            "stream": False}
    assert httpx.post(f"{stack.sidecar_url}/api/create", json=body, headers=headers,
                      timeout=30).status_code == 200
    yield "gpt-oss-greedy"
    httpx.request("DELETE", f"{stack.sidecar_url}/api/delete", headers=headers, timeout=30,
                  json={"model": "gpt-oss-greedy"})


@pytest.mark.parametrize("dialect", [
    pytest.param("ollama", marks=pytest.mark.xfail(
        reason="open: through /api/chat the smoke checkpoint answers without calling the "
        "tool (greedy, 2026-11-30); the same agent calls it through /v1", strict=False)),
    "openai",
])
def test_cookbook_agent_calls_the_tool_and_answers(stack: Any, greedy: str, dialect: str) -> None:
    if dialect == "ollama":
        # LiteLLM's `ollama/` provider talks to /api/generate and puts the tools into the
        # prompt as text (JSON mode); `ollama_chat/` uses /api/chat with real tools.
        output, calls = run_cookbook(f"ollama_chat/{greedy}", stack.sidecar_url,
                                     stack.chat_key)
    else:
        output, calls = run_cookbook(f"openai/{greedy}", f"{stack.sidecar_url}/v1",
                                     stack.chat_key)
    assert calls and all(isinstance(city, str) and city for city in calls), calls
    assert output.strip()
