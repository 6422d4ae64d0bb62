"""fakefs.scenario: several fake switches in one process that share nothing else (channels,
events, registrations, directory bindings' view of ``freeswitch``), wait helpers that fail with
a message naming what was awaited, and a close() that refuses to hide a crashed switch."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakefs_bindings import state

from fakefs import Behaviour, Channel, Switch, SwitchCrashed
from fakefs.scenario import CallCenter, call_center, wait_until

DOMAIN = "cc.test"
DIALPLAN = """<include><context name="default">
  <extension name="agents">
    <condition field="destination_number" expression="^(1\\d\\d\\d)$">
      <action application="set" data="hangup_after_bridge=true"/>
      <action application="bridge" data="user/$1@${domain_name}"/>
    </condition>
  </extension>
</context></include>"""


@pytest.fixture
def dialplan_dir(tmp_path: Path) -> Path:
    (tmp_path / "agents.xml").write_text(DIALPLAN, encoding="utf-8")
    return tmp_path


@pytest.fixture
def bindings() -> Iterator[None]:
    state.reset()
    yield
    state.reset()


def agent_leg(switch: Switch, customer: Channel) -> Channel:
    return wait_until(lambda: customer.peer and switch.channels.get(customer.peer), 3.0,
                      f"{switch.name}: {customer.caller_id_number} bridged to an agent")


def test_two_switches_share_nothing(dialplan_dir: Path, bindings: None) -> None:
    with call_center(dialplan_dir=dialplan_dir, time_scale=0.05, domain=DOMAIN) as cc:
        fs1, fs2 = cc.start_switch(), cc.start_switch()
        assert (fs1.name, fs2.name) == ("fs1", "fs2") and fs1.core_uuid != fs2.core_uuid
        for sw in (fs1, fs2):
            sw.xml_bindings.append(("fakefs_bindings.served", {"directory"}))
        state.USERS["1001"] = {"params": {"password": "1234"}}
        state.USERS["1002"] = {"params": {"password": "1234"}}
        assert cc.add_agent(fs1, "1001", behaviour=Behaviour(answer_after_ms=40)).ok
        assert cc.add_agent(fs2, "1002", behaviour=Behaviour(answer_after_ms=40)).ok

        c1 = cc.call(fs1, "13800000001", "1001")
        c2 = cc.call(fs2, "13800000002", "1002")
        a1, a2 = agent_leg(fs1, c1), agent_leg(fs2, c2)
        assert set(fs1.channels) == {c1.uuid, a1.uuid}
        assert set(fs2.channels) == {c2.uuid, a2.uuid}
        cc.wait_event(fs1, "CHANNEL_BRIDGE", Unique_ID=c1.uuid)
        cc.wait_event(fs2, "CHANNEL_BRIDGE", Unique_ID=c2.uuid)

        # Each bus carries its own switch's events only.
        for sw in (fs1, fs2):
            assert {e.headers["Core-UUID"] for e in sw.bus.history} == {sw.core_uuid}
            assert {e.headers["FreeSWITCH-Switchname"] for e in sw.bus.history} == {sw.name}
        # Each directory binding call saw its own switch through `import freeswitch`.
        assert {c["switchname"] for c in state.calls("1001")} == {"fs1"}
        assert {c["switchname"] for c in state.calls("1002")} == {"fs2"}

        # Registrations are per switch: 1001 is known to fs2 but not registered there.
        assert cc.add_agent(fs2, "1001", register=False).code == 0
        assert fs2.api(f"originate user/1001@{DOMAIN} &park()") == \
            "-ERR USER_NOT_REGISTERED\n"
        assert not fs1.registrations.get(("1002", DOMAIN))

        fs1.api(f"uuid_kill {a1.uuid}")
        done = cc.wait_event(fs1, "CHANNEL_HANGUP_COMPLETE", Unique_ID=c1.uuid,
                             where={"variable_bridge_hangup_cause": "NORMAL_CLEARING"})
        assert done.headers["Hangup-Cause"] == "NORMAL_CLEARING"
        assert c2.up and a2.up
        fs2.api(f"uuid_kill {c2.uuid}")
        cc.idle(timeout=3.0)
    assert not fs1.running and not fs2.running


def test_wait_helpers_time_out_with_a_clear_message(dialplan_dir: Path) -> None:
    cc = CallCenter(dialplan_dir=dialplan_dir, time_scale=0.05, domain=DOMAIN)
    try:
        fs1 = cc.start_switch("node-a")
        with pytest.raises(TimeoutError, match=r"agent 1001 answers not met within 0\.05s"):
            cc.wait_until(lambda: False, 0.05, "agent 1001 answers")
        with pytest.raises(TimeoutError, match=r"node-a: no CHANNEL_ANSWER event with "
                                               r"\{'Unique-ID': 'nope'\} within 0\.05s"):
            cc.wait_event(fs1, "CHANNEL_ANSWER", 0.05, Unique_ID="nope")
        with pytest.raises(TimeoutError, match=r"'variable_x': '1'"):
            cc.wait_event(fs1, "CHANNEL_ANSWER", 0.05, where={"variable_x": "1"})
        cc.add_agent(fs1, "1003", behaviour=Behaviour(answer_after_ms=None))
        customer = cc.call(fs1, "13800000003", "1003")
        with pytest.raises(TimeoutError, match=r"channels still up after 0\.05s: .*node-a:"):
            cc.idle(timeout=0.05)
        fs1.api(f"uuid_kill {customer.uuid}")
        cc.idle(timeout=3.0)
    finally:
        cc.close()


def test_close_raises_if_a_switch_crashed_and_still_shuts_all_down(dialplan_dir: Path,
                                                                    bindings: None) -> None:
    cc = CallCenter(dialplan_dir=dialplan_dir, time_scale=0.05, domain=DOMAIN)
    fs1, fs2 = cc.start_switch(), cc.start_switch()
    cc.add_agent(fs1, "1004", behaviour=Behaviour(answer_after_ms=40))
    customer = cc.call(fs1, "13800000004", "1004")
    agent_leg(fs1, customer)
    fs2.xml_bindings.append(("fakefs_bindings.served", {"directory"}))
    state.RESPONDER = lambda params: None  # what crashes a real FreeSWITCH
    with pytest.raises(SwitchCrashed):
        fs2.register("1005", DOMAIN)
    with pytest.raises(AssertionError, match=r"fs2: crashed: xml_fetch .* returned NoneType"):
        cc.close()
    assert not fs1.channels and not fs1.running and not fs2.running
    assert customer.hangup_cause == "SYSTEM_SHUTDOWN"


def test_call_center_context_closes_on_error(dialplan_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with call_center(dialplan_dir=dialplan_dir, time_scale=0.05, domain=DOMAIN) as cc:
            fs1 = cc.start_switch()
            raise RuntimeError("boom")
    assert not fs1.running
