"""Versioned, idempotent schema migrations: numbered SQL files applied once each, in order.

Files are ``fsapps/db/schema/NNNN_<name>.sql``. The table ``fsapps_schema_migrations``
(version, name, checksum, applied_at) records what was applied. Each migration runs in its own
transaction together with its bookkeeping row, under a transaction-scoped advisory lock, so two
nodes migrating at once apply every version exactly once and a failing migration leaves nothing
behind. A migration edited after it was applied (checksum differs) is refused: add a new one.
Statements that cannot run inside a transaction (``CREATE INDEX CONCURRENTLY``, ...) are
therefore not allowed in migrations.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions

from fsapps.config import Secret, load_settings
from fsapps.db.connection import (
    Connection,
    Cursor,
    DatabaseUnavailableError,
    connect,
    describe_dsn,
)
from fsapps.errors import FsappsError, MigrationError

__all__ = ["MIGRATIONS_DIR", "Migration", "current_version", "discover", "migrate",
           "migrate_command"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "schema"

# Any fixed 64-bit value works as long as nothing else uses it: the bytes of b"fsappmig".
LOCK_KEY = 0x66736170706D6967

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS fsapps_schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def _checksum(text: str) -> str:
    # Line endings are normalised so a checkout with CRLF conversion is not "edited".
    return hashlib.sha256(text.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def discover(directory: str | Path | None = None) -> list[Migration]:
    """The migrations in ``directory`` (default: the packaged ones), ordered by version.

    A ``.sql`` file whose name is not ``NNNN_<lowercase_name>.sql`` or two files with one
    version number raise :class:`MigrationError` naming the file.
    """
    folder = Path(directory) if directory is not None else MIGRATIONS_DIR
    if not folder.is_dir():
        raise MigrationError(f"migrations directory {str(folder)!r} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file name {path.name!r} is not NNNN_<name>.sql "
                                 "(four digits, lowercase letters, digits, underscores)")
        version = int(match.group(1))
        if version == 0:
            raise MigrationError(f"migration {path.name!r}: versions start at 0001")
        if version in found:
            raise MigrationError(f"migrations {found[version].path.name!r} and {path.name!r} "
                                 f"share version {version:04d}")
        text = path.read_text(encoding="utf-8")
        found[version] = Migration(version, match.group(2), path, text, _checksum(text))
    return [found[v] for v in sorted(found)]


def _recorded(cur: Cursor) -> dict[int, tuple[str, str]]:
    cur.execute("SELECT version, name, checksum FROM fsapps_schema_migrations")
    return {version: (name, checksum) for version, name, checksum in cur.fetchall()}


def _pending(migrations: list[Migration], recorded: dict[int, tuple[str, str]],
             folder: str) -> list[Migration]:
    """What is left to apply; refuses edited, unknown and out-of-order migrations."""
    by_version = {m.version: m for m in migrations}
    for version, (name, checksum) in sorted(recorded.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{name} which {folder!r} does not "
                "contain: the schema is newer than this fsapps")
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {migration.label} was edited after it was applied (recorded "
                f"checksum {checksum[:12]}, file {migration.checksum[:12]}): restore "
                f"{migration.path.name!r} and put the change in a new migration")
    pending = [m for m in migrations if m.version not in recorded]
    newest = max(recorded, default=0)
    if pending and pending[0].version < newest:
        raise MigrationError(
            f"migration {pending[0].label} is pending but {newest:04d} is already applied: "
            "number new migrations after the newest one")
    return pending


def _connection(conn_or_dsn: Connection | str | Secret) -> tuple[Connection, bool]:
    if isinstance(conn_or_dsn, (str, Secret)):
        return connect(conn_or_dsn), True
    status = conn_or_dsn.info.transaction_status
    if status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        raise MigrationError("migrate needs an idle connection (it commits once per migration), "
                             f"got one in transaction status {status!r}")
    return conn_or_dsn, False


def _where(conn: Connection) -> str:
    return describe_dsn(conn.dsn)


def migrate(conn_or_dsn: Connection | str | Secret, directory: str | Path | None = None,
            on_applied: Callable[[Migration], None] | None = None) -> list[int]:
    """Apply every pending migration in version order; return the versions applied.

    Each migration and its ``fsapps_schema_migrations`` row commit together or not at all,
    while ``pg_advisory_xact_lock(LOCK_KEY)`` is held, so concurrent callers serialise and each
    version is applied once. ``on_applied`` is called after each commit. Nothing to do returns
    ``[]`` and changes nothing. Raises :class:`MigrationError` (edited, unknown or failing
    migration; earlier ones stay applied) or :class:`DatabaseUnavailableError`.
    """
    migrations = discover(directory)
    folder = str(Path(directory) if directory is not None else MIGRATIONS_DIR)
    conn, owned = _connection(conn_or_dsn)
    autocommit = conn.autocommit
    applied: list[int] = []
    try:
        # Autocommit would release the transaction-scoped lock after its own statement.
        conn.autocommit = False
        while True:
            migration = _apply_next(conn, migrations, folder)
            if migration is None:
                return applied
            applied.append(migration.version)
            if on_applied is not None:
                on_applied(migration)
    finally:
        if owned:
            conn.close()
        elif not conn.closed:
            conn.autocommit = autocommit


def _apply_next(conn: Connection, migrations: list[Migration], folder: str) -> Migration | None:
    """Apply the first pending migration in one transaction; None when there is none."""
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            # Created under the lock: two concurrent CREATE TABLE IF NOT EXISTS can collide.
            cur.execute(_BOOKKEEPING)
            pending = _pending(migrations, _recorded(cur), folder)
            if not pending:
                return None
            migration = pending[0]
            try:
                cur.execute(migration.sql)
            except psycopg2.Error as exc:
                if conn.closed:
                    raise
                raise MigrationError(
                    f"migration {migration.label} failed and was rolled back: "
                    f"{' '.join(str(exc).split())}") from exc
            cur.execute("INSERT INTO fsapps_schema_migrations (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum))
            return migration
    except psycopg2.Error as exc:
        if conn.closed:
            raise DatabaseUnavailableError(
                f"lost the PostgreSQL connection while migrating ({_where(conn)}): "
                f"{' '.join(str(exc).split())}") from None
        raise MigrationError(f"migrating ({_where(conn)}) failed: "
                             f"{' '.join(str(exc).split())}") from exc


def current_version(conn_or_dsn: Connection | str | Secret) -> int:
    """The highest applied version, 0 for a database never migrated. Changes nothing."""
    conn, owned = _connection(conn_or_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('fsapps_schema_migrations') IS NOT NULL")
            row = cur.fetchone()
            version = 0
            if row is not None and row[0]:
                cur.execute("SELECT coalesce(max(version), 0) FROM fsapps_schema_migrations")
                top = cur.fetchone()
                version = int(top[0]) if top is not None else 0
        conn.rollback()
        return version
    finally:
        if owned:
            conn.close()


def migrate_command(config_path: str | None, dsn: str | Secret | None = None,
                    directory: str | Path | None = None) -> int:
    """``fsapps db migrate``: apply pending migrations, print progress; exit status 0 or 1.

    Without ``dsn`` the PostgreSQL settings come from the configuration file. Prints
    ``applied NNNN_name`` per migration, or ``schema up to date (version N)`` when nothing was
    pending; on failure prints the error (never a password) to stderr and returns 1.
    """
    try:
        if dsn is None:
            settings = load_settings(config_path)
            target: str | Secret = settings.postgres.dsn
            timeout = settings.postgres.connect_timeout
        else:
            target, timeout = dsn, 5
        conn = connect(target, connect_timeout=timeout)
        try:
            applied = migrate(conn, directory,
                              on_applied=lambda m: print(f"applied {m.label}", flush=True))
            if not applied:
                print(f"schema up to date (version {current_version(conn)})")
        finally:
            conn.close()
    except FsappsError as exc:
        print(f"fsapps db migrate: {exc}", file=sys.stderr)
        return 1
    return 0
