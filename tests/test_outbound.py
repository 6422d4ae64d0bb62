"""Outbound and direct calls end to end: fsapps.nwaycallout (an agent's phone dials 9 + number,
out through gateway "test" for group 110, as dialplan/20_fsapps_outbound.xml routes it) and
fsapps.nway_bridge (8 + extension rings the agent directly), on one fake node running the
project's dialplan and fsapps.runtime, against the test Redis and PostgreSQL. Real time, short
timings; every wait is on a condition.

The agent states come from the agent hash and the ``agent_<ext>`` messages; the events from a
real PSUBSCRIBE on event_*, agent_*, cdr_*; the CDR from the ``cdr`` table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import psycopg2
import psycopg2.extras
import pytest

from fakefs import Behaviour, Channel, Switch
from fakefs.scenario import wait_until
from fsapps.db.connection import Pool
from fsapps.domain import numbers
from fsapps.switch import acd
from tests.acd_support import DOMAIN, CallCenter, center
from tests.pubsub_capture import Subscriber

RING_S = 2          # group_defaults.callout_timeout: a direct call rings 1.0-1.6 s
GROUP = "110"       # the group of the dialplan's callout routes
TALK = 300          # ms the agent talks before hanging up
BUSY_NUMBER = "18600000486"
SILENT_NUMBER = "18600000408"
AGENT_EVENT_KEYS = ["type", "method", "cti_ip", "uuid", "number", "group", "extension", "level",
                    "callin_time"]
TEST_CONTEXT = """
<include><context name="fsapps_test">
  <extension name="callout_args">
    <condition field="destination_number" expression="^callout$">
      <action application="python" data="fsapps.nwaycallout ${fsapps_test_args}"/>
    </condition>
  </extension>
  <extension name="bridge_args">
    <condition field="destination_number" expression="^bridge$">
      <action application="python" data="fsapps.nway_bridge ${fsapps_test_args}"/>
    </condition>
  </extension>
</context></include>
"""


# ------------------------------------------------------------------------ fixtures ----------
def far_end(number: str) -> Behaviour:
    """The gateway's far ends: one number is busy, one never answers, the rest answer."""
    if number == BUSY_NUMBER:
        return Behaviour(fail_with="USER_BUSY", fail_after_ms=100)
    if number == SILENT_NUMBER:
        return Behaviour(answer_after_ms=None)
    return Behaviour(answer_after_ms=100)


@dataclass
class Outbound:
    cc: CallCenter
    switch: Switch
    bus: Subscriber
    dsn: str

    def agent(self, ext: str, groups: tuple[str, ...] = (GROUP,), **behaviour: Any) -> None:
        behaviour.setdefault("answer_after_ms", 50)
        self.cc.agent(ext, list(groups), behaviour=Behaviour(**behaviour))

    def dial(self, ext: str, dest: str, *, context: str = "default",
             variables: dict[str, str] | None = None, **behaviour: Any) -> Channel:
        """The phone of ``ext`` dials ``dest``."""
        return self.switch.place_call(ext, dest, domain=DOMAIN, context=context,
                                      variables=variables,
                                      behaviour=Behaviour(answer_after_ms=None, **behaviour))

    def callout(self, ext: str, number: str, **behaviour: Any) -> Channel:
        behaviour.setdefault("hangup_after_bridge_ms", TALK)
        return self.dial(ext, f"9{number}", **behaviour)

    def gone(self, channel: Channel, timeout: float = 5.0) -> None:
        wait_until(lambda: channel.done.is_set(), timeout, f"call {channel.uuid[:8]} over")

    def state(self, ext: str) -> str:
        return str(self.cc.get(ext).call_state)

    def wait_state(self, ext: str, state: str, timeout: float = 5.0) -> None:
        wait_until(lambda: self.state(ext) == state, timeout,
                   f"agent {ext} {state} (is {self.state(ext)})")



    def methods(self, channel: Channel) -> list[str]:
        return [m.data["method"] for m in self.bus.find("event_agent", uuid=channel.uuid)]

    def wait_methods(self, channel: Channel, expected: list[str]) -> None:
        try:
            wait_until(lambda: self.methods(channel) == expected, 3,
                       f"agent events {expected}")
        except TimeoutError:
            raise AssertionError(f"agent events: {self.methods(channel)}") from None

    def cdr_message(self, channel: Channel) -> dict[str, Any]:
        return self.bus.wait("cdr_callout", uuid=channel.uuid).data

    def cdr_row(self, channel: Channel) -> dict[str, Any]:
        def row() -> dict[str, Any] | None:
            conn = psycopg2.connect(self.dsn)
            try:
                with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                    cur.execute("SELECT * FROM cdr WHERE uuid = %s", (channel.uuid,))
                    found = cur.fetchone()
                    return dict(found) if found else None
            finally:
                conn.close()
        return dict(wait_until(row, 5, f"CDR row of {channel.uuid[:8]}"))

    def gateway_legs(self, number: str) -> list[Channel]:
        return [c for c in self.switch.all_channels.values()
                if c.name == f"sofia/gateway/test/{number}"]

    def logged(self, text: str) -> bool:
        return any(text in message for _, message in self.switch.log)

    def use_defaults(self, **changes: Any) -> None:
        ctx = self.cc.ctx
        ctx.settings = replace(ctx.settings,
                               group_defaults=replace(ctx.settings.group_defaults, **changes))


