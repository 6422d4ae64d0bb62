"""F7b: ``python fsapps.diag`` (api) and dialplan 9196 (application) check what an install
needs — the settings load, Redis answers, PostgreSQL answers with the schema migrated, this
node's runtime beats — and say which failed; ``+OK`` only when all pass, the reply written once
and last, every check bounded by a short timeout."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakefs import Behaviour
from fakefs.switch import Switch
from fsapps import __version__, context
from fsapps.config import PostgresSettings, RedisSettings, Secret
from fsapps.context import Context, now_ms
from fsapps.switch import diag
from tests.acd_support import DOMAIN, CallCenter, center
from tools.callcenter import DIALPLAN_DIR
from tools.servers import FreshDatabase, RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads")

ALL_OK = f"+OK fsapps {__version__} node {{node}}: config, redis, postgres, runtime ok"


@pytest.fixture
def cc(redis_server: RedisServer, database: FreshDatabase) -> Iterator[CallCenter]:
    yield from center(redis_server.url, database.dsn)


@pytest.fixture
def bare() -> Iterator[Switch]:
    """A switch with the project dialplan but no python.conf: fsapps answers calls and api
    commands, but no runtime was started on it."""
    switch = Switch("bare1", dialplan_dir=DIALPLAN_DIR, domain=DOMAIN, time_scale=0.05, seed=1)
    switch.start()
    try:
        yield switch
    finally:
        switch.shutdown(grace=1.0)


class Stream:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)


def fsapi() -> tuple[str, float]:
    """The api reply (asserting it is written in one write) and how long it took."""
    stream = Stream()
    started = time.monotonic()
    diag.fsapi("na", stream, None, "")
    elapsed = time.monotonic() - started
    assert len(stream.writes) == 1, stream.writes
    return stream.writes[0], elapsed


def lines_of(reply: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in reply.splitlines()[1:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def use(monkeypatch: pytest.MonkeyPatch, ctx: Context, **changes: Any) -> None:
    """The process context becomes ``ctx``'s settings with ``changes`` (restored after)."""
    monkeypatch.setattr(context, "_context",
                        Context(dataclasses.replace(ctx.settings, **changes)))


# ---------------------------------------------------------------- all pass -------------------
def test_every_check_passes_on_a_running_node(cc: CallCenter) -> None:
    sw = cc.start_switch()

    reply = sw.api("python fsapps.diag")

    assert reply.splitlines()[0] == ALL_OK.format(node=sw.name), reply
    checks = lines_of(reply)
    assert list(checks) == list(diag.CHECKS)
    assert all(text.startswith("ok") for text in checks.values()), reply
    assert checks["runtime"].startswith(f"ok: node {sw.name}, heartbeat ")
    assert "schema 00" in checks["postgres"]
    assert reply.endswith("\n")


# ---------------------------------------------------------------- each failure named ---------
def test_no_runtime_on_the_node_is_an_error(cc: CallCenter, bare: Switch) -> None:
    reply = bare.api("python fsapps.diag")

    assert reply.startswith(f"-ERR fsapps {__version__}: failed: runtime\n"), reply
    checks = lines_of(reply)
    assert checks["runtime"].startswith("failed: node bare1 has no heartbeat in Redis")
    assert checks["config"].startswith("ok") and checks["redis"].startswith("ok")
    assert checks["postgres"].startswith("ok")


def test_a_stale_heartbeat_is_an_error(cc: CallCenter, bare: Switch) -> None:
    cc.ctx.redis.zadd(cc.ctx.node_keys.nodes(), {"bare1": now_ms() - 60_000})

    reply = bare.api("python fsapps.diag")

    assert reply.startswith(f"-ERR fsapps {__version__}: failed: runtime\n"), reply
    assert lines_of(reply)["runtime"].startswith("failed: node bare1: last heartbeat 60.")


def test_redis_down_is_named_fast_and_the_runtime_not_checked(
    cc: CallCenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, cc.ctx, redis=RedisSettings(
        url=Secret(f"redis://:pw-secret@127.0.0.1:{free_port()}/0"), key_prefix="t"))

    reply, elapsed = fsapi()

    assert reply.startswith(f"-ERR fsapps {__version__}: failed: redis\n"), reply
    checks = lines_of(reply)
    assert checks["redis"].startswith("failed: StoreUnavailable: Redis at redis://")
    assert "Connection refused" in checks["redis"] and "pw-secret" not in reply
    assert checks["runtime"] == "not checked: needs redis"
    assert checks["postgres"].startswith("ok")
    assert elapsed < 2.0, elapsed  # no retries: the switch's client would take ~3.5 s


