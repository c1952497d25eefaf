"""Multi-turn shared-prefix workload: routing policy vs vLLM's prefix cache across replicas.

Each conversation opens with its own long document (a few thousand tokens) and then asks
several short questions; every turn resends the whole history, as chat clients and agents
do. Turns of all conversations are interleaved (concurrent users). Measured per policy:
TTFT of every streamed turn (client side), where each turn landed (the router's
`x-replica` header) and the prefix-cache hit rate summed over the replicas' vLLM counters
(`vllm:prefix_cache_hits` / `vllm:prefix_cache_queries`, deltas over the run).

`python -m benchmarks.prefix_workload` (or `make bench-prefix`) starts `serving up --replicas
2` with a KV cache sized to about half of the workload's prefixes, plus a second router in
round-robin mode in front of the same replicas, runs the workload once through each (fresh
documents each time) and writes summary.json + report.md under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.metrics import percentile
from benchmarks.server_counters import prometheus_counter

HITS = "vllm:prefix_cache_hits_total"
QUERIES = "vllm:prefix_cache_queries_total"
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
         "zulu amber basalt cedar dune ember fjord glacier harbor island jungle").split()


@dataclass(frozen=True)
class Conversation:
    document: str
    questions: tuple[str, ...]


@dataclass
class PolicyResult:
    policy: str
    ttft_s: list[float] = field(default_factory=list)
    landed: dict[int, list[str]] = field(default_factory=dict)
    failed: int = 0
    hits: float = 0.0
    queries: float = 0.0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0

    @property
    def sticky_conversations(self) -> int:
        return sum(1 for replicas in self.landed.values() if len(set(replicas)) == 1)

    def summary(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "requests": len(self.ttft_s) + self.failed,
            "failed": self.failed,
            "ttft_p50_ms": round(percentile(self.ttft_s, 50) * 1000, 1) if self.ttft_s else None,
            "ttft_p90_ms": round(percentile(self.ttft_s, 90) * 1000, 1) if self.ttft_s else None,
            "prefix_cache_hits": self.hits,
            "prefix_cache_queries": self.queries,
            "prefix_cache_hit_rate": round(self.hit_rate, 4),
            "conversations_on_one_replica": self.sticky_conversations,
            "conversations": len(self.landed),
        }


def make_conversations(seed: int, count: int, doc_words: int, turns: int) -> list[Conversation]:
    """Deterministic documents (about one token per word) and questions."""
    rng = random.Random(seed)
    return [
        Conversation(
            document=f"Document {seed}-{i}. " + " ".join(rng.choices(WORDS, k=doc_words)),
            questions=tuple(f"Question {t}: what does part {rng.randint(1, 99)} say?"
                            for t in range(turns)),
        )
        for i in range(count)
    ]


def turn_messages(conversation: Conversation, turn: int) -> list[dict[str, str]]:
    """The history a client resends at `turn` (answers kept short and fixed)."""
    messages = [{"role": "system", "content": "Answer from the document.\n" +
                 conversation.document}]
    for t in range(turn + 1):
        messages.append({"role": "user", "content": conversation.questions[t]})
        if t < turn:
            messages.append({"role": "assistant", "content": f"Answer {t}."})
    return messages


async def _turn(client: httpx.AsyncClient, url: str, key: str, messages: list[dict[str, str]],
                max_tokens: int) -> tuple[float | None, str]:
    body = {"model": "gpt-oss-20b", "messages": messages, "stream": True,
            "max_tokens": max_tokens}
    started = time.perf_counter()
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {key}"}) as response:
        replica = response.headers.get("x-replica", "?")
        if response.status_code != 200:
            await response.aread()
            return None, replica
        first: float | None = None
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: {"):
                first = time.perf_counter() - started
        return first, replica


async def run_policy(url: str, key: str, policy: str, conversations: Sequence[Conversation],
                     max_tokens: int, vllm_metrics: Sequence[str]) -> PolicyResult:
    """Turn t of every conversation, then turn t+1: `len(conversations)` concurrent users."""
    result = PolicyResult(policy=policy, landed={i: [] for i in range(len(conversations))})
    before = read_prefix_counters(vllm_metrics)
    turns = len(conversations[0].questions)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=30)) as client:
        for turn in range(turns):
            outcomes = await asyncio.gather(*(
                _turn(client, url, key, turn_messages(c, turn), max_tokens)
                for c in conversations))
            for i, (ttft, replica) in enumerate(outcomes):
                result.landed[i].append(replica)
                if ttft is None:
                    result.failed += 1
                else:
                    result.ttft_s.append(ttft)
    after = read_prefix_counters(vllm_metrics)
    result.hits, result.queries = after[0] - before[0], after[1] - before[1]
    return result


def read_prefix_counters(metrics_urls: Sequence[str]) -> tuple[float, float]:
    """(hits, queries) summed over the replicas' vLLM /metrics."""
    hits = queries = 0.0
    for url in metrics_urls:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode("utf-8", "replace")
        hits += prometheus_counter(text, HITS)
        queries += prometheus_counter(text, QUERIES)
    return hits, queries


