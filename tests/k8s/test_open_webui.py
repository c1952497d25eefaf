"""The open-webui component (k8s/components/open-webui): rendered onto overlays, offline.

It adds a second workload, so the server-only rules of test_k8s_policy.py ("the only Service
is the sidecar's") do not apply to these renderings; the generic ones (locked-down pods,
pinned images, no plaintext keys, schemas) do, plus the component's own: it reaches only
the sidecar, gets its key from a Secret, and keeps its data on its PVC.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.k8s.manifests import Objects, composed, kustomize, only
from tests.k8s.test_k8s_policy import (
    SIDECAR_PORT,
    rule_images_pinned,
    rule_no_plaintext_keys,
    rule_security,
)
from tests.k8s.test_k8s_render import schema_errors

SERVER_LABELS = {"app.kubernetes.io/name": "gpt-oss-serving",
                 "app.kubernetes.io/component": "server"}
WEBUI_LABELS = {"app.kubernetes.io/name": "open-webui"}
SECRET = "gpt-oss-serving-open-webui"
SIDECAR = "http://gpt-oss-serving:8000"
OVERLAYS = ("cpu-smoke", "h100")


@pytest.fixture(scope="module")
def renderings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Objects]:
    return {
        overlay: kustomize(composed(tmp_path_factory.mktemp(f"{overlay}-webui"), overlay,
                                    ("open-webui",)))
        for overlay in OVERLAYS
    }


def webui_container(objects: Objects) -> dict[str, Any]:
    spec = only(objects, "Deployment", "open-webui")["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    container: dict[str, Any] = spec["containers"][0]
    return container


def env_of(objects: Objects) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in webui_container(objects)["env"]}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def rule_reaches_only_the_sidecar(objects: Objects) -> list[str]:
    """Egress: the server pods on the sidecar port, and DNS; nothing else, no ipBlock."""
    pods = only(objects, "Deployment", "open-webui")["spec"]["template"]["metadata"]["labels"]
    policies = [p for p in objects if p["kind"] == "NetworkPolicy"
                and _selects(p["spec"]["podSelector"], pods)]
    if len(policies) != 1:
        return [f"{len(policies)} NetworkPolicies select the open-webui pod, want 1"]
    spec = policies[0]["spec"]
    out = [] if "Egress" in spec.get("policyTypes", []) else ["egress is not restricted"]
    for rule in spec.get("egress", []):
        peers, ports = rule.get("to"), rule.get("ports")
        if not peers or not ports:
            out.append(f"egress rule open to every {'peer' if not peers else 'port'}: {rule}")
            continue
        numbers = {p.get("port") for p in ports}
        for peer in peers:
            if "ipBlock" in peer:
                out.append(f"egress to an ipBlock: {peer}")
            elif numbers == {SIDECAR_PORT} and "namespaceSelector" not in peer:
                if not _selects(peer.get("podSelector", {}), SERVER_LABELS):
                    out.append(f"port 8000 open to pods other than the server: {peer}")
            elif numbers == {53}:
                if peer.get("podSelector", {}).get("matchLabels") != {"k8s-app": "kube-dns"}:
                    out.append(f"DNS open to more than kube-dns: {peer}")
            else:
                out.append(f"egress to {peer} on ports {sorted(numbers, key=str)}")
    ingress_ports = {p["port"] for r in spec.get("ingress", []) for p in r.get("ports", [])}
    if ingress_ports != {8080} or any("ports" not in r for r in spec.get("ingress", [])):
        out.append(f"ingress admits ports {ingress_ports or 'all'}, want only 8080")
    return out


def rule_connections(objects: Objects) -> list[str]:
    """Both connection types point at the sidecar Service, keyed from the Secret."""
    env = env_of(objects)
    out = []
    for name, value in (("OPENAI_API_BASE_URL", f"{SIDECAR}/v1"), ("OLLAMA_BASE_URL", SIDECAR),
                        ("RAG_OPENAI_API_BASE_URL", f"{SIDECAR}/v1"),
                        ("ENABLE_OPENAI_API", "true"), ("ENABLE_OLLAMA_API", "true"),
                        ("OFFLINE_MODE", "true"), ("RAG_EMBEDDING_ENGINE", "openai")):
        if env.get(name, {}).get("value") != value:
            out.append(f"{name} is {env.get(name)}, want {value}")
    for name, key in (("OPENAI_API_KEY", "api-key"), ("WEBUI_SECRET_KEY", "webui-secret-key")):
        ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef", {})
        if (ref.get("name"), ref.get("key")) != (SECRET, key) or ref.get("optional"):
            out.append(f"{name} must come from Secret {SECRET} key {key}")
    names = [e["name"] for e in webui_container(objects)["env"]]
    for name in ("OLLAMA_API_CONFIGS", "RAG_OPENAI_API_KEY"):
        value = env.get(name, {}).get("value", "")
        # Kubernetes expands $(VAR) only for variables defined earlier in the list.
        if "$(OPENAI_API_KEY)" not in value or names.index(name) < names.index("OPENAI_API_KEY"):
            out.append(f"{name} must carry $(OPENAI_API_KEY), defined after it")
    configs = env.get("OLLAMA_API_CONFIGS", {}).get("value", "{}")
    if json.loads(configs).get("0", {}).get("key") != "$(OPENAI_API_KEY)":
        out.append("OLLAMA_API_CONFIGS['0'].key must be the key (index 0: the one Ollama URL)")
    return out


def rule_storage(objects: Objects) -> list[str]:
    spec = only(objects, "Deployment", "open-webui")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in webui_container(objects)["volumeMounts"]}
    out = []
    claim = mounts.get("/app/backend/data", {}).get("persistentVolumeClaim", {}).get("claimName")
    if claim is None or not any(o["kind"] == "PersistentVolumeClaim"
                                and o["metadata"]["name"] == claim for o in objects):
        out.append("/app/backend/data (users, chats) must be the component's PVC")
    if "emptyDir" not in mounts.get("/tmp", {}):
        out.append("/tmp must be an emptyDir (STATIC_DIR and HOME live there)")
    env = env_of(objects)
    for name, prefix in (("DATA_DIR", "/app/backend/data"), ("STATIC_DIR", "/tmp/"),
                         ("HOME", "/tmp")):
        if not env.get(name, {}).get("value", "").startswith(prefix):
            out.append(f"{name} must be under {prefix}")
    deployment = only(objects, "Deployment", "open-webui")["spec"]
    if deployment.get("replicas", 1) != 1 or deployment["strategy"]["type"] != "Recreate":
        out.append("one replica, Recreate: SQLite on a ReadWriteOnce volume has one writer")
    return out


def rule_service(objects: Objects) -> list[str]:
    svc = only(objects, "Service", "open-webui")
    ports = [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]]
    out = [] if ports == [(8080, "http")] else [f"open-webui Service exposes {ports}"]
    if svc["spec"].get("type", "ClusterIP") != "ClusterIP":
        out.append("open-webui Service must be ClusterIP (add an Ingress to publish it)")
    if svc["spec"]["selector"] != WEBUI_LABELS:
        out.append("open-webui Service must select the open-webui pods")
    server = only(objects, "Service", "gpt-oss-serving")["spec"]
    if [(p["port"], p["targetPort"]) for p in server["ports"]] != [(SIDECAR_PORT, "http")]:
        out.append("the server's Service changed")
    return out


RULES: dict[str, Callable[[Objects], list[str]]] = {
    "egress": rule_reaches_only_the_sidecar,
    "connections": rule_connections,
    "storage": rule_storage,
    "service": rule_service,
    "security": rule_security,
    "images": rule_images_pinned,
    "keys": rule_no_plaintext_keys,
}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("rule", RULES)
def test_component_policy_holds(renderings: dict[str, Objects], overlay: str, rule: str) -> None:
    assert RULES[rule](renderings[overlay]) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_component_objects_validate(renderings: dict[str, Objects], overlay: str) -> None:
    added = [o for o in renderings[overlay]
             if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "open-webui"]
    assert sorted(o["kind"] for o in added) == [
        "Deployment", "NetworkPolicy", "PersistentVolumeClaim", "Service"]
    assert [e for o in added for e in schema_errors(o)] == []


def test_no_secret_with_a_value_is_committed(renderings: dict[str, Objects]) -> None:
    """Applying the manifests must never overwrite the user's Open WebUI Secret."""
    assert not [o for o in renderings["h100"]
                if o["kind"] == "Secret" and o["metadata"]["name"] == SECRET]