@pytest.fixture(scope="module")
def outbound_module(redis_server: Any, database: Any,
                    no_leaked_switch_threads: None) -> Iterator[Outbound]:
    for cc in center(redis_server.url, database.dsn, callout_timeout=RING_S):
        switch = cc.start_switch()
        switch.add_gateway("test", far_end)
        switch.dialplan.load_text(TEST_CONTEXT)
        cc.group(GROUP, group_callout_timeout=RING_S, wrapup_seconds=1, group_call_mode=0)
        bus = Subscriber(redis_server.url)
        try:
            yield Outbound(cc, switch, bus, database.dsn)
        finally:
            bus.close()


@pytest.fixture
def o(outbound_module: Outbound) -> Iterator[Outbound]:
    """The module's call center with its settings as they were; after each test no call is
    left, and no agent holds a reservation."""
    settings = outbound_module.cc.ctx.settings
    yield outbound_module
    outbound_module.cc.ctx.settings = settings
    switch = outbound_module.switch
    try:
        wait_until(lambda: not switch.channels, 8, "every call over")
    finally:
        for channel in list(switch.channels.values()):
            switch.hangup(channel, "NORMAL_CLEARING")
    wait_until(lambda: all(a.call_state not in ("ring", "talking")
                           for a in outbound_module.cc.agents.all()), 3, "no agent on a call")


# ------------------------------------------------------------------------ numbers -----------
@pytest.mark.parametrize("text", ["18621575908", "+8613800000000", "0018621575908", "110"])
def test_valid_numbers(text: str) -> None:
    assert numbers.valid_number(text)
    assert numbers.check_number(text) == text


@pytest.mark.parametrize("text", ["", "+", "123,user/1000", "{x=y}123", "12 34", "123|456",
                                  "[a=b]1", "12\n34", "abc", "1" * 33, "++1", "1+2", None])
def test_invalid_numbers(text: Any) -> None:
    assert not numbers.valid_number(text)
    with pytest.raises(numbers.BadDialValue, match="invalid number"):
        numbers.check_number(text)


def test_gateway_and_extension_names() -> None:
    for good in ("gw1", "test", "my-gw.example_1", "1001"):
        assert numbers.valid_gateway(good) and numbers.valid_extension(good)
    for bad in ("", "gw/1", "gw 1", "gw,1", "{gw}", "a|b", "x" * 65, "gw@host"):
        assert not numbers.valid_gateway(bad) and not numbers.valid_extension(bad)
    with pytest.raises(numbers.BadDialValue, match="invalid extension '1,2'"):
        numbers.check_extension("1,2")


