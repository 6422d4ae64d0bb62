"""CDRs end to end (issue 7): queue calls (fsapps.nwayacd) and outbound calls (fsapps.nwaycallout)
on one fake node running the project's dialplan and fsapps.runtime, against the test Redis and
PostgreSQL. Every CDR goes through the spool (a Redis stream) to the ``cdr`` and
``cdr_agent_attempt`` tables; the fault test makes PostgreSQL unreachable for fsapps with a TCP
proxy it controls. Every wait is on a condition.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import pytest

from fakefs import Behaviour, Channel, Switch
from fakefs.scenario import wait_until
from fsapps.db.connection import Pool
from fsapps.events import cdr, cdrspool
from fsapps.switch import outbound
from tests.acd_support import DOMAIN, CallCenter, center
from tests.pubsub_capture import Subscriber
from tools.servers import TcpRelay

RING_S = 1
# A ring that must end answered: FreeSWITCH checks originate_timeout on a whole-second timer
# (fakefs models it), so a 1 s timeout fires after 0-0.6 s and may beat a phone answering
# after 50 ms; a 2 s one fires after 1.0-1.6 s at the earliest.
ANSWER_RING_S = 2
TALK = 100


def proxied(dsn: str, port: int) -> str:
    """``dsn`` through the proxy (URL or key/value form)."""
    return str(psycopg2.extensions.make_dsn(dsn, host="127.0.0.1", port=port))


def target(dsn: str) -> tuple[str, int]:
    params = psycopg2.extensions.parse_dsn(dsn)
    return params.get("host") or "127.0.0.1", int(params.get("port") or 5432)


@dataclass
class Cdrs:
    cc: CallCenter
    switch: Switch
    bus: Subscriber
    dsn: str

    def group(self, number: str, **fields: Any) -> None:
        fields.setdefault("group_callout_timeout", RING_S)
        fields.setdefault("wrapup_seconds", 0)
        self.cc.group(number, group_call_mode=0, **fields)

    def agent(self, group: str, ext: str, ready: bool = True, **behaviour: Any) -> None:
        behaviour.setdefault("answer_after_ms", 50)
        self.cc.agent(ext, [group], behaviour=Behaviour(**behaviour), ready=ready)

    def call(self, group: str, caller: str, **behaviour: Any) -> Channel:
        behaviour.setdefault("hangup_after_bridge_ms", TALK)
        return self.cc.call(self.switch, caller, f"7{group}", **behaviour)

    def gone(self, channel: Channel, timeout: float = 8.0) -> None:
        wait_until(lambda: channel.done.is_set(), timeout, f"call {channel.uuid[:8]} over")

    def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        conn = psycopg2.connect(self.dsn)
        try:
            with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql, args)
                return [dict(r) for r in cur.fetchall()]
        finally:
            conn.close()

    def row(self, uuid: str, timeout: float = 5.0) -> dict[str, Any]:
        rows = wait_until(lambda: self.query("SELECT * FROM cdr WHERE uuid = %s", uuid),
                          timeout, f"CDR row of {uuid[:8]}")
        return dict(rows[0])

    def attempts(self, uuid: str) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM cdr_agent_attempt WHERE cdr_uuid = %s "
                          "ORDER BY attempt_no", uuid)

    def spool(self) -> str:
        return self.cc.ctx.keys(DOMAIN).cdr_spool()

    def logged(self, text: str) -> list[str]:
        return [m for _, m in self.switch.log if text in m]


@pytest.fixture(scope="module")
def cdrs(redis_server: Any, database: Any, no_leaked_switch_threads: None) -> Iterator[Cdrs]:
    for cc in center(redis_server.url, database.dsn, callout_timeout=RING_S):
        switch = cc.start_switch()
        switch.add_gateway("test", lambda number: Behaviour(answer_after_ms=100))
        yield from watching(cc, switch, redis_server.url, database.dsn)


def watching(cc: CallCenter, switch: Switch, redis_url: str, dsn: str) -> Iterator[Cdrs]:
    """The module's Cdrs, listening on cdr_* while the module runs."""
    bus = Subscriber(redis_url, ("cdr_*",))
    try:
        yield Cdrs(cc, switch, bus, dsn)
    finally:
        bus.close()


