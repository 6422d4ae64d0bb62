"""The unmodified wellClient SDK against the CTI server, over the wire (issue 16, points 1-3):
the session cookie /login sets and who may use it, a STOMP CONNECT without headers, CORS for
the configured origins only (preflights included), SetState / Logout / heart-beat without a
loginId (the agent is the session's), and the configuration refusing ``*``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from browser_support import agents_stack
from csta_support import StompClient, frame
from cti_support import Client, CtiStack
from pubsub_capture import Subscriber
from test_csta_security import refused

from fakefs.scenario import wait_until
from fsapps import config
from fsapps.errors import ConfigError
from fsapps.server.cors import SDK_COOKIE, SESSION_COOKIE, set_session_cookie
from fsapps.server.csta import callcontrol, presence

D = "cc.test"
PAGE = "http://127.0.0.1:8099"        # the users' own web server (allowed)
STRANGER = "http://127.0.0.1:8100"    # another page on the same site (not allowed)
STATE = "/api/csta/agent/state"


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with agents_stack(redis_server.url, database.dsn, ("1001", "1002", "1900"),
                      cors_origins=(PAGE,)) as s:
        yield s


def sdk_login(stack: CtiStack, user: str = "agent", origin: str = PAGE) -> tuple[Client, str]:
    """The SDK's /login (a form); the client keeps the cookie and sends Origin like a page."""
    http = stack.server.anonymous()
    http.headers["Origin"] = origin
    reply = http.post("/login", data={"username": user, "password": user, "namespace": D})
    assert reply.status_code == 200, reply.text
    return http, str(reply.json()["sessionId"])


def agent_mode(stack: CtiStack, job: str) -> str:
    return str(stack.ctx.redis.hget(stack.ctx.keys(D).csta_agent(job), "mode") or "")


# ---------------------------------------------------------------- the cookie -----------
def test_login_sets_an_httponly_lax_cookie_holding_the_session(stack: CtiStack) -> None:
    http, token = sdk_login(stack)
    cookie = next(c for c in http.cookies if c.name == SESSION_COOKIE)
    assert cookie.value == token
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite") == "Lax"
    assert cookie.secure is False  # plain HTTP here; Secure when served over TLS
    assert cookie.path == "/"
    raw = http.post("/login", data={"username": "agent", "password": "agent"}).headers[
        "Set-Cookie"]
    assert "HttpOnly" in raw and "SameSite=Lax" in raw and "Max-Age=" in raw


def test_rest_takes_the_cookie_alone_from_allowed_and_own_pages(stack: CtiStack) -> None:
    http, _ = sdk_login(stack)
    assert "sessionId" not in http.headers and "Authorization" not in http.headers
    assert http.post(STATE, json={"func": "Login", "loginId": f"agent@{D}",
                                  "device": f"1001@{D}", "agentMode": "NotReady"}
                     ).status_code == 204
    http.headers["Origin"] = stack.server.url  # the CTI server's own page
    assert http.post("/api/csta/agent/heartbeat").status_code == 204
    del http.headers["Origin"]  # no page at all (curl)
    assert http.post("/api/csta/agent/heartbeat").status_code == 204
    http.post(STATE, json={"func": "Logout", "device": f"1001@{D}"})


def test_a_page_not_listed_can_not_use_the_cookie(stack: CtiStack) -> None:
    http, token = sdk_login(stack)
    http.headers["Origin"] = STRANGER
    reply = http.post(STATE, json={"func": "Login", "device": f"1001@{D}"})
    assert reply.status_code == 401 and "Access-Control-Allow-Origin" not in reply.headers
    assert agent_mode(stack, "agent") == ""
    # its own header still works from anywhere (it is no ambient credential)
    http.headers["sessionId"] = token
    assert http.post("/api/csta/agent/heartbeat").status_code == 204


def test_no_token_anywhere_is_refused(stack: CtiStack) -> None:
    http = stack.server.anonymous()
    assert http.post(STATE, json={"func": "Logout"}).status_code == 401
    http.cookies.set(SESSION_COOKIE, "forged-token")
    assert http.post("/api/csta/agent/heartbeat").status_code == 401


# ---------------------------------------------------------------- STOMP ----------------
def test_a_connect_without_headers_is_authenticated_by_the_cookie(stack: CtiStack) -> None:
    http, _ = sdk_login(stack)
    client = StompClient(stack.server.url, "", http=http)
    try:
        connected = client.open()
        assert connected["user-name"] == "agent"
        client.subscribe(f"/topic/csta/agent/agent@{D}")  # its own agent: allowed
        client.send(frame("SUBSCRIBE", {"id": "sub-1", "receipt": "r-1",
                                        "destination": f"/topic/csta/agent/agent2@{D}"}))
        refused(client, "Forbidden")
    finally:
        client.close()


@pytest.mark.parametrize("origin", [STRANGER, None])
def test_a_connect_with_neither_token_nor_usable_cookie_is_refused(
        stack: CtiStack, origin: str | None) -> None:
    if origin is None:
        http = stack.server.anonymous()  # no cookie at all
    else:
        http, _ = sdk_login(stack)
        http.headers["Origin"] = origin  # the cookie, from a page not listed
    client = StompClient(stack.server.url, "", http=http)
    with pytest.raises(AssertionError, match="missing or malformed token"):
        client.open()
    wait_until(lambda: client.closed.is_set(), 10, "the session closed")
    client.close()


