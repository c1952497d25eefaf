"""`serving doctor` on fake inventories: what it reports and the advice it gives."""

from __future__ import annotations

from serving.config import EngineSettings
from serving.launcher.doctor import run_doctor
from serving.launcher.hardware import detect_hardware
from tests.launcher.fake_nvml import FakeCard, FakeNvml

MiB = 1024**2


def test_no_gpu_is_ok_on_the_cpu_profile() -> None:
    report, ok = run_doctor(detect_hardware(nvml=FakeNvml([], fail_init=True)), EngineSettings())
    assert ok
    assert "none found" in report and "Driver Not Loaded" in report
    assert "CPU profile" in report


def test_no_gpu_with_engine_cuda_is_not_ok() -> None:
    report, ok = run_doctor(detect_hardware(nvml=FakeNvml([])), EngineSettings(engine="cuda"))
    assert not ok and "NOT OK" in report and "nvidia-smi" in report


def test_rtx3090_fits() -> None:
    hw = detect_hardware(nvml=FakeNvml([FakeCard("NVIDIA GeForce RTX 3090", 24576)]))
    report, ok = run_doctor(hw, EngineSettings())
    assert ok, report
    assert "GPU 0: NVIDIA GeForce RTX 3090, sm_86 (ampere)" in report
    assert "OK: gpt-oss-20b fits with a 131,072-token context" in report


def test_old_driver_is_named() -> None:
    hw = detect_hardware(
        nvml=FakeNvml([FakeCard("NVIDIA GeForce RTX 3090", 24576)], driver="535.54", cuda=12020)
    )
    report, ok = run_doctor(hw, EngineSettings())
    assert not ok
    assert "Driver 535.54 supports CUDA 12.2" in report and "Upgrade the NVIDIA driver" in report


def test_small_card_is_refused_with_advice() -> None:
    hw = detect_hardware(nvml=FakeNvml([FakeCard("NVIDIA RTX A4000", 16376)]))
    report, ok = run_doctor(hw, EngineSettings())
    assert not ok
    assert "NOT OK" in report and "SERVING_EMBEDDING_MODEL=off" in report
    report, ok = run_doctor(hw, EngineSettings(embedding_model="off"))
    assert not ok and "Largest context that fits" in report


def test_processes_holding_memory_are_listed() -> None:
    card = FakeCard(
        "NVIDIA GeForce RTX 4090",
        24564,
        used_mib=6144,
        capability=(8, 9),
        processes=[(777, 6144 * MiB)],
    )
    report, _ = run_doctor(detect_hardware(nvml=FakeNvml([card])), EngineSettings())
    assert "process 777 holds 6.00 GiB" in report
    assert "pid 777" in report and "stop those processes" in report