def settled(cdrs: Cdrs) -> Iterator[Cdrs]:
    """One test's view of ``cdrs``; after it every call is over and the spool written."""
    yield cdrs
    wait_until(lambda: not cdrs.switch.channels, 8, "every call over")
    wait_until(lambda: cdrs.cc.ctx.redis.xlen(cdrs.spool()) == 0, 5, "the spool empty")


@pytest.fixture
def c(cdrs: Cdrs) -> Iterator[Cdrs]:
    yield from settled(cdrs)


# ------------------------------------------------------------------------ queue calls -------
def test_answered_after_one_no_answer(c: Cdrs) -> None:
    """The first agent does not answer, the second does: one cdr row (接通, the answering agent
    and its times, the missed agent listed) and two attempt rows; one cdr_<group> message."""
    c.group("301")
    c.agent("301", "3011", answer_after_ms=None)
    c.agent("301", "3012")
    channel = c.call("301", "13900000301")
    c.gone(channel)
    row = c.row(channel.uuid)
    assert row["flag"] == cdr.FLAG_ANSWERED
    assert row["is_callout"] is False
    assert row["destination_number"] == "3012"
    assert row["str_no_answer_agents"] == "3011"
    assert row["a_caller_id_number"] == "13900000301"
    assert row["a_destination_number"] == "7301"
    assert row["group_number"] == "301" and row["level"] == "normal"
    assert row["node"] == c.switch.name and row["domain"] == DOMAIN
    assert row["a_start_stamp"] <= row["start_stamp"] <= row["answer_stamp"] <= \
        row["end_stamp"] <= row["a_end_stamp"]
    assert row["a_sip_hangup_disposition"] in ("recv_bye", "send_bye")
    assert row["a_duration"] >= row["a_billsec"] >= 0 and row["billsec"] >= 0
    attempts = c.attempts(channel.uuid)
    assert [(a["attempt_no"], a["extension"], a["result"]) for a in attempts] == [
        (1, "3011", "no_answer"), (2, "3012", "answered")]
    assert attempts[0]["answer_stamp"] is None and attempts[0]["hangup_cause"]
    assert attempts[1]["answer_stamp"] is not None and attempts[1]["leg_uuid"]
    message = c.bus.wait("cdr_301", uuid=channel.uuid).data
    assert message["flag"] == "接通" and message["str_no_answer_agents"] == "3011"
    assert message["is_callout"] == "false" and message["destination_number"] == "3012"
    time.sleep(0.2)
    assert len(c.bus.find("cdr_301", uuid=channel.uuid)) == 1


def test_one_agent_no_answer_then_caller_hangs_up(c: Cdrs) -> None:
    """Seed example: one agent rang and did not answer, the caller hung up: 单座席无应答."""
    c.group("302")
    c.agent("302", "3021", answer_after_ms=None)
    channel = c.call("302", "13900000302", abandon_after_ms=1500)
    c.gone(channel)
    row = c.row(channel.uuid)
    assert row["flag"] == cdr.FLAG_ONE_NO_ANSWER
    assert row["str_no_answer_agents"] == "3021" and row["destination_number"] == "3021"
    assert row["answer_stamp"] is None and row["billsec"] == 0
    assert [a["result"] for a in c.attempts(channel.uuid)][0] == "no_answer"


def test_caller_abandons_in_the_queue(c: Cdrs) -> None:
    """No agent free; the caller hangs up while waiting: 排队放弃, no attempt rows."""
    c.group("303")
    c.agent("303", "3031", ready=False)
    channel = c.call("303", "13900000303", abandon_after_ms=400)
    c.gone(channel)
    row = c.row(channel.uuid)
    assert row["flag"] == cdr.FLAG_ABANDONED
    assert row["destination_number"] == "" and row["str_no_answer_agents"] == ""
    assert row["a_end_stamp"] is not None and row["a_duration"] >= 0
    assert c.attempts(channel.uuid) == []
    assert c.bus.wait("cdr_303", uuid=channel.uuid).data["flag"] == "排队放弃"


