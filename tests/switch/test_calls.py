"""nway_bridge, nwaycallout through a sofia gateway, and the nway_* commands (fs_cli aliases and
plain ESL) in a real FreeSWITCH; the CDR of each app field by field.

Agents' phones dial on the internal profile (digest auth as their extension); the carrier
behind gateway "test" is the stack's SIPp trunk.
"""

from __future__ import annotations

from typing import Any

from switch.conftest import Stack, agent_state, api, wait_for
from switch.test_acd import agent
from tools.realswitch import RealSwitch

OUT_GROUP = "110"  # the group dialplan/20_fsapps_outbound.xml calls out for


def ensure_group(sw: RealSwitch, group: str) -> None:
    reply = sw.api(f"python fsapps.api nway_add_group {group} 0")
    assert reply.startswith("+OK") or "exists" in reply, reply


def answered_fields(row: dict[str, Any]) -> None:
    """The fields FreeSWITCH sets only in the hangup state, for an answered call (F2)."""
    assert row["a_answer_stamp"] is not None and row["answer_stamp"] is not None
    assert row["a_billsec"] >= 1 and row["billsec"] >= 1
    assert row["a_duration"] >= row["a_billsec"]
    assert row["duration"] >= row["billsec"]
    assert row["hangup_cause"] == "NORMAL_CLEARING"
    assert row["a_sip_hangup_disposition"] in ("recv_bye", "send_bye")


# ------------------------------------------------------------------- nway_bridge ---------------
def test_nway_bridge_answered_and_its_cdr(fs1: RealSwitch, phones: Stack) -> None:
    phones.extension("3201")
    api(fs1, "nway_add_ext 3201")
    phones.phone(fs1, "3201")
    phones.extension("3202")
    call = phones.phone_call(fs1, "3202", "83201", talk_ms=1500)
    assert call.wait(30) == 0, call.errors()
    row = phones.cdr("a_caller_id_number = %s AND destination_number = %s", "3202", "3201")
    answered_fields(row)
    assert row["a_sip_hangup_disposition"] == "recv_bye"  # the calling phone hung up
    assert row["is_callout"] is False and row["flag"] == "接通"
    assert row["a_destination_number"] == "83201" and row["node"] == "fs1"
    assert phones.attempts(row["uuid"]) == [("3201", "answered")]
    wait_for(lambda: agent_state(phones, "3201").get("call_state") in ("typing", "ready"), 10,
             "3201 out of the call")


def test_nway_bridge_to_an_agent_on_a_queue_call_is_busy(fs1: RealSwitch, phones: Stack
                                                         ) -> None:
    ensure_group(fs1, "3210")
    agent(fs1, phones, "3211", "3210", answer=False)
    queued = phones.caller(fs1, "73210", "13800000211", talk_ms=6000)
    wait_for(lambda: agent_state(phones, "3211").get("call_state") == "ring", 15, "3211 rings")
    phones.extension("3212")
    direct = phones.phone_call(fs1, "3212", "83211", talk_ms=1000)
    assert direct.wait(30) == 0, direct.errors()
    assert "SIP/2.0 486 Busy Here" in direct.messages()  # USER_BUSY at once
    # the queue offer is not disturbed
    assert agent_state(phones, "3211")["call_state"] == "ring"
    queued.stop()


# ------------------------------------------------------------------- nwaycallout ---------------
def test_nwaycallout_through_the_gateway_and_its_cdr(fs1: RealSwitch, phones: Stack) -> None:
    ensure_group(fs1, OUT_GROUP)
    agent(fs1, phones, "3221", OUT_GROUP)
    trunk = phones.trunk(ring_ms=300)
    call = phones.phone_call(fs1, "3221", "913900000221", talk_ms=1500)
    assert call.wait(30) == 0, call.errors()
    # the carrier got the number through gateway "test", with the group as caller id
    invite = next(m for m in trunk.messages().split("\n\n") if "INVITE sip:13900000221@" in m)
    assert f"From: \"{OUT_GROUP}\"" in invite or f"sip:{OUT_GROUP}@" in invite, invite
    row = phones.cdr("is_callout AND destination_number = %s", "13900000221")
    answered_fields(row)
    assert row["flag"] == "外呼接通" and row["group_number"] == OUT_GROUP
    assert row["a_caller_id_number"] == "3221"
    assert row["a_destination_number"] == "913900000221"
    assert row["a_sip_hangup_disposition"] == "recv_bye"
    wait_for(lambda: agent_state(phones, "3221").get("call_state") in ("typing", "ready"), 10,
             "3221 out of the call")


def test_nwaycallout_busy_far_end(fs1: RealSwitch, phones: Stack) -> None:
    ensure_group(fs1, OUT_GROUP)
    agent(fs1, phones, "3231", OUT_GROUP)
    phones.trunk(busy=True)
    call = phones.phone_call(fs1, "3231", "913900000231", talk_ms=1000)
    assert call.wait(30) == 0, call.errors()
    assert "SIP/2.0 486 Busy Here" in call.messages()  # the far end's cause reaches the phone
    row = phones.cdr("is_callout AND destination_number = %s", "13900000231")
    assert row["flag"] == "外呼对方忙" and row["answer_stamp"] is None
    assert row["billsec"] == 0 and row["hangup_cause"] == "USER_BUSY"
    wait_for(lambda: agent_state(phones, "3231").get("call_state") == "ready", 10,
             "3231 ready again")


# ------------------------------------------------------------------- nway_* commands -----------
def cli(sw: RealSwitch, command: str) -> str:
    """``fs_cli -x command``'s reply, after the line saying the alias was expanded."""
    out = sw.fs_cli(command)
    name = command.split()[0]
    assert f"Expand Alias [{name}]->[python fsapps.api {name}" in out, out
    return "\n".join(line for line in out.splitlines()
                     if line.strip() and not line.startswith("Expand Alias"))


def test_commands_over_fs_cli_aliases_and_plain_esl(fs1: RealSwitch, phones: Stack) -> None:
    phones.extension("3241")
    # fs_cli expands the aliases the runtime installed at start
    assert cli(fs1, "nway_add_ext 3241 7001").startswith("+OK extension 3241 added")
    assert cli(fs1, "nway_add_group 3240 2 sales").startswith("+OK")
    assert cli(fs1, "nway_login 3241 3240").startswith("+OK agent 3241 logged into 3240")
    assert cli(fs1, "nway_login 3241 3249").startswith("-ERR unknown group")
    listing = cli(fs1, "nway_list_exts")
    assert any(line.split()[:1] == ["3241"] for line in listing.splitlines()), listing
    # plain ESL does not expand aliases: the module is named
    assert fs1.api("nway_busy 3241").startswith("-ERR")  # no such api command
    assert fs1.api("python fsapps.api nway_busy 3241").startswith("+OK agent 3241 busy")
    assert agent_state(phones, "3241")["seat_status"] == "busy"
    assert fs1.api("python fsapps.api nway_ready 3241").startswith("+OK agent 3241 ready")
    assert fs1.api("python fsapps.api nway_fly").startswith("-ERR unknown command nway_fly")
    assert fs1.api("python fsapps.api nway_logout 3241").startswith("+OK agent 3241 logged out")
    assert fs1.api("python fsapps.api nway_rm_group 3240").startswith("+OK group 3240 removed")
