"""wellClient end to end over the wire: /login, /api/csta and a SockJS + STOMP session against
a real CTI server, fake switches running fsapps.runtime, real Redis and PostgreSQL. Each
scenario checks the events of seed 004 in order, with the seed's fields."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import agents_stack, phone_legs, sign_off
from csta_support import StompClient
from cti_support import CtiStack

from fakefs.scenario import wait_until
from fsapps.db.connection import DatabaseUnavailableError
from fsapps.server.csta import hub as hubmod
from fsapps.server.csta.callcontrol import call_legs

D = "cc.test"
A1, A2 = f"1001@{D}", f"1002@{D}"
COMMON = ("eventName", "eventTime", "eventType", "serial", "namespace", "srcDeviceId")


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with agents_stack(redis_server.url, database.dsn, ("1001", "1002", "1900")) as s:
        yield s


def wellclient_login(stack: CtiStack, user: str, ext: str, mode: str = "Ready") -> str:
    """wellClient's login: POST /login (form), then agent/state Login; returns the token."""
    http = stack.server.anonymous()
    reply = http.post("/login", data={"username": user, "password": user, "namespace": D})
    assert reply.status_code == 200, reply.text
    token = str(reply.json()["sessionId"])
    http.headers["sessionId"] = token
    reply = http.post("/api/csta/agent/state", json={
        "func": "Login", "loginId": f"{user}@{D}", "device": f"{ext}@{D}", "agentMode": mode})
    assert reply.status_code == 204, reply.text
    return token


def api(stack: CtiStack, token: str) -> Any:
    http = stack.server.anonymous()
    http.headers["sessionId"] = token
    return http


def conn(call_id: str, device: str, encoded: bool = False) -> str:
    sep = "%7C" if encoded else "|"
    return f"/api/csta/callControl/calls/{call_id}/connections/{device}{sep}{call_id}"


@pytest.fixture
def agent1(stack: CtiStack) -> Iterator[tuple[str, StompClient]]:
    token = wellclient_login(stack, "agent", "1001")
    client = StompClient(stack.server.url, token)
    client.open()
    client.subscribe(f"/topic/csta/agent/agent@{D}")
    yield token, client
    client.close()
    api(stack, token).post("/api/csta/agent/state", json={
        "func": "Logout", "loginId": f"agent@{D}", "device": A1})
    for ch in list(stack.switch.channels.values()):
        stack.switch.hangup(ch)
    wait_until(lambda: not stack.switch.channels, 5, "channels gone")


@pytest.mark.parametrize("topic", [f"/topic/csta/agent/agent2@{D}",
                                   f"/topic/event.agent.*.agent2@{D.replace('.', '_')}"])
def test_connected_carries_heart_beat_and_pending_logon_is_delivered(stack: CtiStack,
                                                                      topic: str) -> None:
    """Later wellClient releases subscribe to /topic/event.agent.*.<loginId, dots as
    underscores>: the same agent topic."""
    token = wellclient_login(stack, "agent2", "1002", mode="Ready")
    client = StompClient(stack.server.url, token, heart_beat="10000,10000")
    try:
        headers = client.open()
        assert headers["version"] == "1.1"
        assert "," in headers["heart-beat"]
        # logged on and ready before the subscription: held, delivered after it
        client.subscribe(topic)
        on = client.wait_event(lambda e: e["eventName"] == "agentLoggedOn")
        ready = client.wait_event(lambda e: e["eventName"] == "agentReady")
        assert client.names()[:2] == ["agentLoggedOn", "agentReady"]
        for event in (on, ready):
            assert all(k in event for k in COMMON)
            assert event["eventType"] == "agent"
            assert event["srcDeviceId"] == event["deviceId"] == A2
            assert event["agentId"] == f"agent2@{D}"
            assert event["devices"] == {"Voice": A2}
            assert event["namespace"] == D
        assert on["agentMode"] == "Ready" and ready["serial"] > on["serial"]
    finally:
        client.close()
        api(stack, token).post("/api/csta/agent/state", json={
            "func": "Logout", "loginId": f"agent2@{D}", "device": A2})


