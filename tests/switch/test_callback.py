"""Callbacks instead of waiting (issue 18 item 5) in a real FreeSWITCH: a trunk caller waiting
in a group whose exit key leads to ``callback`` presses it (queued as received with
``uuid_recv_dtmf``, as in test_waiting.py: SIPp sends no RTP events), hears mod_flite's
confirmation and is hung up; its callback keeps its place. When the agent (a SIPp phone) turns
ready the node's runtime rings it (``bgapi originate ... &python(fsapps.nwaycallback)``), and
once it answers the handler calls the caller back through gateway ``test``, whose far end is a
SIPp UAS on loopback (the stack's trunk port), and bridges them. Not answered: the agent is
ready again, the attempt counted, and the callback placed again after the retry delay; the
CDR names every attempt."""

from __future__ import annotations

import json
import time

from fsapps.switch.runtime import RECONCILE_MS
from switch.conftest import (
    DOMAIN,
    PASSWORD,
    Stack,
    agent_state,
    api,
    new_group_number,
    wait_for,
)
from switch.test_acd import agent, group_key
from tools import sipp
from tools.realswitch import RealSwitch

CALLBACKS = f"fsapps:{{{DOMAIN}}}:callbacks"
OFFERS = f"fsapps:{{{DOMAIN}}}:offers"



def configure(fs1: RealSwitch, st: Stack, group: str, callback: str) -> None:
    """``nway_set_group_callback <group> <callback>`` and exit key 1 to ``callback``; no
    wrap-up after a call (the default is 300 s; set in the working set after the commands,
    which write the whole group): the agent is ready at once."""
    api(fs1, f"nway_set_group_callback {group} {callback}")
    api(fs1, f"nway_set_group_waiting {group} 0 hangup 1 callback")
    st.redis.hset(group_key(group), "wrapup_seconds", "0")


def ask_callback(fs1: RealSwitch, st: Stack, group: str, number: str) -> dict[str, object]:
    """A trunk caller from ``number`` waits in ``group``, presses 1, hears the confirmation and
    is hung up; returns its callback's record once queued."""
    before = set(st.redis.zrange(group_key(group, "queue"), 0, -1))
    call = st.caller(fs1, f"7{group}", number, talk_ms=60_000)
    uuid = str(wait_for(lambda: next(iter(set(st.redis.zrange(group_key(group, "queue"), 0, -1))
                                          - before), ""), 15, f"{number} queued in {group}"))
    wait_for(lambda: "playback" in (fs1.api(f"uuid_getvar {uuid} current_application")
                                    or ""), 10, "the hold music playing")
    assert fs1.api(f"uuid_recv_dtmf {uuid} 1").startswith("+OK")
    assert call.wait(30) == 0, call.errors()  # hung up by the switch after the confirmation

    def queued() -> dict[str, object] | None:
        for raw in st.redis.hvals(CALLBACKS):
            record = json.loads(raw)
            if record["number"] == number:
                return record  # type: ignore[no-any-return]
        return None
    record = wait_for(queued, 10, f"{number}'s callback")
    assert record["id"] in st.redis.zrange(group_key(group, "queue"), 0, -1)  # type: ignore[index]
    assert uuid not in st.redis.zrange(group_key(group, "queue"), 0, -1)
    row = st.cdr("uuid = %s", uuid)
    assert row["flag"] == "排队回呼"
    return record  # type: ignore[return-value]


def hanging_up_agent(fs1: RealSwitch, st: Stack, ext: str, group: str, after_ms: int) -> None:
    """:func:`switch.test_acd.agent` whose phone hangs up each call ``after_ms`` after
    answering."""
    st.extension(ext)
    api(fs1, f"nway_add_ext {ext}")
    uas = sipp.phone(ring_ms=300, hangup_after_ms=after_ms)
    st.sipps.append(uas)
    reg = sipp.register(fs1.internal_port, ext, PASSWORD, DOMAIN, uas.port)
    st.sipps.append(reg)
    assert reg.wait(20) == 0, reg.errors() or reg.messages()
    wait_for(lambda: st.redis.hget("registrations", ext), 10, f"registration of {ext}")
    api(fs1, f"nway_login {ext} {group}")


