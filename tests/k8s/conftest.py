"""Fixtures: the kustomize tree rendered once per session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.k8s.manifests import (
    K8S_DIR,
    OPTIONAL_COMPONENTS,
    OVERLAYS,
    Objects,
    composed,
    kustomize,
    only,
)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Objects]:
    """Every way the manifests are meant to be applied, rendered once.

    Keys: each overlay; ``<overlay>+all`` = that overlay with every optional component;
    ``loadtest`` = the standalone load-test kustomization.
    """
    out: dict[str, Objects] = {}
    for overlay in OVERLAYS:
        out[overlay] = kustomize(K8S_DIR / "overlays" / overlay)
        tmp = tmp_path_factory.mktemp(f"{overlay}-all")
        out[f"{overlay}+all"] = kustomize(composed(tmp, overlay, OPTIONAL_COMPONENTS))
    out["loadtest"] = kustomize(K8S_DIR / "loadtest")
    return out


@pytest.fixture
def find() -> Callable[..., dict[str, Any]]:
    return only
