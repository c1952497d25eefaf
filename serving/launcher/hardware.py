"""What this machine has: GPUs through NVML (nvidia-ml-py's ``pynvml``), CPUs, memory.

``detect_hardware()`` never raises: no ``pynvml``, no driver, no GPU or any NVML error gives a
``Hardware`` without GPUs (and the error text in ``nvml_error`` for ``serving doctor``).
``gpu_memory_used()`` reads the memory in use now (Ollama's /api/ps), 0 on the same failures.
Both block while NVML answers: async code calls them through ``asyncio.to_thread``.
Tests pass a fake NVML module object as ``nvml=``; ``preset_hardware`` builds the inventories
of common cards for ``serving plan --gpu``.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

logger = logging.getLogger(__name__)

MiB = 1024**2
GiB = 1024**3


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None  # None where NVML cannot tell (e.g. inside containers)


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int]
    processes: tuple[GpuProcess, ...] = ()

    @property
    def generation(self) -> str:
        major, minor = self.compute_capability
        if major >= 10:
            return "blackwell"
        if major == 9:
            return "hopper"
        if (major, minor) == (8, 9):
            return "ada"
        if major == 8:
            return "ampere"
        return "pre-ampere"

    @property
    def sm(self) -> str:
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"


@dataclass(frozen=True)
class Hardware:
    gpus: tuple[Gpu, ...] = ()
    driver_version: str | None = None
    cuda_version: tuple[int, int] | None = None  # highest CUDA the driver supports
    cpu_count: int = 1
    memory_bytes: int = 0
    nvml_error: str | None = None

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)


@dataclass(frozen=True)
class GpuPreset:
    name: str
    total_mib: int  # what NVML reports as total for that card
    compute_capability: tuple[int, int]


# Totals as nvidia-smi / NVML report them (MiB), compute capability from NVIDIA's CUDA GPU list.
GPU_PRESETS: MappingProxyType[str, GpuPreset] = MappingProxyType(
    {
        "rtx3090": GpuPreset("NVIDIA GeForce RTX 3090", 24576, (8, 6)),
        "rtx4090": GpuPreset("NVIDIA GeForce RTX 4090", 24564, (8, 9)),
        "rtx4080": GpuPreset("NVIDIA GeForce RTX 4080", 16376, (8, 9)),
        "a100-40g": GpuPreset("NVIDIA A100-SXM4-40GB", 40960, (8, 0)),
        "a100-80g": GpuPreset("NVIDIA A100-SXM4-80GB", 81920, (8, 0)),
        "l40s": GpuPreset("NVIDIA L40S", 46068, (8, 9)),
        "h100": GpuPreset("NVIDIA H100 80GB HBM3", 81559, (9, 0)),
        "h200": GpuPreset("NVIDIA H200", 143771, (9, 0)),
    }
)


def host_cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def host_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def preset_hardware(preset: str, count: int = 1) -> Hardware:
    """A fake inventory of ``count`` idle cards of a known kind (for ``serving plan --gpu``)."""
    try:
        card = GPU_PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown GPU {preset!r}; known: {', '.join(GPU_PRESETS)}") from None
    total = card.total_mib * MiB
    gpus = tuple(Gpu(i, card.name, total, total, card.compute_capability) for i in range(count))
    return Hardware(
        gpus=gpus,
        driver_version="(preset)",
        cuda_version=None,
        cpu_count=host_cpu_count(),
        memory_bytes=host_memory_bytes(),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _processes(nvml: Any, handle: Any) -> tuple[GpuProcess, ...]:
    found: list[GpuProcess] = []
    for query in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        try:
            entries = getattr(nvml, query)(handle)
        except Exception:
            continue
        for entry in entries or ():
            used = getattr(entry, "usedGpuMemory", None)
            found.append(GpuProcess(int(entry.pid), int(used) if isinstance(used, int) else None))
    unique = {p.pid: p for p in found}
    return tuple(unique[pid] for pid in sorted(unique))


def _read_gpu(nvml: Any, index: int) -> Gpu:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    return Gpu(
        index=index,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        total_bytes=int(memory.total),
        free_bytes=int(memory.free),
        compute_capability=(int(major), int(minor)),
        processes=_processes(nvml, handle),
    )


def _cuda_version(nvml: Any) -> tuple[int, int] | None:
    try:
        raw = int(nvml.nvmlSystemGetCudaDriverVersion())
    except Exception:
        return None
    return raw // 1000, (raw % 1000) // 10


def _import_nvml() -> Any:
    return importlib.import_module("pynvml")


def detect_hardware(nvml: Any | None = None) -> Hardware:
    """Inventory GPUs through NVML; any failure means "no GPU" (never raises)."""
    base = Hardware(cpu_count=host_cpu_count(), memory_bytes=host_memory_bytes())
    try:
        module = nvml if nvml is not None else _import_nvml()
    except ImportError as exc:
        return replace(base, nvml_error=f"nvidia-ml-py not installed ({exc})")
    try:
        module.nvmlInit()
    except Exception as exc:
        logger.info("NVML unavailable: %s", exc)
        return replace(base, nvml_error=f"NVML init failed: {exc}")
    try:
        count = int(module.nvmlDeviceGetCount())
        gpus = tuple(_read_gpu(module, i) for i in range(count))
        driver = _text(module.nvmlSystemGetDriverVersion())
        return replace(base, gpus=gpus, driver_version=driver, cuda_version=_cuda_version(module))
    except Exception as exc:
        logger.warning("NVML query failed, treating the host as GPU-less: %s", exc)
        return replace(base, nvml_error=f"NVML query failed: {exc}")
    finally:
        _shutdown(module)


def gpu_memory_used(nvml: Any | None = None) -> int:
    """Bytes in use on all visible NVIDIA GPUs (vLLM preallocates its share); 0 without a
    GPU or on any NVML error (never raises)."""
    try:
        module = nvml if nvml is not None else _import_nvml()
        module.nvmlInit()
    except Exception:  # no nvidia-ml-py, no driver: a CPU deployment
        return 0
    try:
        handles = (module.nvmlDeviceGetHandleByIndex(i)
                   for i in range(int(module.nvmlDeviceGetCount())))
        return sum(int(module.nvmlDeviceGetMemoryInfo(h).used) for h in handles)
    except Exception as exc:
        logger.debug("NVML memory query failed: %s", exc)
        return 0
    finally:
        _shutdown(module)


def _shutdown(module: Any) -> None:
    try:
        module.nvmlShutdown()
    except Exception:
        logger.debug("nvmlShutdown failed", exc_info=True)
