"""Teach the tiny gpt-oss model the harmony format, on CPU, in a few minutes.

The model is ``transformers``' own ``GptOssForCausalLM`` (so the weight names and layouts
are exactly the ones vLLM's gpt-oss loader reads). The loss covers only completion tokens,
and logits are computed only there: a full-sequence projection onto the 201088-token
vocabulary would cost several times more than the rest of the step.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any

import torch
from openai_harmony import HarmonyEncoding, Role

from serving.smoke.architecture import SmokeRecipe, hf_config
from serving.smoke.dataset import Example, examples, make_example
from serving.smoke.tokenizer import harmony_encoding

logger = logging.getLogger(__name__)

PAD_ID = 199999  # <|endoftext|>
STOP_IDS = (200002, 200012)  # <|return|>, <|call|>
LOG_EVERY = 20


@dataclass(frozen=True)
class TrainReport:
    seconds: float
    final_loss: float
    well_formed: int
    checked: int


def collate(batch: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids, and the flat indices of positions whose next token is trained on."""
    length = max(len(ex.prompt) + len(ex.completion) for ex in batch)
    ids = torch.full((len(batch), length), PAD_ID, dtype=torch.long)
    positions: list[int] = []
    for row, ex in enumerate(batch):
        tokens = ex.prompt + ex.completion
        ids[row, : len(tokens)] = torch.tensor(tokens)
        start = row * length + len(ex.prompt) - 1  # the position predicting completion[0]
        positions.extend(range(start, start + len(ex.completion)))
    return ids, torch.tensor(positions)


def _lr(step: int, recipe: SmokeRecipe) -> float:
    if step < recipe.warmup_steps:
        return recipe.learning_rate * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return recipe.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(config: dict[str, Any], recipe: SmokeRecipe) -> tuple[Any, TrainReport]:
    """Train from scratch; return the model (fp32, eval mode) and a report."""
    from transformers import GptOssForCausalLM

    torch.set_num_threads(recipe.torch_threads)
    torch.manual_seed(recipe.seed)
    encoding = harmony_encoding()
    model = GptOssForCausalLM(hf_config(config)).float().train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay, fused=True
    )
    stream = examples(recipe.seed, encoding)
    started = time.monotonic()
    loss_value = float("nan")
    for step in range(recipe.steps):
        ids, positions = collate([next(stream) for _ in range(recipe.batch_size)])
        targets = ids.flatten()[positions + 1]
        hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state
        logits = model.lm_head(hidden.flatten(0, 1)[positions])
        loss = torch.nn.functional.cross_entropy(logits, targets)
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, recipe)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss_value = float(loss.detach())
        if step % LOG_EVERY == 0 or step == recipe.steps - 1:
            elapsed = time.monotonic() - started
            logger.info(
                "smoke training step %d/%d loss %.4f (%.0f s elapsed, %.2f s/step)",
                step + 1,
                recipe.steps,
                loss_value,
                elapsed,
                elapsed / (step + 1),
            )
    seconds = time.monotonic() - started
    model.eval()
    well_formed = self_check(model, encoding, recipe)
    return model, TrainReport(seconds, loss_value, well_formed, recipe.self_check_prompts)


@torch.no_grad()
def greedy(model: Any, prompt: list[int], max_new_tokens: int = 96) -> list[int]:
    out = model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=list(STOP_IDS),
        pad_token_id=PAD_ID,
    )
    return [int(t) for t in out[0, len(prompt) :]]


def is_well_formed(encoding: HarmonyEncoding, example: Example, completion: list[int]) -> bool:
    """Harmony parses it into analysis + final (or + a get_weather call with JSON args)."""
    import json

    if not completion or completion[-1] not in STOP_IDS:
        return False
    try:
        messages = encoding.parse_messages_from_completion_tokens(completion, Role.ASSISTANT)
    except Exception:  # any parse failure means "not well formed"
        return False
    channels = [m.channel for m in messages]
    if example.kind == "call":
        if (
            channels != ["analysis", "commentary"]
            or messages[1].recipient != "functions.get_weather"
        ):
            return False
        try:
            json.loads(messages[1].content[0].text)  # type: ignore[union-attr]
        except ValueError:
            return False
        return True
    return channels == ["analysis", "final"]


def self_check(model: Any, encoding: HarmonyEncoding, recipe: SmokeRecipe) -> int:
    """Greedy-decode fresh prompts with bf16 weights (as vLLM will) and count good outputs."""
    rng = random.Random(recipe.seed + 1)
    check_model = _bf16_copy(model)
    good = 0
    for index in range(recipe.self_check_prompts):
        example = make_example(rng, encoding)
        completion = greedy(check_model, example.prompt)
        ok = is_well_formed(encoding, example, completion)
        good += ok
        logger.info(
            "smoke self-check %d (%s): %s %r",
            index + 1,
            example.kind,
            "ok" if ok else "MALFORMED",
            encoding.decode_utf8(completion),
        )
    return good


def _bf16_copy(model: Any) -> Any:
    import copy

    clone = copy.deepcopy(model)
    return clone.to(torch.bfloat16).eval()


__all__ = ["TrainReport", "collate", "greedy", "is_well_formed", "train"]
