"""A CDR for every call (issue 7): calls no fsapps app records (a plain dialplan bridge, the
diag extension, a refused call) get the runtime's generic CDR, ``nway_bridge`` calls their own,
each call exactly one row; the recording RECORD_START names is the CDR's ``a_record_file``; the
spool's takeover of a dead node's entries; Redis down (direct insert) and Redis and PostgreSQL
down (the CDR's JSON at ERR). One fake node running the project's dialplan plus the test
extensions below; every wait is on a condition.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from fakefs import Behaviour, Channel
from fakefs.scenario import wait_until
from fsapps.config import Secret
from fsapps.db.connection import Pool
from fsapps.events import cdr, cdrspool
from fsapps.store import connection as store_connection
from tests.acd_support import DOMAIN, center
from tests.test_cdr import RING_S, TALK, Cdrs, proxied, settled, watching

# After the project's dialplan (first match wins, so none of its numbers is taken):
# 5<ext> bridges straight to a registered phone, 41<ext> records the call first;
# 40<group> records, then queues the call with nwayacd.
TEST_DIALPLAN = """<include>
  <extension name="test_plain_bridge">
    <condition field="destination_number" expression="^5(\\d{4})$">
      <action application="bridge" data="user/$1@${domain_name}"/>
    </condition>
  </extension>
  <extension name="test_recorded_bridge">
    <condition field="destination_number" expression="^41(\\d{4})$">
      <action application="record_session" data="/tmp/fsapps-rec/${uuid}.wav"/>
      <action application="bridge" data="user/$1@${domain_name}"/>
    </condition>
  </extension>
  <extension name="test_recorded_queue">
    <condition field="destination_number" expression="^40(\\d{3})$">
      <action application="record_session" data="/tmp/fsapps-rec/q-${uuid}.wav"/>
      <action application="python" data="fsapps.nwayacd $1"/>
    </condition>
  </extension>
</include>"""


@pytest.fixture(scope="module")
def cdrs(redis_server: Any, database: Any, no_leaked_switch_threads: None) -> Iterator[Cdrs]:
    for cc in center(redis_server.url, database.dsn, callout_timeout=RING_S):
        switch = cc.start_switch()
        switch.dialplan.load_text(TEST_DIALPLAN)
        yield from watching(cc, switch, redis_server.url, database.dsn)


@pytest.fixture
def c(cdrs: Cdrs) -> Iterator[Cdrs]:
    yield from settled(cdrs)


def phone(c: Cdrs, ext: str, **behaviour: Any) -> None:
    """A registered phone that is not an agent."""
    behaviour.setdefault("answer_after_ms", 50)
    c.switch.add_user(ext, DOMAIN, password="pw")
    assert c.switch.register(ext, DOMAIN, password="pw", behaviour=Behaviour(**behaviour)).ok


def dial(c: Cdrs, caller: str, number: str, **behaviour: Any) -> Channel:
    behaviour.setdefault("hangup_after_bridge_ms", TALK)
    return c.switch.place_call(caller, number, domain=DOMAIN, context="default",
                               behaviour=Behaviour(**behaviour))


def rows_of(c: Cdrs, *uuids: str) -> list[dict[str, Any]]:
    return c.query("SELECT * FROM cdr WHERE uuid = ANY(%s)", list(uuids))


def dead_redis(c: Cdrs, monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    """fsapps' own client for a Redis that is not there, retrying once (not for seconds, so
    the runtime's loops, which wait on every failed command, get to the call's events soon)."""
    monkeypatch.setattr(store_connection, "RETRY_ATTEMPTS", 1)
    settings = c.cc.ctx.settings.redis
    return store_connection.redis_client(dataclasses.replace(
        settings, url=Secret(f"redis://127.0.0.1:{free_port()}/0")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------ generic CDRs ------
def test_plain_dialplan_bridge_gets_a_generic_cdr(c: Cdrs) -> None:
    """A call no fsapps app sees: one row for the caller's channel (the phone it reached, its
    times, 接通), none for the phone's leg; the cdr message on cdr_direct."""
    phone(c, "1501")
    channel = dial(c, "13900000501", "51501")
    c.gone(channel)
    row = c.row(channel.uuid)
    assert row["is_callout"] is False and row["flag"] == cdr.FLAG_ANSWERED
    assert row["a_caller_id_number"] == "13900000501"
    assert row["a_destination_number"] == "51501" and row["destination_number"] == "1501"
    assert row["a_start_stamp"] <= row["start_stamp"] <= row["answer_stamp"] <= \
        row["end_stamp"] <= row["a_end_stamp"]
    assert row["a_answer_stamp"] is not None and row["a_duration"] >= row["a_billsec"] >= 0
    assert row["a_sip_hangup_disposition"] in ("recv_bye", "send_bye")
    assert row["hangup_cause"] == "NORMAL_CLEARING" and row["group_number"] is None
    assert row["domain"] == DOMAIN and row["node"] == c.switch.name
    assert row["a_record_file"] == "" and row["str_no_answer_agents"] == ""
    assert c.attempts(channel.uuid) == []
    b_leg = channel.get("last_bridge_to") or ""
    assert b_leg and rows_of(c, b_leg) == []
    message = c.bus.wait("cdr_direct", uuid=channel.uuid).data
    assert message["flag"] == "接通" and message["destination_number"] == "1501"
    assert message["is_callout"] == "false"