def test_queue_call_delivered_answered_held_retrieved_cleared(
        stack: CtiStack, agent1: tuple[str, StompClient]) -> None:
    token, client = agent1
    client.wait_event(lambda e: e["eventName"] == "agentReady")
    caller = stack.center.call(stack.switch, "13800000001", "7110", hangup_after_ms=None)
    delivered = client.wait_event(lambda e: e["eventName"] == "delivered")
    call_id = delivered["callId"]
    assert call_id == caller.uuid
    assert delivered["eventType"] == "csta"
    assert delivered["srcDeviceId"] == delivered["deviceId"] == delivered["alertingDevice"] == A1
    assert delivered["localState"] == "Alerting"
    assert delivered["connectionId"] == f"{A1}|{call_id}"
    assert delivered["callingDevice"] == "13800000001"
    http = api(stack, token)
    reply = http.post(conn(call_id, A1, encoded=True) + "/answer", json={})
    assert reply.status_code == 204, reply.text
    est = client.wait_event(lambda e: e["eventName"] == "established")
    assert est["answeringDevice"] == A1 and est["localState"] == "Connect"
    assert est["callingDevice"] == "13800000001"
    assert http.post(conn(call_id, A1) + "/hold", json={}).status_code == 204
    held = client.wait_event(lambda e: e["eventName"] == "held")
    assert held["holdingDevice"] == A1 and held["localState"] == "Hold"
    assert http.post(conn(call_id, A1) + "/retrieve", json={}).status_code == 204
    got = client.wait_event(lambda e: e["eventName"] == "retrieved")
    assert got["retrievingDevice"] == A1 and got["localState"] == "Connect"
    assert http.delete(conn(call_id, A1)).status_code == 204
    cleared = client.wait_event(lambda e: e["eventName"] == "connectionCleared"
                                and e["deviceId"] == A1)
    assert cleared["releasingDevice"] == A1
    names = client.names(call_id)
    assert names[:5] == ["delivered", "established", "held", "retrieved", "connectionCleared"]
    serials = [e["serial"] for e in client.events]
    assert serials == sorted(serials) and len(set(serials)) == len(serials)


@pytest.fixture
def two_agents(stack: CtiStack) -> Iterator[tuple[Any, StompClient, Any, StompClient]]:
    clients = []
    for user, ext in (("agent", "1001"), ("agent2", "1002")):
        token = wellclient_login(stack, user, ext, mode="NotReady")
        client = StompClient(stack.server.url, token)
        client.open()
        client.subscribe(f"/topic/csta/agent/{user}@{D}")
        clients.append((api(stack, token), client))
    yield clients[0][0], clients[0][1], clients[1][0], clients[1][1]
    sign_off(stack, [(http, client, user, ext) for (http, client), (user, ext) in zip(
        clients, (("agent", "1001"), ("agent2", "1002")), strict=True)], D)


def queue_call_answered_by_1001(stack: CtiStack, http1: Any, c1: StompClient) -> str:
    http1.post("/api/csta/agent/state", json={"func": "SetState", "loginId": f"agent@{D}",
                                              "device": A1, "agentMode": "Ready"})
    stack.center.call(stack.switch, "13800000002", "7110", hangup_after_ms=None)
    call_id = c1.wait_event(lambda e: e["eventName"] == "delivered")["callId"]
    assert http1.post(conn(call_id, A1) + "/answer", json={}).status_code == 204
    c1.wait_event(lambda e: e["eventName"] == "established" and e["callId"] == call_id)
    return call_id


def talking(stack: CtiStack, a: str, b: str) -> bool:
    """Do the phones of extensions a and b hear each other (through the switch)?"""
    legs = phone_legs(stack.switch)
    return a in legs and b in legs and legs[b] in stack.switch.hears(legs[a])


