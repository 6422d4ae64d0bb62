"""Waiting callers in a real FreeSWITCH (issue 18 items 3 and 4): announcements spoken by
mod_flite (``speak``) and mod_say_en (``say``) between stretches of hold music, broken at once
when an agent turns free; the max wait overflowing into another group; the exit key taking the
caller to a dialplan target. Trunk callers and agent phones are SIPp, as in test_acd.py.

SIPp's callers send no DTMF here (that needs RTP telephone-events from a pcap), so the exit-key
test has the switch itself queue the key as received on the caller's channel
(``uuid_recv_dtmf``): the playback's input callback sees it as it sees a key from the line."""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from switch.conftest import DOMAIN, Stack, agent_state, api, wait_for
from switch.test_acd import agent, group_key
from tools.esl import Esl
from tools.realswitch import ESL_PASSWORD, RealSwitch

_groups = itertools.count(4300)


@pytest.fixture
def groups(fs1: RealSwitch, phones: Stack) -> Iterator[list[str]]:
    """Three fresh groups (mode 0)."""
    numbers = [str(next(_groups)) for _ in range(3)]
    for number in numbers:
        api(fs1, f"nway_add_group {number} 0")
    yield numbers
    for number in numbers:
        for ext in phones.redis.zrange(group_key(number, "members"), 0, -1):
            fs1.api(f"python fsapps.api nway_logout {ext}")


@pytest.fixture(scope="module")
def events(fs1: RealSwitch) -> Iterator[Esl]:
    esl = Esl(fs1.esl_port, ESL_PASSWORD)
    esl.subscribe("CHANNEL_EXECUTE CHANNEL_EXECUTE_COMPLETE CHANNEL_BRIDGE")
    yield esl
    esl.close()


def queued_uuid(st: Stack, group: str) -> str:
    return str(wait_for(lambda: (st.redis.zrange(group_key(group, "queue"), 0, -1) or [""])[0],
                        15, f"a caller queued in {group}"))


def app_event(events: Esl, uuid: str, app: str, name: str = "CHANNEL_EXECUTE",
              after: float = 0.0, timeout: float = 20.0) -> dict[str, str]:
    """The first ``name`` event of ``app`` on the channel fired after ``after`` (epoch s)."""
    return events.wait_event(
        lambda e: e.get("Event-Name") == name and e.get("Unique-ID") == uuid
        and e.get("Application") == app
        and int(e.get("Event-Date-Timestamp", "0")) / 1e6 > after, timeout,
        f"{name} {app} on {uuid}")


def at(event: dict[str, str]) -> float:
    return int(event["Event-Date-Timestamp"]) / 1e6


def test_speak_and_say_announcements_between_hold_music_broken_by_a_free_agent(
        fs1: RealSwitch, phones: Stack, groups: list[str], events: Esl) -> None:
    """Every 2 s of hold music the caller hears its place: mod_flite speaks the text, mod_say_en
    says the number (the build has no sound files: say runs and finds none). An agent turning
    ready while the announcement is spoken stops it at once (the runtime's uuid_break) and is
    rung: the caller is connected (its CDR names the agent)."""
    group = groups[0]
    text = "You are caller number {position}. Please stay on the line, an agent will be with you."
    reply = api(fs1, f"nway_set_group_announce {group} 2 speak flite|kal|{text}; "
                     "say en number pronounced {position}")
    assert "announces every 2 s" in reply
    agent(fs1, phones, "4301", group)
    api(fs1, "nway_busy 4301")
    # the caller hangs up this long after the ACD answered it: ~10 s waiting, then talking
    call = phones.caller(fs1, f"7{group}", "13800430001", talk_ms=16000)
    uuid = queued_uuid(phones, group)
    spoken = text.replace("{position}", "1")
    first = app_event(events, uuid, "speak")
    assert first["Application-Data"] == f"flite|kal|{spoken}"
    said = app_event(events, uuid, "say")
    assert said["Application-Data"] == "en number pronounced 1"
    said_end = app_event(events, uuid, "say", "CHANNEL_EXECUTE_COMPLETE")
    music = app_event(events, uuid, "playback", after=at(said_end) - 0.001)
    assert music["Application-Data"] == "local_stream://moh"
    second = app_event(events, uuid, "speak", after=at(first) + 0.01)
    gap = at(second) - at(said_end)
    assert 1.5 <= gap <= 4.0, f"{gap:.2f} s of hold music between the announcements"
    # mid-announcement: the text takes seconds to speak; the agent is free 0.5 s into it
    time.sleep(0.5)
    readied = time.time()
    api(fs1, "nway_ready 4301")
    stopped = app_event(events, uuid, "speak", "CHANNEL_EXECUTE_COMPLETE", after=at(second))
    assert at(stopped) - readied < 1.0, f"speak went on {at(stopped) - readied:.2f} s"
    bridged = events.wait_event(lambda e: e.get("Event-Name") == "CHANNEL_BRIDGE"
                                and uuid in (e.get("Unique-ID"), e.get("Other-Leg-Unique-ID")),
                                10, "the caller bridged to the agent")
    assert bridged["Event-Date-Timestamp"]
    assert call.wait(40) == 0, call.errors()
    row = phones.cdr("uuid = %s", uuid)
    assert row["destination_number"] == "4301"
    wait_for(lambda: agent_state(phones, "4301").get("call_state") in ("typing", "ready"), 15,
             "agent 4301 out of the call")