def test_unanswered_bridge_and_a_call_that_bridges_nothing(c: Cdrs) -> None:
    """Not answered: 未接通 naming the phone rung; the diag extension (no bridge): flag ""."""
    phone(c, "1502", answer_after_ms=None)
    missed = dial(c, "13900000502", "51502", abandon_after_ms=700)
    diag = dial(c, "13900000503", "9196", hangup_after_ms=500)
    c.gone(missed)
    c.gone(diag)
    row = c.row(missed.uuid)
    assert row["flag"] == cdr.FLAG_NOT_CONNECTED and row["destination_number"] == "1502"
    assert row["answer_stamp"] is None and row["billsec"] == 0
    assert row["a_sip_hangup_disposition"] == "recv_cancel"
    row = c.row(diag.uuid)
    assert row["flag"] == "" and row["destination_number"] == ""
    assert row["a_destination_number"] == "9196" and row["a_answer_stamp"] is not None


# ------------------------------------------------------------------------ nway_bridge -------
def test_nway_bridge_answered_cdr(c: Cdrs) -> None:
    """nway_bridge writes its own CDR: the agent who answered, its times, 接通, one attempt."""
    c.group("501")
    c.agent("501", "5011")
    channel = dial(c, "13900000511", "85011")
    c.gone(channel)
    row = c.row(channel.uuid)
    assert row["flag"] == cdr.FLAG_ANSWERED and row["is_callout"] is False
    assert row["destination_number"] == "5011" and row["str_no_answer_agents"] == ""
    assert row["a_destination_number"] == "85011"
    assert row["a_caller_id_number"] == "13900000511"
    assert row["start_stamp"] <= row["answer_stamp"] <= row["end_stamp"]
    assert row["a_start_stamp"] <= row["start_stamp"]
    assert row["hangup_cause"] and row["domain"] == DOMAIN and row["node"] == c.switch.name
    attempts = c.attempts(channel.uuid)
    assert [(a["attempt_no"], a["extension"], a["result"]) for a in attempts] == [
        (1, "5011", "answered")]
    assert attempts[0]["leg_uuid"] and attempts[0]["answer_stamp"] is not None
    assert rows_of(c, attempts[0]["leg_uuid"]) == []
    message = c.bus.wait("cdr_direct", uuid=channel.uuid).data
    assert message["flag"] == "接通" and message["destination_number"] == "5011"
    time.sleep(0.3)  # a second CDR (the runtime's generic one) would be here by now
    assert len(c.bus.find(None, uuid=channel.uuid)) == 1
    assert len(rows_of(c, channel.uuid)) == 1


def test_nway_bridge_not_answered_cdr(c: Cdrs) -> None:
    c.group("502")
    c.agent("502", "5021", answer_after_ms=None)
    channel = dial(c, "13900000521", "85021")
    c.gone(channel)
    row = c.row(channel.uuid)
    assert row["flag"] == cdr.FLAG_ONE_NO_ANSWER and row["str_no_answer_agents"] == "5021"
    assert row["destination_number"] == "5021" and row["answer_stamp"] is None
    assert [a["result"] for a in c.attempts(channel.uuid)] == ["no_answer"]