# ------------------------------------------------------------------------ nwaycallout -------
def test_callout_answered_tracks_the_agent_publishes_and_writes_the_cdr(o: Outbound) -> None:
    """Agent 3001 dials 9 + number: the far end rings through gateway test with the group
    number as caller id; the agent is ring → talking → typing (group wrap-up 1 s) → ready; the
    agent-facing callout/answered/hangup, EVENT_CALLOUT of the gateway leg, and the CDR on
    cdr_callout and in PostgreSQL with is_callout true."""
    number = "18621575908"
    o.agent("3001")
    channel = o.callout("3001", number)
    o.wait_state("3001", "talking")
    o.gone(channel)
    assert channel.hangup_cause == "NORMAL_CLEARING"
    o.wait_state("3001", "typing")
    o.wait_state("3001", "ready", 3)
    o.bus.statuses_end("3001", ["ring", "talking", "typing", "ready"])

    o.wait_methods(channel, ["callout", "answered", "hangup"])
    events = o.bus.find("event_agent", uuid=channel.uuid)
    for event in events:
        assert list(event.data) == AGENT_EVENT_KEYS
        assert (event.data["number"], event.data["group"], event.data["extension"]) == \
            (number, GROUP, "3001")
    (leg,) = o.gateway_legs(number)
    assert leg.caller_id_number == GROUP
    created = o.bus.wait("event_call", event_name="EVENT_CALLOUT", aleg_uuid=leg.uuid).data
    assert (created["gateway"], created["dest_number"], created["callin_number"],
            created["direction"]) == ("test", number, GROUP, "outbound")
    o.bus.wait("event_call", event_name="EVENT_ANSWER", aleg_uuid=leg.uuid)

    message = o.cdr_message(channel)
    assert message["type"] == "cdr" and message["is_callout"] == "true"
    assert (message["a_caller_id_number"], message["a_destination_number"],
            message["destination_number"]) == ("3001", f"9{number}", number)
    assert message["flag"] == "外呼接通"
    assert message["answer_stamp"] and message["a_answer_stamp"] and message["end_stamp"]
    assert message["a_sip_hangup_disposition"] == "recv_bye"
    row = o.cdr_row(channel)
    assert row["is_callout"] is True
    assert (row["a_caller_id_number"], row["destination_number"], row["group_number"],
            row["domain"], row["hangup_cause"]) == ("3001", number, GROUP, DOMAIN,
                                                    "NORMAL_CLEARING")
    assert row["a_start_stamp"] <= row["start_stamp"] <= row["answer_stamp"] <= row["end_stamp"]
    assert row["a_duration"] >= row["a_billsec"] >= 0 and row["duration"] >= row["billsec"]
    assert row["node"] == o.switch.name


def test_callout_caller_id_variable_replaces_the_group_number(o: Outbound) -> None:
    """fsapps_callout_caller_id, when a valid number, is the caller id the far end sees; an
    invalid one is ignored (WARNING) and the group number is used."""
    o.agent("3002")
    channel = o.callout("3002", "18600000002",
                        variables={"fsapps_callout_caller_id": "02085733555"})
    o.gone(channel)
    assert o.gateway_legs("18600000002")[0].caller_id_number == "02085733555"
    channel = o.callout("3002", "18600000003",
                        variables={"fsapps_callout_caller_id": "1,user/1000"})
    o.gone(channel)
    assert o.gateway_legs("18600000003")[0].caller_id_number == GROUP
    assert o.logged("ignoring fsapps_callout_caller_id='1,user/1000'")
    o.wait_state("3002", "ready", 3)


def test_callout_seed_form_routes_the_whole_number(o: Outbound) -> None:
    """The dialplan's $0 form: a mobile number dialled as is goes out (with the caller id the
    route sets)."""
    o.agent("3003")
    channel = o.dial("3003", "13812345678", hangup_after_bridge_ms=100)
    o.gone(channel)
    (leg,) = o.gateway_legs("13812345678")
    assert leg.caller_id_number == "02085733555"
    assert o.cdr_message(channel)["destination_number"] == "13812345678"


