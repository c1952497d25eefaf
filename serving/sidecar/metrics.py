"""Prometheus metrics of the sidecar itself, in a registry owned by the app (no globals).

With several workers (`SERVING_WORKERS`), prometheus_client's multiprocess mode is on
(the launcher sets `PROMETHEUS_MULTIPROC_DIR` for each worker): every worker writes its
values to files in that directory and `sidecar_metrics_text` sums them, so one scrape shows
all workers' counts.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)


class SidecarMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sidecar_requests_total",
            "Requests handled by the sidecar.",
            ["route", "method", "status", "user"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sidecar_request_duration_seconds",
            "Time from request start to the last byte of the response (streams included).",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "sidecar_tokens_total",
            "Tokens reported by vLLM's usage, by route, user and kind (prompt|completion).",
            ["route", "user", "kind"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "sidecar_requests_in_flight", "Requests being served now.", registry=self.registry,
            multiprocess_mode="livesum",  # summed over the live workers
        )


def sidecar_metrics_text(own: CollectorRegistry | None, multiprocess_dir: Path | None) -> bytes:
    """This sidecar's metrics: its own registry, or every worker's files when there are several."""
    if multiprocess_dir is None:
        return generate_latest(own) if own is not None else b""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiprocess_dir))
    return generate_latest(registry)


def prometheus_dir(shared_state_dir: Path | None) -> Path | None:
    return shared_state_dir / "prometheus" if shared_state_dir is not None else None