def test_outbound_call_still_writes_is_callout(c: Cdrs) -> None:
    c.cc.group("110", group_callout_timeout=RING_S, wrapup_seconds=0, group_call_mode=0)
    c.agent("110", "3041")
    channel = c.switch.place_call("3041", "918600000304", domain=DOMAIN, context="default",
                                  behaviour=Behaviour(answer_after_ms=None,
                                                      hangup_after_bridge_ms=TALK))
    c.gone(channel)
    row = c.row(channel.uuid)
    assert row["is_callout"] is True and row["destination_number"] == "18600000304"
    assert c.attempts(channel.uuid) == []
    assert c.bus.wait("cdr_callout", uuid=channel.uuid).data["is_callout"] == "true"


def test_switch_hangup_fields_of_answered_app_calls(c: Cdrs) -> None:
    """The fields FreeSWITCH sets only in the hangup state, after the handler has returned
    (a_answer_stamp, a_duration, a_billsec, hangup_cause, a_sip_hangup_disposition; the
    party's answer_stamp and billsec), are in the CDRs nwayacd, nwaycallout and nway_bridge
    write — exactly the caller's channel's own values — though the handlers cannot read them."""
    # Each call has an agent of its own, rung long enough to answer: with 3053 also in group
    # 305 (and a 1 s ring) the nwayacd call could ring 3051 out and then take 3053 from the
    # simultaneous nway_bridge call, or ring 3051 again (two attempt rows) - both correct.
    c.group("305", group_callout_timeout=ANSWER_RING_S)
    c.agent("305", "3051")
    c.cc.group("110", group_callout_timeout=RING_S, wrapup_seconds=0, group_call_mode=0)
    c.agent("110", "3052")
    c.group("306", group_callout_timeout=ANSWER_RING_S)
    c.agent("306", "3053")
    talk = {"hangup_after_bridge_ms": 1300}
    calls = {
        "nwayacd": c.call("305", "13900000305", **talk),
        "nwaycallout": c.switch.place_call("3052", "918600000305", domain=DOMAIN,
                                           context="default",
                                           behaviour=Behaviour(answer_after_ms=None, **talk)),
        "nway_bridge": c.switch.place_call("13900000306", "83053", domain=DOMAIN,
                                           context="default",
                                           variables={outbound.RING_TIMEOUT_VAR:
                                                      str(ANSWER_RING_S)},
                                           behaviour=Behaviour(answer_after_ms=None, **talk)),
    }
    for channel in calls.values():
        c.gone(channel)
    for app, channel in calls.items():
        row = c.row(channel.uuid)
        assert channel.get(cdr.OWN_CDR_VAR) == app
        assert row["a_answer_stamp"] is not None, app
        assert row["a_answer_stamp"].timestamp() == int(channel.get("answer_uepoch")) / 1e6
        assert row["a_end_stamp"].timestamp() == int(channel.get("end_uepoch")) / 1e6
        assert row["a_billsec"] == int(channel.get("billsec")) >= 1, app
        assert row["a_duration"] == int(channel.get("duration")) >= row["a_billsec"], app
        assert row["hangup_cause"] == channel.get("hangup_cause") == "NORMAL_CLEARING", app
        assert row["a_sip_hangup_disposition"] == channel.get("sip_hangup_disposition") == \
            "recv_bye", app
        assert row["answer_stamp"] is not None and row["billsec"] >= 1, app
        assert row["start_stamp"] <= row["answer_stamp"] <= row["end_stamp"] <= \
            row["a_end_stamp"], app
        message = c.bus.wait(None, uuid=channel.uuid).data
        assert message["a_answer_stamp"] and int(message["a_billsec"]) >= 1, app
    for app in ("nwayacd", "nway_bridge"):
        [attempt] = c.attempts(calls[app].uuid)
        assert attempt["answer_stamp"] is not None and attempt["billsec"] >= 1, app
        assert attempt["transferred"] is False
        # the caller ended the bridge: the agent's leg cleared normally (its
        # bridge_hangup_cause; the caller's last_bridge_hangup_cause stays unset then)
        assert attempt["hangup_cause"] == "NORMAL_CLEARING", app


