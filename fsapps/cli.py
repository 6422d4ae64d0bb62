"""The `fsapps` command line: one subcommand group per concern, each a thin call into a module.

Subcommands grow with later issues; each registers itself in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from fsapps import config, context
from fsapps.db import migrations
from fsapps.domain import extfile
from fsapps.domain.userdir import UserDirectory
from fsapps.errors import BadInput, FsappsError
from fsapps.fslog import setup_logging
from fsapps.server.app import serve
from fsapps.server.services import CtiServices


def _config_check(args: argparse.Namespace) -> int:
    return config.check_command(args.config)


def _db_migrate(args: argparse.Namespace) -> int:
    return migrations.migrate_command(args.config, dsn=args.dsn)


def _ext_context(args: argparse.Namespace) -> tuple[Any, str]:
    ctx = context.configure(config.load_settings(args.config))
    domain = args.domain or ctx.settings.default_domain
    if domain not in ctx.settings.domains:
        raise BadInput(f"domain {domain!r} is not one of {list(ctx.settings.domains)!r}")
    return ctx, domain


def _ext_import(args: argparse.Namespace) -> int:
    ctx, domain = _ext_context(args)
    return extfile.import_file(ctx, domain, args.file, args.format, skip_bad=args.skip_bad)


def _ext_export(args: argparse.Namespace) -> int:
    ctx, domain = _ext_context(args)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            return extfile.export(ctx, domain, out, args.format)
    return extfile.export(ctx, domain, sys.stdout, args.format)


def _ext_set(args: argparse.Namespace) -> int:
    ctx, domain = _ext_context(args)
    items = [("param.password", args.password)] if args.password is not None else []
    for section, pairs in (("param", args.param), ("variable", args.variable),
                           ("attribute", args.attribute)):
        for pair in pairs or []:
            name, sep, value = pair.partition("=")
            if not sep:
                raise BadInput(f"--{section} {pair!r}: expected NAME=VALUE")
            items.append((f"{section}.{name}", value))
    ext = extfile.set_one(ctx, domain, args.user, replace=args.replace,
                          record_json=args.json, items=items)
    print(extfile.show(ext))
    return 0


def _ext_rm(args: argparse.Namespace) -> int:
    ctx, domain = _ext_context(args)
    if not UserDirectory(ctx, domain).remove(args.user):
        print(f"fsapps: no extension {args.user!r} in cti_exten@{domain}", file=sys.stderr)
        return 1
    return 0


def _ext_show(args: argparse.Namespace) -> int:
    ctx, domain = _ext_context(args)
    ext = UserDirectory(ctx, domain).get(args.user)
    if ext is None:
        print(f"fsapps: no extension {args.user!r} in cti_exten@{domain}", file=sys.stderr)
        return 1
    print(extfile.show(ext))
    return 0


def _add_ext_commands(groups: Any) -> None:
    ext_cmd = groups.add_parser("ext", help="extensions of the Redis directory (seed 003)")
    ext_cmd.add_argument("--domain", help="the domain (default: default_domain)")
    ext_sub = ext_cmd.add_subparsers(dest="action", required=True)
    imp = ext_sub.add_parser("import", help="load extensions from a CSV or YAML file")
    imp.add_argument("file")
    imp.add_argument("--format", choices=("csv", "yaml"), help="default: from the file name")
    imp.add_argument("--skip-bad", action="store_true",
                     help="import the good rows even when some are bad")
    imp.set_defaults(run=_ext_import)
    exp = ext_sub.add_parser("export", help="write every extension as CSV or YAML")
    exp.add_argument("--format", choices=("csv", "yaml"), default="csv")
    exp.add_argument("-o", "--output", help="file to write (default: stdout)")
    exp.set_defaults(run=_ext_export)
    put = ext_sub.add_parser("set", help="create or change one extension")
    put.add_argument("user")
    put.add_argument("--password")
    put.add_argument("--param", action="append", metavar="NAME=VALUE",
                     help="a param (repeatable); an empty VALUE removes it")
    put.add_argument("--variable", action="append", metavar="NAME=VALUE")
    put.add_argument("--attribute", action="append", metavar="NAME=VALUE",
                     help="e.g. cacheable=60000, number-alias=2001")
    put.add_argument("--json", help="the seed's record as JSON, merged in")
    put.add_argument("--replace", action="store_true",
                     help="start from an empty record instead of the current one")
    put.set_defaults(run=_ext_set)
    rm = ext_sub.add_parser("rm", help="remove one extension")
    rm.add_argument("user")
    rm.set_defaults(run=_ext_rm)
    show = ext_sub.add_parser("show", help="print one extension (by id or number-alias)")
    show.add_argument("user")
    show.set_defaults(run=_ext_show)


def _cti_serve(args: argparse.Namespace) -> int:
    settings = config.load_settings(args.config)
    cti = settings.cti
    if args.listen is not None:
        cti = dataclasses.replace(cti, listen=args.listen)
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise BadInput(f"--port {args.port}: must be a port number 0-65535")
        cti = dataclasses.replace(cti, port=args.port)
    settings = dataclasses.replace(settings, cti=cti)
    serve(CtiServices(settings), cti.listen, cti.port)
    return 0


def _add_cti_commands(groups: Any) -> None:
    cti_cmd = groups.add_parser("cti", help="the CTI server (REST API, supervision)")
    cti_sub = cti_cmd.add_subparsers(dest="action", required=True)
    serve = cti_sub.add_parser("serve", help="serve the CTI REST API until interrupted")
    serve.add_argument("--config", dest="config", default=argparse.SUPPRESS,
                       help="settings file (as fsapps --config)")
    serve.add_argument("--listen", help="address to listen on (default: cti.listen)")
    serve.add_argument("--port", type=int, help="TCP port (default: cti.port, 8085)")
    serve.set_defaults(run=_cti_serve)


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

    _add_ext_commands(groups)
    _add_cti_commands(groups)
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