def test_every_call_exactly_one_row(c: Cdrs) -> None:
    """Calls of every kind at once: each caller's channel has exactly one row, no leg another
    channel originated has one."""
    c.group("503")
    c.agent("503", "5031")
    c.agent("503", "5032", answer_after_ms=None)
    phone(c, "1503")
    calls = [dial(c, "13900000531", "7503"),                          # queue call
             dial(c, "13900000532", "51503"),                         # plain bridge
             dial(c, "13900000533", "85032", abandon_after_ms=600),   # nway_bridge, missed
             dial(c, "13900000534", "9196", hangup_after_ms=300),     # diag
             dial(c, "13900000535", "7999"),                          # unknown group
             dial(c, "13900000536", "55999")]                         # unknown user
    for channel in calls:
        c.gone(channel)
    uuids = [ch.uuid for ch in calls]
    wait_until(lambda: len(rows_of(c, *uuids)) >= len(uuids), 5, "a row for every call")
    time.sleep(0.5)  # room for a duplicate to show
    rows = rows_of(c, *uuids)
    assert sorted(r["uuid"] for r in rows) == sorted(uuids)
    legs = [u for u, ch in c.switch.all_channels.items()
            if ch.get("originator") in uuids]
    assert legs and rows_of(c, *legs) == []


# ------------------------------------------------------------------------ transfers ---------
def agent_talking(c: Cdrs, caller: Channel, ext: str) -> Channel:
    """The agent leg ``caller`` talks to, once agent ``ext`` is talking."""
    leg: Channel = wait_until(lambda: caller.peer and c.switch.channels.get(caller.peer), 5,
                              f"{ext} answered")
    wait_until(lambda: c.cc.get(ext).call_state == "talking", 5, f"{ext} talking")
    return leg


def rang(leg: Channel, ext: str) -> bool:
    """Is ``leg`` the leg the switch rang for phone ``ext``? (Not ``dialed_user``: as in
    FreeSWITCH, a channel that bridges to user/<ext> gets dialed_user=<ext> too.)"""
    return leg.name.startswith(f"sofia/internal/{ext}@")


def party(c: Cdrs, caller: Channel, ext: str) -> Channel:
    """The answered leg of phone ``ext`` the caller talks to now."""
    def find() -> Channel | None:
        leg = c.switch.channels.get(caller.peer or "")
        return leg if leg is not None and rang(leg, ext) and leg.answered else None
    found: Channel = wait_until(find, 5, f"the caller talking to {ext}")
    return found


def test_queue_caller_transferred_to_a_phone_stays_in_its_cdr(c: Cdrs) -> None:
    """nwayacd_transfer sends an answered queue caller to 51507 (a plain dialplan bridge):
    the call is still one CDR row, its queue's — a_* over the whole call (the switch's own
    billsec, end, cause), the agent who answered as the party — and the phone reached after
    the transfer is an attempt with ``transferred``; no other row, one cdr message."""
    c.group("507")
    c.agent("507", "5071")
    phone(c, "1507")
    caller = dial(c, "13900000571", "7507", hangup_after_bridge_ms=None)
    agent_leg = agent_talking(c, caller, "5071")
    reply = c.switch.api(f"python fsapps.api nwayacd_transfer {caller.uuid} 51507")
    assert reply.startswith(f"+OK transferred {caller.uuid}"), reply
    moved = party(c, caller, "1507")
    wait_until(lambda: c.cc.get("5071").call_state == "ready", 5, "agent 5071 free again")
    c.switch.hangup(caller, "NORMAL_CLEARING", side="remote")
    c.gone(caller)
    row = c.row(caller.uuid)
    assert row["flag"] == cdr.FLAG_ANSWERED and row["group_number"] == "507"
    assert row["destination_number"] == "5071" and row["a_destination_number"] == "7507"
    assert row["a_billsec"] == int(caller.get("billsec") or -1)
    assert row["a_end_stamp"].timestamp() == int(caller.get("end_uepoch") or 0) / 1e6
    assert row["hangup_cause"] == "NORMAL_CLEARING"
    assert row["a_sip_hangup_disposition"] == "recv_bye"
    attempts = c.attempts(caller.uuid)
    assert [(a["attempt_no"], a["extension"], a["result"], a["transferred"])
            for a in attempts] == [(1, "5071", "answered", False),
                                   (2, "1507", "answered", True)]
    first, then = attempts
    assert first["leg_uuid"] == agent_leg.uuid and then["leg_uuid"] == moved.uuid
    assert row["answer_stamp"] <= row["end_stamp"] <= then["start_stamp"] <= \
        then["answer_stamp"] <= then["end_stamp"] <= row["a_end_stamp"]
    assert rows_of(c, agent_leg.uuid, moved.uuid) == []
    assert c.bus.wait("cdr_507", uuid=caller.uuid).data["destination_number"] == "5071"
    time.sleep(0.3)  # a second CDR (a generic one for the transferred part) would be here
    assert len(c.bus.find(None, uuid=caller.uuid)) == 1
    assert len(rows_of(c, caller.uuid)) == 1