def test_callout_busy_far_end(o: Outbound) -> None:
    """The far end is busy: the agent's phone hears USER_BUSY, the agent goes ring → ready (no
    wrap-up, no no-answer count); callout then hangup; the CDR says so."""
    o.agent("3004")
    channel = o.callout("3004", BUSY_NUMBER)
    o.gone(channel)
    assert channel.hangup_cause == "USER_BUSY"
    o.wait_state("3004", "ready")
    o.bus.statuses_end("3004", ["ring", "ready"])
    assert o.cc.get("3004").no_answer_count == 0
    o.wait_methods(channel, ["callout", "hangup"])
    message = o.cdr_message(channel)
    assert (message["flag"], message["answer_stamp"], message["billsec"],
            message["a_billsec"]) == ("外呼对方忙", "", "0", "0")
    row = o.cdr_row(channel)
    assert (row["is_callout"], row["hangup_cause"], row["answer_stamp"]) == \
        (True, "USER_BUSY", None)


def test_callout_no_answer_rings_for_fsapps_ring_timeout(o: Outbound) -> None:
    """Nobody answers: after fsapps_ring_timeout (2 s: 1.0-1.6 s on the whole-second timer)
    the agent's call ends with NO_ANSWER; the agent rang meanwhile and is ready again."""
    o.agent("3005")
    started = time.monotonic()
    channel = o.callout("3005", SILENT_NUMBER, variables={"fsapps_ring_timeout": "2"})
    o.wait_state("3005", "ring")
    o.gone(channel)
    assert 0.9 <= time.monotonic() - started <= 3.0
    assert channel.hangup_cause == "NO_ANSWER"
    o.wait_state("3005", "ready")
    o.bus.statuses_end("3005", ["ring", "ready"])
    assert o.cdr_message(channel)["flag"] == "外呼无应答"
    assert o.cdr_row(channel)["billsec"] == 0


def test_agent_calling_out_gets_no_queue_call_until_it_is_over(o: Outbound) -> None:
    """While the agent talks on a callout a queue call for its group waits; when the callout
    ends (no wrap-up in group 111) the waiting call is offered to the agent at once."""
    o.cc.group("111", group_callout_timeout=RING_S, wrapup_seconds=0, group_call_mode=0)
    o.agent("3006", groups=("111",))
    callout = o.dial("3006", "callout", context="fsapps_test", hangup_after_bridge_ms=800,
                     variables={"fsapps_test_args": "18600000006 test 111"})
    o.wait_state("3006", "talking")
    caller = o.cc.call(o.switch, "13900000006", "7111", hangup_after_bridge_ms=100)
    wait_until(lambda: [w.uuid for w in o.cc.queue.waiting("111")] == [caller.uuid], 3,
               "the queue call waiting")
    assert o.state("3006") == "talking"
    o.gone(callout)
    o.bus.wait("event_agent", uuid=caller.uuid, method="hangup", extension="3006")
    o.gone(caller)
    o.wait_state("3006", "ready")


def test_callout_by_a_phone_that_is_not_an_agent_is_untracked(o: Outbound) -> None:
    """A caller without an agent hash still calls out; no agent state is created, no
    agent-facing event is sent; the CDR is written."""
    channel = o.callout("3999", "18600000099")
    o.gone(channel)
    assert channel.answered
    assert o.cc.agents.get("3999") is None
    assert o.cdr_row(channel)["a_caller_id_number"] == "3999"
    assert o.methods(channel) == []


def test_callout_survives_postgresql_down(o: Outbound) -> None:
    """PostgreSQL unreachable: the call and the agent's states are as usual, the CDR message is
    published, and the failed write is logged naming the call."""
    o.agent("3007")
    ctx = o.cc.ctx
    pool = ctx._pool
    ctx._pool = Pool("postgresql://fsapps@127.0.0.1:1/none", connect_timeout=1)
    try:
        channel = o.callout("3007", "18600000007")
        o.gone(channel)
        assert channel.hangup_cause == "NORMAL_CLEARING"
        assert o.cdr_message(channel)["is_callout"] == "true"
        wait_until(lambda: o.logged(f"cdr: call {channel.uuid}"), 5, "the CDR failure logged")
    finally:
        ctx._pool = pool
    o.wait_state("3007", "ready", 3)
    o.bus.statuses_end("3007", ["ring", "talking", "typing", "ready"])


