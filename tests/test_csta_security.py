"""The wellClient side of the CTI server attacked over the wire (real HTTP, SockJS and STOMP
against a server from tests/cti_support.py, fake switches, real Redis and PostgreSQL): headers
of every answer, who may SUBSCRIBE to what, tokens that die under a live session, bounds a
client can not push past (sessions, subscriptions, queued messages, sessions never used),
call control across agents, call-data keys, /login's answers and throttling."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from browser_support import agents_stack, sign_off
from csta_support import StompClient, frame
from cti_support import Client, CtiStack
from test_csta_protocol import api, conn, talking, wellclient_login

from fakefs.scenario import wait_until
from fsapps.server.csta import events as ev
from fsapps.server.csta import hub as hubmod
from fsapps.server.csta import sockjs
from fsapps.server.csta.callcontrol import call_legs

D = "cc.test"
A1, A2 = f"1001@{D}", f"1002@{D}"


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with agents_stack(redis_server.url, database.dsn, ("1001", "1002", "1900"),
                      login_max_failures=3, login_max_failures_per_address=1000) as s:
        yield s


def stomp(stack: CtiStack, token: str) -> StompClient:
    client = StompClient(stack.server.url, token)
    client.open()
    return client


def refused(client: StompClient, message: str) -> None:
    """The session answers ERROR ``message`` and is closed."""
    command, headers, body = client.next_frame(10)
    while command == "MESSAGE":
        command, headers, body = client.next_frame(10)
    assert (command, headers.get("message")) == ("ERROR", message), (command, headers, body)
    wait_until(lambda: client.closed.is_set(), 10, "the session closed")


# ---------------------------------------------------------------- headers ---------------
@pytest.mark.parametrize("path", ["/", "/wallboard", "/static/well-client.js",
                                  "/static/app.css", "/api/csta/agent/state", "/login"])
def test_every_answer_refuses_sniffing_and_framing(stack: CtiStack, path: str) -> None:
    http = stack.server.anonymous()
    reply = http.post(path, json={}) if path.startswith(("/api", "/login")) else http.get(path)
    assert reply.headers.get("X-Content-Type-Options") == "nosniff", reply.headers
    assert reply.headers.get("X-Frame-Options") == "DENY"
    assert reply.headers.get("Referrer-Policy") == "no-referrer"
    if path in ("/", "/wallboard"):
        csp = reply.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        # its own socket only, not any ws: host
        host = stack.server.url.removeprefix("http://")
        assert f"ws://{host} wss://{host}" in csp and "ws: " not in csp


def test_a_hostile_host_header_stays_out_of_the_policy(stack: CtiStack) -> None:
    for host in ("evil.test; script-src *", "a b", "x\ty"):
        reply = stack.server.anonymous().get("/", headers={"Host": host})
        csp = reply.headers["Content-Security-Policy"]
        assert "evil" not in csp and "script-src 'self';" in csp and "ws://" not in csp


# ---------------------------------------------------------------- STOMP: authorization --
@pytest.mark.parametrize("destination", [
    f"/topic/csta/agent/agent2@{D}", f"/topic/csta/device/{A2}", f"/topic/csta/domain/{D}",
    "/topic/csta/device/1001@other.domain", "/topic/csta/agent/../agent2@cc.test",
    "/topic/event.agent.*.agent2@cc_test", "/topic/event.agent.*.agent@cc.test",
    "/topic/event.agent.*.agent@other_domain", "/queue/anything"])
def test_an_agent_subscribes_only_to_its_own_topics(stack: CtiStack, destination: str) -> None:
    client = stomp(stack, stack.server.login("agent"))
    try:
        client.subscribe(f"/topic/csta/device/{A1}")  # its own: allowed
        with pytest.raises(AssertionError, match="refused"):
            client.subscribe(destination, "sub-1")
    finally:
        client.close()


def test_a_second_connect_is_refused(stack: CtiStack) -> None:
    client = stomp(stack, stack.server.login("agent"))
    try:
        client.send(frame("CONNECT", {"accept-version": "1.1",
                                      "sessionId": stack.server.login("supervisor")}))
        refused(client, "already connected")
    finally:
        client.close()


def test_a_subscribe_is_answered_by_one_receipt(stack: CtiStack) -> None:
    client = stomp(stack, stack.server.login("agent"))
    try:
        client.subscribe(f"/topic/csta/device/{A1}")
        client.send(frame("UNSUBSCRIBE", {"id": "sub-0", "receipt": "u"}))
        assert client.next_frame(10)[:2] == ("RECEIPT", {"receipt-id": "u"})
    finally:
        client.close()


def test_a_revoked_token_is_refused_at_the_next_subscribe(stack: CtiStack) -> None:
    token = stack.server.login("agent")
    client = stomp(stack, token)
    try:
        client.subscribe(f"/topic/csta/device/{A1}")
        assert Client(stack.server.url, token).post("/api/logout").status_code == 200
        client.send(frame("SUBSCRIBE", {"id": "sub-1", "receipt": "r-1",
                                        "destination": f"/topic/csta/agent/agent@{D}"}))
        refused(client, "Not Authorized")
    finally:
        client.close()


def test_a_revoked_token_ends_a_quiet_session(stack: CtiStack,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubmod, "TOKEN_RECHECK_S", 0.2)
    token = stack.server.login("supervisor")
    client = stomp(stack, token)
    try:
        client.subscribe(f"/topic/csta/domain/{D}")
        assert Client(stack.server.url, token).post("/api/logout").status_code == 200
        refused(client, "Not Authorized")
        # and nothing more reaches it: the hub forgot its subscription
        wait_until(lambda: not [s for s in hub_of(stack).subscriptions
                                if s.conn.session.id == client.url.rsplit("/", 1)[-1]],
                   10, "subscription dropped")
    finally:
        client.close()


def hub_of(stack: CtiStack) -> hubmod.Hub:
    from fsapps.server.plugins import HUB

    return stack.server.runner.app[HUB]


# ---------------------------------------------------------------- STOMP: bounds ---------
def test_subscriptions_per_session_are_bounded_and_ids_unique(
        stack: CtiStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubmod, "MAX_SUBSCRIPTIONS", 2)
    token = stack.server.login("agent")
    client = stomp(stack, token)
    try:
        client.subscribe(f"/topic/csta/device/{A1}", "a")
        client.send(frame("SUBSCRIBE", {"id": "a", "destination": f"/topic/csta/device/{A1}"}))
        refused(client, "duplicate subscription id")
    finally:
        client.close()
    client = stomp(stack, token)
    try:
        client.subscribe(f"/topic/csta/device/{A1}", "a")
        client.subscribe(f"/topic/csta/agent/agent@{D}", "b")
        client.send(frame("SUBSCRIBE", {"id": "c", "destination": f"/topic/csta/device/{A1}"}))
        refused(client, "too many subscriptions")
    finally:
        client.close()


def test_sessions_per_user_are_bounded(stack: CtiStack,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubmod, "MAX_SESSIONS_PER_USER", 2)
    token = stack.server.login("agent2")
    first, second = stomp(stack, token), stomp(stack, token)
    try:
        third = StompClient(stack.server.url, stack.server.login("agent2"))
        with pytest.raises(AssertionError, match="too many sessions"):
            third.open()
        third.close()
        # another user is not affected
        stomp(stack, stack.server.login("agent")).close()
        # a session that ends makes room
        first.close()
        wait_until(lambda: len(hub_of(stack).sessions_of.get("agent2", ())) < 2, 15,
                   "first session forgotten")
        stomp(stack, token).close()
    finally:
        second.close()


def test_a_session_that_never_connects_is_closed(stack: CtiStack,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubmod, "CONNECT_TIMEOUT_S", 0.3)
    url = f"{stack.server.url}/mvc/stomp/000/{uuid.uuid4().hex[:8]}"
    with requests.Session() as http:
        assert http.post(url + "/xhr", timeout=10).text == "o\n"
        reply = http.post(url + "/xhr", timeout=40).text
        assert reply.startswith("a[") and "not connected" in reply, reply
        assert '\nc[3000,"not connected"]' in reply


def test_a_session_opened_and_abandoned_expires(stack: CtiStack,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sockjs, "SESSION_TIMEOUT_S", 0.3)
    url = f"{stack.server.url}/mvc/stomp/000/{uuid.uuid4().hex[:8]}"
    with requests.Session() as http:
        assert http.post(url + "/xhr", timeout=10).text == "o\n"
        # never polled again: the session goes, its id answers 404
        wait_until(lambda: http.post(url + "/xhr_send", data='["\\n"]',
                                     timeout=10).status_code == 404, 10, "session expired")


def test_a_consumer_that_stops_reading_is_cut_off(stack: CtiStack,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sockjs, "MAX_OUTBOX", 20_000)
    token = stack.server.login("supervisor")
    url = f"{stack.server.url}/mvc/stomp/000/{uuid.uuid4().hex[:8]}"
    with requests.Session() as http:
        assert http.post(url + "/xhr", timeout=10).text == "o\n"
        send = [frame("CONNECT", {"accept-version": "1.1", "sessionId": token}),
                frame("SUBSCRIBE", {"id": "s", "destination": f"/topic/csta/domain/{D}",
                                    "receipt": "r"})]
        assert http.post(url + "/xhr_send", data=json.dumps(send), timeout=10).status_code == 204
        wait_until(lambda: any(s.sub_id == "s" and s.destination.endswith(D)
                               for s in hub_of(stack).subscriptions), 10, "subscribed")
        # the events pile up while the client does not poll
        ctx = stack.server.services.ctx
        for n in range(200):
            hubmod.publish(ctx, ev.agent_record("agentReady", domain=D, agent_id=f"a{n}@{D}",
                                                device=A1, mode="Ready", ms=n))
        reply = ""
        deadline = time.monotonic() + 15
        while not reply.startswith("c") and time.monotonic() < deadline:
            reply = http.post(url + "/xhr", timeout=40).text
        assert reply.startswith('c[3001,"slow consumer'), reply


def test_xhr_send_with_a_broken_payload_gets_the_protocols_answer(stack: CtiStack) -> None:
    url = f"{stack.server.url}/mvc/stomp/000/{uuid.uuid4().hex[:8]}"
    with requests.Session() as http:
        assert http.post(url + "/xhr", timeout=10).text == "o\n"
        for body in (b"\xff\xfe", b"[1]", b"{"):
            reply = http.post(url + "/xhr_send", data=body, timeout=10)
            assert (reply.status_code, reply.text) == (500, "Broken JSON encoding."), body


def test_the_queue_of_a_session_is_bounded() -> None:
    session = sockjs.Session("s1", None)  # type: ignore[arg-type]
    for _ in range(sockjs.MAX_OUTBOX // 1000 + 2):
        session.send("x" * 1000)
    assert session.closed == sockjs.SLOW_CONSUMER
    assert session.outbox == [] and session.outbox_chars == 0


# ---------------------------------------------------------------- REST ------------------
def answered_queue_call(stack: CtiStack, http: Any, client: StompClient, user: str, ext: str,
                        caller: str, profile: str = "internal") -> str:
    http.post("/api/csta/agent/state", json={"func": "SetState", "loginId": f"{user}@{D}",
                                             "device": f"{ext}@{D}", "agentMode": "Ready"})
    stack.center.call(stack.switch, caller, "7110", profile=profile, hangup_after_ms=None)
    call_id = client.wait_event(lambda e: e["eventName"] == "delivered")["callId"]
    assert http.post(conn(call_id, f"{ext}@{D}") + "/answer", json={}).status_code == 204
    client.wait_event(lambda e: e["eventName"] == "established" and e["callId"] == call_id)
    return call_id


def test_an_agent_can_not_pull_another_agents_caller_into_its_call(stack: CtiStack) -> None:
    parties = []
    for user, ext in (("agent", "1001"), ("agent2", "1002")):
        token = wellclient_login(stack, user, ext, mode="NotReady")
        client = StompClient(stack.server.url, token)
        client.open()
        client.subscribe(f"/topic/csta/agent/{user}@{D}")
        parties.append((api(stack, token), client))
    (http1, c1), (http2, c2) = parties
    try:
        mine = answered_queue_call(stack, http1, c1, "agent", "1001", "13800000011")
        theirs = answered_queue_call(stack, http2, c2, "agent2", "1002", "13800000022")
        before = call_legs(stack.server.services.ctx, D, theirs)
        for action in ("conference", "transfer"):
            reply = http1.post(conn(mine, A1) + "/" + action, json={"consultCallId": theirs})
            assert reply.status_code == 404, (action, reply.text)
            assert reply.json()["field"] == "connectionId"
        assert call_legs(stack.server.services.ctx, D, theirs) == before
        wait_until(lambda: talking(stack, "13800000022", "1002"), 5, "their call untouched")
        assert not talking(stack, "13800000022", "1001")
        # nor act on its connection, nor set its call data
        assert http1.post(conn(theirs, A2) + "/hold", json={}).status_code == 403
        assert http1.delete(conn(theirs, A2)).status_code == 403
        reply = http1.post(f"/api/csta/callControl/calls/{theirs}/user-data",
                           json={"entries": [{"key": "k", "value": "v"}]})
        assert reply.status_code == 403
    finally:
        sign_off(stack, [(http, client, user, ext) for (http, client), (user, ext) in zip(
            parties, (("agent", "1001"), ("agent2", "1002")), strict=True)], D)


@pytest.mark.parametrize("entry", [
    {"key": "a${b}", "value": "1"}, {"key": "a|b", "value": "1"}, {"key": "a,b", "value": "1"},
    {"key": "a b", "value": "1"}, {"key": "<img>", "value": "1"}, {"key": "", "value": "1"},
    {"key": "k" * 101, "value": "1"}, {"key": "a'b", "value": "1"},
    {"key": "ok", "value": {"nested": 1}}, {"key": "ok", "value": [1]},
    {"key": "ok", "value": "x\x00y"}, {"key": "ok", "value": "v" * 1001}, {"key": 5},
    "not-an-object"])
def test_call_data_keys_and_values_are_checked_before_anything_is_written(
        stack: CtiStack, entry: Any) -> None:
    http = api(stack, stack.server.login("supervisor"))
    call_id = str(uuid.uuid4())
    path = f"/api/csta/callControl/calls/{call_id}/user-data"
    reply = http.post(path, json={"entries": [{"key": "first", "value": "1"}, entry]})
    assert reply.status_code == 400, reply.text
    assert reply.json()["field"] == "entries"
    # the good entry before it was not written either
    assert not stack.server.services.ctx.redis.exists(
        stack.server.services.ctx.keys(D).csta_userdata(call_id))
    # a good one gets past the checks (to the unknown call)
    ok = http.post(path, json={"entries": [{"key": "customer_Id.2-号", "value": "<b>x</b>"}]})
    assert ok.status_code == 404 and ok.json()["field"] == "callId"


@pytest.mark.parametrize(("field", "value"), [
    ("reason", "r" * 101), ("reason", "a\x1bb"), ("reason", {"x": 1}), ("force", "yes"),
    ("force", [1])])
def test_agent_state_refuses_what_it_would_have_cut_or_guessed(stack: CtiStack, field: str,
                                                               value: Any) -> None:
    http = api(stack, stack.server.login("agent"))
    reply = http.post("/api/csta/agent/state", json={
        "func": "Login", "loginId": f"agent@{D}", "device": A1, "agentMode": "NotReady",
        field: value})
    assert reply.status_code == 400, reply.text
    assert reply.json()["field"] == field
    assert not stack.server.services.ctx.redis.exists(
        stack.server.services.ctx.keys(D).csta_agent("agent"))


def test_login_says_the_same_for_unknown_users_and_wrong_passwords_and_throttles(
        stack: CtiStack) -> None:
    http = stack.server.anonymous()
    unknown = http.post("/login", data={"username": "nobody", "password": "x", "namespace": D})
    wrong = http.post("/login", data={"username": "agent", "password": "x", "namespace": D})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()
    assert "sessionId" not in unknown.text
    statuses = [http.post("/login", data={"username": "agent2", "password": "wrong"}).status_code
                for _ in range(5)]
    assert statuses[:3] == [401] * 3 and statuses[3:] == [429, 429], statuses
    throttled = http.post("/login", data={"username": "agent2", "password": "agent2"})
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert throttled.json()["error"]
    # the failure counter goes: the user can log in again in later tests
    from fsapps.server.auth import digest

    auth = stack.server.services.auth
    auth.r.delete(auth.keys.login_failures_user(digest("agent2")))


def test_an_outside_caller_presenting_an_extension_is_not_that_extension(
        stack: CtiStack) -> None:
    token1 = wellclient_login(stack, "agent", "1001", mode="NotReady")
    token2 = wellclient_login(stack, "agent2", "1002", mode="NotReady")
    c1, c2 = StompClient(stack.server.url, token1), StompClient(stack.server.url, token2)
    http1, http2 = api(stack, token1), api(stack, token2)
    try:
        for client, user in ((c1, "agent"), (c2, "agent2")):
            client.open()
            client.subscribe(f"/topic/csta/agent/{user}@{D}")
        # a trunk caller presenting agent 1002's extension as its caller ID
        call_id = answered_queue_call(stack, http1, c1, "agent", "1001", "1002",
                                      profile="external")
        time.sleep(0.5)  # let any event for 1002 arrive (asserting absence, not a timing)
        assert call_id not in {e.get("callId") for e in c2.events}
        assert http2.delete(conn(call_id, A2)).status_code in (403, 404)
    finally:
        for client in (c1, c2):
            client.close()
        for http, user, dev in ((http1, "agent", A1), (http2, "agent2", A2)):
            http.post("/api/csta/agent/state", json={"func": "Logout", "loginId": f"{user}@{D}",
                                                     "device": dev})
        for ch in list(stack.switch.channels.values()):
            stack.switch.hangup(ch)
        wait_until(lambda: not stack.switch.channels, 5, "channels gone")
