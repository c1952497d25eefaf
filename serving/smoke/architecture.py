"""What the smoke checkpoint is: gpt-oss-20b's config.json at toy scale, plus the recipe.

The config starts from the published gpt-oss-20b ``config.json`` (shipped in
``serving/model_configs/``) and only shrinks the sizes: same ``model_type``, same alternating
sliding-window / full attention, attention sinks, MoE with a router, YaRN rope scaling to
131072 positions, the full 201088-token vocabulary and head_dim 64 (vLLM's CPU attention
rejects small head sizes). The MXFP4 ``quantization_config`` is dropped: the smoke weights
are plain bf16, which vLLM's CPU build loads directly.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REAL_CONFIG = (
    Path(__file__).resolve().parent.parent / "model_configs" / "gpt-oss-20b" / "config.json"
)


@dataclass(frozen=True)
class SmokeRecipe:
    """Everything that decides the checkpoint's bytes. Its hash names the cache entry."""

    num_hidden_layers: int = 2
    hidden_size: int = 64
    intermediate_size: int = 64
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 64
    num_local_experts: int = 4
    experts_per_token: int = 2
    sliding_window: int = 128
    max_position_embeddings: int = 131072
    # Training (fp32 on CPU; weights saved as bf16 like the released checkpoints).
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 1234
    steps: int = 280
    batch_size: int = 8
    save_dtype: str = "bfloat16"
    warmup_steps: int = 20
    torch_threads: int = 2
    self_check_prompts: int = 8

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_real_config() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REAL_CONFIG.read_text())
    return data


def smoke_config(recipe: SmokeRecipe, real: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.json of the smoke checkpoint: the real one with toy sizes, unquantized."""
    config = copy.deepcopy(real if real is not None else load_real_config())
    config.pop("quantization_config", None)
    config.update(
        {
            "num_hidden_layers": recipe.num_hidden_layers,
            "hidden_size": recipe.hidden_size,
            "intermediate_size": recipe.intermediate_size,
            "num_attention_heads": recipe.num_attention_heads,
            "num_key_value_heads": recipe.num_key_value_heads,
            "head_dim": recipe.head_dim,
            "num_local_experts": recipe.num_local_experts,
            "num_experts_per_tok": recipe.experts_per_token,
            "experts_per_token": recipe.experts_per_token,
            "sliding_window": recipe.sliding_window,
            "max_position_embeddings": recipe.max_position_embeddings,
            "layer_types": [
                "sliding_attention" if index % 2 == 0 else "full_attention"
                for index in range(recipe.num_hidden_layers)
            ],
            "torch_dtype": recipe.save_dtype,
        }
    )
    return config


def hf_config(config: dict[str, Any]) -> Any:
    """A transformers ``GptOssConfig`` for training (eager attention: it has the sinks)."""
    from transformers import GptOssConfig

    hf = GptOssConfig.from_dict(config)
    hf._attn_implementation = "eager"
    return hf
