"""Callbacks instead of waiting (issue 18 item 5) on the fake switch, end to end: a waiting
caller presses the exit key of a group whose exit_to is ``callback``, hears the confirmation
and hangs up, keeping its place in the queue; when its turn comes an agent reserves itself
(the dispatch scripts), the node's runtime rings the agent first, and once it answers the
caller is called back through the group's gateway (fakefs ``sofia/gateway/cbgw/<number>``, its
far ends scripted per test) and bridged to it. Not answered / busy: the agent is freed, the
attempt counted, the callback queued again after the retry delay, then dropped after its max
attempts - attempts and outcome in the callback's CDR. After every test no agent is reserved,
nothing queued, no callback left (the fixture).

Uses test_acd's call center (its own module-scoped instance) and its own groups 96x."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from fakefs import Behaviour, Channel
from fakefs.scenario import wait_until
from fsapps.context import now_ms
from fsapps.domain import callbacks
from fsapps.domain.agents import Agent
from fsapps.domain.callbacks import Callbacks
from fsapps.switch import acd, callback, commands
from fsapps.switch.runtime import agent_repair
from tests import test_acd
from tests.acd_support import DOMAIN, sql
from tests.test_acd import Acd

center_module = test_acd.center_module

GATEWAY = "cbgw"
ANSWERS = Behaviour(answer_after_ms=100, hangup_after_ms=300)


class FarEnds:
    """The gateway's far ends: the behaviours each number shows, in turn (then ANSWERS), and
    every number dialled, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.script: dict[str, list[Behaviour]] = {}
        self.dialled: list[str] = []

    def __call__(self, number: str) -> Behaviour:
        with self.lock:
            self.dialled.append(number)
            queued = self.script.get(number) or []
            return queued.pop(0) if queued else ANSWERS


@pytest.fixture(scope="module")
def far(center_module: Acd) -> FarEnds:
    ends = FarEnds()
    center_module.switch.add_gateway(GATEWAY, ends)
    return ends


@pytest.fixture
def a(center_module: Acd, far: FarEnds) -> Iterator[Acd]:
    """test_acd's per-test check (no call, no caller queued, no offer left), and no callback
    left, no agent reserved."""
    yield center_module
    switch = center_module.switch
    ctx = center_module.cc.ctx
    try:
        wait_until(lambda: not switch.channels, 8, "every call over")
    finally:
        for channel in list(switch.channels.values()):
            switch.hangup(channel, "NORMAL_CLEARING")
    wait_until(lambda: center_module.cc.queue.waiting() == [], 3, "the queues empty")
    wait_until(lambda: not ctx.redis.hgetall(ctx.keys(DOMAIN).offers()), 3,
               "no offer left in the offers hash")
    assert not ctx.redis.hgetall(ctx.keys(DOMAIN).callbacks()), "a callback left"
    for agent in center_module.cc.agents.all():
        assert not agent.offer_uuid, f"agent {agent.extension} left reserved"


def callback_group(a: Acd, number: str, *, attempts: int = 3, retry: int = 1,
                   **fields: Any) -> None:
    a.group(number, mode=0, exit_key="1", exit_to="callback", callback_gateway=GATEWAY,
            callback_max_attempts=attempts, callback_retry_seconds=retry, **fields)


def ask_callback(a: Acd, group: str, caller: str) -> Channel:
    """A caller waits in ``group``, presses 1 and hangs up after the confirmation; returns its
    channel once its callback is queued."""
    channel = a.call(group, caller, dtmf=((600, "1"),))
    a.gone(channel, 6)
    wait_until(lambda: any(w.callback and w.number == caller
                           for w in a.cc.queue.waiting(group)), 3, f"{caller}'s callback queued")
    return channel


def the_callback(a: Acd, number: str) -> callbacks.Callback:
    found = [c for c in Callbacks(a.cc.ctx, DOMAIN).all() if c.number == number]
    assert len(found) == 1, found
    return found[0]


