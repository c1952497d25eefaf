"""What a first real deploy on a GPU cluster needs from the rendered manifests (issue 17).

Each test names the defect it guards against; each failed on the manifests before the fix.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from serving.launcher.process import STOP_GRACE_S
from serving.sidecar.health import LIVE_PROBE_TIMEOUT_S, READY_PROBE_TIMEOUT_S
from serving.sidecar.keys import KeyStore
from tests.k8s.fake_apiserver import fake_apiserver
from tests.k8s.manifests import (
    GPU_OVERLAYS,
    K8S_DIR,
    OVERLAYS,
    REPO_ROOT,
    Objects,
    composed,
    find_kubectl,
    kustomize,
    only,
)

RENDERINGS = (*OVERLAYS, *(f"{o}+all" for o in OVERLAYS))
KEYS_SECRET = "gpt-oss-serving-keys"
# Hugging Face commits of the published checkpoints (the snapshot ids public deployments
# load; check with `hf download <model> --revision <sha> --dry-run` where the hub is reachable).
PINNED_REVISIONS = {
    "openai/gpt-oss-20b": "6cee5e81ee83917806bbde320786a8fb61efebee",
    "openai/gpt-oss-120b": "b5c939de8f754692c1647ca79fbf85e8c1e70f8a",
}
# A cold start is allowed this long to pull the image (the CUDA image is ~10 GB).
IMAGE_PULL_ALLOWANCE_S = 900
# CPU cores the engine side needs besides the sidecar workers: vLLM's API server process,
# plus one busy engine-core process per GPU (one per engine replica on CPU).
ENGINE_API_SERVER_CPUS = 1


def deployment(objects: Objects) -> dict[str, Any]:
    return only(objects, "Deployment", "gpt-oss-serving")


def pod_spec(objects: Objects) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(objects)["spec"]["template"]["spec"]
    return spec


def server(objects: Objects) -> dict[str, Any]:
    return next(c for c in pod_spec(objects)["containers"] if c["name"] == "serving")


def init_container(objects: Objects, name: str) -> dict[str, Any] | None:
    return next((c for c in pod_spec(objects).get("initContainers", []) if c["name"] == name),
                None)


def launcher_env(objects: Objects) -> dict[str, str]:
    ref = server(objects)["envFrom"][0]["configMapRef"]["name"]
    return dict(only(objects, "ConfigMap", ref)["data"])


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def probe_budget(probe: dict[str, Any]) -> int:
    return int(probe.get("periodSeconds", 10)) * int(probe.get("failureThreshold", 3))


def prestop_seconds(container: dict[str, Any]) -> int:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    return int(command[1])


# --- 1 and 7: the operator's key Secret ----------------------------------------------------

@pytest.mark.parametrize("rendering", RENDERINGS)
def test_manifests_never_render_the_operators_key_secret(
    rendered: dict[str, Objects], rendering: str
) -> None:
    objects = rendered[rendering]
    assert not [o for o in objects if o["kind"] == "Secret"], "an apply would overwrite it"
    keys = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "keys")
    # A missing Secret must stop the pod (ContainerCreating + event), not start keyless.
    assert keys["secret"] == {"secretName": KEYS_SECRET, "optional": False,
                              "defaultMode": 0o440}


def _readme_quick_start() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Deploy on Kubernetes"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README's Kubernetes section has no bash block"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def _replay(command: str, cwd: Path, env: dict[str, str], state: dict[tuple[str, str], Any],
            printed: list[str]) -> None:
    """Run one quick-start line the way the README says, against a dry-run 'cluster'."""
    argv = shlex.split(command)
    if argv[:3] == ["python", "-m", "serving"]:
        result = subprocess.run([sys.executable, *argv[1:]], cwd=cwd, env=env,
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        printed.append(result.stdout)
        return
    assert argv[0] == "kubectl", f"unexpected quick-start command: {command}"
    if argv[1] in ("rollout", "get", "logs", "describe", "port-forward"):
        return  # reads the cluster, changes nothing
    assert argv[1] in ("create", "apply"), f"unexpected kubectl verb: {command}"
    extra = ["--dry-run=client", "-o", "json"]
    if argv[1] == "apply":
        extra.append("--validate=false")  # schemas: test_k8s_render.py
    result = subprocess.run([find_kubectl(), *argv[1:], *extra], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{command}:\n{result.stderr}"
    out = json.loads(result.stdout)
    for obj in out["items"] if out.get("kind") == "List" else [out]:
        state[(obj["kind"], obj["metadata"]["name"])] = obj  # apply replaces the object


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_readme_quick_start_ends_with_a_working_key(tmp_path: Path, overlay: str) -> None:
    """The README's commands, in its order, with kubectl's client-side dry run: the key the
    first command prints must still open the API after the last one."""
    commands = _readme_quick_start()
    assert any("apply -k k8s/overlays/rtx3090" in c for c in commands)
    commands = [c.replace("k8s/overlays/rtx3090", f"k8s/overlays/{overlay}") for c in commands]
    (tmp_path / "k8s").symlink_to(K8S_DIR)
    state: dict[tuple[str, str], Any] = {}
    printed: list[str] = []
    with fake_apiserver(tmp_path) as kubeconfig:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                          os.environ.get("PYTHONPATH")]))}
        for command in commands:
            _replay(command, tmp_path, env, state, printed)
    key = next(line for out in printed for line in out.splitlines() if line.startswith("sk-"))
    secret = state[("Secret", KEYS_SECRET)]
    mounted = tmp_path / "mounted" / "keys.json"
    mounted.parent.mkdir()
    mounted.write_bytes(base64.b64decode(secret["data"]["keys.json"]))
    mounted.chmod(0o600)
    record = KeyStore(mounted).lookup(key)
    assert record is not None and record.allows("chat"), "the quick start left no valid key"
    # ... and the pod mounts exactly that Secret where the launcher reads keys.
    objects = list(state.values())
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "keys")
    assert volume["secret"]["secretName"] == KEYS_SECRET
    mount = next(m for m in server(objects)["volumeMounts"] if m["name"] == "keys")
    assert launcher_env_from_state(state)["SERVING_KEYS_FILE"] == mount["mountPath"] + "/keys.json"


def launcher_env_from_state(state: dict[tuple[str, str], Any]) -> dict[str, str]:
    objects = list(state.values())
    name = server(objects)["envFrom"][0]["configMapRef"]["name"]
    return dict(state[("ConfigMap", name)]["data"])


# --- 2: rollouts on one-GPU nodes with a ReadWriteOnce volume ------------------------------

@pytest.mark.parametrize("rendering", RENDERINGS)
def test_rollout_needs_no_spare_gpu(rendered: dict[str, Objects], rendering: str) -> None:
    objects = rendered[rendering]
    strategy = deployment(objects)["spec"].get("strategy", {"type": "RollingUpdate"})
    pvc = only(objects, "PersistentVolumeClaim", "gpt-oss-serving-models")
    surge = strategy.get("rollingUpdate", {}).get("maxSurge", "25%")
    no_surge = strategy["type"] == "Recreate" or str(surge) in ("0", "0%")
    # A surge pod needs a free GPU on the node holding a ReadWriteOnce volume; a GPU overlay
    # cannot assume one anywhere.
    if "ReadWriteOnce" in pvc["spec"]["accessModes"] or rendering.split("+")[0] in GPU_OVERLAYS:
        assert no_surge, f"{strategy} waits forever for a second GPU"


# --- 3: monitoring and autoscaling -------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_podmonitor_is_selected_and_scrapes_the_private_metrics_port(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[f"{overlay}+all"]
    monitor = only(objects, "PodMonitor")
    # kube-prometheus-stack's default podMonitorSelector: {matchLabels: {release: <release>}}
    assert monitor["metadata"]["labels"].get("release") == "kube-prometheus-stack"
    ports = {p["name"]: p["containerPort"] for p in server(objects)["ports"]}
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    env = launcher_env(objects)
    assert ports["metrics"] == int(env["SERVING_METRICS_PORT"])
    assert env["SERVING_METRICS_HOST"] == "0.0.0.0"  # reachable by the scraper
    service_ports = {p["targetPort"] for p in only(objects, "Service", "gpt-oss-serving")
                     ["spec"]["ports"]}
    assert service_ports == {"http"}, "the Service must not expose the metrics port"


MONITORING_PATCHES = """\
patches:
  - target:
      kind: PodMonitor
      name: gpt-oss-serving
    patch: |-
      - op: replace
        path: /metadata/labels/release
        value: my-prometheus
  - target:
      kind: NetworkPolicy
      name: gpt-oss-serving
    patch: |-
      - op: replace
        path: /spec/ingress/1/from/0/namespaceSelector/matchLabels/kubernetes.io~1metadata.name
        value: observability
