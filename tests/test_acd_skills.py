"""Skills-based routing end to end on the fake switch: a call carrying ``fsapps_skills`` goes
only to agents with those skills at those levels (before a better-placed agent without them),
waits when nobody has them, relaxes with the group's ``skill_relax_seconds``, and a freed agent
takes a waiting call only if it qualifies; a malformed variable is logged and ignored.

Uses test_acd's call center (its own module-scoped instance) and its own groups 7xx."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from fakefs import Behaviour, Channel
from fakefs.scenario import wait_until
from fsapps.channelvars import SKILLS_VAR
from fsapps.domain.agents import Agents
from fsapps.domain.skills import (
    Skills,
    parse_skills,
    qualifies,
    relax_steps,
    relaxed,
    steps_to_relax_fully,
)
from fsapps.errors import BadInput
from fsapps.store.scripts import INCLUDE_DIR
from fsapps.switch import acd, commands
from tests import test_acd
from tests.acd_support import DOMAIN
from tests.test_acd import Acd

# test_acd's fixtures: a call center of this module's own, emptied after each test
center_module = test_acd.center_module
a = test_acd.a


def skilled(acd_: Acd, ext: str, text: str) -> None:
    Skills(acd_.cc.ctx, DOMAIN).set(ext, parse_skills(text))


def call(acd_: Acd, group: str, caller: str, skills: str | None, **behaviour: Any) -> Channel:
    """A call to the group whose dialplan path set ``fsapps_skills`` (None: not set)."""
    behaviour.setdefault("hangup_after_bridge_ms", 200)
    return acd_.switch.place_call(
        caller, f"7{group}", domain=acd_.cc.domain, context="default",
        behaviour=Behaviour(**behaviour),
        variables={} if skills is None else {SKILLS_VAR: skills})


def settle(acd_: Acd, *extensions: str) -> None:
    for ext in extensions:
        wait_until(lambda e=ext: (lambda g: g.call_state == "ready" and not g.offer_uuid
                                  and not g.leg_pending)(acd_.cc.get(e)), 5,
                   f"agent {ext} ready and free ({acd_.cc.get(ext)})")


# ------------------------------------------------------------------------ the rule ---------
def test_the_skills_rule_parses_qualifies_and_relaxes_as_documented() -> None:
    assert parse_skills("English:2, billing:3") == [("english", 2), ("billing", 3)]
    assert parse_skills("vip") == [("vip", 1)]
    assert parse_skills("") == parse_skills("-") == parse_skills(None) == []
    for bad in ("english:0", "english:10", "english:2,english:3", "a b:1", "x:1}{",
                "${system(id)}:1", ",".join(f"s{i}:1" for i in range(11))):
        with pytest.raises(BadInput):
            parse_skills(bad)
    required = [("english", 3), ("billing", 2), ("chinese", 1)]
    assert qualifies({"english": 4, "billing": 2, "chinese": 1}, required)
    assert not qualifies({"english": 4, "billing": 2}, required)
    # levels first (every level one lower a step, down to 1), then the last-named dropped
    assert relaxed(required, 1) == [("english", 2), ("billing", 1), ("chinese", 1)]
    assert relaxed(required, 2) == [("english", 1), ("billing", 1), ("chinese", 1)]
    assert relaxed(required, 3) == [("english", 1), ("billing", 1)]
    assert relaxed(required, 5) == []
    assert steps_to_relax_fully(required) == 5
    assert relax_steps(2_500, 1) == 2 and relax_steps(99_000, 0) == 0


def test_the_lua_rule_agrees_with_the_python_rule(a: Acd) -> None:
    """include/skills.lua (what the reserve and dispatch scripts apply) against
    fsapps.domain.skills, on the same requirements, waits and agents, in the test Redis."""
    script = (INCLUDE_DIR / "skills.lua").read_text() + """
local req = skills_relaxed(skills_required(cjson.decode(ARGV[1])), tonumber(ARGV[2]),
                           tonumber(ARGV[3]))
