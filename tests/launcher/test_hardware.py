"""detect_hardware over fake NVML inventories (injected, no monkeypatching) and presets."""

from __future__ import annotations

import pytest

from serving.launcher.hardware import (
    GPU_PRESETS,
    GpuProcess,
    detect_hardware,
    gpu_memory_used,
    preset_hardware,
)
from tests.launcher.fake_nvml import FakeCard, FakeNvml

MiB = 1024**2


def test_reads_every_gpu_with_memory_capability_and_processes() -> None:
    nvml = FakeNvml(
        [
            FakeCard(
                "NVIDIA GeForce RTX 3090", 24576, used_mib=1024, processes=[(4242, 1024 * MiB)]
            ),
            FakeCard("NVIDIA GeForce RTX 3090", 24576),
        ]
    )
    hw = detect_hardware(nvml=nvml)
    assert [g.index for g in hw.gpus] == [0, 1]
    first = hw.gpus[0]
    assert first.name == "NVIDIA GeForce RTX 3090"  # bytes from old pynvml decoded
    assert first.total_bytes == 24576 * MiB
    assert first.free_bytes == 23552 * MiB
    assert first.compute_capability == (8, 6)
    assert first.generation == "ampere" and first.sm == "sm_86"
    assert first.processes == (GpuProcess(4242, 1024 * MiB),)
    assert hw.gpus[1].processes == ()
    assert hw.driver_version == "570.86.15"
    assert hw.cuda_version == (12, 8)
    assert hw.nvml_error is None
    assert hw.cpu_count >= 1 and hw.memory_bytes > 0
    assert nvml.shutdowns == 1


def test_init_failure_means_no_gpu_and_never_raises() -> None:
    hw = detect_hardware(nvml=FakeNvml([], fail_init=True))
    assert hw.gpus == ()
    assert hw.nvml_error is not None and "Driver Not Loaded" in hw.nvml_error


def test_query_failure_means_no_gpu_and_shuts_nvml_down() -> None:
    nvml = FakeNvml([FakeCard("NVIDIA H100 80GB HBM3", 81559, capability=(9, 0))], fail_query=True)
    hw = detect_hardware(nvml=nvml)
    assert hw.gpus == ()
    assert hw.nvml_error is not None and "Unknown Error" in hw.nvml_error
    assert nvml.shutdowns == 1


def test_gpu_memory_used_sums_every_card_and_shuts_nvml_down() -> None:
    nvml = FakeNvml([FakeCard("NVIDIA H100 80GB HBM3", 81559, used_mib=70000),
                     FakeCard("NVIDIA H100 80GB HBM3", 81559, used_mib=512)])
    assert gpu_memory_used(nvml=nvml) == 70512 * MiB
    assert nvml.shutdowns == 1


@pytest.mark.parametrize("broken", [{"fail_init": True}, {"fail_query": True}])
def test_gpu_memory_used_is_zero_when_nvml_fails(broken: dict[str, bool]) -> None:
    nvml = FakeNvml([FakeCard("NVIDIA H100 80GB HBM3", 81559, used_mib=1)], **broken)
    assert gpu_memory_used(nvml=nvml) == 0
    assert nvml.shutdowns == (0 if broken.get("fail_init") else 1)


def test_zero_devices_is_a_cpu_host() -> None:
    hw = detect_hardware(nvml=FakeNvml([]))
    assert hw.gpus == () and not hw.has_gpu


@pytest.mark.parametrize(
    ("capability", "generation"),
    [
        ((8, 0), "ampere"),
        ((8, 6), "ampere"),
        ((8, 9), "ada"),
        ((9, 0), "hopper"),
        ((10, 0), "blackwell"),
        ((12, 0), "blackwell"),
        ((7, 5), "pre-ampere"),
    ],
)
def test_generation_from_compute_capability(capability: tuple[int, int], generation: str) -> None:
    hw = detect_hardware(nvml=FakeNvml([FakeCard("card", 16384, capability=capability)]))
    assert hw.gpus[0].generation == generation


def test_presets_are_idle_cards_of_the_named_kind() -> None:
    hw = preset_hardware("h100", 2)
    assert len(hw.gpus) == 2
    assert all(g.free_bytes == g.total_bytes == 81559 * MiB for g in hw.gpus)
    assert hw.gpus[0].compute_capability == (9, 0)
    assert set(GPU_PRESETS) >= {
        "rtx3090",
        "rtx4090",
        "a100-40g",
        "a100-80g",
        "l40s",
        "h100",
        "h200",
    }
    with pytest.raises(ValueError, match="unknown GPU"):
        preset_hardware("tpu-v5")
