"""Model specs as data, and what a model costs in memory.

Every architecture number comes from a ``config.json``: the published gpt-oss-20b and
gpt-oss-120b configs shipped in ``serving/model_configs/`` (see the README there for their
source), or the smoke checkpoint's own config. The KV-cache arithmetic mirrors vLLM 0.32's
hybrid KV cache manager (``vllm/v1/core/kv_cache_utils.py``): full-attention and
sliding-window layers form separate groups that draw blocks from one shared pool; a request
of length L holds ``cdiv(L, block)`` blocks in the full group and at most
``cdiv(min(window - 1 + in_flight_tokens, L), block) + 1`` blocks in the sliding group
(``SlidingWindowSpec.max_admission_blocks_per_request``).
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

from serving.config import SERVED_MODEL_NAMES

GiB = 1024**3
MODEL_CONFIGS_DIR = Path(__file__).resolve().parent.parent / "model_configs"

# MXFP4: 4-bit values plus one 8-bit (E8M0) scale per 32 values = 17/32 byte per weight.
MXFP4_BYTES_PER_PARAM = 17 / 32
# Kernel layouts (Marlin repacking, triton_kernels swizzle/padding of the 2880-wide expert
# matrices) take somewhat more than the checkpoint; an allowance on the expert bytes.
MXFP4_LAYOUT_ALLOWANCE = 0.05

DTYPE_BYTES = MappingProxyType({"bfloat16": 2, "float16": 2, "float32": 4, "fp8": 1})

# What a config.json does not say: where the weights come from and the names clients use.
_FAMILY = MappingProxyType(
    {
        "gpt-oss-20b": MappingProxyType(
            {
                "hf_id": "openai/gpt-oss-20b",
                "served_names": SERVED_MODEL_NAMES,
                "checkpoint": "~13.8 GB of safetensors (MXFP4 experts, bf16 rest)",
            }
        ),
        "gpt-oss-120b": MappingProxyType(
            {
                "hf_id": "openai/gpt-oss-120b",
                "served_names": ("gpt-oss-120b", "gpt-oss:120b", "openai/gpt-oss-120b"),
                "checkpoint": "~65 GB of safetensors (MXFP4 experts, bf16 rest)",
            }
        ),
    }
)

ModelFamily = Literal["gpt-oss-20b", "gpt-oss-120b"]


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
    hf_id: str | None = None
    served_names: tuple[str, ...] = SERVED_MODEL_NAMES

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
        dense = self.dense_params * DTYPE_BYTES[self.weight_dtype]
        if self.quantization == "mxfp4":
            return dense + math.ceil(self.expert_params * MXFP4_BYTES_PER_PARAM)
        return dense + self.expert_params * DTYPE_BYTES[self.weight_dtype]

    def layout_allowance_bytes(self) -> int:
        if self.quantization != "mxfp4":
            return 0
        return math.ceil(self.expert_params * MXFP4_BYTES_PER_PARAM * MXFP4_LAYOUT_ALLOWANCE)


def kv_cache_bytes_per_token(spec: ModelSpec, dtype_bytes: int, *, tensor_parallel: int = 1) -> int:
    """KV bytes one more token of context costs on one GPU: the full-attention layers only.

    ``full_layers x 2 (K and V) x kv_heads x head_dim x dtype_bytes``; gpt-oss-20b in bf16:
    12 x 2 x 8 x 64 x 2 = 24576 bytes (24 KiB) per token, 3 GiB for 131072 tokens.
    Sliding-window layers cost a bounded amount per sequence (see ``kv_blocks_per_request``).
    """
    kv_heads = max(1, spec.num_kv_heads // tensor_parallel)
    return spec.full_attention_layers * 2 * kv_heads * spec.head_dim * dtype_bytes


def _layer_token_bytes(spec: ModelSpec, dtype_bytes: int, tensor_parallel: int) -> int:
    return 2 * max(1, spec.num_kv_heads // tensor_parallel) * spec.head_dim * dtype_bytes


def kv_block_bytes(
    spec: ModelSpec, dtype_bytes: int, block_size: int, tensor_parallel: int = 1
) -> int:
    """Bytes of one block of vLLM's shared pool: one page for every layer of the largest group."""
    group_layers = max(spec.full_attention_layers, spec.sliding_attention_layers)
    return group_layers * block_size * _layer_token_bytes(spec, dtype_bytes, tensor_parallel)


