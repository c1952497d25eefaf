"""Every overlay renders, and every rendered object validates against its schema, offline.

Built-in kinds: the Kubernetes OpenAPI schemas shipped in ``kubernetes-validate`` (strict:
unknown fields are errors), for the oldest and the newest Kubernetes version we support.
Custom resources (KEDA ScaledObject, Prometheus Operator PodMonitor): the typed models
generated from their CRDs (``cloudcoil-models-*``); a field the CRD does not define is
dropped by the model, so a round trip that changes the object is a failure.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from serving.sidecar.keys import KeyLimits, create_key, hash_key
from tests.k8s.manifests import K8S_DIR, OVERLAYS, Objects, composed, kustomize, only

# The oldest Kubernetes the manifests target (PDB unhealthyPodEvictionPolicy is GA from 1.31)
# and the newest schema kubernetes-validate 1.37.0 ships.
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")


def _crd_validators() -> dict[tuple[str, str], Callable[[dict[str, Any]], Any]]:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject
    from cloudcoil.models.prometheus_operator.v1 import PodMonitor

    return {
        ("keda.sh/v1alpha1", "ScaledObject"): ScaledObject.model_validate,
        ("monitoring.coreos.com/v1", "PodMonitor"): PodMonitor.model_validate,
    }


CRD_VALIDATORS = _crd_validators()


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """Why ``obj`` is invalid (empty when it validates)."""
    key = (obj["apiVersion"], obj["kind"])
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    if key in CRD_VALIDATORS:
        try:
            model = CRD_VALIDATORS[key](obj)
        except ValueError as exc:  # pydantic.ValidationError
            return [f"{name}: {exc}"]
        again = model.model_dump(by_alias=True, exclude_none=True, mode="json")
        return [] if again == obj else [f"{name}: fields unknown to the {obj['kind']} CRD"]
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{name} (k8s {version}): {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{name}: {exc.message} (a new CRD needs a validator here)")
    return errors


def test_every_rendering_validates(rendered: dict[str, Objects]) -> None:
    # The renderings share most objects: validate each distinct object once.
    distinct = {json.dumps(o, sort_keys=True): o for objects in rendered.values() for o in objects}
    errors = [e for obj in distinct.values() for e in schema_errors(obj)]
    assert errors == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_whole_deployment(rendered: dict[str, Objects], overlay: str) -> None:
    kinds = sorted(o["kind"] for o in rendered[overlay])
    # No Secret: the key Secret is the operator's (test_k8s_deploy.py).
    assert kinds == sorted([
        "ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim",
        "PodDisruptionBudget", "Service", "ServiceAccount",
    ])
    everything = sorted(o["kind"] for o in rendered[f"{overlay}+all"])
    redis = ["Deployment", "Service", "NetworkPolicy"]
    assert everything == sorted([*kinds, "Job", "PodMonitor", "ScaledObject", *redis])


def test_strict_schema_rejects_an_unknown_field(rendered: dict[str, Objects], find: Any) -> None:
    deployment = copy.deepcopy(find(rendered["h100"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert any("livenesProbe" in e for e in schema_errors(deployment))


@pytest.mark.parametrize("kind", ["ScaledObject", "PodMonitor"])
def test_crd_validation_rejects_an_unknown_field(
    rendered: dict[str, Objects], find: Any, kind: str
) -> None:
    obj = copy.deepcopy(find(rendered["h100+all"], kind))
    obj["spec"]["pollingIntervall"] = 5
    assert schema_errors(obj) != []


def test_crd_validation_rejects_a_wrong_type(rendered: dict[str, Objects], find: Any) -> None:
    obj = copy.deepcopy(find(rendered["h100+all"], "ScaledObject"))
    obj["spec"]["maxReplicaCount"] = "many"
    assert schema_errors(obj) != []


def test_manifests_pass_yamllint() -> None:
    from yamllint import config, linter

    conf = config.YamlLintConfig(file=str(K8S_DIR / ".yamllint.yaml"))
    problems = [
        f"{path.relative_to(K8S_DIR)}:{p.line}: {p.desc}"
        for path in sorted(K8S_DIR.rglob("*.yaml"))
        if not conf.is_file_ignored(str(path.relative_to(K8S_DIR)))
        for p in linter.run(path.read_text(encoding="utf-8"), conf, str(path.relative_to(K8S_DIR)))
    ]
    assert problems == []


USER_CHANGES = """\
images:
  - name: registry.example.com/gpt-oss-serving
    newName: registry.internal/ml/gpt-oss-serving
    newTag: 0.1.0
secretGenerator:
  - name: gpt-oss-serving-keys
    files:
      - keys.json
    options:
      disableNameSuffixHash: true
"""


def test_documented_user_overlay_replaces_image_and_keys(tmp_path: Path) -> None:
    """docs/deploy.md's own-overlay recipe: your registry, your hashed key file (the overlays
    render no key Secret, so yours is created, not replaced)."""
    key, _ = create_key(tmp_path / "keys.json", user="alice", permissions=["chat"],
                        limits=KeyLimits())
    objects = kustomize(composed(tmp_path, "rtx3090", extra=USER_CHANGES))
    secret = only(objects, "Secret", "gpt-oss-serving-keys")
    stored = json.loads(base64.b64decode(secret["data"]["keys.json"]))
    assert list(stored["keys"]) == [hash_key(key)] and key not in json.dumps(objects)
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.internal/ml/gpt-oss-serving:0.1.0"
    keys_volume = next(v for v in pod["volumes"] if v["name"] == "keys")
    assert keys_volume["secret"]["secretName"] == "gpt-oss-serving-keys"
