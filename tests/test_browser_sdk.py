"""well-client.js in headless Chromium, on its own: the seed's API surface, jQuery-style and
standard promises, on()/exports/onLog, hideButton, and clickCallClass dialling (against the
real CTI server and a fake switch)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import TIMEOUT_MS, agents_stack, chromium, needs_chromium
from cti_support import CtiStack
from test_browser_agent import D

from fakefs.scenario import wait_until

pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium

SEED_METHODS = ["setConfig", "login", "logout", "setAgentMode", "makeCall", "answerCall",
                "dropConnection", "holdCall", "retrieveCall", "singleStepTransfer",
                "singleStepConference", "consult", "conference", "cancelConsult",
                "transferCall", "setCallData", "on", "forceDrop", "forceJoin", "forceTake",
                "forceListen", "forceReady", "forceNotReady", "forceLogout", "getCallMemory",
                "log", "error", "setDebug", "isPhoneNumber"]


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with agents_stack(redis_server.url, database.dsn, ("1001", "1002")) as s:
        yield s


@pytest.fixture(scope="module")
def page(stack: CtiStack) -> Iterator[Any]:
    with chromium() as browser:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(stack.server.url + "/")
        yield page


def test_the_seed_api_is_there(page: Any) -> None:
    missing = page.evaluate("names => names.filter(n => typeof wellClient[n] !== 'function')",
                            SEED_METHODS)
    assert missing == []
    assert page.evaluate("typeof jQuery") == "undefined"
    assert page.evaluate("wellClient.isPhoneNumber('144124')") is True
    assert page.evaluate("wellClient.isPhoneNumber('8001sd')") is False
    assert page.evaluate("wellClient.on('noSuchEvent', function () {})") is False
    assert page.evaluate("wellClient.on('delivered', function () {})") is True


def test_promises_done_fail_and_then(page: Any) -> None:
    result = page.evaluate("""async () => {
        const out = [];
        const logs = [];
        wellClient.onLog = m => logs.push(m.type);
        await new Promise(resolve => wellClient.login('agent', 'wrong', 'cc.test', '1001')
            .done(() => { out.push('done'); resolve(); })
            .fail(res => { out.push('fail ' + res.status); resolve(); }));
        try { await wellClient.login('agent', 'wrong', 'cc.test', '1001'); }
        catch (res) { out.push('catch ' + res.status); }
        out.push(logs.includes('error') ? 'logged' : 'silent');
        return out;
    }""")
    assert result == ["fail 401", "catch 401", "logged"]


def test_login_events_and_click_to_call(page: Any, stack: CtiStack) -> None:
    page.evaluate("""() => {
        window.seen = [];
        wellClient.exports = e => window.seen.push(e.eventName);
        wellClient.setConfig({hideButton: ['sConf', 'conf']});
        const span = document.createElement('span');
        span.className = 'well-canBeCalled'; span.id = 'callme'; span.textContent = 'tel: 10-02';
        document.body.appendChild(span);
    }""")
    assert page.evaluate("document.getElementById('sConf').hidden") is True
    page.evaluate("wellClient.login('agent', 'agent', 'cc.test', '1001')")
    page.wait_for_function("() => window.seen.includes('agentLoggedOn')")
    page.click("#callme")                                   # dials 1002
    page.wait_for_function("() => window.seen.includes('originated')")
    memory = page.evaluate("wellClient.getCallMemory()")
    assert memory["deviceId"] == f"1001@{D}" and memory["agentId"] == f"agent@{D}"
    [call] = [c for c in memory["calls"].values()]
    assert call["calledDevice"] == f"1002@{D}"
    wait_until(lambda: any(ch.name.startswith("sofia/internal/1002@")
                           for ch in stack.switch.channels.values()), 5, "1002 rings")
    page.evaluate(f"wellClient.dropConnection('{call['callId']}')")
    page.wait_for_function("() => window.seen.includes('connectionCleared')")
    page.evaluate("wellClient.logout()")
    page.wait_for_function("() => !wellClient.getCallMemory().agentId")