def kv_blocks_per_request(
    spec: ModelSpec, tokens: int, *, block_size: int, in_flight_tokens: int
) -> int:
    """Pool blocks one request of ``tokens`` tokens reserves (vLLM's admission bound)."""
    full = math.ceil(tokens / block_size) if spec.full_attention_layers else 0
    sliding = 0
    if spec.sliding_attention_layers:
        held = min(spec.sliding_window - 1 + in_flight_tokens, tokens)
        sliding = math.ceil(held / block_size) + 1  # +1: the window may straddle a block
    return full + sliding


def kv_blocks_decoding(spec: ModelSpec, tokens: int, *, block_size: int) -> int:
    """Blocks a request holds while decoding (out-of-window sliding blocks already freed)."""
    full = math.ceil(tokens / block_size) if spec.full_attention_layers else 0
    sliding = 0
    if spec.sliding_attention_layers:
        sliding = math.ceil(min(spec.sliding_window, tokens) / block_size) + 1
    return full + sliding


@dataclass(frozen=True)
class KvCapacity:
    """What vLLM will report at start-up for a pool of ``kv_bytes``."""

    num_blocks: int
    max_concurrency: float  # "Maximum concurrency for <max_model_len> tokens per request"
    kv_cache_tokens: int  # "KV cache size: <n> tokens" (= int(max_concurrency * max_model_len))


def kv_capacity(
    spec: ModelSpec,
    kv_bytes: int,
    *,
    max_model_len: int,
    dtype_bytes: int,
    block_size: int,
    in_flight_tokens: int,
    tensor_parallel: int = 1,
) -> KvCapacity:
    """Mirror of vLLM 0.32 ``get_kv_cache_config_from_groups`` + ``get_kv_cache_capacity``."""
    per_block = kv_block_bytes(spec, dtype_bytes, block_size, tensor_parallel)
    num_blocks = max(0, kv_bytes) // per_block
    per_request = kv_blocks_per_request(
        spec, max_model_len, block_size=block_size, in_flight_tokens=in_flight_tokens
    )
    concurrency = num_blocks / per_request
    return KvCapacity(num_blocks, concurrency, int(concurrency * max_model_len))


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
    family = _FAMILY.get(name)
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
        hf_id=str(family["hf_id"]) if family else None,
        served_names=tuple(family["served_names"]) if family else SERVED_MODEL_NAMES,
    )


def read_config(model_dir: Path) -> dict[str, Any]:
    with (model_dir / "config.json").open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


@functools.cache
def model_spec(family: ModelFamily) -> ModelSpec:
    """The spec of a published model, from the config shipped in serving/model_configs/."""
    if family not in _FAMILY:
        raise KeyError(f"unknown model {family!r}; known: {', '.join(_FAMILY)}")
    config_dir = MODEL_CONFIGS_DIR / family
    return spec_from_config(read_config(config_dir), name=family, config_dir=config_dir)


def local_spec(model_dir: Path, *, name: str = "smoke") -> ModelSpec:
    """The spec of a local checkpoint dir (the smoke checkpoint)."""
    return spec_from_config(read_config(model_dir), name=name, config_dir=model_dir)


def checkpoint_note(family: str) -> str:
    entry = _FAMILY.get(family)
    return str(entry["checkpoint"]) if entry else ""


def model_families() -> tuple[str, ...]:
    return tuple(_FAMILY)
