"""The group strategies beside the call modes (ext_group.agent_strategy) and agent tiers
(ext_group_level, ext_group.tier_wait_seconds), end to end on the fake switch: each strategy
picks the right agent, ring_all rings every free member and releases every loser, tiers hold a
level back until the lower one is busy (or the caller waited).

Uses test_acd's call center (its own module-scoped instance) and its own groups 6xx."""

from __future__ import annotations

import time
from typing import Any

from fakefs.scenario import wait_until
from fsapps.domain.agents import Agents
from fsapps.domain.routing import stats_day
from fsapps.switch import commands
from tests import test_acd
from tests.acd_support import DOMAIN
from tests.test_acd import Acd

# test_acd's fixtures: a call center of this module's own, emptied after each test
center_module = test_acd.center_module
a = test_acd.a


def agents(acd: Acd) -> Agents:
    return Agents(acd.cc.ctx, DOMAIN)


def settle(acd: Acd, *extensions: str) -> None:
    """Each agent ready, reserving nothing and its last leg's end told (free for the next)."""
    for ext in extensions:
        wait_until(lambda e=ext: (lambda g: g.call_state == "ready" and not g.offer_uuid
                                  and not g.leg_pending)(acd.cc.get(e)), 5,
                   f"agent {ext} ready and free ({acd.cc.get(ext)})")


def strategy_group(acd: Acd, number: str, strategy: str, *extensions: str,
                   **fields: Any) -> None:
    acd.group(number, mode=0, agent_strategy=strategy, **fields)
    acd.agents(number, *extensions)


# ------------------------------------------------------------------------ ordering ---------
def test_longest_idle_picks_the_agent_whose_last_call_ended_longest_ago(a: Acd) -> None:
    strategy_group(a, "601", "longest_idle", "6011", "6012", "6013")
    now = int(time.time() * 1000)
    for ext, ago in (("6011", 10_000), ("6012", 30_000), ("6013", 20_000)):
        agents(a).set_fields(ext, idle_since=now - ago)
    before = int(time.time() * 1000)
    assert a.served("601", "13960100001") == "6012"
    # its call's end is its idle_since now: the next longest idle is 6013
    assert int(agents(a).r.hget(a.cc.ctx.keys(DOMAIN).agent("6012"), "idle_since") or 0) >= before
    settle(a, "6012")
    assert a.served("601", "13960100002") == "6013"
    settle(a, "6013")
    # back from a pause counts as idle from then, not from a call before it
    a.busy("6011")
    a.ready("6011")
    assert a.served("601", "13960100003") == "6012"


def test_longest_idle_keeps_the_memory_modes_remembered_agent_first(a: Acd) -> None:
    a.group("602", mode=3, agent_strategy="longest_idle")
    a.agents("602", "6021", "6022")
    now = int(time.time() * 1000)
    agents(a).set_fields("6021", idle_since=now - 50_000)
    agents(a).set_fields("6022", idle_since=now - 1_000)
    a.cc.groups.remember("602", "13960200001", "6022")
    assert a.served("602", "13960200001") == "6022"


def test_fewest_calls_today_counts_answered_calls_and_forgets_other_days(a: Acd) -> None:
    strategy_group(a, "603", "fewest_calls", "6031", "6032", "6033")
    today = stats_day()
    agents(a).set_fields("6031", stats_day=today, calls_today=5, talk_ms_today=0)
    agents(a).set_fields("6032", stats_day=today, calls_today=2, talk_ms_today=0)
    agents(a).set_fields("6033", stats_day="20000101", calls_today=99, talk_ms_today=0)
    assert a.served("603", "13960300001") == "6033"   # yesterday's 99 count as 0
    assert a.cc.get("6033") and agents(a).r.hmget(
        a.cc.ctx.keys(DOMAIN).agent("6033"), "stats_day", "calls_today") == [today, "1"]
    settle(a, "6033")
    assert a.served("603", "13960300002") == "6033"   # 1 < 2
    settle(a, "6033")
    assert a.served("603", "13960300003") == "6032"   # 2 = 2: member order
    assert agents(a).r.hget(a.cc.ctx.keys(DOMAIN).agent("6032"), "calls_today") == "3"


