"""Per-key limit counters shared by the sidecar workers of one host, without Redis.

With `SERVING_WORKERS=N` every worker is its own process; counting in each of them would
multiply every key's limits by N. Without a Redis URL the workers share one SQLite file
(WAL mode) in the run directory instead: one short transaction per counter update, about
50-100 µs, once or twice per request (never per token). Windows expire by wall-clock time,
which every worker on the host agrees on. Redis remains the way to share limits between
replicas on different hosts.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

_SCHEMA = "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER, expires REAL)"
# One statement, so concurrent workers never interleave a read and a write.
_INCR = """
INSERT INTO counters (name, value, expires) VALUES (:name, :amount, :expires)
ON CONFLICT (name) DO UPDATE SET
  value = CASE WHEN counters.expires <= :now THEN :amount ELSE counters.value + :amount END,
  expires = CASE WHEN counters.expires <= :now THEN :expires ELSE counters.expires END
RETURNING value
"""
_PRUNE_EVERY = 1000


class HostBackend:
    """`LimitBackend` over a SQLite file that every worker process on the host opens."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; each statement is its own transaction.
        self._db = sqlite3.connect(path, timeout=5.0, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")  # counters, not records: speed over fsync
        self._db.execute(_SCHEMA)
        self._clock = clock
        self._writes = 0

    async def incr(self, name: str, amount: int, ttl_s: int) -> int:
        now = self._clock()
        row = self._db.execute(
            _INCR, {"name": name, "amount": amount, "expires": now + ttl_s, "now": now}
        ).fetchone()
        self._writes += 1
        if self._writes % _PRUNE_EVERY == 0:
            self._db.execute("DELETE FROM counters WHERE expires <= ?", (now,))
        return int(row[0])

    async def get(self, name: str) -> int:
        row = self._db.execute(
            "SELECT value FROM counters WHERE name = ? AND expires > ?", (name, self._clock())
        ).fetchone()
        return int(row[0]) if row else 0

    async def probe(self) -> dict[str, object]:
        return {"backend": "host", "state": "shared_by_workers"}

    async def aclose(self) -> None:
        self._db.close()