def settled(st: Stack, ext: str) -> None:
    try:
        wait_for(lambda: agent_state(st, ext).get("call_state") == "ready"
                 and not agent_state(st, ext).get("offer_uuid"), 20, f"agent {ext} ready, free")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {agent_state(st, ext)}") from None


def test_a_callback_rings_the_agent_then_calls_the_caller_back_through_the_gateway(
        fs1: RealSwitch, phones: Stack, group: str) -> None:
    configure(fs1, phones, group, "test 2 1")
    agent(fs1, phones, "4401", group)
    api(fs1, "nway_busy 4401")
    caller = "13800440001"
    record = ask_callback(fs1, phones, group, caller)
    phones.trunk(ring_ms=300, hangup_after_ms=1500)
    api(fs1, "nway_ready 4401")
    row = phones.cdr("uuid = %s", record["id"])
    assert (row["flag"], row["a_caller_id_number"], row["destination_number"],
            row["group_number"]) == ("回呼接通", caller, "4401", group)
    assert phones.attempts(record["id"]) == [("4401", "answered")]
    settled(phones, "4401")
    assert not phones.redis.hget(CALLBACKS, str(record["id"]))
    assert phones.redis.zcard(group_key(group, "queue")) == 0
    assert not phones.redis.hget(OFFERS, str(record["id"]))


def test_a_callback_not_answered_is_retried_then_connected(
        fs1: RealSwitch, phones: Stack, group: str) -> None:
    """The first call back rings out (the far end never answers, the group's 2 s ring
    timeout): the agent is ready again at once, the attempt counted; 1 s later the callback
    is placed again, the far end answers this time, and the CDR names both attempts."""
    configure(fs1, phones, group, "test 3 1")
    # (the ring timeout, as test_acd.py sets it: in the group's working set)
    phones.redis.hset(group_key(group), "group_callout_timeout", "3")
    agent(fs1, phones, "4411", group)
    api(fs1, "nway_busy 4411")
    caller = "13800441001"
    record = ask_callback(fs1, phones, group, caller)
    silent = phones.trunk(answer=False)
    api(fs1, "nway_ready 4411")

    def attempts() -> int:
        raw = phones.redis.hget(CALLBACKS, str(record["id"]))
        return len(json.loads(raw)["attempts"]) if raw else -1
    wait_for(lambda: attempts() == 1, 40, "the first attempt counted")
    silent.stop()
    phones.sipps.remove(silent)
    phones.trunk(ring_ms=300, hangup_after_ms=1500)
    row = phones.cdr("uuid = %s", record["id"])
    assert row["flag"] == "回呼接通"
    assert phones.attempts(record["id"]) == [("4411", "no_answer"), ("4411", "answered")]
    settled(phones, "4411")


def test_max_attempts_exhausted_frees_the_agent_and_the_cdr_says_so(
        fs1: RealSwitch, phones: Stack, group: str) -> None:
    configure(fs1, phones, group, "test 2 0")
    agent(fs1, phones, "4421", group)
    api(fs1, "nway_busy 4421")
    caller = "13800442001"
    record = ask_callback(fs1, phones, group, caller)
    phones.trunk(busy=True)
    api(fs1, "nway_ready 4421")
    row = phones.cdr("uuid = %s", record["id"])
    assert row["flag"] == "回呼失败"
    assert phones.attempts(record["id"]) == [("4421", "busy"), ("4421", "busy")]
    settled(phones, "4421")
    assert not phones.redis.hget(CALLBACKS, str(record["id"]))
    assert phones.redis.zcard(group_key(group, "queue")) == 0