# ---------------------------------------------------------------- CORS -----------------
@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/login"), ("POST", STATE), ("POST", "/api/csta/agent/heartbeat/agent@cc.test"),
    ("POST", "/api/csta/callControl/calls"),
    ("POST", "/api/csta/callControl/calls/c/connections/1001@cc.test%7Cc/hold"),
    ("DELETE", "/api/csta/callControl/calls/c/connections/1001@cc.test%7Cc"),
    ("POST", "/api/csta/callControl/calls/c/user-data"), ("GET", "/mvc/stomp/info"),
    ("POST", "/mvc/stomp/000/abcd/xhr_send")])
def test_every_sdk_route_answers_the_preflight_of_an_allowed_origin(
        stack: CtiStack, method: str, path: str) -> None:
    http = stack.server.anonymous()
    reply = http.options(path, headers={"Origin": PAGE, "Access-Control-Request-Method": method,
                                        "Access-Control-Request-Headers":
                                        "content-type,sessionid"})
    assert reply.status_code == 204, reply.text
    assert reply.headers["Access-Control-Allow-Origin"] == PAGE
    assert reply.headers["Access-Control-Allow-Credentials"] == "true"
    assert method in reply.headers["Access-Control-Allow-Methods"]
    allowed = reply.headers["Access-Control-Allow-Headers"].lower()
    assert "sessionid" in allowed and "content-type" in allowed
    refused = http.options(path, headers={"Origin": STRANGER,
                                          "Access-Control-Request-Method": method})
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_answers_carry_cors_for_the_allowed_origin_only(stack: CtiStack) -> None:
    http = stack.server.anonymous()
    for origin, expected in ((PAGE, PAGE), (STRANGER, None)):
        for reply in (http.post("/login", data={"username": "agent", "password": "agent"},
                                headers={"Origin": origin}),
                      http.post("/login", data={"username": "agent", "password": "x"},
                                headers={"Origin": origin}),
                      http.get("/mvc/stomp/info", headers={"Origin": origin})):
            assert reply.headers.get("Access-Control-Allow-Origin") == expected, reply.url
            assert "Origin" in reply.headers.get("Vary", "")
            if expected:
                assert reply.headers["Access-Control-Allow-Credentials"] == "true"


def test_the_sockjs_stream_no_longer_echoes_any_origin(stack: CtiStack) -> None:
    http = stack.server.anonymous()
    reply = http.post("/mvc/stomp/000/echo1234/xhr", headers={"Origin": "http://evil.test"})
    assert "Access-Control-Allow-Origin" not in reply.headers


