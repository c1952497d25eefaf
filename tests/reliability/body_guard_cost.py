"""CPU cost of the body guard (serving/sidecar/body_guard.py) per body, next to json.loads of
the same body (which the routes run anyway): `make body-guard-cost`. Thread CPU time, median
of several runs, so other work on the machine does not count."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

from serving.sidecar.body_guard import BodyLimits, BodyRejected, check_body

MIB = 1024 * 1024
PROSE = ("It was a bright cold day in April, and the clocks were striking thirteen. Winston "
         "Smith, his chin nuzzled into his breast, slipped quickly through the glass doors.\n")


def _median_us(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.thread_time()
        try:
            work()
        except (BodyRejected, ValueError, RecursionError):
            pass
        times.append(time.thread_time() - started)
    return statistics.median(times) * 1e6


def bodies() -> dict[str, bytes]:
    text = (PROSE * (2 * MIB // len(PROSE)))[: int(1.9 * MIB)]
    dense = ('A "quoted", [bracketed] line.\n' * 70_000)[: int(1.9 * MIB)]
    return {
        "chat, 2 messages": json.dumps({"model": "gpt-oss-20b", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Why is the sky blue?"}]}).encode(),
        "chat, 200 messages (10 KB)": json.dumps({"model": "gpt-oss-20b", "messages": [
            {"role": "user", "content": "hello, there"}] * 200}).encode(),
        "4 MiB: 2 messages of prose": json.dumps({"model": "m", "messages": [
            {"role": "user", "content": text}] * 2}).encode(),
        "4 MiB: prose with quotes and brackets": json.dumps({"model": "m", "messages": [
            {"role": "user", "content": dense}] * 2}).encode(),
        "4 MiB: \\u-escaped CJK and emoji": json.dumps({"model": "m", "messages": [
            {"role": "user", "content": "漢字かな、😀" * 40_000}] * 2}).encode(),
        "4 MiB: 8,000 messages": json.dumps({"model": "m", "messages": [
            {"role": "user", "content": text[:480]}] * 8000}).encode(),
        "4 MiB: [{},{},...] (refused)": b'{"messages":[' + b",".join([b"{}"] * (4 * MIB // 3 - 10))
        + b"]}",
        "4 MiB: nested 2M deep (refused)": b"[" * (2 * MIB) + b"]" * (2 * MIB),
        "4 MiB: 1M short strings (refused)": b"[" + b",".join([b'"a"'] * (MIB - 1)) + b"]",
    }


def main() -> None:
    limits = BodyLimits()
    print(f"{'body':42s} {'bytes':>9s} {'guard µs':>10s} {'json.loads µs':>14s}")
    for name, body in bodies().items():
        runs = 200 if len(body) < MIB else 7
        guard = _median_us(lambda body=body: check_body(body, limits), runs)
        parse = _median_us(lambda body=body: json.loads(body), runs)
        print(f"{name:42s} {len(body):9d} {guard:10.0f} {parse:14.0f}")


if __name__ == "__main__":
    main()
