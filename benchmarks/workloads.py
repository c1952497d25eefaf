"""Workload profiles (data in ``workloads.toml``), seeded prompts and request bodies.

Request bodies are built by pure functions, one per API, so the tests can check them
without a server.
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKLOADS_FILE = Path(__file__).with_name("workloads.toml")

# Common English words that are single tokens (with their leading space) in o200k.
FILLER_WORDS: tuple[str, ...] = tuple(
    """time year people way day man thing woman life child world school state family
    student group country problem hand part place case week company system program
    question work government number night point home water room mother area money story
    fact month lot right study book eye job word business issue side kind head house
    service friend father power hour game line end member law car city community name
    president team minute idea kid body information back parent face others level office
    door health person art war history party result change morning reason research girl
    guy moment air teacher force education river garden music winter summer bridge market
    train river table window letter paper picture island forest mountain ocean village
    doctor engine planet energy light sound color field road wall bread coffee""".split()
)
TOPICS: tuple[str, ...] = (
    "the history of bridges",
    "how rivers shape cities",
    "winter gardens",
    "train travel",
    "the economics of coffee",
    "village markets",
    "the physics of sound",
    "island ecology",
    "mountain weather",
    "letters and paper",
    "school music programs",
    "city planning",
)


@dataclass(frozen=True)
class Workload:
    """One profile of ``workloads.toml``."""

    name: str
    description: str
    prompt_words: tuple[int, int]
    max_tokens: int
    reasoning_effort: str
    temperature: float
    task: str


def load_workloads(path: Path = WORKLOADS_FILE) -> dict[str, Workload]:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    workloads: dict[str, Workload] = {}
    for name, table in data.items():
        low, high = table["prompt_words"]
        if not 0 < low <= high:
            raise ValueError(f"{path}: [{name}] prompt_words must be 0 < min <= max")
        workloads[name] = Workload(
            name=name,
            description=table.get("description", ""),
            prompt_words=(int(low), int(high)),
            max_tokens=int(table["max_tokens"]),
            reasoning_effort=str(table.get("reasoning_effort", "low")),
            temperature=float(table.get("temperature", 0.7)),
            task=str(table["task"]),
        )
    return workloads


class PromptSource:
    """Seeded, never-repeating prompts for one workload.

    Prompts come out in the same sequence for the same seed; every prompt opens with a
    different run of words, so prefix caching cannot serve one request from another.
    """

    def __init__(self, workload: Workload, seed: int) -> None:
        self.workload = workload
        self._rng = random.Random(f"{workload.name}:{seed}")
        self.issued = 0

    def next_prompt(self) -> str:
        rng = self._rng
        self.issued += 1
        count = rng.randint(*self.workload.prompt_words)
        words: list[str] = []
        while len(words) < count:
            sentence = rng.choices(FILLER_WORDS, k=min(rng.randint(8, 16), count - len(words)))
            sentence[0] = sentence[0].capitalize()
            sentence[-1] += "."
            words.extend(sentence)
        topic = rng.choice(TOPICS)
        return f"Notes on {topic}:\n{' '.join(words)}\n\n{self.workload.task}"


def openai_chat_body(
    workload: Workload, prompt: str, model: str, *, stream: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": workload.max_tokens,
        "temperature": workload.temperature,
        "reasoning_effort": workload.reasoning_effort,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def ollama_chat_body(workload: Workload, prompt: str, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "think": workload.reasoning_effort,
        "options": {"num_predict": workload.max_tokens, "temperature": workload.temperature},
    }


def ollama_generate_body(workload: Workload, prompt: str, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "prompt": prompt,
        "stream": True,
        "think": workload.reasoning_effort,
        "options": {"num_predict": workload.max_tokens, "temperature": workload.temperature},
    }
