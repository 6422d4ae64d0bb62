"""The real-switch tier: FreeSWITCH 1.10.12 with mod_python3 running fsapps, SIPp phones and
callers, its own Redis and PostgreSQL database.

Runs whenever a FreeSWITCH with mod_python3 is found at ``FS_PREFIX`` (default
``/usr/local/freeswitch``) and ``sipp`` is on the PATH; otherwise every test here is skipped
with one line naming what is missing. ``FSAPPS_REQUIRE_SWITCH=1`` (``make test-switch``) turns
that skip into a failure.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis

from tools import sipp
from tools.realswitch import ROOT, RealSwitch, install_fsapps, missing_switch
from tools.servers import FreshDatabase, RedisServer, held_sip_port, scratch_dir

DOMAIN = "test.fsapps"
PASSWORD = "s3cret-pw"
_MISSING = missing_switch()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _MISSING is None:
        return
    here = Path(__file__).parent
    mine = [item for item in items if here in Path(str(item.fspath)).parents]
    if not mine:
        return
    if os.environ.get("FSAPPS_REQUIRE_SWITCH") == "1":
        raise pytest.UsageError(f"real-switch tier required but cannot run: {_MISSING}")
    marker = pytest.mark.skip(reason=f"real-switch tier: {_MISSING}")
    for item in mine:
        item.add_marker(marker)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report carries what a CI log needs to tell why: every SIPp of the test
    that has exited (its status and error file: a phone that could not bind its ports never
    answers) and the tail of each switch's log."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    st = item.funcargs.get("stack") or item.funcargs.get("phones")  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed or not isinstance(st, Stack):
        return
    exited = [f"{p.name} (port {p.port}): exit {p.proc.returncode}\n{p.errors()[-1500:]}"
              for p in st.sipps if p.proc is not None and p.proc.poll() is not None
              and p.proc.returncode != 0]
    report.sections.append(("SIPp processes that failed", "\n".join(exited) or "none"))
    for sw in st.switches:
        log = sw.dir / "log" / "freeswitch.log"
        if log.exists():
            tail = log.read_bytes()[-12000:].decode(errors="replace")
            report.sections.append((f"{sw.name}: end of freeswitch.log", tail))


def wait_for(check: Callable[[], object], timeout: float = 20.0, what: str = "") -> object:
    """Poll ``check`` until it returns something truthy (state, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or 'condition'} not met within {timeout}s")
        time.sleep(0.05)


def api(sw: RealSwitch, line: str) -> str:
    """A switch command over plain ESL (no aliases there): ``api python fsapps.api ...``,
    which must answer +OK."""
    reply = sw.api(f"python fsapps.api {line}")
    assert reply.startswith("+OK"), f"{line}: {reply}"
    return reply


def agent_state(st: Stack, ext: str) -> dict[str, str]:
    return st.redis.hgetall(f"fsapps:{{{DOMAIN}}}:agent:{ext}")


def agent_free(st: Stack, ext: str) -> bool:
    """Ready, reserved for nothing, its last leg's end told by the switch."""
    a = agent_state(st, ext)
    return a.get("call_state") == "ready" and not a.get("offer_uuid") and \
        not a.get("leg_pending")


