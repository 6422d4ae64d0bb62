"""Fidelity: every FreeSWITCH behaviour fakefs models that the fakefs tier depends on, checked
on the real FreeSWITCH 1.10.12, so fakefs cannot drift from it (../shared/FREESWITCH.md: where
they disagree, the real switch is right). Each check names its fakefs counterpart.

The switch here is this module's own (not the session's fs1): the test apps of
tests/fsapps_testapps are on its PYTHONPATH (test tier only), reached through a test-only
dialplan file in its public context, and report what they saw through ``TESTAPPS_REPORT``
(fsapps_testapps.state); the switch's side is read from ESL events and api commands. The event
order at shutdown is checked in test_lifecycle.py, where the nodes are shut down.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from switch.conftest import Stack, fsapps_cli, wait_for
from tools import sipp
from tools.esl import Esl
from tools.realswitch import ESL_PASSWORD, ROOT, RealSwitch

STATIC_DOMAIN = "static.fsapps"  # not one of fsapps' domains: the static XML answers for it

TESTAPPS_DIALPLAN = """<include>
  <!-- test tier only: the test apps of tests/fsapps_testapps -->
  <extension name="testapp_hangupvars">
    <condition field="destination_number" expression="^testapp_hangupvars_(self|caller)$">
      <action application="python" data="fsapps_testapps.hangupvars $1"/>
    </condition>
  </extension>
  <extension name="testapp_bridge">
    <condition field="destination_number" expression="^testapp_bridge_(\\d+)$">
      <action application="python"
              data="fsapps_testapps.bridge sofia/external/callee@127.0.0.1:$1"/>
    </condition>
  </extension>
  <extension name="testapp_park">
    <condition field="destination_number" expression="^testapp_park(_\\w+)?$">
      <action application="answer"/>
      <action application="park"/>
    </condition>
  </extension>
