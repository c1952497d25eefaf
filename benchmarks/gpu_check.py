"""`make gpu-check`: what a first lent GPU should tell us, in one prepared run of < 8 minutes.

For a GPU host with the project's venv (`make install`, ENGINE=cuda) and no internet:

1. the hardware and the plan (`serving doctor`, `serving plan --json`);
2. the real stack with `--synthetic-weights` (vLLM `--load-format dummy` with the real
   gpt-oss-20b config and MXFP4 quantization: real kernels, memory and speed, no download);
3. the plan's predicted weights and KV-cache GiB next to what vLLM logged (a calibration
   point for docs/plan-calibration.md);
4. a short Locust sweep through the sidecar (tokens/s, TTFT, ITL, E2E);
5. the sidecar's overhead against the real engine (direct vs sidecar, interleaved).

Everything lands in `benchmarks/results/<stamp>-gpu-check/` with a `summary.json`::

    python -m benchmarks.gpu_check --budget-s 470
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from serving.launcher.plan.vllm_log import parse_vllm_memory_log

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(argv: list[str], out: Path, timeout_s: float, env: dict[str, str] | None = None) -> int:
    with out.open("w") as sink:
        try:
            return subprocess.run(argv, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
                                  timeout=timeout_s, env=env, check=False).returncode
        except subprocess.TimeoutExpired:
            sink.write(f"\n[gpu-check] timed out after {timeout_s:.0f}s\n")
            return 124


def _wait_ready(url: str, process: subprocess.Popen[bytes], deadline: float) -> bool:
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/ready", timeout=3).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(2)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-s", type=float, default=470.0)
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    started = time.monotonic()
    deadline = started + args.budget_s
    out = args.results_dir / (time.strftime("%Y%m%d-%H%M%S") + "-gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    summary: dict[str, object] = {}
    _run(["nvidia-smi"], out / "nvidia-smi.txt", 30)
    _run([py, "-m", "serving", "doctor"], out / "doctor.txt", 60)
    _run([py, "-m", "serving", "plan", "--json"], out / "plan.json", 60)

    state = out / "state"
    port, vllm_port, metrics_port = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "SERVING_STATE_DIR": str(state), "SERVING_PORT": str(port),
           "SERVING_VLLM_PORT": str(vllm_port), "SERVING_METRICS_PORT": str(metrics_port),
           "SERVING_SYNTHETIC_WEIGHTS": "true"}
    url = f"http://127.0.0.1:{port}"
    with (out / "launcher.log").open("wb") as sink:
        stack = subprocess.Popen([py, "-m", "serving", "up"], cwd=REPO, env=env, stdout=sink,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready = _wait_ready(url, stack, started + min(args.budget_s * 0.6, 300))
        summary["ready_after_s"] = round(time.monotonic() - started, 1) if ready else None
        vllm_log = state / "logs" / "vllm.log"
        logged = parse_vllm_memory_log(vllm_log.read_text(errors="replace")) \
            if vllm_log.exists() else {}
        plan = json.loads((out / "plan.json").read_text() or "{}")
        summary["memory"] = {"vllm_logged": logged, "plan_predicted": plan.get("predicted")}
        if ready:
            key = (state / "admin.key").read_text().strip()
            left = deadline - time.monotonic()
            sweep_s = max(min(left * 0.45, 150), 30)
            summary["sweep_exit"] = _run(
                [py, "-m", "benchmarks", "run", "--base-url", url, "--api-key", key,
                 "--concurrency", "1,16,64", "--step-seconds", str(int(sweep_s / 4)),
                 "--drain-seconds", "15", "--metrics-url",
                 f"http://127.0.0.1:{vllm_port}/metrics", "--results-dir", str(out)],
                out / "sweep.log", sweep_s + 60)
            left = deadline - time.monotonic()
            summary["overhead_exit"] = _run(
                [py, "-m", "benchmarks", "overhead", "--direct-url",
                 f"http://127.0.0.1:{vllm_port}", "--proxy-url", url, "--api-key", key,
                 "--rounds", "2", "--step-seconds", str(max(int(left / 12), 5)),
                 "--throughput-users", "64", "--results-dir", str(out)],
                out / "overhead.log", max(left - 10, 30))
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGTERM)
            try:
                stack.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(stack.pid, signal.SIGKILL)
    summary["total_s"] = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"results: {out}")
    return 0 if summary.get("ready_after_s") else 1


if __name__ == "__main__":
    raise SystemExit(main())