def cdr_of(database: Any, uuid: str, timeout: float = 8.0) -> dict[str, Any]:
    rows = wait_until(lambda: sql(database.dsn, "SELECT flag, a_caller_id_number, "
                                  "destination_number, group_number FROM cdr WHERE uuid = %s",
                                  uuid), timeout, f"CDR {uuid[:8]} written")
    flag, caller, party, group = rows[0]
    attempts = sql(database.dsn, "SELECT attempt_no, extension, result, hangup_cause FROM "
                   "cdr_agent_attempt WHERE cdr_uuid = %s ORDER BY attempt_no", uuid)
    return {"flag": flag, "caller": caller, "party": party, "group": group,
            "attempts": [(n, ext, result) for n, ext, result, _ in attempts]}


def callouts(a: Acd, uuid: str) -> list[str]:
    """The agents offered the call or callback ``uuid``, in order."""
    return [str(m.data["extension"]) for m in a.bus.agent_events(uuid, "callout")]


# ------------------------------------------------------------------------ pure parts -------
def test_only_plain_numbers_and_gateways_reach_the_dial_string() -> None:
    assert callbacks.callback_number("+8613900000001", "x") == "+8613900000001"
    assert callbacks.callback_number("anonymous", "13900000002") == "13900000002"
    assert callbacks.callback_number("1001,user/1002", "1001_user_1002") is None
    assert callbacks.dial_string("gw1", "139", ["a=b"]) == "{a=b}sofia/gateway/gw1/139"
    for gateway, number in (("gw1/x", "139"), ("gw1", "139|user/1000"), ("gw 1", "1"),
                            ("gw1", "{x=y}139"), ("", "139")):
        with pytest.raises(ValueError):
            callbacks.dial_string(gateway, number, [])


def test_an_unanswered_attempt_is_retried_after_the_delay_up_to_the_max() -> None:
    assert callbacks.after_unanswered(1, 3, 60, 1_000) == callbacks.Next("retry", 61_000)
    assert callbacks.after_unanswered(2, 3, 0, 1_000) == callbacks.Next("retry", 1_000)
    assert callbacks.after_unanswered(3, 3, 60, 1_000) == callbacks.Next("drop")
    assert callbacks.after_unanswered(1, 1, 60, 1_000) == callbacks.Next("drop")


def test_the_reconciler_leaves_an_agent_ringing_for_a_callback_to_its_lease() -> None:
    """A callback has no channel: an agent reserved for one - its command on the way to the
    placing node, or its leg named by the ring but not created yet (bgapi) - is not "ringing
    for a call that is gone" (released under the placing node, the callback was dispatched
    and rung twice: the two-node test, 3 runs in 5 before this rule). Its lease bounds it;
    once it answered, its leg is what counts."""
    now = 1_000_000
    ringing = Agent("7101", DOMAIN, call_state="ring", offer_uuid="cb1", offer_node="node1",
                    lease_until=now + 5_000, agent_leg="leg1")
    def nothing_up(uuid: str) -> bool:
        return False

    check = callback.reserved_check(ringing, {"cb1"}, nothing_up)
    assert agent_repair(ringing, now, "node1", {"node1"}, check, False, 2_000) is None
    assert agent_repair(ringing, now, "node1", {"node1"}, nothing_up, False, 2_000) is not None
    expired = replace(ringing, lease_until=now - 1)
    assert agent_repair(expired, now, "node1", {"node1"},
                        callback.reserved_check(expired, {"cb1"}, nothing_up), False,
                        2_000).action == "release"
    talking = replace(ringing, call_state="talking", lease_until=0)
    assert agent_repair(talking, now, "node1", {"node1"},
                        callback.reserved_check(talking, {"cb1"}, nothing_up), False,
                        2_000).action == "release"


