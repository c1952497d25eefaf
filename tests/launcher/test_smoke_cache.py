"""The launcher's housekeeping of the shared smoke-checkpoint cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

from serving.launcher.smoke_cache import prune_stale_checkpoints, use_smoke_checkpoint
from serving.smoke import recipe_hash
from serving.smoke.architecture import SmokeRecipe
from serving.smoke.build import READY_MARKER, WEIGHTS_FILE


def _checkpoint(path: Path, last_used_days_ago: float) -> Path:
    path.mkdir()
    (path / WEIGHTS_FILE).write_bytes(b"w")
    (path / READY_MARKER).write_text("{}")
    stamp = time.time() - last_used_days_ago * 86400
    os.utime(path / READY_MARKER, (stamp, stamp))
    return path


def test_use_marks_the_current_checkpoint_and_prunes_stale_siblings(tmp_path: Path) -> None:
    current = _checkpoint(tmp_path / f"smoke-{recipe_hash(SmokeRecipe())}", last_used_days_ago=30)
    stale = _checkpoint(tmp_path / "smoke-0ld", last_used_days_ago=30)
    assert use_smoke_checkpoint(tmp_path) == current
    assert (current / WEIGHTS_FILE).read_bytes() == b"w"  # reused, not rebuilt
    assert time.time() - (current / READY_MARKER).stat().st_mtime < 60
    assert not stale.exists()


def test_prune_removes_only_long_unused_complete_checkpoints(tmp_path: Path) -> None:
    current = _checkpoint(tmp_path / "smoke-current", last_used_days_ago=30)
    stale = _checkpoint(tmp_path / "smoke-stale", last_used_days_ago=15)
    recent = _checkpoint(tmp_path / "smoke-recent", last_used_days_ago=1)
    building = tmp_path / "smoke-building"  # no ready marker: maybe another process's build
    building.mkdir()
    other = _checkpoint(tmp_path / "o200k-like", last_used_days_ago=99)  # not a smoke entry
    assert prune_stale_checkpoints(tmp_path, keep=current) == [stale]
    assert current.exists() and recent.exists() and building.exists() and other.exists()
