"""gpt-oss-20b serving deployment: launcher, sidecar and protocol adapters around vLLM."""

from __future__ import annotations

__version__ = "0.1.0"
