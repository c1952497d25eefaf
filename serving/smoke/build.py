"""Build the smoke checkpoint once per recipe, into a cache shared by every clone.

``ensure_smoke_checkpoint(cache_dir)`` returns ``cache_dir / f"smoke-{recipe_hash}"``. The
hash covers the recipe (sizes, hyper-parameters), the config, the data generator's version,
the source of this package and the versions of the libraries that shape the bytes, so the
checkpoint is rebuilt exactly when one of them changes. Builds happen in a temporary
directory that is renamed into place, under an ``fcntl`` lock, so concurrent callers wait
for one build instead of racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from serving.smoke.architecture import SmokeRecipe, smoke_config
from serving.smoke.dataset import DATA_VERSION
from serving.smoke.tokenizer import (
    ensure_o200k_base,
    write_generation_config,
    write_tokenizer_dir,
)

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
CHAT_TEMPLATE = PACKAGE_DIR / "chat_template.jinja"
LIBRARIES = ("torch", "transformers", "tokenizers", "oss-harmony", "safetensors")
READY_MARKER = "smoke-recipe.json"  # written last: a directory without it is not a checkpoint
WEIGHTS_FILE = "model.safetensors"


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _sources() -> dict[str, str]:
    files = [*sorted(PACKAGE_DIR.glob("*.py")), CHAT_TEMPLATE]
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def recipe_document(recipe: SmokeRecipe) -> dict[str, Any]:
    """Everything the checkpoint depends on, as one JSON-able document."""
    return {
        "recipe": recipe.as_dict(),
        "config": smoke_config(recipe),
        "data_version": DATA_VERSION,
        "sources": _sources(),
        "libraries": _library_versions(),
    }


def recipe_hash(recipe: SmokeRecipe | None = None) -> str:
    document = recipe_document(recipe or SmokeRecipe())
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / READY_MARKER).is_file() and (checkpoint / WEIGHTS_FILE).is_file()


def ensure_smoke_checkpoint(cache_dir: Path, recipe: SmokeRecipe | None = None) -> Path:
    """Return the smoke checkpoint directory for ``recipe``, building it if needed."""
    recipe = recipe or SmokeRecipe()
    cache_dir = Path(cache_dir).expanduser()
    target = cache_dir / f"smoke-{recipe_hash(recipe)}"
    if is_complete(target):
        return target
    with _locked(cache_dir / ".smoke-build.lock"):
        if is_complete(target):  # another process built it while we waited
            return target
        logger.info("building the smoke checkpoint into %s (a few minutes on 2 cores)", target)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".smoke-build-") as tmp:
            staging = Path(tmp) / "checkpoint"
            staging.mkdir()
            build_checkpoint(staging, cache_dir, recipe)
            if target.exists():  # a half-written leftover from an older interrupted layout
                shutil.rmtree(target)
            staging.rename(target)
        logger.info("smoke checkpoint ready in %.0f s: %s", time.monotonic() - started, target)
    return target


def build_checkpoint(out_dir: Path, cache_dir: Path, recipe: SmokeRecipe) -> None:
    """Write config, tokenizer, generation config and trained weights into ``out_dir``."""
    import torch
    from safetensors.torch import save_file

    from serving.smoke.train import train

    config = smoke_config(recipe)
    vocab_file = ensure_o200k_base(cache_dir)
    write_tokenizer_dir(vocab_file, out_dir, CHAT_TEMPLATE.read_text())
    write_generation_config(out_dir)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    model, report = train(config, recipe)
    dtype = getattr(torch, recipe.save_dtype)
    tensors = {name: t.detach().to(dtype).contiguous() for name, t in model.state_dict().items()}
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    (out_dir / WEIGHTS_FILE).chmod(0o644)
    if report.well_formed < report.checked:
        logger.warning(
            "smoke self-check: only %d of %d greedy outputs were well-formed harmony",
            report.well_formed,
            report.checked,
        )
    document = recipe_document(recipe) | {
        "hash": recipe_hash(recipe),
        "train_seconds": round(report.seconds, 1),
        "final_loss": round(report.final_loss, 4),
        "self_check": f"{report.well_formed}/{report.checked}",
    }
    (out_dir / READY_MARKER).write_text(json.dumps(document, indent=2) + "\n")
