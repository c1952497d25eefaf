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


def _env_values(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
async def test_sidecar_from_the_overlay_plan_turns_ready(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod's sidecar reads the overlay's plan.env; against an engine that serves exactly
    the plan's names, /ready is 200 (it was 503 forever for gpt-oss-120b: issue 13)."""
    import httpx

    from serving.config import SidecarSettings
    from serving.sidecar.app import create_app
    from serving.sidecar.keys import create_key

    render = _render_plan()
    spec = next(o for o in render.GPU_OVERLAYS if o.directory == overlay)
    plan = render.plan_json(spec)
    env = _env_values(render.env_file(spec, plan))
    for key in [k for k in list(__import__("os").environ) if k.startswith("SERVING_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    served = list(plan["served_model_names"])

    def engine(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            data = [{"id": name, "root": plan["model"], "max_model_len": plan["max_model_len"]}
                    for name in served]
            return httpx.Response(200, json={"object": "list", "data": data})
        return httpx.Response(200, text="")

    keys = tmp_path / "keys.json"
    create_key(keys, user="admin", permissions=["all"])
    settings = SidecarSettings(keys_file=keys, aliases_file=tmp_path / "aliases.json")
    assert int(env["SERVING_WORKERS"]) == plan["sidecar_workers"] >= 1
    app = create_app(settings, transport=httpx.MockTransport(engine))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
            ready = await client.get("/ready")
    assert ready.status_code == 200, ready.text
