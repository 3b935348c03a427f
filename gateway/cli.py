"""The `gateway` command: serve, config check, models."""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway import __version__
from gateway.allocator import limit_malloc_arenas
from gateway.approvals.cli import add_approval_commands
from gateway.audit.cli import add_audit_commands
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.identity.cli import add_identity_commands
from gateway.policy.cli import add_policy_commands
from gateway.prompts.cli import add_prompt_commands
from gateway.settings import Settings, environment
from gateway.storage.db import HEAD_REVISION, MigrationError, mask_password, run_migrations
from gateway.telemetry.logformat import logging_config
from gateway.telemetry.multiprocess import multiprocess_metrics
from gateway.usage.cli import add_usage_commands


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"gateway: invalid configuration\n{exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="OpenAI-compatible governance gateway.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="run the gateway server")
    serve.add_argument("--config", type=Path, help="config file (default: $GATEWAY_CONFIG or ./gateway.yaml)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=4000, help="port (default 4000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1; one per core)")
    serve.add_argument("--log-format", choices=("json", "text"), help="operator log lines (default: log.format, json)")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="default: log.level, info")
    serve.add_argument(
        "--access-log", action="store_true", help="uvicorn's access line too (the request log already has one)"
    )
    serve.set_defaults(handler=cmd_serve)

    migrate = commands.add_parser(
        "migrate", help="bring the database to the newest schema and exit (serve also does it at startup)"
    )
    migrate.add_argument("--config", type=Path, help="config file (default: $GATEWAY_CONFIG or ./gateway.yaml)")
    migrate.set_defaults(handler=cmd_migrate)

    config = commands.add_parser("config", help="work with config files")
    config_commands = config.add_subparsers(title="config commands")
    check = config_commands.add_parser("check", help="validate a config file and list its models")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=cmd_config_check)

    add_identity_commands(commands)
    add_usage_commands(commands)
    add_policy_commands(commands)
    add_audit_commands(commands)
    add_approval_commands(commands)
    add_prompt_commands(commands)

    models = commands.add_parser("models", help="list the models a config file serves")
    models.add_argument("--config", type=Path)
    models.set_defaults(handler=cmd_models)
    return parser


def resolve(path: Path | None) -> GatewayConfig:
    return Settings(config=path).resolve() if path else Settings().resolve()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    # Flags go through the environment, which the worker processes read too (GATEWAY_LOG_*).
    for name, value in (("GATEWAY_LOG_FORMAT", args.log_format), ("GATEWAY_LOG_LEVEL", args.log_level)):
        if value:
            os.environ[name] = value
    settings = Settings(config=args.config) if args.config else Settings()
    config = settings.resolve()  # fail here, with a readable message, rather than in every worker
    if args.workers > 1 and not config.redis_url:
        print(
            "gateway: --workers above 1 needs redis_url (or GATEWAY_REDIS_URL): budgets, reservations and rate "
            "limits must be shared by the worker processes, or they would each grant the whole budget.",
            file=sys.stderr,
        )
        return 2
    if settings.config is not None:
        # Worker processes build their app from the environment: hand them the same file.
        os.environ["GATEWAY_CONFIG"] = str(settings.config.resolve())
    log_config = logging_config(config.log, access_log=args.access_log)
    logging.config.dictConfig(log_config)  # uvicorn applies it again in each worker
    database = mask_password(config.database_url)
    logging.getLogger("gateway").info("gateway %s: %d models, database %s", __version__, len(config.models), database)
    limit_malloc_arenas()  # before uvicorn starts threads and workers
    # Set before the workers start, so /metrics on any of them sums all of them.
    with multiprocess_metrics(args.workers):
        uvicorn.run(
            "gateway.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=config.log.level,
            log_config=log_config,
            access_log=args.access_log,
            proxy_headers=False,
            server_header=False,
            http="gateway.httpserver:GatewayHttpProtocol",
        )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """A deployment step of its own: servers that start on a database at head never import alembic (~8 MB)."""
    config = resolve(args.config)
    try:
        run_migrations(config.database_url)
    except MigrationError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    print(f"database {mask_password(config.database_url)} is at schema revision {HEAD_REVISION}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    config = load_config(args.file, env=environment())
    print(f"{args.file}: ok, {len(config.models)} models")
    print_models(config)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    print_models(resolve(args.config))
    return 0


def print_models(config: GatewayConfig) -> None:
    for m in config.models:
        path = "fake" if m.provider == "fake" else ("direct" if m.is_direct else "litellm")
        fallbacks = f"  fallbacks: {', '.join(m.fallbacks)}" if m.fallbacks else ""
        print(f"  {m.name:<24} {m.model:<40} {path}{fallbacks}")
