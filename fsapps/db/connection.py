"""PostgreSQL connections: one connect function, a small thread-safe pool, a transaction scope.

FreeSWITCH reloads only the entry modules (``fsapps.nwayacd`` ...) on every call; this module is
imported by them and therefore survives, so the pools kept here live once per process. Nothing
connects at import time: a pool opens its first connection on the first :meth:`Pool.getconn`.

Every statement is parameterised (``cur.execute(sql, params)``); values are never formatted into
SQL text. Passwords never reach an error message: failures name host, port, database and user.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions

from fsapps.config import Secret
from fsapps.errors import DatabaseError, StoreUnavailable

__all__ = [
    "Connection", "Cursor", "DatabaseUnavailableError", "Pool", "close_pools", "connect",
    "describe_dsn", "get_pool", "redact_dsn", "transaction",
]


Connection = psycopg2.extensions.connection
Cursor = psycopg2.extensions.cursor


class DatabaseUnavailableError(StoreUnavailable, DatabaseError):
    """PostgreSQL cannot be reached (refused, timed out, authentication failed, pool exhausted)."""


def _reveal(dsn: str | Secret) -> str:
    return dsn.reveal() if isinstance(dsn, Secret) else dsn


# `scheme://user:password@host` and `password=value` (quoted or not) in a key/value DSN.
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^\s/]*(@)")
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_dsn(dsn: str | Secret) -> str:
    """The DSN with any password replaced by ``***`` (works on malformed DSNs too)."""
    text = _URL_PASSWORD.sub(r"\1***\2", _reveal(dsn))
    return _KV_PASSWORD.sub(r"\1***", text)


def _params(dsn: str | Secret) -> dict[str, str]:
    try:
        return psycopg2.extensions.parse_dsn(_reveal(dsn))
    except psycopg2.ProgrammingError:
        # libpq's own message quotes the token it choked on, which may be the password.
        raise DatabaseError(
            f"invalid PostgreSQL DSN {redact_dsn(dsn)!r}: expected "
            "'postgresql://user@host:port/dbname' or 'host=... port=... dbname=... user=...'"
        ) from None


def describe_dsn(dsn: str | Secret) -> str:
    """``host=... port=... dbname=... user=...`` of a DSN, never its password."""
    params = _params(dsn)
    host = params.get("host") or params.get("hostaddr") or "localhost"
    parts = [f"host={host}", f"port={params.get('port', '5432')}",
             f"dbname={params.get('dbname', params.get('user', '?'))}"]
    if "user" in params:
        parts.append(f"user={params['user']}")
    return " ".join(parts)


def _scrub(message: str, dsn: str | Secret) -> str:
    password = _params(dsn).get("password")
    message = " ".join(message.split())
    return message.replace(password, "***") if password else message


def connect(dsn: str | Secret, connect_timeout: int = 5) -> Connection:
    """Open one connection (autocommit off: the caller commits or rolls back).

    Raises :class:`DatabaseUnavailableError` naming host/port/database/user (never the
    password) when the server refuses, times out or rejects the login, and
    :class:`DatabaseError` for a DSN that does not parse.
    """
    params = _params(dsn)
    extra: dict[str, Any] = {} if "application_name" in params else {"application_name": "fsapps"}
    try:
        conn = psycopg2.connect(_reveal(dsn), connect_timeout=connect_timeout, **extra)
    except psycopg2.OperationalError as exc:
        # `from None`: the chained libpq error would repeat the message without our scrubbing.
        raise DatabaseUnavailableError(
            f"cannot connect to PostgreSQL ({describe_dsn(dsn)}): {_scrub(str(exc), dsn)}"
        ) from None
    conn.autocommit = False
    return conn


def _alive(conn: Connection) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.rollback()
        return True
    except psycopg2.Error:
        return False


def _close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except psycopg2.Error:
        pass


class Pool:
    """A thread-safe pool of at most ``maxconn`` connections to one DSN.

    Connections are opened on demand; up to ``minconn`` idle ones are kept for reuse and the
    rest are closed when returned. :meth:`getconn` waits up to ``acquire_timeout`` seconds for a
    free connection, then raises :class:`DatabaseUnavailableError`. A connection idle for more than
    ``ping_after`` seconds is checked with ``SELECT 1`` before it is handed out, so a PostgreSQL
    restart costs a reconnect rather than a failed transaction. After a fork the child forgets
    the parent's connections (sharing a socket between processes corrupts both sides).
    """

    def __init__(self, dsn: str | Secret, minconn: int = 1, maxconn: int = 10, *,
                 connect_timeout: int = 5, acquire_timeout: float = 10.0,
                 ping_after: float = 30.0) -> None:
        if maxconn < 1 or not 0 <= minconn <= maxconn:
            raise ValueError(f"pool sizes need 0 <= minconn <= maxconn and maxconn >= 1, "
                             f"got minconn={minconn!r} maxconn={maxconn!r}")
        _params(dsn)  # a malformed DSN fails here, not on the first call under load
        self._dsn = dsn
        self.minconn = minconn
        self.maxconn = maxconn
        self.connect_timeout = connect_timeout
        self.acquire_timeout = acquire_timeout
        self.ping_after = ping_after
        self._cond = threading.Condition()
        self._idle: list[tuple[Connection, float]] = []  # (connection, returned at monotonic)
        self._open = 0  # idle + lent out
        self._pid = os.getpid()
        self._closed = False

    def __repr__(self) -> str:
        return f"Pool({describe_dsn(self._dsn)!r}, open={self._open}, maxconn={self.maxconn})"

    @property
    def open_connections(self) -> int:
        with self._cond:
            return self._open

    def _after_fork(self) -> None:
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._idle.clear()
            self._open = 0

    def _reserve(self) -> tuple[Connection, float] | None:
        """An idle connection, or None after reserving room to open a new one."""
        deadline = time.monotonic() + self.acquire_timeout
        with self._cond:
            self._after_fork()
            while True:
                if self._closed:
                    raise DatabaseError(f"{self!r} is closed")
                if self._idle:
                    return self._idle.pop()
                if self._open < self.maxconn:
                    self._open += 1
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DatabaseUnavailableError(
                        f"no PostgreSQL connection free within {self.acquire_timeout}s "
                        f"({describe_dsn(self._dsn)}, maxconn={self.maxconn})")
                self._cond.wait(remaining)

    def _forget(self, conn: Connection) -> None:
        _close_quietly(conn)
        with self._cond:
            self._open -= 1
            self._cond.notify()

    def getconn(self) -> Connection:
        """Lend a live connection; give it back with :meth:`putconn`."""
        while True:
            reserved = self._reserve()
            if reserved is None:
                try:
                    return connect(self._dsn, self.connect_timeout)
                except BaseException:
                    with self._cond:
                        self._open -= 1
                        self._cond.notify()
                    raise
            conn, since = reserved
            stale = time.monotonic() - since >= self.ping_after
            if conn.closed or (stale and not _alive(conn)):
                self._forget(conn)
                continue
            return conn

    def putconn(self, conn: Connection, discard: bool = False) -> None:
        """Take a connection back; an open transaction on it is rolled back.

        ``discard=True`` (or a broken connection) closes it instead of keeping it.
        """
        if not discard and not conn.closed:
            status = conn.info.transaction_status
            if status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                try:
                    conn.rollback()
                except psycopg2.Error:
                    discard = True
        with self._cond:
            if os.getpid() != self._pid:
                return  # the parent's connection: closing it here would close the parent's
            keep = not (discard or conn.closed or self._closed) and len(self._idle) < self.minconn
            if keep:
                self._idle.append((conn, time.monotonic()))
                self._cond.notify()
                return
        self._forget(conn)

    def closeall(self) -> None:
        """Close idle connections now and lent ones when they come back; getconn then fails."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            self._forget(conn)


