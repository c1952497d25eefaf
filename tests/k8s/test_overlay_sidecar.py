"""Every overlay's pod: the sidecar, built from the pod's environment, expects the model the
launcher's plan serves (issue 13: the gpt-oss-120b overlay's sidecar kept the 20b names,
so /ready stayed 503 and `gpt-oss:120b` was 404).

Per overlay: render it (kustomize), take the serving container's environment as the kubelet
gives it (the launcher ConfigMap, literal `env` entries), make the plan the launcher makes
from that environment on the overlay's cards, build `SidecarSettings` from the same
environment, and run the sidecar against a fake engine listing exactly the plan's names.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from serving.catalogue import FAMILIES, ModelCatalogue
from serving.config import EngineSettings, SidecarSettings
from serving.launcher.hardware import GPU_PRESETS, Hardware, preset_hardware
from serving.launcher.plan import build_plan
from serving.launcher.plan.model_spec import MODEL_CONFIGS_DIR
from serving.protocols.ollama.models import parameter_size
from tests.fake_vllm import FakeVLLM
from tests.k8s.manifests import K8S_DIR, Objects, kustomize, only
from tests.sidecar_fixture import Start

OVERLAY_DIRS = sorted(p.name for p in (K8S_DIR / "overlays").iterdir() if p.is_dir())
GPU_ANNOTATION = "gpt-oss-serving.plan/gpu"


def test_every_overlay_is_checked() -> None:
    assert {"cpu-smoke", "h100", "h100-router", "h100x2-gpt-oss-120b", "rtx3090"} <= set(
        OVERLAY_DIRS)


def _serving_pod(objects: Objects) -> tuple[dict[str, str], dict[str, str]]:
    """The serving container's environment, and the pod's annotations."""
    template = only(objects, "Deployment", "gpt-oss-serving")["spec"]["template"]
    container = next(c for c in template["spec"]["containers"] if c["name"] == "serving")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(only(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env, dict(template["metadata"].get("annotations") or {})


def _hardware(annotations: dict[str, str]) -> Hardware:
    """The cards the overlay's plan was made for ("2 x NVIDIA H100 80GB HBM3"); none: CPU."""
    if GPU_ANNOTATION not in annotations:
        return Hardware(cpu_count=2)
    count, name = annotations[GPU_ANNOTATION].split(" x ", 1)
    preset = next(key for key, card in GPU_PRESETS.items() if card.name == name)
    return preset_hardware(preset, int(count))


def _smoke_dir(tmp_path: Path) -> Path:
    """A stand-in for the smoke checkpoint the CPU pod builds (its config is all a plan reads)."""
    directory = tmp_path / "smoke"
    directory.mkdir()
    shutil.copy(MODEL_CONFIGS_DIR / "gpt-oss-20b" / "config.json", directory / "config.json")
    return directory


@pytest.fixture(scope="module", params=OVERLAY_DIRS)
def pod(request: pytest.FixtureRequest) -> tuple[str, dict[str, str], dict[str, str]]:
    env, annotations = _serving_pod(kustomize(K8S_DIR / "overlays" / request.param))
    return request.param, env, annotations


async def test_the_sidecar_expects_what_the_plan_serves(
    pod: tuple[str, dict[str, str], dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sidecar: Start,
) -> None:
    overlay, env, annotations = pod
    for key in [k for k in os.environ if k.startswith(("SERVING_", "HF_", "VLLM_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plan = build_plan(_hardware(annotations), EngineSettings(),
                      smoke_model_dir=_smoke_dir(tmp_path))
    # The pod's sidecar settings: its environment, with the key and alias files moved here.
    settings = SidecarSettings(keys_file=tmp_path / "keys.json",
                               aliases_file=tmp_path / "aliases.json")
    catalogue: ModelCatalogue = settings.catalogue()
    assert catalogue == plan.catalogue, overlay
    if GPU_ANNOTATION in annotations:  # rendered by `make k8s-plans`: carried explicitly
        assert {k: env.get(k) for k in plan.sidecar_env()} == plan.sidecar_env()

    engine = FakeVLLM(names=plan.served_model_names, root=plan.model,
                      max_model_len=plan.max_model_len)
    async with sidecar(engine) as sc:
        ready = await sc.client.get("/ready")
        tags = await sc.client.get("/api/tags", headers=sc.auth())
        shown = {name: await sc.client.post("/api/show", headers=sc.auth(), json={"model": name})
                 for name in catalogue.names()}
        others = [c.display_name for c in FAMILIES.values() if c.family != catalogue.family]
        strangers = [await sc.client.post("/api/show", headers=sc.auth(), json={"model": name})
                     for name in others]

    assert ready.status_code == 200, f"{overlay}: {ready.text}"
    assert tags.status_code == 200 and tags.json()["models"][0]["name"] == catalogue.display_name
    for name, response in shown.items():
        assert response.status_code == 200, f"{overlay}: {name}: {response.text}"
        info: dict[str, Any] = response.json()["model_info"]
        assert info["gptoss.context_length"] == plan.max_model_len
    if plan.profile == "cuda":  # the weights are in vLLM's cache: the family's nominal size
        details = shown[catalogue.display_name].json()["details"]
        assert details["parameter_size"] == parameter_size(catalogue.parameters)
    assert [r.status_code for r in strangers] == [404] * len(strangers), overlay