def test_queue_caller_bridged_to_a_consultation_stays_in_its_cdr(c: Cdrs) -> None:
    """The consult-then-transfer of CSTA: the agent's phone 1509 consults 1508 in a call of
    its own, then the queue caller is uuid_bridge'd to 1508. The caller's CDR lists 1508 (a
    leg it did not originate) as the transferred attempt; the consultation is its own call."""
    c.group("508")
    c.agent("508", "5081")
    phone(c, "1508")
    phone(c, "1509")
    caller = dial(c, "13900000581", "7508", hangup_after_bridge_ms=None)
    agent_talking(c, caller, "5081")
    reply = c.switch.api(f"originate user/1509@{DOMAIN} &bridge(user/1508@{DOMAIN})")
    assert reply.startswith("+OK"), reply
    consulted: Channel = wait_until(lambda: next(
        (ch for ch in c.switch.channels.values() if rang(ch, "1508")
         and ch.answered and ch.peer), None), 5, "1509 talking to 1508")
    consultation = consulted.get("originator") or ""
    assert c.switch.api(f"uuid_bridge {caller.uuid} {consulted.uuid}").startswith("+OK")
    party(c, caller, "1508")
    c.switch.hangup(caller, "NORMAL_CLEARING", side="remote")
    c.gone(caller)
    row = c.row(caller.uuid)
    assert row["flag"] == cdr.FLAG_ANSWERED and row["destination_number"] == "5081"
    attempts = c.attempts(caller.uuid)
    assert [(a["extension"], a["result"], a["transferred"]) for a in attempts] == [
        ("5081", "answered", False), ("1508", "answered", True)]
    assert attempts[1]["leg_uuid"] == consulted.uuid
    assert attempts[1]["end_stamp"] <= row["a_end_stamp"]
    # the consultation (1509 -> 1508) is a call of its own, recorded once
    assert consultation and [r["destination_number"] for r in
                             wait_until(lambda: rows_of(c, consultation), 5,
                                        "the consultation's CDR")] == ["1508"]
    assert rows_of(c, consulted.uuid) == []


# ------------------------------------------------------------------------ recordings --------
def test_recording_file_of_record_session_in_the_cdr(c: Cdrs) -> None:
    """record_session sets no variable; the runtime takes RECORD_START's Record-File-Path into
    the generic CDR and (as fsapps_record_file) into an app's own CDR."""
    phone(c, "1504")
    bridged = dial(c, "13900000541", "411504")
    c.group("504")
    c.agent("504", "5041")
    queued = dial(c, "13900000542", "40504")
    c.gone(bridged)
    c.gone(queued)
    assert c.row(bridged.uuid)["a_record_file"] == f"/tmp/fsapps-rec/{bridged.uuid}.wav"
    row = c.row(queued.uuid)
    assert row["a_record_file"] == f"/tmp/fsapps-rec/q-{queued.uuid}.wav"
    assert row["flag"] == cdr.FLAG_ANSWERED
    message = c.bus.wait("cdr_504", uuid=queued.uuid).data
    assert message["a_record_file"] == row["a_record_file"]
    starts = c.switch.bus.events("RECORD_START")
    assert {e.headers["Record-File-Path"] for e in starts} >= {
        row["a_record_file"], f"/tmp/fsapps-rec/{bridged.uuid}.wav"}
    assert all("variable_record_session_path" not in e.headers for e in starts)


