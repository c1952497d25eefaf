"""Policy over the rendered manifests: what must hold however the overlays evolve.

Each rule is a function from rendered objects to a list of violations; the tests assert
there are none, and that each rule does fire on a deliberately broken copy (so a rule that
silently checks nothing cannot pass).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.k8s.manifests import GPU_OVERLAYS, OVERLAYS, Objects, only

SIDECAR_PORT = 8000
METRICS_PORT = 8090
VLLM_PORT = 8001
WRITABLE_PATHS = {"/tmp", "/dev/shm", "/var/lib/serving", "/home/serving"}
Rule = Callable[[Objects], list[str]]


def pod_specs(objects: Objects) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def containers(objects: Objects) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for where, spec in pod_specs(objects):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{where}/{c['name']}", c, spec


def server_container(objects: Objects) -> dict[str, Any]:
    spec = only(objects, "Deployment", "gpt-oss-serving")["spec"]["template"]["spec"]
    containers_ = spec["containers"]
    assert len(containers_) == 1, "one container: the launcher supervises vLLM and the sidecar"
    return containers_[0]


def server_services(objects: Objects) -> list[dict[str, Any]]:
    """Services that route to the server pods (other components bring their own)."""
    return [o for o in objects if o["kind"] == "Service"
            and o["spec"].get("selector", {}).get("app.kubernetes.io/component") == "server"]


def server_network_policy(objects: Objects) -> dict[str, Any] | None:
    found = [o for o in objects if o["kind"] == "NetworkPolicy"
             and o["spec"]["podSelector"].get("matchLabels", {})
             .get("app.kubernetes.io/component") == "server"]
    assert len(found) <= 1, "one NetworkPolicy for the server pods"
    return found[0] if found else None


def rule_service_exposes_only_sidecar(objects: Objects) -> list[str]:
    out = []
    for svc in server_services(objects):
        ports = [(p["port"], p.get("targetPort")) for p in svc["spec"]["ports"]]
        if ports != [(SIDECAR_PORT, "http")]:
            out.append(f"Service/{svc['metadata']['name']} exposes {ports}, want only 8000->http")
        if svc["spec"].get("type", "ClusterIP") != "ClusterIP":
            out.append(f"Service/{svc['metadata']['name']} is {svc['spec']['type']}")
    server = server_container(objects)
    named = {p["name"]: p["containerPort"] for p in server.get("ports", [])}
    if named != {"http": SIDECAR_PORT, "metrics": METRICS_PORT}:
        out.append(f"server container ports {named}, want http: 8000 and metrics: 8090")
    np = server_network_policy(objects)
    ingress = np["spec"].get("ingress", []) if np else []
    allowed = {p["port"] for rule in ingress for p in rule.get("ports", [])}
    if np and (allowed != {SIDECAR_PORT, METRICS_PORT} or any("ports" not in r for r in ingress)):
        out.append(f"NetworkPolicy/{np['metadata']['name']} admits ports {allowed or 'all'}")
    for rule in ingress:
        if METRICS_PORT in {p["port"] for p in rule.get("ports", [])} and not _only_named_namespaces(rule.get("from", [])):
            out.append(f"metrics port {METRICS_PORT} admitted beyond the monitoring namespace")
    if VLLM_PORT in _all_ints(objects, "port", "containerPort", "targetPort"):
        out.append("vLLM's port 8001 appears in a Service, container port or policy")
    return out


def _only_named_namespaces(peers: list[dict[str, Any]]) -> bool:
    """Every peer is a namespace picked by name (no ipBlock, no empty selector)."""
    return bool(peers) and all(
        set(peer) == {"namespaceSelector"}
        and "kubernetes.io/metadata.name" in peer["namespaceSelector"].get("matchLabels", {})
        for peer in peers
    )


def _all_ints(node: Any, *keys: str) -> set[int]:
    found: set[int] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k in keys and isinstance(v, int):
                found.add(v)
            found |= _all_ints(v, *keys)
    elif isinstance(node, list):
        for item in node:
            found |= _all_ints(item, *keys)
    return found


def rule_probes(objects: Objects) -> list[str]:
    server = server_container(objects)
    want = {"startupProbe": "/ready", "readinessProbe": "/ready", "livenessProbe": "/live"}
    out = []
    for probe, path in want.items():
        got = server.get(probe, {}).get("httpGet", {})
        if got.get("path") != path or got.get("port") not in ("http", SIDECAR_PORT):
            out.append(f"{probe} is {got or 'missing'}, want GET {path} on the sidecar port")
    startup = server.get("startupProbe", {})
    budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    if budget < 1800:
        out.append(f"startupProbe allows {budget}s, a cold model load needs >= 1800s")
    spec = only(objects, "Deployment", "gpt-oss-serving")["spec"]["template"]["spec"]
    if "preStop" not in server.get("lifecycle", {}):
        out.append("no preStop hook: streams are cut while the endpoint is still routed")
    if spec.get("terminationGracePeriodSeconds", 30) < 60:
        out.append("terminationGracePeriodSeconds < 60: in-flight streams cannot finish")
    return out


def rule_security(objects: Objects) -> list[str]:
    out = []
    for where, spec in pod_specs(objects):
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("runAsNonRoot") is not True or pod_sc.get("runAsUser", 0) == 0:
            out.append(f"{where}: pod must set runAsNonRoot and a non-zero runAsUser")
        if spec.get("automountServiceAccountToken") is not False:
            out.append(f"{where}: service account token is mounted")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            out.append(f"{where}: shares a host namespace")
        if spec.get("enableServiceLinks") is not False:
            out.append(f"{where}: service links on (a Service named serving sets SERVING_PORT)")
    for where, c, _spec in containers(objects):
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            out.append(f"{where}: privileged")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc["capabilities"].get("add"):
            out.append(f"{where}: must drop ALL capabilities and add none")
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append(f"{where}: root filesystem must be read-only")
    for sa in (o for o in objects if o["kind"] == "ServiceAccount"):
        if sa.get("automountServiceAccountToken") is not False:
            out.append(f"ServiceAccount/{sa['metadata']['name']} mounts its token")
    return out


def rule_writable_paths(objects: Objects) -> list[str]:
    spec = only(objects, "Deployment", "gpt-oss-serving")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in server_container(objects)["volumeMounts"]}
    out = [f"{p} is not an emptyDir" for p in WRITABLE_PATHS if "emptyDir" not in mounts.get(p, {})]
    if mounts.get("/dev/shm", {}).get("emptyDir", {}).get("medium") != "Memory":
        out.append("/dev/shm must be a memory-backed emptyDir")
    if "persistentVolumeClaim" not in mounts.get("/models", {}):
        out.append("/models (model cache) must be the PVC")
    keys = mounts.get("/etc/serving/keys", {})
    if keys.get("secret", {}).get("secretName") != "gpt-oss-serving-keys":
        out.append("the key file must come from the Secret gpt-oss-serving-keys")
    env = _launcher_env(objects)
    for name, path in (("SERVING_STATE_DIR", "/var/lib/serving"), ("HF_HOME", "/models/"),
                       ("SERVING_KEYS_FILE", "/etc/serving/keys/")):
        if not env.get(name, "").startswith(path):
            out.append(f"{name}={env.get(name)!r} is not under {path}")
    return out


def _launcher_env(objects: Objects) -> dict[str, str]:
    ref = server_container(objects)["envFrom"][0]["configMapRef"]["name"]
    return dict(only(objects, "ConfigMap", ref)["data"])


def rule_no_plaintext_keys(objects: Objects) -> list[str]:
    text = json.dumps(objects)
    out = [f"plaintext API key in the manifests: {m[:10]}..."
           for m in re.findall(r"sk-[A-Za-z0-9_-]{8,}", text)]
    for secret in (o for o in objects if o["kind"] == "Secret"):
        for name, value in {**secret.get("data", {}), **secret.get("stringData", {})}.items():
            raw = value if name in secret.get("stringData", {}) else _b64(value)
            keys = json.loads(raw).get("keys", {}) if name.endswith(".json") else {}
            out += [f"{name}: key {k[:12]} is not stored as a sha256 hash"
                    for k in keys if not re.fullmatch(r"sha256:[0-9a-f]{64}", k)]
            out += [f"{name}: {k[:12]} is an active key in committed manifests"
                    for k, rec in keys.items() if not rec.get("revoked")]
    return out


def _b64(value: str) -> str:
    import base64

    return base64.b64decode(value).decode("utf-8")


def rule_images_pinned(objects: Objects) -> list[str]:
    out = []
    for where, c, _ in containers(objects):
        image = c["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        if "@sha256:" not in image and (not tag or tag == "latest"):
            out.append(f"{where}: image {image} is not pinned to a tag or digest")
    return out


def rule_gpu(objects: Objects, *, gpu: bool) -> list[str]:
    server = server_container(objects)
    spec = only(objects, "Deployment", "gpt-oss-serving")["spec"]["template"]["spec"]
    limits = server["resources"].get("limits", {})
    requests = server["resources"].get("requests", {})
    out = [f"no {kind} for {r}" for kind, d in (("request", requests), ("limit", limits))
           for r in ("cpu", "memory") if r not in d]
    has_gpu = "nvidia.com/gpu" in limits
    if gpu:
        planned = spec_annotations(objects).get("gpt-oss-serving.plan/gpu", "0 x ?").split(" x ")[0]
        if not str(limits.get("nvidia.com/gpu")) == str(requests.get("nvidia.com/gpu")) == planned:
            out.append(f"GPU overlay must request and limit nvidia.com/gpu to the plan's {planned}")
        if not any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", [])):
            out.append("GPU overlay must tolerate the nvidia.com/gpu taint")
        if "nvidia.com/gpu.product" not in json.dumps(spec.get("affinity", {})):
            out.append("GPU overlay must select its GPU product")
        if _launcher_env(objects).get("SERVING_ENGINE") != "cuda":
            out.append("GPU overlay must run the CUDA engine")
    elif has_gpu or spec.get("tolerations"):
        out.append("CPU overlay must not ask for a GPU")
    return out


def spec_annotations(objects: Objects) -> dict[str, str]:
    template = only(objects, "Deployment", "gpt-oss-serving")["spec"]["template"]
    annotations: dict[str, str] = template["metadata"].get("annotations", {})
    return annotations


RULES: dict[str, Rule] = {
    "service": rule_service_exposes_only_sidecar,
    "probes": rule_probes,
    "security": rule_security,
    "writable": rule_writable_paths,
    "keys": rule_no_plaintext_keys,
    "images": rule_images_pinned,
}
RENDERINGS = (*OVERLAYS, *(f"{o}+all" for o in OVERLAYS))


@pytest.mark.parametrize("rendering", RENDERINGS)
@pytest.mark.parametrize("rule", RULES)
def test_policy_holds(rendered: dict[str, Objects], rendering: str, rule: str) -> None:
    assert RULES[rule](rendered[rendering]) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gpu_only_where_planned(rendered: dict[str, Objects], overlay: str) -> None:
    assert rule_gpu(rendered[overlay], gpu=overlay in GPU_OVERLAYS) == []


def test_loadtest_job_is_locked_down_and_uses_the_bench_interface(
    rendered: dict[str, Objects],
) -> None:
    objects = rendered["loadtest"]
    assert rule_security(objects) == [] and rule_images_pinned(objects) == []
    locust = only(objects, "Job")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in locust["env"]}
    assert env["BASE_URL"]["value"] == "http://gpt-oss-serving:8000"
    assert env["API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "gpt-oss-serving-loadtest-key"
    assert locust["command"][-3:] == ["-m", "benchmarks", "run"]
    args = locust["args"]
    assert args[args.index("--base-url") + 1] == "$(BASE_URL)"
    assert args[args.index("--api-key") + 1] == "$(API_KEY)"


def _mutate(objects: Objects, change: Callable[[Objects], None]) -> Objects:
    broken = copy.deepcopy(objects)
    change(broken)
    return broken


def _server(objects: Objects) -> dict[str, Any]:
    return server_container(objects)


def _expose_vllm(o: Objects) -> None:
    only(o, "Service")["spec"]["ports"].append({"name": "vllm", "port": 8001, "targetPort": 8001})


def _expose_metrics(o: Objects) -> None:
    only(o, "Service")["spec"]["ports"].append(
        {"name": "metrics", "port": 8090, "targetPort": "metrics"})


def _metrics_from_everywhere(o: Objects) -> None:
    rules = only(o, "NetworkPolicy")["spec"]["ingress"]
    next(r for r in rules if r["ports"][0]["port"] == 8090)["from"] = [{"namespaceSelector": {}}]


def _drop_liveness(o: Objects) -> None:
    del _server(o)["livenessProbe"]


def _readiness_on_health(o: Objects) -> None:
    _server(o)["readinessProbe"]["httpGet"]["path"] = "/health"


def _short_startup(o: Objects) -> None:
    _server(o)["startupProbe"]["failureThreshold"] = 30


def _root(o: Objects) -> None:
    only(o, "Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0


def _writable_root(o: Objects) -> None:
    _server(o)["securityContext"]["readOnlyRootFilesystem"] = False


def _plaintext_key(o: Objects) -> None:
    _server(o).setdefault("env", []).append({"name": "API_KEY", "value": "sk-gos-" + "x" * 43})


def _active_key(o: Objects) -> None:
    record = {"key_id": "key_x", "user": "x", "permissions": ["chat"], "revoked": False}
    keys = {"version": 1, "keys": {"sha256:" + "0" * 64: record}}
    o.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "committed-keys"},
              "stringData": {"keys.json": json.dumps(keys)}})


def _disk_shm(o: Objects) -> None:
    spec = only(o, "Deployment")["spec"]["template"]["spec"]
    next(v for v in spec["volumes"] if v["name"] == "dshm")["emptyDir"].pop("medium")


def _latest(o: Objects) -> None:
    _server(o)["image"] = "registry.example.com/gpt-oss-serving:latest"


def _open_policy(o: Objects) -> None:
    only(o, "NetworkPolicy")["spec"]["ingress"][0].pop("ports")


@pytest.mark.parametrize(("rule", "breakage"), [
    ("service", _expose_vllm), ("service", _open_policy), ("service", _expose_metrics),
    ("service", _metrics_from_everywhere), ("probes", _drop_liveness),
    ("probes", _readiness_on_health), ("probes", _short_startup), ("security", _root),
    ("security", _writable_root), ("keys", _plaintext_key), ("keys", _active_key),
    ("writable", _disk_shm), ("images", _latest),
])
def test_rule_catches_breakage(
    rendered: dict[str, Objects], rule: str, breakage: Callable[[Objects], None]
) -> None:
    assert RULES[rule](_mutate(rendered["h100"], breakage)) != []


def test_gpu_rule_catches_a_missing_gpu(rendered: dict[str, Objects]) -> None:
    def no_gpu(o: Objects) -> None:
        del _server(o)["resources"]["limits"]["nvidia.com/gpu"]

    assert rule_gpu(_mutate(rendered["rtx3090"], no_gpu), gpu=True) != []
    assert rule_gpu(rendered["rtx3090"], gpu=False) != []
