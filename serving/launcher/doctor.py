"""`python -m serving doctor`: what was found, whether the plan fits, and what to do if not."""

from __future__ import annotations

from serving.config import EngineSettings
from serving.launcher.hardware import Gpu, Hardware
from serving.launcher.plan import PlanRefused, build_plan, flags
from serving.launcher.plan.types import GiB


def _gib(value: int) -> str:
    return f"{value / GiB:.2f} GiB"


def _gpu_lines(gpu: Gpu) -> list[str]:
    lines = [
        f"  GPU {gpu.index}: {gpu.name}, {gpu.sm} ({gpu.generation}), "
        f"{_gib(gpu.total_bytes)} total, {_gib(gpu.free_bytes)} free"
    ]
    for proc in gpu.processes:
        used = _gib(proc.used_bytes) if proc.used_bytes is not None else "unknown"
        lines.append(f"    process {proc.pid} holds {used}")
    return lines


def _driver_advice(hardware: Hardware) -> str | None:
    if hardware.cuda_version is None or hardware.cuda_version >= flags.MIN_DRIVER_CUDA:
        return None
    have = ".".join(map(str, hardware.cuda_version))
    need = ".".join(map(str, flags.MIN_DRIVER_CUDA))
    return (
        f"Driver {hardware.driver_version} supports CUDA {have}; vLLM "
        f"{flags.VLLM_VERSION_CHECKED}'s CUDA wheels need a driver for CUDA {need} or newer. "
        "Upgrade the NVIDIA driver (e.g. the R570+ branch), then run doctor again."
    )


def _busy_advice(gpu: Gpu) -> str | None:
    others = [p for p in gpu.processes if p.used_bytes]
    held = gpu.total_bytes - gpu.free_bytes
    if held < 1 * GiB:
        return None
    who = ", ".join(f"pid {p.pid} ({_gib(p.used_bytes or 0)})" for p in others) or "unnamed"
    return (
        f"GPU {gpu.index}: {_gib(held)} is already in use ({who}). The plan lowers "
        "--gpu-memory-utilization to what is free; stop those processes (or move them to "
        "another card, CUDA_VISIBLE_DEVICES) to get the full KV cache back."
    )


def run_doctor(hardware: Hardware, engine: EngineSettings) -> tuple[str, bool]:
    """The report text and whether `serving up` would start with these settings."""
    lines = [
        f"Host: {hardware.cpu_count} CPU cores, {_gib(hardware.memory_bytes)} memory",
    ]
    if not hardware.gpus:
        lines.append(f"GPU: none found ({hardware.nvml_error or 'NVML reports 0 devices'})")
        if engine.engine == "cuda":
            lines.append(
                "NOT OK: SERVING_ENGINE=cuda but there is no usable NVIDIA GPU. Check "
                "`nvidia-smi`, the driver, and (in containers) the NVIDIA container runtime; "
                "or use SERVING_ENGINE=auto for the CPU profile."
            )
            return "\n".join(lines), False
        lines.append(
            "OK: `serving up` uses the CPU profile (vLLM's CPU build with the smoke "
            "checkpoint): the real engine and API at toy scale, for development and tests. "
            "For gpt-oss-20b itself, run on a host with an NVIDIA GPU of 16 GB or more "
            "(24 GB for the full 131072-token context)."
        )
        return "\n".join(lines), True
    cuda = ".".join(map(str, hardware.cuda_version)) if hardware.cuda_version else "unknown"
    lines.append(f"NVIDIA driver {hardware.driver_version}, CUDA {cuda}")
    for gpu in hardware.gpus:
        lines.extend(_gpu_lines(gpu))
    advice = [a for a in (_driver_advice(hardware),) if a]
    advice += [a for a in (_busy_advice(g) for g in hardware.gpus) if a]
    ok = _driver_advice(hardware) is None
    try:
        plan = build_plan(hardware, engine, smoke_model_dir=None)
    except PlanRefused as refused:
        lines.append(f"NOT OK: {refused.message}")
        ok = False
    else:
        c = plan.concurrency
        lines.append(
            f"{'OK' if ok else 'NOT OK'}: {plan.model_family} fits with a {plan.max_model_len:,}"
            f"-token context, {c.at_max_model_len:.2f} full-length sequences at once per engine, "
            f"tensor parallel {plan.tensor_parallel_size}, data parallel "
            f"{plan.data_parallel_size} (details: python -m serving plan)."
        )
    lines.extend(f"advice: {a}" for a in advice)
    return "\n".join(lines), ok
