"""What the launcher knows about the vLLM process, shared with the sidecar's /ready."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

Phase = Literal["starting", "running", "restarting", "dead", "stopping"]


@dataclass
class EngineState:
    """Mutated only by the launcher's supervisor task (same event loop as the sidecar)."""

    phase: Phase = "starting"
    pid: int | None = None
    restarts: int = 0
    last_exit_code: int | None = None
    since: float = field(default_factory=time.monotonic)

    def set(self, phase: Phase, *, pid: int | None = None, exit_code: int | None = None) -> None:
        self.phase = phase
        self.since = time.monotonic()
        if pid is not None:
            self.pid = pid
        if exit_code is not None:
            self.last_exit_code = exit_code

    def describe(self) -> dict[str, object]:
        return {
            "phase": self.phase,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "seconds_in_phase": round(time.monotonic() - self.since, 1),
        }
