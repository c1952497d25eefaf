"""What the launcher knows about the vLLM process, shared with the sidecar's /ready.

With one sidecar worker the sidecar runs inside the launcher and reads `EngineState`
directly. With several (`SERVING_WORKERS`), each worker is its own process: the launcher's
`EngineState` then mirrors itself into a small JSON file on every change, and each worker
reads it through `EngineStateView` (re-read only when the file changed).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

Phase = Literal["starting", "running", "restarting", "dead", "stopping"]


class EngineStatus(Protocol):
    """What /ready needs to know about an engine."""

    @property
    def phase(self) -> str: ...

    def describe(self) -> dict[str, object]: ...


@dataclass
class EngineState:
    """Mutated only by the launcher's supervisor task (same event loop as the sidecar)."""

    phase: Phase = "starting"
    pid: int | None = None
    restarts: int = 0
    last_exit_code: int | None = None
    since: float = field(default_factory=time.monotonic)
    mirror: Path | None = None  # set when sidecar workers in other processes read it

    def set(self, phase: Phase, *, pid: int | None = None, exit_code: int | None = None) -> None:
        self.phase = phase
        self.since = time.monotonic()
        if pid is not None:
            self.pid = pid
        if exit_code is not None:
            self.last_exit_code = exit_code
        if self.mirror is not None:
            self.write_mirror(self.mirror)

    def describe(self) -> dict[str, object]:
        facts = ("phase", "pid", "restarts", "last_exit_code")
        return {**{name: getattr(self, name) for name in facts},
                "seconds_in_phase": round(time.monotonic() - self.since, 1)}

    def write_mirror(self, path: Path) -> None:
        """Atomically (write + rename): a reader never sees half a file."""
        state = {**self.describe(), "since_wall": time.time() - (time.monotonic() - self.since)}
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.{os.getpid()}")
        scratch.write_text(json.dumps(state), encoding="utf-8")
        scratch.replace(path)


class EngineStateView:
    """A sidecar worker's read-only view of the launcher's `EngineState` mirror file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature: tuple[int, int] | None = None
        self._state: dict[str, Any] = {"phase": "starting"}

    def _load(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return self._state
        signature = (st.st_mtime_ns, st.st_ino)
        if signature != self._signature:
            try:
                self._state = json.loads(self.path.read_text(encoding="utf-8"))
                self._signature = signature
            except (OSError, ValueError):
                pass  # replaced while we read it: keep the last good state, retry next time
        return self._state

    @property
    def phase(self) -> str:
        return str(self._load().get("phase", "starting"))

    def describe(self) -> dict[str, object]:
        state = dict(self._load())
        since_wall = state.pop("since_wall", None)
        if isinstance(since_wall, int | float):
            state["seconds_in_phase"] = round(time.time() - since_wall, 1)
        return state