def test_star_is_refused_with_credentials_and_origins_are_checked(tmp_path: Path) -> None:
    for value, message in (('["*"]', "credentials"), ('["http://a.test/page"]', "no path"),
                           ('["a.test"]', "scheme")):
        path = tmp_path / "f.yaml"
        path.write_text(f"cti:\n  cors_origins: {value}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            config.load_settings(str(path), environ={})
    path = tmp_path / "ok.yaml"
    path.write_text("cti:\n  cors_origins: [https://crm.example.com, 'http://10.0.0.5:8080']\n",
                    encoding="utf-8")
    assert config.load_settings(str(path), environ={}).cti.cors_origins == (
        "https://crm.example.com", "http://10.0.0.5:8080")


# ---------------------------------------------------------------- no loginId -----------
def test_set_state_logout_and_heartbeat_without_login_id(stack: CtiStack) -> None:
    http, token = sdk_login(stack)
    http.headers["sessionId"] = token
    assert http.post(STATE, json={"func": "Login", "loginId": f"agent@{D}",
                                  "device": f"1001@{D}", "agentMode": "Ready"}
                     ).status_code == 204
    assert agent_mode(stack, "agent") == "Ready"
    # the SDK's bodies, verbatim
    assert http.post(STATE, json={"func": "SetState", "device": f"1001@{D}",
                                  "agentMode": "NotReady", "namespace": D}).status_code == 204
    assert agent_mode(stack, "agent") == "NotReady"
    assert http.post("/api/csta/agent/heartbeat").status_code == 204
    assert http.post(STATE, json={"func": "Logout", "device": f"1001@{D}",
                                  "namespace": D}).status_code == 204
    assert agent_mode(stack, "agent") == ""


def test_the_sdk_cookie_of_the_page_authenticates_a_connect_without_headers(
        stack: CtiStack) -> None:
    """wellClient 4.x keeps /login's sessionId in its page's own cookie; on the same host the
    browser sends it to the CTI server: it authenticates as ours does, under the same rule
    (an allowed page, or none)."""
    _, token = sdk_login(stack)
    for origin, works in ((PAGE, True), (STRANGER, False)):
        http = stack.server.anonymous()
        http.headers["Origin"] = origin
        http.cookies.set(SDK_COOKIE, token)
        client = StompClient(stack.server.url, "", http=http)
        try:
            if works:
                assert client.open()["user-name"] == "agent"
            else:
                with pytest.raises(AssertionError, match="missing or malformed token"):
                    client.open()
        finally:
            client.close()


def test_set_state_and_logout_naming_agent_id(stack: CtiStack) -> None:
    """wellClient 4.2.2's bodies: SetState and Logout name agentId, Logout nothing else."""
    http, token = sdk_login(stack)
    http.headers["sessionId"] = token
    assert http.post(STATE, json={"func": "Login", "loginId": f"agent@{D}", "password": "x",
                                  "device": f"1001@{D}", "agentMode": "NotReady"}
                     ).status_code == 204
    assert http.post(STATE, json={"func": "SetState", "device": f"1001@{D}", "reason": "",
                                  "agentMode": "Ready", "namespace": D,
                                  "agentId": f"agent@{D}"}).status_code == 204
    assert agent_mode(stack, "agent") == "Ready"
    assert http.post(STATE, json={"func": "Logout", "agentId": f"agent2@{D}"}
                     ).status_code == 403  # not its own
    assert http.post(STATE, json={"func": "Logout", "agentId": f"agent@{D}"}).status_code == 204
    assert agent_mode(stack, "agent") == ""


def test_an_agent_whose_page_is_gone_is_logged_off_by_one_sweep(stack: CtiStack) -> None:
    """Presence: Login starts watching the agent, a heart-beat is hearing from it (nobody
    else's is: ZADD XX), and once it is not heard from for the timeout, of two CTI servers
    sweeping, exactly one logs it off (agentLoggedOff published once)."""
    ctx, seen = stack.ctx, stack.ctx.keys(D).csta_seen()
    presence.heard_from(ctx, D, ["agent"])
    assert ctx.redis.zscore(seen, "agent") is None  # not logged in: not watched
    http, token = sdk_login(stack)
    http.headers["sessionId"] = token
    assert http.post(STATE, json={"func": "Login", "loginId": f"agent@{D}",
                                  "device": f"1001@{D}", "agentMode": "Ready"}
                     ).status_code == 204
    logged_in_at = float(ctx.redis.zscore(seen, "agent") or 0)
    assert logged_in_at > 0
    assert http.post(f"/api/csta/agent/heartbeat/agent@{D}").status_code == 204
    assert float(ctx.redis.zscore(seen, "agent") or 0) >= logged_in_at
    assert callcontrol.log_off_gone(ctx, D, 60) == []  # heard from just now
    assert agent_mode(stack, "agent") == "Ready"

    ctx.redis.zadd(seen, {"agent": logged_in_at - 120_000})  # two minutes of silence
    feed = Subscriber(ctx.settings.redis.url.reveal(), (ctx.keys(D).csta_feed(),))
    try:
        assert callcontrol.log_off_gone(ctx, D, 60) == ["agent"]
        assert callcontrol.log_off_gone(ctx, D, 60) == []  # (the other server's sweep)
        feed.wait(name="agentLoggedOff", agentId=f"agent@{D}")
        assert len(feed.find(name="agentLoggedOff", agentId=f"agent@{D}")) == 1
    finally:
        feed.close()
    assert agent_mode(stack, "agent") == ""
    assert ctx.redis.zscore(seen, "agent") is None


def test_a_login_id_or_device_not_the_sessions_is_refused(stack: CtiStack) -> None:
    first, t1 = sdk_login(stack, "agent")
    first.headers["sessionId"] = t1
    second, t2 = sdk_login(stack, "agent2")
    second.headers["sessionId"] = t2
    assert second.post(STATE, json={"func": "Login", "device": f"1002@{D}",
                                    "agentMode": "Ready"}).status_code == 204
    try:
        assert first.post(STATE, json={"func": "Login", "device": f"1001@{D}"}
                          ).status_code == 204
        for body in ({"func": "SetState", "loginId": f"agent2@{D}", "agentMode": "NotReady"},
                     {"func": "Logout", "loginId": f"agent2@{D}"},
                     {"func": "SetState", "device": f"1002@{D}", "agentMode": "NotReady"},
                     {"func": "Logout", "device": f"1002@{D}"}):
            reply = first.post(STATE, json=body)
            assert reply.status_code == 403, (body, reply.text)
        assert agent_mode(stack, "agent2") == "Ready"
        assert first.post("/api/csta/agent/heartbeat/agent2@cc.test").status_code == 403
    finally:
        first.post(STATE, json={"func": "Logout"})
        second.post(STATE, json={"func": "Logout"})


def test_the_cookie_is_secure_over_tls() -> None:
    """Behind TLS (the request's scheme https) the cookie is Secure; over plain HTTP it can
    not be (the browser would drop it)."""
    for scheme, secure in (("https", True), ("http", False)):
        request = make_mocked_request("POST", "/login").clone(scheme=scheme)
        response = web.Response()
        set_session_cookie(request, response, "t" * 43, 600)
        morsel = response.cookies[SESSION_COOKIE]
        assert bool(morsel["secure"]) is secure
        assert morsel["httponly"] and morsel["samesite"] == "Lax"
        assert morsel["max-age"] == "600"