</include>
"""


def a1(user: str, password: str) -> str:
    return hashlib.md5(f"{user}:{STATIC_DOMAIN}:{password}".encode()).hexdigest()


# user -> (its params, the password the phone answers the challenge with, registers?)
# the same cases as tests/test_fakefs_directory.py (fakefs/directory.check_registration)
DIRECTORY_CASES: dict[str, tuple[dict[str, str], str, bool]] = {
    "5101": ({"password": "pw"}, "pw", True),
    "5102": ({"password": "pw"}, "wrong", False),
    "5103": ({"password": "pw", "auth-acl": ""}, "pw", False),              # F1
    "5104": ({"password": "pw", "auth-acl": "127.0.0.0/8"}, "pw", True),
    "5105": ({"password": "pw", "auth-acl": "loopback.auto"}, "pw", True),
    "5106": ({"password": "pw", "auth-acl": "10.0.0.0/8"}, "pw", False),
    "5107": ({"password": "pw", "auth-acl": "no_such_list"}, "pw", False),
    "5108": ({"a1-hash": a1("5108", "pa55")}, "pa55", True),
    "5109": ({"a1-hash": a1("5109", "pa55").upper()}, "pa55", False),
    "5110": ({"password": "pw", "a1-hash": ""}, "pw", False),             # "" is a hash
    "5111": ({"password": "", "a1-hash": ""}, "anything", True),
}


def static_directory() -> str:
    users = []
    for user, (params, _, _) in DIRECTORY_CASES.items():
        rendered = "".join(f'<param name="{k}" value="{v}"/>' for k, v in params.items())
        users.append(f'<user id="{user}"><params>{rendered}</params></user>')
    return (f'<include>\n  <domain name="{STATIC_DOMAIN}">\n    <groups><group name="default">'
            f'<users>\n      ' + "\n      ".join(users) +
            "\n    </users></group></groups>\n  </domain>\n</include>\n")


@dataclass
class Fid:
    sw: RealSwitch
    stack: Stack
    esl: Esl
    report: Path

    def reports(self, kind: str) -> list[dict[str, Any]]:
        if not self.report.exists():
            return []
        lines = self.report.read_text().splitlines()
        return [r["data"] for r in map(json.loads, lines) if r["kind"] == kind]

    def channel_events(self, uuid: str) -> list[dict[str, str]]:
        with self.esl.events_cond:
            return [e for e in self.esl.events if e.get("Unique-ID") == uuid]

    def event(self, name: str, uuid: str, timeout: float = 20.0) -> dict[str, str]:
        return self.esl.wait_event(lambda e: e.get("Event-Name") == name and
                                   e.get("Unique-ID") == uuid, timeout, f"{name} of {uuid}")

    def inbound(self, caller_number: str, timeout: float = 20.0) -> str:
        """The uuid of the inbound channel of a SIPp caller (by its caller id)."""
        event = self.esl.wait_event(
            lambda e: e.get("Event-Name") == "CHANNEL_CREATE" and
            e.get("Call-Direction") == "inbound" and
            e.get("Caller-Caller-ID-Number") == caller_number, timeout,
            f"the channel of caller {caller_number}")
        return event["Unique-ID"]


@pytest.fixture(scope="module")
def fid(stack: Stack) -> Iterator[Fid]:
    report = stack.base / "fidelity-report.jsonl"
    sw = stack.switch("fid", environ={
        "PYTHONPATH": os.pathsep.join([str(stack.site), str(ROOT / "tests")]),
        "TESTAPPS_REPORT": str(report)}).build(trunk_port=stack.trunk_port)
    (sw.conf / "dialplan" / "public" / "00_fsapps_testapps.xml").write_text(TESTAPPS_DIALPLAN)
    (sw.conf / "directory" / "static_fidelity.xml").write_text(static_directory())
    migrated = fsapps_cli(sw.config_path, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    sw.start()
    esl = Esl(sw.esl_port, ESL_PASSWORD)
    esl.subscribe("ALL")
    try:
        yield Fid(sw, stack, esl, report)
    finally:
        stack.stop_sipps()
        esl.close()
        sw.stop(timeout=20)


def udp_listening(port: int) -> bool:
    """SIPp has bound its UDP port (an INVITE sent before would be refused by ICMP)."""
    with open("/proc/net/udp") as table:
        return any(line.split()[1].endswith(f":{port:04X}") for line in table.readlines()[1:])


def ready_phone(st: Stack, **kwargs: Any) -> sipp.Sipp:
    uas = sipp.phone(**kwargs)
    st.sipps.append(uas)
    wait_for(lambda: udp_listening(uas.port), 10, "the SIPp phone listening")
    return uas


# ------------------------------------------------------------ (a) hangup-state variables ---
HANGUP_STATE = ("hangup_cause", "hangup_cause_q850", "start_uepoch", "answer_uepoch",
                "answer_epoch", "end_uepoch", "duration", "billsec", "sip_hangup_disposition")


@pytest.mark.parametrize("how", ["self", "caller"])
def test_hangup_state_variables_only_after_the_handler(fid: Fid, how: str) -> None:
    """fakefs: Switch.hangup_state (tests/test_fakefs_calls.py
    test_hangup_state_variables_only_after_the_handler, same app)."""
    number = {"self": "13900000001", "caller": "13900000002"}[how]
    call = fid.stack.caller(fid.sw, f"testapp_hangupvars_{how}", number,
                            talk_ms=1500 if how == "caller" else 30_000)
    uuid = fid.inbound(number)
    assert call.wait(30) == 0, call.errors()
    seen = wait_for(lambda: [r for r in fid.reports("hangupvars") if r["how"] == how], 10,
                    "the handler's record")[-1]  # type: ignore[index]
    complete = fid.event("CHANNEL_HANGUP_COMPLETE", uuid)
    hangup = fid.event("CHANNEL_HANGUP", uuid)

    assert seen["ready"] is False
    # mod_sofia sets sip_hangup_disposition=recv_bye itself when it handles the far end's BYE
    # (sofia_handle_sip_i_bye), just after the channel hung up (CHANNEL_HANGUP never has it):
    # a handler that reads it after seeing ready() turn false usually gets recv_bye, but may
    # be first; 0.3 s later (still in the handler) it is there. send_bye is set in the
    # hangup state, like the rest. (fakefs: Switch.hangup, side="remote".)
    assert seen["sip_hangup_disposition"] in ((None, "recv_bye") if how == "caller" else (None,))
    assert seen["later"]["sip_hangup_disposition"] == ("recv_bye" if how == "caller" else None)
    assert "variable_sip_hangup_disposition" not in hangup
    for name in HANGUP_STATE:
        if name != "sip_hangup_disposition":
            assert seen[name] is None, (name, seen[name])
            assert seen["later"][name] is None, (name, seen["later"][name])
    assert complete["variable_hangup_cause"] == "NORMAL_CLEARING"
    assert int(complete["variable_answer_uepoch"]) > 0
    assert int(complete["variable_billsec"]) >= (1 if how == "caller" else 0)
    assert int(complete["variable_duration"]) >= int(complete["variable_billsec"])
    assert complete["variable_sip_hangup_disposition"] == (
        "send_bye" if how == "self" else "recv_bye")
    assert hangup["Hangup-Cause"] == "NORMAL_CLEARING"
    for name in ("hangup_cause", "billsec", "duration", "answer_uepoch", "end_uepoch"):
        assert f"variable_{name}" not in hangup, name


# ------------------------------------------------------------ (b) a-leg after a bridge -----
def test_a_leg_variables_after_a_bridge(fid: Fid) -> None:
    """fakefs: Switch.bridge / run_bridge (tests/test_fakefs_calls.py, app
    fsapps_testapps.bridge); fsapps reads last_bridge_to / bridge_uuid (the agent's leg for the
    CDR), signal_bond (uuid_getvar while bridged; events), originate_disposition,
    (last_)bridge_hangup_cause."""
    phone = ready_phone(fid.stack, ring_ms=100)
    caller = fid.stack.caller(fid.sw, f"testapp_bridge_{phone.port}", "13900000011",
                              talk_ms=1500)
    a_uuid = fid.inbound("13900000011")
    bridge = fid.esl.wait_event(lambda e: e.get("Event-Name") == "CHANNEL_BRIDGE" and
                                e.get("Unique-ID") == a_uuid, 20, "the bridge")
    b_uuid = bridge["Other-Leg-Unique-ID"]
    assert bridge["Bridge-A-Unique-ID"] == a_uuid and bridge["Bridge-B-Unique-ID"] == b_uuid
    assert bridge["variable_signal_bond"] == b_uuid
    # while bridged: what commands.py reads to find the peer
    assert fid.sw.api(f"uuid_getvar {a_uuid} signal_bond").strip() == b_uuid
    assert fid.sw.api(f"uuid_getvar {b_uuid} signal_bond").strip() == a_uuid
    assert fid.sw.api(f"uuid_getvar {a_uuid} bridge_uuid").strip() == b_uuid
    assert caller.wait(30) == 0, caller.errors()
    seen = wait_for(lambda: [r for r in fid.reports("bridge") if r["uuid"] == a_uuid], 10,
                    "the handler's record")[-1]  # type: ignore[index]
    assert seen["originate_disposition"] == "SUCCESS"
    assert seen["DIALSTATUS"] == "SUCCESS"
    assert seen["last_bridge_to"] == b_uuid
    assert seen["bridge_uuid"] == b_uuid
    assert seen["signal_bond"] == b_uuid  # still set after the bridge ended
    assert str(seen["bridge_channel"]).startswith("sofia/external/callee@127.0.0.1:")
    assert seen["hangup_cause"] is None and seen["ready"] is False
    # the caller ended the bridge: the b-leg's cause is bridge_hangup_cause, but
    # last_bridge_hangup_cause stays unset (FREESWITCH.md's table is for a callee that hangs
    # up first; fakefs: test_bridge_answered_then_the_caller_hangs_up; fsapps reads an
    # answered party's cause from bridge_hangup_cause, cdr.attempt_cause)
    assert seen["bridge_hangup_cause"] == "NORMAL_CLEARING"
    assert seen["last_bridge_hangup_cause"] is None
    unbridge = fid.event("CHANNEL_UNBRIDGE", a_uuid)
    assert unbridge["Other-Leg-Unique-ID"] == b_uuid
    assert unbridge["variable_last_bridge_to"] == b_uuid
    assert unbridge["variable_signal_bond"] == b_uuid


# ------------------------------------------------------------ (d) directory params ---------
def test_directory_params_as_mod_sofia_reads_them(fid: Fid) -> None:
    """fakefs: directory.check_registration / check_network_list_ip
    (tests/test_fakefs_directory.py): a present param counts even when empty — auth-acl=""
    is an ACL named "" ("Rejected by user acl []"), a1-hash="" is the hash; a CIDR or a known
    list in auth-acl is honoured; an upper-case a1-hash never matches."""
    outcome = {}
    for user, (_, password, _) in DIRECTORY_CASES.items():
        reg = sipp.register(fid.sw.internal_port, user, password, STATIC_DOMAIN,
                            contact_port=5999)
        fid.stack.sipps.append(reg)
        outcome[user] = reg.wait(20) == 0
    assert outcome == {user: ok for user, (_, _, ok) in DIRECTORY_CASES.items()}
    log = (fid.sw.dir / "log" / "freeswitch.log").read_text(errors="replace")
    assert "Rejected by user acl []" in log


# ------------------------------------------------------------ (e) show channels, uuid_exists
def test_show_channels_as_json_and_uuid_exists(fid: Fid) -> None:
    """fakefs: api.show / api.uuid_exists; NodeRuntime.switch_channels reads row_count and
    each row's uuid (recover)."""
    caller = fid.stack.caller(fid.sw, "testapp_park", "13900000021", talk_ms=60_000)
    uuid = fid.inbound("13900000021")
    fid.event("CHANNEL_ANSWER", uuid)
    wait_for(lambda: uuid in fid.sw.api("show channels as json"), 10,
             "the channel in the core db")
    answer = json.loads(fid.sw.api("show channels as json"))
    assert isinstance(answer["row_count"], int) and answer["row_count"] == len(answer["rows"])
    [row] = [r for r in answer["rows"] if r["uuid"] == uuid]
    assert row["direction"] == "inbound" and row["cid_num"] == "13900000021"
    assert row["dest"] == "testapp_park" and row["context"] == "public"
    assert fid.sw.api(f"uuid_exists {uuid}") == "true"
    assert fid.sw.api("uuid_exists 00000000-0000-0000-0000-000000000000") == "false"
    caller.stop()
    fid.sw.api(f"uuid_kill {uuid}")
    fid.event("CHANNEL_DESTROY", uuid)
    wait_for(lambda: uuid not in fid.sw.api("show channels as json"), 10, "the row gone")
    answer = json.loads(fid.sw.api("show channels as json"))
    assert answer == {"row_count": 0} or answer["row_count"] == len(answer["rows"])
    assert fid.sw.api(f"uuid_exists {uuid}") == "false"


