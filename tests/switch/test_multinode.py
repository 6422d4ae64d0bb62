"""Two FreeSWITCH nodes on loopback sharing the session's Redis and PostgreSQL: an agent whose
phone is registered on one node answers a queue call that arrived on the other (F5).

fs1 is the session's node; fs2 is built and started here, from the same conf/ and dialplan/,
with ports of its own. Both listen on 127.0.0.1 (vars.xml local_ip_v4) while their events'
FreeSWITCH-IPv4 is the machine's detected address: a node reaching another must use where that
node's relay profile ("external", relay_profile) listens — host AND port — as each runtime
reads it from its switch (``sofia xmlstatus profile external``) and publishes it with its
heartbeat. The call reaches fs2 on its external profile (no authentication, fsapps_peers ACL:
vars.xml peers_cidr 127.0.0.1/32 lets the other node in), runs context public, where
dialplan/10_fsapps_acd.xml's fsapps_agent_relay extension rings the local user of the domain
named by the X-FSAPPS-Domain header.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest

from fsapps.domain.nodes import profile_address
from switch.conftest import DOMAIN, Stack, agent_state, api, wait_for
from switch.test_acd import agent, cdr_row
from switch.test_cti import CtiServer, cti, queue_call  # noqa: F401  (the cti fixture)
from tools.realswitch import RealSwitch

_groups = itertools.count(3500)


@pytest.fixture(scope="module")
def fs2(stack: Stack, fs1: RealSwitch) -> Iterator[RealSwitch]:
    """A second node next to fs1: same Redis, same database (migrated by fs1's fixture)."""
    sw = stack.switch("fs2").build(trunk_port=stack.trunk_port).start()
    yield sw
    sw.stop(timeout=20)


def relay_of(st: Stack, node: str) -> str | None:
    return st.redis.hget(f"fsapps:{{nodes}}:node:{node}:heartbeat", "relay")


@pytest.fixture
def group(fs1: RealSwitch, fs2: RealSwitch, phones: Stack) -> Iterator[str]:
    number = str(next(_groups))
    api(fs1, f"nway_add_group {number} 0")
    # each node publishes where its relay profile listens (the runtime asks its switch once
    # sofia runs): what another node dials to reach the phones registered there
    for sw in (fs1, fs2):
        wait_for(lambda sw=sw: relay_of(phones, sw.name) == f"127.0.0.1:{sw.external_port}",
                 15, f"{sw.name}'s relay address 127.0.0.1:{sw.external_port} published")
    yield number
    for ext in phones.redis.zrange(f"fsapps:{{{DOMAIN}}}:group:{number}:members", 0, -1):
        fs1.api(f"python fsapps.api nway_logout {ext}")


def relayed_leg(sw: RealSwitch, ext: str) -> dict[str, str] | None:
    rows = json.loads(sw.api("show channels as json")).get("rows") or []
    return next((row for row in rows if row.get("dest") == f"fsapps_agent_{ext}"), None)


def test_the_relay_profile_as_fakefs_models_it(fs2: RealSwitch) -> None:
    """What fsapps reads of sofia and fakefs answers the same way (tests/test_relay.py)."""
    assert profile_address(fs2.api("sofia xmlstatus profile external")) == \
        f"127.0.0.1:{fs2.external_port}"
    assert "<context>public</context>" in fs2.api("sofia xmlstatus profile external")
    assert fs2.api("sofia xmlstatus profile nosuch").strip() == "Invalid Profile!"
    assert fs2.api("originate sofia/nosuch/1@127.0.0.1 &park").strip() == "-ERR INVALID_PROFILE"
    # conf/freeswitch sets no domain_name global: only an authenticated channel has one
    assert fs2.api("eval [${domain_name}]").strip() == "[]"


def test_a_relay_for_a_domain_fs2_does_not_serve_rings_nobody(
        fs1: RealSwitch, fs2: RealSwitch, phones: Stack, group: str) -> None:
    agent(fs2, phones, "3521", group)
    relay = f"sofia/external/fsapps_agent_3521@127.0.0.1:{fs2.external_port}"
    for header, answer in (("evil.test", "-ERR SUBSCRIBER_ABSENT"),
                           ("", "-ERR NO_ROUTE_DESTINATION")):
        variables = f"{{sip_h_X-FSAPPS-Domain={header}}}" if header else ""
        assert fs1.api(f"originate {variables}{relay} &park").strip() == answer
    assert agent_state(phones, "3521")["call_state"] == "ready"


def settled(st: Stack, ext: str) -> bool:
    """Out of the call and holding no reservation: no lease, no offer, not ringing/talking."""
    state = agent_state(st, ext)
    offers = st.redis.hgetall(f"fsapps:{{{DOMAIN}}}:offers")
    return (state.get("call_state") in ("typing", "ready") and ext not in offers.values()
            and not st.redis.exists(f"fsapps:{{{DOMAIN}}}:lease:{ext}"))


def test_agent_on_fs2_answers_a_queue_call_that_arrived_on_fs1(
        fs1: RealSwitch, fs2: RealSwitch, phones: Stack, group: str) -> None:
    agent(fs2, phones, "3501", group)
    assert agent_state(phones, "3501")["reg_node"] == "fs2"
    call = phones.caller(fs1, f"7{group}", "13800000501", talk_ms=1500)
    # the phone rings on fs2, reached through fs2's relay profile: what fakefs models of
    # that leg (context public, no domain_name, the header as a variable) holds here
    relayed = wait_for(lambda: relayed_leg(fs2, "3501"), 20, "the relayed leg on fs2")
    assert relayed["context"] == "public" and relayed["name"].startswith("sofia/external/")
    assert fs2.api(f"uuid_getvar {relayed['uuid']} sip_h_X-FSAPPS-Domain") == DOMAIN
    assert fs2.api(f"uuid_getvar {relayed['uuid']} domain_name") == "_undef_"
    assert call.wait(40) == 0, call.errors()
    row = cdr_row(phones, "13800000501")
    assert row["node"] == "fs1"  # the queue call's own node writes its CDR
    assert row["destination_number"] == "3501"
    assert row["group_number"] == group
    assert row["a_destination_number"] == f"7{group}"
    assert row["answer_stamp"] is not None and row["billsec"] >= 1
    assert row["hangup_cause"] == "NORMAL_CLEARING"
    assert phones.attempts(row["uuid"]) == [("3501", "answered")]
    # the relay legs of fs2 are part of that call: no CDR of their own
    assert phones.sql("SELECT count(*) FROM cdr WHERE a_caller_id_number = %s",
                      "13800000501") == [(1,)]
    wait_for(lambda: settled(phones, "3501"), 15, "3501 free again, no reservation left")


def test_agents_on_both_nodes_each_take_one_of_two_calls(
        fs1: RealSwitch, fs2: RealSwitch, phones: Stack, group: str) -> None:
    agent(fs1, phones, "3511", group)
    agent(fs2, phones, "3512", group)
    # each call arrives on one node; with the group's sequence mode the first goes to 3511
    # (through fs1's relay), the second to 3512 (through fs2's): relays both ways
    first = phones.caller(fs2, f"7{group}", "13800000511", talk_ms=6000)
    # the second caller arrives while the first talks to one agent
    wait_for(lambda: any(agent_state(phones, ext).get("call_state") == "talking"
                         for ext in ("3511", "3512")), 20, "the first call answered")
    second = phones.caller(fs1, f"7{group}", "13800000512", talk_ms=1500)
    assert second.wait(40) == 0, second.errors()
    assert first.wait(40) == 0, first.errors()
    rows = [cdr_row(phones, caller) for caller in ("13800000511", "13800000512")]
    assert [row["node"] for row in rows] == ["fs2", "fs1"]
    assert {row["destination_number"] for row in rows} == {"3511", "3512"}
    # each agent was offered exactly one call: one attempt each, both answered
    offered = sorted(a for row in rows for a in phones.attempts(row["uuid"]))
    assert offered == [("3511", "answered"), ("3512", "answered")]
    for ext in ("3511", "3512"):
        wait_for(lambda ext=ext: settled(phones, ext), 15, f"{ext} free again")


def test_seed_transfer_to_an_extension_registered_on_fs2(
        fs1: RealSwitch, fs2: RealSwitch, phones: Stack, group: str,
        cti: CtiServer) -> None:  # noqa: F811  (the fixture imported above)
    """POST /api/transfer with a bare extension whose phone is registered on the other node
    (issue 16): fs1 rings it through fs2's relay profile (nodecommands.ring_extension, the
    ACD's path), not user/<ext> on fs1 (USER_NOT_REGISTERED), and the caller talks to it."""
    agent(fs1, phones, "3521", group)
    group2 = str(next(_groups))
    api(fs1, f"nway_add_group {group2} 0")
    agent(fs2, phones, "3522", group2)
    try:
        call = queue_call(fs1, phones, group, "3521", "13800000521", talk_ms=8000)
        cti.ok(cti.client("admin"), "POST", "/api/transfer",
               {"EvdedPhone": "3521", "EvdPhone": "3522", "EvdGateway": ""})
        relayed = wait_for(lambda: relayed_leg(fs2, "3522"), 20, "the relayed leg on fs2")
        assert fs2.api(f"uuid_getvar {relayed['uuid']} sip_h_X-FSAPPS-Call") == call.customer
        wait_for(lambda: (relayed_leg(fs2, "3522") or {}).get("callstate") == "ACTIVE", 15,
                 "3522 answered the transferred caller")
        assert call.caller.wait(40) == 0, call.caller.errors()
    finally:
        fs1.api("python fsapps.api nway_logout 3522")


def test_wellclient_single_step_transfer_to_an_extension_registered_on_fs2(
        fs1: RealSwitch, fs2: RealSwitch, phones: Stack, group: str,
        cti: CtiServer) -> None:  # noqa: F811  (the fixture imported above)
    """wellClient singleStepTransfer of a queue call on fs1 to an extension registered on fs2
    (issue 16): ``uuid_transfer <caller> bridge:{sip_h_X-FSAPPS-Call=<callId>}
    [sip_h_X-FSAPPS-Domain=..]sofia/external/fsapps_agent_<ext>@<fs2 relay> inline`` — the
    caller reaches the phone on fs2, whose leg names the caller's call."""
    agent(fs1, phones, "3541", group)
    group2 = str(next(_groups))
    api(fs1, f"nway_add_group {group2} 0")
    agent(fs2, phones, "3542", group2)
    try:
        call = queue_call(fs1, phones, group, "3541", "13800000541", talk_ms=8000)
        admin = cti.client("admin")
        path = (f"/api/csta/callControl/calls/{call.customer}/connections/"
                f"3541@{DOMAIN}%7C{call.customer}/singleStepTransfer")
        reply = cti.call(admin, "POST", path, {"transferTo": f"3542@{DOMAIN}"})
        assert reply.status_code == 204, reply.text
        relayed = wait_for(lambda: relayed_leg(fs2, "3542"), 20, "the relayed leg on fs2")
        assert fs2.api(f"uuid_getvar {relayed['uuid']} sip_h_X-FSAPPS-Call") == call.customer
        wait_for(lambda: (relayed_leg(fs2, "3542") or {}).get("callstate") == "ACTIVE", 15,
                 "3542 answered the transferred caller")
        assert call.caller.wait(40) == 0, call.caller.errors()
    finally:
        fs1.api("python fsapps.api nway_logout 3542")


def test_wellclient_single_step_conference_with_an_extension_registered_on_fs2(
        fs1: RealSwitch, fs2: RealSwitch, phones: Stack, group: str,
        cti: CtiServer) -> None:  # noqa: F811  (the fixture imported above)
    """wellClient singleStepConference of a queue call on fs1 with an extension registered on
    fs2 (issue 16): the invite runs on fs1, which holds the agent's leg (three_way needs it
    there), and rings the phone on fs2 through the relay."""
    agent(fs1, phones, "3551", group)
    group2 = str(next(_groups))
    api(fs1, f"nway_add_group {group2} 0")
    agent(fs2, phones, "3552", group2)
    try:
        call = queue_call(fs1, phones, group, "3551", "13800000551", talk_ms=8000)
        admin = cti.client("admin")
        path = (f"/api/csta/callControl/calls/{call.customer}/connections/"
                f"3551@{DOMAIN}%7C{call.customer}/singleStepConference")
        reply = cti.call(admin, "POST", path, {"conferenceParticipant": f"3552@{DOMAIN}"})
        assert reply.status_code == 204, reply.text
        relayed = wait_for(lambda: relayed_leg(fs2, "3552"), 20, "the relayed leg on fs2")
        assert fs2.api(f"uuid_getvar {relayed['uuid']} sip_h_X-FSAPPS-Call") == call.customer
        wait_for(lambda: (relayed_leg(fs2, "3552") or {}).get("callstate") == "ACTIVE", 15,
                 "3552 answered and joined")
        # fs1 shows the three_way application on the agent's leg once it runs there (the
        # relayed leg can show ACTIVE on fs2 a moment before fs1 lists the application)
        def three_way_on_fs1() -> bool:
            rows = json.loads(fs1.api("show channels as json")).get("rows") or []
            return any(row.get("application") == "three_way" for row in rows)
        wait_for(three_way_on_fs1, 5, "three_way running on fs1")
        assert call.caller.wait(40) == 0, call.caller.errors()
    finally:
        fs1.api("python fsapps.api nway_logout 3552")
