"""The agent page and the wallboard in a real headless Chromium fed hostile text: caller
numbers, devices, call data keys and values, callIds, group names and error messages carrying
markup. Whatever arrives is shown as text: no element is made from it and no script of it
runs (the pages build their DOM with textContent; the CSP would block inline script anyway,
so the test looks for injected elements, not only for a script that ran)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import agents_stack, chromium, needs_chromium
from cti_support import CtiStack

from fsapps.server.csta import hub

pytest.importorskip("playwright.sync_api")
from test_browser_agent import agent_login, new_page

pytestmark = needs_chromium
D = "cc.test"
A1 = f"1001@{D}"
# each would run a script or load something if it ever became markup
HOSTILE = '<img src=x onerror="window.__xss=1">'
HOSTILE_KEY = '<svg onload="window.__xss=2">'


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with agents_stack(redis_server.url, database.dsn, ("1001", "1900")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def injected(page: Any) -> dict[str, Any]:
    """What hostile text managed to do in ``page``."""
    return page.evaluate("""() => ({
        xss: window.__xss || null,
        elements: document.querySelectorAll('img, svg, script:not([src])').length})""")


def record(name: str, call_id: str, state: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "domain": D, "callId": call_id, "device": A1, "localState": state,
            "parties": [A1], "calling": f"{HOSTILE}@{D}", "called": A1,
            "time": int(time.time() * 1000), **extra}


def test_agent_page_shows_hostile_event_fields_and_errors_as_text(stack: CtiStack,
                                                                  browser: Any) -> None:
    page = new_page(browser)
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    agent_login(page, stack.server.url, "agent", "1001")
    # the policy lets the page's own event socket through (no fallback to polling)
    assert sockets and sockets[0].startswith("ws://127.0.0.1:"), sockets
    ctx = stack.server.services.ctx
    call_id = str(uuid.uuid4())
    data = {HOSTILE_KEY: HOSTILE, "__proto__": HOSTILE}
    hub.publish(ctx, record("delivered", call_id, "Alerting", userData=data))
    page.wait_for_selector("#callCard[data-state='ringing']")
    hub.publish(ctx, record("established", call_id, "Connect", userData=data))
    page.wait_for_selector("#callCard[data-state='talking']")
    assert page.inner_text("#callParty") == HOSTILE
    assert page.inner_text("#callCaller") == HOSTILE
    assert page.inner_text("#userData th") == HOSTILE_KEY
    assert page.inner_text("#userData td") == HOSTILE
    # __proto__ from the wire is a plain key, not the prototype of the page's objects
    assert page.evaluate("() => ({}).toString === Object.prototype.toString && "
                         "!('onerror' in Object.prototype)")
    # an error quoting the hostile input lands in the event log as text
    page.fill("#number", HOSTILE)
    page.click("#sTran")
    page.wait_for_selector("#eventLog li .name:has-text('invalid transferTo')")
    assert HOSTILE in page.inner_text("#eventLog")
    assert injected(page) == {"xss": None, "elements": 0}
    assert not page.errors
    assert not [m for m in console if "Content Security Policy" in m], console
    page.context.close()


def test_wallboard_shows_hostile_calls_and_devices_as_text(stack: CtiStack,
                                                           browser: Any) -> None:
    ctx = stack.server.services.ctx
    keys = ctx.keys(D)
    call_id, leg = str(uuid.uuid4()), str(uuid.uuid4())
    # a call as the CSTA feed keeps it, whose numbers came from a hostile caller
    ctx.redis.hset(keys.csta_legs(), leg, call_id)
    ctx.redis.hset(keys.csta_call(call_id), mapping={
        "calling": f"{HOSTILE}@{D}", "called": f"{HOSTILE_KEY}@{D}",
        f"p:{leg}": json.dumps({"d": f"{HOSTILE}@{D}", "s": "Connect"})})
    try:
        page = new_page(browser)
        page.goto(f"{stack.server.url}/wallboard?domain={D}&user=supervisor&device=1900")
        page.fill("#password", "supervisor")
        page.click("#login")
        page.wait_for_selector(f"#calls tr[data-call='{call_id}']")
        row = page.inner_text(f"#calls tr[data-call='{call_id}']")
        assert HOSTILE in row and HOSTILE_KEY in row
        assert injected(page) == {"xss": None, "elements": 0}
        assert not page.errors
        page.context.close()
    finally:
        ctx.redis.hdel(keys.csta_legs(), leg)
        ctx.redis.delete(keys.csta_call(call_id))