def _webui_policy(o: Objects) -> dict[str, Any]:
    return only(o, "NetworkPolicy", "open-webui")


def _egress_anywhere(o: Objects) -> None:
    _webui_policy(o)["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                               "ports": [{"port": 443}]})


def _egress_all_ports(o: Objects) -> None:
    _webui_policy(o)["spec"]["egress"][0].pop("ports")


def _egress_unrestricted(o: Objects) -> None:
    _webui_policy(o)["spec"]["policyTypes"] = ["Ingress"]


def _sidecar_port_to_everyone(o: Objects) -> None:
    _webui_policy(o)["spec"]["egress"][0]["to"] = [{"podSelector": {}}]


def _plaintext_key(o: Objects) -> None:
    env = webui_container(o)["env"]
    env[0] = {"name": "OPENAI_API_KEY", "value": "sk-gos-" + "x" * 43}


def _key_expanded_too_early(o: Objects) -> None:
    env = webui_container(o)["env"]
    configs = next(e for e in env if e["name"] == "OLLAMA_API_CONFIGS")
    env.remove(configs)
    env.insert(0, configs)


def _ollama_elsewhere(o: Objects) -> None:
    next(e for e in webui_container(o)["env"]
         if e["name"] == "OLLAMA_BASE_URL")["value"] = "http://ollama:11434"


def _data_in_emptydir(o: Objects) -> None:
    spec = only(o, "Deployment", "open-webui")["spec"]["template"]["spec"]
    next(v for v in spec["volumes"] if v["name"] == "data").pop("persistentVolumeClaim")
    next(v for v in spec["volumes"] if v["name"] == "data")["emptyDir"] = {}


def _two_replicas(o: Objects) -> None:
    only(o, "Deployment", "open-webui")["spec"]["replicas"] = 2


def _node_port(o: Objects) -> None:
    only(o, "Service", "open-webui")["spec"]["type"] = "NodePort"


def _writable_root(o: Objects) -> None:
    webui_container(o)["securityContext"]["readOnlyRootFilesystem"] = False


def _latest(o: Objects) -> None:
    webui_container(o)["image"] = "ghcr.io/open-webui/open-webui:latest"


@pytest.mark.parametrize(("rule", "breakage"), [
    ("egress", _egress_anywhere), ("egress", _egress_all_ports), ("egress", _egress_unrestricted),
    ("egress", _sidecar_port_to_everyone), ("connections", _plaintext_key),
    ("keys", _plaintext_key), ("connections", _key_expanded_too_early),
    ("connections", _ollama_elsewhere), ("storage", _data_in_emptydir),
    ("storage", _two_replicas), ("service", _node_port), ("security", _writable_root),
    ("images", _latest),
])
def test_rule_catches_breakage(
    renderings: dict[str, Objects], rule: str, breakage: Callable[[Objects], None]
) -> None:
    broken = copy.deepcopy(renderings["cpu-smoke"])
    breakage(broken)
    assert RULES[rule](broken) != []