# The benchmark's stack: two replicas whose KV cache holds about 7 of the 9 conversations'
# prefixes (~2K tokens = ~18 blocks of 128 each, full + sliding-window layers; 136 blocks).
# With affinity each engine holds its own share (up to 7 fit); round robin sends every
# conversation to both engines alternately, so each must hold all 9 and LRU evicts each
# prefix just before it is needed again.
STACK_ENV = {
    "SERVING_ENGINE": "cpu",
    "SERVING_MAX_MODEL_LEN": "4096",
    "SERVING_EXTRA_VLLM_ARGS": json.dumps(["--num-gpu-blocks-override", "136"]),
    "SERVING_EMBEDDING_MODEL": "off",
}
CONVERSATIONS, DOC_WORDS, TURNS, MAX_TOKENS = 9, 1300, 4, 8


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--port", type=int, default=18500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    from serving.launcher.replicas import ReplicaRequest, plan_replicas
    from serving.launcher.router_config import RouterConfig, render_haproxy_config

    out = args.results_dir / time.strftime("%Y%m%d-%H%M%S-prefix-routing")
    out.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="prefix-routing-"))  # keys and logs: not results
    layout = plan_replicas(ReplicaRequest(2, public_host="127.0.0.1", public_port=args.port,
                                          state_dir=state.resolve(),
                                          keys_file=(state / "keys.json").resolve()))
    env = {**os.environ, **STACK_ENV, "SERVING_STATE_DIR": str(state.resolve()),
           "SERVING_PORT": str(args.port)}
    state.mkdir(parents=True, exist_ok=True)
    stack = subprocess.Popen([sys.executable, "-m", "serving", "up", "--replicas", "2"],
                             env=env, stdout=(state / "up.out").open("wb"),
                             stderr=subprocess.STDOUT)
    rr_port = args.port + 1
    rr_config = RouterConfig(bind_host="127.0.0.1", bind_port=rr_port,
                             backends=layout.router.backends, policy="roundrobin")
    rr_path = state / "haproxy-roundrobin.cfg"
    rr_path.write_text(render_haproxy_config(rr_config), encoding="utf-8")
    rr = subprocess.Popen(["haproxy", "-db", "-f", str(rr_path)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready([r.url for r in layout.replicas], stack)
        time.sleep(4)  # both routers see each replica pass `rise` health checks
        key = (state / "admin.key").read_text().strip()
        metrics = [f"http://127.0.0.1:{r.vllm_port}/metrics" for r in layout.replicas]
        results = []
        for offset, (policy, port) in enumerate((("roundrobin", rr_port),
                                                 ("affinity", args.port))):
            conversations = make_conversations(args.seed + offset, CONVERSATIONS, DOC_WORDS,
                                               TURNS)
            results.append(asyncio.run(run_policy(f"http://127.0.0.1:{port}", key, policy,
                                                  conversations, MAX_TOKENS, metrics)))
        summary = {"workload": {"conversations": CONVERSATIONS, "doc_words": DOC_WORDS,
                                "turns": TURNS, "max_tokens": MAX_TOKENS, "stack_env": STACK_ENV},
                   "policies": [r.summary() for r in results],
                   "landed": {r.policy: r.landed for r in results}}
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (out / "report.md").write_text(report(summary))
        print(report(summary))
    finally:
        rr.terminate()
        stack.send_signal(signal.SIGTERM)
        try:
            stack.wait(120)
        except subprocess.TimeoutExpired:
            stack.kill()
        rr.wait(10)
    print(f"results: {out}; logs: {state}")
    return 0


def _wait_ready(urls: Sequence[str], stack: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 1800
    for url in urls:
        while not _ready(url):
            if stack.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the replicas did not become ready ({url})")
            time.sleep(3)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def report(summary: dict[str, Any]) -> str:
    rows = ["| policy | TTFT p50 ms | TTFT p90 ms | prefix-cache hit rate | hits / queries "
            "(tokens) | conversations on one replica | failed |",
            "|---|---|---|---|---|---|---|"]
    for p in summary["policies"]:
        rows.append(f"| {p['policy']} | {p['ttft_p50_ms']} | {p['ttft_p90_ms']} | "
                    f"{p['prefix_cache_hit_rate']:.1%} | {p['prefix_cache_hits']:.0f} / "
                    f"{p['prefix_cache_queries']:.0f} | {p['conversations_on_one_replica']}"
                    f"/{p['conversations']} | {p['failed']} |")
    w = summary["workload"]
    return ("# Multi-turn shared-prefix routing, 2 replicas\n\n"
            f"{w['conversations']} conversations x {w['turns']} turns, documents of "
            f"{w['doc_words']} words, {w['max_tokens']} output tokens, turns interleaved; "
            f"engine settings {json.dumps(w['stack_env'])}.\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    raise SystemExit(_main())
