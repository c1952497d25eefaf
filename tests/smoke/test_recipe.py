"""The cache key: rebuilt exactly when the recipe changes, reused otherwise."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from serving.smoke.architecture import SmokeRecipe
from serving.smoke.build import (
    READY_MARKER,
    WEIGHTS_FILE,
    ensure_smoke_checkpoint,
    is_complete,
    recipe_document,
    recipe_hash,
)


def test_hash_is_stable_for_the_same_recipe() -> None:
    assert recipe_hash(SmokeRecipe()) == recipe_hash(SmokeRecipe())
    assert recipe_hash() == recipe_hash(SmokeRecipe())


def test_hash_changes_with_a_hyper_parameter() -> None:
    base = recipe_hash(SmokeRecipe())
    assert recipe_hash(dataclasses.replace(SmokeRecipe(), learning_rate=1e-3)) != base
    assert recipe_hash(dataclasses.replace(SmokeRecipe(), steps=281)) != base
    assert recipe_hash(dataclasses.replace(SmokeRecipe(), num_local_experts=8)) != base


def test_recipe_document_covers_config_data_sources_and_libraries() -> None:
    document = recipe_document(SmokeRecipe())
    assert document["config"]["model_type"] == "gpt_oss"
    assert isinstance(document["data_version"], int)
    assert {"build.py", "dataset.py", "train.py", "tokenizer.py", "chat_template.jinja"} <= set(
        document["sources"]
    )
    assert {"torch", "transformers", "oss-harmony"} <= set(document["libraries"])
    json.dumps(document)  # it is hashed as canonical JSON


def test_existing_checkpoint_is_reused_without_building(tmp_path: Path) -> None:
    recipe = SmokeRecipe()
    target = tmp_path / f"smoke-{recipe_hash(recipe)}"
    target.mkdir()
    (target / WEIGHTS_FILE).write_bytes(b"weights")
    (target / READY_MARKER).write_text("{}")
    assert ensure_smoke_checkpoint(tmp_path, recipe) == target
    assert (target / WEIGHTS_FILE).read_bytes() == b"weights"  # untouched: no rebuild


def test_directory_without_ready_marker_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / WEIGHTS_FILE).write_bytes(b"half written")
    assert not is_complete(tmp_path)
