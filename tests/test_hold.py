"""fsapps.switch.hold: a switch-side hold right after the bridge still gets the hold music to the
peer. On FreeSWITCH 1.10.12 a ``uuid_hold`` within the bridge's lead frames leaves the music
queued until the unhold (fakefs.media's set_hold models it; observed in tests/switch/test_cti.py):
the node's hold command (CTI /api/hold, nway_uuid_hold, CSTA hold) lets the bridge settle
first."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from fakefs import Behaviour, Channel, Switch
from fakefs.media import BRIDGE_LEAD_US
from fakefs.scenario import wait_until
from fsapps.switch import hold, nodecommands

DOMAIN = "gaofei.cn"
AGENT = "1001"
DIALPLAN = """<include><context name="default">
  <extension name="agents">
    <condition field="destination_number" expression="^(10\\d\\d)$">
      <action application="bridge" data="user/$1@${domain_name}"/>
    </condition>
  </extension>
</context></include>"""
MOH = "media:local_stream://moh"


@pytest.fixture
def switch() -> Iterator[Switch]:
    sw = Switch("hold1", domain=DOMAIN, time_scale=0.05, seed=5)
    sw.dialplan.load_text(DIALPLAN)
    sw.start()
    sw.add_user(AGENT, DOMAIN)
    assert sw.register(AGENT, DOMAIN, behaviour=Behaviour(answer_after_ms=30)).ok
    try:
        yield sw
    finally:
        sw.shutdown(grace=1.0)
        assert not sw.python_errors, sw.python_errors


def execute(sw: Switch) -> Any:
    return lambda cmd, args: sw.api(f"{cmd} {args}".strip())


def bridged(sw: Switch) -> tuple[Channel, Channel]:
    customer = sw.place_call("13800000000", AGENT, domain=DOMAIN)
    agent = wait_until(lambda: customer.peer and sw.channels.get(customer.peer), 3.0,
                       "customer bridged to the agent")
    wait_until(lambda: agent.peer == customer.uuid and agent.times.get("bridged"), 3.0,
               "agent leg bridged back")
    return customer, agent


def test_a_hold_right_after_the_bridge_plays_the_music(switch: Switch) -> None:
    customer, agent = bridged(switch)
    assert time.time() * 1e6 - customer.times["bridged"] < BRIDGE_LEAD_US  # still fresh
    assert hold.hold(execute(switch), agent.uuid).startswith("+OK")
    assert agent.held and switch.hears(customer.uuid) == {MOH}
    assert switch.api(f"uuid_hold off {agent.uuid}").startswith("+OK")
    assert switch.hears(customer.uuid) == {agent.uuid}  # no music left over


def test_the_node_and_csta_hold_commands_let_the_bridge_settle(switch: Switch) -> None:
    ctx: Any = type("Ctx", (), {"settings": type("S", (), {"domains": (DOMAIN,),
                                                           "default_domain": DOMAIN})()})()
    customer, agent = bridged(switch)
    reply = nodecommands.serve(ctx, execute(switch), "hold1",
                               {"cmd": "hold", "uuid": agent.uuid}).text
    assert reply.startswith("+OK"), reply
    assert switch.hears(customer.uuid) == {MOH}
    switch.api(f"uuid_hold off {agent.uuid}")
    switch.api(f"uuid_kill {customer.uuid}")

    customer, agent = bridged(switch)
    reply = nodecommands.serve(ctx, execute(switch), "hold1",
                               {"cmd": "csta", "action": "hold", "uuid": agent.uuid}).text
    assert reply.startswith("+OK"), reply
    assert switch.hears(customer.uuid) == {MOH}


def test_no_wait_without_a_fresh_bridge(switch: Switch) -> None:
    slept: list[float] = []
    customer, agent = bridged(switch)
    late = customer.times["bridged"] / 1e6 + 5.0
    hold.hold(execute(switch), agent.uuid, clock=lambda: late, sleep=slept.append)
    assert slept == []
    assert hold.settle_seconds(execute(switch), "00000000-0000-0000-0000-000000000000",
                               time.time()) == 0.0


def test_the_wait_follows_the_peers_ptime() -> None:
    dump = "Caller-Channel-Bridged-Time: 1000000000\nvariable_rtp_use_codec_ptime: 30\n"
    replies = {"uuid_getvar": "peer-uuid\n", "uuid_dump": dump}
    wait = hold.settle_seconds(lambda cmd, args: replies[cmd], "x", 1000.0)
    assert wait == pytest.approx(hold.SETTLE_FACTOR * hold.LEAD_FRAMES * 0.030)