def test_least_talk_time_today_adds_each_calls_talk_time(a: Acd) -> None:
    strategy_group(a, "604", "least_talk_time", "6041", "6042")
    today = stats_day()
    agents(a).set_fields("6041", stats_day=today, calls_today=1, talk_ms_today=100)
    agents(a).set_fields("6042", stats_day=today, calls_today=9, talk_ms_today=90)
    key = a.cc.ctx.keys(DOMAIN).agent("6042")
    assert a.served("604", "13960400001", hangup_after_bridge_ms=300) == "6042"
    talked = int(agents(a).r.hget(key, "talk_ms_today") or 0)
    assert talked >= 90 + 250, talked   # the call's talk time was added
    settle(a, "6042")
    assert a.served("604", "13960400002") == "6041"


def test_the_default_strategy_keeps_the_call_modes_order(a: Acd) -> None:
    a.group("605", mode=0)
    a.agents("605", "6051", "6052")
    now = int(time.time() * 1000)
    agents(a).set_fields("6052", idle_since=now - 99_000, stats_day=stats_day(),
                         calls_today=0)
    agents(a).set_fields("6051", stats_day=stats_day(), calls_today=50)
    assert a.served("605", "13960500001") == "6051"


# ------------------------------------------------------------------------ ring_all ---------
def test_ring_all_rings_every_free_member_and_the_first_answer_wins(a: Acd) -> None:
    a.group("611", mode=0, agent_strategy="ring_all", group_callout_timeout=4)
    a.agents("611", "6111", answer_after_ms=1500)
    a.agents("611", "6112", answer_after_ms=150)
    a.agents("611", "6113", answer_after_ms=None)  # never answers
    a.agents("611", "6114", ready=False)           # busy: not rung
    channel = a.call("611", "13961100001", hangup_after_bridge_ms=300)
    assert a.answered_by(channel) == "6112"
    assert sorted(a.callouts(channel)) == ["6111", "6112", "6113"]
    # the losers' legs were cancelled by the switch (LOSE_RACE), never answered
    legs = [e for e in a.switch.bus.events("CHANNEL_HANGUP_COMPLETE")
            if e.headers.get("variable_fsapps_acd_call") == channel.uuid]
    causes = {e.headers.get("variable_fsapps_acd_agent"): e.headers.get("Hangup-Cause")
              for e in legs}
    wait_until(lambda: len([e for e in a.switch.bus.events("CHANNEL_HANGUP_COMPLETE")
                            if e.headers.get("variable_fsapps_acd_call") == channel.uuid]) >= 2,
               5, "the losers' legs hung up")
    legs = [e for e in a.switch.bus.events("CHANNEL_HANGUP_COMPLETE")
            if e.headers.get("variable_fsapps_acd_call") == channel.uuid]
    causes = {e.headers.get("variable_fsapps_acd_agent"): e.headers.get("Hangup-Cause")
              for e in legs}
    assert causes.get("6111") == "LOSE_RACE" and causes.get("6113") == "LOSE_RACE", causes
    a.gone(channel)
    # every loser ends ready and reserved for nothing; nobody missed anything
    settle(a, "6111", "6112", "6113")
    for ext in ("6111", "6113"):
        agent = a.cc.get(ext)
        assert (agent.no_answer_count, agent.offer_uuid, agent.seat_status) == (0, "", "idle")
    assert a.cc.get("6114").call_state == "busy"
    assert not a.cc.ctx.redis.hgetall(a.cc.ctx.keys(DOMAIN).offers())


def test_ring_all_caller_hanging_up_while_they_ring_releases_them_all(a: Acd) -> None:
    a.group("612", mode=0, agent_strategy="ring_all", group_callout_timeout=4)
    a.agents("612", "6121", "6122", answer_after_ms=None)
    channel = a.call("612", "13961200001", abandon_after_ms=600)
    wait_until(lambda: sorted(a.callouts(channel)) == ["6121", "6122"], 3, "both rung")
    a.gone(channel)
    settle(a, "6121", "6122")
    assert [a.cc.get(e).no_answer_count for e in ("6121", "6122")] == [0, 0]


def test_ring_all_nobody_answering_counts_a_miss_for_each_and_rings_them_again(
        a: Acd) -> None:
    a.group("613", mode=0, agent_strategy="ring_all", max_no_answer=9)
    a.agents("613", "6131", "6132", answer_after_ms=None)
    channel = a.call("613", "13961300001", abandon_after_ms=5000)
    wait_until(lambda: a.callouts(channel).count("6131") >= 2, 6, "6131 rung twice")
    a.gone(channel, timeout=6)
    settle(a, "6131", "6132")
    assert a.callouts(channel).count("6132") >= 2
    assert a.cc.get("6132").no_answer_count >= 2