def test_make_call_between_agents(stack: CtiStack, two_agents: Any) -> None:
    http1, c1, http2, c2 = two_agents
    reply = http1.post("/api/csta/callControl/calls", json={"from": A1, "to": "1002"})
    assert reply.status_code == 200, reply.text
    call_id = reply.json()["callId"]
    init = c1.wait_event(lambda e: e["eventName"] == "serviceInitiated")
    assert init["initiatedDevice"] == A1 and init["localState"] == "Initiate"
    assert init["callId"] == call_id
    orig = c1.wait_event(lambda e: e["eventName"] == "originated")
    assert (orig["callingDevice"], orig["calledDevice"]) == (A1, A2)
    ring = c2.wait_event(lambda e: e["eventName"] == "delivered")
    assert ring["alertingDevice"] == A2 and ring["srcDeviceId"] == A2
    assert (ring["callingDevice"], ring["calledDevice"]) == (A1, A2)
    seen_by_caller = c1.wait_event(lambda e: e["eventName"] == "delivered")
    assert seen_by_caller["srcDeviceId"] == A1 and seen_by_caller["alertingDevice"] == A2
    assert http2.post(conn(call_id, A2) + "/answer", json={}).status_code == 204
    for client, src in ((c1, A1), (c2, A2)):
        est = client.wait_event(lambda e: e["eventName"] == "established")
        assert est["answeringDevice"] == A2 and est["srcDeviceId"] == src
    assert "serviceInitiated" not in c2.names()
    assert c1.names(call_id)[:4] == ["serviceInitiated", "originated", "delivered",
                                     "established"]
    wait_until(lambda: talking(stack, "1001", "1002"), 5, "1001 and 1002 talk")
    assert http2.delete(conn(call_id, A2)).status_code == 204
    for client in (c1, c2):
        client.wait_event(lambda e: e["eventName"] == "connectionCleared"
                          and e["releasingDevice"] == A2)


def test_single_step_transfer(stack: CtiStack, two_agents: Any) -> None:
    http1, c1, http2, c2 = two_agents
    call_id = queue_call_answered_by_1001(stack, http1, c1)
    reply = http1.post(conn(call_id, A1) + "/singleStepTransfer", json={"transferTo": A2})
    assert reply.status_code == 204, reply.text
    moved = c1.wait_event(lambda e: e["eventName"] == "transferred")
    assert moved["transferringDevice"] == A1 and moved["transferredToDevice"] == A2
    ring = c2.wait_event(lambda e: e["eventName"] == "delivered")
    assert ring["callId"] == call_id and ring["alertingDevice"] == A2
    c1.wait_event(lambda e: e["eventName"] == "connectionCleared" and e["deviceId"] == A1)
    assert http2.post(conn(call_id, A2) + "/answer", json={}).status_code == 204
    est = c2.wait_event(lambda e: e["eventName"] == "established")
    assert est["answeringDevice"] == A2 and est["callId"] == call_id
    # the transferring agent gets no established for the transferred call
    assert "established" not in [e["eventName"] for e in c1.events
                                 if e["eventName"] == "established"
                                 and e.get("answeringDevice") == A2]
    wait_until(lambda: talking(stack, "13800000002", "1002"), 5, "caller talks to 1002")


def consult_1002(stack: CtiStack, http1: Any, c1: StompClient, http2: Any, c2: StompClient,
                 call_id: str) -> str:
    reply = http1.post(conn(call_id, A1) + "/consult", json={"consultationParticipant": A2})
    assert reply.status_code == 200, reply.text
    consult_id = reply.json()["callId"]
    c1.wait_event(lambda e: e["eventName"] == "held" and e["callId"] == call_id)
    c1.wait_event(lambda e: e["eventName"] == "originated" and e["callId"] == consult_id)
    c2.wait_event(lambda e: e["eventName"] == "delivered" and e["callId"] == consult_id)
    assert http2.post(conn(consult_id, A2) + "/answer", json={}).status_code == 204
    c1.wait_event(lambda e: e["eventName"] == "established" and e["callId"] == consult_id)
    wait_until(lambda: talking(stack, "1001", "1002"), 5, "1001 consults 1002")
    return consult_id


def test_consult_then_transfer(stack: CtiStack, two_agents: Any) -> None:
    http1, c1, http2, c2 = two_agents
    call_id = queue_call_answered_by_1001(stack, http1, c1)
    consult_id = consult_1002(stack, http1, c1, http2, c2, call_id)
    reply = http1.post(conn(call_id, A1) + "/transfer", json={"consultCallId": consult_id})
    assert reply.status_code == 204, reply.text
    for client in (c1, c2):
        moved = client.wait_event(lambda e: e["eventName"] == "transferred")
        assert moved["primaryOldCall"] == call_id and moved["secondaryOldCall"] == consult_id
        assert moved["transferringDevice"] == A1 and moved["transferredToDevice"] == A2
    c1.wait_event(lambda e: e["eventName"] == "connectionCleared" and e["deviceId"] == A1
                  and e["callId"] == consult_id)
    wait_until(lambda: talking(stack, "13800000002", "1002"), 5, "caller talks to 1002")
    assert not talking(stack, "13800000002", "1001")


