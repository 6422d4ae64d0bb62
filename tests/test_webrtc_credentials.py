"""The browser phone's SIP credentials (docs/webrtc.md) with a real Redis and CTI server: the
route gives an agent a random password for its own flagged extension only, renews it, takes it
over or refuses a second login as configured, gives it back; the directory serves it only to
WebSocket requests and never the record's password to them; the pages' CSP names the SIP
WebSocket. (The switch and a browser: tests/switch/test_webrtc.py.)"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cti_support import API_TOKEN, CtiStack, cti_stack

from fsapps.config import WebrtcSettings
from fsapps.domain import userdir
from fsapps.domain.userdir import UserDirectory, parse_record

D = "cc.test"
WS = "ws://127.0.0.1:5066"


@pytest.fixture
def stack(redis_server: Any, database: Any, request: pytest.FixtureRequest
          ) -> Iterator[CtiStack]:
    mode = getattr(request, "param", "takeover")
    webrtc = WebrtcSettings(ws_urls=(WS,), credential_ttl_seconds=30, second_login=mode)
    with cti_stack(redis_server.url, database.dsn, switches=0, group=None,
                   sections={"webrtc": webrtc}) as s:
        directory = UserDirectory(s.ctx, D)
        directory.set(parse_record("1001", D, {"param": {"password": "desk-pw",
                                                         "webrtc": "true"}}))
        directory.set(parse_record("1002", D, {"param": {"password": "desk-pw2"}}))
        yield s


def claim(stack: CtiStack, user: str, device: str, **body: Any) -> Any:
    return stack.server.client(user).post("/api/webrtc/credentials",
                                          json={"device": device, **body})


def served_password(stack: CtiStack, user: str, transport: str) -> str | None:
    doc = userdir.answer(stack.ctx, user, D, transport)
    if doc == userdir.NOT_FOUND:
        return None
    import xml.etree.ElementTree as ET

    node = ET.fromstring(doc).find(".//user/params/param[@name='password']")
    return None if node is None else node.get("value")


def test_an_agent_gets_a_random_password_that_only_websocket_requests_are_served(
        stack: CtiStack) -> None:
    assert served_password(stack, "1001", "ws") is None  # no login holds the phone yet
    agent = stack.server.client("agent")
    reply = agent.post("/api/webrtc/credentials", json={"device": f"1001@{D}"})
    assert reply.status_code == 200, reply.text
    cred = reply.json()
    assert cred["uri"] == f"sip:1001@{D}" and cred["authorizationUser"] == "1001"
    assert cred["wsServers"] == [WS] and cred["expiresIn"] == 30 and cred["renewAfter"] == 10
    assert len(cred["password"]) >= 24 and cred["password"] != "desk-pw"
    assert reply.headers["Cache-Control"] == "no-store"
    # over WebSocket the login's password; over UDP/TCP the desk phone's
    assert served_password(stack, "1001", "ws") == cred["password"]
    assert served_password(stack, "1001", "WSS") == cred["password"]
    assert served_password(stack, "1001", "udp") == "desk-pw"
    assert served_password(stack, "1001", "") == "desk-pw"
    # the key lives its TTL
    ttl = stack.ctx.redis.pttl(stack.ctx.keys(D).webrtc("1001"))
    assert 0 < ttl <= 30_000
    # a renewal by the same login keeps the password
    again = agent.post("/api/webrtc/credentials", json={"device": f"1001@{D}", "renew": True})
    assert again.json()["password"] == cred["password"]


def test_refusals(stack: CtiStack) -> None:
    anonymous = stack.server.anonymous().post("/api/webrtc/credentials",
                                              json={"device": f"1001@{D}"})
    assert anonymous.status_code == 401
    other = claim(stack, "agent2", f"1001@{D}")  # another agent's extension
    assert other.status_code == 403, other.text
    desk = claim(stack, "agent2", f"1002@{D}")  # no webrtc flag
    assert desk.status_code == 409 and "webrtc=true" in desk.json()["error"]
    assert claim(stack, "agent", "1001@elsewhere").status_code == 400
    assert claim(stack, "agent", f"1001@{D}", renew="yes").status_code == 400
    api = stack.server.client(token=API_TOKEN).post("/api/webrtc/credentials",
                                                    json={"device": f"1001@{D}"})
    assert api.status_code == 403  # a browser phone belongs to a login
    # a desk extension over WebSocket: refused by the directory, whatever the password
    assert served_password(stack, "1002", "ws") is None


def test_a_second_login_takes_the_phone_over(stack: CtiStack) -> None:
    first = stack.server.client("agent")
    second = stack.server.client("agent")
    a = first.post("/api/webrtc/credentials", json={"device": f"1001@{D}"}).json()
    b = second.post("/api/webrtc/credentials", json={"device": f"1001@{D}"}).json()
    assert a["password"] != b["password"]
    assert served_password(stack, "1001", "ws") == b["password"]
    renew = first.post("/api/webrtc/credentials", json={"device": f"1001@{D}", "renew": True})
    assert renew.status_code == 409 and "taken over" in renew.json()["error"]
    # the first login's logout leaves the second's phone alone; the second's drops it
    assert first.delete(f"/api/webrtc/credentials?device=1001@{D}").json() == {
        "released": False}
    assert served_password(stack, "1001", "ws") == b["password"]
    assert second.delete(f"/api/webrtc/credentials?device=1001@{D}").json() == {
        "released": True}
    assert served_password(stack, "1001", "ws") is None


@pytest.mark.parametrize("stack", ["refuse"], indirect=True)
def test_a_second_login_is_refused_when_configured(stack: CtiStack) -> None:
    first = stack.server.client("agent")
    second = stack.server.client("agent")
    a = first.post("/api/webrtc/credentials", json={"device": f"1001@{D}"})
    b = second.post("/api/webrtc/credentials", json={"device": f"1001@{D}"})
    assert a.status_code == 200 and b.status_code == 409
    assert "in use" in b.json()["error"]
    assert served_password(stack, "1001", "ws") == a.json()["password"]


def test_the_pages_policy_allows_the_sip_websocket(stack: CtiStack) -> None:
    page = stack.server.anonymous().get("/")
    assert f"connect-src 'self' ws://127.0.0.1:{stack.server.port}" in \
        page.headers["Content-Security-Policy"]
    assert WS in page.headers["Content-Security-Policy"]
    assert '<script src="/static/phone.js"' in page.text


def test_off_without_ws_urls(redis_server: Any, database: Any) -> None:
    with cti_stack(redis_server.url, database.dsn, switches=0, group=None) as s:
        reply = s.server.client("agent").post("/api/webrtc/credentials",
                                               json={"device": f"1001@{D}"})
        assert reply.status_code == 404 and "webrtc.ws_urls" in reply.json()["error"]


def test_a_record_with_its_own_cacheable_keeps_it_others_are_not_cached(
        stack: CtiStack) -> None:
    settings = dataclasses.replace(stack.ctx.settings, directory=dataclasses.replace(
        stack.ctx.settings.directory, cacheable="60000"))
    ctx = dataclasses.replace(stack.ctx, settings=settings)  # its own clients, same Redis
    doc = userdir.answer(ctx, "1001", D, "udp")
    assert 'cacheable="60000"' not in doc  # a browser extension: never cached by default
    assert 'cacheable="60000"' in userdir.answer(ctx, "1002", D, "udp")
    assert json.loads(stack.ctx.redis.hget(f"cti_exten@{D}", "1001"))["param"]["webrtc"] == "true"
