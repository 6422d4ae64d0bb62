"""Every event sequence the CTI server sends, replayed through the published SDK's call memory
(:mod:`sdk_rules`, issue 16 point 4): queue calls (answered, held, retrieved, ended by either
side), makeCall to an agent and to an outside number, single-step transfer and conference,
consult then transfer / conference / cancel. Each subscriber's stream must be one the SDK's
handlers take without throwing, and name as ``calledDevice`` a party of the call, never the
dialled queue number (seed 004 §6.7/6.8)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browser_support import agents_stack, sign_off
from csta_support import StompClient
from cti_support import CtiStack
from sdk_rules import SdkError, replay
from test_csta_protocol import (
    A1,
    A2,
    D,
    api,
    conn,
    consult_1002,
    queue_call_answered_by_1001,
    wellclient_login,
)

from fakefs.scenario import wait_until

QUEUE = "7110"
CALLER = "13800000002"
AGENTS = (("agent", "1001"), ("agent2", "1002"))


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with agents_stack(redis_server.url, database.dsn, ("1001", "1002", "1900")) as s:
        yield s


@pytest.fixture
def two_agents(stack: CtiStack) -> Iterator[tuple[Any, StompClient, Any, StompClient]]:
    """Agents 1001 and 1002 logged in the wellClient way (not ready), each subscribed."""
    sessions = []
    for user, ext in AGENTS:
        token = wellclient_login(stack, user, ext, mode="NotReady")
        client = StompClient(stack.server.url, token)
        client.open()
        client.subscribe(f"/topic/csta/agent/{user}@{D}")
        sessions.append((api(stack, token), client, user, ext))
    yield sessions[0][0], sessions[0][1], sessions[1][0], sessions[1][1]
    sign_off(stack, sessions, D)


def settle(stack: CtiStack, *clients: StompClient) -> None:
    """Hang up what is left, then wait until no more events arrive."""
    for ch in list(stack.switch.channels.values()):
        stack.switch.hangup(ch)
    wait_until(lambda: not stack.switch.channels, 5, "channels gone")
    last = -1
    while last != sum(len(c.events) for c in clients):
        last = sum(len(c.events) for c in clients)
        time.sleep(0.4)


def check(*clients: StompClient) -> None:
    for client in clients:
        with client._lock:
            events = list(client.events)
        memory = replay(events)
        assert memory.handled, "no call event reached the subscriber"


def test_the_model_refuses_the_queue_number_as_called_device() -> None:
    """The stream issue 16 saw: delivered names the queue number, established the agent."""
    base = {"callId": "c1", "srcDeviceId": A1, "deviceId": A1, "eventType": "csta"}
    delivered = {**base, "eventName": "delivered", "alertingDevice": A1,
                 "callingDevice": CALLER, "calledDevice": f"{QUEUE}@cc.test"}
    established = {**base, "eventName": "established", "answeringDevice": A1,
                   "callingDevice": CALLER, "calledDevice": f"{QUEUE}@cc.test"}
    with pytest.raises(SdkError):
        replay([delivered, established])
    fixed = [{**delivered, "calledDevice": A1}, {**established, "calledDevice": A1}]
    assert replay(fixed).calls["c1"][A1]["connectionState"] == "Connect"


def test_queue_call_answered_held_retrieved_agent_hangs_up(stack: CtiStack,
                                                           two_agents: Any) -> None:
    http1, c1, http2, c2 = two_agents
    call_id = queue_call_answered_by_1001(stack, http1, c1)
    delivered = next(e for e in c1.events if e["eventName"] == "delivered")
    assert delivered["calledDevice"] == A1 and delivered["alertingDevice"] == A1
    assert http1.post(conn(call_id, A1) + "/hold", json={}).status_code == 204
    c1.wait_event(lambda e: e["eventName"] == "held")
    assert http1.post(conn(call_id, A1) + "/retrieve", json={}).status_code == 204
    c1.wait_event(lambda e: e["eventName"] == "retrieved")
    assert http1.delete(conn(call_id, A1)).status_code == 204
    c1.wait_event(lambda e: e["eventName"] == "connectionCleared")
    settle(stack, c1, c2)
    check(c1)


def test_queue_call_the_caller_hangs_up(stack: CtiStack, two_agents: Any) -> None:
    http1, c1, http2, c2 = two_agents
    call_id = queue_call_answered_by_1001(stack, http1, c1)
    caller = next(ch for ch in stack.switch.channels.values() if ch.uuid == call_id)
    stack.switch.hangup(caller)
    c1.wait_event(lambda e: e["eventName"] == "connectionCleared")
    settle(stack, c1, c2)
    check(c1)


@pytest.mark.parametrize("to", ["1002", "13900000001"])
def test_make_call(stack: CtiStack, two_agents: Any, to: str) -> None:
    http1, c1, http2, c2 = two_agents
    reply = http1.post("/api/csta/callControl/calls", json={"from": A1, "to": to})
    assert reply.status_code == 200, reply.text
    call_id = reply.json()["callId"]
    c1.wait_event(lambda e: e["eventName"] == "originated")
    if to == "1002":
        c2.wait_event(lambda e: e["eventName"] == "delivered")
        assert http2.post(conn(call_id, A2) + "/answer", json={}).status_code == 204
        c1.wait_event(lambda e: e["eventName"] == "established")
    else:
        time.sleep(0.5)
    settle(stack, c1, c2)
    check(*((c1, c2) if to == "1002" else (c1,)))


SCENARIOS: dict[str, Callable[..., None]] = {}


def scenario(fn: Callable[..., None]) -> Callable[..., None]:
    SCENARIOS[fn.__name__] = fn
    return fn


@scenario
def single_step_transfer(stack: CtiStack, http1: Any, c1: Any, http2: Any, c2: Any,
                         call_id: str) -> None:
    assert http1.post(conn(call_id, A1) + "/singleStepTransfer",
                      json={"transferTo": A2}).status_code == 204
    c2.wait_event(lambda e: e["eventName"] == "delivered")
    assert http2.post(conn(call_id, A2) + "/answer", json={}).status_code == 204
    c2.wait_event(lambda e: e["eventName"] == "established")


@scenario
def single_step_conference(stack: CtiStack, http1: Any, c1: Any, http2: Any, c2: Any,
                           call_id: str) -> None:
    assert http1.post(conn(call_id, A1) + "/singleStepConference",
                      json={"conferenceParticipant": A2}).status_code == 204
    c2.wait_event(lambda e: e["eventName"] == "delivered")
    assert http2.post(conn(call_id, A2) + "/answer", json={}).status_code == 204
    c2.wait_event(lambda e: e["eventName"] == "conferenced")


@scenario
def consult_transfer(stack: CtiStack, http1: Any, c1: Any, http2: Any, c2: Any,
                     call_id: str) -> None:
    consult_id = consult_1002(stack, http1, c1, http2, c2, call_id)
    assert http1.post(conn(call_id, A1) + "/transfer",
                      json={"consultCallId": consult_id}).status_code == 204
    c2.wait_event(lambda e: e["eventName"] == "transferred")


@scenario
def consult_conference(stack: CtiStack, http1: Any, c1: Any, http2: Any, c2: Any,
                       call_id: str) -> None:
    consult_id = consult_1002(stack, http1, c1, http2, c2, call_id)
    assert http1.post(conn(call_id, A1) + "/conference",
                      json={"consultCallId": consult_id}).status_code == 204
    c2.wait_event(lambda e: e["eventName"] == "conferenced")


@scenario
def consult_cancel(stack: CtiStack, http1: Any, c1: Any, http2: Any, c2: Any,
                   call_id: str) -> None:
    consult_id = consult_1002(stack, http1, c1, http2, c2, call_id)
    assert http1.post(conn(call_id, A1) + "/cancelConsult",
                      json={"consultCallId": consult_id}).status_code == 204
    c1.wait_event(lambda e: e["eventName"] == "retrieved")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_transfers_and_conferences(stack: CtiStack, two_agents: Any, name: str) -> None:
    http1, c1, http2, c2 = two_agents
    call_id = queue_call_answered_by_1001(stack, http1, c1)
    SCENARIOS[name](stack, http1, c1, http2, c2, call_id)
    time.sleep(0.3)
    settle(stack, c1, c2)
    check(c1, c2)
