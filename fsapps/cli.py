"""The `fsapps` command line: one subcommand group per concern, each a thin call into a module.

Subcommands grow with later issues; each registers itself in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fsapps import config, context
from fsapps.db import migrations
from fsapps.domain import extfile
from fsapps.domain.userdir import UserDirectory
from fsapps.errors import BadInput, FsappsError
from fsapps.fslog import setup_logging
from fsapps.server import passwords, userfile
from fsapps.server.app import serve_processes


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
    if args.processes is not None:
        if args.processes < 0:
            raise BadInput(f"--processes {args.processes}: must be 0 (one per core) or more")
        cti = dataclasses.replace(cti, processes=args.processes)
    settings = dataclasses.replace(settings, cti=cti)
    serve_processes(settings, cti.listen, cti.port, cti.processes)
    return 0


def _add_cti_commands(groups: Any) -> None:
    cti_cmd = groups.add_parser("cti", help="the CTI server (REST API, supervision)")
    cti_sub = cti_cmd.add_subparsers(dest="action", required=True)
    serve = cti_sub.add_parser("serve", help="serve the CTI REST API until interrupted")
    serve.add_argument("--config", dest="config", default=argparse.SUPPRESS,
                       help="settings file (as fsapps --config)")
    serve.add_argument("--listen", help="address to listen on (default: cti.listen)")
    serve.add_argument("--port", type=int, help="TCP port (default: cti.port, 8085)")
    serve.add_argument("--processes", type=int,
                       help="worker processes on the port (default: cti.processes; 0: one "
                            "per CPU core)")
    serve.set_defaults(run=_cti_serve)


def _users_file(named: str | None) -> Path:
    """The settings file ``users add`` writes: the one named, else the one fsapps reads, but
    never the repository's sample (an administrator copies it first)."""
    if named:
        return Path(named)
    found = config.config_path(None, system_path=config.SYSTEM_PATH)
    if found is None or found.resolve() == config.BUNDLED_PATH:
        raise BadInput(f"no settings file to add users to (only the sample "
                       f"{config.BUNDLED_PATH}): copy it to {config.SYSTEM_PATH} or name one "
                       "with --config")
    return found


def _read_new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise BadInput("no terminal to ask the password on: pipe it with --password-stdin")
    plain = getpass.getpass("password: ")
    if getpass.getpass("again: ") != plain:
        raise BadInput("the two passwords differ")
    return plain


def _users_add(args: argparse.Namespace) -> int:
    path = _users_file(args.config)
    existing = userfile.read_users(path)  # a malformed file fails before the password prompt
    plain = _read_new_password(args.password_stdin)
    weakness = passwords.weakness(args.username, plain)
    if weakness:
        raise BadInput(f"password refused for {args.username!r}: {weakness}")
    domains = [d.strip() for d in args.domains.split(",") if d.strip()] \
        if args.domains is not None else None
    users, new = userfile.merge_user(existing, args.username, passwords.hash_password(plain),
                                     args.role, args.extension, domains)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    userfile.write_checked(path, userfile.replace_users(text, users))
    print(f"fsapps: user {args.username!r} ({args.role}) {'added to' if new else 'updated in'} "
          f"{path}", file=sys.stderr)
    return 0


def _users_list(args: argparse.Namespace) -> int:
    settings = config.load_settings(args.config)
    rows = [("USER", "ROLE", "EXTENSION", "DOMAINS")]
    rows += [(u.username, u.role, u.extension or "-", ",".join(u.domains) or "-")
             for u in settings.users]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
              + "  " + row[3])
    return 0


def _add_users_commands(groups: Any) -> None:
    users_cmd = groups.add_parser("users", help="users who may log in to the CTI server")
    users_sub = users_cmd.add_subparsers(dest="action", required=True)
    add = users_sub.add_parser(
        "add", help="add a user, or change one's password and role, in the settings file")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=config.ROLES)
    add.add_argument("--extension", help="the user's own extension (default: none, or "
                     "unchanged for a user already there)")
    add.add_argument("--domains", metavar="D1,D2", help="domains a supervisor oversees "
                     "(default: every domain, or unchanged); '' = every domain")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin (for scripts)")
    add.add_argument("--config", dest="config", default=argparse.SUPPRESS,
                     help="settings file to write (as fsapps --config)")
    add.set_defaults(run=_users_add)
    show = users_sub.add_parser("list", help="print the users: names, roles, extensions")
    show.add_argument("--config", dest="config", default=argparse.SUPPRESS,
                      help="settings file (as fsapps --config)")
    show.set_defaults(run=_users_list)


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
    _add_users_commands(groups)
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
