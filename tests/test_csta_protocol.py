"""wellClient end to end over the wire: /login, /api/csta and a SockJS + STOMP session against
a real CTI server, fake switches running fsapps.runtime, real Redis and PostgreSQL. Each
scenario checks the events of seed 004 in order, with the seed's fields."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from csta_support import StompClient
from cti_support import CtiStack, cti_stack

from fakefs.channel import Behaviour
from fakefs.scenario import wait_until

D = "cc.test"
A1, A2 = f"1001@{D}", f"1002@{D}"
COMMON = ("eventName", "eventTime", "eventType", "serial", "namespace", "srcDeviceId")


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with cti_stack(redis_server.url, database.dsn) as s:
        # phones that ring until answered from the page (uuid_phone_event talk)
        for ext in ("1001", "1002", "1900"):
            s.center.agent(ext, ["110"], ready=False, behaviour=Behaviour(answer_after_ms=None))
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


def test_connected_carries_heart_beat_and_pending_logon_is_delivered(stack: CtiStack) -> None:
    token = wellclient_login(stack, "agent2", "1002", mode="Ready")
    client = StompClient(stack.server.url, token, heart_beat="10000,10000")
    try:
        headers = client.open()
        assert headers["version"] == "1.1"
        assert "," in headers["heart-beat"]
        # logged on and ready before the subscription: held, delivered after it
        client.subscribe(f"/topic/csta/agent/agent2@{D}")
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
    assert delivered["callingDevice"] == f"13800000001@{D}"
    http = api(stack, token)
    reply = http.post(conn(call_id, A1, encoded=True) + "/answer", json={})
    assert reply.status_code == 204, reply.text
    est = client.wait_event(lambda e: e["eventName"] == "established")
    assert est["answeringDevice"] == A1 and est["localState"] == "Connect"
    assert est["callingDevice"] == f"13800000001@{D}"
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