def test_consult_then_conference(stack: CtiStack, two_agents: Any) -> None:
    http1, c1, http2, c2 = two_agents
    call_id = queue_call_answered_by_1001(stack, http1, c1)
    consult_id = consult_1002(stack, http1, c1, http2, c2, call_id)
    reply = http1.post(conn(call_id, A1) + "/conference", json={"consultCallId": consult_id})
    assert reply.status_code == 204, reply.text
    for client in (c1, c2):
        conf = client.wait_event(lambda e: e["eventName"] == "conferenced")
        assert conf["conferencingDevice"] == A1 and conf["addedParty"] == A2
        assert conf["primaryOldCall"] == call_id and conf["secondaryOldCall"] == consult_id
        assert conf["newCall"] == call_id
    c1.wait_event(lambda e: e["eventName"] == "retrieved" and e["callId"] == call_id)
    wait_until(lambda: talking(stack, "13800000002", "1002") and
               talking(stack, "13800000002", "1001"), 5, "all three talk")


def test_single_step_conference(stack: CtiStack, two_agents: Any) -> None:
    http1, c1, http2, c2 = two_agents
    call_id = queue_call_answered_by_1001(stack, http1, c1)
    reply = http1.post(conn(call_id, A1) + "/singleStepConference",
                       json={"conferenceParticipant": A2, "participationType": "Active"})
    assert reply.status_code == 204, reply.text
    ring = c2.wait_event(lambda e: e["eventName"] == "delivered")
    assert ring["callId"] == call_id
    assert http2.post(conn(call_id, A2) + "/answer", json={}).status_code == 204
    for client in (c1, c2):
        client.wait_event(lambda e: e["eventName"] == "established"
                          and e["answeringDevice"] == A2)
        conf = client.wait_event(lambda e: e["eventName"] == "conferenced")
        assert conf["addedParty"] == A2 and conf["conferencingDevice"] == A1
    wait_until(lambda: talking(stack, "13800000002", "1002"), 5, "1002 joined")


def test_user_data_reaches_established(stack: CtiStack, two_agents: Any) -> None:
    http1, c1, http2, c2 = two_agents
    call_id = queue_call_answered_by_1001(stack, http1, c1)
    reply = http1.post(f"/api/csta/callControl/calls/{call_id}/user-data",
                       json={"entries": [{"key": "customerId", "value": "19099092"}]})
    assert reply.status_code == 204, reply.text
    http1.post(conn(call_id, A1) + "/singleStepTransfer", json={"transferTo": A2})
    ring = c2.wait_event(lambda e: e["eventName"] == "delivered")
    assert ring["userData"] == {"customerId": "19099092"}


def test_refusals(stack: CtiStack, two_agents: Any) -> None:
    http1, c1, http2, c2 = two_agents
    # an agent may not act on another's extension or agent
    reply = http1.post("/api/csta/callControl/calls", json={"from": A2, "to": "1001"})
    assert reply.status_code == 403
    reply = http1.post("/api/csta/agent/state", json={
        "func": "SetState", "loginId": f"agent2@{D}", "device": A2, "agentMode": "Ready"})
    assert reply.status_code == 403
    # bad input names the field; nothing reaches the switch
    reply = http1.post("/api/csta/callControl/calls", json={"from": A1, "to": "1,user/x"})
    assert reply.status_code == 400 and reply.json()["field"] == "to"
    reply = http1.post("/api/csta/callControl/calls/not-a-uuid/connections/x|y/answer",
                       json={})
    assert reply.status_code == 400
    reply = http1.post("/api/csta/agent/state", json={"func": "Fly"})
    assert reply.status_code == 400 and reply.json()["field"] == "func"
    unknown = "6aee1dda-d4a2-4d3c-8fab-df7782a6c10f"
    assert http1.post(conn(unknown, A1) + "/hold", json={}).status_code == 404
    # no token: 401; a STOMP CONNECT without a valid token gets ERROR
    assert stack.server.anonymous().post("/api/csta/agent/state", json={}).status_code == 401
    bad = StompClient(stack.server.url, "nope")
    with pytest.raises(AssertionError, match="ERROR"):
        bad.open()
    bad.close()
    # an agent may not subscribe to another agent's events, nor the domain
    with pytest.raises(AssertionError, match="refused"):
        c1.subscribe(f"/topic/csta/agent/agent2@{D}", "sub-9")