# ------------------------------------------------------------------------ tiers ------------
def test_level_two_rings_only_when_no_level_one_agent_is_free(a: Acd) -> None:
    a.group("621", mode=0)
    a.agents("621", "6211", "6212")   # 6211 first in member order ...
    assert commands.run("nway_set_agent_level 621 6211 2", ctx=a.cc.ctx,
                        ).startswith("+OK")  # ... but on level 2
    assert a.served("621", "13962100001") == "6212"
    a.busy("6212")
    assert a.served("621", "13962100002") == "6211"


def test_level_two_waits_tier_wait_seconds_while_level_one_is_on_a_call(a: Acd) -> None:
    a.group("622", mode=0, tier_wait_seconds=2)
    a.agents("622", "6221", "6222")
    a.cc.groups.set_level("622", "6222", 2)
    first = a.call("622", "13962200001", hangup_after_bridge_ms=5000)
    assert a.answered_by(first) == "6221"
    started = time.monotonic()
    second = a.call("622", "13962200002", hangup_after_bridge_ms=200)
    assert a.answered_by(second, timeout=6) == "6222"
    waited = time.monotonic() - started
    assert 1.8 <= waited <= 4.5, waited
    a.gone(second)
    a.switch.hangup(first, "NORMAL_CLEARING")
    a.gone(first)
    settle(a, "6221", "6222")


def test_level_two_rings_at_once_when_no_level_one_agent_is_staffed(a: Acd) -> None:
    a.group("623", mode=0, tier_wait_seconds=30)
    a.agents("623", "6231", "6232")
    a.cc.groups.set_level("623", "6232", 2)
    a.busy("6231")   # level 1 paused: waiting for it would be waiting for nobody
    started = time.monotonic()
    assert a.served("623", "13962300001") == "6232"
    assert time.monotonic() - started < 3


def test_a_level_two_agent_turning_free_takes_a_waiting_call_only_after_the_wait(
        a: Acd) -> None:
    a.group("624", mode=0, tier_wait_seconds=2)
    a.agents("624", "6241")
    a.agents("624", "6242", ready=False)
    a.cc.groups.set_level("624", "6242", 2)
    first = a.call("624", "13962400001", hangup_after_bridge_ms=5000)
    assert a.answered_by(first) == "6241"
    second = a.call("624", "13962400002", hangup_after_bridge_ms=200)
    wait_until(lambda: a.queued("624") != [], 3, "the second call queued")
    started = time.monotonic()
    a.ready("6242")   # level 2 free while the caller waited < 2 s: it does not take it
    assert a.cc.get("6242").call_state == "ready"
    assert a.answered_by(second, timeout=6) == "6242"
    assert time.monotonic() - started >= 1.0
    a.gone(second)
    a.switch.hangup(first, "NORMAL_CLEARING")
    a.gone(first)
    settle(a, "6241", "6242")


# ------------------------------------------------------------------------ configuration ----
def test_strategy_and_levels_are_set_by_command_and_kept_in_postgresql(a: Acd) -> None:
    ctx = a.cc.ctx
    assert commands.run("nway_add_group 631 0", ctx=ctx).startswith("+OK")
    assert commands.run("nway_set_group_strategy 631 longest_idle 15", ctx=ctx) == \
        "+OK group 631 strategy longest_idle, tier wait 15 s\n"
    assert commands.run("nway_set_group_strategy 631 mode", ctx=ctx) == \
        "+OK group 631 strategy mode, tier wait 15 s\n"
    assert commands.run("nway_set_group_strategy 631 fastest", ctx=ctx).startswith("-ERR")
    assert commands.run("nway_set_agent_level 631 6311 3", ctx=ctx) == \
        "+OK agent 6311 level 3 in group 631\n"
    assert commands.run("nway_set_agent_level 631 6311 0", ctx=ctx).startswith("-ERR")
    assert commands.run("nway_set_agent_level 639 6311 2", ctx=ctx).startswith("-ERR")
    # the working set rebuilt from PostgreSQL has them again
    ctx.redis.delete(ctx.keys(DOMAIN).group("631"))
    a.cc.groups.load_into_redis()
    group = a.cc.groups.get("631")
    assert group is not None
    assert (group.agent_strategy, group.tier_wait_seconds) == ("", 15)
    assert a.cc.groups.levels("631") == {"6311": 3}
