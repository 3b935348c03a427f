"""The `gateway` command: serve, migrate, config check, models, and each capability's commands.

It starts light: a capability's commands are added to the parser only when the command line names them (or asks
for the overall help), and each command imports what it needs when it runs, so `gateway --version` and
`gateway keys list --help` load neither pydantic nor the server (tests/test_cli_startup.py).
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import __version__

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.httpserver import GatewayHttpProtocol

EXIT_BROKEN_PIPE = 141  # what a shell reports for a command ended by SIGPIPE (128 + 13)

# command -> (help, module with its commands, the function adding them); one function may add several commands.
CAPABILITY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "keys": ("manage virtual keys", "gateway.identity.cli", "add_identity_commands"),
    "teams": ("manage teams", "gateway.identity.cli", "add_identity_commands"),
    "usage": ("tokens and cost by key, team, model or day", "gateway.usage.cli", "add_usage_commands"),
    "policy": ("validate policy files and dry-run cases through them", "gateway.policy.cli", "add_policy_commands"),
    "audit": ("verify, export and prune the hash-chained audit log", "gateway.audit.cli", "add_audit_commands"),
    "approvals": ("list, approve and deny tool calls held for a human", "gateway.approvals.cli",
                  "add_approval_commands"),
    "tools": ("the kill switch: suspend the tool calls of a key or of everyone", "gateway.approvals.cli",
              "add_approval_commands"),
    "prompts": ("the prompt registry: versions, labels, sync from a folder", "gateway.prompts.cli",
                "add_prompt_commands"),
    "eval": ("run eval suites through the gateway, in process or at a URL", "gateway.evals.cli", "add_eval_commands"),
}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # here, so a closed pipe is noticed while it can still be handled
        return code
    except BrokenPipeError:
        # The reader went away (`gateway keys list | head -1`): stop quietly, as other Unix tools do. Python would
        # flush stdout again at exit and print a second error, so stdout goes to /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except config_error() as exc:
        print(f"gateway: invalid configuration\n{exc}", file=sys.stderr)
        return 2


class _Never(Exception):
    """Raised by nothing."""


def config_error() -> type[Exception]:
    """gateway.config's ConfigError once a command has loaded that module (only such commands raise it): the
    `except` clause names it without importing pydantic for the commands that never read a config."""
    module = sys.modules.get("gateway.config")
    return module.ConfigError if module is not None else _Never  # type: ignore[no-any-return]


def command_of(argv: Sequence[str]) -> str | None:
    """The command a command line names: its first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `command` one of CAPABILITY_COMMANDS, only that capability's commands are complete (and
    imported), the others are listed by name and help."""
    parser = argparse.ArgumentParser(prog="gateway", description="OpenAI-compatible governance gateway.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(title="commands")
    add_server_commands(commands)
    chosen = CAPABILITY_COMMANDS.get(command or "")
    if chosen is None:
        for name, (help_text, _, _) in CAPABILITY_COMMANDS.items():
            commands.add_parser(name, help=help_text)
    else:
        _, module, function = chosen
        add_commands: Callable[[argparse._SubParsersAction], None] = getattr(import_module(module), function)  # type: ignore[type-arg]
        add_commands(commands)
    return parser


def add_server_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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

    models = commands.add_parser("models", help="list the models a config file serves")
    models.add_argument("--config", type=Path)
    models.set_defaults(handler=cmd_models)


def resolve(path: Path | None) -> GatewayConfig:
    from gateway.settings import Settings

    return Settings(config=path).resolve() if path else Settings().resolve()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.allocator import limit_malloc_arenas
    from gateway.httpserver import raise_descriptor_limit
    from gateway.settings import Settings
    from gateway.storage.db import mask_password
    from gateway.telemetry.logformat import logging_config
    from gateway.telemetry.multiprocess import multiprocess_metrics

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
    warning = raise_descriptor_limit(config.server.max_connections)  # workers inherit the limit
    if warning:
        print(f"gateway: warning: {warning}", file=sys.stderr)
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
            # Pickled into each worker process with uvicorn's config: every worker applies the same limits.
            http=serve_protocol(config),  # type: ignore[arg-type]
        )
    return 0


def serve_protocol(config: GatewayConfig) -> partial[GatewayHttpProtocol]:
    """The HTTP protocol `gateway serve` runs: ours, with the config's `server:` limits."""
    from gateway.httpserver import GatewayHttpProtocol, ServerLimits

    return partial(GatewayHttpProtocol, limits=ServerLimits(config.server))


def cmd_migrate(args: argparse.Namespace) -> int:
    """A deployment step of its own: servers that start on a database at head never import alembic (~8 MB)."""
    from gateway.storage.db import HEAD_REVISION, MigrationError, mask_password, run_migrations

    config = resolve(args.config)
    try:
        run_migrations(config.database_url)
    except MigrationError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    print(f"database {mask_password(config.database_url)} is at schema revision {HEAD_REVISION}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.settings import environment

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
