"""The CPU profile: vLLM's CPU build serving the smoke checkpoint (or a local checkpoint)."""

from __future__ import annotations

import sys
from pathlib import Path

from serving.catalogue import catalogue_for
from serving.config import EngineSettings
from serving.launcher.hardware import Hardware
from serving.launcher.plan import flags
from serving.launcher.plan.kv_cache import (
    BlockLayout,
    concurrency_for,
    kv_cache_bytes_per_token,
    kv_capacity,
)
from serving.launcher.plan.model_spec import DTYPE_BYTES, GiB, ModelSpec, local_spec, model_spec
from serving.launcher.plan.types import EnginePlan, MemoryRow, PlanRefused

CPU_MAX_MODEL_LEN = 8192
CPU_KVCACHE_GIB = 2
CPU_MAX_NUM_SEQS = 64
CPU_MAX_NUM_BATCHED_TOKENS = 2048


def _cpu_model(engine: EngineSettings, smoke_model_dir: Path | None) -> tuple[ModelSpec, str]:
    if engine.synthetic_weights:
        spec = model_spec(engine.model_family)
        return spec, str(spec.config_dir)
    local = Path(engine.model).expanduser()
    if local.is_dir() and (local / "config.json").is_file():
        return local_spec(local, name=local.name), str(local)
    if smoke_model_dir is None:
        raise PlanRefused(
            "the CPU profile serves the smoke checkpoint, and none was given: build it with "
            "`python -m serving.smoke`, or set SERVING_MODEL to a local checkpoint directory."
        )
    return local_spec(smoke_model_dir, name="smoke"), str(smoke_model_dir)


def cpu_plan(
    hardware: Hardware, engine: EngineSettings, smoke_model_dir: Path | None
) -> EnginePlan:
    spec, model = _cpu_model(engine, smoke_model_dir)
    # The smoke checkpoint stands in for the chosen family, under the family's names.
    catalogue = catalogue_for(engine.model_family)
    dtype = "bfloat16" if spec.quantization == "mxfp4" else spec.weight_dtype
    if dtype not in ("bfloat16", "float32"):
        dtype = "bfloat16"
    max_len = min(engine.max_model_len or CPU_MAX_MODEL_LEN, spec.max_context)
    mnbt = engine.max_num_batched_tokens or CPU_MAX_NUM_BATCHED_TOKENS
    mns = engine.max_num_seqs or CPU_MAX_NUM_SEQS
    kv_bytes = CPU_KVCACHE_GIB * GiB
    dtype_bytes = DTYPE_BYTES[dtype]
    blocks = BlockLayout(flags.CPU_BLOCK_SIZE, flags.CPU_BATCHES_IN_FLIGHT * mnbt, dtype_bytes)
    cap = kv_capacity(spec, kv_bytes, blocks, max_model_len=max_len)
    weights = (
        spec.weight_bytes() if spec.quantization == "mxfp4" else spec.param_count * dtype_bytes
    )
    rows = (
        MemoryRow("weights", weights, f"{spec.name}: {spec.num_layers} layers, {dtype}"),
        MemoryRow("KV cache", kv_bytes, f"{flags.CPU_KVCACHE_ENV}={CPU_KVCACHE_GIB}"),
    )
    env = {flags.CPU_KVCACHE_ENV: str(CPU_KVCACHE_GIB), flags.CPU_OMP_BIND_ENV: "auto"}
    if hardware.cpu_count <= 4:
        # vLLM's auto binding already keeps one core for the API server and engine core;
        # say so explicitly so a 2-core host runs the worker on 1 core and the rest on the other.
        env[flags.CPU_RESERVED_ENV] = "1"
    argv = [
        sys.executable,
        "-m",
        flags.API_SERVER_MODULE,
        *flags.model_args(engine, spec, model, smoke_model_dir),
        *flags.serve_flags(engine, catalogue.served_names),
        "--max-model-len",
        str(max_len),
        "--dtype",
        dtype,
        "--max-num-seqs",
        str(mns),
        "--max-num-batched-tokens",
        str(mnbt),
        *flags.TOOL_CALL_FLAGS,
        *flags.REASONING_FLAGS,
        *(flags.SMOKE_GENERATION_FLAGS if spec.name == "smoke" else ()),
        *engine.extra_vllm_args,
    ]
    notes = (
        f"CPU profile (vLLM's CPU build): {spec.name} checkpoint at {model}.",
        f"{hardware.cpu_count} CPU cores; KV cache {CPU_KVCACHE_GIB} GiB of host memory.",
    )
    return EnginePlan(
        profile="cpu",
        argv=tuple(argv),
        env=env,
        max_model_len=max_len,
        quantization=spec.quantization,
        catalogue=catalogue,
        model=model,
        model_family=spec.name,
        memory=rows,
        memory_budget_bytes=sum(r.bytes for r in rows),
        concurrency=concurrency_for(spec, cap, max_len, blocks, 1),
        kv_bytes_per_token=kv_cache_bytes_per_token(spec, dtype_bytes),
        max_num_seqs=mns,
        max_num_batched_tokens=mnbt,
        notes=notes,
        sidecar_workers=1,  # the CPU engine's token rate is far below one worker's
    )