def fsapps_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``fsapps`` command as an administrator runs it against the node's settings."""
    return subprocess.run([sys.executable, "-m", "fsapps.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={k: v for k, v in os.environ.items() if not k.startswith("FSAPPS_")})


@dataclass
class Stack:
    """The servers the switches share and the helpers the tests use."""

    base: Path
    site: Path
    redis_server: RedisServer
    database: FreshDatabase
    redis: redis.Redis = field(init=False)
    # where every node's sofia gateway "test" (conf/freeswitch trunk.xml) sends its calls
    trunk_port: int = field(default_factory=held_sip_port)
    switches: list[RealSwitch] = field(default_factory=list)
    sipps: list[sipp.Sipp] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.redis = redis.Redis.from_url(self.redis_server.url, decode_responses=True)

    def switch(self, name: str, **kwargs: object) -> RealSwitch:
        sw = RealSwitch(name, self.base, self.site, self.redis_server.url, self.database.dsn,
                        **kwargs)  # type: ignore[arg-type]
        self.switches.append(sw)
        return sw

    def sql(self, query: str, *params: object) -> list[tuple[object, ...]]:
        with psycopg2.connect(self.database.dsn) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def cdr(self, where: str, *params: object) -> dict[str, Any]:
        """The CDR row (as JSON) matching ``where``, once the runtime wrote it."""
        def row() -> dict[str, Any] | None:
            rows = self.sql(f"SELECT row_to_json(c) FROM cdr c WHERE {where}", *params)
            return rows[0][0] if rows else None  # type: ignore[return-value]
        return wait_for(row, 20, f"the CDR where {where} {params}")  # type: ignore[return-value]

    def attempts(self, uuid: object, columns: str = "extension, result"
                 ) -> list[tuple[object, ...]]:
        """``columns`` of the CDR's cdr_agent_attempt rows, in attempt order."""
        return self.sql(f"SELECT {columns} FROM cdr_agent_attempt WHERE cdr_uuid = %s "
                        "ORDER BY attempt_no", uuid)

    # ---------------------------------------------------------------- directory + phones ---
    def extension(self, ext: str, password: str = PASSWORD, domain: str = DOMAIN,
                  record: dict[str, object] | None = None) -> None:
        """A directory record written into cti_exten@<domain> as seed 003 does."""
        value = record or {"param": {"password": password}, "variable": {}, "attribute": {}}
        self.redis.hset(f"cti_exten@{domain}", ext, json.dumps(value))

    def phone(self, sw: RealSwitch, ext: str, ring_ms: int = 300, answer: bool = True,
              busy: bool = False, password: str = PASSWORD, register: bool = True) -> sipp.Sipp:
        """A SIPp phone for ``ext`` registered on ``sw`` (waits for fsapps to see it)."""
        uas = sipp.phone(ring_ms=ring_ms, answer=answer, busy=busy)
        self.sipps.append(uas)
        if register:
            reg = sipp.register(sw.internal_port, ext, password, DOMAIN, uas.port)
            self.sipps.append(reg)
            assert reg.wait(20) == 0, reg.errors() or reg.messages()
            wait_for(lambda: self.redis.hget("registrations", ext), 10,
                     f"registration of {ext} in Redis")
        # (a phone that could not bind its ports has exited: its REGISTER, another SIPp,
        # succeeds all the same, and every call to it would fail at once)
        assert uas.proc is not None and uas.proc.poll() is None, \
            f"phone {ext}'s SIPp exited ({uas.proc and uas.proc.returncode}): {uas.errors()}"
        return uas

    def trunk(self, **phone: object) -> sipp.Sipp:
        """The carrier behind gateway "test": a SIPp UAS answering as ``phone()`` does."""
        uas = sipp.phone(port=self.trunk_port, **phone)  # type: ignore[arg-type]
        self.sipps.append(uas)
        return uas

    def caller(self, sw: RealSwitch, number: str, caller_number: str, **kwargs: object
               ) -> sipp.Sipp:
        """A trunk caller arriving on ``sw``'s external profile."""
        proc = sipp.caller(sw.external_port, number, caller_number, **kwargs)  # type: ignore[arg-type]
        self.sipps.append(proc)
        return proc

    def phone_call(self, sw: RealSwitch, ext: str, number: str, **kwargs: object) -> sipp.Sipp:
        """Phone ``ext`` dialling ``number`` on the internal profile (digest auth)."""
        proc = sipp.caller(sw.internal_port, number, ext, domain=DOMAIN, password=PASSWORD,
                           **kwargs)  # type: ignore[arg-type]
        self.sipps.append(proc)
        return proc

    def stop_sipps(self) -> None:
        for proc in self.sipps:
            proc.stop()
        self.sipps.clear()


@pytest.fixture(scope="session")
def switch_site() -> Path:
    """fsapps installed for the switches' Python (README step), once per session."""
    return install_fsapps(scratch_dir("fsapps-site-") / "site")


@contextmanager
def built_stack(site: Path, database_url: str | None = None) -> Iterator[Stack]:
    """Redis, a fresh database (on ``database_url``'s server, DATABASE_URL's by default) and
    the switches the tests add, all stopped and dropped at the end."""
    base = scratch_dir("fsapps-switch-")
    redis_server = RedisServer().start()
    database = FreshDatabase(database_url) if database_url else FreshDatabase()
    database.create()
    st = Stack(base, site, redis_server, database)
    try:
        yield st
    finally:
        st.stop_sipps()
        for sw in st.switches:
            sw.stop(timeout=20)
            sw.kill()
        st.redis.close()
        database.drop()
        redis_server.close()


def first_node(st: Stack) -> RealSwitch:
    """The first node (README install steps, schema migrated)."""
    # a busy ring every 2 s for the long-wait test (only groups with a busy_ring hear it)
    sw = st.switch("fs1", fsapps_extra={"group_defaults": {"busy_ring_interval_seconds": 2}}
                   ).build(trunk_port=st.trunk_port)
    migrated = fsapps_cli(sw.config_path, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    return sw.start()


@pytest.fixture(scope="session")
def stack(switch_site: Path) -> Iterator[Stack]:
    with built_stack(switch_site) as st:
        yield st


@pytest.fixture(scope="session")
def fs1(stack: Stack) -> RealSwitch:
    """The first node, started once per session."""
    return first_node(stack)


@pytest.fixture
def phones(stack: Stack) -> Iterator[Stack]:
    """The stack, with every SIPp process the test started stopped after it."""
    yield stack
    stack.stop_sipps()


# Group numbers, one series for every module of the tier (they share the session's switches).
_group_numbers = itertools.count(3100)


def new_group_number() -> str:
    return str(next(_group_numbers))


@pytest.fixture
def group(fs1: RealSwitch, phones: Stack) -> Iterator[str]:
    """A new group (call mode 0) on the session's switch; its agents logged out after."""
    number = new_group_number()
    api(fs1, f"nway_add_group {number} 0")
    yield number
    for ext in phones.redis.zrange(f"fsapps:{{{DOMAIN}}}:group:{number}:members", 0, -1):
        fs1.api(f"python fsapps.api nway_logout {ext}")
