"""Fidelity of fakefs' supervisor primitives (seed 003, FREESWITCH.md): eavesdrop and its DTMF
modes, whisper, three_way, force hangup (uuid_kill), hold, and conferences (seed 000's
conference::maintenance events). Who hears whom is read from ``Switch.hears``.

Eavesdrop modes follow FreeSWITCH's source (mod_dptools eavesdrop_function,
switch_ivr_eavesdrop_session): DTMF 1 / ``eavesdrop_whisper_aleg`` set ED_MUX_READ — the
eavesdropper is mixed into the target's read stream, which its bridged PEER hears; DTMF 2 /
``eavesdrop_whisper_bleg`` set ED_MUX_WRITE — the TARGET hears. Seed 003 agrees for the keys
(1: the extension's peer, 2: the extension) but describes the two variables the other way
round; the source wins.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from fakefs import Behaviour, Channel, Switch
from fakefs.events import Event
from fakefs.media import BRIDGE_LEAD_US
from fakefs.scenario import wait_until

DOMAIN = "gaofei.cn"
AGENT, SUPERVISOR = "1001", "1900"
CONFERENCE = "710894413-gaofei.cn"

DIALPLAN = f"""<include><context name="default">
  <extension name="agents">
    <condition field="destination_number" expression="^(10\\d\\d)$">
      <action application="set" data="hangup_after_bridge=true"/>
      <action application="bridge" data="user/$1@${{domain_name}}"/>
    </condition>
  </extension>
  <extension name="conference">
    <condition field="destination_number" expression="^710894413$">
      <action application="conference" data="{CONFERENCE}"/>
    </condition>
  </extension>
