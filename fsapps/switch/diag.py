"""``python fsapps.diag [max_digits]`` — the self-test: does this install work?

Four checks, each named in the answer: ``config`` (the settings load; else the ConfigError
text), ``redis`` (answers a PING), ``postgres`` (accepts a connection and its schema is
migrated to this fsapps' newest migration) and ``runtime`` (this node's ``fsapps.runtime``
beats in Redis, :mod:`fsapps.domain.nodes`). A check that needs a failed one is "not checked". Every
check is bounded by a short timeout (about 1 s for Redis, 2 s for PostgreSQL): the api holds
fs_cli while it runs.

As an api (``python fsapps.diag``): ``+OK fsapps <version> node <n>: ...`` when every check
passes, else ``-ERR fsapps <version>: failed: <check>, ...``; then one line per check. The
reply is written last, in one ``stream.write`` (FREESWITCH.md: a partial write would hide an
error).

As an application (dialplan 9196): answers, runs the checks, sets ``fsapps_diag=ok`` (the
self-test ran), ``fsapps_diag_version``, ``fsapps_diag_checks`` (``ok`` or
``failed: <check>, ...``) and ``fsapps_diag_report`` (the check lines joined by " | "), logs
the report, plays one high beep when all passed or three low beeps when not, reads up to
``max_digits`` keys (ending with #) into ``fsapps_diag_digits``, then hangs up.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from fsapps import __version__
from fsapps.channelvars import (
    DIAG_CHECKS_VAR,
    DIAG_DIGITS_VAR,
    DIAG_REPORT_VAR,
    DIAG_VAR,
    DIAG_VERSION_VAR,
)
from fsapps.fslog import log

TONE = "tone_stream://%(200,0,800)"
FAILED_TONE = "tone_stream://%(200,150,400);loops=3"
REDIS_TIMEOUT_S = 1.0
POSTGRES_TIMEOUT_S = 2  # libpq's minimum: a smaller connect_timeout is taken as 2 s
CHECKS = ("config", "redis", "postgres", "runtime")


@dataclasses.dataclass
class Report:
    """The outcome of every check: name -> (state, text), state "ok", "failed" or
    "not checked"."""

    node: str = ""
    results: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)

    def ok(self, name: str, text: str) -> None:
        self.results[name] = ("ok", text)

    def failed(self, name: str, text: str) -> None:
        self.results[name] = ("failed", " ".join(text.split()))

    def skipped(self, name: str, needs: str) -> None:
        self.results[name] = ("not checked", f"needs {needs}")

    def state(self, name: str) -> str:
        return self.results.get(name, ("not checked", ""))[0]

    @property
    def failures(self) -> list[str]:
        return [name for name in CHECKS if self.state(name) == "failed"]

    @property
    def passed(self) -> bool:
        return all(self.state(name) == "ok" for name in CHECKS)

    def lines(self) -> list[str]:
        out = []
        for name in CHECKS:
            state, text = self.results.get(name, ("not checked", ""))
            out.append(f"{name}: {state}" + (f": {text}" if text else ""))
        return out

    def headline(self) -> str:
        if self.passed:
            return f"+OK fsapps {__version__} node {self.node}: " + ", ".join(CHECKS) + " ok"
        failed = self.failures or [name for name in CHECKS if self.state(name) != "ok"]
        return f"-ERR fsapps {__version__}: failed: " + ", ".join(failed)

    def text(self) -> str:
        return "\n".join([self.headline(), *self.lines()]) + "\n"

    def checks_variable(self) -> str:
        return "ok" if self.passed else "failed: " + ", ".join(self.failures)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def run_checks() -> Report:
    """Run the four checks; never raises."""
    report = Report()
    ctx = _check_config(report)
    if ctx is None:
        for name in ("redis", "postgres", "runtime"):
            report.skipped(name, "config")
        return report
    client = _check_redis(ctx, report)
    _check_postgres(ctx, report)
    if client is None:
        report.skipped("runtime", "redis")
    else:
        _check_runtime(ctx, client, report)
    return report


# The checks import what they check inside their try: the self-test exists to say what is
# broken, so a module that cannot be imported (a half-installed fsapps, a missing library) is
# a failed check in the answer, never an api that answers nothing.
def _check_config(report: Report) -> Any:
    try:
        from fsapps import config
        from fsapps.context import get_context
        from fsapps.switch import acd

        ctx = get_context()
        report.node = acd.node_name(ctx)
        warnings = config.environment_warnings(os.environ)
    except Exception as exc:  # ConfigError above all: its text names key, value and why
        text = str(exc).removeprefix("config: ") if str(exc) else _error(exc)
        report.failed("config", text)
        return None
    text = f"node {report.node}, domains {', '.join(ctx.settings.domains)}"
    if warnings:
        text += "; warning: " + "; ".join(warnings)
    report.ok("config", text)
    return ctx


def _check_redis(ctx: Any, report: Report) -> Any:
    try:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from fsapps.store.connection import describe_url, redis_client

        settings = ctx.settings.redis
        quick = dataclasses.replace(settings, socket_timeout=min(settings.socket_timeout,
                                                                 REDIS_TIMEOUT_S),
                                    max_connections=4)
        where = (f"sentinels {', '.join(f'{h}:{p}' for h, p in settings.sentinels)}"
                 if settings.sentinels else describe_url(settings.url))
        # A client of its own (cached per settings by redis_client, so one per process),
        # without the retries that ride out a failover: a diagnosis answers at once.
        client: Any = redis_client(quick)
        client.set_retry(Retry(NoBackoff(), 0))
        client.ping()
    except Exception as exc:
        report.failed("redis", _error(exc))
        return None
    report.ok("redis", where)
    return client


def _check_postgres(ctx: Any, report: Report) -> None:
    try:
        from fsapps.db.connection import connect, describe_dsn
        from fsapps.db.migrations import current_version, discover

        dsn = ctx.settings.postgres.dsn
        newest = max((m.version for m in discover()), default=0)
        conn = connect(dsn, connect_timeout=POSTGRES_TIMEOUT_S)
        try:
            with conn.cursor() as cur:
                cur.execute("SET statement_timeout = %s", (POSTGRES_TIMEOUT_S * 1000,))
            conn.commit()  # keeps the SET; current_version wants an idle connection
            version = current_version(conn)
        finally:
            conn.close()
    except Exception as exc:
        report.failed("postgres", _error(exc))
        return
    where = describe_dsn(dsn)
    if version < newest:
        report.failed("postgres", f"{where}: schema at {version:04d}, this fsapps needs "
                      f"{newest:04d}: run `fsapps db migrate`")
    elif version > newest:
        report.failed("postgres", f"{where}: schema {version:04d} is newer than this fsapps "
                      f"({newest:04d}): upgrade fsapps")
    else:
        report.ok("postgres", f"{where}, schema {version:04d}")


def _check_runtime(ctx: Any, client: Any, report: Report) -> None:
    try:
        from fsapps.context import now_ms
        from fsapps.domain.nodes import DEAD_AFTER_MS

        score = client.zscore(ctx.node_keys.nodes(), report.node)
        if score is None:
            report.failed("runtime", f"node {report.node} has no heartbeat in Redis: "
                          "fsapps.runtime is not running (python.conf.xml startup-script "
                          "fsapps.runtime; it starts a moment after the switch, see the log)")
            return
        age_ms = now_ms() - int(float(score))
    except Exception as exc:
        report.failed("runtime", _error(exc))
        return
    if age_ms > DEAD_AFTER_MS:
        report.failed("runtime", f"node {report.node}: last heartbeat {age_ms / 1000:.1f} s "
                      "ago: fsapps.runtime stopped (see the log)")
    else:
        report.ok("runtime", f"node {report.node}, heartbeat {max(age_ms, 0) / 1000:.1f} s ago")


def handler(session: Any, args: str) -> None:
    try:
        max_digits = int(args.strip() or 4)
    except ValueError:
        log("WARNING", f"diag: max_digits {args!r} is not a number; using 4")
        max_digits = 4
    try:
        session.answer()
        report = run_checks()
        session.setVariable(DIAG_VAR, "ok")
        session.setVariable(DIAG_VERSION_VAR, __version__)
        session.setVariable(DIAG_CHECKS_VAR, report.checks_variable())
        session.setVariable(DIAG_REPORT_VAR, " | ".join(report.lines()))
        log("INFO" if report.passed else "ERR",
            f"diag: call {session.get_uuid()}: {report.headline()}: "
            + " | ".join(report.lines()))
        session.streamFile(TONE if report.passed else FAILED_TONE)
        digits = session.getDigits(max_digits, "#", 3000)
        session.setVariable(DIAG_DIGITS_VAR, digits)
        log("INFO", f"diag: call {session.get_uuid()} digits {digits!r}")
        session.hangup("NORMAL_CLEARING")
    except Exception as exc:
        log("ERR", f"diag: {exc!r}")


def fsapi(session: Any, stream: Any, env: Any, args: str) -> None:
    try:
        reply = run_checks().text()
    except Exception as exc:  # run_checks does not raise; this is the last guard
        reply = f"-ERR fsapps {__version__}: diag failed: {_error(exc)}\n"
    stream.write(reply)
