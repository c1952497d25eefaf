"""Global backpressure: this sidecar's in-flight count and vLLM's waiting queue."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

from serving.config import SidecarSettings
from serving.sidecar.limits import Overloaded
from serving.upstream import EngineMetricsCache

log = logging.getLogger(__name__)
_WAITING = re.compile(rb"^vllm:num_requests_waiting(?:\{[^}]*\})? ([0-9.eE+-]+)$", re.M)


@dataclass
class LoadState:
    in_flight: int = 0
    engine_waiting: float = 0.0

    def check(self, settings: SidecarSettings) -> None:
        """Refuse new work before it queues without end."""
        if self.in_flight > settings.max_in_flight:
            raise Overloaded(
                f"Server busy: {self.in_flight} requests in flight (limit "
                f"{settings.max_in_flight}). Retry shortly.", headers={"Retry-After": "2"})
        if self.engine_waiting > settings.max_engine_waiting:
            raise Overloaded(
                f"Server busy: {self.engine_waiting:.0f} requests queued in the engine (limit "
                f"{settings.max_engine_waiting}). Retry shortly.", headers={"Retry-After": "2"})


def parse_waiting(metrics_text: bytes) -> float:
    return sum(float(v) for v in _WAITING.findall(metrics_text))


async def poll_engine_queue(
    engine_metrics: EngineMetricsCache, load: LoadState, interval_s: float
) -> None:
    """Background task: keep `load.engine_waiting` fresh; unknown (engine down) reads as 0,
    because then requests fail fast with 503 from the proxy anyway."""
    while True:
        load.engine_waiting = parse_waiting(await engine_metrics.text())
        await asyncio.sleep(interval_s)
