"""A stand-in for the `pynvml` module: the calls detect_hardware makes, over a fixed inventory."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

MiB = 1024**2


class NVMLError(Exception):
    pass


@dataclass
class FakeCard:
    name: str
    total_mib: int
    used_mib: int = 0
    capability: tuple[int, int] = (8, 6)
    processes: list[tuple[int, int | None]] = field(default_factory=list)


@dataclass
class FakeNvml:
    cards: list[FakeCard]
    driver: str = "570.86.15"
    cuda: int = 12080
    fail_init: bool = False
    fail_query: bool = False
    shutdowns: int = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        if self.fail_query:
            raise NVMLError("Unknown Error")
        return len(self.cards)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeCard:
        return self.cards[index]

    def nvmlDeviceGetName(self, card: FakeCard) -> bytes:
        return card.name.encode()  # older nvidia-ml-py returned bytes

    def nvmlDeviceGetMemoryInfo(self, card: FakeCard) -> SimpleNamespace:
        total = card.total_mib * MiB
        used = card.used_mib * MiB
        return SimpleNamespace(total=total, free=total - used, used=used)

    def nvmlDeviceGetCudaComputeCapability(self, card: FakeCard) -> tuple[int, int]:
        return card.capability

    def nvmlDeviceGetComputeRunningProcesses(self, card: FakeCard) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in card.processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, card: FakeCard) -> list[SimpleNamespace]:
        raise NVMLError("Not Supported")

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda
