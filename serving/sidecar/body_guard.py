"""Bounds on every request body, checked on its bytes before anything parses it.

``json.loads`` recurses once per nesting level (a body nested 50,000 deep raises
RecursionError), and a 4 MiB body of ``[{},{},...]`` becomes a million dicts before pydantic
sees it. So the shape of a body is measured first: nesting depth, items in one array or
object, objects in one array (messages, input items, tools), the longest string, and what
Python's ``json`` accepts but JSON forbids and nothing downstream can encode again (``NaN``,
``Infinity``, lone UTF-16 surrogates, UTF-16/32 bodies). A body over a bound gets a 400 that
names the limit and the setting that changes it, in the route's protocol shape.

Nothing walks the body byte by byte in Python: one ``bytes.translate`` classifies every byte,
one ``nonzero`` finds the few that matter (quotes, backslashes, brackets, commas), and the
rest is numpy on those positions. Small plain bodies are cleared by a few ``bytes.count``.

Soundness: string literals are found exactly as JSON tokenises them (a quote is escaped when
the backslash before it starts an escape, i.e. sits at an even offset in its run) for every
valid JSON body, and for an invalid one up to its first error, where any parser stops. So the
depth measured here is at least the depth a JSON parser reaches. UTF-16/32 bodies (which
``json.loads`` accepts on bytes) are refused: their code units can hold the bytes of ``"``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.config import SidecarSettings
from serving.errors import BadRequest, DialectsByPath, ServingError
from serving.sidecar.middleware import send_error
from serving.sidecar.state import request_state_if_any

# Requests without a body by definition: passed through without buffering.
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Below this size a plain body is cleared by counting bytes, without a scan.
_QUICK_BYTES = 64 * 1024

# Structural bytes to their class (a bytes.translate table; every other byte is deleted).
_OPEN_SQUARE, _OPEN_CURLY, _CLOSE, _COMMA = range(1, 5)
_CLASSES = {"[": _OPEN_SQUARE, "{": _OPEN_CURLY, "]": _CLOSE, "}": _CLOSE, ",": _COMMA}
_TABLE = bytes(_CLASSES.get(chr(c), 0) for c in range(256))
_NOT_STRUCTURAL = bytes(c for c in range(256) if chr(c) not in _CLASSES)
_STEP = np.array([0, 1, 1, -1, 0], dtype=np.int32)  # depth change per class
# Up to this many strings they are cut out one slice each; past it, by a vector mask.
_CUT_STRINGS = 4096
# UTF-8 encoded surrogates (ED A0..BF): invalid UTF-8 that json.loads decodes (it uses
# 'surrogatepass') into a string that nothing downstream can encode again.
_ENCODED_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
# Third character of a \\uDXXX escape: high surrogates D800-DBFF, low ones DC00-DFFF.
_HIGH, _LOW = np.frombuffer(b"89ab", dtype=np.uint8), np.frombuffer(b"cdef", dtype=np.uint8)


class BodyRejected(BadRequest):
    code = "invalid_body"


@dataclass(frozen=True)
class BodyLimits:
    max_depth: int = 64
    max_items: int = 262_144
    max_messages: int = 10_000
    max_string_bytes: int = 2 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: SidecarSettings) -> BodyLimits:
        return cls(max_depth=settings.max_json_depth, max_items=settings.max_json_items,
                   max_messages=settings.max_messages,
                   max_string_bytes=settings.max_json_string_bytes)


def check_body(body: bytes, limits: BodyLimits) -> None:
    """Raise BodyRejected if `body` breaks a bound. A body that is not JSON at all passes
    (the route's parser answers it with a 400 of its own)."""
    if not body or body.isspace():
        return
    encoding = json.detect_encoding(body)
    if encoding not in ("utf-8", "utf-8-sig"):
        raise BodyRejected(f"Request body must be UTF-8 JSON (this one looks {encoding}).",
                           code="invalid_encoding")
    if (len(body) <= min(_QUICK_BYTES, limits.max_string_bytes)
            and body.count(b"[") + body.count(b"{") <= limits.max_depth
            and body.count(b",") < limits.max_items and body.count(b"{") <= limits.max_messages
            and not any(word in body for word in (b"NaN", b"Inf", b"\\ud", b"\\uD", b"\xed"))):
        return  # too few brackets, commas and bytes to break a bound, nothing to refuse
    if b"\xed" in body and (found := _ENCODED_SURROGATE.search(body)) is not None:
        raise BodyRejected(f"Request body is not valid UTF-8 (an encoded UTF-16 surrogate at "
                           f"byte {found.start()}).", code="invalid_encoding")
    _Scan(body).check(limits)


class _Scan:
    """The body's string literals, and the structure outside them as a sequence of
    classes (open, close, comma) with the nesting depth after each."""

    def __init__(self, body: bytes) -> None:
        self.raw = raw = np.frombuffer(body, dtype=np.uint8)
        quotes = np.flatnonzero(raw == ord('"'))
        backslashes = np.flatnonzero(raw == ord("\\"))
        # A backslash starts an escape when it sits at an even offset in its run; a quote
        # right after such a backslash is escaped.
        self.escapes = backslashes[_offset_in_run(backslashes) % 2 == 0]
        if self.escapes.size:
            starts_escape = np.zeros(raw.size, dtype=bool)
            starts_escape[self.escapes] = True
            quotes = quotes[~((quotes > 0) & starts_escape[quotes - 1])]
        if quotes.size % 2:
            raise BodyRejected("Malformed JSON body: a string is not terminated.",
                               code="invalid_json")
        self.quotes = quotes  # string i spans quotes[2i]..quotes[2i+1]
        self.rest = _without_strings(body, raw, quotes)
        self.kinds = np.frombuffer(self.rest.translate(_TABLE, _NOT_STRUCTURAL), dtype=np.uint8)
        self.depth = np.cumsum(_STEP[self.kinds], dtype=np.int32)  # depth after each

    def check(self, limits: BodyLimits) -> None:
        if b"NaN" in self.rest or b"Inf" in self.rest:  # Infinity, -Infinity
            raise BodyRejected("NaN and Infinity are not JSON numbers (RFC 8259); send a "
                               "finite number.", code="invalid_json")
        if self.escapes.size and (lone := self._lone_surrogate()) is not None:
            raise BodyRejected(f"Request body holds a lone UTF-16 surrogate ({lone}); pair it "
                               "or send the character as UTF-8.", code="invalid_unicode")
        if self.quotes.size:
            longest = int((self.quotes[1::2] - self.quotes[0::2]).max()) - 1
            if longest > limits.max_string_bytes:
                raise BodyRejected(
                    f"A string in the request body is {longest} bytes long; the limit is "
                    f"{limits.max_string_bytes} (SERVING_MAX_JSON_STRING_BYTES).",
                    code="string_too_long")
        if self.depth.size == 0:
            return
        if int(self.depth.max()) > limits.max_depth:
            raise BodyRejected(
                f"JSON nesting deeper than {limits.max_depth} levels (SERVING_MAX_JSON_DEPTH).",
                code="json_too_deep")
        self._check_items(limits)

    def _lone_surrogate(self) -> str | None:
        """The first \\uD800-\\uDFFF escape that is not half of a high+low pair."""
        raw, escapes = self.raw, self.escapes
        escapes = escapes[escapes + 5 < raw.size]
        lowered = [raw[escapes + k] | 0x20 for k in range(1, 4)]  # ASCII letters to lower
        surrogate = (lowered[0] == ord("u")) & (lowered[1] == ord("d"))
        high = escapes[surrogate & np.isin(lowered[2], _HIGH)]
        low = escapes[surrogate & np.isin(lowered[2], _LOW)]
        paired_high = _sorted_contains(low, high + 6)
        paired_low = _sorted_contains(high[paired_high] + 6, low)
        lone = np.concatenate([high[~paired_high], low[~paired_low]])
        if lone.size == 0:
            return None
        first = int(lone.min())
        return bytes(raw[first:first + 6]).decode("ascii", "replace")

    def _check_items(self, limits: BodyLimits) -> None:
        """Items per array or object, and objects per array, without sorting.

        Taken level by level (in order), a container's open is followed by its own commas
        and then by its close: nothing else at that level comes between. So at a level, the
        longest run of commas is the most items (minus one) of any container there; and
        between consecutive opens/closes one level up, the objects belong to one parent."""
        kinds, depth = self.kinds, self.depth
        commas = kinds == _COMMA
        level = depth + (kinds == _CLOSE)  # a close sits at the level of what it closes
        comma_levels = np.bincount(np.maximum(level[commas], 0))
        for at in np.flatnonzero(comma_levels + 1 > limits.max_items).tolist():
            # Within this level's own tokens (deeper ones would count as items otherwise).
            edges = np.flatnonzero(~commas[level == at])
            items = int(np.diff(edges).max(initial=0))
            if items > limits.max_items:
                raise BodyRejected(
                    f"An array or object in the request body has {items} items; the limit is "
                    f"{limits.max_items} (SERVING_MAX_JSON_ITEMS).", code="too_many_items")
        objects = (kinds == _OPEN_CURLY) & (depth >= 2)
        object_levels = np.bincount(depth[objects])
        for at in np.flatnonzero(object_levels > limits.max_messages).tolist():
            parent = (level == at - 1) & ~commas
            chosen = parent | (objects & (depth == at))
            edges = np.flatnonzero(parent[chosen])
            counts = (np.diff(edges) - 1)[kinds[chosen][edges[:-1]] == _OPEN_SQUARE]
            most = int(counts.max(initial=0))
            if most > limits.max_messages:
                raise BodyRejected(
                    f"An array in the request body holds {most} objects (messages, input "
                    f"items, tools); the limit is {limits.max_messages} (SERVING_MAX_MESSAGES).",
                    code="too_many_messages")


def _without_strings(body: bytes, raw: np.ndarray, quotes: np.ndarray) -> bytes:
    """`body` with every string literal, quotes included, cut out."""
    if quotes.size <= 2 * _CUT_STRINGS:  # the usual body: one slice per gap between strings
        bounds = quotes.tolist()
        starts = [0, *(end + 1 for end in bounds[1::2])]
        ends = [*bounds[0::2], len(body)]
        return b"".join(body[start:end] for start, end in zip(starts, ends, strict=True))
    toggles = np.zeros(raw.size + 1, dtype=np.int8)
    toggles[quotes[0::2]] += 1
    toggles[quotes[1::2] + 1] -= 1
    inside = np.cumsum(toggles[:-1], dtype=np.int8)
    return bytes(raw[inside == 0])


def _offset_in_run(sorted_positions: np.ndarray) -> np.ndarray:
    """For each position, how far it is from the start of its run of consecutive ones."""
    if sorted_positions.size == 0:
        return sorted_positions
    starts = np.ones(sorted_positions.size, dtype=bool)
    starts[1:] = np.diff(sorted_positions) != 1
    first = np.maximum.accumulate(np.where(starts, np.arange(sorted_positions.size), 0))
    return sorted_positions - sorted_positions[first]


def _sorted_contains(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """needles[i] in haystack, for a sorted haystack."""
    if haystack.size == 0:
        return np.zeros(needles.size, dtype=bool)
    index = np.minimum(np.searchsorted(haystack, needles), haystack.size - 1)
    return haystack[index] == needles


class BodyGuardMiddleware:
    """Reads a request's body (already capped by SERVING_MAX_BODY_BYTES in the outer
    middleware), checks it, and replays it to the app in one piece; later receive() calls
    (the client's disconnect) pass through. Requests without a body are not touched."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits, dialects: DialectsByPath) -> None:
        self.app = app
        self.limits = limits
        self.dialects = dialects

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _BODYLESS_METHODS:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        message: Message = {"more_body": True}
        try:
            while message.get("more_body", False):
                message = await receive()
                if message["type"] != "http.request":  # the client left before sending it all
                    break
                chunks.append(message.get("body", b""))
            else:
                body = b"".join(chunks)
                check_body(body, self.limits)
                message = {"type": "http.request", "body": body, "more_body": False}
        except ServingError as err:  # over a bound, or over the body size (outer middleware)
            state = request_state_if_any(scope)
            request_id = state.request_id if state is not None else ""
            await send_error(send, self.dialects, scope["path"], err, request_id)
            return
        await self.app(scope, _replay([message], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay
