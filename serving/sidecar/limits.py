"""Per-key limits (requests/min, tokens/min, concurrent requests) and global backpressure.

Windows are fixed one-minute windows keyed by the wall-clock minute, so every replica that
shares a Redis agrees on them without coordination; in-process counters are the default
and need nothing. Tokens (prompt + completion, from vLLM's usage) are charged when a
request finishes; a key whose window is spent is refused until the next minute.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from serving.errors import ServingError
from serving.sidecar.keys import KeyLimits, KeyRecord

WINDOW_S = 60


class RateLimited(ServingError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class Overloaded(ServingError):
    status_code = 503
    error_type = "service_unavailable"
    code = "overloaded"


class LimitBackend(Protocol):
    async def incr(self, name: str, amount: int, ttl_s: int) -> int: ...
    async def get(self, name: str) -> int: ...


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


class RedisBackend:
    """Counters shared by every sidecar replica (INCRBY + EXPIRE in one round trip)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url)

    async def incr(self, name: str, amount: int, ttl_s: int) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(name, amount)
            pipe.expire(name, ttl_s, nx=True)
            value, _ = await pipe.execute()
        return int(value)

    async def get(self, name: str) -> int:
        return int(await self._redis.get(name) or 0)

    async def aclose(self) -> None:
        await self._redis.aclose()


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
