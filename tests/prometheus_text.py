"""Reading one metric out of a Prometheus text exposition, for tests that check counters."""

from __future__ import annotations

import re

_SAMPLE = r"^{name}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$"


def metric_sum(text: str, name: str) -> float:
    """The sum of `name` over all its label sets (0 when it is absent)."""
    return sum(float(v) for v in re.findall(_SAMPLE.format(name=re.escape(name)), text, re.M))
