"""Writing and reading a run's files: ``raw.jsonl``, ``summary.json``, ``summary.csv``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from benchmarks.metrics import RequestRecord

CSV_COLUMNS: tuple[str, ...] = (
    "step",
    "concurrency",
    "rate",
    "requests",
    "completed",
    "failed",
    "error_rate",
    "duration_s",
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "goodput",
    "mean_output_tokens",
)
CSV_DISTRIBUTIONS: tuple[str, ...] = ("e2el_ms", "ttft_ms", "tpot_ms", "itl_ms")


def clean_nan(value: Any) -> Any:
    """NaN is not JSON: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: clean_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_nan(v) for v in value]
    return value


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    (out / "summary.json").write_text(
        json.dumps(clean_nan(summary), indent=2) + "\n", encoding="utf-8"
    )
    with (out / "summary.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        dist_columns = [
            f"{name}_{stat}"
            for name in CSV_DISTRIBUTIONS
            for stat in ("mean", "p50", "p90", "p95", "p99")
        ]
        writer.writerow([*CSV_COLUMNS, *dist_columns])
        for step in summary["steps"]:
            row = [step.get(column) for column in CSV_COLUMNS]
            row += [
                step[name][stat]
                for name in CSV_DISTRIBUTIONS
                for stat in ("mean", "p50", "p90", "p95", "p99")
            ]
            writer.writerow(
                ["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in row]
            )


def read_summary(out: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return summary


def read_records(path: Path) -> list[RequestRecord]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return [RequestRecord.from_json(json.loads(line)) for line in handle if line.strip()]