# ------------------------------------------------------------------------ end to end -------
def test_a_callback_keeps_the_place_rings_the_agent_first_then_calls_the_caller_back(
        a: Acd, far: FarEnds, database: Any) -> None:
    callback_group(a, "961")
    a.agents("961", "9611", ready=False)
    caller = "13996100001"
    channel = ask_callback(a, "961", caller)
    spoken = [d for _, app, d in _executed(a, channel) if app == "speak"]
    assert spoken == [callbacks.DEFAULT_CONFIRM]
    assert cdr_of(database, channel.uuid)["flag"] == callbacks.FLAG_REQUESTED
    callback = the_callback(a, caller)
    assert far.dialled.count(caller) == 0  # nobody called back before an agent is free
    a.ready("9611")
    a.wait_state("9611", "talking")
    # the agent's leg exists (it answered) before the gateway is dialled
    wait_until(lambda: caller in far.dialled, 5, "the caller called back")
    record = cdr_of(database, callback.id)
    assert record == {"flag": callbacks.FLAG_CALLED_BACK, "caller": caller, "party": "9611",
                      "group": "961", "attempts": [(1, "9611", "answered")]}
    a.wait_state("9611", "ready")
    assert callouts(a, callback.id) == ["9611"]
    # the queue messages: the caller left, its callback took its place, then left for 9611
    told = [(m.data["method"], m.data["uuid"]) for m in a.bus.find("queue_961")]
    assert told == [("nway_queue_add", channel.uuid), ("nway_queue_remove", channel.uuid),
                    ("nway_queue_add", callback.id), ("nway_queue_remove", callback.id)]


def _executed(a: Acd, channel: Channel) -> list[tuple[float, str, str]]:
    return [(0.0, e.headers["Application"], e.headers["Application-Data"])
            for e in a.switch.bus.events("CHANNEL_EXECUTE")
            if e.headers.get("Unique-ID") == channel.uuid]


def stamp_of(a: Acd, event: str, match: Any) -> int:
    found = [int(e.headers["Event-Date-Timestamp"]) for e in a.switch.bus.events(event)
             if match(e.headers)]
    assert found, f"no {event}"
    return found[0]


def test_the_agent_is_rung_and_answers_before_the_caller_is_dialled(
        a: Acd, far: FarEnds, database: Any) -> None:
    callback_group(a, "962")
    a.agents("962", "9621", ready=False, answer_after_ms=300)
    caller = "13996200001"
    ask_callback(a, "962", caller)
    callback = the_callback(a, caller)
    a.ready("9621")
    assert cdr_of(database, callback.id)["flag"] == callbacks.FLAG_CALLED_BACK
    answered = stamp_of(a, "CHANNEL_ANSWER",
                        lambda h: h.get("variable_fsapps_callback") == callback.id)
    dialled = stamp_of(a, "CHANNEL_CREATE",
                       lambda h: h.get("Channel-Name") == f"sofia/gateway/{GATEWAY}/{caller}")
    assert answered <= dialled
    a.wait_state("9621", "ready")


def test_a_callback_not_answered_is_retried_after_the_delay_then_connected(
        a: Acd, far: FarEnds, database: Any) -> None:
    """The first time the caller does not answer (NO_ANSWER at the ring timeout): the agent
    is ready again at once (not left reserved), the attempt counted; after the retry delay
    the callback is queued again in its place and the next attempt connects."""
    callback_group(a, "963", retry=1)
    a.agents("963", "9631", ready=False)
    caller = "13996300001"
    far.script[caller] = [Behaviour(answer_after_ms=None)]
    ask_callback(a, "963", caller)
    callback = the_callback(a, caller)
    a.ready("9631")
    wait_until(lambda: len(Callbacks(a.cc.ctx, DOMAIN).get(callback.id).attempts) == 1, 8,
               "the first attempt counted")
    a.wait_state("9631", "ready")
    assert not a.cc.get("9631").offer_uuid
    record = cdr_of(database, callback.id, 15)
    assert record["flag"] == callbacks.FLAG_CALLED_BACK
    assert record["attempts"] == [(1, "9631", "no_answer"), (2, "9631", "answered")]
    assert far.dialled.count(caller) == 2
    a.wait_state("9631", "ready")