@pytest.mark.parametrize(("args", "named"), [
    ("123,user/1000 test 110", "invalid number '123,user/1000'"),
    ("{x=y}123 test 110", "invalid number '{x=y}123'"),
    ("12 34 test 110", "expected 3 arguments, got '12 34 test 110'"),
    ("123|456 test 110", "invalid number '123|456'"),
    ("18600000010 gw/1 110", "invalid gateway 'gw/1'"),
    ("18600000010 test 1{1}0", "invalid group '1{1}0'"),
    ("18600000010 test", "expected 3 arguments"),
    ("", "expected 3 arguments, got ''"),
])
def test_callout_bad_input_hangs_up_before_any_dial_string(o: Outbound, args: str,
                                                           named: str) -> None:
    """Bad or missing arguments: INVALID_NUMBER_FORMAT, a log line naming the value and the
    usage, no leg dialled, the agent untouched."""
    o.agent("3008")
    before = len(o.switch.all_channels)
    channel = o.dial("3008", "callout", context="fsapps_test",
                     variables={"fsapps_test_args": args})
    o.gone(channel)
    assert channel.hangup_cause == "INVALID_NUMBER_FORMAT"
    assert len(o.switch.all_channels) == before + 1  # only the agent's own channel
    assert o.logged(f"nwaycallout: {named}")
    assert o.logged("usage: nwaycallout <number> <gateway> <group>")
    assert o.state("3008") == "ready"
    assert o.methods(channel) == []


# ------------------------------------------------------------------------ nway_bridge -------
def test_direct_call_answered_rings_talks_wraps_up(o: Outbound) -> None:
    """8 + extension: the agent rings like a queue offer (ring), talks, then wraps up for
    group_defaults.wrapup_seconds and is ready; callout/answered/hangup name the caller."""
    o.use_defaults(wrapup_seconds=1)
    o.agent("3101")
    caller = "13900000101"
    channel = o.cc.call(o.switch, caller, "83101", hangup_after_bridge_ms=TALK)
    o.wait_state("3101", "talking")
    o.gone(channel)
    o.wait_state("3101", "typing")
    o.wait_state("3101", "ready", 3)
    o.bus.statuses_end("3101", ["ring", "talking", "typing", "ready"])
    o.wait_methods(channel, ["callout", "answered", "hangup"])
    for event in o.bus.find("event_agent", uuid=channel.uuid):
        assert (event.data["number"], event.data["extension"], event.data["group"]) == \
            (caller, "3101", "")
    leg = next(c for c in o.switch.all_channels.values() if c.originator == channel.uuid)
    assert leg.caller_id_number == caller


def test_direct_call_to_an_agent_on_a_call_is_busy(o: Outbound) -> None:
    """The agent talks on a direct call: a second direct call hears USER_BUSY at once and
    the first call and the agent's state are untouched."""
    o.agent("3102")
    first = o.cc.call(o.switch, "13900000102", "83102", hangup_after_bridge_ms=800)
    o.wait_state("3102", "talking")
    second = o.cc.call(o.switch, "13900000103", "83102")
    o.gone(second)
    assert second.hangup_cause == "USER_BUSY"
    assert o.methods(second) == []
    assert o.state("3102") == "talking" and first.up
    assert o.logged("nway_bridge: agent 3102 is busy")
    o.gone(first)
    o.wait_state("3102", "ready")


def test_direct_call_does_not_steal_an_agent_ringing_for_a_queue_call(o: Outbound) -> None:
    """The agent rings for a queue call: a direct call is busy; the queue call is answered."""
    o.cc.group("112", group_callout_timeout=RING_S, wrapup_seconds=0, group_call_mode=0)
    o.agent("3103", groups=("112",), answer_after_ms=600)
    queued = o.cc.call(o.switch, "13900000104", "7112", hangup_after_bridge_ms=100)
    o.wait_state("3103", "ring")
    offer = o.cc.get("3103").offer_uuid
    direct = o.cc.call(o.switch, "13900000105", "83103")
    o.gone(direct)
    assert direct.hangup_cause == "USER_BUSY"
    assert o.cc.get("3103").offer_uuid == offer == queued.uuid
    o.bus.wait("event_agent", uuid=queued.uuid, method="answered", extension="3103")
    o.gone(queued)
    o.wait_state("3103", "ready")


