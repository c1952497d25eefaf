"""`SERVING_WORKERS=N`: several sidecar processes on one port behave as one sidecar.

The real launcher (`serving.launcher.up.serve`) with the fake vLLM as its engine, as in
test_shutdown.py. Each request below opens a new connection, so the kernel spreads them
over the workers; what must hold is what a client of one sidecar would see: a key's limit
is the limit (not N times it), a revoked key is refused by every worker, one scrape of the
metrics port counts every worker's requests, and /ready reflects the engine.
"""

from __future__ import annotations

import httpx
import psutil

from serving.sidecar.keys import KeyLimits, create_key, revoke_key
from tests.prometheus_text import metric_sum
from tests.reliability.procs import Launcher

CHAT = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "hi"}]}
WORKERS = 2


def _post(launcher: Launcher, key: str) -> int:
    # A fresh connection per request: no keep-alive pinning to one worker.
    with httpx.Client(timeout=30) as client:
        return client.post(f"{launcher.url}/v1/chat/completions", json=CHAT,
                           headers={"Authorization": f"Bearer {key}"}).status_code


def _worker_pids(launcher: Launcher) -> set[int]:
    children = psutil.Process(launcher.process.pid).children()
    return {c.pid for c in children if "serving.sidecar.worker" in " ".join(c.cmdline())}


def test_workers_share_limits_keys_metrics_and_readiness(launcher_factory) -> None:
    launcher = launcher_factory(grace=5, chunks=5, delay_ms=1, workers=WORKERS)
    assert len(_worker_pids(launcher)) == WORKERS
    keys = launcher.state_dir / "keys.json"

    limited, _ = create_key(keys, user="limited", permissions=["chat"],
                            limits=KeyLimits(requests_per_minute=3))
    statuses = [_post(launcher, limited) for _ in range(12)]
    assert statuses.count(200) == 3, statuses  # not 3 per worker
    assert statuses.count(429) == 9, statuses

    revoked, record = create_key(keys, user="leaver", permissions=["chat"])
    assert [_post(launcher, revoked) for _ in range(6)] == [200] * 6
    revoke_key(keys, record.key_id)
    assert [_post(launcher, revoked) for _ in range(12)] == [401] * 12

    text = httpx.get(launcher.metrics_url, timeout=10).text
    # 12 + 6 + 12 chat requests, whichever worker served them.
    chat_route = "\n".join(line for line in text.splitlines()
                           if 'route="/v1/chat/completions"' in line)
    assert metric_sum(chat_route, "sidecar_requests_total") == 30
    assert metric_sum(text, "sidecar_requests_in_flight") == 0
    assert "vllm:num_requests_running" in text  # the engine's metrics next to ours

    for _ in range(6):
        with httpx.Client(timeout=10) as client:
            ready = client.get(f"{launcher.url}/ready")
        assert ready.status_code == 200 and ready.json()["engine"]["phase"] == "running"