def test_a_callback_waits_its_turn_between_the_callers_before_and_after_it(
        fs1: RealSwitch, phones: Stack, group: str) -> None:
    """A caller waiting on the line, then one asking for a callback, then another waiting:
    one agent (its phone hangs up each call after 2 s) serves them in that order."""
    configure(fs1, phones, group, "test 2 1")
    hanging_up_agent(fs1, phones, "4431", group, 2000)
    api(fs1, "nway_busy 4431")
    first = phones.caller(fs1, f"7{group}", "13800443001", talk_ms=60_000)
    wait_for(lambda: phones.redis.zcard(group_key(group, "queue")) == 1, 15, "the first queued")
    callback = ask_callback(fs1, phones, group, "13800443002")
    third = phones.caller(fs1, f"7{group}", "13800443003", talk_ms=60_000)
    wait_for(lambda: phones.redis.zcard(group_key(group, "queue")) == 3, 15, "the third queued")
    assert phones.redis.zrange(group_key(group, "queue"), 1, 1) == [callback["id"]]
    phones.trunk(ring_ms=300)
    api(fs1, "nway_ready 4431")
    assert first.wait(40) == 0, first.errors()
    assert third.wait(60) == 0, third.errors()
    rows = [phones.cdr("a_caller_id_number = %s AND flag = %s", number, "接通")
            for number in ("13800443001", "13800443003")]
    called_back = phones.cdr("uuid = %s", callback["id"])
    assert called_back["flag"] == "回呼接通"
    assert rows[0]["answer_stamp"] < called_back["answer_stamp"] < rows[1]["answer_stamp"]
    settled(phones, "4431")


def test_an_agent_not_answering_the_callback_is_released_and_another_takes_it(
        fs1: RealSwitch, phones: Stack, group: str) -> None:
    """The first agent's phone never answers (the group's 3 s ring timeout): a missed offer -
    the agent ready again, reserved for nothing; the caller was not called (no attempt); the
    callback, back in its place, goes to the second agent, who answers, and the caller is
    called back."""
    configure(fs1, phones, group, "test 2 1")
    phones.redis.hset(group_key(group), "group_callout_timeout", "3")
    agent(fs1, phones, "4441", group, answer=False)
    agent(fs1, phones, "4442", group)
    api(fs1, "nway_busy 4441")
    api(fs1, "nway_busy 4442")
    record = ask_callback(fs1, phones, group, "13800444001")
    phones.trunk(ring_ms=300, hangup_after_ms=1500)
    api(fs1, "nway_ready 4441")
    wait_for(lambda: agent_state(phones, "4441").get("offer_uuid") == record["id"], 10,
             "4441 rung for the callback")
    api(fs1, "nway_ready 4442")
    row = phones.cdr("uuid = %s", record["id"])
    assert row["flag"] == "回呼接通"
    assert phones.attempts(record["id"]) == [("4442", "answered")]
    settled(phones, "4441")
    settled(phones, "4442")


def test_a_queued_callback_survives_a_crash_of_its_node(phones: Stack) -> None:
    """The callback is kept in Redis: its node crashes (kill -9) with it queued, comes back,
    and places it when the agent turns ready - the caller is called back once."""
    from switch.test_lifecycle import new_node

    sw = new_node(phones).start()
    try:
        group = new_group_number()
        api(sw, f"nway_add_group {group} 0")
        configure(sw, phones, group, "test 2 1")
        agent(sw, phones, "4451", group)
        api(sw, "nway_busy 4451")
        record = ask_callback(sw, phones, group, "13800445001")
        sw.kill()
        sw.start()
        # the reconciler's first passes after the restart drop the node's callers whose
        # channels are gone - never a callback
        restarted = time.monotonic()
        wait_for(lambda: time.monotonic() - restarted > 2 * RECONCILE_MS / 1000 + 0.5, 10,
                 "two reconciler passes")
        phones.phone(sw, "4451")  # its phone registers again with the restarted switch
        assert phones.redis.zrange(group_key(group, "queue"), 0, -1) == [record["id"]]
        phones.trunk(ring_ms=300, hangup_after_ms=1500)
        api(sw, "nway_ready 4451")
        row = phones.cdr("uuid = %s", record["id"])
        assert row["flag"] == "回呼接通"
        assert phones.attempts(record["id"]) == [("4451", "answered")]
        settled(phones, "4451")
        api(sw, "nway_logout 4451")
    finally:
        sw.stop()
