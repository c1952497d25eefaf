"""Housekeeping for the shared smoke-checkpoint cache (``~/.cache/gpt-oss-serving``).

Every change to ``serving/smoke`` (or to a library that shapes its bytes) makes a new
``smoke-<hash>`` entry of about 80 MB, and old ones would pile up across clones and
upgrades. Each use touches the entry's ready marker; after a start, entries that no clone
has used for ``STALE_AFTER_DAYS`` are removed. A clone that still wanted one rebuilds it.
This lives outside ``serving/smoke`` because that package's sources are part of the
checkpoint's hash: housekeeping must not force a rebuild.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path

from serving.smoke import ensure_smoke_checkpoint
from serving.smoke.build import READY_MARKER, is_complete

log = logging.getLogger(__name__)

STALE_AFTER_DAYS = 14


def use_smoke_checkpoint(cache_dir: Path) -> Path:
    """The smoke checkpoint (built if needed), marked as used; stale siblings are removed."""
    checkpoint = ensure_smoke_checkpoint(cache_dir)
    with contextlib.suppress(OSError):  # a read-only cache still serves
        (checkpoint / READY_MARKER).touch()
        prune_stale_checkpoints(checkpoint.parent, keep=checkpoint)
    return checkpoint


def prune_stale_checkpoints(cache_dir: Path, keep: Path,
                            older_than_s: float = STALE_AFTER_DAYS * 86400) -> list[Path]:
    """Remove complete checkpoints other than ``keep`` unused for ``older_than_s``."""
    removed = []
    for entry in sorted(Path(cache_dir).glob("smoke-*")):
        if entry == keep or not is_complete(entry):
            continue  # not complete: maybe another process's build in progress
        if time.time() - (entry / READY_MARKER).stat().st_mtime > older_than_s:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
            log.info("removed the smoke checkpoint %s, unused for %d days", entry,
                     STALE_AFTER_DAYS)
    return removed
