"""Schema migrations and PostgreSQL connections against a real server.

Every test that migrates gets its own new database (``fresh_dsn``), so tests never depend on
each other's schema; the session ``database`` fixture serves the connection and pool tests.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest

from fsapps import cli
from fsapps.config import Secret
from fsapps.db import connection as dbconn
from fsapps.db.connection import DatabaseUnavailableError, Pool, connect, transaction
from fsapps.db.migrations import MIGRATIONS_DIR, current_version, discover, migrate
from fsapps.errors import DatabaseError, MigrationError, StoreUnavailable
from tools.servers import FreshDatabase, free_port

PASSWORD = "pg-s3cr3t-Pa55"


@pytest.fixture
def fresh_dsn(database: FreshDatabase) -> Iterator[str]:
    """A new, empty database on the same server as the session database."""
    db = FreshDatabase(server_url=database.server_url).create()
    try:
        yield db.dsn
    finally:
        db.drop()


def query(dsn: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


def catalog_dump(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything that defines the public schema, read from the catalogs, in a stable order."""
    statements = {
        "tables": """SELECT table_name, table_type FROM information_schema.tables
                     WHERE table_schema = 'public' ORDER BY 1""",
        "columns": """SELECT table_name, column_name, ordinal_position, data_type,
                             character_maximum_length, numeric_precision, column_default,
                             is_nullable
                      FROM information_schema.columns WHERE table_schema = 'public'
                      ORDER BY 1, 3""",
        "constraints": """SELECT conrelid::regclass::text, conname, contype,
                                 pg_get_constraintdef(oid)
                          FROM pg_constraint WHERE connamespace = 'public'::regnamespace
                          ORDER BY 1, 2""",
        "indexes": """SELECT tablename, indexname, indexdef FROM pg_indexes
                      WHERE schemaname = 'public' ORDER BY 1, 2""",
        "sequences": """SELECT sequencename, data_type::text, start_value, min_value,
                               max_value, increment_by, cycle, cache_size
                        FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1""",
        "comments": """SELECT c.relname, a.attname, d.description
                       FROM pg_description d
                       JOIN pg_class c ON c.oid = d.objoid
                       LEFT JOIN pg_attribute a
                              ON a.attrelid = c.oid AND a.attnum = d.objsubid
                       WHERE c.relnamespace = 'public'::regnamespace
                       ORDER BY 1, 2 NULLS FIRST""",
    }
    return {name: query(dsn, statement) for name, statement in statements.items()}


