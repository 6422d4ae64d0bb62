"""nwayacd in a real FreeSWITCH: trunk callers (SIPp) to 7<group>, agents on SIPp phones.

Each test uses its own group and extensions, so the session's one switch serves them all.
"""

from __future__ import annotations

import time
from typing import Any

from switch.conftest import DOMAIN, Stack, agent_state, api, wait_for
from tools.realswitch import RealSwitch, write_tone_wav


def agent(sw: RealSwitch, st: Stack, ext: str, group: str, **phone: object) -> None:
    st.extension(ext)
    api(sw, f"nway_add_ext {ext}")
    st.phone(sw, ext, **phone)  # type: ignore[arg-type]
    api(sw, f"nway_login {ext} {group}")


def group_key(group: str, part: str = "") -> str:
    return f"fsapps:{{{DOMAIN}}}:group:{group}" + (f":{part}" if part else "")


def cdr_row(st: Stack, caller: str) -> dict[str, Any]:
    return st.cdr("a_caller_id_number = %s", caller)


def test_answered_queue_call_and_its_cdr(fs1: RealSwitch, phones: Stack, group: str) -> None:
    agent(fs1, phones, "3001", group)
    call = phones.caller(fs1, f"7{group}", "13800000001", talk_ms=1500)
    assert call.wait(30) == 0, call.errors()
    row = cdr_row(phones, "13800000001")
    # F2: the fields FreeSWITCH sets only in the hangup state are in the CDR
    assert row["destination_number"] == "3001"
    assert row["a_answer_stamp"] is not None and row["answer_stamp"] is not None
    assert row["a_billsec"] >= 1 and row["billsec"] >= 1
    assert row["a_duration"] >= row["a_billsec"]
    assert row["hangup_cause"] == "NORMAL_CLEARING"
    assert row["a_sip_hangup_disposition"] == "recv_bye"
    assert row["group_number"] == group and row["node"] == "fs1"
    assert phones.attempts(row["uuid"]) == [("3001", "answered")]
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
    assert phones.attempts(row["uuid"]) == [("3011", "no_answer"), ("3012", "answered")]
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
    assert phones.attempts(row["uuid"]) == [("3041", "caller_cancel")]
    # never left reserved
    wait_for(lambda: agent_state(phones, "3041").get("call_state") == "ready", 15,
             "3041 ready again")


def test_blacklisted_caller_is_refused_before_any_agent(fs1: RealSwitch, phones: Stack,
                                                        group: str) -> None:
    agent(fs1, phones, "3051", group)
    phones.redis.sadd(group_key(group, "blacklist"), "13800000051")
    call = phones.caller(fs1, f"7{group}", "13800000051", talk_ms=5000)
    assert call.wait(30) == 0, call.errors()
    assert "SIP/2.0 603 Decline" in call.messages()  # CALL_REJECTED, never answered
    row = cdr_row(phones, "13800000051")
    assert row["flag"] == "黑名单" and row["a_answer_stamp"] is None
    assert row["hangup_cause"] == "CALL_REJECTED" and row["a_billsec"] == 0
    assert phones.attempts(row["uuid"]) == []
    assert agent_state(phones, "3051")["call_state"] == "ready"


def test_vip_caller_is_served_before_an_earlier_normal_one(fs1: RealSwitch, phones: Stack,
                                                           group: str) -> None:
    agent(fs1, phones, "3061", group)
    api(fs1, "nway_busy 3061")
    phones.redis.sadd(group_key(group, "vip"), "13800000062")
    waiting = group_key(group, "queue")
    normal = phones.caller(fs1, f"7{group}", "13800000061", talk_ms=8000)
    wait_for(lambda: phones.redis.zcard(waiting) == 1, 15, "the normal caller queued")
    vip = phones.caller(fs1, f"7{group}", "13800000062", talk_ms=1500)
    wait_for(lambda: phones.redis.zcard(waiting) == 2, 15, "the VIP caller queued")
    api(fs1, "nway_ready 3061")
    assert vip.wait(30) == 0, vip.errors()
    row = cdr_row(phones, "13800000062")
    assert row["destination_number"] == "3061" and row["level"] == "vip"
    # the agent is in wrap-up after the VIP: the earlier normal caller is still waiting
    assert normal.proc is not None and normal.proc.poll() is None
    assert normal.wait(30) == 0, normal.errors()
    first = cdr_row(phones, "13800000061")
    assert first["destination_number"] in ("", None) and first["level"] == "normal"


def test_long_wait_policy_plays_the_busy_ring_then_hangs_up(fs1: RealSwitch, phones: Stack,
                                                            group: str) -> None:
    """busy_ring_interval_seconds is 2 (the least) on the tier's switches: two busy rings."""
    busy_ring = fs1.dir / "sounds" / "busy.wav"
    write_tone_wav(busy_ring, seconds=0.3)
    phones.redis.hset(group_key(group), mapping={"busy_ring": str(busy_ring),
                                                 "busy_ring_repeats": "2"})
    agent(fs1, phones, "3071", group)
    api(fs1, "nway_busy 3071")
    call = phones.caller(fs1, f"7{group}", "13800000071", talk_ms=30000)
    assert call.wait(30) == 0, call.errors()
    assert "BYE sip:" in call.messages()  # the switch hung up, not the caller
    row = cdr_row(phones, "13800000071")
    assert row["flag"] == "排队超时" and row["a_answer_stamp"] is not None
    assert row["a_sip_hangup_disposition"] == "send_bye"
    assert phones.redis.zcard(group_key(group, "queue")) == 0


def test_an_answered_agent_redis_still_shows_ringing_keeps_its_call(
        fs1: RealSwitch, phones: Stack, group: str) -> None:
    """A loaded switch delivers the agent leg's CHANNEL_ANSWER late: Redis still says "ring"
    after the reservation's lease ran out. The reconciler asks the switch, which has the
    agent's leg up, and leaves the agent alone: a second caller waiting meanwhile gets the
    agent only after the first call (freeing it on the lease alone offered talking agents a
    second call). The late state is written into Redis once the agent talks."""
    ext = "3091"
    phones.redis.hset(group_key(group), "wrapup_seconds", "0")  # free again at the call's end
    agent(fs1, phones, ext, group)
    first = phones.caller(fs1, f"7{group}", "13800000091", talk_ms=9000)
    wait_for(lambda: agent_state(phones, ext).get("call_state") == "talking", 20,
             f"agent {ext} talking")
    held = agent_state(phones, ext)
    assert held["agent_leg"] and held["agent_leg"] in fs1.api("show channels")
    key = f"fsapps:{{{DOMAIN}}}:agent:{ext}"
    phones.redis.hset(key, mapping={"call_state": "ring", "lease_until": 1})
    second = phones.caller(fs1, f"7{group}", "13800000092", talk_ms=16000)
    wait_for(lambda: phones.redis.zcard(group_key(group, "queue")), 15, "second caller queued")
    time.sleep(5)  # two reconcile rounds (2 s) with the lease run out
    now = agent_state(phones, ext)
    assert (now["call_state"], now["offer_uuid"]) == ("ring", held["offer_uuid"])
    assert phones.redis.zcard(group_key(group, "queue")) == 1  # not offered the agent
    assert first.wait(40) == 0, first.errors()
    assert second.wait(40) == 0, second.errors()
    assert cdr_row(phones, "13800000092")["destination_number"] == ext
    first_row, second_row = cdr_row(phones, "13800000091"), cdr_row(phones, "13800000092")
    assert second_row["answer_stamp"] >= first_row["end_stamp"]
