"""Per-key limits (requests/min, tokens/min, concurrent requests) and global backpressure.

Windows are fixed one-minute windows keyed by the wall-clock minute, so every replica that
shares a Redis agrees on them without coordination; in-process counters are the default
and need nothing. Tokens (prompt + completion, from vLLM's usage) are charged when a
request finishes; a key whose window is spent is refused until the next minute.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Gauge
from redis.exceptions import RedisError

from serving.errors import ServingError
from serving.sidecar.keys import KeyLimits, KeyRecord

log = logging.getLogger(__name__)
WINDOW_S = 60
# While Redis is away, how often one request tries it again (the others count locally).
RETRY_S = 2.0
# A Redis call that takes longer fails over: limits must not add a hang to every request.
REDIS_TIMEOUT_S = 0.5
_REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
# Give back a concurrency slot, never below zero (Redis may have restarted empty meanwhile).
_FLOORED_DECREMENT = """
local value = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = math.min(tonumber(ARGV[1]), value)
if amount <= 0 then return value end
return redis.call('DECRBY', KEYS[1], amount)
"""


class RateLimited(ServingError):
    """A key spent its requests or tokens of this minute, or has too many in flight (429)."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class Overloaded(ServingError):
    """The sidecar or the engine's queue is full, whoever asks (503 + Retry-After)."""

    status_code = 503
    error_type = "service_unavailable"
    code = "overloaded"


class LimitBackend(Protocol):
    async def incr(self, name: str, amount: int, ttl_s: int) -> int: ...
    async def get(self, name: str) -> int: ...
    async def probe(self) -> dict[str, object]: ...