"""


def test_monitoring_release_label_and_namespace_are_configurable(tmp_path: Path) -> None:
    """docs/deploy.md's recipe for a Prometheus with another release name and namespace."""
    doc = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "value: my-prometheus" in doc and "kubernetes.io~1metadata.name" in doc
    objects = kustomize(composed(tmp_path, "h100", ("monitoring",), MONITORING_PATCHES))
    assert only(objects, "PodMonitor")["metadata"]["labels"]["release"] == "my-prometheus"
    metrics_rule = only(objects, "NetworkPolicy")["spec"]["ingress"][1]
    assert metrics_rule["ports"] == [{"protocol": "TCP", "port": 8090}]
    assert metrics_rule["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "observability"}}}]


def test_autoscaler_fails_visibly_when_the_metric_is_absent(rendered: dict[str, Objects]) -> None:
    scaled = only(rendered["h100+all"], "ScaledObject")["spec"]
    trigger = scaled["triggers"][0]
    # KEDA's default (true) reads "no series" as 0: no scale-up, and no error anywhere.
    assert trigger["metadata"].get("ignoreNullValues") == "false"
    # ... so the poll fails, and after failureThreshold polls the fallback replica count
    # runs (ScaledObject condition Fallback=True). Fallback needs an AverageValue metric.
    fallback = scaled["fallback"]
    assert fallback["failureThreshold"] >= 1
    assert scaled["minReplicaCount"] < fallback["replicas"] <= scaled["maxReplicaCount"]
    assert trigger.get("metricType", "AverageValue") == "AverageValue"
    assert "vllm:num_requests_waiting" in trigger["metadata"]["query"]


# --- 5: start-up budget, drain, prefetch, probes -----------------------------------------

@pytest.mark.parametrize("rendering", RENDERINGS)
def test_progress_deadline_covers_a_cold_start(
    rendered: dict[str, Objects], rendering: str
) -> None:
    objects = rendered[rendering]
    spec = deployment(objects)["spec"]
    prefetch = init_container(objects, "prefetch-model")
    prefetch_s = int(container_env(prefetch)["PREFETCH_TIMEOUT_S"]) if prefetch else 0
    cold_start = (int(pod_spec(objects)["terminationGracePeriodSeconds"])  # old pod drains
                  + IMAGE_PULL_ALLOWANCE_S + prefetch_s
                  + probe_budget(server(objects)["startupProbe"]))
    assert spec.get("progressDeadlineSeconds", 600) >= cold_start


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_drain_fits_in_the_termination_grace_period(
    rendered: dict[str, Objects], rendering: str
) -> None:
    objects = rendered[rendering]
    grace = float(launcher_env(objects)["SERVING_SHUTDOWN_GRACE_S"])
    # Long reasoning streams: minutes, not the 30 s default.
    assert grace >= 120
    needed = prestop_seconds(server(objects)) + grace + STOP_GRACE_S
    margin = int(pod_spec(objects)["terminationGracePeriodSeconds"]) - needed
    assert margin >= 10, f"SIGKILL {-margin:.0f}s before vLLM is stopped cleanly"


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_weights_are_prefetched_at_a_pinned_revision(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    env = launcher_env(objects)
    assert env["SERVING_MODEL_REVISION"] == PINNED_REVISIONS[env["SERVING_MODEL"]]
    prefetch = init_container(objects, "prefetch-model")
    assert prefetch is not None, "weights downloaded inside the probed container"
    mounts = {m["mountPath"]: m["name"] for m in prefetch["volumeMounts"]}
    assert mounts["/models"] == "models"
    assert prefetch["envFrom"] == server(objects)["envFrom"]  # same model, same HF_HOME
    serving_env = container_env(server(objects))
    assert serving_env["HF_HUB_OFFLINE"] == "1", "the server must not download anything"
    args = json.loads(serving_env["SERVING_EXTRA_VLLM_ARGS"])
    assert args == ["--revision", "$(SERVING_MODEL_REVISION)"]


def _prefetch_script(rendered: dict[str, Objects]) -> str:
    prefetch = init_container(rendered["h100"], "prefetch-model")
    assert prefetch is not None
    command: list[str] = prefetch["command"]
    assert command[:2] == ["python3", "-c"]
    return command[2]


def _fill_snapshot(hf_home: Path, model: str, revision: str, shards: list[str]) -> Path:
    snapshot = hf_home / "hub" / f"models--{model.replace('/', '--')}" / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    weight_map = {f"layer.{i}": shard for i, shard in enumerate(shards)}
    (snapshot / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return snapshot


@pytest.mark.parametrize("state", ["empty", "complete", "missing-shard"])
def test_prefetch_offline_checks_a_prefilled_volume(
    rendered: dict[str, Objects], tmp_path: Path, state: str
) -> None:
    """docs/deploy.md's offline path: HF_HUB_OFFLINE=1, snapshot copied into the volume."""
    model, revision = "openai/gpt-oss-20b", PINNED_REVISIONS["openai/gpt-oss-20b"]
    hf_home = tmp_path / "huggingface"
    shards = ["model-00000-of-00002.safetensors", "model-00001-of-00002.safetensors"]
    if state != "empty":
        snapshot = _fill_snapshot(hf_home, model, revision, shards)
        for shard in shards[: 1 if state == "missing-shard" else 2]:
            (snapshot / shard).write_bytes(b"weights")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_HOME": str(hf_home),
           "HF_HUB_OFFLINE": "1", "SERVING_MODEL": model, "SERVING_MODEL_REVISION": revision,
           "PREFETCH_TIMEOUT_S": "60"}
    result = subprocess.run([sys.executable, "-c", _prefetch_script(rendered)], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    if state == "complete":
        assert result.returncode == 0 and "complete" in output, output
    elif state == "empty":
        assert result.returncode == 1 and "pre-fill the volume" in output, output
    else:
        assert result.returncode == 1 and shards[1] in output, output


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_probes_restart_a_wedged_engine_and_tolerate_a_busy_one(
    rendered: dict[str, Objects], rendering: str
) -> None:
    container = server(rendered[rendering])
    live, ready = container["livenessProbe"], container["readinessProbe"]
    # Liveness asks vLLM's /health (through /live): the kubelet must wait for that answer.
    assert live["httpGet"]["path"] == "/live"
    assert live["timeoutSeconds"] > LIVE_PROBE_TIMEOUT_S
    assert probe_budget(live) >= 60, "a long prefill must not look wedged"
    # Readiness: the sidecar gives vLLM 2 s; a few slow answers in a row, not one, count.
    assert ready["httpGet"]["path"] == "/ready"
    assert ready["timeoutSeconds"] > READY_PROBE_TIMEOUT_S
    assert ready.get("failureThreshold", 3) >= 3 and probe_budget(ready) >= 20


# --- 5: shared state ----------------------------------------------------------------------

@pytest.mark.parametrize("rendering", RENDERINGS)
def test_shared_state_lives_where_every_replica_sees_it(
    rendered: dict[str, Objects], rendering: str
) -> None:
    objects = rendered[rendering]
    env = launcher_env(objects)
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    aliases = env["SERVING_ALIASES_FILE"]
    mount = next(m for m in server(objects)["volumeMounts"]
                 if aliases.startswith(m["mountPath"] + "/"))
    assert "persistentVolumeClaim" in volumes[mount["name"]], f"{aliases} is per pod"
    if "+all" in rendering:  # autoscaling: more than one replica
        redis_service = only(objects, "Service", "gpt-oss-serving-redis")
        port = redis_service["spec"]["ports"][0]["port"]
        assert env["SERVING_REDIS_URL"] == f"redis://gpt-oss-serving-redis:{port}/0"
        redis_policy = only(objects, "NetworkPolicy", "gpt-oss-serving-redis")
        peers = redis_policy["spec"]["ingress"][0]["from"]
        assert peers == [{"podSelector": {"matchLabels": {
            "app.kubernetes.io/name": "gpt-oss-serving",
            "app.kubernetes.io/component": "server"}}}]


# --- 5: scheduling, disruption, network -------------------------------------------------

@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_gpu_selection_needs_no_feature_discovery_labels(
    rendered: dict[str, Objects], overlay: str
) -> None:
    spec = pod_spec(rendered[overlay])
    assert "nodeSelector" not in spec, "GFD labels are absent on default GKE/EKS nodes"
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    for term in terms:  # nothing GFD-only that the GPU request does not already say
        keys = {e["key"] for e in term["matchExpressions"]}
        assert not keys & {"nvidia.com/gpu.present", "nvidia.com/gpu.count"}, keys
    if overlay.startswith("h100"):
        labels = {e["key"] for t in terms for e in t["matchExpressions"]}
        assert "cloud.google.com/gke-accelerator" in labels


GPU_NODE_PATCH = """\
patches:
  - target:
      kind: Deployment
      name: gpt-oss-serving
    patch: |-
      - op: replace
        path: /spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms
        value:
          - matchExpressions:
              - key: node.kubernetes.io/instance-type
                operator: In
                values: [p5.48xlarge]
"""


def test_gpu_node_affinity_is_replaceable(tmp_path: Path) -> None:
    """docs/deploy.md's recipe for nodes labelled some other way (EKS instance types)."""
    assert "node.kubernetes.io/instance-type" in (REPO_ROOT / "docs" / "deploy.md").read_text()
    objects = kustomize(composed(tmp_path, "h100", extra=GPU_NODE_PATCH))
    terms = pod_spec(objects)["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "node.kubernetes.io/instance-type",
                                            "operator": "In", "values": ["p5.48xlarge"]}]}]
    assert server(objects)["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("overlay", ["h100", "h100x2-gpt-oss-120b"])
def test_hopper_affinity_admits_h200(rendered: dict[str, Objects], overlay: str) -> None:
    terms = pod_spec(rendered[overlay])["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]

    def admits(labels: dict[str, str]) -> bool:
        return any(all(labels.get(e["key"]) in e["values"] for e in t["matchExpressions"])
                   for t in terms)

    # GFD writes NVML's name with dashes (the plan's h200 preset: "NVIDIA H200").
    from serving.launcher.hardware import GPU_PRESETS

    assert admits({"nvidia.com/gpu.product": GPU_PRESETS["h200"].name.replace(" ", "-")})
    assert admits({"cloud.google.com/gke-accelerator": "nvidia-h200-141gb"})
    assert admits({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    assert not admits({"nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-3090"})


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_pdb_keeps_the_last_pod_serving(rendered: dict[str, Objects], rendering: str) -> None:
    objects = rendered[rendering]
    pdb = only(objects, "PodDisruptionBudget")["spec"]
    scaled = [o for o in objects if o["kind"] == "ScaledObject"]
    replicas = (scaled[0]["spec"]["minReplicaCount"] if scaled
                else deployment(objects)["spec"].get("replicas", 1))
    if "minAvailable" in pdb:
        allowed = replicas - int(pdb["minAvailable"])
    else:
        allowed = int(pdb["maxUnavailable"])
    assert allowed < replicas, "a drain may evict every serving pod"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_clients_from_outside_the_cluster(
    rendered: dict[str, Objects], overlay: str
) -> None:
    policy = only(rendered[overlay], "NetworkPolicy", "gpt-oss-serving")
    api = next(r for r in policy["spec"]["ingress"]
               if {p["port"] for p in r["ports"]} == {8000})
    # LoadBalancer/NodePort traffic arrives from client or node addresses, never from a pod
    # a namespaceSelector could match.
    cidrs = {peer["ipBlock"]["cidr"] for peer in api["from"] if "ipBlock" in peer}
    assert {"0.0.0.0/0", "::/0"} <= cidrs
    assert {"namespaceSelector": {}} in api["from"]


# --- 5: cpu-smoke thread pinning, load-test image ----------------------------------------

def test_cpu_smoke_runs_on_as_many_cores_as_its_cpu_limit(rendered: dict[str, Objects]) -> None:
    container = server(rendered["cpu-smoke"])
    limit_env = next(e for e in container["env"] if e["name"] == "CPU_LIMIT")
    ref = limit_env["valueFrom"]["resourceFieldRef"]
    assert ref["resource"] == "limits.cpu" and ref["divisor"] == "1"
    assert container["args"] == ["python3", "-m", "serving", "up"]
    script = container["command"][2]
    probe = [sys.executable, "-c", "import os; print(len(os.sched_getaffinity(0)))"]
    result = subprocess.run([sys.executable, "-c", script, *probe],
                            env={**os.environ, "CPU_LIMIT": "1"},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1", "vLLM's auto binding would use every node core"


@pytest.mark.parametrize("rendering", ["loadtest", *(f"{o}+all" for o in OVERLAYS)])
def test_loadtest_never_pulls_the_server_image(
    rendered: dict[str, Objects], rendering: str
) -> None:
    job = only(rendered[rendering], "Job")["spec"]["template"]["spec"]
    images = {c["image"].rsplit(":", 1)[0] for c in [*job["initContainers"], *job["containers"]]}
    assert images == {"registry.example.com/gpt-oss-serving-bench"}
    text = (REPO_ROOT / "Dockerfile.cpu").read_text(encoding="utf-8")
    assert re.search(r"^FROM \S+ AS bench$", text, re.M)


# --- 6: CPU requests cover the planned sidecar workers ----------------------------------

def _plan_env(overlay: str) -> dict[str, str]:
    path = K8S_DIR / "overlays" / overlay / "plan.env"
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.startswith("#"))
    return {k: v for k, v in pairs}


def cpu_violations(objects: Objects, workers: int) -> list[str]:
    container = server(objects)
    gpus = int(container["resources"]["limits"].get("nvidia.com/gpu", 1))
    needed = workers + ENGINE_API_SERVER_CPUS + gpus
    request = cpus(container["resources"]["requests"]["cpu"])
    limit = cpus(container["resources"]["limits"]["cpu"])
    out = []
    if request < needed:
        out.append(f"cpu request {request} < {workers} workers + engine {needed - workers}")
    if limit < request:
        out.append(f"cpu limit {limit} < request {request}")
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_cpu_request_covers_the_planned_workers(
    rendered: dict[str, Objects], overlay: str
) -> None:
    workers = int(_plan_env(overlay).get("SERVING_WORKERS", "1"))  # absent: one process
    configured = launcher_env(rendered[overlay]).get("SERVING_WORKERS")
    assert configured is None or int(configured) == workers
    assert cpu_violations(rendered[overlay], workers) == []


def test_cpu_rule_catches_more_workers_than_cores(rendered: dict[str, Objects]) -> None:
    assert cpu_violations(rendered["rtx3090"], workers=8) != []