def test_max_wait_overflows_into_another_group(fs1: RealSwitch, phones: Stack,
                                               groups: list[str]) -> None:
    """The caller waits 3 s in a group whose agent is busy, leaves its queue and is answered
    in the overflow group: one CDR, of the group the caller called, naming the agent of the
    overflow group (its attempt marked transferred, as for a caller transferred to another
    queue); nothing left queued or reserved."""
    first, second = groups[0], groups[1]
    api(fs1, f"nway_set_group_waiting {first} 3 group:{second}")
    agent(fs1, phones, "4311", first)
    api(fs1, "nway_busy 4311")
    agent(fs1, phones, "4312", second)
    started = time.monotonic()
    # (the caller hangs up this long after the ACD answered it: 3 s waiting, then talking)
    call = phones.caller(fs1, f"7{first}", "13800431001", talk_ms=7000)
    uuid = queued_uuid(phones, first)
    assert call.wait(30) == 0, call.errors()
    assert time.monotonic() - started >= 3.0
    row = phones.cdr("uuid = %s", uuid)
    assert (row["group_number"], row["destination_number"], row["flag"]) == \
        (first, "4312", "接通")
    assert phones.attempts(uuid, "extension, result, transferred") == \
        [("4312", "answered", True)]
    assert phones.redis.zcard(group_key(first, "queue")) == 0
    assert agent_state(phones, "4311").get("call_state") == "busy"
    assert not phones.redis.hget(f"fsapps:{{{DOMAIN}}}:offers", uuid)


def test_the_exit_key_transfers_the_caller_to_the_dialplan_target(
        fs1: RealSwitch, phones: Stack, groups: list[str], events: Esl) -> None:
    """Exit key 1 to dialplan:7<group>: the key stops the hold music (playback_terminators),
    the caller leaves the queue and the dialplan routes it into the other group."""
    first, other = groups[0], groups[2]
    api(fs1, f"nway_set_group_waiting {first} 0 hangup 1 dialplan:7{other}")
    agent(fs1, phones, "4321", first)
    api(fs1, "nway_busy 4321")
    agent(fs1, phones, "4322", other)
    call = phones.caller(fs1, f"7{first}", "13800432001", talk_ms=5000)
    uuid = queued_uuid(phones, first)
    app_event(events, uuid, "playback")
    time.sleep(0.3)
    assert fs1.api(f"uuid_recv_dtmf {uuid} 1").startswith("+OK")
    moved = app_event(events, uuid, "transfer")
    assert moved["Application-Data"] == f"7{other}"
    assert call.wait(30) == 0, call.errors()
    row = phones.cdr("uuid = %s", uuid)
    assert (row["group_number"], row["destination_number"]) == (first, "4322")
    assert phones.redis.zcard(group_key(first, "queue")) == 0


