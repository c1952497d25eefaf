"""The smoke config is gpt-oss's real architecture at toy scale."""

from __future__ import annotations

import torch
from transformers import GptOssForCausalLM

from serving.smoke.architecture import SmokeRecipe, hf_config, load_real_config, smoke_config


def test_config_keeps_the_gpt_oss_architecture() -> None:
    config = smoke_config(SmokeRecipe())
    assert config["architectures"] == ["GptOssForCausalLM"]
    assert config["model_type"] == "gpt_oss"
    assert config["vocab_size"] == 201088
    assert config["head_dim"] == 64
    assert config["sliding_window"] == 128
    assert config["layer_types"] == ["sliding_attention", "full_attention"]
    assert config["num_local_experts"] == 4 and config["num_experts_per_tok"] == 2
    assert config["rope_scaling"]["rope_type"] == "yarn"
    assert config["max_position_embeddings"] >= 8192
    assert "quantization_config" not in config  # plain bf16: vLLM's CPU build loads it
    assert config["eos_token_id"] == 200002 and config["pad_token_id"] == 199999


def test_layer_types_alternate_for_deeper_recipes() -> None:
    config = smoke_config(SmokeRecipe(num_hidden_layers=4))
    assert config["layer_types"] == ["sliding_attention", "full_attention"] * 2


def test_only_sizes_differ_from_the_released_config() -> None:
    real = load_real_config()
    smoke = smoke_config(SmokeRecipe())
    same = {"attention_bias", "hidden_act", "rope_theta", "swiglu_limit", "tie_word_embeddings"}
    assert {key: smoke[key] for key in same} == {key: real[key] for key in same}


def test_weights_have_sinks_router_and_fused_experts() -> None:
    with torch.device("meta"):
        model = GptOssForCausalLM(hf_config(smoke_config(SmokeRecipe())))
    names = set(model.state_dict())
    for layer in (0, 1):
        prefix = f"model.layers.{layer}"
        assert f"{prefix}.self_attn.sinks" in names
        assert f"{prefix}.mlp.router.weight" in names
        assert f"{prefix}.mlp.experts.gate_up_proj" in names
        assert f"{prefix}.mlp.experts.down_proj_bias" in names
    assert model.lm_head.weight.shape == (201088, 64)
    total = sum(p.numel() for p in model.parameters())
    assert 20_000_000 < total < 30_000_000
