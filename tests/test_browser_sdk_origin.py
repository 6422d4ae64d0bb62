"""A page on another host, in Chromium, using the CTI server the way the published wellClient
SDK does (issue 16, point 7; the page's script, tests/sdk_page/sdk_wire.js, speaks the SDK's
wire protocol: the SDK's own files are not available offline). The page is served by a tiny
static server on another 127.0.0.1 port, an allowed origin (cti.cors_origins): /login and
every REST call cross origins with credentials and preflights; the STOMP CONNECT carries no
token (the session cookie of /login authenticates it); SetState and Logout name no loginId; a
queue call goes delivered -> established -> held -> retrieved -> connectionCleared, another
is transferred; closing the page logs the agent off. The page's call memory, indexed by
device like the SDK's, never throws."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from browser_support import TIMEOUT_MS, agents_stack, chromium, needs_chromium
from cti_support import CtiStack

from fakefs.scenario import wait_until

pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium

D = "cc.test"
# cti.agent_presence_timeout_seconds here (the SDK's page heart-beats every BEAT_MS)
PRESENCE_TIMEOUT_S = 3
BEAT_MS = 1000
A1, A2 = f"1001@{D}", f"1002@{D}"
PAGE_DIR = Path(__file__).resolve().parent / "sdk_page"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_server() -> Iterator[str]:
    """The users' own web server: the page, on another port (another origin)."""
    handler = functools.partial(_Quiet, directory=str(PAGE_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any, page_server: str) -> Iterator[CtiStack]:
    with agents_stack(redis_server.url, database.dsn, ("1001", "1002"),
                      cors_origins=(page_server,),
                      agent_presence_timeout_seconds=PRESENCE_TIMEOUT_S) as s:
        yield s


def agent_mode(stack: CtiStack, job: str) -> str:
    return str(stack.ctx.redis.hget(stack.ctx.keys(D).csta_agent(job), "mode") or "")


def phone_leg(stack: CtiStack, ext: str) -> Any:
    return wait_until(lambda: next((c for c in list(stack.switch.channels.values())
                                    if c.name.startswith(f"sofia/internal/{ext}@")), None),
                      8, f"{ext}'s phone rung")


def wait_event(page: Any, name: str, **fields: str) -> dict[str, Any]:
    """The first event ``name`` the page received whose fields match."""
    page.wait_for_function("([name, fields]) => sdk.events.some(e => e.eventName === name && "
                           "Object.keys(fields).every(k => e[k] === fields[k]))",
                           arg=[name, fields], timeout=TIMEOUT_MS)
    return page.evaluate("([name, fields]) => sdk.events.find(e => e.eventName === name && "
                         "Object.keys(fields).every(k => e[k] === fields[k]))", [name, fields])


def ok(page: Any, script: str) -> None:
    answer = page.evaluate(f"async () => await {script}")
    assert answer["status"] in (200, 204), (script, answer)


@pytest.mark.parametrize("html", ["index.html", "sockjs.html"])
def test_the_sdk_from_another_origin(stack: CtiStack, page_server: str, html: str) -> None:
    """index.html: the SDK's wire protocol by hand; sockjs.html: through the real SockJS
    and stomp.js of the SDK's time (tests/sdk_page/vendor)."""
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{page_server}/{html}?cti={stack.server.url}")
        assert page.evaluate("location.origin") != stack.server.url

        # login: a form across origins, then Login, then SockJS + STOMP without a token
        ok(page, "sdk.login('agent', 'agent', 'cc.test', '1001')")
        page.wait_for_function("sdk.connected", timeout=TIMEOUT_MS)
        assert page.evaluate("typeof SockJS") == ("function" if html == "sockjs.html"
                                                  else "undefined")
        assert page.evaluate("sdk.frames.includes('CONNECTED')")
        cookies = {c["name"]: c for c in context.cookies(stack.server.url)}
        assert cookies["fsapps_session"]["httpOnly"] is True
        assert cookies["fsapps_session"]["sameSite"] == "Lax"
        assert page.evaluate("document.cookie") == ""  # HttpOnly: not the page's to read
        wait_event(page, "agentLoggedOn")

        # SetState without loginId
        ok(page, "sdk.setAgentMode('Ready')")
        wait_until(lambda: agent_mode(stack, "agent") == "Ready", 5, "agent ready")
        wait_event(page, "agentReady")

        # a queue call: delivered -> established -> held -> retrieved -> connectionCleared
        caller = stack.center.call(stack.switch, "13800000011", "7110", hangup_after_ms=None)
        ring = wait_event(page, "delivered", alertingDevice=A1)
        assert ring["callId"] == caller.uuid and ring["calledDevice"] == A1
        ok(page, f"sdk.answerCall('{caller.uuid}')")
        wait_event(page, "established", answeringDevice=A1)
        ok(page, f"sdk.holdCall('{caller.uuid}')")
        wait_event(page, "held", holdingDevice=A1)
        ok(page, f"sdk.retrieveCall('{caller.uuid}')")
        wait_event(page, "retrieved", retrievingDevice=A1)
        ok(page, f"sdk.dropConnection('{caller.uuid}')")
        wait_event(page, "connectionCleared", releasingDevice=A1, callId=caller.uuid)

        # another, transferred to 1002
        ok(page, "sdk.setAgentMode('Ready')")  # (out of wrap-up)
        second = stack.center.call(stack.switch, "13800000012", "7110", hangup_after_ms=None)
        wait_event(page, "delivered", alertingDevice=A1, callId=second.uuid)
        ok(page, f"sdk.answerCall('{second.uuid}')")
        wait_event(page, "established", answeringDevice=A1, callId=second.uuid)
        ok(page, f"sdk.singleStepTransfer('{second.uuid}', '{A2}')")
        wait_event(page, "transferred", transferringDevice=A1)
        stack.switch.answer(phone_leg(stack, "1002"))
        wait_event(page, "connectionCleared", releasingDevice=A1, callId=second.uuid)
        wait_until(lambda: second.up and second.peer, 5, "the caller talks to 1002")

        ok(page, "sdk.setAgentMode('NotReady')")
        wait_until(lambda: agent_mode(stack, "agent") == "NotReady", 5, "agent not ready")
        assert page.evaluate("sdk.errors") == []

        # closing the page logs the agent off
        page.close(run_before_unload=True)
        wait_until(lambda: agent_mode(stack, "agent") == "", 10, "agent logged off")
        context.close()
    for ch in list(stack.switch.channels.values()):
        stack.switch.hangup(ch)
    wait_until(lambda: not stack.switch.channels, 5, "channels gone")


def test_the_published_sdk_release_from_another_origin(stack: CtiStack, page_server: str
                                                       ) -> None:
    """What well-client.js 4.2.2 does (?sdk=4.2.2): its /login is an XHR without credentials,
    so no cookie of ours is stored; it keeps the sessionId in its page's own cookie, which the
    browser sends with the native WebSocket to the CTI server on the same host (another port):
    the header-less CONNECT is authenticated by it. SetState and Logout name agentId only.
    Heart-beats keep the agent logged in; closing the page only closes the socket, and the
    agent is logged off once its page is heard from no more."""
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{page_server}/index.html?cti={stack.server.url}&sdk=4.2.2&beat={BEAT_MS}")
        ok(page, "sdk.login('agent', 'agent', 'cc.test', '1001')")
        page.wait_for_function("sdk.connected", timeout=TIMEOUT_MS)
        cookies = {c["name"] for c in context.cookies(stack.server.url)}
        assert "fsapps_session" not in cookies  # the cross-origin login stored none of ours
        assert "wellclient-cookie-session-id" in cookies  # the page's own, same host
        wait_event(page, "agentLoggedOn")

        ok(page, "sdk.setAgentMode('Ready')")
        wait_until(lambda: agent_mode(stack, "agent") == "Ready", 5, "agent ready")
        wait_event(page, "agentReady")
        caller = stack.center.call(stack.switch, "13800000021", "7110", hangup_after_ms=None)
        wait_event(page, "delivered", alertingDevice=A1, callId=caller.uuid)
        ok(page, f"sdk.answerCall('{caller.uuid}')")
        wait_event(page, "established", answeringDevice=A1, callId=caller.uuid)
        ok(page, f"sdk.dropConnection('{caller.uuid}')")
        wait_event(page, "connectionCleared", releasingDevice=A1, callId=caller.uuid)
        ok(page, "sdk.setAgentMode('NotReady')")
        wait_until(lambda: agent_mode(stack, "agent") == "NotReady", 5, "agent not ready")

        # the heart-beats (and the open socket) keep it logged in past the timeout
        seen = stack.ctx.keys(D).csta_seen()
        first = float(stack.ctx.redis.zscore(seen, "agent") or 0)
        wait_until(lambda: float(stack.ctx.redis.zscore(seen, "agent") or 0) >
                   first + PRESENCE_TIMEOUT_S * 1000, 3 * PRESENCE_TIMEOUT_S,
                   "the page heard from past the timeout")
        assert agent_mode(stack, "agent") == "NotReady"
        assert page.evaluate("sdk.errors") == []

        # closing the page sends nothing but the socket's close: logged off all the same
        page.close(run_before_unload=True)
        wait_until(lambda: agent_mode(stack, "agent") == "", 4 * PRESENCE_TIMEOUT_S,
                   "agent logged off")
        assert stack.ctx.redis.zscore(seen, "agent") is None
        context.close()
    for ch in list(stack.switch.channels.values()):
        stack.switch.hangup(ch)
    wait_until(lambda: not stack.switch.channels, 5, "channels gone")


def test_a_page_on_a_host_not_listed_gets_nothing(stack: CtiStack) -> None:
    """The same page served by the CTI server's own origin's neighbour that is not listed:
    the browser refuses every answer (no CORS headers), so it can not even log in."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = functools.partial(_Quiet, directory=str(PAGE_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with chromium() as browser:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"http://127.0.0.1:{port}/index.html?cti={stack.server.url}")
            answer = page.evaluate("async () => await sdk.login('agent', 'agent', 'cc.test', "
                                   "'1001')")
            assert answer["status"] == 0  # blocked by the browser
            assert agent_mode(stack, "agent") == ""
    finally:
        server.shutdown()
        server.server_close()
