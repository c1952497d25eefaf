"""The smoke checkpoint: gpt-oss's real architecture and tokenizer at toy scale (see README.md).

Heavy imports (torch, transformers) happen only when a build is needed.
"""

from __future__ import annotations

from serving.smoke.build import ensure_smoke_checkpoint, recipe_hash

__all__ = ["ensure_smoke_checkpoint", "recipe_hash"]
