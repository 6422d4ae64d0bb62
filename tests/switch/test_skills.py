"""Skills-based routing in a real FreeSWITCH (issue 18 item 2). The trunk caller's dialplan
path sets ``fsapps_skills``: a test extension in the public context (``6<group>``) copies the
INVITE's X-Test-Skills header into it, then runs nwayacd, as a site's dialplan would set it
from an IVR choice or a DID. The call goes to the agent with the skills, past a better-placed
one without them; with no agent qualified it waits, and a qualified agent turning ready takes
it; after the group's relax wait a lower-level agent does."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from switch.conftest import DOMAIN, Stack, agent_free, api, wait_for
from switch.test_acd import agent, cdr_row, group_key
from tools.realswitch import RealSwitch

_groups = itertools.count(3950)

TEST_DIALPLAN = """<include>
  <extension name="fsapps_test_skills">
    <condition field="destination_number" expression="^6(\\d{4})$">
      <action application="set" data="fsapps_skills=${sip_h_X-Test-Skills}"/>
      <action application="python" data="fsapps.nwayacd $1"/>
    </condition>
  </extension>
</include>
"""


@pytest.fixture(scope="module")
def skills_dialplan(fs1: RealSwitch) -> Iterator[None]:
    path = fs1.conf / "dialplan" / "public" / "05_fsapps_test_skills.xml"
    path.write_text(TEST_DIALPLAN)
    assert "+OK" in fs1.api("reloadxml")
    try:
        yield
    finally:
        path.unlink()
        fs1.api("reloadxml")


@pytest.fixture
def group(fs1: RealSwitch, phones: Stack, skills_dialplan: None) -> Iterator[str]:
    number = str(next(_groups))
    api(fs1, f"nway_add_group {number} 0")
    phones.redis.hset(group_key(number), "wrapup_seconds", "0")
    yield number
    for ext in phones.redis.zrange(group_key(number, "members"), 0, -1):
        fs1.api(f"python fsapps.api nway_logout {ext}")


def test_the_agent_with_the_skills_gets_the_call_before_a_better_placed_one(
        fs1: RealSwitch, phones: Stack, group: str) -> None:
    agent(fs1, phones, "3951", group)   # first in member order, no skills
    agent(fs1, phones, "3952", group)
    api(fs1, "nway_set_agent_skills 3952 english:3,billing:2")
    call = phones.caller(fs1, f"6{group}", "13800395101", talk_ms=1000,
                         headers="X-Test-Skills: english:2,billing:1")
    assert call.wait(30) == 0, call.errors()
    row = cdr_row(phones, "13800395101")
    assert row["destination_number"] == "3952"
    assert phones.attempts(row["uuid"]) == [("3952", "answered")]
    wait_for(lambda: agent_free(phones, "3952"), 15, "3952 free again")


def test_with_no_qualified_agent_the_call_waits_for_one(
        fs1: RealSwitch, phones: Stack, group: str) -> None:
    agent(fs1, phones, "3953", group)   # ready, but without the skill
    agent(fs1, phones, "3954", group)
    api(fs1, "nway_set_agent_skills 3954 chinese:4")
    api(fs1, "nway_busy 3954")
    # (the caller hangs up talk_ms after the ACD answers it: waiting included)
    call = phones.caller(fs1, f"6{group}", "13800395301", talk_ms=8000,
                         headers="X-Test-Skills: chinese:3")
    queue = f"fsapps:{{{DOMAIN}}}:group:{group}:queue"
    wait_for(lambda: phones.redis.zcard(queue) == 1, 15, "the call queued")
    time.sleep(2)
    assert phones.redis.zcard(queue) == 1 and agent_free(phones, "3953")
    api(fs1, "nway_ready 3954")   # qualified: takes the waiting call at once
    assert call.wait(30) == 0, call.errors()
    row = cdr_row(phones, "13800395301")
    assert row["destination_number"] == "3954"
    assert phones.attempts(row["uuid"]) == [("3954", "answered")]


def test_after_the_relax_wait_a_lower_level_agent_takes_the_call(
        fs1: RealSwitch, phones: Stack, group: str) -> None:
    api(fs1, f"nway_set_group_skill_relax {group} 2")
    agent(fs1, phones, "3955", group)
    api(fs1, "nway_set_agent_skills 3955 english:1")
    started = time.monotonic()
    call = phones.caller(fs1, f"6{group}", "13800395501", talk_ms=7000,
                         headers="X-Test-Skills: english:2")
    assert call.wait(40) == 0, call.errors()
    row = cdr_row(phones, "13800395501")
    assert row["destination_number"] == "3955"
    # english:2 relaxes to english:1 after 2 s of waiting, not before
    rang_after = (datetime.fromisoformat(row["start_stamp"])
                  - datetime.fromisoformat(row["a_start_stamp"])).total_seconds()
    assert rang_after >= 1.9, rang_after
    assert time.monotonic() - started < 30