def test_postgres_down_is_named(cc: CallCenter, monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, cc.ctx, postgres=PostgresSettings(
        dsn=Secret(f"postgresql://fsapps:pw-secret@127.0.0.1:{free_port()}/fsapps")))

    reply, elapsed = fsapi()

    assert reply.startswith(f"-ERR fsapps {__version__}: failed: postgres, runtime\n"), reply
    checks = lines_of(reply)
    assert checks["postgres"].startswith("failed: DatabaseUnavailableError: cannot connect")
    assert "pw-secret" not in reply
    assert elapsed < 3.0, elapsed


def test_a_database_not_migrated_is_named(cc: CallCenter, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    empty = FreshDatabase().create()
    try:
        use(monkeypatch, cc.ctx, postgres=PostgresSettings(dsn=Secret(empty.dsn)))
        reply, _ = fsapi()
    finally:
        empty.drop()

    checks = lines_of(reply)
    assert checks["postgres"].startswith("failed: ")
    assert "schema at 0000, this fsapps needs 00" in checks["postgres"]
    assert checks["postgres"].endswith("run `fsapps db migrate`")


def test_a_bad_config_is_the_config_error_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "fsapps.yaml"
    file.write_text("cti:\n  port: 0\n", encoding="utf-8")
    monkeypatch.setenv("FSAPPS_CONFIG", str(file))
    monkeypatch.setattr(context, "_context", None)

    reply, _ = fsapi()

    assert reply == (f"-ERR fsapps {__version__}: failed: config\n"
                     "config: failed: cti.port = 0: expected a port number 1..65535\n"
                     "redis: not checked: needs config\n"
                     "postgres: not checked: needs config\n"
                     "runtime: not checked: needs config\n")


def test_an_ignored_environment_variable_is_shown_but_not_a_failure(
    cc: CallCenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    sw = cc.start_switch()
    monkeypatch.setenv("FSAPPS_HOME", "/opt/fsapps")

    reply = sw.api("python fsapps.diag")

    assert reply.startswith("+OK"), reply
    assert "warning: config: $FSAPPS_HOME names no setting and is ignored" in \
        lines_of(reply)["config"]


def test_the_reply_is_written_once_even_when_diag_itself_breaks(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> diag.Report:
        raise RuntimeError("boom")

    monkeypatch.setattr(diag, "run_checks", broken)
    reply, _ = fsapi()
    assert reply == f"-ERR fsapps {__version__}: diag failed: RuntimeError: boom\n"


# ---------------------------------------------------------------- dialplan 9196 ---------------
def diag_call(switch: Switch) -> dict[str, str]:
    channel = switch.place_call("1000", "9196", behaviour=Behaviour(dtmf=((300, "7#"),)))
    assert channel.done.wait(20), "the 9196 call did not end"
    [complete] = [e for e in switch.bus.events("CHANNEL_HANGUP_COMPLETE")
                  if e.headers.get("Unique-ID") == channel.uuid]
    played = [e.headers["Playback-File-Path"] for e in switch.bus.events("PLAYBACK_START")
              if e.headers.get("Unique-ID") == channel.uuid]
    return {**complete.headers, "played": ",".join(played)}


def test_9196_says_ok_with_a_high_beep(cc: CallCenter) -> None:
    h = diag_call(cc.start_switch())

    assert h["variable_fsapps_diag"] == "ok"
    assert h["variable_fsapps_diag_checks"] == "ok"
    assert h["variable_fsapps_diag_report"].startswith("config: ok")
    assert h["variable_fsapps_diag_digits"] == "7"
    assert h["played"] == diag.TONE


def test_9196_names_the_failed_check_with_low_beeps(cc: CallCenter, bare: Switch) -> None:
    h = diag_call(bare)

    assert h["variable_fsapps_diag"] == "ok"  # the self-test ran
    assert h["variable_fsapps_diag_checks"] == "failed: runtime"
    assert "runtime: failed: node bare1 has no heartbeat" in h["variable_fsapps_diag_report"]
    assert h["played"] == diag.FAILED_TONE
    assert any(level == "ERR" and "diag: call" in m and "failed: runtime" in m
               for level, m in bare.log)
