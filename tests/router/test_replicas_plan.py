"""The local multi-replica plan: distinct ports and state, one key file, shared limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.cli import build_parser
from serving.launcher.replicas import ReplicaRequest, ReplicasRefused, plan_replicas


def _layout(tmp_path: Path, **kw: object):
    return plan_replicas(ReplicaRequest(
        3, public_host="127.0.0.1", public_port=8000, state_dir=tmp_path,
        keys_file=tmp_path / "keys.json", **kw))  # type: ignore[arg-type]


def test_every_port_is_distinct_and_the_router_is_the_only_public_one(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    ports = [layout.router.bind_port, layout.router.metrics_port, layout.redis_port]
    for r in layout.replicas:
        ports += [r.port, r.vllm_port, r.embedding_port, r.metrics_port]
    assert len(ports) == len(set(ports)) == 3 + 4 * 3
    assert [b.port for b in layout.router.backends] == [r.port for r in layout.replicas]
    assert {b.host for b in layout.router.backends} == {"127.0.0.1"}


def test_replica_environment(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    envs = [layout.replica_env(r, {"PATH": "/bin", "SERVING_KEYS_FILE": "/elsewhere"})
            for r in layout.replicas]
    assert {e["SERVING_KEYS_FILE"] for e in envs} == {str(tmp_path / "keys.json")}
    assert {e["SERVING_REDIS_URL"] for e in envs} == {
        f"redis://127.0.0.1:{layout.redis_port}/0"}
    assert len({e["SERVING_STATE_DIR"] for e in envs}) == 3
    assert all(e["SERVING_HOST"] == "127.0.0.1" for e in envs)
    assert [e["SERVING_EMBEDDING_MODEL"] for e in envs] == ["off"] * 3
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "2"]
    chosen = layout.replica_env(layout.replicas[0], {"SERVING_EMBEDDING_MODEL": "auto"})
    assert chosen["SERVING_EMBEDDING_MODEL"] == "auto"


def test_an_existing_redis_is_used_instead_of_starting_one(tmp_path: Path) -> None:
    layout = _layout(tmp_path, redis_url="redis://cache:6379/2")
    env = layout.replica_env(layout.replicas[1], {})
    assert env["SERVING_REDIS_URL"] == "redis://cache:6379/2"


def test_refuses_one_replica_and_ports_that_do_not_fit(tmp_path: Path) -> None:
    with pytest.raises(ReplicasRefused, match="at least 2"):
        plan_replicas(ReplicaRequest(1, public_host="127.0.0.1", public_port=8000,
                                     state_dir=tmp_path, keys_file=tmp_path / "k"))
    with pytest.raises(ReplicasRefused, match="ports"):
        plan_replicas(ReplicaRequest(2, public_host="127.0.0.1", public_port=65500,
                                     state_dir=tmp_path, keys_file=tmp_path / "k"))


def test_cli_accepts_replicas_and_policy() -> None:
    args = build_parser().parse_args(["up", "--replicas", "2", "--router-policy", "roundrobin"])
    assert (args.replicas, args.router_policy) == (2, "roundrobin")
    assert build_parser().parse_args(["up"]).replicas == 1
