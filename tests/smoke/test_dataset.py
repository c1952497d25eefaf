"""Training examples are exact harmony: what vLLM renders, then what the model must say."""

from __future__ import annotations

import json
import random

from openai_harmony import HarmonyEncoding, Role

from serving.smoke.dataset import examples, make_example
from serving.smoke.train import collate

START_ASSISTANT = [200006, 173781]  # "<|start|>" "assistant"


def test_examples_are_deterministic(encoding: HarmonyEncoding) -> None:
    first = [next(examples(3, encoding)) for _ in range(1)]
    again = [next(examples(3, encoding)) for _ in range(1)]
    assert first == again


def test_completions_parse_as_analysis_then_final_or_call(encoding: HarmonyEncoding) -> None:
    rng = random.Random(0)
    kinds = set()
    for _ in range(60):
        example = make_example(rng, encoding)
        kinds.add(example.kind)
        assert example.prompt[-2:] == START_ASSISTANT
        messages = encoding.parse_messages_from_completion_tokens(
            example.completion, Role.ASSISTANT
        )
        assert messages[0].channel == "analysis"
        if example.kind == "call":
            assert example.completion[-1] == 200012  # <|call|>
            assert messages[1].channel == "commentary"
            assert messages[1].recipient == "functions.get_weather"
            assert messages[1].content_type == "<|constrain|>json"
            assert json.loads(messages[1].content[0].text)
        else:
            assert example.completion[-1] == 200002  # <|return|>
            assert messages[1].channel == "final"
    assert kinds == {"answer", "call", "no_tool", "tool_result"}


def test_collate_trains_only_on_completion_positions(encoding: HarmonyEncoding) -> None:
    stream = examples(5, encoding)
    batch = [next(stream) for _ in range(3)]
    ids, positions = collate(batch)
    targets = ids.flatten()[positions + 1].tolist()
    assert targets == [token for example in batch for token in example.completion]