# ------------------------------------------------------------ (f) switchname / hostname ---
def test_switchname_and_hostname(fid: Fid) -> None:
    """fakefs: api.switchname / api.hostname and the absent switchname global; acd.node_name
    reads ``switchname``."""
    assert fid.sw.api("switchname") == "fid"  # switch.conf's switchname, no newline
    assert fid.sw.api("hostname") == socket.gethostname()
    # no switchname global in 1.10 (F3): mod_event_socket answers an empty reply so
    assert fid.sw.api("global_getvar switchname") == "-ERR no reply\n"
    assert fid.sw.api("eval ${switchname}") == "-ERR no reply\n"


# ------------------------------------------------------------ (g) uuid_transfer -----------
def test_uuid_transfer_changes_destination_number_at_once(fid: Fid) -> None:
    """fakefs: api.uuid_transfer / Switch.transfer (commit f0cfd9c): the new caller profile is
    the channel's as soon as the command answers, not when the session next routes."""
    caller = fid.stack.caller(fid.sw, "testapp_park", "13900000031", talk_ms=60_000)
    uuid = fid.inbound("13900000031")
    fid.event("CHANNEL_ANSWER", uuid)
    assert fid.sw.api(f"uuid_transfer {uuid} testapp_park_next XML public").startswith("+OK")
    assert fid.sw.api(f"uuid_getvar {uuid} destination_number").strip() == "testapp_park_next"
    caller.stop()
    fid.sw.api(f"uuid_kill {uuid}")
    fid.event("CHANNEL_DESTROY", uuid)