def write_migrations(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


# --- the packaged schema ------------------------------------------------------------------


EXPECTED_TABLES = {"ext_group", "ext_group_map", "ext_group_level", "ext_skill", "extensions",
                   "group_blacklist", "group_vip", "caller_memory", "cdr", "cdr_agent_attempt",
                   "fsapps_schema_migrations"}


def test_fresh_migrate_creates_the_schema(fresh_dsn: str) -> None:
    assert current_version(fresh_dsn) == 0
    versions = [m.version for m in discover()]
    assert versions[0] == 1
    assert migrate(fresh_dsn) == versions
    assert current_version(fresh_dsn) == versions[-1]

    dump = catalog_dump(fresh_dsn)
    assert {t for t, _ in dump["tables"]} == EXPECTED_TABLES
    columns = {(t, c): (dtype, length, default, nullable)
               for t, c, _, dtype, length, _, default, nullable in dump["columns"]}
    assert columns["ext_group", "group_call_mode"][2] == "5"
    assert columns["ext_group", "group_callout_timeout"][2] == "15"
    assert columns["ext_group", "id"][2] == "nextval('ext_group_id_seq'::regclass)"
    assert columns["ext_group", "group_number"][:2] == ("character varying", 50)
    assert columns["ext_group", "group_name"][:2] == ("character varying", 100)
    for ring in ("transfer_ring", "black_list_ring", "busy_ring", "welcome_ring", "hold_music"):
        assert columns["ext_group", ring][:3] == ("character varying", 255,
                                                  "''::character varying")
    for nullable_default in ("wrapup_seconds", "max_no_answer", "busy_ring_repeats"):
        assert columns["ext_group", nullable_default] == ("integer", None, None, "YES")
    assert columns["ext_group", "blacklist_action"][2] == "'hangup'::character varying"
    assert columns["ext_group", "domain"][2] == "'default'::character varying"
    assert columns["ext_group_map", "id"][2] == "nextval('ext_group_map_id_seq'::regclass)"
    assert columns["ext_group_map", "position"][0] == "integer"
    assert columns["extensions", "enabled"][2] == "true"
    for stamp in ("a_start_stamp", "a_answer_stamp", "a_end_stamp", "start_stamp",
                  "answer_stamp", "end_stamp"):
        assert columns["cdr", stamp][0] == "timestamp with time zone"
    assert columns["cdr", "uuid"][:2] == ("character varying", 64)
    assert columns["cdr", "a_duration"][0] == columns["cdr", "billsec"][0] == "integer"
    assert columns["cdr", "str_no_answer_agents"][0] == columns["cdr", "flag"][0] == "text"
    assert columns["cdr", "is_callout"][0] == "boolean"
    for column in ("cti_ip", "a_caller_id_number", "a_destination_number", "a_record_file",
                   "a_sip_hangup_disposition", "destination_number", "duration",
                   "group_number", "domain", "hangup_cause", "level", "node", "created_at"):
        assert ("cdr", column) in columns
    for column in ("cdr_uuid", "attempt_no", "extension", "leg_uuid", "start_stamp",
                   "answer_stamp", "end_stamp", "duration", "billsec", "result",
                   "hangup_cause"):
        assert ("cdr_agent_attempt", column) in columns
    assert ("caller_memory", "last_served_at") in columns

    constraints = {(table, name): (kind, definition)
                   for table, name, kind, definition in dump["constraints"]}
    assert constraints["ext_group", "PK_GROUP_NUMBER"] == ("p", "PRIMARY KEY (group_number)")
    assert constraints["ext_group_map", "ext_group_map_group_fkey"][1].endswith(
        "REFERENCES ext_group(group_number) ON UPDATE CASCADE ON DELETE CASCADE")
    assert constraints["ext_group_map", "ext_group_map_group_ext_key"] == (
        "u", "UNIQUE (ext_group_number, ext)")
    assert constraints["extensions", "extensions_pkey"][1] == "PRIMARY KEY (domain, number)"
    assert constraints["caller_memory", "caller_memory_pkey"][1] == (
        "PRIMARY KEY (domain, group_number, caller_number)")
    assert constraints["cdr_agent_attempt", "cdr_agent_attempt_cdr_uuid_attempt_no_key"][1] == (
        "UNIQUE (cdr_uuid, attempt_no)")
    assert "ON DELETE CASCADE" in constraints["cdr_agent_attempt", "cdr_agent_attempt_cdr_fkey"][1]
    assert "ON DELETE CASCADE" in constraints["group_blacklist", "group_blacklist_group_fkey"][1]
    assert "ON DELETE CASCADE" in constraints["group_vip", "group_vip_group_fkey"][1]

    indexes = {name for _, name, _ in dump["indexes"]}
    assert {"cdr_a_start_stamp_idx", "cdr_destination_number_idx",
            "cdr_agent_attempt_extension_idx"} <= indexes
    sequences = {name: (start, cache) for name, _, start, _, _, _, _, cache
                 in dump["sequences"]}
    assert sequences["ext_group_id_seq"] == (4, 1)
    assert sequences["ext_group_map_id_seq"] == (1, 1)
    comments = {(table, column): text for table, column, text in dump["comments"]}
    assert comments["ext_group", None] == "分机座席分组,面向110业务"
    assert comments["ext_group", "group_number"] == "座席组短号"
    assert comments["ext_group", "group_call_mode"].startswith("呼叫模式")
    assert "5 记忆优先+2" in comments["ext_group", "group_call_mode"]
    assert comments["ext_group_map", "ext"] == "分机"


def test_seed_insert_and_select_work_unchanged(fresh_dsn: str) -> None:
    migrate(fresh_dsn)
    query(fresh_dsn, "insert into ext_group(group_name, group_number) values ('110', '110')")
    rows = query(fresh_dsn, "select id, group_name, group_number, current_ext_number, "
                 "group_call_mode, group_callout_timeout, transfer_ring, black_list_ring, "
                 "busy_ring from ext_group where group_number = '110'")
    assert rows == [(4, "110", "110", None, 5, 15, "", "", "")]
    extra = query(fresh_dsn, "select welcome_ring, hold_music, wrapup_seconds, max_no_answer, "
                  "busy_ring_repeats, blacklist_action, domain from ext_group")
    assert extra == [("", "", None, None, None, "hangup", "default")]
    query(fresh_dsn, "insert into ext_group_map(ext_group_id, ext_group_number, ext) "
          "values (4, '110', '1000')")
    assert query(fresh_dsn, "select id, ext_group_id, ext_group_number, ext from "
                 "ext_group_map") == [(1, 4, "110", "1000")]


@pytest.mark.parametrize("statement, error", [
    ("insert into ext_group(group_number, group_call_mode) values ('1', 6)",
     psycopg2.errors.CheckViolation),
    ("insert into ext_group(group_number, group_call_mode) values ('1', -1)",
     psycopg2.errors.CheckViolation),
    ("insert into ext_group(group_number, group_callout_timeout) values ('1', 0)",
     psycopg2.errors.CheckViolation),
    ("insert into ext_group(group_number, blacklist_action) values ('1', 'ignore')",
     psycopg2.errors.CheckViolation),
    ("insert into ext_group(group_name) values ('no number')",
     psycopg2.errors.NotNullViolation),
    ("insert into ext_group_map(ext_group_number, ext) values ('999', '1000')",
     psycopg2.errors.ForeignKeyViolation),
    ("insert into cdr_agent_attempt(cdr_uuid, attempt_no, result) values ('nope', 1, 'answered')",
     psycopg2.errors.ForeignKeyViolation),
])
def test_constraints_refuse_bad_rows(fresh_dsn: str, statement: str, error: type) -> None:
    migrate(fresh_dsn)
    with pytest.raises(error):
        query(fresh_dsn, statement)


def test_relations_cascade_and_cdr_attempts_write_once(fresh_dsn: str) -> None:
    migrate(fresh_dsn)
    query(fresh_dsn, "insert into ext_group(group_number) values ('120')")
    query(fresh_dsn, "insert into ext_group_map(ext_group_number, ext, position) "
          "values ('120', '1001', 2), ('120', '1000', 1)")
    with pytest.raises(psycopg2.errors.UniqueViolation):
        query(fresh_dsn, "insert into ext_group_map(ext_group_number, ext) values ('120', '1000')")
    query(fresh_dsn, "insert into group_blacklist(group_number, number) values ('120', '666')")
    query(fresh_dsn, "insert into group_vip(group_number, number) values ('120', '888')")
    assert query(fresh_dsn, "select ext from ext_group_map order by position nulls last, id") \
        == [("1000",), ("1001",)]
    query(fresh_dsn, "delete from ext_group where group_number = '120'")
    for table in ("ext_group_map", "group_blacklist", "group_vip"):
        assert query(fresh_dsn, f"select count(*) from {table}") == [(0,)]

    query(fresh_dsn, "insert into cdr(uuid, a_caller_id_number, a_destination_number, "
          "a_start_stamp, flag) values (%s, %s, %s, %s, %s)",
          ("7ba750aa", "130****8217", "120", "2021-05-30 16:57:10+08", "单座席无应答"))
    attempt = ("insert into cdr_agent_attempt(cdr_uuid, attempt_no, extension, result) "
               "values (%s, %s, %s, %s) on conflict (cdr_uuid, attempt_no) do nothing")
    for _ in range(2):  # a CDR delivered twice
        query(fresh_dsn, attempt, ("7ba750aa", 1, "1011", "no_answer"))
    assert query(fresh_dsn, "select count(*) from cdr_agent_attempt") == [(1,)]
    with pytest.raises(psycopg2.errors.CheckViolation):
        query(fresh_dsn, attempt, ("7ba750aa", 2, "1012", "maybe"))
    query(fresh_dsn, "delete from cdr where uuid = '7ba750aa'")
    assert query(fresh_dsn, "select count(*) from cdr_agent_attempt") == [(0,)]


# --- idempotence, concurrency, safety ------------------------------------------------------


def test_second_migrate_applies_nothing_and_changes_nothing(fresh_dsn: str) -> None:
    assert migrate(fresh_dsn) != []
    before = catalog_dump(fresh_dsn)
    bookkeeping = query(fresh_dsn, "select * from fsapps_schema_migrations order by version")
    assert migrate(fresh_dsn) == []
    assert catalog_dump(fresh_dsn) == before
    assert query(fresh_dsn, "select * from fsapps_schema_migrations order by version") \
        == bookkeeping


def test_cli_migrate_twice(fresh_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["db", "migrate", "--dsn", fresh_dsn]) == 0
    first = capsys.readouterr().out.splitlines()
    assert first == [f"applied {m.label}" for m in discover()]
    assert first[0] == "applied 0001_base"
    assert cli.main(["db", "migrate", "--dsn", fresh_dsn]) == 0
    last = discover()[-1].version
    assert capsys.readouterr().out.strip() == f"schema up to date (version {last})"


def test_cli_migrate_reads_the_dsn_from_the_settings_file(
        fresh_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "fsapps.yaml"
    config.write_text(f"postgres:\n  dsn: {fresh_dsn}\n  connect_timeout: 3\n")
    assert cli.main(["--config", str(config), "db", "migrate"]) == 0
    assert capsys.readouterr().out.startswith("applied 0001_base")
    assert current_version(fresh_dsn) == discover()[-1].version


SLOW_MIGRATIONS = {
    # Plain CREATE TABLE (no IF NOT EXISTS): applying a version twice would fail loudly.
    "0001_first.sql": "CREATE TABLE t1 (id int); SELECT pg_sleep(0.05);",
    "0002_second.sql": "CREATE TABLE t2 (id int); SELECT pg_sleep(0.05);",
    "0003_third.sql": "CREATE TABLE t3 (id int); INSERT INTO t3 VALUES (1);",
}


@pytest.mark.parametrize("packaged", [True, False], ids=["packaged", "slow"])
def test_concurrent_migrations_apply_each_version_once(fresh_dsn: str, tmp_path: Path,
                                                       packaged: bool) -> None:
    folder = MIGRATIONS_DIR if packaged else write_migrations(tmp_path / "m", SLOW_MIGRATIONS)
    workers = 4
    barrier = threading.Barrier(workers)

    def run() -> list[int]:
        barrier.wait(timeout=10)  # all start together, to collide
        return migrate(fresh_dsn, folder)

    with ThreadPoolExecutor(workers) as executor:
        futures = [executor.submit(run) for _ in range(workers)]
        results = [future.result(timeout=60) for future in futures]  # re-raises any error
    applied = sorted(v for result in results for v in result)
    assert applied == [m.version for m in discover(folder)]
    recorded = query(fresh_dsn, "select version from fsapps_schema_migrations order by 1")
    assert [v for (v,) in recorded] == applied
    if not packaged:
        assert query(fresh_dsn, "select count(*) from t3") == [(1,)]


def test_edited_migration_is_refused(fresh_dsn: str, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(MIGRATIONS_DIR, folder)
    migrate(fresh_dsn, folder)
    edited = folder / "0001_base.sql"
    edited.write_text(edited.read_text() + "\n-- harmless looking edit\n")
    with pytest.raises(MigrationError, match="0001_base was edited") as caught:
        migrate(fresh_dsn, folder)
    assert "0001_base.sql" in str(caught.value)
    # A new migration after the edited one is not applied either.
    following = f"{discover(folder)[-1].version + 1:04d}_more.sql"
    (folder / following).write_text("CREATE TABLE more (id int);")
    with pytest.raises(MigrationError, match="0001"):
        migrate(fresh_dsn, folder)
    assert query(fresh_dsn, "select to_regclass('more') is null") == [(True,)]


def test_crlf_checkout_is_not_an_edit(fresh_dsn: str, tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "m", {"0001_a.sql": "CREATE TABLE a (id int);\n"})
    migrate(fresh_dsn, folder)
    (folder / "0001_a.sql").write_bytes(b"CREATE TABLE a (id int);\r\n")
    assert migrate(fresh_dsn, folder) == []


def test_failing_migration_leaves_nothing_half_applied(fresh_dsn: str, tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "m", {
        "0001_ok.sql": "CREATE TABLE good (id int);",
        "0002_broken.sql": "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\n"
                           "ALTER TABLE good ADD COLUMN note text;\nSELECT 1 / 0;",
        "0003_later.sql": "CREATE TABLE later (id int);",
    })
    with pytest.raises(MigrationError, match="0002_broken failed.*division by zero"):
        migrate(fresh_dsn, folder)
    assert current_version(fresh_dsn) == 1
    assert query(fresh_dsn, "select to_regclass('half') is null, to_regclass('later') is null")\
        == [(True, True)]
    assert query(fresh_dsn, "select count(*) from information_schema.columns "
                 "where table_name = 'good' and column_name = 'note'") == [(0,)]
    # Fixed, it applies: nothing of the failed attempt was recorded.
    (folder / "0002_broken.sql").write_text("CREATE TABLE half (id int);")
    assert migrate(fresh_dsn, folder) == [2, 3]


def test_unknown_and_out_of_order_migrations_are_refused(fresh_dsn: str,
                                                         tmp_path: Path) -> None:
    newer = write_migrations(tmp_path / "newer", {"0001_a.sql": "SELECT 1;",
                                                  "0002_b.sql": "SELECT 2;"})
    migrate(fresh_dsn, newer)
    older = write_migrations(tmp_path / "older", {"0001_a.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="0002_b.*newer than this fsapps"):
        migrate(fresh_dsn, older)
    gap = write_migrations(tmp_path / "gap", {"0001_a.sql": "SELECT 1;", "0002_b.sql": "SELECT 2;",
                                              "0003_c.sql": "SELECT 3;"})
    migrate(fresh_dsn, gap)
    (gap / "0000_zero.sql").write_text("SELECT 0;")
    with pytest.raises(MigrationError, match="0000_zero"):
        migrate(fresh_dsn, gap)


@pytest.mark.parametrize("name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql"])
def test_badly_named_migration_files_are_refused(tmp_path: Path, name: str) -> None:
    folder = write_migrations(tmp_path / "m", {name: "SELECT 1;"})
    with pytest.raises(MigrationError, match=repr(name).replace(".", r"\.")):
        discover(folder)


def test_duplicate_versions_are_refused(tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "m", {"0001_a.sql": "", "0001_b.sql": ""})
    with pytest.raises(MigrationError, match="share version 0001"):
        discover(folder)


def test_migrate_keeps_a_callers_connection_usable(fresh_dsn: str) -> None:
    conn = connect(fresh_dsn)
    conn.autocommit = True
    try:
        assert migrate(conn) != []
        assert conn.autocommit is True and not conn.closed
        with conn.cursor() as cur:
            cur.execute("select count(*) from ext_group")
            assert cur.fetchone() == (0,)
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("select 1")
        with pytest.raises(MigrationError, match="idle connection"):
            migrate(conn)
    finally:
        conn.close()


# --- connection errors ----------------------------------------------------------------------


def dsns_with_password(database: FreshDatabase) -> list[str]:
    port = free_port()  # nothing listens there
    return [
        f"postgresql://fsapps:{PASSWORD}@127.0.0.1:{port}/callcenter",
        f"host=127.0.0.1 port={port} dbname=callcenter user=fsapps password={PASSWORD}",
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/callcenter_missing_db",
    ]


def test_bad_dsn_gives_a_clear_error_without_password(
        database: FreshDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    for dsn in dsns_with_password(database):
        with pytest.raises(DatabaseUnavailableError) as caught:
            connect(dsn, connect_timeout=2)
        message = str(caught.value)
        assert PASSWORD not in message and "127.0.0.1" in message
        assert "dbname=callcenter" in message
        assert isinstance(caught.value, StoreUnavailable)
        assert isinstance(caught.value, DatabaseError)

        assert cli.main(["db", "migrate", "--dsn", dsn]) == 1
        out, err = capsys.readouterr()
        assert PASSWORD not in out + err
        assert "cannot connect to PostgreSQL" in err and "127.0.0.1" in err
        assert "callcenter" in err


@pytest.mark.parametrize("dsn", [f"not a dsn password={PASSWORD}",
                                 f"postgresql://u:{PASSWORD}@127.0.0.1:5432/db?bogus_option=1"])
def test_malformed_dsn_error_hides_the_password(dsn: str) -> None:
    with pytest.raises(DatabaseError) as caught:
        connect(dsn)
    assert PASSWORD not in str(caught.value)


def test_secret_dsn_is_accepted(database: FreshDatabase) -> None:
    conn = connect(Secret(database.dsn))
    try:
        assert conn.autocommit is False
    finally:
        conn.close()


# --- pool and transaction -------------------------------------------------------------------


def test_transaction_commits_or_rolls_back(database: FreshDatabase) -> None:
    pool = Pool(database.dsn, minconn=1, maxconn=2)
    try:
        with transaction(pool) as cur:
            cur.execute("create table if not exists pool_probe (v text)")
            cur.execute("truncate pool_probe")
        with transaction(pool) as cur:
            cur.execute("insert into pool_probe values (%s)", ("kept'; drop table x; --",))
        with pytest.raises(RuntimeError), transaction(pool) as cur:
            cur.execute("insert into pool_probe values (%s)", ("rolled back",))
            raise RuntimeError("boom")
        with transaction(pool) as cur:
            cur.execute("select v from pool_probe")
            assert cur.fetchall() == [("kept'; drop table x; --",)]
        assert pool.open_connections == 1
    finally:
        pool.closeall()


def test_pool_never_exceeds_maxconn_and_waits_for_a_free_connection(
        database: FreshDatabase) -> None:
    pool = Pool(database.dsn, minconn=1, maxconn=2, acquire_timeout=10)
    lock = threading.Lock()
    inside = peak = 0
    two_inside = threading.Event()
    release = threading.Event()

    def work() -> None:
        nonlocal inside, peak
        with transaction(pool) as cur:
            with lock:
                inside += 1
                peak = max(peak, inside)
                if inside == 2:
                    two_inside.set()
            release.wait(timeout=10)
            cur.execute("select 1")
            with lock:
                inside -= 1

    try:
        with ThreadPoolExecutor(6) as executor:
            futures = [executor.submit(work) for _ in range(6)]
            # Two workers hold the two connections; the other four wait on the pool.
            assert two_inside.wait(timeout=10)
            release.set()
            for future in futures:
                future.result(timeout=30)  # re-raises a worker's error
        assert peak == 2
        assert pool.open_connections <= 1  # minconn idle kept, the rest closed
    finally:
        release.set()
        pool.closeall()


def test_exhausted_pool_times_out_clearly(database: FreshDatabase) -> None:
    pool = Pool(database.dsn, minconn=0, maxconn=1, acquire_timeout=0.2)
    held = pool.getconn()
    try:
        with pytest.raises(DatabaseUnavailableError, match="maxconn=1"):
            pool.getconn()
    finally:
        pool.putconn(held)
        pool.closeall()


def test_pool_replaces_a_connection_the_server_killed(database: FreshDatabase) -> None:
    pool = Pool(database.dsn, minconn=1, maxconn=1, ping_after=0)
    try:
        with transaction(pool) as cur:
            cur.execute("select pg_backend_pid()")
            row = cur.fetchone()
            assert row is not None
            victim = row[0]
        query(database.dsn, "select pg_terminate_backend(%s)", (victim,))
        with transaction(pool) as cur:  # pinged, found dead, replaced
            cur.execute("select pg_backend_pid()")
            assert cur.fetchone() != (victim,)
    finally:
        pool.closeall()


def test_lost_connection_mid_transaction_is_unavailable(database: FreshDatabase) -> None:
    pool = Pool(database.dsn, minconn=1, maxconn=1)
    try:
        with pytest.raises(DatabaseUnavailableError, match="lost the PostgreSQL connection"), \
                transaction(pool) as cur:
            cur.execute("select pg_terminate_backend(pg_backend_pid())")
        assert pool.open_connections == 0
        with transaction(pool) as cur:
            cur.execute("select 1")
    finally:
        pool.closeall()


def test_get_pool_is_one_per_dsn_per_process(database: FreshDatabase) -> None:
    try:
        first = dbconn.get_pool(database.dsn)
        assert dbconn.get_pool(Secret(database.dsn)) is first
        assert "password" not in repr(first)
    finally:
        dbconn.close_pools()
