"""The relay between nodes (F5): a node rings an agent whose phone is registered on another node
at the SIP address of that node's relay profile (``relay_profile``, "external"), which its
runtime reads from its switch (``sofia xmlstatus profile external``) and publishes with its
heartbeat — not at the events' FreeSWITCH-IPv4, the machine's address, with no port. On the
other node the call lands in the profile's context (public), unauthenticated (no
``domain_name``), and the fsapps_agent_relay extension rings ``user/<ext>@<domain>`` with the
domain of the X-FSAPPS-Domain header: only a domain name gets there, and only a user of a
domain the node's directory serves answers.

fakefs follows what a real 1.10.12 showed (tests/switch/test_multinode.py runs the same on two
real switches): here both nodes listen on 127.0.0.1, each on ports of its own, while their
events name other addresses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakefs import Behaviour, Switch
from fakefs.scenario import DIALPLAN_DIR, wait_until
from fsapps.config import ConfigError, Settings, load_settings
from fsapps.domain.nodes import Nodes, profile_address
from fsapps.switch import acd
from tests.acd_support import DOMAIN, CallCenter, center
from tools.servers import FreshDatabase, RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads")

# what a real FreeSWITCH 1.10.12 answered (tests/switch), trimmed
REAL_XMLSTATUS = """<?xml version="1.0" encoding="ISO-8859-1"?>
<profile>
  <profile-info>
    <name>external</name>
    <domain-name>N/A</domain-name>
    <context>public</context>
    <sip-ip>127.0.0.1</sip-ip>
    <url>sip:mod_sofia@127.0.0.1:44553</url>
    <bind-url>sip:mod_sofia@127.0.0.1:44553;transport=udp,tcp</bind-url>
    <calls-in>0</calls-in>
  </profile-info>
