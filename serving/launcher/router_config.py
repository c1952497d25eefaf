"""The router in front of N replicas: HAProxy, configured here as a pure function.

Why HAProxy and not vllm-router 0.1.17 (docs/router.md has the evidence): vllm-router relays
the caller's headers only on the routes it parses (`/v1/chat/completions`, `/v1/completions`,
`/v1/embeddings`, ...). Everything else (`/api/*`, `/v1/responses`, `/v1/messages`) goes
through its transparent proxy, which sends no caller header at all (`route_transparent`
forwards headers only in EPD mode, which the PyPI entry point cannot enable), so the sidecar
sees no key. Its `--api-key` would replace every caller's key with one router key (per-key
permissions and limits lost). Its cache_aware policy also needs each worker's
`/v1/chat/completions/render` per request and falls back to least-loaded on `/api/*`.

HAProxy forwards every header and streams both dialects untouched. Affinity is consistent
hashing with bounded loads on a conversation key: the caller's `X-Session-Id` header when
sent, else the first `affinity_bytes` of the request body. A conversation resends its
history, so its body always starts the same way and its turns land on the replica that holds
its prefix in vLLM's cache; `hash-balance-factor` stops any replica taking more than that
share of the average active requests. Readiness is the sidecar's `/ready`: a replica that is
starting, draining or whose engine is down leaves rotation after `fall` failed checks, and a
request refused in that window (connect error, empty reply, 503) is retried on another one.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

RouterPolicy = Literal["affinity", "roundrobin"]
POLICIES: tuple[RouterPolicy, ...] = ("affinity", "roundrobin")
SESSION_HEADER = "x-session-id"
REPLICA_HEADER = "x-replica"
# Request bodies up to this size are buffered whole: hashed on, and retried on another replica
# when the first one refuses them. Larger ones still pass, without a layer-7 retry.
BUFFER_BYTES = 65536


@dataclass(frozen=True)
class Backend:
    name: str
    host: str
    port: int


@dataclass(frozen=True)
class ReadinessCheck:
    """How the router checks each replica's /ready: every `interval_ms`; `fall` failures in a
    row take it out of rotation, `rise` passes bring it back."""

    interval_ms: int = 1000
    fall: int = 2
    rise: int = 2


@dataclass(frozen=True)
class DnsDiscovery:
    """Kubernetes: the replicas are a headless Service's DNS records (resolved through the
    pod's resolv.conf nameservers), up to `slots` of them. HAProxy expands "${VAR}" in quotes."""

    service: str
    port: int = 8000
    slots: int = 16


@dataclass(frozen=True)
class RouterConfig:
    """Everything the rendered haproxy.cfg depends on."""

    bind_host: str
    bind_port: int
    backends: tuple[Backend, ...]
    policy: RouterPolicy = "affinity"
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    affinity_bytes: int = 1024
    balance_factor: int = 150
    check: ReadinessCheck = ReadinessCheck()
    timeout_s: int = 600
    max_connections: int = 4096
    dns: DnsDiscovery | None = None  # instead of (or besides) a fixed list of backends


def render_haproxy_config(config: RouterConfig) -> str:
    """haproxy.cfg (HAProxy 2.6) for this router config."""
    if config.policy not in POLICIES:
        raise ValueError(f"router policy must be one of {', '.join(POLICIES)}")
    if not config.backends and config.dns is None:
        raise ValueError("the router needs backends or a DNS service to discover them")
    lines = [
        "# Rendered by serving.launcher.router_config; edit the RouterConfig, not this file.",
        "global",
        f"  maxconn {config.max_connections}",
        f"  tune.bufsize {BUFFER_BYTES}",
        "  log stdout format raw local0 info",
        "",
        "defaults",
        "  mode http",
        "  log global",
        "  option httplog",
        "  option dontlog-normal",
        "  timeout connect 5s",
        f"  timeout client {config.timeout_s}s",
        f"  timeout server {config.timeout_s}s",
        "  timeout http-request 30s",
        # A busy replica may take a while to answer /ready; without this the check
        # interval would also be the check timeout, and load alone would flap replicas.
        "  timeout check 3s",
        "",
    ]
    if config.dns is not None:
        lines += [
            "resolvers cluster",
            "  parse-resolv-conf",
            "  accepted_payload_size 8192",
            "  hold valid 5s",
            "",
        ]
    lines += _frontend(config)
    if config.metrics_port is not None:
        lines += [
            "frontend router_metrics",
            f"  bind {config.metrics_host}:{config.metrics_port}",
            "  http-request use-service prometheus-exporter if { path /metrics }",
            "  http-request return status 404",
            "",
        ]
    lines += _backend(config)
    return "\n".join(lines) + "\n"


def _frontend(config: RouterConfig) -> list[str]:
    lines = [
        "frontend public",
        f"  bind {config.bind_host}:{config.bind_port}",
        "  option http-buffer-request",
    ]
    if config.policy == "affinity":
        session = SESSION_HEADER
        lines += [
            f"  http-request set-var(txn.affinity) req.hdr({session}) "
            f"if {{ req.hdr({session}) -m found }}",
            f"  http-request set-var(txn.affinity) req.body,bytes(0,{config.affinity_bytes}) "
            "if !{ var(txn.affinity) -m found }",
        ]
    lines += ["  default_backend replicas", ""]
    return lines


def _backend(config: RouterConfig) -> list[str]:
    lines = ["backend replicas"]
    if config.policy == "affinity":
        lines += [
            "  balance hash var(txn.affinity)",
            "  hash-type consistent",
            f"  hash-balance-factor {config.balance_factor}",
        ]
    else:
        lines.append("  balance roundrobin")
    lines += [
        "  option httpchk GET /ready",
        "  http-check expect status 200",
        "  retry-on conn-failure empty-response 503",
        "  retries 2",
        "  option redispatch 1",
        f"  http-response set-header {REPLICA_HEADER} %s",
        f"  default-server inter {config.check.interval_ms} fall {config.check.fall} "
        f"rise {config.check.rise}",
    ]
    lines += [f"  server {b.name} {b.host}:{b.port} check" for b in config.backends]
    if config.dns is not None:
        lines.append(
            f'  server-template replica {config.dns.slots} '
            f'"{config.dns.service}:{config.dns.port}" check resolvers cluster '
            "init-addr none resolve-prefer ipv4"
        )
    return [*lines, ""]


def loopback_backends(ports: Sequence[int]) -> tuple[Backend, ...]:
    return tuple(Backend(f"r{i}", "127.0.0.1", port) for i, port in enumerate(ports))


# The router component's config (k8s/components/router/haproxy.cfg is this, rendered by
# `make k8s-router-config`; a test keeps them equal). Replicas come from the headless Service.
KUBERNETES = RouterConfig(
    bind_host="0.0.0.0",
    bind_port=8000,
    backends=(),
    metrics_host="0.0.0.0",
    metrics_port=8404,
    dns=DnsDiscovery("gpt-oss-serving-replicas.${POD_NAMESPACE}.svc.${CLUSTER_DOMAIN}"),
)

if __name__ == "__main__":
    # The command's result, not a log line: `make k8s-router-config` redirects it to the file.
    sys.stdout.write(render_haproxy_config(KUBERNETES))