def test_max_attempts_exhausted_drops_the_callback_and_frees_the_agent(
        a: Acd, far: FarEnds, database: Any) -> None:
    callback_group(a, "964", attempts=2, retry=0)
    a.agents("964", "9641", ready=False)
    caller = "13996400001"
    far.script[caller] = [Behaviour(fail_with="USER_BUSY", fail_after_ms=100)] * 2
    ask_callback(a, "964", caller)
    callback = the_callback(a, caller)
    a.ready("9641")
    record = cdr_of(database, callback.id, 15)
    assert record["flag"] == callbacks.FLAG_NOT_REACHED
    assert record["attempts"] == [(1, "9641", "busy"), (2, "9641", "busy")]
    assert far.dialled.count(caller) == 2
    a.wait_state("9641", "ready")
    assert Callbacks(a.cc.ctx, DOMAIN).get(callback.id) is None
    assert a.queued("964") == []


def test_a_callback_waits_its_turn_behind_earlier_callers(a: Acd, far: FarEnds,
                                                          database: Any) -> None:
    """First a caller who waits on the line, then one who asks for a callback, then another
    who waits: one agent serves them in that order - the callback between the two."""
    callback_group(a, "965")
    a.agents("965", "9651", ready=False)
    first = a.call("965", "13996500001", hangup_after_bridge_ms=300)
    wait_until(lambda: first.uuid in a.queued("965"), 3, "the first caller queued")
    ask_callback(a, "965", "13996500002")
    callback = the_callback(a, "13996500002")
    third = a.call("965", "13996500003", hangup_after_bridge_ms=300)
    wait_until(lambda: third.uuid in a.queued("965"), 3, "the third caller queued")
    assert a.queued("965") == [first.uuid, callback.id, third.uuid]
    a.ready("9651")
    assert a.answered_by(first) == "9651"
    assert cdr_of(database, callback.id, 10)["flag"] == callbacks.FLAG_CALLED_BACK
    assert a.answered_by(third, 10) == "9651"
    a.gone(third)
    offered = [str(m.data["uuid"]) for m in a.bus.find("event_agent", method="callout",
                                                         extension="9651")]
    assert offered == [first.uuid, callback.id, third.uuid]
    a.wait_state("9651", "ready")


def test_an_agent_not_answering_the_callback_is_released_and_the_callback_keeps_its_place(
        a: Acd, far: FarEnds, database: Any) -> None:
    """The first agent never answers the callback's ring: a missed offer (no_answer, then
    ready: never left reserved), the caller not called (no attempt), and the callback, back
    in its place, goes to the next agent, who answers."""
    callback_group(a, "966")
    a.agents("966", "9661", ready=False, answer_after_ms=None)
    a.agents("966", "9662", ready=False)
    caller = "13996600001"
    ask_callback(a, "966", caller)
    callback = the_callback(a, caller)
    a.ready("9661")
    wait_until(lambda: callouts(a, callback.id) == ["9661"], 3, "9661 rung")
    a.ready("9662")  # (busy elsewhere until now)
    record = cdr_of(database, callback.id, 15)
    assert record["flag"] == callbacks.FLAG_CALLED_BACK
    assert record["attempts"] == [(1, "9662", "answered")]
    assert callouts(a, callback.id)[:2] == ["9661", "9662"]
    assert far.dialled.count(caller) == 1
    a.wait_state("9661", "ready")
    a.wait_state("9662", "ready")


