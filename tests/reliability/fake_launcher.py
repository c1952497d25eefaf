"""`serving.launcher.up.serve` with the fake vLLM as its engine, for the shutdown tests.

The real launcher code (signal handling, readiness, uvicorn's graceful shutdown, the
supervisor stopping the engine's process group) runs unchanged; only the plan's argv
starts tests/fake_vllm.py (the paced server) instead of vLLM::

    python -m tests.reliability.fake_launcher --state-dir D --port P --engine-port E --grace 5
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from types import SimpleNamespace

from serving.config import EngineSettings, PathSettings, SidecarSettings
from serving.launcher.up import LaunchSettings, serve
from serving.logging_setup import configure_logging


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--engine-port", type=int, required=True)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--chunk-delay-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--metrics-port", type=int, default=0)
    args = parser.parse_args()
    paths = PathSettings(state_dir=args.state_dir, cache_dir=args.state_dir / "cache")
    configure_logging(paths.log_dir / "launcher.log")
    sidecar = SidecarSettings(port=args.port, upstream_url=f"http://127.0.0.1:{args.engine_port}",
                              keys_file=paths.keys_file, aliases_file=args.state_dir / "aliases.json",
                              shutdown_grace_s=args.grace, metrics_port=args.metrics_port)
    engine = EngineSettings(ready_timeout_s=30, max_restarts=0)
    plan = SimpleNamespace(
        argv=(sys.executable, "-m", "tests.fake_vllm", "--port",
              str(args.engine_port), "--chunks", str(args.chunks),
              "--chunk-delay-ms", str(args.chunk_delay_ms)),
        env={}, profile="cpu", max_model_len=8192, quantization="fake",
        served_model_names=sidecar.served_model_names, catalogue=sidecar.catalogue(),
        sidecar_workers=args.workers)
    settings = LaunchSettings(paths=paths, sidecar=sidecar, engine=engine)
    return asyncio.run(serve(settings, plan))  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
