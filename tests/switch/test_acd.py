"""nwayacd in a real FreeSWITCH: trunk callers (SIPp) to 7<group>, agents on SIPp phones.

Each test uses its own group and extensions, so the session's one switch serves them all.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from switch.conftest import DOMAIN, Stack, wait_for
from switch.realswitch import RealSwitch

_groups = itertools.count(3100)


def api(sw: RealSwitch, line: str) -> str:
    """A switch command over plain ESL (no aliases there): ``api python fsapps.api ...``."""
    reply = sw.api(f"python fsapps.api {line}")
    assert reply.startswith("+OK"), f"{line}: {reply}"
    return reply


@pytest.fixture
def group(fs1: RealSwitch, phones: Stack) -> Iterator[str]:
    number = str(next(_groups))
    api(fs1, f"nway_add_group {number} 0")
    yield number
    for ext in phones.redis.zrange(f"fsapps:{{{DOMAIN}}}:group:{number}:members", 0, -1):
        fs1.api(f"python fsapps.api nway_logout {ext}")


def agent(sw: RealSwitch, st: Stack, ext: str, group: str, **phone: object) -> None:
    st.extension(ext)
    api(sw, f"nway_add_ext {ext}")
    st.phone(sw, ext, **phone)  # type: ignore[arg-type]
    api(sw, f"nway_login {ext} {group}")


def agent_state(st: Stack, ext: str) -> dict[str, str]:
    return st.redis.hgetall(f"fsapps:{{{DOMAIN}}}:agent:{ext}")


def cdr_row(st: Stack, caller: str) -> dict[str, object]:
    def row() -> dict[str, object] | None:
        rows = st.sql("SELECT row_to_json(c) FROM cdr c WHERE a_caller_id_number = %s", caller)
        return rows[0][0] if rows else None  # type: ignore[return-value]
    return wait_for(row, 20, f"the CDR of {caller}")  # type: ignore[return-value]


def attempts(st: Stack, uuid: object) -> list[tuple[object, ...]]:
    return st.sql("SELECT extension, result FROM cdr_agent_attempt WHERE cdr_uuid = %s "
                  "ORDER BY attempt_no", uuid)


def test_answered_queue_call_and_its_cdr(fs1: RealSwitch, phones: Stack, group: str) -> None:
    agent(fs1, phones, "3001", group)
    call = phones.caller(fs1, f"7{group}", "13800000001", talk_ms=1500)
    assert call.wait(30) == 0, call.errors()
    row = cdr_row(phones, "13800000001")
    # F2: the fields FreeSWITCH sets only in the hangup state are in the CDR
    assert row["destination_number"] == "3001"
    assert row["a_answer_stamp"] is not None and row["answer_stamp"] is not None
    assert row["a_billsec"] >= 1 and row["billsec"] >= 1  # type: ignore[operator]
    assert row["a_duration"] >= row["a_billsec"]  # type: ignore[operator]
    assert row["hangup_cause"] == "NORMAL_CLEARING"
    assert row["a_sip_hangup_disposition"] == "recv_bye"
    assert row["group_number"] == group and row["node"] == "fs1"
    assert attempts(phones, row["uuid"]) == [("3001", "answered")]
    wait_for(lambda: agent_state(phones, "3001").get("call_state") in ("typing", "ready"), 10,
             "agent 3001 out of the call")


def test_no_answer_moves_to_next_agent(fs1: RealSwitch, phones: Stack, group: str) -> None:
    phones.redis.hset(f"fsapps:{{{DOMAIN}}}:group:{group}", "group_callout_timeout", "2")
    agent(fs1, phones, "3011", group, answer=False)
    agent(fs1, phones, "3012", group)
    # the caller stays on past 3011's 2 s of ringing (the ACD answers it at once)
    call = phones.caller(fs1, f"7{group}", "13800000011", talk_ms=6000)
    assert call.wait(40) == 0, call.errors()
    row = cdr_row(phones, "13800000011")
    assert row["destination_number"] == "3012"
    assert attempts(phones, row["uuid"]) == [("3011", "no_answer"), ("3012", "answered")]
    assert "3011" in str(row["str_no_answer_agents"])


def test_caller_waits_with_hold_music_then_is_dispatched(fs1: RealSwitch, phones: Stack,
                                                          group: str) -> None:
    agent(fs1, phones, "3021", group)
    api(fs1, "nway_busy 3021")
    call = phones.caller(fs1, f"7{group}", "13800000021", talk_ms=1000)
    waiting = f"fsapps:{{{DOMAIN}}}:group:{group}:queue"
    wait_for(lambda: phones.redis.zcard(waiting), 15, "the caller queued")
    wait_for(lambda: "local_stream://moh" in fs1.api("show channels"), 10, "hold music")
    api(fs1, "nway_ready 3021")
    assert call.wait(30) == 0, call.errors()
    row = cdr_row(phones, "13800000021")
    assert row["destination_number"] == "3021"
    assert phones.redis.zcard(waiting) == 0


def test_caller_hangs_up_while_waiting(fs1: RealSwitch, phones: Stack, group: str) -> None:
    agent(fs1, phones, "3031", group)
    api(fs1, "nway_busy 3031")
    call = phones.caller(fs1, f"7{group}", "13800000031", talk_ms=2500)
    assert call.wait(30) == 0, call.errors()
    row = cdr_row(phones, "13800000031")
    assert row["destination_number"] in ("", None)
    assert row["a_answer_stamp"] is not None  # the ACD answered to play hold music
    assert phones.redis.zcard(f"fsapps:{{{DOMAIN}}}:group:{group}:queue") == 0
    assert agent_state(phones, "3031")["call_state"] != "ring"


def test_caller_hangs_up_while_the_agent_rings(fs1: RealSwitch, phones: Stack, group: str
                                               ) -> None:
    agent(fs1, phones, "3041", group, answer=False)
    call = phones.caller(fs1, f"7{group}", "13800000041", talk_ms=2000)
    wait_for(lambda: agent_state(phones, "3041").get("call_state") == "ring", 15, "3041 rings")
    assert call.wait(30) == 0, call.errors()
    row = cdr_row(phones, "13800000041")
    assert attempts(phones, row["uuid"]) == [("3041", "caller_cancel")]
    # never left reserved
    wait_for(lambda: agent_state(phones, "3041").get("call_state") == "ready", 15,
             "3041 ready again")