def test_a_queued_callback_survives_its_node_and_is_placed_by_a_live_one(
        a: Acd, far: FarEnds, database: Any) -> None:
    """The callback's state is in Redis: its node gone (the queue entry names a node that no
    longer beats), the reconcilers leave it queued (a waiting caller of a gone node would be
    dropped) and a live node places it when an agent frees."""
    callback_group(a, "967")
    a.agents("967", "9671", ready=False)
    caller = "13996700001"
    ask_callback(a, "967", caller)
    callback = the_callback(a, caller)
    ctx = a.cc.ctx
    keys = ctx.keys(DOMAIN)
    entry = ctx.redis.hget(keys.waiting(), callback.id)
    ctx.redis.hset(keys.waiting(), callback.id, entry.replace(f'"node": "{callback.node}"',
                                                              '"node": "gone-node"'))
    started = now_ms()
    wait_until(lambda: now_ms() - started > 5_000, 7, "two reconciler passes")
    assert a.queued("967") == [callback.id]
    a.ready("9671")
    assert cdr_of(database, callback.id, 10)["flag"] == callbacks.FLAG_CALLED_BACK
    a.wait_state("9671", "ready")


def test_without_a_gateway_the_key_asks_no_callback_and_the_caller_waits_on(a: Acd) -> None:
    a.group("968", mode=0, exit_key="1", exit_to="callback")
    a.agents("968", "9681", ready=False)
    channel = a.call("968", "13996800001", dtmf=((600, "1"),), hangup_after_bridge_ms=200)
    wait_until(lambda: any("no callback gateway" in m for _, m in a.switch.log), 5,
               "the refusal logged")
    assert a.queued("968") == [channel.uuid]
    a.ready("9681")
    assert a.answered_by(channel) == "9681"
    a.gone(channel)
    a.wait_state("9681", "ready")


def test_callback_settings_by_command_kept_in_postgresql_and_listed(a: Acd) -> None:
    ctx = a.cc.ctx
    assert commands.run("nway_add_group 969 0", ctx=ctx).startswith("+OK")
    assert commands.run("nway_set_group_callback 969 trunk1 4 30", ctx=ctx) == \
        "+OK group 969 calls back through gateway trunk1, 4 attempts 30 s apart\n"
    for bad in ("969 trunk/1", "969 'x'", "969 trunk1 0", "969 trunk1 21", "969 trunk1 3 x"):
        assert commands.run(f"nway_set_group_callback {bad}", ctx=ctx).startswith("-ERR"), bad
    assert commands.run("nway_set_group_waiting 969 0 hangup 1 callback",
                        ctx=ctx).startswith("+OK")
    ctx.redis.delete(ctx.keys(DOMAIN).group("969"))
    a.cc.groups.load_into_redis()
    group = a.cc.groups.get("969")
    assert (group.callback_gateway, group.callback_max_attempts, group.callback_retry_seconds,
            group.exit_key, group.exit_to) == ("trunk1", 4, 30, "1", "callback")
    text = commands.run("nway_list_groups json", ctx=ctx)
    assert '"callback_gateway": "trunk1"' in text or '"callback_gateway":"trunk1"' in text
    assert '"exit_to"' in text
    assert commands.run("nway_set_group_callback 969 -", ctx=ctx) == \
        "+OK group 969 no callbacks\n"


def test_a_key_pressed_as_an_agent_reserves_itself_connects_the_caller_instead(
        a: Acd, far: FarEnds, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller presses the key just as an agent turns ready and reserves itself for it:
    the request (one script) finds the reservation and the caller is put through instead;
    no callback is kept, nobody is called back."""
    request = acd.Router.request_callback

    def racing(router: acd.Router, why: str) -> str | None:
        acd.set_ready(router.ctx, DOMAIN, "9701")
        wait_until(lambda: a.cc.get("9701").offer_uuid == router.call.uuid, 3,
                   "9701 reserved for the caller")
        return request(router, why)

    monkeypatch.setattr(acd.Router, "request_callback", racing)
    callback_group(a, "970")
    a.agents("970", "9701", ready=False)
    channel = a.call("970", "13997000001", dtmf=((600, "1"),), hangup_after_bridge_ms=200)
    assert a.answered_by(channel, 6) == "9701"
    a.gone(channel)
    assert "13997000001" not in far.dialled
    assert Callbacks(a.cc.ctx, DOMAIN).all() == []
    a.wait_state("9701", "ready")
