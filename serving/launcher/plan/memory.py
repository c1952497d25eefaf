"""The memory model of one vLLM worker (one GPU), term by term as vLLM 0.32 charges it.

``vllm/v1/worker/gpu_worker.py`` ``determine_available_memory``::

    requested = ceil(cuda_total x gpu_memory_utilization)        # utils.request_memory
    available_kv = requested - non_kv_cache_memory - cudagraph_estimate
    non_kv_cache_memory = consumed since the start-up snapshot (weights + vLLM's non-torch
                          buffers, NCCL when parallel) + the transient torch peak of profile_run

The start-up snapshot is taken after the CUDA context exists, so the context is not in the
budget (it only has to be free: ``cards.utilization``). ``profile_run`` runs one forward pass
of ``max_num_batched_tokens`` and then the sampler on ``min(max_num_seqs, tokens)`` dummy
requests with top-k/top-p (``_dummy_sampler_run``); the forward's activations are freed
before the sampler runs, so the peak is the larger of the two, not their sum. vLLM 0.21+
profiles CUDA graph memory and takes it from the KV cache (older releases captured graphs in
the slack outside the budget). Each constant cites the published figure it comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from serving.launcher.plan import mxfp4_layout
from serving.launcher.plan.model_spec import ModelSpec
from serving.launcher.plan.mxfp4_layout import MoeLayout
from serving.launcher.plan.types import GiB, MemoryRow

# llm-d-benchmark (config_explorer/empirical-vllm-memory-results.md, H100, vLLM 0.11,
# max_num_seqs 1024): peak activation 7.38 GiB for gpt-oss-20b = 1024 x 201088 x 38.5 bytes.
# The sampler dominates: fp32 logits, probabilities, the top-k/top-p sort (values + int64
# indices) and masks.
SAMPLER_BYTES_PER_ENTRY = 38.5
# The same runs: non-torch increase 0.13 GiB on one GPU; 0.55 GiB with tensor parallel 2
# (NCCL / custom all-reduce buffers; Llama-3.3-70B TP=2 in the same table).
NON_TORCH_BYTES = int(0.13 * GiB)
NON_TORCH_PARALLEL_BYTES = int(0.55 * GiB)
# The same runs: CUDA graph memory 0.39 GiB (20b) and 1.03 GiB (120b) on H100.
CUDA_GRAPH_BYTES = {"gpt-oss-20b": int(0.39 * GiB), "gpt-oss-120b": int(1.03 * GiB)}
CUDA_GRAPH_BYTES_PER_LAYER = int(0.39 * GiB / 24)
# "CUDA graph memory profiling is enabled (default since v0.21.0)" (gpu_worker.py)
CUDAGRAPH_PROFILED_SINCE = (0, 21)
VLLM_VERSION_PLANNED = "0.32.0"


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


@dataclass(frozen=True)
class WorkerShape:
    """Everything one worker's memory depends on (the parameter object of ``memory_rows``)."""

    spec: ModelSpec
    layout: MoeLayout
    cuda_total: int
    utilization: float
    max_num_seqs: int
    max_num_batched_tokens: int
    tensor_parallel: int = 1
    data_parallel: int = 1
    vllm_version: str = VLLM_VERSION_PLANNED
    cuda_graphs: bool = True

    @property
    def budget(self) -> int:
        return math.ceil(self.cuda_total * self.utilization)

    @property
    def moe_parallel(self) -> int:
        return self.tensor_parallel * self.data_parallel


def weight_rows(shape: WorkerShape) -> list[MemoryRow]:
    spec, tp = shape.spec, shape.tensor_parallel
    dense = math.ceil(spec.dense_bytes() / tp)
    experts = math.ceil(spec.expert_bytes() / shape.moe_parallel)
    laid_out = mxfp4_layout.expert_bytes_per_gpu(spec, shape.layout, shape.moe_parallel)
    split = f", experts 1/{shape.moe_parallel} per GPU" if shape.moe_parallel > 1 else ""
    note = f"{spec.quantization} experts + bf16 rest{split}"
    rows = [MemoryRow("weights", dense + experts, note)]
    if spec.quantization == "mxfp4":
        rows.append(
            MemoryRow("MXFP4 kernel layout", laid_out - experts, f"{shape.layout} padding")
        )
    return rows


def forward_activation_bytes(spec: ModelSpec, tokens: int) -> int:
    q = spec.num_attention_heads * spec.head_dim
    per_token = 2 * (
        8 * spec.hidden_size + 2 * q + spec.experts_per_token * 3 * spec.intermediate_size
    )
    return tokens * per_token


def sampler_bytes(spec: ModelSpec, max_num_seqs: int, max_num_batched_tokens: int) -> int:
    requests = min(max_num_seqs, max_num_batched_tokens)
    return math.ceil(requests * spec.vocab_size * SAMPLER_BYTES_PER_ENTRY)


def activation_row(shape: WorkerShape) -> MemoryRow:
    forward = forward_activation_bytes(shape.spec, shape.max_num_batched_tokens)
    sampler = sampler_bytes(shape.spec, shape.max_num_seqs, shape.max_num_batched_tokens)
    if sampler >= forward:
        note = f"sampler, --max-num-seqs {shape.max_num_seqs}"
        return MemoryRow("activation peak", sampler, note)
    note = f"forward, --max-num-batched-tokens {shape.max_num_batched_tokens}"
    return MemoryRow("activation peak", forward, note)


def cuda_graph_row(shape: WorkerShape) -> MemoryRow:
    charged = shape.cuda_graphs and version_tuple(shape.vllm_version) >= CUDAGRAPH_PROFILED_SINCE
    if not charged:
        return MemoryRow("CUDA graphs", 0, "captured outside the budget (vLLM < 0.21 or eager)")
    graphs = CUDA_GRAPH_BYTES.get(
        shape.spec.name, CUDA_GRAPH_BYTES_PER_LAYER * shape.spec.num_layers
    )
    return MemoryRow("CUDA graphs", graphs, "profiled and charged since vLLM 0.21")


def memory_rows(shape: WorkerShape) -> tuple[MemoryRow, ...]:
    """The budget split into vLLM's terms; the last row is the KV cache vLLM will report
    ("Available KV cache memory"), negative when vLLM would refuse to start."""
    parallel = shape.moe_parallel > 1
    rows = [
        *weight_rows(shape),
        MemoryRow(
            "non-torch",
            NON_TORCH_PARALLEL_BYTES if parallel else NON_TORCH_BYTES,
            "vLLM's buffers" + (", NCCL" if parallel else ""),
        ),
        activation_row(shape),
        cuda_graph_row(shape),
    ]
    kv = shape.budget - sum(r.bytes for r in rows)
    rows.append(MemoryRow("KV cache", kv, "the rest of the budget"))
    return tuple(rows)


def kv_bytes(rows: tuple[MemoryRow, ...]) -> int:
    return next(r.bytes for r in rows if r.item == "KV cache")
