"""The memory model replayed with the flags of published vLLM runs (tests/launcher/data/).

Weights and available KV cache must come within 5% of what vLLM logged (or 0.15 GiB where
vLLM logged under 3 GiB: 5% of 1.71 GiB is 86 MiB, finer than vLLM's own non-torch term
varies), and the plan must refuse exactly where vLLM refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from serving.launcher.plan import memory
from serving.launcher.plan.kv_cache import BlockLayout, request_bytes
from serving.launcher.plan.model_spec import model_spec
from serving.launcher.plan.types import GiB

RUNS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "published_runs.json").read_text()
)["runs"]
SMALL_GIB = 3.0
SMALL_TOLERANCE_GIB = 0.15


def replay(run: dict[str, Any]) -> tuple[memory.WorkerShape, tuple[Any, ...]]:
    flags = run["flags"]
    shape = memory.WorkerShape(
        spec=model_spec(run["model"]),
        layout=run["moe_layout"],
        cuda_total=int(run["cuda_total_gib"] * GiB),
        utilization=flags["gpu_memory_utilization"],
        max_num_seqs=flags["max_num_seqs"],
        max_num_batched_tokens=flags["max_num_batched_tokens"],
        tensor_parallel=flags["tensor_parallel_size"],
        vllm_version=run["vllm_version"],
    )
    return shape, memory.memory_rows(shape)


def close(predicted_gib: float, reported_gib: float) -> bool:
    if abs(reported_gib) < SMALL_GIB:
        return abs(predicted_gib - reported_gib) <= SMALL_TOLERANCE_GIB
    return abs(predicted_gib - reported_gib) <= 0.05 * abs(reported_gib)


@pytest.mark.parametrize("run", RUNS, ids=[r["id"] for r in RUNS])
def test_every_run_names_its_source_and_flags(run: dict[str, Any]) -> None:
    assert run["source"].startswith("https://github.com/")
    assert {"gpu_memory_utilization", "max_model_len", "max_num_seqs"} <= set(run["flags"])
    assert run["reported_weights_gib"] is not None or run["reported_kv_cache_gib"] is not None


@pytest.mark.parametrize(
    "run", [r for r in RUNS if r["reported_weights_gib"] is not None],
    ids=[r["id"] for r in RUNS if r["reported_weights_gib"] is not None],
)
def test_weights_match_what_vllm_loaded(run: dict[str, Any]) -> None:
    _, rows = replay(run)
    weights = sum(r.bytes for r in rows if r.item in ("weights", "MXFP4 kernel layout")) / GiB
    assert close(weights, run["reported_weights_gib"]), (weights, run["reported_weights_gib"])


@pytest.mark.parametrize(
    "run", [r for r in RUNS if r["reported_kv_cache_gib"] is not None],
    ids=[r["id"] for r in RUNS if r["reported_kv_cache_gib"] is not None],
)
def test_kv_cache_and_refusal_match_vllm(run: dict[str, Any]) -> None:
    shape, rows = replay(run)
    kv = memory.kv_bytes(rows)
    assert close(kv / GiB, run["reported_kv_cache_gib"]), (kv / GiB, run["reported_kv_cache_gib"])
    flags = run["flags"]
    blocks = BlockLayout(16, 2 * flags["max_num_batched_tokens"], 2, flags["tensor_parallel_size"])
    needed = request_bytes(shape.spec, flags["max_model_len"], blocks)
    if "reported_kv_needed_gib" in run:
        assert needed / GiB == pytest.approx(run["reported_kv_needed_gib"], rel=0.02)
    assert (kv < needed) == run["vllm_refused"]


def test_the_sampler_peak_is_the_published_h100_profile() -> None:
    # llm-d-benchmark: 7.38 GiB peak activation with vLLM's default 1024 sequences
    spec = model_spec("gpt-oss-20b")
    assert memory.sampler_bytes(spec, 1024, 8192) / GiB == pytest.approx(7.38, abs=0.01)
    # the forward pass at 8192 tokens is smaller, and the peak is the larger, not the sum
    shape = memory.WorkerShape(spec, "triton", int(79.18 * GiB), 0.9, 1024, 8192)
    assert memory.activation_row(shape).bytes == memory.sampler_bytes(spec, 1024, 8192)
    assert memory.forward_activation_bytes(spec, 8192) < memory.sampler_bytes(spec, 1024, 8192)


def test_cuda_graphs_are_charged_from_vllm_0_21() -> None:
    spec = model_spec("gpt-oss-20b")
    old = memory.WorkerShape(spec, "triton", 80 * GiB, 0.9, 256, 8192, vllm_version="0.11.0")
    new = memory.WorkerShape(spec, "triton", 80 * GiB, 0.9, 256, 8192)
    assert memory.cuda_graph_row(old).bytes == 0
    assert memory.cuda_graph_row(new).bytes == int(0.39 * GiB)
    assert memory.kv_bytes(memory.memory_rows(old)) - memory.kv_bytes(
        memory.memory_rows(new)
    ) == int(0.39 * GiB)