</context></include>"""

# Seed 000's add-member event, minus the headers every event carries and xswitch's device_id.
SEED_MEMBER_HEADERS = """Conference-Name Conference-Domain Conference-Size Conference-Ghosts
Conference-Profile-Name Conference-Unique-ID Conference-Rate Conference-Interval Floor
Channel-State Channel-Call-State Channel-State-Number Channel-Name Unique-ID Call-Direction
Presence-Call-Direction Channel-HIT-Dialplan Channel-Presence-ID Channel-Call-UUID Answer-State
Channel-Read-Codec-Name Channel-Read-Codec-Rate Channel-Read-Codec-Bit-Rate
Channel-Write-Codec-Name Channel-Write-Codec-Rate Channel-Write-Codec-Bit-Rate Caller-Direction
Caller-Logical-Direction Caller-Username Caller-Dialplan Caller-Caller-ID-Name
Caller-Caller-ID-Number Caller-Orig-Caller-ID-Name Caller-Orig-Caller-ID-Number
Caller-Network-Addr Caller-ANI Caller-Destination-Number Caller-Unique-ID Caller-Source
Caller-Context Caller-Channel-Name Caller-Profile-Index Caller-Profile-Created-Time
Caller-Channel-Created-Time Caller-Channel-Answered-Time Caller-Channel-Progress-Time
Caller-Channel-Progress-Media-Time Caller-Channel-Hangup-Time Caller-Channel-Transfer-Time
Caller-Channel-Resurrect-Time Caller-Channel-Bridged-Time Caller-Channel-Last-Hold
Caller-Channel-Hold-Accum Caller-Screen-Bit Caller-Privacy-Hide-Name Caller-Privacy-Hide-Number
Video Hear See Speak Talking Mute-Detect Hold Member-ID Member-Type Member-Ghost Energy-Level
Current-Energy Action""".split()


@pytest.fixture
def switch() -> Iterator[Switch]:
    sw = Switch("sup1", domain=DOMAIN, time_scale=0.05, seed=3)
    sw.dialplan.load_text(DIALPLAN)
    sw.start()
    for ext in (AGENT, SUPERVISOR):
        sw.add_user(ext, DOMAIN)
        assert sw.register(ext, DOMAIN, behaviour=Behaviour(answer_after_ms=60)).ok
    try:
        yield sw
    finally:
        sw.shutdown(grace=1.0)
        assert not sw.python_errors, sw.python_errors


def bridged_call(sw: Switch, caller: str = "13800000000") -> tuple[Channel, Channel]:
    """A customer calls the agent; returns (customer leg, agent leg) once they are bridged."""
    customer = sw.place_call(caller, AGENT, domain=DOMAIN)
    agent = wait_until(lambda: customer.peer and sw.channels.get(customer.peer), 3.0,
                       "customer bridged to the agent")
    wait_until(lambda: agent.peer == customer.uuid, 3.0, "agent leg bridged back")
    return customer, agent


def originate(sw: Switch, line: str) -> Channel:
    reply = sw.api(f"originate {line}")
    assert reply.startswith("+OK "), reply
    return sw.all_channels[reply.split()[1]]


def hears(sw: Switch, channel: Channel, expected: set[str], what: str) -> None:
    wait_until(lambda: sw.hears(channel.uuid) == expected, 3.0,
               f"{what}: {sw.hears(channel.uuid)} -> {expected}")


def hangup_complete(sw: Switch, channel: Channel) -> Event:
    return sw.bus.wait_for(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE"
                           and e.headers.get("Unique-ID") == channel.uuid, 3.0)


# ---------------------------------------------------------------- eavesdrop ----------------
def test_eavesdrop_listens_to_both_legs_and_is_not_heard(switch: Switch) -> None:
    customer, agent = bridged_call(switch)
    sup = originate(switch, f"user/{SUPERVISOR}@{DOMAIN} &eavesdrop({agent.uuid})")
    hears(switch, sup, {agent.uuid, customer.uuid}, "supervisor listening")
    assert switch.hears(agent.uuid) == {customer.uuid}
    assert switch.hears(customer.uuid) == {agent.uuid}
    # The target hangs up: the eavesdrop ends, and so does the originated supervisor leg.
    assert switch.api(f"uuid_kill {agent.uuid}") == "+OK\n"
    assert hangup_complete(switch, sup).headers["Hangup-Cause"] == "NORMAL_CLEARING"
    hangup_complete(switch, customer)


def test_eavesdrop_dtmf_modes_inline_form(switch: Switch) -> None:
    customer, agent = bridged_call(switch)
    # Seed 003's inline form, quotes and all.
    sup = originate(switch, f"{{eavesdrop_enable_dtmf=true}}user/{SUPERVISOR}@{DOMAIN} "
                            f"'set:eavesdrop_enable_dtmf=true,eavesdrop:{agent.uuid}' inline")
    assert sup.get("eavesdrop_enable_dtmf") == "true"
    hears(switch, sup, {agent.uuid, customer.uuid}, "listening")
    switch.send_dtmf(sup, "2")  # whisper to the extension (the eavesdrop target)
    hears(switch, agent, {customer.uuid, sup.uuid}, "2: agent hears supervisor")
    assert switch.hears(customer.uuid) == {agent.uuid}
    switch.send_dtmf(sup, "1")  # speak to the extension's peer
    hears(switch, customer, {agent.uuid, sup.uuid}, "1: customer hears supervisor")
    hears(switch, agent, {customer.uuid}, "1: agent no longer hears supervisor")
    switch.send_dtmf(sup, "3")  # three-way
    hears(switch, agent, {customer.uuid, sup.uuid}, "3: agent hears supervisor")
    hears(switch, customer, {agent.uuid, sup.uuid}, "3: customer hears supervisor")
    assert switch.hears(sup.uuid) == {agent.uuid, customer.uuid}
    switch.send_dtmf(sup, "0")  # back to listening
    hears(switch, agent, {customer.uuid}, "0: agent alone with customer")
    hears(switch, customer, {agent.uuid}, "0: customer alone with agent")
    switch.send_dtmf(sup, "*")  # ends the eavesdrop; the inline dialplan is done: hangup
    hangup_complete(switch, sup)
    assert agent.up and customer.up and switch.hears(agent.uuid) == {customer.uuid}


def test_eavesdrop_dtmf_disabled(switch: Switch) -> None:
    customer, agent = bridged_call(switch)
    sup = originate(switch, f"{{eavesdrop_enable_dtmf=false}}user/{SUPERVISOR}@{DOMAIN} "
                            f"&eavesdrop({agent.uuid})")
    hears(switch, sup, {agent.uuid, customer.uuid}, "listening")
    switch.send_dtmf(sup, "3")
    wait_until(lambda: list(sup.dtmf) == ["3"], 2.0, "digit queued, not consumed")
    assert switch.hears(agent.uuid) == {customer.uuid}
    assert switch.hears(customer.uuid) == {agent.uuid}


@pytest.mark.parametrize(("variables", "agent_hears_sup", "customer_hears_sup"), [
    ("eavesdrop_whisper_aleg=true", False, True),   # ED_MUX_READ, like DTMF 1
    ("eavesdrop_whisper_bleg=true", True, False),   # ED_MUX_WRITE, like DTMF 2
    ("eavesdrop_whisper_aleg=true,eavesdrop_whisper_bleg=true", True, True),
])
def test_eavesdrop_whisper_variables(switch: Switch, variables: str, agent_hears_sup: bool,
                                     customer_hears_sup: bool) -> None:
    customer, agent = bridged_call(switch)
    sup = originate(switch, f"{{{variables}}}user/{SUPERVISOR}@{DOMAIN} &eavesdrop({agent.uuid})")
    hears(switch, sup, {agent.uuid, customer.uuid}, "supervisor hears both")
    hears(switch, agent, {customer.uuid} | ({sup.uuid} if agent_hears_sup else set()), "agent")
    hears(switch, customer, {agent.uuid} | ({sup.uuid} if customer_hears_sup else set()),
          "customer")


def test_eavesdrop_bridge_aleg_hears_only_the_target(switch: Switch) -> None:
    customer, agent = bridged_call(switch)
    sup = originate(switch, f"{{eavesdrop_bridge_aleg=true}}user/{SUPERVISOR}@{DOMAIN} "
                            f"&eavesdrop({agent.uuid})")
    hears(switch, sup, {agent.uuid}, "only the target's own voice")


def test_eavesdrop_on_a_missing_uuid_returns_at_once(switch: Switch) -> None:
    sup = originate(switch, f"user/{SUPERVISOR}@{DOMAIN} &eavesdrop(no-such-uuid)")
    event = hangup_complete(switch, sup)
    assert event.headers["Hangup-Cause"] == "NORMAL_CLEARING"
    assert sup.eavesdrop is None


def test_eavesdrop_ends_when_the_supervisor_hangs_up(switch: Switch) -> None:
    customer, agent = bridged_call(switch)
    sup = originate(switch, f"user/{SUPERVISOR}@{DOMAIN} &eavesdrop({agent.uuid})")
    hears(switch, sup, {agent.uuid, customer.uuid}, "listening")
    switch.hangup(sup, "NORMAL_CLEARING", side="remote")
    hangup_complete(switch, sup)
    wait_until(lambda: sup.eavesdrop is None, 2.0, "eavesdrop released")
    assert agent.up and customer.up


# ---------------------------------------------------------------- three-way ----------------
def test_three_way_inline(switch: Switch) -> None:
    customer, agent = bridged_call(switch)
    sup = originate(switch, f"user/{SUPERVISOR}@{DOMAIN} three_way:{agent.uuid} inline")
    hears(switch, sup, {agent.uuid, customer.uuid}, "supervisor hears both")
    hears(switch, agent, {customer.uuid, sup.uuid}, "agent hears both")
    hears(switch, customer, {agent.uuid, sup.uuid}, "customer hears both")
    switch.send_dtmf(sup, "0")  # three_way takes no DTMF commands
    wait_until(lambda: list(sup.dtmf) == ["0"], 2.0, "digit ignored")
    assert sup.uuid in switch.hears(agent.uuid)


# ---------------------------------------------------------------- force hangup -------------
def test_uuid_kill_agent_leg(switch: Switch) -> None:
    customer, agent = bridged_call(switch)
    assert agent.get("signal_bond") == customer.uuid
    assert switch.api(f"uuid_kill {agent.uuid} CALL_REJECTED") == "+OK\n"
    assert hangup_complete(switch, agent).headers["Hangup-Cause"] == "CALL_REJECTED"
    # hangup_after_bridge=true: the customer hangs up with the agent's cause.
    done = hangup_complete(switch, customer)
    assert done.headers["Hangup-Cause"] == "CALL_REJECTED"
    assert done.headers["variable_bridge_hangup_cause"] == "CALL_REJECTED"
    assert switch.api(f"uuid_kill {agent.uuid}") == "-ERR No Such Channel!\n"
    wait_until(lambda: not switch.channels, 2.0, "no channels left")


def test_uuid_kill_signal_bond_leg(switch: Switch) -> None:
    customer, agent = bridged_call(switch)
    bond = agent.get("signal_bond")
    assert bond == customer.uuid
    assert switch.api(f"uuid_kill {bond} manager_request") == "+OK\n"
    assert hangup_complete(switch, customer).headers["Hangup-Cause"] == "MANAGER_REQUEST"
    # The agent leg left in the bridge is cleared normally, whatever the customer's cause.
    agent_done = hangup_complete(switch, agent)
    assert agent_done.headers["Hangup-Cause"] == "NORMAL_CLEARING"
    assert agent_done.headers["variable_sip_hangup_disposition"] == "send_bye"
    wait_until(lambda: not switch.channels, 2.0, "no channels left")


def test_uuid_kill_cause_parsing(switch: Switch) -> None:
    customer, agent = bridged_call(switch)
    assert switch.api(f"uuid_kill {customer.uuid} 17") == "+OK\n"
    assert hangup_complete(switch, customer).headers["Hangup-Cause"] == "USER_BUSY"
    hangup_complete(switch, agent)
    assert switch.api("uuid_kill") == "-USAGE: <uuid> [cause]\n"


# ---------------------------------------------------------------- hold ---------------------
def past_the_lead_frames(*legs: Channel) -> None:
    """Wait until the bridge of ``legs`` is older than its lead frames: a ``uuid_hold`` from
    then on gets the hold music to the peer at once (a real switch's rule, fakefs.api)."""
    bridged = max(leg.times["bridged"] for leg in legs)
    time.sleep(max(0.0, (bridged + BRIDGE_LEAD_US) / 1e6 - time.time()) + 0.01)


def test_uuid_hold_and_unhold(switch: Switch) -> None:
    customer, agent = bridged_call(switch)
    past_the_lead_frames(customer, agent)
    assert switch.api(f"uuid_hold {agent.uuid}") == "+OK Success\n"
    held = switch.bus.wait_for(lambda e: e.name == "CHANNEL_HOLD", 2.0)
    assert held.headers["Unique-ID"] == agent.uuid
    assert held.headers["Channel-Call-State"] == "HELD"
    assert switch.hears(customer.uuid) == {"media:local_stream://moh"}
    assert switch.hears(agent.uuid) == set()
    assert switch.api(f"uuid_hold off {agent.uuid}") == "+OK Success\n"
    unheld = switch.bus.wait_for(lambda e: e.name == "CHANNEL_UNHOLD", 2.0)
    assert unheld.headers["Unique-ID"] == agent.uuid
    assert switch.hears(customer.uuid) == {agent.uuid}
    assert switch.hears(agent.uuid) == {customer.uuid}
    # The held channel's hold_music decides what its peer hears.
    assert switch.api(f"uuid_setvar {agent.uuid} hold_music /sounds/moh.wav") == "+OK\n"
    assert switch.api(f"uuid_hold toggle {agent.uuid}") == "+OK Success\n"
    assert switch.hears(customer.uuid) == {"media:/sounds/moh.wav"}
    assert switch.api(f"uuid_hold toggle {agent.uuid}") == "+OK Success\n"
    assert switch.hears(customer.uuid) == {agent.uuid}
    assert switch.api("uuid_hold no-such-uuid") == "-ERR Operation Failed\n"


def test_eavesdropper_hears_the_hold_music_the_target_hears(switch: Switch) -> None:
    customer, agent = bridged_call(switch)
    sup = originate(switch, f"user/{SUPERVISOR}@{DOMAIN} &eavesdrop({agent.uuid})")
    hears(switch, sup, {agent.uuid, customer.uuid}, "listening")
    past_the_lead_frames(customer, agent)
    switch.api(f"uuid_hold {customer.uuid}")
    hears(switch, sup, {agent.uuid, "media:local_stream://moh"}, "target's write stream")


def test_uuid_hold_within_the_bridge_lead_frames_queues_the_music(switch: Switch) -> None:
    """FreeSWITCH 1.10.12 (observed, tests/switch/test_cti.py): the hold music reaches the
    peer as a broadcast its bridge loop runs only after its lead frames, and a held (suspended)
    partner stops that count. A ``uuid_hold`` right after the bridge: silence for the whole
    hold, then the looped music once the unhold lets the count go on — while they talk."""
    customer, agent = bridged_call(switch)
    assert switch.api(f"uuid_hold {agent.uuid}") == "+OK Success\n"
    assert agent.callstate == "HELD"
    assert switch.hears(customer.uuid) == set()
    assert switch.api(f"uuid_hold off {agent.uuid}") == "+OK Success\n"
    assert switch.hears(customer.uuid) == {agent.uuid, "media:local_stream://moh"}
    assert switch.hears(agent.uuid) == {customer.uuid}


# ---------------------------------------------------------------- conference ---------------
def test_conference_events_and_audio(switch: Switch) -> None:
    first = switch.place_call("819", "710894413", domain=DOMAIN)
    created = switch.bus.wait_for(lambda e: e.headers.get("Action") == "conference-create", 3.0)
    second = switch.place_call("820", "710894413", domain=DOMAIN)

    def member_event(action: str, channel: Channel) -> Event:
        return switch.bus.wait_for(lambda e: e.subclass == "conference::maintenance"
                                   and e.headers.get("Action") == action
                                   and e.headers.get("Unique-ID") == channel.uuid, 3.0)

    add1, add2 = member_event("add-member", first), member_event("add-member", second)
    assert created.headers["Conference-Name"] == CONFERENCE
    assert "Unique-ID" not in created.headers and "Channel-Name" not in created.headers
    missing = [h for h in SEED_MEMBER_HEADERS if h not in add1.headers]
    assert not missing
    assert [k for k in add1.headers if k in SEED_MEMBER_HEADERS] == SEED_MEMBER_HEADERS
    assert not any(k.startswith("variable_") for k in add1.headers)
    assert (add1.headers["Conference-Size"], add2.headers["Conference-Size"]) == ("1", "2")
    assert add1.headers["Member-ID"] != add2.headers["Member-ID"]
    assert add1.headers["Caller-Caller-ID-Number"] == "819"
    assert add1.headers["Conference-Unique-ID"] == add2.headers["Conference-Unique-ID"] \
        == created.headers["Conference-Unique-ID"]
    assert add1.headers["Conference-Domain"] == DOMAIN
    hears(switch, first, {second.uuid}, "first member hears the second")
    hears(switch, second, {first.uuid}, "second member hears the first")

    switch.hangup(first, "NORMAL_CLEARING", side="remote")
    left = member_event("del-member", first)
    assert left.headers["Conference-Size"] == "1"
    assert switch.hears(second.uuid) == set()
    switch.api(f"uuid_kill {second.uuid}")
    member_event("del-member", second)
    destroyed = switch.bus.wait_for(
        lambda e: e.headers.get("Action") == "conference-destroy", 3.0)
    assert "Unique-ID" not in destroyed.headers
    actions = [e.headers["Action"] for e in switch.bus.events("CUSTOM", "conference::maintenance")]
    assert actions == ["conference-create", "add-member", "add-member", "del-member",
                       "del-member", "conference-destroy"]
