"""Multi-GPU layouts chosen by the objective, refusals that name what fits, worker counts."""

from __future__ import annotations

import json

import pytest

from serving.cli import main as serving_main
from serving.config import EngineSettings
from serving.launcher.hardware import preset_hardware
from serving.launcher.plan import PlanRefused, build_plan
from serving.launcher.plan.throughput import (
    MAX_SIDECAR_WORKERS,
    SIDECAR_WORKER_TOKENS_PER_S,
    sidecar_workers,
)


def plan_for(preset: str, count: int = 1, **overrides: object):  # type: ignore[no-untyped-def]
    return build_plan(
        preset_hardware(preset, count), EngineSettings.model_validate(overrides),
        smoke_model_dir=None,
    )


def test_120b_on_two_h100s_is_tensor_parallel_with_the_alternative_in_numbers() -> None:
    plan = plan_for("h100", 2, model_family="gpt-oss-120b")
    assert (plan.tensor_parallel_size, plan.data_parallel_size) == (2, 1)
    tp, dp = (next(o for o in plan.topology if o.tensor_parallel == t) for t in (2, 1))
    assert tp.chosen and not dp.chosen and dp.data_parallel == 2
    assert tp.full_length_sequences > dp.full_length_sequences >= 1
    assert any("Alternatives: tp 1 x dp 2" in n for n in plan.notes)


def test_120b_on_one_a100_80gb_is_refused_with_what_fits() -> None:
    # Marlin pads the experts +9%: 65.9 GiB of weights leave less than one 131072 sequence
    with pytest.raises(PlanRefused) as refused:
        plan_for("a100-80g", model_family="gpt-oss-120b")
    error = refused.value
    assert error.largest_context is not None and 32768 <= error.largest_context < 131072
    assert error.cards_for_full_context == 2
    assert "--gpus 2" in error.message and f"SERVING_MAX_MODEL_LEN={error.largest_context}" in error.message
    shorter = plan_for("a100-80g", model_family="gpt-oss-120b", max_model_len=error.largest_context)
    assert shorter.concurrency.at_max_model_len >= 1
    assert plan_for("a100-80g", 2, model_family="gpt-oss-120b").tensor_parallel_size == 2


def test_sidecar_workers_follow_the_expected_output_rate() -> None:
    assert sidecar_workers(0) == 1
    assert sidecar_workers(SIDECAR_WORKER_TOKENS_PER_S + 1) == 2
    assert sidecar_workers(1e9) == MAX_SIDECAR_WORKERS
    small, big = plan_for("rtx3090"), plan_for("h200")
    assert small.sidecar_workers == 1 < big.sidecar_workers
    assert big.sidecar_workers == sidecar_workers(big.expected_output_tokens_per_s)


def test_plan_json_carries_the_predictions_gpu_check_compares(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert serving_main(["plan", "--gpu", "h100", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    rows = {r["item"]: r["bytes"] for r in body["memory"]["rows"]}
    gib = 1024**3
    assert body["predicted"]["kv_cache_gib"] == round(rows["KV cache"] / gib, 2)
    assert body["predicted"]["weights_gib"] == round(
        (rows["weights"] + rows["MXFP4 kernel layout"]) / gib, 2
    )
    assert body["sidecar_workers"] >= 1 and body["topology"][0]["chosen"]
    assert serving_main(["plan", "--gpu", "a100-80g", "--model", "gpt-oss-120b", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["cards_for_full_context"] == 2
