"""Model specs as data: every architecture number of a gpt-oss checkpoint.

Every architecture number comes from a ``config.json``: the published gpt-oss-20b and
gpt-oss-120b configs shipped in ``serving/model_configs/`` (see the README there for their
source), or the smoke checkpoint's own config. What the KV cache costs is in ``kv_cache``;
the names, the Hugging Face id and the nominal sizes of each family are in
``serving.catalogue``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from serving.catalogue import FAMILIES, ModelFamily

GiB = 1024**3
MODEL_CONFIGS_DIR = Path(__file__).resolve().parents[2] / "model_configs"

# MXFP4: 4-bit values plus one 8-bit (E8M0) scale per 32 values = 17/32 byte per weight.
# How the MoE kernels lay these out on the GPU (padding) is in ``mxfp4_layout``.
MXFP4_BYTES_PER_PARAM = 17 / 32

DTYPE_BYTES = MappingProxyType({"bfloat16": 2, "float16": 2, "float32": 4, "fp8": 1})

@dataclass(frozen=True)
class ModelSpec:
    """The numbers of one gpt-oss checkpoint that decide memory; all from its config.json."""

    name: str
    num_layers: int
    full_attention_layers: int
    sliding_attention_layers: int
    sliding_window: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    num_experts: int
    experts_per_token: int
    vocab_size: int
    max_context: int
    quantization: Literal["mxfp4", "bf16"]
    weight_dtype: str
    config_dir: Path | None = None

    @property
    def expert_params(self) -> int:
        # gate_up (hidden x 2*inter) and down (inter x hidden) per expert per layer
        per_layer = self.num_experts * 3 * self.hidden_size * self.intermediate_size
        return per_layer * self.num_layers

    @property
    def dense_params(self) -> int:
        """Everything kept in the model dtype: attention, router, norms, biases, embeddings."""
        q = self.num_attention_heads * self.head_dim
        kv = self.num_kv_heads * self.head_dim
        attention = self.hidden_size * (q + 2 * kv) + q * self.hidden_size  # qkv + o
        attention += q + 2 * kv + self.hidden_size + self.num_attention_heads  # biases, sinks
        router = self.hidden_size * self.num_experts + self.num_experts
        expert_bias = self.num_experts * (2 * self.intermediate_size + self.hidden_size)
        norms = 2 * self.hidden_size
        per_layer = attention + router + expert_bias + norms
        embeddings = 2 * self.vocab_size * self.hidden_size  # embed_tokens + lm_head (untied)
        return per_layer * self.num_layers + embeddings + self.hidden_size

    @property
    def param_count(self) -> int:
        return self.dense_params + self.expert_params

    def weight_bytes(self) -> int:
        """Bytes of weights as loaded (the checkpoint's size, give or take headers)."""
        return self.dense_bytes() + self.expert_bytes()

    def dense_bytes(self) -> int:
        return self.dense_params * DTYPE_BYTES[self.weight_dtype]

    def expert_bytes(self) -> int:
        """The experts as stored in the checkpoint (MXFP4 or the model dtype)."""
        if self.quantization == "mxfp4":
            return math.ceil(self.expert_params * MXFP4_BYTES_PER_PARAM)
        return self.expert_params * DTYPE_BYTES[self.weight_dtype]


def _quant_method(config: Mapping[str, Any]) -> str | None:
    quant = config.get("quantization_config")
    return str(quant.get("quant_method")) if isinstance(quant, Mapping) else None


def spec_from_config(
    config: Mapping[str, Any], *, name: str, config_dir: Path | None = None
) -> ModelSpec:
    """Build a ModelSpec from a gpt-oss ``config.json`` mapping.

    Sliding layers are the even-indexed ones, as vLLM 0.32's ``gpt_oss.py`` decides
    (``sliding_window if layer_idx % 2 == 0``); the published ``layer_types`` agree.
    """
    layers = int(config["num_hidden_layers"])
    heads = int(config["num_attention_heads"])
    window = config.get("sliding_window")
    sliding = (layers + 1) // 2 if window else 0
    quant: Literal["mxfp4", "bf16"] = "mxfp4" if _quant_method(config) == "mxfp4" else "bf16"
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    return ModelSpec(
        name=name,
        num_layers=layers,
        full_attention_layers=layers - sliding,
        sliding_attention_layers=sliding,
        sliding_window=int(window or 0),
        num_attention_heads=heads,
        num_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or int(config["hidden_size"]) // heads),
        hidden_size=int(config["hidden_size"]),
        intermediate_size=int(config["intermediate_size"]),
        num_experts=int(config["num_local_experts"]),
        experts_per_token=int(
            config.get("num_experts_per_tok") or config.get("experts_per_token") or 4
        ),
        vocab_size=int(config["vocab_size"]),
        max_context=int(config.get("max_position_embeddings", 131072)),
        quantization=quant,
        weight_dtype=dtype if dtype in DTYPE_BYTES else "bfloat16",
        config_dir=config_dir,
    )


def read_config(model_dir: Path) -> dict[str, Any]:
    with (model_dir / "config.json").open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


@functools.cache
def model_spec(family: ModelFamily) -> ModelSpec:
    """The spec of a published model, from the config shipped in serving/model_configs/."""
    if family not in FAMILIES:
        raise KeyError(f"unknown model {family!r}; known: {', '.join(FAMILIES)}")
    config_dir = MODEL_CONFIGS_DIR / family
    return spec_from_config(read_config(config_dir), name=family, config_dir=config_dir)


def local_spec(model_dir: Path, *, name: str = "smoke") -> ModelSpec:
    """The spec of a local checkpoint dir (the smoke checkpoint)."""
    return spec_from_config(read_config(model_dir), name=name, config_dir=model_dir)
