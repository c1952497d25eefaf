"""The relay's cost per token: the sidecar (1 and N workers) against direct and nginx.

A paced fake of vLLM (`benchmarks/fake_upstream.py`: `--chunks` one-token SSE events per
answer, `--chunk-delay-ms` apart, as a GPU decodes a large batch) serves every target; `wrk`
(C load generator, Debian package) holds C streams open against each target in turn, in
interleaved rounds so that machine noise hits every target alike. Per run it records:

- delivered tokens/s: SSE events the fake wrote during the run (its
  `fake:streamed_events_total`; a proxy that falls behind slows the fake's writes through
  TCP backpressure, and it never buffers) / duration;
- stream p50 / p99: wrk's latency of whole streams;
- proxy CPU µs per relayed token: user+system CPU of the proxy's processes (from /proc,
  the whole process tree) over the run, divided by the events relayed in that run.

nginx (`proxy_buffering off`, one worker process, keep-alive upstream) is the C reference
when installed. Results go to `benchmarks/results/<stamp>-relay/` (JSON + Markdown table)::

    python -m benchmarks.relay --concurrency 64,256 --rounds 3 --duration-s 20 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

from serving.sidecar.keys import create_key

REPO = Path(__file__).resolve().parent.parent
LUA = """
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {KEY}"
"""
OPENAI_BODY = ('{"model":"gpt-oss-20b","stream":true,'
               '"messages":[{"role":"user","content":"hi"}]}')
OLLAMA_BODY = '{"model":"gpt-oss:20b","messages":[{"role":"user","content":"hi"}]}'
NGINX_CONF = """
worker_processes 1;
pid {DIR}/nginx.pid;
error_log {DIR}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream fake {{ server 127.0.0.1:{UPSTREAM}; keepalive 512; }}
  server {{
    listen 127.0.0.1:{PORT};
    location / {{
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }}
  }}
}}
"""


@dataclass
class Target:
    name: str
    url: str  # where wrk sends requests
    path: str  # /v1/chat/completions or /api/chat
    pids: list[int]  # the proxy's processes (their children are counted too); [] = direct


@dataclass
class Run:
    target: str
    concurrency: int
    round: int
    streams: int
    errors: int
    delivered_tokens_per_s: float
    p50_s: float
    p99_s: float
    cpu_us_per_token: float | None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _parse_wrk(text: str) -> tuple[int, int, dict[str, float]]:
    streams = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    errors = 0
    if found := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                          text):
        errors += sum(int(g) for g in found.groups())
    if found := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(found.group(1))
    latency = {p: float(v) * _UNITS[u] for p, v, u in _LATENCY.findall(text)}
    return streams, errors, latency


def _streamed_events(fake_url: str) -> float:
    text = httpx.get(fake_url + "/metrics", timeout=10).text
    return float(re.search(r"^fake:streamed_events_total ([\d.]+)$", text, re.M).group(1))  # type: ignore[union-attr]


def run_wrk(target: Target, concurrency: int, duration_s: int, script: Path,
            fake_url: str) -> tuple[str, float, float]:
    """wrk's report, the proxy's CPU seconds and the events streamed during the run."""
    cpu_before, events_before = _cpu_seconds(target.pids), _streamed_events(fake_url)
    done = subprocess.run(
        ["wrk", "-t2", f"-c{concurrency}", f"-d{duration_s}s", "--timeout", "60s", "--latency",
         "-s", str(script), target.url + target.path],
        capture_output=True, text=True, check=True)
    cpu = _cpu_seconds(target.pids) - cpu_before
    return done.stdout, cpu, _streamed_events(fake_url) - events_before


def measure(target: Target, concurrency: int, round_: int, args: argparse.Namespace,
            scripts: dict[str, Path], fake_url: str) -> Run:
    script = scripts["ollama" if target.path == "/api/chat" else "openai"]
    text, cpu, tokens = run_wrk(target, concurrency, args.duration_s, script, fake_url)
    streams, errors, latency = _parse_wrk(text)
    time.sleep(args.chunks * args.chunk_delay_ms / 1000 + 1)  # streams wrk left open end
    return Run(target.name, concurrency, round_, streams, errors,
               round(tokens / args.duration_s, 1), round(latency.get("50", 0.0), 3),
               round(latency.get("99", 0.0), 3),
               round(cpu / tokens * 1e6, 1) if target.pids and tokens else None)


class Stack:
    """The fake, the sidecars and nginx, started once for all rounds."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.work = work
        self.fake_port = _free_port()
        self._start([sys.executable, "-m", "benchmarks", "fake-upstream", "--port",
                     str(self.fake_port), "--chunks", str(args.chunks),
                     "--chunk-delay-ms", str(args.chunk_delay_ms)], "fake")
        _wait(f"http://127.0.0.1:{self.fake_port}/health")
        self.key, _ = create_key(work / "keys.json", user="bench", permissions=["all"])
        fake = f"http://127.0.0.1:{self.fake_port}"
        self.targets = [Target("direct", fake, "/v1/chat/completions", [])]
        for workers in sorted({1, args.workers}):
            proc, url = self._sidecar(workers)
            self.targets.append(Target(f"sidecar x{workers}", url, "/v1/chat/completions",
                                       [proc.pid]))
            if workers == 1 and args.ollama:
                self.targets.append(Target("sidecar x1 ollama", url, "/api/chat", [proc.pid]))
        if args.granian:
            proc, url = self._sidecar(1, server="granian")
            self.targets.append(Target("sidecar x1 granian", url, "/v1/chat/completions",
                                       [proc.pid]))
        compare = list(args.compare)
        if args.baseline_src is not None:  # e.g. a `git worktree` of an older commit
            compare.insert(0, ("baseline", args.baseline_src))
        for label, src in compare:
            proc, url = self._sidecar(1, src=src)
            self.targets.append(Target(f"sidecar x1 {label}", url, "/v1/chat/completions",
                                       [proc.pid]))
        if shutil.which("nginx") and not args.no_nginx:
            self.targets.append(self._nginx())

    def _start(self, argv: list[str], name: str, src: Path = REPO,
               **env: str) -> subprocess.Popen[bytes]:
        log = (self.work / f"{name}.log").open("wb")
        # `src` first: a compared checkout's `serving` wins over this one's.
        path = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p)
        proc = subprocess.Popen(argv, cwd=src, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": path, **env},
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def _sidecar(self, workers: int, src: Path = REPO,
                 server: str = "uvicorn") -> tuple[subprocess.Popen[bytes], str]:
        port = _free_port()
        name = f"sidecar-{workers}-{port}"
        state = self.work / name
        argv = [sys.executable, "-m", "serving", "sidecar", "--port", str(port)]
        if server == "granian":  # one worker, its own event loop (uvloop), HTTP/1.1
            argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
                    "--host", "127.0.0.1", "--port", str(port), "--http", "1", "--loop",
                    "uvloop", "--no-ws", "--backlog", "2048", "--log-level", "warning",
                    "benchmarks.granian_app:app"]
        elif src == REPO:
            argv += ["--workers", str(workers)]
        proc = self._start(
            argv, name, src,
            SERVING_STATE_DIR=str(state), SERVING_KEYS_FILE=str(self.work / "keys.json"),
            SERVING_UPSTREAM_URL=f"http://127.0.0.1:{self.fake_port}",
            SERVING_METRICS_PORT=str(_free_port()), SERVING_ENGINE_POLL_INTERVAL_S="1")
        url = f"http://127.0.0.1:{port}"
        _wait(url + "/health")
        return proc, url

    def _nginx(self) -> Target:
        port = _free_port()
        conf = self.work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(DIR=self.work, UPSTREAM=self.fake_port, PORT=port))
        proc = self._start(["nginx", "-c", str(conf), "-g", "daemon off;"], "nginx")
        _wait(f"http://127.0.0.1:{port}/health")
        return Target("nginx", f"http://127.0.0.1:{port}", "/v1/chat/completions", [proc.pid])

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def summarize(runs: list[Run]) -> list[dict[str, object]]:
    """Median over rounds per (target, concurrency), with ratios to direct in the same runs."""
    rows: list[dict[str, object]] = []
    keys = sorted({(r.concurrency, r.target) for r in runs},
                  key=lambda k: (k[0], [x.target for x in runs].index(k[1])))
    for concurrency, target in keys:
        mine = [r for r in runs if (r.concurrency, r.target) == (concurrency, target)]
        direct = [r for r in runs if (r.concurrency, r.target) == (concurrency, "direct")]
        row: dict[str, object] = {
            "concurrency": concurrency, "target": target,
            "delivered_tokens_per_s": statistics.median(r.delivered_tokens_per_s for r in mine),
            "p50_s": statistics.median(r.p50_s for r in mine),
            "p99_s": statistics.median(r.p99_s for r in mine),
            "errors": sum(r.errors for r in mine),
            "cpu_us_per_token": (statistics.median(r.cpu_us_per_token for r in mine
                                                   if r.cpu_us_per_token is not None)
                                 if any(r.cpu_us_per_token is not None for r in mine) else None),
        }
        if direct:
            row["throughput_vs_direct"] = round(
                statistics.median(r.delivered_tokens_per_s for r in mine)
                / statistics.median(r.delivered_tokens_per_s for r in direct), 3)
            row["p99_vs_direct"] = round(
                statistics.median(r.p99_s for r in mine)
                / statistics.median(r.p99_s for r in direct), 3)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    lines = ["| streams | target | delivered tok/s | vs direct | stream p50 / p99 (s) | "
             "p99 vs direct | errors | proxy CPU µs per token |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        cpu = row["cpu_us_per_token"]
        lines.append(
            f"| {row['concurrency']} | {row['target']} | {row['delivered_tokens_per_s']:,.0f} | "
            f"{row.get('throughput_vs_direct', '')} | {row['p50_s']:.2f} / {row['p99_s']:.2f} | "
            f"{row.get('p99_vs_direct', '')} | {row['errors']} | "
            f"{'—' if cpu is None else f'{cpu:.0f}'} |")
    return "\n".join(lines) + "\n"


def _labelled_dir(text: str) -> tuple[str, Path]:
    label, _, directory = text.partition("=")
    if not directory:
        raise argparse.ArgumentTypeError("expected LABEL=DIR")
    return label, Path(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", default="64,256")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-s", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--chunk-delay-ms", type=float, default=20.0)
    parser.add_argument("--ollama", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="also measure the sidecar of another checkout (its repo root)")
    parser.add_argument("--compare", type=_labelled_dir, action="append", default=[],
                        metavar="LABEL=DIR",
                        help="also measure the sidecar of this checkout (repeatable): "
                             "before/after variants in one run")
    parser.add_argument("--granian", action="store_true",
                        help="also measure the sidecar served by granian (pip install granian)")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if args.granian:
        import importlib.util

        if importlib.util.find_spec("granian") is None:
            sys.exit("--granian needs granian (pip install 'granian==2.8.7')")
    if not shutil.which("wrk"):
        sys.exit("bench-relay needs wrk (Debian: apt-get install wrk)")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    out = args.results_dir / (time.strftime("%Y%m%d-%H%M%S") + "-relay")
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        work = Path(tmp)
        scripts = {name: work / f"{name}.lua" for name in ("openai", "ollama")}
        stack = Stack(args, work)
        for name, body in (("openai", OPENAI_BODY), ("ollama", OLLAMA_BODY)):
            scripts[name].write_text(LUA.replace("{BODY}", body).replace("{KEY}", stack.key))
        runs: list[Run] = []
        try:
            for round_ in range(args.rounds):
                for concurrency in concurrencies:
                    for target in stack.targets:
                        run = measure(target, concurrency, round_, args, scripts,
                                      f"http://127.0.0.1:{stack.fake_port}")
                        print(json.dumps(asdict(run)), flush=True)
                        runs.append(run)
        finally:
            stack.stop()
    rows = summarize(runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "cpus": os.cpu_count(),
         "runs": [asdict(r) for r in runs], "summary": rows}, indent=2))
    table = markdown(rows)
    (out / "README.md").write_text(
        f"# Relay cost ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs)\n\n"
        f"`python -m benchmarks.relay {' '.join(sys.argv[1:])}`: paced fake vLLM, "
        f"{args.chunks} one-token chunks {args.chunk_delay_ms:g} ms apart, wrk, "
        f"{args.rounds} interleaved rounds of {args.duration_s} s, medians.\n\n{table}")
    print(table)
    print(f"results: {out}")


if __name__ == "__main__":
    main()
