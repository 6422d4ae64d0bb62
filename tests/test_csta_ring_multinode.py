""""Ring this extension" across nodes (issue 16, points 5 and 6): agent 1001's phone is
registered on node1, 1002's and supervisor 1900's on node2. makeCall, consult, single-step
transfer and conference, the supervisor's listen (wellClient), and seed 001's transfer to a
bare extension or group, threeway and eavesdrop all ring the phone on the other node through
the relay (one path: fsapps.switch.nodecommands.ring_extension, the ACD's agent_endpoint),
never ``user/`` on a node where the phone is not registered; and the events of each call are
ones the published SDK can follow (tests/sdk_rules.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from csta_support import StompClient
from cti_support import API_TOKEN, Client, CtiStack, cti_stack
from sdk_rules import replay
from test_csta_protocol import api, conn, wellclient_login

from fakefs.channel import Behaviour
from fakefs.scenario import wait_until
from fsapps.domain.nodes import Nodes
from fsapps.switch import nodecommands

D = "cc.test"
A1, A2 = f"1001@{D}", f"1002@{D}"
CALLER = "13800000007"


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with cti_stack(redis_server.url, database.dsn, switches=2) as s:
        node1, node2 = s.switches
        s.center.group("120")  # 1002 and 1900 answer no queue call of group 110
        s.center.agent("1001", ["110"], ready=False, switch=node1,
                       behaviour=Behaviour(answer_after_ms=None))
        for ext in ("1002", "1900"):
            s.center.agent(ext, ["120"], ready=False, switch=node2,
                           behaviour=Behaviour(answer_after_ms=None))
        wait_until(lambda: Nodes(s.ctx).relay_address(node2.name), 5, "node2's relay address")
        yield s


@pytest.fixture
def agents(stack: CtiStack) -> Iterator[tuple[Any, StompClient, Any, StompClient]]:
    sessions = []
    for user, ext in (("agent", "1001"), ("agent2", "1002")):
        token = wellclient_login(stack, user, ext, mode="NotReady")
        client = StompClient(stack.server.url, token)
        client.open()
        client.subscribe(f"/topic/csta/agent/{user}@{D}")
        sessions.append((api(stack, token), client, user, ext))
    yield sessions[0][0], sessions[0][1], sessions[1][0], sessions[1][1]
    for http, client, _user, ext in sessions:
        client.close()
        http.post("/api/csta/agent/state", json={"func": "Logout", "device": f"{ext}@{D}"})
    hang_up_all(stack)


def hang_up_all(stack: CtiStack) -> None:
    for switch in stack.switches:
        for ch in list(switch.channels.values()):
            switch.hangup(ch)
    wait_until(lambda: not any(sw.channels for sw in stack.switches), 8, "channels gone")


def phone_leg(stack: CtiStack, ext: str, node: int = 1) -> Any:
    """The leg node ``node`` rang for the phone of ``ext`` (registered there)."""
    switch = stack.switches[node]
    return wait_until(lambda: next((c for c in list(switch.channels.values())
                                    if c.name.startswith(f"sofia/internal/{ext}@")), None),
                      8, f"{ext}'s phone rung on {switch.name}")


def answer(leg: Any, stack: CtiStack, node: int = 1) -> None:
    if not leg.answered:  # (a makeCall's own phone answers by itself: sip_auto_answer)
        stack.switches[node].answer(leg)
    wait_until(lambda: leg.answered, 5, "answered")


def no_local_user_dial(stack: CtiStack, ext: str) -> None:
    """node1 never dialled ``user/<ext>`` (its phone is not registered there)."""
    node1 = stack.switches[0]
    bad = [c.name for c in node1.all_channels.values()
           if c.name.startswith(f"sofia/internal/{ext}@")]
    assert bad == [], bad


def queue_call_answered_by_1001(stack: CtiStack, http1: Any, c1: StompClient) -> tuple[Any, str]:
    http1.post("/api/csta/agent/state", json={"func": "SetState", "device": A1,
                                              "agentMode": "Ready"})
    caller = stack.center.call(stack.switches[0], CALLER, "7110", hangup_after_ms=None)
    # 1001's own phone ringing: a call's events reach every party, and a late one of the last
    # test's call (the supervisor's, 1900 ringing with 1001 a party) may come first
    call_id = c1.wait_event(lambda e: e["eventName"] == "delivered" and
                            e["deviceId"] == A1)["callId"]
    assert http1.post(conn(call_id, A1) + "/answer", json={}).status_code == 204
    c1.wait_event(lambda e: e["eventName"] == "established" and e["callId"] == call_id)
    http1.post("/api/csta/agent/state", json={"func": "SetState", "device": A1,
                                              "agentMode": "NotReady"})
    return caller, call_id


def replayed(stack: CtiStack, *clients: StompClient) -> None:
    hang_up_all(stack)
    time.sleep(0.8)
    for client in clients:
        with client._lock:
            events = list(client.events)
        try:
            replay(events)
        except AssertionError:
            for e in events:
                print(e.get("eventName"), e.get("callId"), e.get("srcDeviceId"),
                      e.get("deviceId"), e.get("callingDevice"), e.get("calledDevice"))
            raise


def test_ring_extension_is_the_acds_path(stack: CtiStack) -> None:
    node1, node2 = stack.switches
    relay = Nodes(stack.ctx).relay_address(node2.name)
    assert nodecommands.ring_extension(stack.ctx, D, "1002", node1.name) == \
        f"[sip_h_X-FSAPPS-Domain={D}]sofia/external/fsapps_agent_1002@{relay}"
    assert nodecommands.ring_extension(stack.ctx, D, "1002", node2.name) == f"user/1002@{D}"
    assert nodecommands.direct_destination(stack.ctx, D, "110", node1.name) == \
        "'python:fsapps.nwayacd 110' inline"
    assert nodecommands.direct_destination(stack.ctx, D, "13900000000", node1.name) == ""


def test_make_call_to_an_extension_on_the_other_node(stack: CtiStack, agents: Any) -> None:
    http1, c1, http2, c2 = agents
    reply = http1.post("/api/csta/callControl/calls", json={"from": A1, "to": "1002"})
    assert reply.status_code == 200, reply.text
    call_id = reply.json()["callId"]
    answer(phone_leg(stack, "1001", node=0), stack, node=0)  # auto-answer of the caller
    ring = c2.wait_event(lambda e: e["eventName"] == "delivered")
    assert ring["callId"] == call_id and ring["alertingDevice"] == A2
    answer(phone_leg(stack, "1002"), stack)
    c1.wait_event(lambda e: e["eventName"] == "established" and e["answeringDevice"] == A2)
    no_local_user_dial(stack, "1002")
    replayed(stack, c1, c2)


def test_consult_an_extension_on_the_other_node(stack: CtiStack, agents: Any) -> None:
    http1, c1, http2, c2 = agents
    caller, call_id = queue_call_answered_by_1001(stack, http1, c1)
    reply = http1.post(conn(call_id, A1) + "/consult", json={"consultationParticipant": A2})
    assert reply.status_code == 200, reply.text
    consult_id = reply.json()["callId"]
    answer(phone_leg(stack, "1001", node=0), stack, node=0)
    c2.wait_event(lambda e: e["eventName"] == "delivered" and e["callId"] == consult_id)
    answer(phone_leg(stack, "1002"), stack)
    c1.wait_event(lambda e: e["eventName"] == "established" and e["callId"] == consult_id)
    no_local_user_dial(stack, "1002")
    replayed(stack, c1, c2)


def test_single_step_transfer_to_the_other_node(stack: CtiStack, agents: Any) -> None:
    http1, c1, http2, c2 = agents
    caller, call_id = queue_call_answered_by_1001(stack, http1, c1)
    reply = http1.post(conn(call_id, A1) + "/singleStepTransfer", json={"transferTo": A2})
    assert reply.status_code == 204, reply.text
    ring = c2.wait_event(lambda e: e["eventName"] == "delivered")
    assert ring["callId"] == call_id
    answer(phone_leg(stack, "1002"), stack)
    c2.wait_event(lambda e: e["eventName"] == "established")
    assert caller.up
    no_local_user_dial(stack, "1002")
    replayed(stack, c1, c2)


def test_single_step_conference_with_the_other_node(stack: CtiStack, agents: Any) -> None:
    http1, c1, http2, c2 = agents
    caller, call_id = queue_call_answered_by_1001(stack, http1, c1)
    reply = http1.post(conn(call_id, A1) + "/singleStepConference",
                       json={"conferenceParticipant": A2})
    assert reply.status_code == 204, reply.text
    c2.wait_event(lambda e: e["eventName"] == "delivered" and e["callId"] == call_id)
    answer(phone_leg(stack, "1002"), stack)
    for client in (c1, c2):
        client.wait_event(lambda e: e["eventName"] == "conferenced")
    no_local_user_dial(stack, "1002")
    replayed(stack, c1, c2)


def test_supervisor_listens_from_the_other_node(stack: CtiStack, agents: Any) -> None:
    http1, c1, http2, c2 = agents
    caller, call_id = queue_call_answered_by_1001(stack, http1, c1)
    supervisor = Client(stack.server.url)
    supervisor.headers["sessionId"] = stack.server.login("supervisor")
    reply = supervisor.post(f"/api/csta/callControl/calls/{call_id}/spy",
                            params={"deviceId": f"1900@{D}", "mode": "listen"})
    assert reply.status_code == 204, reply.text
    answer(phone_leg(stack, "1900"), stack)
    no_local_user_dial(stack, "1900")
    supervisor.close()
    hang_up_all(stack)


def test_seed_threeway_and_eavesdrop_ring_the_other_node(stack: CtiStack, agents: Any) -> None:
    http1, c1, http2, c2 = agents
    caller, call_id = queue_call_answered_by_1001(stack, http1, c1)
    seed = Client(stack.server.url, API_TOKEN)
    for route, phone in (("eavesdrop", "1900"), ("threeway", "1002")):
        reply = seed.post(f"/api/{route}", json={"EvdedPhone": "1001" if route == "eavesdrop"
                                                 else phone, "EvdPhone": "1001"
                                                 if route == "threeway" else phone,
                                                 "EvdGateway": ""})
        assert reply.status_code == 200 and reply.json()["result"] == "ok", (route, reply.text)
        answer(phone_leg(stack, phone), stack)
        no_local_user_dial(stack, phone)
    seed.close()
    hang_up_all(stack)


@pytest.mark.parametrize("target", ["1002", "110"])
def test_seed_transfer_reaches_an_extension_or_group_without_dialplan_routes(
        stack: CtiStack, agents: Any, target: str) -> None:
    http1, c1, http2, c2 = agents
    caller, call_id = queue_call_answered_by_1001(stack, http1, c1)
    if target == "110":
        # the group's ACD offers the call to its ready agent: 1002 (on node2) joins it
        seed = Client(stack.server.url, API_TOKEN)
        assert seed.post("/api/agent_up", json={"Extension": "1002", "Groups": "110"}
                         ).json().get("result") == "ok"
    seed = Client(stack.server.url, API_TOKEN)
    reply = seed.post("/api/transfer", json={"EvdedPhone": "1001", "EvdPhone": target,
                                             "EvdGateway": ""})
    assert reply.status_code == 200 and reply.json()["result"] == "ok", reply.text
    leg = phone_leg(stack, "1002")
    answer(leg, stack)
    wait_until(lambda: caller.up and caller.peer, 5, "the caller bridged again")
    assert caller.up, caller.get("hangup_cause")
    no_local_user_dial(stack, "1002")
    seed.close()
    replayed(stack, c1, c2)