def test_login_elsewhere_needs_force(stack: CtiStack) -> None:
    token = wellclient_login(stack, "supervisor", "1900", mode="NotReady")
    http = api(stack, token)
    state = {"func": "Login", "loginId": f"supervisor@{D}", "device": A1,
             "agentMode": "NotReady"}
    reply = http.post("/api/csta/agent/state", json=state)
    assert reply.status_code == 409 and reply.json()["field"] == "device"
    assert "1900@cc.test" in reply.json()["error"]
    assert http.post("/api/csta/agent/state", json={**state, "force": True}).status_code == 204
    assert http.post("/api/csta/agent/state", json={
        "func": "Logout", "loginId": f"supervisor@{D}", "device": A1}).status_code == 204


def test_the_wallboard_finds_agent_records_through_their_index(stack: CtiStack) -> None:
    """A wellClient login writes the agent's record and its entry in the domain's index
    (job -> device) together; the wallboard reads the index instead of scanning the keyspace;
    the logout removes both."""
    keys = stack.ctx.keys(D)
    token = wellclient_login(stack, "supervisor", "1900", mode="NotReady")
    http = api(stack, token)
    assert stack.ctx.redis.hget(keys.csta_agents(), "supervisor") == "1900"
    assert stack.ctx.redis.hget(keys.csta_agent("supervisor"), "device") == "1900"
    board = http.get("/api/csta/wallboard", params={"domain": D})
    assert board.status_code == 200, board.text
    row = next(a for a in board.json()["agents"] if a["extension"] == "1900")
    assert row["job"] == "supervisor"
    assert http.post("/api/csta/agent/state", json={
        "func": "Logout", "loginId": f"supervisor@{D}", "device": f"1900@{D}"}).status_code == 204
    assert stack.ctx.redis.hget(keys.csta_agents(), "supervisor") is None
    assert not stack.ctx.redis.exists(keys.csta_agent("supervisor"))


@pytest.mark.parametrize("mode, agent_hears_supervisor, caller_hears_supervisor", [
    ("listen", False, False), ("whisper", True, False), ("barge", True, True)])
def test_supervisor_spy(stack: CtiStack, two_agents: Any, mode: str,
                        agent_hears_supervisor: bool, caller_hears_supervisor: bool) -> None:
    http1, c1, _, _ = two_agents
    call_id = queue_call_answered_by_1001(stack, http1, c1)
    sup = stack.server.anonymous()
    reply = sup.post("/login", data={"username": "supervisor", "password": "supervisor",
                                     "namespace": D})
    sup.headers["sessionId"] = reply.json()["sessionId"]
    # agents may not spy
    assert http1.post(f"/api/csta/callControl/calls/{call_id}/spy",
                      params={"deviceId": A1}).status_code == 403
    reply = sup.post(f"/api/csta/callControl/calls/{call_id}/spy",
                     params={"deviceId": f"1900@{D}", "mode": mode})
    assert reply.status_code == 204, reply.text
    sup_dev = f"1900@{D}"
    wait_until(lambda: sup_dev in [leg.get("d") for leg in
                                   call_legs(stack.ctx, D, call_id).values()], 5,
               "1900 rings, in the call")
    reply = sup.post(conn(call_id, sup_dev) + "/answer", json={})
    assert reply.status_code == 204, reply.text
    legs = phone_legs(stack.switch)
    wait_until(lambda: legs["13800000002"] in stack.switch.hears(legs["1900"]), 5,
               "the supervisor hears the caller")
    assert (legs["1900"] in stack.switch.hears(legs["1001"])) is agent_hears_supervisor
    assert (legs["1900"] in stack.switch.hears(legs["13800000002"])) is caller_hears_supervisor


def test_database_down_answers_503_not_409(stack: CtiStack, agent1: tuple[str, StompClient],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Errors map by type (fsapps.server.http_errors): a DatabaseUnavailableError is an
    Unavailable, so a wellClient route answers 503 for it, as for its parents."""
    token, _ = agent1

    def database_down(*args: Any) -> dict[str, str]:
        raise DatabaseUnavailableError("PostgreSQL at db.test:5432 refused the connection")

    monkeypatch.setattr(hubmod, "agent_state", database_down)
    reply = api(stack, token).post("/api/csta/agent/state", json={
        "func": "SetState", "loginId": f"agent@{D}", "device": A1, "agentMode": "NotReady"})
    assert reply.status_code == 503, reply.text
    assert reply.json() == {"error": "service unavailable: PostgreSQL at db.test:5432 refused "
                                     "the connection"}
