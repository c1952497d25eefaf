"""`python -m serving ...`: up, sidecar, keys, plan, doctor."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from pathlib import Path

from serving.config import EngineSettings, PathSettings, SidecarSettings
from serving.logging_setup import configure_logging
from serving.sidecar import keys as keystore


def _sidecar_settings(paths: PathSettings, **overrides: object) -> SidecarSettings:
    """Key and alias files default to the state dir unless set explicitly."""
    base = SidecarSettings()
    defaults: dict[str, object] = {}
    if "keys_file" not in base.model_fields_set:
        defaults["keys_file"] = paths.keys_file
    if "aliases_file" not in base.model_fields_set:
        defaults["aliases_file"] = paths.state_dir / "aliases.json"
    clean = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update={**defaults, **clean})


def cmd_up(args: argparse.Namespace) -> int:
    if args.replicas > 1:
        from serving.launcher.replicas import ReplicasRefused, up_replicas

        configure_logging(PathSettings().log_dir / "replicas.log")
        try:
            extra = {"SERVING_ENGINE": args.engine} if args.engine else {}
            if args.synthetic_weights:
                extra["SERVING_SYNTHETIC_WEIGHTS"] = "true"
            return up_replicas(args.replicas, args.router_policy, args.port, extra,
                               args.replica_port_base)
        except ReplicasRefused as refused:
            print(f"error: {refused}", file=sys.stderr)
            return 2
    from serving.launcher.console import configure_console
    from serving.launcher.plan import PlanRefused
    from serving.launcher.up import LaunchSettings, ensure_first_key, make_plans, serve

    paths = PathSettings()
    configure_console(paths.log_dir / "serving.log", verbose=args.verbose)
    engine = EngineSettings()
    if args.engine:
        engine = engine.model_copy(update={"engine": args.engine})
    if args.synthetic_weights:
        engine = engine.model_copy(update={"synthetic_weights": True})
    sidecar = _sidecar_settings(paths, port=args.port,
                                upstream_url=f"http://{engine.vllm_host}:{engine.vllm_port}")
    first_key = ensure_first_key(paths, sidecar.keys_file)
    if first_key is not None:
        print(f"Created the first API key (permissions: all): {first_key}", file=sys.stderr)
    settings = LaunchSettings(paths=paths, sidecar=sidecar, engine=engine, verbose=args.verbose)
    try:
        plan, embedding = make_plans(settings)
    except PlanRefused as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    return asyncio.run(serve(settings, plan, embedding))


def cmd_sidecar(args: argparse.Namespace) -> int:
    import uvicorn

    from serving.sidecar.app import create_app
    from serving.sidecar.gc_tuning import tune_for_serving

    paths = PathSettings()
    configure_logging(paths.log_dir / "sidecar.log")
    settings = _sidecar_settings(paths, port=args.port, workers=args.workers)
    if (settings.workers or 1) > 1:
        import asyncio

        from serving.launcher.workers import serve_standalone

        shared = (paths.state_dir / "run").resolve()
        return asyncio.run(serve_standalone(
            settings.model_copy(update={"shared_state_dir": shared}), settings.workers or 1))
    app = create_app(settings)
    tune_for_serving()
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0


def _keys_file(args: argparse.Namespace) -> Path:
    return Path(args.keys_file) if args.keys_file else _sidecar_settings(PathSettings()).keys_file


def cmd_keys_create(args: argparse.Namespace) -> int:
    limits = keystore.KeyLimits(args.rpm, args.tpm, args.concurrent)
    permissions = [p.strip() for p in args.permissions.split(",") if p.strip()]
    try:
        key, record = keystore.create_key(
            _keys_file(args), user=args.user, permissions=permissions, limits=limits
        )
    except keystore.KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(key)
    print(f"# {record.key_id} for {record.user} ({', '.join(sorted(record.permissions))}); "
          f"shown once, only its hash is stored in {_keys_file(args)}", file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    records = keystore.read_key_file(_keys_file(args))
    print(f"{'KEY ID':<18} {'USER':<16} {'STATUS':<8} {'CREATED':<21} PERMISSIONS")
    for record in records.values():
        status = "revoked" if record.revoked else "active"
        print(f"{record.key_id:<18} {record.user:<16} {status:<8} {record.created_at:<21} "
              f"{','.join(sorted(record.permissions))}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    revoked = keystore.revoke_key(_keys_file(args), args.key_id_or_user)
    if not revoked:
        print(f"error: no active key with id or user {args.key_id_or_user!r}", file=sys.stderr)
        return 1
    for record in revoked:
        print(f"revoked {record.key_id} ({record.user})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="plan, start vLLM and the sidecar, supervise both")
    up.add_argument("--port", type=int, help="sidecar port (default 8000, SERVING_PORT)")
    up.add_argument("--engine", choices=["auto", "cpu", "cuda"])
    up.add_argument("--synthetic-weights", action="store_true",
                    help="full-size model with random weights (vLLM --load-format dummy)")
    up.add_argument("--verbose", action="store_true",
                    help="show vLLM's own output here too (it always goes to .serving/logs/)")
    up.add_argument("--replicas", type=int, default=1,
                    help="N > 1: N sidecar+vLLM stacks behind a router (docs/router.md)")
    up.add_argument("--router-policy", choices=["affinity", "roundrobin"], default="affinity",
                    help="with --replicas: conversation affinity (default) or round robin")
    up.add_argument("--replica-port-base", type=int,
                    help="with --replicas: first replica port (default: the port + 100)")
    up.set_defaults(func=cmd_up)

    side = sub.add_parser("sidecar", help="run only the sidecar (vLLM started elsewhere)")
    side.add_argument("--port", type=int)
    side.add_argument("--workers", type=int,
                      help="sidecar processes on the port (default 1, SERVING_WORKERS)")
    side.set_defaults(func=cmd_sidecar)

    keys = sub.add_parser("keys", help="manage API keys (hashed in the key file)")
    keys.add_argument("--keys-file", help="default: SERVING_KEYS_FILE or .serving/keys.json")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; prints it once")
    create.add_argument("--user", required=True)
    create.add_argument("--permissions", default="chat,models",
                        help=f"comma-separated: {', '.join(keystore.PERMISSIONS)}")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--concurrent", type=int, help="concurrent requests")
    create.set_defaults(func=cmd_keys_create)
    keys_sub.add_parser("list", help="list keys (never the keys themselves)").set_defaults(
        func=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke by key id or user")
    revoke.add_argument("key_id_or_user")
    revoke.set_defaults(func=cmd_keys_revoke)

    if importlib.util.find_spec("serving.launcher.cli") is not None:
        from serving.launcher.cli import register_cli

        register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