def test_max_wait_overflows_to_an_extension_rung_as_nway_bridge_does(
        fs1: RealSwitch, phones: Stack, groups: list[str]) -> None:
    """Max wait 2 s, overflow to extension:4332: the caller is put through to that agent's
    phone inside the same handler (nway_bridge's direct call: the agent's state follows the
    call), and its CDR names the agent."""
    first, other = groups[0], groups[1]
    api(fs1, f"nway_set_group_waiting {first} 2 extension:4332")
    agent(fs1, phones, "4331", first)
    api(fs1, "nway_busy 4331")
    agent(fs1, phones, "4332", other)
    call = phones.caller(fs1, f"7{first}", "13800433001", talk_ms=6000)
    uuid = queued_uuid(phones, first)
    wait_for(lambda: agent_state(phones, "4332").get("call_state") == "talking", 15,
             "agent 4332 talking")
    assert call.wait(30) == 0, call.errors()
    row = phones.cdr("uuid = %s", uuid)
    assert (row["group_number"], row["destination_number"]) == (first, "4332")
    wait_for(lambda: agent_state(phones, "4332").get("call_state") in ("typing", "ready"), 15,
             "agent 4332 out of the call")
    assert phones.redis.zcard(group_key(first, "queue")) == 0


def schedulings(sw: RealSwitch) -> Counter[tuple[int, int]]:
    """The switch's threads by (policy, realtime priority), from /proc (fields 41 and 40 of
    a thread's stat, after its name)."""
    assert sw.proc is not None
    seen: Counter[tuple[int, int]] = Counter()
    for stat in Path(f"/proc/{sw.proc.pid}/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        seen[(int(fields[38]), int(fields[37]))] += 1
    return seen


def thread_names(sw: RealSwitch) -> Counter[str]:
    """The switch's threads by the name the system knows them by."""
    assert sw.proc is not None
    names: Counter[str] = Counter()
    for comm in Path(f"/proc/{sw.proc.pid}/task").glob("*/comm"):
        try:
            names[comm.read_text().strip()] += 1
        except OSError:  # the thread ended meanwhile
            continue
    return names


def test_the_runtimes_threads_are_named_for_top_and_ps(fs1: RealSwitch) -> None:
    """`top -H` shows which of fsapps' threads uses the switch's CPU: each of the runtime's
    five carries its own name among the switch's threads, all named "freeswitch". A thread
    takes its creator's name: those fsapps starts from them (the cti_bridge senders, started
    by the first notification - the events thread sends a B leg's ring) have their own."""
    runtime = {"fsapps-events", "fsapps-cmd", "fsapps-cdr", "fsapps-legs", "fsapps-reconcil"}
    names = thread_names(fs1)
    assert {name: names[name] for name in runtime} == dict.fromkeys(runtime, 1)
    assert {name for name in names if name.startswith("fsapps-")} - runtime <= {
        "fsapps-notify", "fsapps-nats", "fsapps-amqp"}


def test_python_runs_ahead_of_the_switch_and_hold_music_at_its_priority(
        fs1: RealSwitch, phones: Stack, groups: list[str], events: Esl) -> None:
    """FreeSWITCH runs every thread realtime (SCHED_FIFO 1): the runtime's five threads run
    their Python one step above (fsapps.switch.priority), and a waiting caller's handler,
    whose hold music is media work, plays it at the switch's own priority - a thread above
    the media would take the media's CPU. After the call its thread is the switch's again."""
    assert fs1.proc is not None
    policy, priority = os.sched_getscheduler(fs1.proc.pid), \
        os.sched_getparam(fs1.proc.pid).sched_priority
    assert policy == os.SCHED_FIFO
    ahead = (policy, priority + 1)
    before = schedulings(fs1)[ahead]
    assert before >= 5  # the event loop, commands, CDRs, leg ends, reconciler
    group = groups[0]
    agent(fs1, phones, "4351", group)
    api(fs1, "nway_busy 4351")
    call = phones.caller(fs1, f"7{group}", "13800435101", talk_ms=3000)
    uuid = queued_uuid(phones, group)
    app_event(events, uuid, "playback")
    time.sleep(0.5)
    assert schedulings(fs1)[ahead] == before
    assert call.wait(30) == 0, call.errors()
    wait_for(lambda: schedulings(fs1)[ahead] == before, 10, "the handler's thread given back")
