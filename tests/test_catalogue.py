"""The model catalogue: the names of each family, and the sidecar settings built from it."""

from __future__ import annotations

from typing import get_args

import pytest

from serving.catalogue import (
    FAMILIES,
    ModelCatalogue,
    ModelFamily,
    catalogue_for,
    model_families,
)
from serving.config import EngineSettings, SidecarSettings


def test_the_table_holds_every_family_the_settings_accept() -> None:
    assert set(FAMILIES) == set(get_args(ModelFamily)) == set(model_families())
    assert all(key == entry.family for key, entry in FAMILIES.items())
    assert EngineSettings().model == catalogue_for("gpt-oss-20b").hf_id


@pytest.mark.parametrize(
    ("family", "display", "names"),
    [
        ("gpt-oss-20b", "gpt-oss:20b",
         ("gpt-oss-20b", "gpt-oss:20b", "openai/gpt-oss-20b", "gpt-oss:latest", "gpt-oss")),
        ("gpt-oss-120b", "gpt-oss:120b", ("gpt-oss-120b", "gpt-oss:120b", "openai/gpt-oss-120b")),
    ],
)
def test_names_of_each_family(family: str, display: str, names: tuple[str, ...]) -> None:
    entry = catalogue_for(family)
    assert entry.primary == family and entry.display_name == display
    assert entry.names() == names
    assert entry.parameters > 20e9 and entry.size_bytes > 10e9


def test_served_names_may_be_replaced_and_keep_the_family() -> None:
    renamed = catalogue_for("gpt-oss-120b", ["big", "Big:Model"])
    assert (renamed.family, renamed.primary, renamed.display_name) == (
        "gpt-oss-120b", "big", "big:model")
    assert renamed.parameters == FAMILIES["gpt-oss-120b"].parameters
    assert catalogue_for("gpt-oss-20b", []) == catalogue_for("gpt-oss-20b", None) == FAMILIES[
        "gpt-oss-20b"]


def test_unknown_family_and_no_names_are_refused() -> None:
    with pytest.raises(ValueError, match="known: gpt-oss-20b, gpt-oss-120b"):
        catalogue_for("llama3")
    with pytest.raises(ValueError, match="served name"):
        ModelCatalogue(family="gpt-oss-20b", served_names=())


def test_sidecar_settings_take_the_family_names_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in ("SERVING_MODEL_FAMILY", "SERVING_SERVED_MODEL_NAMES"):
        monkeypatch.delenv(key, raising=False)
    assert SidecarSettings().catalogue() == FAMILIES["gpt-oss-20b"]
    monkeypatch.setenv("SERVING_MODEL_FAMILY", "gpt-oss-120b")
    assert SidecarSettings().served_model_names == FAMILIES["gpt-oss-120b"].served_names
    monkeypatch.setenv("SERVING_SERVED_MODEL_NAMES", '["big"]')
    assert SidecarSettings().catalogue() == catalogue_for("gpt-oss-120b", ["big"])


def test_with_catalogue_is_what_the_launcher_hands_the_sidecar() -> None:
    settings = SidecarSettings(model_family="gpt-oss-20b").with_catalogue(FAMILIES["gpt-oss-120b"])
    assert (settings.model_family, settings.served_model_names) == (
        "gpt-oss-120b", FAMILIES["gpt-oss-120b"].served_names)
    assert settings.catalogue() == FAMILIES["gpt-oss-120b"]
