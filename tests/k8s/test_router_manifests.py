"""components/router, components/inference-pool and overlays/h100-router: rendered offline,
schema-valid, and wired as the policy says (replicas reachable only from the router)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from serving.launcher.router_config import KUBERNETES, render_haproxy_config
from tests.k8s.manifests import K8S_DIR, Objects, composed, kustomize, only

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "inferencepool-v1.json").read_text())
ROUTER_DIR = K8S_DIR / "components" / "router"


@pytest.fixture(scope="module")
def overlay() -> Objects:
    return kustomize(K8S_DIR / "overlays" / "h100-router")


@pytest.fixture(scope="module")
def with_pool(tmp_path_factory: pytest.TempPathFactory) -> Objects:
    tmp = tmp_path_factory.mktemp("h100-router-pool")
    return kustomize(composed(tmp, "h100-router", ("inference-pool",)))


def _server_labels(objects: Objects) -> dict[str, str]:
    deployment = only(objects, "Deployment", "gpt-oss-serving")
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_builtin_object_validates(overlay: Objects) -> None:
    for obj in overlay:
        kubernetes_validate.validate(obj, "1.32.0", strict=True)


def test_public_service_selects_only_the_router(overlay: Objects) -> None:
    service = only(overlay, "Service", "gpt-oss-serving")
    router = only(overlay, "Deployment", "gpt-oss-serving-router")
    router_labels = router["spec"]["template"]["metadata"]["labels"]
    assert _selects(service["spec"]["selector"], router_labels)
    assert not _selects(service["spec"]["selector"], _server_labels(overlay))


def test_headless_service_lists_the_replicas_on_the_sidecar_port(overlay: Objects) -> None:
    service = only(overlay, "Service", "gpt-oss-serving-replicas")
    assert service["spec"]["clusterIP"] == "None"
    assert _selects(service["spec"]["selector"], _server_labels(overlay))
    assert [p["port"] for p in service["spec"]["ports"]] == [8000]
    assert only(overlay, "Deployment", "gpt-oss-serving")["spec"]["replicas"] == 2


def test_replicas_accept_the_api_only_from_the_router(overlay: Objects) -> None:
    policy = only(overlay, "NetworkPolicy", "gpt-oss-serving")
    assert _selects(policy["spec"]["podSelector"]["matchLabels"], _server_labels(overlay))
    api_rules = [r for r in policy["spec"]["ingress"]
                 if any(p["port"] == 8000 for p in r["ports"])]
    assert len(api_rules) == 1
    sources = api_rules[0]["from"]
    router_labels = only(overlay, "Deployment", "gpt-oss-serving-router")[
        "spec"]["template"]["metadata"]["labels"]
    assert sources == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "gpt-oss-serving", "app.kubernetes.io/component": "router"}}}]
    assert _selects(sources[0]["podSelector"]["matchLabels"], router_labels)


def test_router_container_is_locked_down_and_reads_the_rendered_config(overlay: Objects) -> None:
    router = only(overlay, "Deployment", "gpt-oss-serving-router")
    spec = router["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert not [o for o in overlay if o["kind"] in ("Role", "ClusterRole", "RoleBinding")]
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    config_map = next(o for o in overlay if o["kind"] == "ConfigMap"
                      and o["metadata"]["name"].startswith("gpt-oss-serving-router"))
    assert config_map["data"]["haproxy.cfg"] == render_haproxy_config(KUBERNETES)


def test_committed_haproxy_cfg_is_the_rendered_one() -> None:
    committed = (ROUTER_DIR / "haproxy.cfg").read_text(encoding="utf-8")
    assert committed == render_haproxy_config(KUBERNETES), "run make k8s-router-config"


def test_haproxy_accepts_the_kubernetes_config() -> None:
    haproxy = _haproxy()
    env = {**os.environ, "POD_NAMESPACE": "default", "CLUSTER_DOMAIN": "cluster.local"}
    result = subprocess.run([haproxy, "-c", "-f", str(ROUTER_DIR / "haproxy.cfg")],
                            capture_output=True, text=True, env=env, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_router_dockerfile_is_hadolint_clean_and_pins_haproxy() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    dockerfile = ROUTER_DIR / "Dockerfile"
    result = subprocess.run([str(hadolint), str(dockerfile)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    text = dockerfile.read_text(encoding="utf-8")
    assert "ARG HAPROXY_VERSION=2.6." in text and '"haproxy=${HAPROXY_VERSION}"' in text
    assert "USER 10001" in text


def test_inference_pool_validates_against_the_v1_schema(with_pool: Objects) -> None:
    pool = only(with_pool, "InferencePool", "gpt-oss-serving")
    jsonschema.validate(pool, SCHEMA)


@pytest.mark.parametrize("broken", [
    {"targetPorts": []},
    {"targetPorts": [{"number": 8000, "name": "http"}]},
    {"selector": {"app": "x"}},
    {"endpointPickerRef": {"port": {"number": 9002}}},
    {"endpointPickerRef": {"name": "epp"}},
    {"endpointPickerRef": {"name": "epp", "portNumber": 9002}},
])
def test_the_schema_rejects_what_v1_rejects(with_pool: Objects, broken: dict[str, Any]) -> None:
    pool = json.loads(json.dumps(only(with_pool, "InferencePool", "gpt-oss-serving")))
    pool["spec"].update(broken)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(pool, SCHEMA)


def test_inference_pool_selects_the_replicas_on_their_container_port(with_pool: Objects) -> None:
    pool = only(with_pool, "InferencePool", "gpt-oss-serving")
    assert pool["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "gpt-oss-serving", "app.kubernetes.io/component": "server"}
    assert _selects(pool["spec"]["selector"]["matchLabels"], _server_labels(with_pool))
    router = only(with_pool, "Deployment", "gpt-oss-serving-router")
    assert not _selects(pool["spec"]["selector"]["matchLabels"],
                        router["spec"]["template"]["metadata"]["labels"])
    container = only(with_pool, "Deployment", "gpt-oss-serving")["spec"]["template"]["spec"][
        "containers"][0]
    ports = {p["containerPort"] for p in container["ports"]}
    assert [p["number"] for p in pool["spec"]["targetPorts"]] == [8000]
    assert 8000 in ports


def _haproxy() -> str:
    from shutil import which

    found = which("haproxy")
    if found is None:
        pytest.fail("haproxy not installed: `make test-router-services` installs it (apt)")
    return found