local names = {}
for _, r in ipairs(req) do
  names[#names + 1] = r[1] .. ':' .. r[2]
end
return {table.concat(names, ','), skills_meet(skills_of(ARGV[4]), req) and 1 or 0}
"""
    requirements = [[("english", 3), ("billing", 5)], [("a", 1)],
                    [("a", 2), ("b", 1), ("c", 4)], []]
    agents_ = ["english:3,billing:5", "english:2,billing:9", "a:1", "b:1,c:1", "", "a:1,b:1"]
    for required in requirements:
        for waited in range(0, 13_000, 1000):
            for have in agents_:
                text, meets = a.cc.ctx.redis.eval(
                    script, 0, json.dumps({"skills": required}), waited, 2, have)
                expected = relaxed(required, relax_steps(waited, 2))
                assert (text, bool(meets)) == (
                    ",".join(f"{n}:{lv}" for n, lv in expected),
                    qualifies(dict(parse_skills(have)), expected)), (required, waited, have)


# ------------------------------------------------------------------------ routing ----------
def test_a_matching_agent_is_chosen_over_a_better_placed_non_matching_one(a: Acd) -> None:
    a.group("701", mode=0)
    a.agents("701", "7011", "7012", "7013")   # sequential: 7011 is always first
    skilled(a, "7011", "billing:5")
    skilled(a, "7012", "english:1")
    skilled(a, "7013", "english:3,billing:1")
    channel = call(a, "701", "13970100001", "english:2")
    assert a.answered_by(channel) == "7013"
    assert a.callouts(channel) == ["7013"]
    a.gone(channel)
    settle(a, "7013")
    # a call without skills keeps the mode's order
    channel = call(a, "701", "13970100002", None)
    assert a.answered_by(channel) == "7011"
    a.gone(channel)
    settle(a, "7011")


def test_with_no_matching_agent_the_call_waits(a: Acd) -> None:
    a.group("702", mode=0)
    a.agents("702", "7021")
    skilled(a, "7021", "english:1")
    channel = call(a, "702", "13970200001", "english:3", abandon_after_ms=2500)
    wait_until(lambda: a.queued("702") == [channel.uuid], 3, "the call queued")
    time.sleep(1.0)
    assert a.callouts(channel) == []
    assert a.cc.get("7021").call_state == "ready"
    assert a.queued("702") == [channel.uuid]
    [waiting] = a.cc.queue.waiting("702")
    assert waiting.skills == [("english", 3)]
    a.gone(channel)


def test_after_the_relax_wait_a_lower_level_agent_takes_the_call(a: Acd) -> None:
    a.group("703", mode=0, skill_relax_seconds=1)
    a.agents("703", "7031")
    skilled(a, "7031", "english:1")
    started = time.monotonic()
    channel = call(a, "703", "13970300001", "english:3")
    assert a.answered_by(channel, timeout=8) == "7031"
    waited = time.monotonic() - started
    # english:3 -> 2 after 1 s -> 1 after 2 s: not before
    assert 1.9 <= waited <= 5.0, waited
    a.gone(channel)
    settle(a, "7031")


def test_a_freed_agent_takes_the_waiting_call_only_if_it_qualifies(a: Acd) -> None:
    a.group("704", mode=0)
    a.agents("704", "7041", "7042", ready=False)
    skilled(a, "7041", "english:5")
    skilled(a, "7042", "billing:5,english:1")
    channel = call(a, "704", "13970400001", "billing:3")
    wait_until(lambda: a.queued("704") == [channel.uuid], 3, "the call queued")
    ready = acd.make_ready(a.cc.ctx, DOMAIN, "7041")   # not qualified: stays ready, no offer
    assert ready.done and ready.offered == ""
    assert a.queued("704") == [channel.uuid]
    ready = acd.make_ready(a.cc.ctx, DOMAIN, "7042")   # qualified: takes it at once
    assert ready.offered == channel.uuid
    assert a.answered_by(channel) == "7042"
    assert a.cc.get("7041").call_state == "ready"
    a.gone(channel)
    settle(a, "7041", "7042")


def test_a_freed_agent_takes_a_call_whose_requirement_relaxed_while_it_waited(a: Acd) -> None:
    a.group("705", mode=0, skill_relax_seconds=1)
    a.agents("705", "7051", ready=False)
    skilled(a, "7051", "english:1")
    channel = call(a, "705", "13970500001", "english:2")
    wait_until(lambda: a.queued("705") == [channel.uuid], 3, "the call queued")
    time.sleep(1.2)   # one step: english:1 is enough now
    ready = acd.make_ready(a.cc.ctx, DOMAIN, "7051")
    assert ready.offered == channel.uuid
    assert a.answered_by(channel) == "7051"
    a.gone(channel)
    settle(a, "7051")


def test_a_bad_skills_variable_is_ignored_with_a_log_line(a: Acd) -> None:
    a.group("706", mode=0)
    a.agents("706", "7061", "7062")
    skilled(a, "7062", "english:3")
    bad = "english:3,${system(id)}"
    channel = call(a, "706", "13970600001", bad)
    assert a.answered_by(channel) == "7061"   # routed as a call without skills
    lines = [m for level, m in a.switch.log if level == "WARNING" and channel.uuid in m]
    assert len(lines) == 1 and "fsapps_skills" in lines[0] and "ignored" in lines[0], lines
    a.gone(channel)
    settle(a, "7061")


# ------------------------------------------------------------------------ configuration ----
def test_skills_and_the_relax_wait_are_set_by_command_and_kept_in_postgresql(a: Acd) -> None:
    ctx = a.cc.ctx
    assert commands.run("nway_set_agent_skills 7071 English:3,billing:5", ctx=ctx) == \
        "+OK agent 7071 skills english:3,billing:5\n"
    assert commands.run("nway_set_agent_skills 7071 english:12", ctx=ctx).startswith(
        "-ERR usage: nway_set_agent_skills")
    assert Skills(ctx, DOMAIN).get("7071") == [("english", 3), ("billing", 5)]
    assert [r["skills"] for r in json.loads(commands.run("nway_list_exts json", ctx=ctx))["rows"]
            if r["extension"] == "7071"] == ["english:3,billing:5"]
    assert commands.run("nway_add_group 707 0", ctx=ctx).startswith("+OK")
    assert commands.run("nway_set_group_skill_relax 707 30", ctx=ctx) == \
        "+OK group 707 skills relax every 30 s\n"
    assert commands.run("nway_set_group_skill_relax 709 30", ctx=ctx).startswith("-ERR")
    # the working set rebuilt from PostgreSQL has them again
    Agents(ctx, DOMAIN).set_fields("7071", skills="")
    ctx.redis.delete(ctx.keys(DOMAIN).group("707"))
    Skills(ctx, DOMAIN).load_into_redis()
    a.cc.groups.load_into_redis()
    assert Skills(ctx, DOMAIN).get("7071") == [("billing", 5), ("english", 3)]
    group = a.cc.groups.get("707")
    assert group is not None and group.skill_relax_seconds == 30
    assert commands.run("nway_set_agent_skills 7071 -", ctx=ctx) == \
        "+OK agent 7071 skills (none)\n"
    assert Skills(ctx, DOMAIN).get("7071") == []
