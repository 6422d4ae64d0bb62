"""The ACD on one node, end to end: fsapps.nwayacd routing real (fake-switch) calls from the
project's dialplan to registered agent phones, with fsapps.runtime running on the node, against
the test Redis and PostgreSQL. Real time (time_scale 1.0), short timings; every wait is on a
condition.

Each test uses its own group and extensions, so the one CallCenter of the module is shared.
The published pub/sub messages are collected by a real PSUBSCRIBE on event_*, queue_*, agent_*.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import pytest

from fakefs import Behaviour, Channel, Switch
from fakefs.scenario import wait_until
from fsapps.domain.routing import CallMode
from fsapps.switch import acd
from tests.acd_support import DOMAIN, CallCenter, center
from tests.pubsub_capture import Subscriber

RING_S = 2            # group_callout_timeout: FreeSWITCH's whole-second timer rings 1.0-1.6 s
ANSWER = 50           # agent phones answer after this many ms
TALK = 200            # callers hang up this long after being bridged
TIME_RE = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"
AGENT_EVENT_KEYS = ["type", "method", "cti_ip", "uuid", "number", "group", "extension", "level",
                    "callin_time"]
QUEUE_EVENT_KEYS = ["type", "method", "cti_ip", "uuid", "number", "group", "level",
                    "callin_time"]


# ------------------------------------------------------------------------ fixtures ----------
@dataclass
class Acd:
    cc: CallCenter
    switch: Switch
    bus: Subscriber

    # -- set-up --------------------------------------------------------------------------
    def group(self, number: str, mode: int = 0, **fields: Any) -> None:
        fields.setdefault("group_callout_timeout", RING_S)
        fields.setdefault("wrapup_seconds", 0)
        self.cc.group(number, group_call_mode=mode, **fields)

    def agents(self, group: str, *extensions: str, ready: bool = True,
               **behaviour: Any) -> None:
        """Agents logged into ``group`` in this order (the group's member order)."""
        behaviour.setdefault("answer_after_ms", ANSWER)
        for ext in extensions:
            self.cc.agent(ext, [group], behaviour=Behaviour(**behaviour), ready=ready)

    # -- calls ---------------------------------------------------------------------------
    def call(self, group: str, caller: str, **behaviour: Any) -> Channel:
        behaviour.setdefault("hangup_after_bridge_ms", TALK)
        return self.cc.call(self.switch, caller, f"7{group}", **behaviour)

    def answered_by(self, channel: Channel, timeout: float = 5.0) -> str:
        """The agent who answered the call: its ``answered`` event (from the node's runtime,
        which may see a very short call only after it ended) or the router's ``hangup``
        event (sent only for an answered call)."""
        def found() -> str | None:
            for m in self.bus.agent_events(channel.uuid):
                if m.data["method"] in ("answered", "hangup"):
                    return str(m.data["extension"])
            return None
        return str(wait_until(found, timeout, f"call {channel.uuid[:8]} answered"))

    def served(self, group: str, caller: str, **behaviour: Any) -> str:
        """One whole call: placed, answered, over, and its agent free again."""
        channel = self.call(group, caller, **behaviour)
        ext = self.answered_by(channel)
        self.gone(channel)
        self.wait_state(ext, "ready")
        return ext

    def gone(self, channel: Channel, timeout: float = 5.0) -> None:
        wait_until(lambda: channel.done.is_set() or channel.uuid not in self.switch.channels,
                   timeout, f"call {channel.uuid[:8]} over")

    def wait_state(self, ext: str, state: str, timeout: float = 5.0) -> None:
        wait_until(lambda: self.cc.get(ext).call_state == state, timeout,
                   f"agent {ext} {state} (is {self.cc.get(ext).call_state})")

    def callouts(self, channel: Channel) -> list[str]:
        return [m.data["extension"] for m in self.bus.agent_events(channel.uuid, "callout")]



    def queued(self, group: str) -> list[str]:
        return [w.uuid for w in self.cc.queue.waiting(group)]

    def hears(self, channel: Channel) -> set[str]:
        return self.switch.hears(channel.uuid)

    def playbacks(self, channel: Channel, path: str) -> list[Any]:
        return [e for e in self.switch.bus.events("PLAYBACK_START")
                if e.headers.get("Unique-ID") == channel.uuid
                and e.headers.get("Playback-File-Path") == path]

    def ready(self, ext: str) -> bool:
        return acd.set_ready(self.cc.ctx, DOMAIN, ext)

    def busy(self, ext: str) -> None:
        acd.set_busy(self.cc.ctx, DOMAIN, ext)


@pytest.fixture(scope="module")
def center_module(redis_server: Any, database: Any,
                  no_leaked_switch_threads: None) -> Iterator[Acd]:
    for cc in center(redis_server.url, database.dsn):
        switch = cc.start_switch()
        bus = Subscriber(redis_server.url)
        try:
            yield Acd(cc, switch, bus)
        finally:
            bus.close()


@pytest.fixture
def a(center_module: Acd) -> Iterator[Acd]:
    """The module's call center; after each test no call is left and no caller waits."""
    yield center_module
    switch = center_module.switch
    try:
        wait_until(lambda: not switch.channels, 8, "every call over")
    finally:
        for channel in list(switch.channels.values()):
            switch.hangup(channel, "NORMAL_CLEARING")
    ctx = center_module.cc.ctx
    wait_until(lambda: center_module.cc.queue.waiting() == [], 3, "the queues empty")
    wait_until(lambda: not ctx.redis.hgetall(ctx.keys(DOMAIN).offers()), 3,
               "no offer left in the offers hash")


def group_defaults(a: Acd, **changes: Any) -> Any:
    """Swap the module's group defaults for one test (a Router reads them when a call
    arrives); returns a callable that restores them."""
    ctx = a.cc.ctx
    before = ctx.settings
    ctx.settings = replace(before, group_defaults=replace(before.group_defaults, **changes))

    def restore() -> None:
        ctx.settings = before
    return restore


def elapsed(since: float) -> float:
    return time.monotonic() - since


# ------------------------------------------------------------------------ call modes --------
def test_sequential_mode_always_starts_from_the_first_member(a: Acd) -> None:
    """Mode 0: every call tries the members in member order from the first, so the first
    member gets every call while free; a busy member is passed over for the next."""
    a.group("201", mode=0)
    a.agents("201", "2011", "2012", "2013")
    assert [a.served("201", f"1390000010{i}") for i in range(3)] == ["2011"] * 3
    a.busy("2011")
    assert a.served("201", "13900000104") == "2012"
    a.busy("2012")
    assert a.served("201", "13900000105") == "2013"
    a.ready("2011")
    a.ready("2012")
    # Two calls at once: the first two members, in order.
    first = a.call("201", "13900000106", hangup_after_bridge_ms=600)
    a.wait_state("2011", "ring")
    second = a.call("201", "13900000107", hangup_after_bridge_ms=600)
    assert (a.answered_by(first), a.answered_by(second)) == ("2011", "2012")
    a.gone(first)
    a.gone(second)


def test_random_mode_spreads_calls_over_the_members(a: Acd) -> None:
    """Mode 1: a random order per call; twelve calls all landing on one of three free agents
    would happen with probability 3 * (1/3)**12."""
    a.group("202", mode=1)
    a.agents("202", "2021", "2022", "2023")
    served = [a.served("202", f"139000002{i:02d}", hangup_after_bridge_ms=50)
              for i in range(12)]
    assert set(served) <= {"2021", "2022", "2023"}
    assert len(set(served)) >= 2, served


def test_cyclic_mode_starts_after_current_ext_number_and_wraps(a: Acd) -> None:
    """Mode 2: each call starts after the group's current_ext_number (the agent last found)
    and wraps around; a busy member is skipped and the search goes on from there."""
    a.group("203", mode=2, current_ext_number="2032")
    a.agents("203", "2031", "2032", "2033")
    assert [a.served("203", f"1390000030{i}") for i in range(4)] == \
        ["2033", "2031", "2032", "2033"]
    assert a.cc.groups.get("203").current_ext_number == "2033"
    a.busy("2031")
    assert a.served("203", "13900000305") == "2032"
    assert a.served("203", "13900000306") == "2033"
    assert a.served("203", "13900000307") == "2032"


@pytest.mark.parametrize("mode", [3, 4, 5])
def test_memory_modes_prefer_the_agent_who_served_the_caller(a: Acd, mode: int) -> None:
    """Modes 3/4/5: the agent who last served this caller in this group gets them again if
    free (even where the mode's own order would pick another); a caller without memory gets
    the mode's order; when the remembered agent is busy the call falls back to that order."""
    g = f"23{mode}"
    x1, x2, x3 = (f"23{mode}{i}" for i in (1, 2, 3))
    a.group(g, mode=mode)
    a.agents(g, x1, x2, x3)
    caller, other = f"1391000{mode}001", f"1391000{mode}002"
    a.busy(x1)
    a.busy(x2)
    assert a.served(g, caller) == x3
    a.ready(x1)
    a.ready(x2)
    assert [a.served(g, caller) for _ in range(3)] == [x3, x3, x3]
    first_for_other = a.served(g, other)
    if CallMode(mode).base is not CallMode.RANDOM:
        # sequential: the first member; cyclic: the member after the last found (x3).
        assert first_for_other == x1
    a.busy(x3)
    fallback = a.served(g, caller)
    # Memory misses: mode 3 → sequential (x1); 4 → random among the free; 5 → cyclic after
    # the current_ext_number, which the previous call left at x1.
    assert fallback in {3: {x1}, 4: {x1, x2}, 5: {x2}}[mode]
    # Memory follows the last agent who served the caller.
    a.ready(x3)
    assert a.served(g, caller) == fallback


def test_dialplan_routes_85733555_to_group_12320(a: Acd) -> None:
    """Seed step c: 85733555 is routed into group 12320."""
    a.group("12320", mode=0)
    a.agents("12320", "2201")
    channel = a.cc.call(a.switch, "13900002200", "85733555", hangup_after_bridge_ms=TALK)
    assert a.answered_by(channel) == "2201"
    assert a.bus.agent_events(channel.uuid, "callout")[0].data["group"] == "12320"
    a.gone(channel)


# ------------------------------------------------------------------------ blacklist ---------
def test_blacklisted_caller_is_rejected_before_any_agent(a: Acd) -> None:
    """Seed step d, default action: a blacklisted caller is hung up with CALL_REJECTED, no
    agent is offered the call; other callers are served."""
    a.group("204", mode=0)
    a.agents("204", "2041")
    a.cc.groups.set_numbers("204", "blacklist", ["13900000400"])
    channel = a.call("204", "13900000400")
    a.gone(channel)
    assert channel.hangup_cause == "CALL_REJECTED"
    assert not channel.answered
    assert a.bus.agent_events(channel.uuid) == []
    assert a.cc.get("2041").call_state == "ready"
    assert a.served("204", "13900000401") == "2041"


def test_blacklisted_caller_hears_the_black_list_ring_then_is_rejected(a: Acd) -> None:
    """blacklist_action "playback": the group's black_list_ring is played, then the call is
    hung up with CALL_REJECTED; no agent is offered it."""
    ring = "/sounds/black205.wav"
    a.switch.media_durations[ring] = 300
    a.group("205", mode=0, blacklist_action="playback", black_list_ring=ring)
    a.agents("205", "2051")
    a.cc.groups.set_numbers("205", "blacklist", ["13900000500"])
    started = time.monotonic()
    channel = a.call("205", "13900000500")
    wait_until(lambda: f"media:{ring}" in a.hears(channel), 3, "the black list ring")
    a.gone(channel)
    assert elapsed(started) >= 0.3
    assert channel.hangup_cause == "CALL_REJECTED"
    assert len(a.playbacks(channel, ring)) == 1
    assert a.bus.agent_events(channel.uuid) == []


# ------------------------------------------------------------------------ queue order -------
def test_vip_callers_are_served_before_normal_ones_fifo_within_a_level(a: Acd) -> None:
    """Seed step g: while no agent is free, VIP callers wait ahead of every normal caller
    (even ones who waited longer); within a level, first come first served."""
    a.group("206", mode=0)
    a.agents("206", "2061", ready=False)
    a.cc.groups.set_numbers("206", "vip", ["13900000691", "13900000692"])
    order = ["13900000601", "13900000691", "13900000602", "13900000692"]
    channels = {}
    for caller in order:
        channels[caller] = a.call("206", caller, hangup_after_bridge_ms=100)
        wait_until(lambda c=channels[caller]: c.uuid in a.queued("206"), 3, f"{caller} queued")
    waiting = a.cc.queue.waiting("206")
    assert [w.number for w in waiting] == ["13900000691", "13900000692", "13900000601",
                                           "13900000602"]
    assert [w.level for w in waiting] == ["vip", "vip", "normal", "normal"]
    a.ready("2061")
    for c in channels.values():
        a.gone(c)
    offered = sorted(a.bus.find("event_agent", method="callout", group="206"),
                     key=lambda m: m.at)
    assert [m.data["number"] for m in offered] == [w.number for w in waiting]
    assert [m.data["level"] for m in offered] == ["vip", "vip", "normal", "normal"]


# ------------------------------------------------------------------------ wrap-up -----------
def test_wrapup_types_for_wrapup_seconds_then_ready_by_itself(a: Acd) -> None:
    """After a call (here ended by the agent: the ACD then hangs up the caller) the agent is
    typing for the group's wrapup_seconds, then ready on its own (published on
    agent_<ext>)."""
    a.group("207", mode=0, wrapup_seconds=1)
    a.agents("207", "2071", hangup_after_ms=TALK)
    channel = a.call("207", "13900000701", hangup_after_bridge_ms=None)
    assert a.answered_by(channel) == "2071"
    a.gone(channel)
    assert channel.hangup_cause == "NORMAL_CLEARING"
    a.wait_state("2071", "typing")
    typing_since = time.monotonic()
    until = a.cc.get("2071").wrapup_until
    assert until > 0
    a.wait_state("2071", "ready", 3)
    assert 0.7 <= elapsed(typing_since) <= 1.6
    assert time.time() * 1000 >= until - 50
    a.bus.statuses_end("2071", ["ring", "talking", "typing", "ready"])


def test_set_ready_ends_the_wrapup_early(a: Acd) -> None:
    """acd.set_ready (agent_ready / nway_ready) during the wrap-up makes the agent ready at
    once; the wrap-up timer is dropped."""
    a.group("208", mode=0, wrapup_seconds=30)
    a.agents("208", "2081")
    channel = a.call("208", "13900000801")
    a.answered_by(channel)
    a.gone(channel)
    a.wait_state("2081", "typing")
    assert a.ready("2081") is True
    assert a.cc.get("2081").call_state == "ready"
    assert a.cc.ctx.redis.zscore(a.cc.ctx.keys(DOMAIN).wrapups(), "2081") is None
    channel = a.call("208", "13900000802", hangup_after_bridge_ms=50)
    assert a.answered_by(channel) == "2081"
    a.gone(channel)
    a.wait_state("2081", "typing")
    assert a.ready("2081") is True


def test_set_ready_is_refused_while_the_agent_rings_or_talks(a: Acd) -> None:
    """acd.set_ready on an agent who is on a queue call changes nothing (it becomes ready
    when the call ends): a ready agent would be offered a second call while still talking."""
    a.group("221", mode=0)
    a.agents("221", "2211", answer_after_ms=600)
    first = a.call("221", "13900002101", hangup_after_bridge_ms=800)
    a.wait_state("2211", "ring")
    assert a.ready("2211") is False
    assert a.cc.get("2211").call_state == "ring"
    assert a.answered_by(first) == "2211"
    a.wait_state("2211", "talking")
    assert a.ready("2211") is False
    second = a.call("221", "13900002102", hangup_after_bridge_ms=50)
    wait_until(lambda: second.uuid in a.queued("221"), 3, "second caller queued")
    assert a.cc.get("2211").call_state == "talking"
    assert a.answered_by(second) == "2211"
    a.gone(first)
    a.gone(second)
    # The second call was offered only once the first was over.
    first_hangup = a.bus.agent_events(first.uuid, "hangup")[0].at
    assert a.bus.agent_events(second.uuid, "callout")[0].at >= first_hangup


# ------------------------------------------------------------------------ no answer ---------
def test_ring_timeout_tries_the_next_agent_and_frees_the_first(a: Acd) -> None:
    """An agent who lets the offer ring out gets a noanswer event, goes no_answer → ready,
    and the next agent is tried; in sequential mode the agent who failed the call is not
    offered it again before the others, though it comes first in member order."""
    a.group("209", mode=0)
    a.agents("209", "2091", answer_after_ms=None)
    a.agents("209", "2092")
    started = time.monotonic()
    channel = a.call("209", "13900000901")
    assert a.answered_by(channel) == "2092"
    assert 0.9 <= elapsed(started) <= 3.0
    assert a.callouts(channel) == ["2091", "2092"]
    noanswer = a.bus.agent_events(channel.uuid, "noanswer")
    assert [m.data["extension"] for m in noanswer] == ["2091"]
    a.gone(channel)
    first = a.cc.get("2091")
    assert (first.call_state, first.no_answer_count) == ("ready", 1)
    a.bus.statuses_end("2091", ["no_answer", "ready"])


def test_agent_becomes_busy_after_max_no_answer_misses_in_a_row(a: Acd) -> None:
    """After the group's max_no_answer consecutive misses the agent is set busy (seat and
    call state) and gets no more calls until it is made ready again, which clears the
    count."""
    a.group("210", mode=0, max_no_answer=2)
    a.agents("210", "2101", answer_after_ms=None)
    a.agents("210", "2102")
    assert a.served("210", "13900001001") == "2102"
    assert a.cc.get("2101").no_answer_count == 1
    second = a.call("210", "13900001002")
    assert a.answered_by(second) == "2102"
    a.gone(second)
    missed = a.cc.get("2101")
    assert (missed.call_state, missed.seat_status, missed.no_answer_count) == \
        ("busy", "busy", 2)
    a.bus.statuses_end("2101", ["no_answer", "busy"])
    third = a.call("210", "13900001003")
    assert a.answered_by(third) == "2102"
    assert a.callouts(third) == ["2102"]
    a.gone(third)
    assert a.ready("2101") is True
    assert a.cc.get("2101").no_answer_count == 0


def test_busy_rejecting_and_unregistered_agents_are_skipped(a: Acd) -> None:
    """A phone answering 486 (USER_BUSY) or 603 (CALL_REJECTED) fails the offer at once and
    the next agent is tried; an agent known unregistered is never offered the call; one that
    Redis believes registered but the switch does not (USER_NOT_REGISTERED) is skipped and
    its reg_state repaired."""
    a.group("211", mode=0)
    a.agents("211", "2111", fail_with="USER_BUSY")
    a.agents("211", "2112", fail_with="CALL_REJECTED")
    a.agents("211", "2113", "2114")
    a.agents("211", "2115")
    a.switch.unregister("2113", DOMAIN)
    a.switch.unregister("2114", DOMAIN)
    wait_until(lambda: a.cc.get("2114").reg_state == "unreg", 3, "2114 unregistered")
    a.cc.agents.set_fields("2114", reg_state="reged")  # a stale belief
    started = time.monotonic()
    channel = a.call("211", "13900001101")
    assert a.answered_by(channel) == "2115"
    assert elapsed(started) < 1.5  # no ring timeout was waited for
    assert a.callouts(channel) == ["2111", "2112", "2114", "2115"]
    assert [m.data["extension"] for m in a.bus.agent_events(channel.uuid, "noanswer")] == \
        ["2111", "2112", "2114"]
    a.gone(channel)
    assert a.cc.get("2113").call_state == "ready"
    assert a.cc.get("2114").reg_state == "unreg"
    for ext in ("2111", "2112", "2114"):
        assert a.cc.get(ext).call_state == "ready", ext


def test_waiting_call_failed_by_its_only_agent_is_served_when_it_is_ready_again(
        a: Acd) -> None:
    """A call the only agent failed waits in the queue (remembering who failed it); when that
    agent is made ready again, nobody else can take the call, so it is offered to it rather
    than left waiting for ever. (Seed ambiguity: "skip the agents who failed the call" is
    read as "try them last", not "never again".)"""
    a.group("222", mode=0, max_no_answer=1)
    a.agents("222", "2221", fail_with="USER_BUSY")
    channel = a.call("222", "13900002201")
    wait_until(lambda: channel.uuid in a.queued("222"), 3, "the call queued")
    assert a.cc.get("2221").call_state == "busy"
    assert a.cc.queue.waiting("222")[0].tried == ["2221"]
    result = a.switch.register("2221", DOMAIN, password="1234",
                               behaviour=Behaviour(answer_after_ms=ANSWER))
    assert result.ok
    a.ready("2221")
    assert a.answered_by(channel) == "2221"
    a.gone(channel)


# ------------------------------------------------------------------------ abandon -----------
def test_caller_abandoning_while_waiting_leaves_the_queue(a: Acd) -> None:
    """A queued caller who hangs up: nway_queue_add then nway_queue_remove are published, the
    queue is empty, no agent is reserved for the call, and an agent turning ready afterwards
    stays ready."""
    a.group("212", mode=0)
    a.agents("212", "2121", ready=False)
    channel = a.call("212", "13900001201", abandon_after_ms=800)
    a.bus.wait("queue_212", method="nway_queue_add", uuid=channel.uuid)
    assert a.queued("212") == [channel.uuid]
    a.gone(channel, 3)
    a.bus.wait("queue_212", method="nway_queue_remove", uuid=channel.uuid)
    assert a.queued("212") == []
    assert a.cc.ctx.redis.hget(a.cc.ctx.keys(DOMAIN).waiting(), channel.uuid) is None
    assert a.cc.ctx.redis.hget(a.cc.ctx.keys(DOMAIN).offers(), channel.uuid) is None
    assert a.ready("2121") is True
    agent = a.cc.get("2121")
    assert (agent.call_state, agent.offer_uuid) == ("ready", "")
    assert a.bus.agent_events(channel.uuid) == []


def test_caller_abandoning_while_the_agent_rings_frees_it_for_the_next_caller(a: Acd) -> None:
    """The caller hangs up while the agent's phone rings: the agent is released at once (not
    at the ring timeout), published ready, and offered the next waiting caller."""
    a.group("213", mode=0, group_callout_timeout=5)
    a.agents("213", "2131", answer_after_ms=1500)
    first = a.call("213", "13900001301", abandon_after_ms=600)
    a.wait_state("2131", "ring")
    second = a.call("213", "13900001302", hangup_after_bridge_ms=50)
    wait_until(lambda: second.uuid in a.queued("213"), 3, "second caller queued")
    a.gone(first, 3)
    gone_at = time.monotonic()
    callout = a.bus.wait("event_agent", 3, uuid=second.uuid, method="callout")
    assert callout.data["extension"] == "2131"
    assert callout.at - gone_at < 0.5
    assert a.answered_by(second) == "2131"
    assert a.bus.agent_events(first.uuid, "answered") == []
    assert a.bus.agent_events(first.uuid, "noanswer") == []
    try:
        wait_until(lambda: a.bus.statuses("2131")[:3] == ["ring", "ready", "ring"], 3,
                   "2131 published ring, ready (released), ring (the next caller)")
    except TimeoutError:
        raise AssertionError(f"agent_2131 published {a.bus.statuses('2131')}") from None
    a.gone(second)


# ------------------------------------------------------------------------ long wait ---------
def test_long_wait_plays_the_busy_ring_then_hangs_up(a: Acd) -> None:
    """Seed step h, "hang up after playing N times": the busy ring every
    busy_ring_interval_seconds; after busy_ring_repeats of them the call is ended and leaves
    the queue."""
    ring = "/sounds/busy214.wav"
    a.switch.media_durations[ring] = 200
    restore = group_defaults(a, busy_ring_interval_seconds=2)
    try:
        a.group("214", mode=0, busy_ring=ring, busy_ring_repeats=2)
        a.agents("214", "2141", ready=False)
        started = time.monotonic()
        channel = a.call("214", "13900001401")
        a.gone(channel, 10)
    finally:
        restore()
    assert 3.9 <= elapsed(started) <= 7.5
    rings = a.playbacks(channel, ring)
    assert len(rings) == 2
    gap = (int(rings[1].headers["Event-Date-Timestamp"]) -
           int(rings[0].headers["Event-Date-Timestamp"])) / 1e6
    assert 1.9 <= gap <= 3.0
    assert channel.hangup_cause == "NORMAL_CLEARING"
    a.bus.wait("queue_214", method="nway_queue_remove", uuid=channel.uuid)
    assert a.queued("214") == []
    assert a.cc.get("2141").call_state == "busy"


def test_long_wait_never_hangs_up_when_repeats_is_zero(a: Acd) -> None:
    """busy_ring_repeats 0: "the customer does not hang up, we do not hang up" — busy rings
    go on, the caller stays queued until an agent is free."""
    ring = "/sounds/busy215.wav"
    a.switch.media_durations[ring] = 100
    restore = group_defaults(a, busy_ring_interval_seconds=2)
    try:
        a.group("215", mode=0, busy_ring=ring, busy_ring_repeats=0)
        a.agents("215", "2151", ready=False)
        channel = a.call("215", "13900001501")
        wait_until(lambda: len(a.playbacks(channel, ring)) >= 3, 10, "three busy rings")
    finally:
        restore()
    assert channel.up
    assert a.queued("215") == [channel.uuid]
    a.ready("2151")
    assert a.answered_by(channel) == "2151"
    a.gone(channel)


def test_agent_freed_during_the_last_busy_ring_gets_the_call(a: Acd) -> None:
    """An agent who turns ready while the last busy ring plays is connected to the caller;
    the long-wait policy does not hang up a call that has an agent."""
    ring = "/sounds/busy216.wav"
    a.switch.media_durations[ring] = 2000
    restore = group_defaults(a, busy_ring_interval_seconds=2)
    try:
        a.group("216", mode=0, busy_ring=ring, busy_ring_repeats=1)
        a.agents("216", "2161", ready=False)
        channel = a.call("216", "13900001601")
        wait_until(lambda: f"media:{ring}" in a.hears(channel), 4, "the busy ring")
        a.ready("2161")
        assert a.answered_by(channel) == "2161"
    finally:
        restore()
    a.gone(channel)
    assert channel.hangup_cause == "NORMAL_CLEARING"


# ------------------------------------------------------------------------ dispatch ----------
def test_set_ready_connects_a_waiting_caller_at_once(a: Acd) -> None:
    """Event-driven dispatch: the caller is in a 3 s hold-music segment when the agent is
    made ready; the agent's phone rings well within that segment (uuid_break wakes the
    caller)."""
    a.group("217", mode=0)
    a.agents("217", "2171", ready=False)
    channel = a.call("217", "13900001701")
    wait_until(lambda: "media:local_stream://moh" in a.hears(channel), 3, "hold music")
    wait_until(lambda: channel.uuid in a.queued("217"), 3, "the caller queued")
    started = time.monotonic()
    a.ready("2171")
    callout = a.bus.wait("event_agent", 3, uuid=channel.uuid, method="callout")
    assert callout.at - started < 0.5
    assert a.answered_by(channel) == "2171"
    assert elapsed(started) < 1.0
    a.gone(channel)


def test_wrapup_end_connects_a_waiting_caller_at_once(a: Acd) -> None:
    """Event-driven dispatch from the wrap-up timer: the caller waiting behind the agent's
    call is offered the agent as soon as its wrap-up is over."""
    a.group("218", mode=0, wrapup_seconds=1)
    a.agents("218", "2181")
    first = a.call("218", "13900001801", hangup_after_bridge_ms=300)
    assert a.answered_by(first) == "2181"
    second = a.call("218", "13900001802")
    wait_until(lambda: second.uuid in a.queued("218"), 3, "second caller queued")
    a.gone(first)
    a.wait_state("2181", "typing")
    until_s = a.cc.get("2181").wrapup_until / 1000
    callout = a.bus.wait("event_agent", 4, uuid=second.uuid, method="callout")
    late = callout.at - time.monotonic() + time.time() - until_s
    assert -0.05 <= late < 0.6, late
    assert a.answered_by(second) == "2181"
    a.gone(second)


# ------------------------------------------------------------------------ pub/sub -----------
def test_published_messages_have_the_seed_shapes(a: Acd) -> None:
    """One call through the whole life cycle — an agent lets it ring out (and turns busy,
    max_no_answer 1), the caller waits, another agent is made ready and answers — published
    as the seed's JSON: callout/noanswer/answered/hangup on event_*, nway_queue_add/remove on
    queue_<group>, status changes on agent_<ext>, EVENT_* call events on event_call."""
    a.group("219", mode=0, max_no_answer=1)
    a.agents("219", "2191", answer_after_ms=None)
    a.agents("219", "2192", ready=False)
    channel = a.call("219", "13900001901")
    wait_until(lambda: channel.uuid in a.queued("219"), 4, "the caller queued")
    a.ready("2192")
    assert a.answered_by(channel) == "2192"
    a.gone(channel)
    a.wait_state("2192", "ready")
    a.bus.wait("event_agent", uuid=channel.uuid, method="hangup")

    events = a.bus.agent_events(channel.uuid)
    assert [(m.data["method"], m.data["extension"]) for m in events] == [
        ("callout", "2191"), ("noanswer", "2191"), ("callout", "2192"), ("answered", "2192"),
        ("hangup", "2192")]
    callin_times = {m.data["callin_time"] for m in events}
    assert len(callin_times) == 1
    for m in events:
        assert m.channel == "event_agent"
        assert list(m.data) == AGENT_EVENT_KEYS
        assert m.data["type"] == "event"
        assert m.data["cti_ip"] == "127.0.0.1"
        assert (m.data["number"], m.data["group"], m.data["level"]) == \
            ("13900001901", "219", "normal")
        assert m.raw == json.dumps(m.data, ensure_ascii=False, separators=(",", ":"))

    assert re.match(TIME_RE, callin_times.pop())

    queue = a.bus.find("queue_219", uuid=channel.uuid)
    assert [m.data["method"] for m in queue] == ["nway_queue_add", "nway_queue_remove"]
    for m in queue:
        assert list(m.data) == QUEUE_EVENT_KEYS
        assert (m.data["type"], m.data["number"], m.data["group"], m.data["level"]) == \
            ("queue", "13900001901", "219", "normal")
        assert m.data["callin_time"] == events[0].data["callin_time"]

    for ext, expected in (("2191", ["ring", "no_answer", "busy"]),
                          ("2192", ["ready", "ring", "talking", "ready"])):
        a.bus.statuses_end(ext, expected)
        for m in a.bus.find(f"agent_{ext}"):
            assert list(m.data) == ["type", "number", "status", "time"]
            assert (m.data["type"], m.data["number"]) == ("agent", ext)
            assert re.match(TIME_RE, m.data["time"])

    a.bus.wait("event_call", aleg_uuid=channel.uuid, event_name="EVENT_HANGUP")
    calls = a.bus.find("event_call", aleg_uuid=channel.uuid)
    names = {m.data["event_name"] for m in calls}
    assert {"EVENT_CALLIN", "EVENT_ANSWER", "EVENT_HANGUP"} <= names, names
    assert list(calls[0].data)[:4] == ["type", "event_name", "aleg_uuid", "bleg_uuid"]


def test_an_agent_refusing_at_once_is_not_rung_in_a_tight_loop(a: Acd) -> None:
    """max_no_answer 0 (never busy) and a phone answering 486 at once: when only agents who
    failed the call are free, the call hears hold music for a moment before ringing them
    again, instead of ringing the phone as fast as it refuses."""
    restore = group_defaults(a, max_no_answer=0)
    try:
        a.group("223", mode=0)
        a.agents("223", "2231", fail_with="USER_BUSY")
        channel = a.call("223", "13900002301", abandon_after_ms=2500)
        a.gone(channel, 5)
    finally:
        restore()
    callouts = a.callouts(channel)
    assert 2 <= len(callouts) <= 5, len(callouts)
    assert a.cc.get("2231").call_state == "ready"


def test_the_caller_is_hung_up_before_the_post_call_bookkeeping(
        a: Acd, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent ends the call: the caller's channel is down by the time the handler does its
    bookkeeping (memory, the hangup event, wrap-up, a waiting call offered, the CDR), which
    on a loaded switch waits for Redis and the GIL and must not hold a finished call's
    channel up; the bookkeeping still happens."""
    caller_up_at_bookkeeping: list[bool] = []
    finished = acd.Router.finished

    def spy(router: acd.Router, extension: str) -> None:
        caller_up_at_bookkeeping.append(bool(router.session.ready()))
        finished(router, extension)

    monkeypatch.setattr(acd.Router, "finished", spy)
    a.group("224", mode=0, wrapup_seconds=1)
    a.agents("224", "2241", hangup_after_ms=TALK)
    channel = a.call("224", "13900002401", hangup_after_bridge_ms=None)
    assert a.answered_by(channel) == "2241"
    a.gone(channel)
    assert channel.hangup_cause == "NORMAL_CLEARING"
    a.wait_state("2241", "typing")
    assert caller_up_at_bookkeeping == [False]
    a.bus.wait("event_agent", uuid=channel.uuid, method="hangup")


def test_a_waiting_caller_asks_redis_nothing_until_its_agent_wakes_it(
        a: Acd, monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiting caller's handler blocks in its hold music: it looks in Redis once when it
    starts waiting, then not at all until the node's runtime breaks the music naming the agent
    that reserved itself (no hold-music segments every few seconds); the agent named is the
    one rung."""
    looks: list[str] = []
    offer_or_waiting = acd.CallQueue.offer_or_waiting

    def spy(queue: Any, group: str, uuid: str) -> tuple[str | None, bool]:
        looks.append(uuid)
        return offer_or_waiting(queue, group, uuid)

    monkeypatch.setattr(acd.CallQueue, "offer_or_waiting", spy)
    a.group("225", mode=0)
    a.agents("225", "2251", ready=False)
    channel = a.call("225", "13900002501")
    wait_until(lambda: channel.uuid in a.queued("225"), 3, "the caller queued")
    wait_until(lambda: a.playbacks(channel, "local_stream://moh"), 3, "hold music")
    time.sleep(3.5)  # longer than the hold-music segments of before (3 s)
    assert looks.count(channel.uuid) == 1
    assert len(a.playbacks(channel, "local_stream://moh")) == 1
    a.ready("2251")
    assert a.answered_by(channel) == "2251"
    a.gone(channel)
    assert looks.count(channel.uuid) == 1  # woken with its agent: no look in Redis


def test_a_wake_up_before_the_hold_music_starts_is_not_lost(
        a: Acd, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent reserves itself for the caller while its handler is between looking in
    Redis and starting the hold music: the runtime's break finds no music to stop, but the
    music's PLAYBACK_START still names the agent, and the runtime breaks it then: the caller
    is connected at once, not after a hold-music segment."""
    hold_music = acd.Router.hold_music
    woken: list[str] = []

    def late_music(router: acd.Router, music: str, seconds: int) -> None:
        if not woken:
            woken.append(router.call.uuid)
            acd.set_ready(router.ctx, DOMAIN, "2261")
            wait_until(lambda: router.session.getVariable("fsapps_acd_offer") == "2261", 3,
                       "the runtime named the agent on the channel")
        hold_music(router, music, seconds)

    monkeypatch.setattr(acd.Router, "hold_music", late_music)
    a.group("226", mode=0)
    a.agents("226", "2261", ready=False)
    channel = a.call("226", "13900002601")
    wait_until(lambda: woken, 3, "the caller about to hear hold music")
    started = time.monotonic()
    assert a.answered_by(channel, 3) == "2261"
    assert elapsed(started) < 2.0
    a.gone(channel)


def test_without_a_busy_ring_the_hold_music_is_not_cut_by_its_interval(a: Acd) -> None:
    """busy_ring_interval_seconds only times busy rings: a group without a busy ring plays its
    hold music on, past the interval, in one piece (it was cut into 2 s pieces from then on,
    each a look in Redis)."""
    restore = group_defaults(a, busy_ring_interval_seconds=2)
    try:
        a.group("227", mode=0)
        a.agents("227", "2271", ready=False)
        channel = a.call("227", "13900002701")
        wait_until(lambda: a.playbacks(channel, "local_stream://moh"), 3, "hold music")
        time.sleep(4.5)
        assert len(a.playbacks(channel, "local_stream://moh")) == 1
        a.ready("2271")
        assert a.answered_by(channel) == "2271"
        a.gone(channel)
    finally:
        restore()


def test_the_node_name_is_asked_of_the_switch_once_per_switch_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without node_name in the settings the node is the switch's ``switchname``, asked once
    per switch run (its core_uuid) - not on every call: the api holds the GIL. A switch run
    again (a new core_uuid) is asked again."""
    asked: list[str] = []
    core = ["core-1"]

    class Api:
        def executeString(self, command: str) -> str:  # noqa: N802 (the switch's API)
            asked.append(command)
            return "fs-a"

    fake = SimpleNamespace(API=Api, getGlobalVariable=lambda name: core[0]
                           if name == "core_uuid" else None)
    monkeypatch.setitem(sys.modules, "freeswitch", fake)
    ctx = SimpleNamespace(settings=SimpleNamespace(node_name=""))
    assert [acd.node_name(ctx) for _ in range(3)] == ["fs-a"] * 3  # type: ignore[arg-type]
    assert asked == ["switchname"]
    core[0] = "core-2"
    assert acd.node_name(ctx) == "fs-a"  # type: ignore[arg-type]
    assert asked == ["switchname", "switchname"]
