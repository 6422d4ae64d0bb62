"""Group strategies in a real FreeSWITCH (issue 18 item 1): ring_all rings every free member
with one bridge (',' legs), the first to answer wins and the others' INVITEs are cancelled,
and none of them stays reserved; longest_idle picks the agent whose last call ended longest
ago. Trunk callers and agent phones are SIPp, as in test_acd.py."""

from __future__ import annotations

import time

from switch.conftest import DOMAIN, Stack, agent_free, agent_state, api, wait_for
from switch.test_acd import agent, cdr_row, group_key
from tools.realswitch import RealSwitch


def test_ring_all_first_answer_wins_and_the_others_are_cancelled_and_freed(
        fs1: RealSwitch, phones: Stack, group: str) -> None:
    api(fs1, f"nway_set_group_strategy {group} ring_all")
    phones.redis.hset(group_key(group), mapping={"group_callout_timeout": "10",
                                                 "wrapup_seconds": "0"})
    agent(fs1, phones, "3801", group, ring_ms=4000)
    agent(fs1, phones, "3802", group, ring_ms=500)
    agent(fs1, phones, "3803", group, answer=False)
    call = phones.caller(fs1, f"7{group}", "13800380001", talk_ms=2000)
    assert call.wait(40) == 0, call.errors()
    row = cdr_row(phones, "13800380001")
    assert row["destination_number"] == "3802"
    attempts = phones.attempts(row["uuid"], "extension, result, hangup_cause")
    assert sorted((e, r) for e, r, _ in attempts) == \
        [("3801", "failed"), ("3802", "answered"), ("3803", "failed")], attempts
    assert {c for e, _, c in attempts if e != "3802"} == {"LOSE_RACE"}, attempts
    # every agent ends ready, reserved for nothing, no miss counted against the losers
    for ext in ("3801", "3802", "3803"):
        wait_for(lambda e=ext: agent_free(phones, e), 15, f"agent {ext} free")
    for ext in ("3801", "3803"):
        assert agent_state(phones, ext).get("no_answer_count") in ("0", None)
    assert not phones.redis.hgetall(f"fsapps:{{{DOMAIN}}}:offers")


def test_longest_idle_picks_the_agent_idle_longest(fs1: RealSwitch, phones: Stack,
                                                  group: str) -> None:
    api(fs1, f"nway_set_group_strategy {group} longest_idle")
    phones.redis.hset(group_key(group), "wrapup_seconds", "0")
    for ext in ("3811", "3812", "3813"):
        agent(fs1, phones, ext, group)
    now = int(time.time() * 1000)
    for ext, ago in (("3811", 20_000), ("3812", 10_000), ("3813", 30_000)):
        phones.redis.hset(f"fsapps:{{{DOMAIN}}}:agent:{ext}", "idle_since", now - ago)
    first = phones.caller(fs1, f"7{group}", "13800381001", talk_ms=1000)
    assert first.wait(30) == 0, first.errors()
    assert cdr_row(phones, "13800381001")["destination_number"] == "3813"
    wait_for(lambda: agent_free(phones, "3813"), 15, "3813 free again")
    # its call's end is its idle_since now: 3811 has waited longest
    assert int(agent_state(phones, "3813")["idle_since"]) >= now
    second = phones.caller(fs1, f"7{group}", "13800381002", talk_ms=1000)
    assert second.wait(30) == 0, second.errors()
    assert cdr_row(phones, "13800381002")["destination_number"] == "3811"
