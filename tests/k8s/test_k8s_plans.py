"""The GPU overlays' plan files are exactly what the plan code produces now (no drift)."""

from __future__ import annotations

import difflib
import importlib.util
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.k8s.manifests import GPU_OVERLAYS, K8S_DIR, REPO_ROOT, Objects, only

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("serving.launcher.plan") is None
    or importlib.util.find_spec("serving.launcher.cli") is None,
    reason="serving.launcher.plan / serving.launcher.cli (the `serving plan` command) missing",
)


def _render_plan() -> ModuleType:
    name = "k8s_render_plan"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, K8S_DIR / "render_plan.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def expected() -> dict[Path, str]:
    files: dict[Path, str] = _render_plan().expected_files()
    return files


def test_committed_plan_files_match_the_plan_code(expected: dict[Path, str]) -> None:
    assert {p.parent.name for p in expected} == set(GPU_OVERLAYS)
    diffs: list[str] = []
    for path, text in expected.items():
        committed = path.read_text(encoding="utf-8") if path.exists() else ""
        if committed != text:
            diffs += difflib.unified_diff(
                committed.splitlines(), text.splitlines(),
                str(path.relative_to(REPO_ROOT)), "serving plan", lineterm="",
            )
    assert not diffs, "plan files are stale; run `make k8s-plans`:\n" + "\n".join(diffs)


def test_a_hand_edit_is_detected(expected: dict[Path, str]) -> None:
    path, text = next(iter(expected.items()))
    assert _render_plan().stale_files({path: text + "SERVING_MAX_MODEL_LEN=4096\n"}) == [path]


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_overlay_runs_the_planned_engine(rendered: dict[str, Objects], overlay: str) -> None:
    deployment = only(rendered[overlay], "Deployment")
    annotations: dict[str, Any] = deployment["spec"]["template"]["metadata"]["annotations"]
    args = shlex.split(annotations["gpt-oss-serving.plan/vllm-args"])
    # vLLM stays on loopback: the Service and the NetworkPolicy never see it.
    assert args[args.index("--host") + 1] == "127.0.0.1"
    assert args[args.index("--port") + 1] == "8001"
    config = only(rendered[overlay], "ConfigMap")["data"]
    assert config["SERVING_MAX_MODEL_LEN"] == annotations["gpt-oss-serving.plan/max-model-len"]
    assert config["SERVING_ENGINE"] == "cuda"
    gpus = annotations["gpt-oss-serving.plan/gpu"].split(" x ")[0]
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == gpus
    assert not any(key.startswith("#") for key in config)