_POOLS: dict[str, Pool] = {}
_POOLS_LOCK = threading.Lock()


def get_pool(dsn: str | Secret, minconn: int = 1, maxconn: int = 10,
             connect_timeout: int = 5) -> Pool:
    """The process-wide pool for ``dsn`` (created on first use; sizes of the first call win)."""
    key = _reveal(dsn)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = Pool(dsn, minconn, maxconn, connect_timeout=connect_timeout)
        return pool


def close_pools() -> None:
    """Close every pool made by :func:`get_pool` (shutdown, tests)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.closeall()


@contextmanager
def transaction(pool: Pool) -> Iterator[Cursor]:
    """Run the block in one transaction on a pooled connection and yield its cursor.

    Commits when the block ends normally, rolls back when it raises; either way the connection
    goes back to the pool (closed instead if it broke). ``cur.connection`` is the connection.
    A connection lost mid-transaction raises :class:`DatabaseUnavailableError`; nothing was
    committed.
    Statement errors (unique violation, ...) propagate as psycopg2 errors, rolled back.
    """
    conn = pool.getconn()
    broken = False
    try:
        with conn.cursor() as cur:
            yield cur
        conn.commit()
    except BaseException as exc:
        if not conn.closed:
            try:
                conn.rollback()
            except psycopg2.Error:
                broken = True
        broken = broken or bool(conn.closed)
        if broken and isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
            raise DatabaseUnavailableError(
                f"lost the PostgreSQL connection ({describe_dsn(pool._dsn)}): "
                f"{_scrub(str(exc), pool._dsn)}") from None
        raise
    finally:
        pool.putconn(conn, discard=broken)
