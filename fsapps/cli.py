"""The `fsapps` command line: one subcommand group per concern, each a thin call into a module.

Subcommands grow with later issues; each registers itself in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from fsapps.errors import FsappsError
from fsapps.fslog import setup_logging


def _config_check(args: argparse.Namespace) -> int:
    from fsapps import config

    return config.check_command(args.config)


def _db_migrate(args: argparse.Namespace) -> int:
    from fsapps.db import migrations

    return migrations.migrate_command(args.config, dsn=args.dsn)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fsapps", description="fsapps call-center middleware")
    parser.add_argument("--config", help="settings file (default: $FSAPPS_CONFIG, "
                        "/etc/fsapps/fsapps.yaml, conf/fsapps.yaml)")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    config_cmd = groups.add_parser("config", help="inspect the configuration")
    config_sub = config_cmd.add_subparsers(dest="action", required=True)
    check = config_sub.add_parser("check", help="print the effective settings, secrets masked")
    check.set_defaults(run=_config_check)

    db_cmd = groups.add_parser("db", help="PostgreSQL schema")
    db_sub = db_cmd.add_subparsers(dest="action", required=True)
    migrate = db_sub.add_parser("migrate", help="apply pending schema migrations (idempotent)")
    migrate.add_argument("--dsn", help="PostgreSQL DSN (default: from the settings)")
    migrate.set_defaults(run=_db_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except FsappsError as exc:
        print(f"fsapps: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