</profile>
"""


@pytest.fixture
def cc(redis_server: RedisServer, database: FreshDatabase) -> Iterator[CallCenter]:
    yield from center(redis_server.url, database.dsn, callout_timeout=2)


def relay_legs(switch: Switch, extension: str) -> list:  # type: ignore[type-arg]
    return [ch for ch in switch.all_channels.values()
            if ch.destination_number == f"fsapps_agent_{extension}" and
            ch.direction == "inbound"]


# ------------------------------------------------------------------ pure parts -------------
@pytest.mark.parametrize(("answer", "address"), [
    (REAL_XMLSTATUS, "127.0.0.1:44553"),
    ("<url>sip:mod_sofia@10.1.2.3</url>", "10.1.2.3:5060"),  # no port in the url: 5060
    ("<url>sip:mod_sofia@[2001:db8::5]:5080</url>", "[2001:db8::5]:5080"),
    ("<url>sip:mod_sofia@sip.example.com:5080;transport=tcp</url>", "sip.example.com:5080"),
    ("Invalid Profile!\n", None),
    ("-ERR sofia Command not found!\n", None),
    ("<url>sip:mod_sofia@127.0.0.1:99999</url>", None),
    ("", None),
])
def test_profile_address_from_sofia_xmlstatus(answer: str, address: str | None) -> None:
    assert profile_address(answer) == address


def test_relay_profile_setting(tmp_path: Path) -> None:
    nowhere = tmp_path / "none.yaml"

    def load(environ: dict[str, str]) -> Settings:
        return load_settings(None, environ, system_path=nowhere, bundled_path=nowhere)

    assert load({}).relay_profile == "external"
    assert load({"FSAPPS_RELAY_PROFILE": "peers"}).relay_profile == "peers"
    for bad in ("", "a b", "ext/x", "x,y"):
        with pytest.raises(ConfigError, match="relay_profile"):
            load({"FSAPPS_RELAY_PROFILE": bad})


# ------------------------------------------------------------------ fakefs -----------------
def test_fakefs_profiles_answer_xmlstatus_and_take_ports_of_their_own() -> None:
    a = Switch("px1", ipv4="192.0.2.10", sip_ip="127.0.0.1", time_scale=0.05)
    b = Switch("px2", ipv4="192.0.2.10", sip_ip="127.0.0.1", time_scale=0.05)
    try:
        status = a.api("sofia xmlstatus profile external")
        assert "<context>public</context>" in status
        assert profile_address(status) == f"127.0.0.1:{a.profiles['external'].port}"
        assert profile_address(a.api("sofia xmlstatus profile internal")) == \
            f"127.0.0.1:{a.profiles['internal'].port}"
        assert a.api("sofia xmlstatus profile nosuch") == "Invalid Profile!\n"
        # one address, two nodes: no two profiles share a port
        ports = {p.port for sw in (a, b) for p in sw.profiles.values()}
        assert len(ports) == 4
    finally:
        a.shutdown(grace=1.0)
        b.shutdown(grace=1.0)


def test_fakefs_unknown_profile_and_unauthenticated_external_call() -> None:
    sw = Switch("px3", dialplan_dir=DIALPLAN_DIR, time_scale=0.05, domain=DOMAIN).start()
    try:
        leg, cause = sw.originate("sofia/nosuch/1001@127.0.0.1")
        assert leg is None and cause == "INVALID_PROFILE"  # as originate answered on 1.10.12
        trunk = sw.place_call("5551234", "nothing-here", profile="external", context="public",
                              authenticated=False)
        phone = sw.place_call("1001", "nothing-here", profile="internal", authenticated=True)
        assert trunk.get("domain_name") is None  # observed: no domain_name on external
        assert sw.api("eval [${domain_name}]") == "[]"  # nor a global one (conf/freeswitch)
        assert phone.get("domain_name") == DOMAIN
    finally:
        sw.shutdown(grace=1.0)


# ------------------------------------------------------------------ two nodes ---------------
def test_agent_on_node2_takes_a_queue_call_of_node1_through_node2s_relay_profile(
        cc: CallCenter) -> None:
    node1, node2 = cc.start_switch("node1"), cc.start_switch("node2")
    # FreeSWITCH-IPv4 (the machine) is not where SIP listens: both nodes on 127.0.0.1
    assert node2.ipv4 != "127.0.0.1" and node2.profiles["external"].ip == "127.0.0.1"
    relay2 = f"127.0.0.1:{node2.profiles['external'].port}"
    wait_until(lambda: Nodes(cc.ctx).relay_address("node2") == relay2, 5, "node2's relay")
    cc.group("701", group_callout_timeout=2, wrapup_seconds=0, group_call_mode=0)
    cc.agent("7011", ["701"], switch=node2, behaviour=Behaviour(answer_after_ms=50))
    assert cc.get("7011").reg_node == "node2" and cc.get("7011").reg_host == relay2
    assert acd.agent_endpoint(cc.ctx, DOMAIN, "7011", "node1") == \
        f"[sip_h_X-FSAPPS-Domain={DOMAIN}]sofia/external/fsapps_agent_7011@{relay2}"
    call = cc.call(node1, "13900000701", "7701", hangup_after_bridge_ms=300)
    wait_until(lambda: call.done.is_set(), 8, "the queue call over")
    offer = [ch for ch in node1.all_channels.values() if ch.get("fsapps_acd_agent") == "7011"]
    assert [ch.name for ch in offer] == [f"sofia/external/fsapps_agent_7011@{relay2}"]
    assert offer[0].get("originate_disposition") in (None, "SUCCESS")
    (relayed,) = relay_legs(node2, "7011")
    assert relayed.context == "public" and relayed.name.startswith("sofia/external/")
    assert relayed.get("domain_name") is None  # unauthenticated: the header names the domain
    assert relayed.get("sip_h_X-FSAPPS-Domain") == DOMAIN
    phone = [ch for ch in node2.all_channels.values()
             if ch.direction == "outbound" and ch.get("dialed_user") == "7011"]
    assert len(phone) == 1 and phone[0].answered and phone[0].get("dialed_domain") == DOMAIN
    assert call.answered and call.get("fsapps_acd_agent") is None
    wait_until(lambda: cc.get("7011").call_state == "ready", 5, "the agent free again")


def test_a_relay_naming_a_domain_the_node_does_not_serve_rings_nobody(cc: CallCenter) -> None:
    node1, node2 = cc.start_switch("node1"), cc.start_switch("node2")
    cc.agent("7021", [], switch=node2, behaviour=Behaviour(answer_after_ms=50))
    relay2 = f"127.0.0.1:{node2.profiles['external'].port}"
    # a domain name this node's directory does not serve: no such user there
    leg, cause = node1.originate(
        f"[sip_h_X-FSAPPS-Domain=evil.test]sofia/external/fsapps_agent_7021@{relay2}")
    assert leg is None and cause == "SUBSCRIBER_ABSENT"
    # no header: the relay extension does not match, nothing else does either
    leg, cause = node1.originate(f"sofia/external/fsapps_agent_7021@{relay2}")
    assert leg is None and cause == "NO_ROUTE_DESTINATION"
    # a header that would change the dial string never reaches it
    for header in (f"{DOMAIN},user/7021", f"{DOMAIN}|user/7021", "{x=y}" + DOMAIN, ""):
        inbound = node2.place_call("13900000721", "fsapps_agent_7021", profile="external",
                                   context="public", authenticated=False,
                                   variables={"sip_h_X-FSAPPS-Domain": header},
                                   behaviour=Behaviour(hangup_after_ms=None))
        wait_until(lambda inbound=inbound: inbound.done.is_set(), 5, "the relay refused")
        assert inbound.hangup_cause == "NO_ROUTE_DESTINATION", header
    assert not [ch for ch in node2.all_channels.values()
                if ch.direction == "outbound" and ch.get("dialed_user") == "7021"]
    assert len(relay_legs(node2, "7021")) == 6


def test_an_agent_on_a_node_without_a_relay_address_is_not_dialled_by_sip(
        cc: CallCenter) -> None:
    node1 = cc.start_switch("node1")
    cc.agent("7031", [], switch=node1)
    assert acd.agent_endpoint(cc.ctx, DOMAIN, "7031", "node1") == f"user/7031@{DOMAIN}"
    # registered on a node that beats no more (or never learned its relay profile's address)
    cc.ctx.redis.hset(cc.ctx.keys(DOMAIN).agent("7031"), "reg_node", "node9")
    assert Nodes(cc.ctx).relay_address("node9") is None
    assert acd.agent_endpoint(cc.ctx, DOMAIN, "7031", "node1") == f"user/7031@{DOMAIN}"