# ------------------------------------------------------------------------ the spool ---------
def _taken_by_dead_node(c: Cdrs, record: cdr.Cdr) -> None:
    """XADD ``record`` and deliver it to consumer ``dead-node`` in one transaction (so the
    live node's writer cannot read it first); the dead node never acknowledges it."""
    r = c.cc.ctx.redis
    try:
        r.xgroup_create(c.spool(), cdrspool.GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        assert "BUSYGROUP" in str(exc)
    pipe = r.pipeline(transaction=True)
    pipe.xadd(c.spool(), {"cdr": record.to_json()})
    pipe.xreadgroup(cdrspool.GROUP, "dead-node", {c.spool(): ">"})
    entry_id, reply = pipe.execute()
    assert reply and reply[0][1][0][0] == entry_id


def _record(uuid: str) -> cdr.Cdr:
    now = time.time()
    return cdr.Cdr(uuid=uuid, is_callout=False, a_caller_id_number="13900000550",
                   a_destination_number="7550", a_start=now - 3, a_answer=now - 2, a_end=now,
                   destination_number="5501", start=now - 3, answer=now - 2, end=now,
                   flag=cdr.FLAG_ANSWERED, group_number="550", domain=DOMAIN,
                   attempts=(cdr.Attempt(1, "5501", now - 3, now - 2, now, "answered"),))


def test_spool_takeover_of_a_dead_nodes_entries(c: Cdrs) -> None:
    """A CDR a node took from the spool and died before writing is claimed (XAUTOCLAIM) by
    another node's writer and written once; one the dead node had written but not acknowledged
    is claimed and not written again."""
    ctx = c.cc.ctx
    r = ctx.redis
    unwritten, written = _record("takeover-unwritten"), _record("takeover-written")
    _taken_by_dead_node(c, unwritten)
    _taken_by_dead_node(c, written)
    assert cdr.write(ctx, written)  # ... then it died before its XACK
    time.sleep(0.6)  # a pass of the live node's writer: it leaves another node's entries alone
    assert r.xpending(c.spool(), cdrspool.GROUP)["pending"] == 2
    assert c.query("SELECT 1 FROM cdr WHERE uuid = %s", unwritten.uuid) == []
    # another node's writer, whose idle limit the dead node's entries have passed
    other = cdrspool.SpoolWriter(ctx, "node-b", claim_idle_ms=100)
    wait_until(lambda: other.drain(c.spool(), claim=True) >= 0 and
               r.xpending(c.spool(), cdrspool.GROUP)["pending"] == 0, 5, "entries claimed")
    assert other.written == 1  # the unwritten one; the other was found written
    for record in (unwritten, written):
        assert len(c.query("SELECT 1 FROM cdr WHERE uuid = %s", record.uuid)) == 1
        assert len(c.attempts(record.uuid)) == 1
    assert r.xlen(c.spool()) == 0


def test_redis_down_cdr_goes_to_postgresql_directly(c: Cdrs,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis unreachable for fsapps while a call ends: the call is not disturbed and its CDR
    is inserted into PostgreSQL directly (WARNING naming the call)."""
    ctx = c.cc.ctx
    phone(c, "1505")
    channel = dial(c, "13900000551", "51505", hangup_after_bridge_ms=600)
    wait_until(lambda: channel.get("last_bridge_to"), 5, "the call bridged")
    working = ctx._redis
    ctx._redis = dead_redis(c, monkeypatch)
    try:
        c.gone(channel)
        assert channel.hangup_cause == "NORMAL_CLEARING"
        row = c.row(channel.uuid)
    finally:
        ctx._redis = working
    assert row["destination_number"] == "1505" and row["flag"] == cdr.FLAG_ANSWERED
    wait_until(lambda: c.logged(f"call {channel.uuid} written to PostgreSQL directly"), 3,
               "the direct write logged")


def test_redis_and_postgresql_down_cdr_json_logged(c: Cdrs, database: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Both unreachable: the call ends as usual and the CDR's JSON is logged at ERR."""
    ctx = c.cc.ctx
    phone(c, "1506")
    channel = dial(c, "13900000561", "51506", hangup_after_bridge_ms=600)
    wait_until(lambda: channel.get("last_bridge_to"), 5, "the call bridged")
    working, pool = ctx._redis, ctx._pool
    ctx._redis = dead_redis(c, monkeypatch)
    ctx._pool = Pool(proxied(database.dsn, free_port()), connect_timeout=1, acquire_timeout=1)
    try:
        c.gone(channel)
        assert channel.hangup_cause == "NORMAL_CLEARING"
        lines = wait_until(lambda: [m for level, m in c.switch.log
                                    if f"call {channel.uuid}" in m and "not kept" in m], 8,
                           "the CDR logged")
    finally:
        dead_pool, ctx._pool, ctx._redis = ctx._pool, pool, working
        dead_pool.closeall()
    assert f'"uuid":"{channel.uuid}"' in lines[0] and '"destination_number":"1506"' in lines[0]
    assert rows_of(c, channel.uuid) == []
    levels = [level for level, m in c.switch.log if f"call {channel.uuid}" in m and
              "not kept" in m]
    assert levels[0] == "ERR"
