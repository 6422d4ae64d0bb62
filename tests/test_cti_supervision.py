"""Supervision over the CTI server (seed 003): listen with DTMF mode switching, whisper to the
agent or to the customer, barge, force hangup of both legs, force ready / busy / logout, and
the admin-only /cli passthrough — each checked on the fake switch (who hears whom, which legs
hung up) and in the agent state; plus a command routed to the node that holds the call."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cti_support import GROUP, CtiStack, cti_stack, start_server
from pubsub_capture import Subscriber

from fakefs import Behaviour, Channel, Switch
from fakefs.scenario import wait_until
from fsapps.domain.agents import Agents
from fsapps.domain.nodes import Nodes

AGENT, SUPERVISOR = "1001", "1900"


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any, no_leaked_switch_threads: None) -> Iterator[CtiStack]:
    with cti_stack(redis_server.url, database.dsn, switches=2) as s:
        for switch in s.switches:
            switch.add_user(SUPERVISOR, s.center.domain, password="1234")
        assert s.switch.register(SUPERVISOR, s.center.domain, password="1234",
                                 behaviour=Behaviour(answer_after_ms=30)).ok
        yield s


@pytest.fixture
def cc(stack: CtiStack) -> Iterator[CtiStack]:
    stack.center.agent(AGENT, [GROUP])
    yield stack
    for switch in stack.switches:
        for channel in list(switch.channels.values()):
            switch.hangup(channel, "NORMAL_CLEARING")
    for switch in stack.switches:
        wait_until(lambda: not switch.channels, 5, "every call over")
    wait_until(lambda: agent(stack).call_state not in ("ring", "talking"), 5, "agent free")


@pytest.fixture
def bus(redis_server: Any) -> Iterator[Subscriber]:
    sub = Subscriber(redis_server.url)
    yield sub
    sub.close()


def agent(cc: CtiStack, ext: str = AGENT) -> Any:
    return Agents(cc.ctx, cc.center.domain).get(ext)


def register_on(cc: CtiStack, node: Any) -> None:
    """The agent's phone registers on ``node``, and the ACD knows it is there. The phone was
    registered on node 1 before (reged already), so waiting for "reged" alone returned at once:
    a call placed before node 2's runtime recorded the move rang the agent through node 1, and
    the command went there ("(node node1)" - the node-2 hold and listen flakes)."""
    cc.center.agent(AGENT, [GROUP], switch=node)
    wait_until(lambda: agent(cc).reg_node == node.name, 5, f"agent on {node.name} for the ACD")


def queue_call(cc: CtiStack, switch: Switch | None = None) -> tuple[Channel, Channel]:
    switch = switch or cc.switch
    customer = cc.center.call(switch, "13900000001", f"7{GROUP}")
    leg = wait_until(lambda: customer.peer and switch.channels.get(customer.peer)
                     and switch.channels[customer.peer].answered
                     and switch.channels[customer.peer], 5, "the agent answered")
    wait_until(lambda: agent(cc).call_state == "talking", 5, "agent talking")
    wait_until(lambda: cc.ctx.redis.hget(f"cti_userinfo@{cc.center.domain}", AGENT), 5,
               "live state recorded")
    return customer, leg


def supervisor_leg(cc: CtiStack) -> Channel:
    return wait_until(lambda: next((c for c in cc.switch.channels.values()
                                    if c.get("dialed_user") == SUPERVISOR and c.answered),
                                   None), 5, "the supervisor's phone answered")


def hears(cc: CtiStack, channel: Channel, expected: set[str], what: str) -> None:
    wait_until(lambda: cc.switch.hears(channel.uuid) == expected, 3,
               f"{what}: {cc.switch.hears(channel.uuid)} -> {expected}")


def ok(reply: Any) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


def test_listen_and_switch_modes_with_dtmf(cc: CtiStack) -> None:
    customer, leg = queue_call(cc)
    # the supervisor's own extension (1900) is rung: no Phone field needed
    reply = ok(cc.server.client("supervisor").post("/api/supervise/listen",
                                                   json={"Extension": AGENT}))
    assert "1900 rung to listen on" in reply["message"]
    sup = supervisor_leg(cc)
    hears(cc, sup, {leg.uuid, customer.uuid}, "listening")
    assert cc.switch.hears(leg.uuid) == {customer.uuid}
    assert cc.switch.hears(customer.uuid) == {leg.uuid}
    cc.switch.send_dtmf(sup, "2")
    hears(cc, leg, {customer.uuid, sup.uuid}, "2: the agent hears the supervisor")
    assert cc.switch.hears(customer.uuid) == {leg.uuid}
    cc.switch.send_dtmf(sup, "1")
    hears(cc, customer, {leg.uuid, sup.uuid}, "1: the customer hears the supervisor")
    hears(cc, leg, {customer.uuid}, "1: the agent does not")
    cc.switch.send_dtmf(sup, "3")
    hears(cc, leg, {customer.uuid, sup.uuid}, "3: three-way, agent")
    hears(cc, customer, {leg.uuid, sup.uuid}, "3: three-way, customer")
    cc.switch.send_dtmf(sup, "0")
    hears(cc, leg, {customer.uuid}, "0: listening again")
    hears(cc, customer, {leg.uuid}, "0: listening again")


@pytest.mark.parametrize(("to", "agent_hears", "customer_hears"), [
    ("agent", True, False), ("customer", False, True)])
def test_whisper(cc: CtiStack, to: str, agent_hears: bool, customer_hears: bool) -> None:
    customer, leg = queue_call(cc)
    ok(cc.server.client("supervisor").post("/api/supervise/whisper", json={
        "Extension": AGENT, "To": to, "Phone": SUPERVISOR}))
    sup = supervisor_leg(cc)
    hears(cc, sup, {leg.uuid, customer.uuid}, "the supervisor hears both")
    hears(cc, leg, {customer.uuid} | ({sup.uuid} if agent_hears else set()), "agent")
    hears(cc, customer, {leg.uuid} | ({sup.uuid} if customer_hears else set()), "customer")


def test_barge(cc: CtiStack) -> None:
    customer, leg = queue_call(cc)
    ok(cc.server.client("supervisor").post("/api/supervise/barge", json={"Extension": AGENT}))
    sup = supervisor_leg(cc)
    hears(cc, sup, {leg.uuid, customer.uuid}, "supervisor hears both")
    hears(cc, leg, {customer.uuid, sup.uuid}, "agent hears both")
    hears(cc, customer, {leg.uuid, sup.uuid}, "customer hears both")


def test_force_hangup_ends_both_legs(cc: CtiStack, bus: Subscriber) -> None:
    customer, leg = queue_call(cc)
    reply = ok(cc.server.client("supervisor").post("/api/supervise/hangup",
                                                   json={"Extension": AGENT}))
    assert leg.uuid in reply["message"] and "MANAGER_REQUEST" in reply["message"]
    for channel in (leg, customer):
        cc.switch.bus.wait_for(lambda e, c=channel: e.name == "CHANNEL_HANGUP_COMPLETE"
                               and e.headers.get("Unique-ID") == c.uuid, 5.0)
    assert leg.hangup_cause == "MANAGER_REQUEST"
    bus.wait("event_agent", uuid=customer.uuid, method="hangup")
    wait_until(lambda: agent(cc).call_state == "ready", 5, "agent ready again")


def test_force_ready_busy_logout(cc: CtiStack, bus: Subscriber) -> None:
    sup = cc.server.client("supervisor")
    ok(sup.post("/api/supervise/busy", json={"Extension": AGENT}))
    assert (agent(cc).seat_status, agent(cc).call_state) == ("busy", "busy")
    ok(sup.post("/api/supervise/ready", json={"Extension": AGENT}))
    assert (agent(cc).seat_status, agent(cc).call_state) == ("idle", "ready")
    bus.statuses_end(AGENT, ["busy", "ready"])
    ok(sup.post("/api/supervise/logout", json={"Extension": AGENT}))
    assert (agent(cc).logged_in, agent(cc).groups) == (False, ())


def test_supervision_refusals(cc: CtiStack) -> None:
    sup = cc.server.client("supervisor")
    idle = sup.post("/api/supervise/listen", json={"Extension": AGENT})
    assert idle.status_code == 409 and idle.json()["field"] == "Extension"
    assert idle.json()["error"] == "extension '1001' is not on an answered call"
    unknown = sup.post("/api/supervise/listen", json={"Extension": "5555"})
    assert unknown.status_code == 404
    bad_to = sup.post("/api/supervise/whisper", json={"Extension": AGENT, "To": "both"})
    assert bad_to.status_code == 422 and bad_to.json()["field"] == "To"
    queue_call(cc)
    phone = sup.post("/api/supervise/listen", json={"Extension": AGENT, "Phone": "6666"})
    assert phone.status_code == 404 and phone.json()["field"] == "Phone"
    admin = cc.server.client("admin")  # no extension of its own: Phone is needed
    missing = admin.post("/api/supervise/barge", json={"Extension": AGENT})
    assert missing.status_code == 422 and missing.json()["field"] == "Phone"


def test_commands_reach_the_node_holding_the_call(cc: CtiStack) -> None:
    node2 = cc.switches[1]
    register_on(cc, node2)  # the phone now registers on node 2
    try:
        customer, leg = queue_call(cc, node2)
        ok(cc.server.client("admin").get(f"/api/hold/{AGENT}"))
        wait_until(lambda: leg.held, 3, "held on node 2")
        reply = ok(cc.server.client("admin").get(f"/api/hangup/{AGENT}"))
        assert reply["message"].endswith(f"(node {node2.name})")
        node2.bus.wait_for(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE"
                           and e.headers.get("Unique-ID") == customer.uuid, 5.0)
    finally:
        cc.center.agent(AGENT, [GROUP])


# ------------------------------------------------------------------------ /cli ------------
def test_cli_passthrough_is_admin_only_and_allow_listed(cc: CtiStack) -> None:
    admin = cc.server.client("admin")
    token = admin.token
    anon = cc.server.anonymous()
    status = anon.get("/cli", params={"key": token, "cmd": "status"})
    assert status.status_code == 200 and status.headers["Content-Type"].startswith("text/plain")
    for cmd, arg in (("system", "id"), ("bgapi", "system id"), ("bgapi", "bgapi status"),
                     ("reloadxml", ""), ("fsctl", "shutdown")):
        refused = anon.get("/cli", params={"key": token, "cmd": cmd, "arg": arg})
        assert refused.status_code == 403, (cmd, refused.text)
        assert "not allowed" in refused.json()["error"]
    assert anon.get("/cli", params={"cmd": "status"}).status_code == 401
    sup_token = cc.server.login("supervisor")
    assert anon.get("/cli", params={"key": sup_token, "cmd": "status"}).status_code == 403


def test_cli_seed_003_forms(cc: CtiStack) -> None:
    customer, leg = queue_call(cc)
    admin = cc.server.client("admin")
    # seed 003: eavesdrop through bgapi originate, then force hangup with uuid_kill
    listen = admin.get("/cli", params={
        "cmd": "bgapi", "arg": f"originate {{eavesdrop_enable_dtmf=true}}user/{SUPERVISOR}"
                               f"@{cc.center.domain} &eavesdrop({leg.uuid})"})
    assert listen.status_code == 200 and listen.text.startswith("+OK Job-UUID"), listen.text
    sup = supervisor_leg(cc)
    hears(cc, sup, {leg.uuid, customer.uuid}, "listening through /cli")
    kill = admin.get("/cli", params={"cmd": "uuid_kill", "arg": leg.uuid})
    assert kill.text == "+OK\n"
    cc.switch.bus.wait_for(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE"
                           and e.headers.get("Unique-ID") == leg.uuid, 5.0)
    gone = admin.get("/cli", params={"cmd": "uuid_kill",
                                     "arg": "00000000-0000-0000-0000-000000000000"})
    assert gone.status_code == 404 and gone.json()["field"] == "arg"


def test_a_node_that_does_not_answer_gives_504(stack: CtiStack) -> None:
    """A live node (heartbeat) that holds the channel but serves no commands: the request
    waits node_reply_timeout_seconds, answers 504, and the command stays queued for the
    node (it may still run there)."""
    settings = stack.server.services.settings
    server = start_server(dataclasses.replace(settings, cti=dataclasses.replace(
        settings.cti, node_reply_timeout_seconds=0.5)))
    ctx, uuid = stack.ctx, "11111111-2222-3333-4444-555555555555"
    nodes = Nodes(ctx)
    try:
        nodes.heartbeat("ghost")
        nodes.channel_created("ghost", uuid)
        ctx.redis.hset(f"cti_userinfo@{stack.center.domain}", "1700",
                       json.dumps({"calls": [{"Unique-ID": uuid, "Answered-Time": "1"}]}))
        reply = server.client("admin").get("/api/hold/1700")
        assert reply.status_code == 504, reply.text
        assert "node ghost" in reply.json()["error"] and "may still run" in reply.json()["error"]
        queued = ctx.redis.lrange(ctx.node_keys.commands("ghost"), 0, -1)
        assert [json.loads(c)["cmd"] for c in queued] == ["hold"]
    finally:
        nodes.forget("ghost")
        ctx.redis.delete(ctx.node_keys.commands("ghost"))
        ctx.redis.hdel(f"cti_userinfo@{stack.center.domain}", "1700")
        server.close()


def test_listen_to_a_call_on_another_node(cc: CtiStack) -> None:
    """The agent's call is on node 2, the supervisor's phone on node 1: node 2 runs the
    eavesdrop and rings the phone through node 1 (the ACD's agent relay)."""
    node1, node2 = cc.switches
    register_on(cc, node2)
    try:
        customer, leg = queue_call(cc, node2)
        reply = ok(cc.server.client("supervisor").post("/api/supervise/listen",
                                                       json={"Extension": AGENT}))
        assert reply["message"].endswith(f"(node {node2.name})")
        relay = wait_until(lambda: next(
            (c for c in node2.channels.values() if c.get("fsapps_eavesdrop") == leg.uuid
             and c.answered), None), 5, "node 2 reached the supervisor through node 1")
        wait_until(lambda: node2.hears(relay.uuid) == {leg.uuid, customer.uuid}, 3,
                   "the relayed supervisor leg listens to both")
        phone = wait_until(lambda: next((c for c in node1.channels.values()
                                         if c.get("dialed_user") == SUPERVISOR
                                         and c.answered), None), 5, "1900 answered on node 1")
        assert node1.hears(phone.uuid)  # bridged to the leg coming from node 2
        assert node2.hears(leg.uuid) == {customer.uuid}  # the agent does not hear it
    finally:
        cc.center.agent(AGENT, [GROUP])
