"""A discovery-only Kubernetes API for `kubectl apply --dry-run=client` (tests only).

kubectl needs the API's discovery documents to map a manifest's kind to a resource, even
for a client-side dry run. This server answers discovery for the kinds the manifests use
and 404 for every object, so kubectl treats each one as new and prints it: the test itself
keeps the objects, in apply order, the way the API server would (later applies win).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# group/version -> [(kind, plural, namespaced)]
RESOURCES: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [("Namespace", "namespaces", False), ("Secret", "secrets", True),
           ("ConfigMap", "configmaps", True), ("Service", "services", True),
           ("ServiceAccount", "serviceaccounts", True),
           ("PersistentVolumeClaim", "persistentvolumeclaims", True)],
    "apps/v1": [("Deployment", "deployments", True)],
    "batch/v1": [("Job", "jobs", True)],
    "policy/v1": [("PodDisruptionBudget", "poddisruptionbudgets", True)],
    "networking.k8s.io/v1": [("NetworkPolicy", "networkpolicies", True)],
    "monitoring.coreos.com/v1": [("PodMonitor", "podmonitors", True)],
    "keda.sh/v1alpha1": [("ScaledObject", "scaledobjects", True)],
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _resource_list(group_version: str) -> dict[str, Any]:
    return {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
        "resources": [{"name": plural, "singularName": kind.lower(), "namespaced": namespaced,
                       "kind": kind, "verbs": VERBS}
                      for kind, plural, namespaced in RESOURCES[group_version]],
    }


def _group_list() -> dict[str, Any]:
    groups = []
    for group_version in RESOURCES:
        if "/" not in group_version:
            continue
        name, version = group_version.split("/")
        entry = {"groupVersion": group_version, "version": version}
        groups.append({"name": name, "versions": [entry], "preferredVersion": entry})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        body: dict[str, Any] | None = None
        if path == "/api":
            body = {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": []}
        elif path == "/apis":
            body = _group_list()
        elif path == "/api/v1":
            body = _resource_list("v1")
        elif path.startswith("/apis/") and path.count("/") == 3:
            group_version = path.removeprefix("/apis/")
            body = _resource_list(group_version) if group_version in RESOURCES else None
        if body is None:
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "reason": "NotFound", "code": 404}
            self._send(404, status)
        else:
            self._send(200, body)

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def fake_apiserver(directory: Path) -> Iterator[Path]:
    """Serve discovery on loopback; yields a kubeconfig file that points kubectl at it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake",
                      "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake",
                      "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}],
    }))
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