class MemoryBackend:
    """Counters in this process; expired entries are dropped as new ones arrive."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._values: dict[str, tuple[int, float]] = {}
        self._clock = clock

    async def incr(self, name: str, amount: int, ttl_s: int) -> int:
        now = self._clock()
        value, expires = self._values.get(name, (0, now + ttl_s))
        if expires <= now:
            value, expires = 0, now + ttl_s
        self._values[name] = (value + amount, expires)
        if len(self._values) > 10_000:
            self._values = {k: v for k, v in self._values.items() if v[1] > now}
        return value + amount

    async def get(self, name: str) -> int:
        value, expires = self._values.get(name, (0, 0.0))
        return value if expires > self._clock() else 0

    async def probe(self) -> dict[str, object]:
        return {"backend": "memory", "state": "in_process"}


class RedisBackend:
    """Counters shared by every sidecar replica (INCRBY + EXPIRE in one round trip).

    Fails open: while Redis cannot be reached, counting continues in this process (as with
    no Redis at all) and Redis is tried again every `retry_s`; the state is in /ready and in
    the `sidecar_limits_shared` gauge. See docs/reliability.md for why open, not closed.
    Concurrency slots released while Redis is away are owed to it and paid back (never
    below zero) when it returns, so a slot taken there is not held until its key expires."""

    def __init__(self, url: str, *, registry: CollectorRegistry | None = None,
                 retry_s: float = RETRY_S, timeout_s: float = REDIS_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url, socket_timeout=timeout_s,
                                     socket_connect_timeout=timeout_s)
        self._floored_decrement = self._redis.register_script(_FLOORED_DECREMENT)
        self.local = MemoryBackend(clock=clock)
        self._clock = clock
        self._retry_s = retry_s
        self._retry_at = 0.0
        self._owed: dict[str, int] = {}
        self.shared = True
        self.reason: str | None = None
        self.down_since: float | None = None  # wall clock, for /ready
        self._gauge = Gauge(
            "sidecar_limits_shared",
            "1 while per-key limits are counted in Redis (shared by all replicas); 0 while "
            "Redis is unreachable and this process counts them alone (fail-open).",
            registry=registry, multiprocess_mode="livemin")
        self._gauge.set(1)

    async def incr(self, name: str, amount: int, ttl_s: int) -> int:
        if amount < 0 and await self.local.get(name) > 0:
            return await self.local.incr(name, amount, ttl_s)  # a slot taken while away
        if not await self._reachable():
            if amount < 0:
                self._owed[name] = self._owed.get(name, 0) + amount
                return 0
            return await self.local.incr(name, amount, ttl_s)
        try:
            value = await self._shared_incr(name, amount, ttl_s)
        except _REDIS_ERRORS as exc:
            self._went_away(exc)
            return await self.incr(name, amount, ttl_s)
        self._came_back()
        return value

    async def get(self, name: str) -> int:
        if not await self._reachable():
            return await self.local.get(name)
        try:
            value = int(await self._redis.get(name) or 0)
        except _REDIS_ERRORS as exc:
            self._went_away(exc)
            return await self.local.get(name)
        self._came_back()
        return value

    async def probe(self) -> dict[str, object]:
        """Ping Redis (when a retry is due) and describe where limits are counted."""
        if await self._reachable():
            try:
                await self._redis.ping()
            except _REDIS_ERRORS as exc:
                self._went_away(exc)
            else:
                self._came_back()
        return self.describe()

    def describe(self) -> dict[str, object]:
        if self.shared:
            return {"backend": "redis", "state": "shared"}
        return {"backend": "redis", "state": "in_process",
                "reason": f"redis unreachable ({self.reason}); limits counted in this "
                "process until it returns", "since": self.down_since}

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _shared_incr(self, name: str, amount: int, ttl_s: int) -> int:
        if amount < 0:
            return int(await self._floored_decrement(keys=[name], args=[-amount]))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(name, amount)
            pipe.expire(name, ttl_s, nx=True)
            value, _ = await pipe.execute()
        return int(value)

    async def _reachable(self) -> bool:
        """False while Redis is known to be away and no retry is due yet."""
        if self.shared:
            return True
        if self._clock() < self._retry_at:
            return False
        self._retry_at = self._clock() + self._retry_s  # one try per interval
        try:
            await self._redis.ping()
            await self._pay_back()
        except _REDIS_ERRORS as exc:
            self._went_away(exc)
            return False
        self._came_back()
        return True

    async def _pay_back(self) -> None:
        """Give Redis the slots released while it was away; what fails stays owed."""
        while self._owed:
            name, amount = next(iter(self._owed.items()))
            await self._floored_decrement(keys=[name], args=[-amount])
            del self._owed[name]

    def _went_away(self, exc: Exception) -> None:
        self._retry_at = self._clock() + self._retry_s
        self.reason = type(exc).__name__
        if self.shared:
            self.shared = False
            self.down_since = time.time()
            self._gauge.set(0)
            log.warning("redis unreachable (%s): per-key limits are counted in this process "
                        "until it returns", self.reason)

    def _came_back(self) -> None:
        if not self.shared:
            self.shared = True
            self.reason = self.down_since = None
            self._gauge.set(1)
            log.warning("redis reachable again: per-key limits are shared again")


@dataclass
class Lease:
    """One admitted request: carries its headers and charges its tokens on release."""

    key_id: str
    limits: KeyLimits
    window: int
    headers: dict[str, str] = field(default_factory=dict)
    tokens: int = 0
    holds_slot: bool = False
    released: bool = False


class Limiter:
    def __init__(self, backend: LimitBackend, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.clock = clock

    async def admit(self, record: KeyRecord) -> Lease:
        limits = record.limits
        now = self.clock()
        window = int(now // WINDOW_S)
        reset_s = max(1, math.ceil((window + 1) * WINDOW_S - now))
        lease = Lease(record.key_id, limits, window)
        if limits.concurrent_requests is not None:
            running = await self.backend.incr(self._slot(record.key_id), 1, 3600)
            lease.holds_slot = True
            if running > limits.concurrent_requests:
                await self.release(lease)
                raise RateLimited(
                    f"Concurrent request limit reached ({limits.concurrent_requests} at once "
                    "for this key).", headers={"Retry-After": "1"})
        if limits.requests_per_minute is not None:
            rpm = limits.requests_per_minute
            name = self._name("req", record.key_id, window)
            used = await self.backend.incr(name, 1, WINDOW_S * 2)
            lease.headers.update(_headers("requests", rpm, max(rpm - used, 0), reset_s))
            if used > limits.requests_per_minute:
                await self.release(lease)
                raise RateLimited(
                    f"Rate limit reached: {limits.requests_per_minute} requests per minute for "
                    f"this key. Retry in {reset_s}s.",
                    headers={"Retry-After": str(reset_s), **lease.headers})
        if limits.tokens_per_minute is not None:
            spent = await self.backend.get(self._name("tok", record.key_id, window))
            remaining = max(limits.tokens_per_minute - spent, 0)
            lease.headers.update(_headers("tokens", limits.tokens_per_minute, remaining, reset_s))
            if spent >= limits.tokens_per_minute:
                await self.release(lease)
                raise RateLimited(
                    f"Rate limit reached: {limits.tokens_per_minute} tokens per minute for this "
                    f"key. Retry in {reset_s}s.",
                    headers={"Retry-After": str(reset_s), **lease.headers})
        return lease

    async def probe(self) -> dict[str, object]:
        """Where the limits are counted now (for /ready)."""
        return await self.backend.probe()

    async def release(self, lease: Lease) -> None:
        if lease.released:
            return
        lease.released = True
        if lease.holds_slot:
            await self.backend.incr(self._slot(lease.key_id), -1, 3600)
        if lease.tokens and lease.limits.tokens_per_minute is not None:
            await self.backend.incr(
                self._name("tok", lease.key_id, lease.window), lease.tokens, WINDOW_S * 2)

    @staticmethod
    def _name(kind: str, key_id: str, window: int) -> str:
        return f"gos:limit:{kind}:{key_id}:{window}"

    @staticmethod
    def _slot(key_id: str) -> str:
        return f"gos:limit:running:{key_id}"


def _headers(kind: str, limit: int, remaining: int, reset_s: int) -> dict[str, str]:
    """The `x-ratelimit-*` headers as OpenAI's API sends them."""
    return {
        f"x-ratelimit-limit-{kind}": str(limit),
        f"x-ratelimit-remaining-{kind}": str(remaining),
        f"x-ratelimit-reset-{kind}": f"{reset_s}s",
    }