def test_direct_call_no_answer_is_a_missed_offer(o: Outbound) -> None:
    """The agent does not answer within the ring timeout: noanswer, the agent no_answer then
    ready with one miss counted; the caller is hung up with NO_ANSWER. With max_no_answer 1
    the next miss sets the agent busy (seat busy too)."""
    o.agent("3104", answer_after_ms=None)
    started = time.monotonic()
    channel = o.cc.call(o.switch, "13900000106", "83104")
    o.gone(channel)
    assert 0.9 <= time.monotonic() - started <= 3.0
    assert channel.hangup_cause == "NO_ANSWER"
    o.wait_methods(channel, ["callout", "noanswer"])
    o.bus.statuses_end("3104", ["ring", "no_answer", "ready"])
    assert o.cc.get("3104").no_answer_count == 1
    o.use_defaults(max_no_answer=2)
    channel = o.cc.call(o.switch, "13900000107", "83104")
    o.gone(channel)
    o.wait_state("3104", "busy")
    assert o.cc.get("3104").seat_status == "busy"
    acd.set_ready(o.cc.ctx, DOMAIN, "3104")


def test_direct_call_to_a_busy_phone(o: Outbound) -> None:
    """The phone refuses (486): the caller gets USER_BUSY, the agent a missed offer."""
    o.agent("3105", fail_with="USER_BUSY")
    channel = o.cc.call(o.switch, "13900000108", "83105")
    o.gone(channel)
    assert channel.hangup_cause == "USER_BUSY"
    o.wait_methods(channel, ["callout", "noanswer"])
    o.bus.statuses_end("3105", ["ring", "no_answer", "ready"])


def test_caller_hanging_up_while_the_agent_rings_frees_the_agent(o: Outbound) -> None:
    """The caller gives up while the agent's phone rings: the agent is ready again at once,
    no miss counted."""
    o.agent("3106", answer_after_ms=None)
    channel = o.cc.call(o.switch, "13900000109", "83106", abandon_after_ms=300)
    o.wait_state("3106", "ring")
    o.gone(channel)
    o.wait_state("3106", "ready")
    assert o.cc.get("3106").no_answer_count == 0
    o.bus.statuses_end("3106", ["ring", "ready"])


def test_agent_freed_by_a_direct_call_takes_the_waiting_queue_call(o: Outbound) -> None:
    """A queue call waits while the agent talks on a direct call; the direct call ends (no
    wrap-up) and the queue call is offered to the agent at once."""
    o.cc.group("113", group_callout_timeout=RING_S, wrapup_seconds=0, group_call_mode=0)
    o.agent("3107", groups=("113",))
    direct = o.cc.call(o.switch, "13900000110", "83107", hangup_after_bridge_ms=800)
    o.wait_state("3107", "talking")
    queued = o.cc.call(o.switch, "13900000111", "7113", hangup_after_bridge_ms=100)
    wait_until(lambda: [w.uuid for w in o.cc.queue.waiting("113")] == [queued.uuid], 3,
               "the queue call waiting")
    o.gone(direct)
    o.bus.wait("event_agent", uuid=queued.uuid, method="answered", extension="3107")
    o.gone(queued)
    o.wait_state("3107", "ready")


@pytest.mark.parametrize(("args", "named"), [
    ("1001,user/1000", "invalid extension '1001,user/1000'"),
    ("{x=y}1001", "invalid extension '{x=y}1001'"),
    ("10 01", "expected 1 argument, got '10 01'"),
    ("1001|1002", "invalid extension '1001|1002'"),
    ("", "expected 1 argument, got ''"),
])
def test_direct_call_bad_input(o: Outbound, args: str, named: str) -> None:
    before = len(o.switch.all_channels)
    channel = o.dial("13900000112", "bridge", context="fsapps_test",
                     variables={"fsapps_test_args": args})
    o.gone(channel)
    assert channel.hangup_cause == "INVALID_NUMBER_FORMAT"
    assert len(o.switch.all_channels) == before + 1
    assert o.logged(f"nway_bridge: {named}")
    assert o.logged("usage: nway_bridge <extension>")