# ------------------------------------------------------------------------ spool -------------
def test_spool_writer_skips_malformed_entries_and_replays_once(c: Cdrs) -> None:
    """A spooled CDR written twice (a re-delivery) is one row; garbage is logged and dropped."""
    ctx = c.cc.ctx
    record = cdr.Cdr(uuid="spool-replay-1", is_callout=False, a_caller_id_number="1",
                     a_destination_number="7399", a_start=time.time() - 5, a_answer=None,
                     a_end=time.time(), flag=cdr.FLAG_ABANDONED, group_number="399",
                     domain=DOMAIN, attempts=(cdr.Attempt(1, "3991", time.time() - 4, None,
                                                          time.time() - 3, "busy"),))
    cdrspool.append(ctx, record)
    cdrspool.append(ctx, record)
    ctx.redis.xadd(c.spool(), {"cdr": "{not json"})
    wait_until(lambda: c.query("SELECT 1 FROM cdr WHERE uuid = %s", record.uuid), 5, "written")
    wait_until(lambda: ctx.redis.xlen(c.spool()) == 0, 5, "spool empty")
    assert len(c.attempts(record.uuid)) == 1
    wait_until(lambda: c.logged("dropping malformed entry"), 3, "the bad entry logged")


# ------------------------------------------------------------------------ the fault test ----
def test_postgresql_down_during_100_calls_loses_nothing(c: Cdrs, database: Any) -> None:
    """PostgreSQL unreachable for fsapps (a proxy that cuts it) during 100 short queue calls:
    the calls go on, every CDR waits in the spool, one log line says so; when PostgreSQL is
    back every CDR is written exactly once (some delivered twice on purpose) within seconds."""
    ctx = c.cc.ctx
    c.group("310")
    agents = [f"31{i:02d}" for i in range(10)]
    for ext in agents:
        c.agent("310", ext, answer_after_ms=20)
    proxy = TcpRelay(*target(database.dsn))  # PostgreSQL, to be taken away
    pool = ctx._pool
    ctx._pool = Pool(proxied(database.dsn, proxy.port), connect_timeout=2, acquire_timeout=2)
    logged_before = len(c.logged("PostgreSQL unreachable"))
    try:
        proxy.down()
        channels: list[Channel] = []
        for batch in range(10):
            placed = [c.call("310", f"1391000{batch}{i:02d}", hangup_after_bridge_ms=30)
                      for i in range(10)]
            for channel in placed:
                c.gone(channel, 15)
            channels += placed
        uuids = {ch.uuid for ch in channels}
        assert len(uuids) == 100
        wait_until(lambda: ctx.redis.xlen(c.spool()) == 100, 5, "100 CDRs spooled")
        wait_until(lambda: len(c.logged("PostgreSQL unreachable")) > logged_before, 5,
                   "the outage logged")
        assert c.query("SELECT count(*) AS n FROM cdr WHERE group_number = '310'")[0]["n"] == 0
        # a re-delivery: ten entries spooled twice
        for _, fields in ctx.redis.xrange(c.spool(), count=10):
            ctx.redis.xadd(c.spool(), fields)
        time.sleep(1.0)  # several writer passes while PostgreSQL is down: still one log line
        assert len(c.logged("PostgreSQL unreachable")) == logged_before + 1
        assert ctx.redis.xlen(c.spool()) == 110
        back = time.monotonic()
        proxy.up()

        def written() -> bool:
            n = c.query("SELECT count(*) AS n FROM cdr WHERE group_number = '310'")[0]["n"]
            return bool(n == 100 and ctx.redis.xlen(c.spool()) == 0)
        wait_until(written, 10, "every spooled CDR written")
        took = time.monotonic() - back
        assert took < 5, took
    finally:
        proxied_pool, ctx._pool = ctx._pool, pool
        proxied_pool.closeall()
        proxy.close()
    rows = c.query("SELECT uuid FROM cdr WHERE group_number = '310'")
    assert {r["uuid"] for r in rows} == uuids and len(rows) == 100
    attempts = c.query("SELECT cdr_uuid, attempt_no FROM cdr_agent_attempt a JOIN cdr ON "
                       "cdr.uuid = a.cdr_uuid WHERE group_number = '310'")
    assert len(attempts) == len({(a["cdr_uuid"], a["attempt_no"]) for a in attempts}) >= 100
    assert {a["cdr_uuid"] for a in attempts} == uuids
    assert c.logged("PostgreSQL reachable again")
