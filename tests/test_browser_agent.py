"""The agent page and the wallboard in a real headless Chromium (Playwright driving the system
/usr/bin/chromium; ``make test`` installs it when missing): agents log in on the page, go
ready, take a queue call from a fake switch, answer, hold, retrieve, consult a second agent and
transfer; the wallboard follows live. With FSAPPS_SCREENSHOTS=<dir> the test also saves the
README's screenshots (agent-page.png, wallboard.png) there."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import TIMEOUT_MS, agents_stack, chromium, needs_chromium, phone_legs
from cti_support import CtiStack

from fakefs.scenario import wait_until

D = "cc.test"

pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with agents_stack(redis_server.url, database.dsn, ("1001", "1002", "1900")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def new_page(browser: Any, locale: str = "en-US") -> Any:
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 820})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    return page


def agent_login(page: Any, url: str, job: str, ext: str) -> None:
    page.goto(f"{url}/?domain={D}&job={job}&ext={ext}")
    page.fill("#password", job)
    page.click("#login")
    page.wait_for_selector("#workspace", state="visible")
    page.wait_for_selector("#agentState[data-mode='NotReady']")
    page.wait_for_function("() => wellClient.getCallMemory().connected")


def call_state(page: Any, state: str) -> None:
    page.wait_for_selector(f"#callCard[data-state='{state}']")


def talking(stack: CtiStack, a: str, b: str) -> bool:
    legs = phone_legs(stack.switch)
    return a in legs and b in legs and legs[b] in stack.switch.hears(legs[a])


def shots() -> Path | None:
    where = os.environ.get("FSAPPS_SCREENSHOTS")
    if not where:
        return None
    path = Path(where)
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_agent_takes_queue_call_consults_and_transfers(stack: CtiStack, browser: Any) -> None:
    url = stack.server.url
    board = new_page(browser)
    board.goto(f"{url}/wallboard?domain={D}&user=supervisor&device=1900")
    board.fill("#password", "supervisor")
    board.click("#login")
    board.wait_for_selector("#board", state="visible")
    board.wait_for_selector("#liveState[data-mode='Ready']")

    one = new_page(browser, locale="zh-CN")
    agent_login(one, url, "agent", "1001")
    assert one.inner_text("#setMode") == "置闲"          # Chinese from the browser's language
    two = new_page(browser)
    agent_login(two, url, "agent2", "1002")
    assert two.inner_text("#setMode") == "Ready"

    # a caller waits in group 110 while nobody is ready: the wallboard shows it live
    stack.center.call(stack.switch, "13800000009", "7110", hangup_after_ms=None)
    board.wait_for_selector("#groups tr[data-group='110'] td.wait-hot")
    assert board.inner_text("#statWaiting") == "1"

    one.click("#setMode")                                   # ready: the queue call rings 1001
    one.wait_for_selector("#agentState[data-mode='Ready']")
    call_state(one, "ringing")
    assert one.inner_text("#callParty") == "13800000009"
    board.wait_for_selector("#agents tr[data-agent='1001'] .state[data-s='ring']")
    board.wait_for_selector("#statRinging:text('1')")       # ringing: not a talking call
    assert board.inner_text("#statCalls") == "0"

    one.click("#answer")
    call_state(one, "talking")
    assert one.inner_text("#callState") == "通话中"
    board.wait_for_selector("#agents tr[data-agent='1001'] .state[data-s='talking']")
    board.wait_for_selector("#calls tr[data-call] .state[data-s='Connect']")
    board.wait_for_selector("#statCalls:text('1')")
    wait_until(lambda: talking(stack, "13800000009", "1001"), 5, "caller talks to 1001")

    one.fill("#udKey", "orderId")
    one.fill("#udValue", "A-20931")
    one.click("#userDataForm button")
    one.wait_for_selector("#userData th:text('orderId')")

    one.click("#hold")
    call_state(one, "held")
    assert one.inner_text("#hold") == "取回"
    one.click("#hold")
    call_state(one, "talking")

    if (where := shots()) is not None:
        one.wait_for_timeout(1500)
        one.screenshot(path=str(where / "agent-page.png"))
        # the wallboard with a call in progress and a caller waiting
        extra = stack.center.call(stack.switch, "13900000077", "7110", hangup_after_ms=None)
        board.wait_for_selector("#statWaiting:text('1')")
        board.wait_for_timeout(2500)
        board.screenshot(path=str(where / "wallboard.png"))
        stack.switch.hangup(extra)
        board.wait_for_selector("#statWaiting:text('0')")

    one.click("#lang")                                      # switch the page to English
    assert one.inner_text("#callState") == "Talking"
    assert one.inner_text("#hold") == "Hold"

    one.fill("#number", "1002")
    one.click("#ask")                                       # consult 1002: the caller is held
    one.wait_for_selector("#consultBox", state="visible")
    call_state(one, "held")
    call_state(two, "ringing")
    assert two.inner_text("#callParty") == "1001"
    two.click("#answer")
    call_state(two, "talking")
    wait_until(lambda: talking(stack, "1001", "1002"), 5, "1001 consults 1002")
    one.wait_for_selector("#tran:not([disabled])")
    if (where := shots()) is not None:
        one.wait_for_timeout(1200)
        one.screenshot(path=str(where / "agent-consult.png"))

    one.click("#tran")                                      # complete the transfer
    call_state(one, "idle")
    wait_until(lambda: talking(stack, "13800000009", "1002"), 5, "caller talks to 1002")
    board.wait_for_selector("#agents tr[data-agent='1002'] .state[data-s='talking']")
    board.wait_for_selector("#agents tr[data-agent='1001'] .state:not([data-s='talking'])")

    two.click("#dropCon")                                   # 1002 hangs up: all idle
    call_state(two, "idle")
    board.wait_for_selector("#statCalls:text('0')")
    for page in (board, one, two):
        assert page.errors == []
        page.context.close()


def test_wallboard_hang_up_button(stack: CtiStack, browser: Any) -> None:
    url = stack.server.url
    one = new_page(browser)
    agent_login(one, url, "agent", "1001")
    one.click("#setMode")
    one.wait_for_selector("#agentState[data-mode='Ready']")
    board = new_page(browser)
    # no domain in the URL: the server's default domain (not the page's host, 127.0.0.1);
    # "my phone" is no extension, so listening from it fails
    board.goto(f"{url}/wallboard?user=supervisor&device=19%2199")
    assert board.input_value("#domain") == ""
    board.fill("#password", "supervisor")
    board.click("#login")
    board.wait_for_selector("#board", state="visible")
    assert board.inner_text("#supLabel").endswith(D)
    board.wait_for_selector("#liveState[data-mode='Ready']")
    assert board.is_hidden("#errorBar")
    stack.center.call(stack.switch, "13800000010", "7110", hangup_after_ms=None)
    call_state(one, "ringing")
    one.click("#answer")
    call_state(one, "talking")
    board.wait_for_selector("#calls .sup-listen")
    board.click("#calls .sup-listen")                       # the failure is shown, not swallowed
    board.wait_for_selector("#errorBar", state="visible")
    text = board.inner_text("#errorBar .text")
    assert text.startswith("Listen: ") and "19!99" in text and "(HTTP 400)" in text, text
    board.click("#errorBar .close")
    board.wait_for_selector("#errorBar", state="hidden")
    board.click("#calls .sup-hangup")
    call_state(one, "idle")
    wait_until(lambda: not stack.switch.channels, 5, "every leg hung up")
    for page in (board, one):
        assert page.errors == []
        page.context.close()


def test_wallboard_of_an_unknown_domain_says_so(stack: CtiStack, browser: Any) -> None:
    """A domain the server does not serve: the login works, the board says Offline and the
    server's message stays on the page (it was an empty board before, silently)."""
    board = new_page(browser)
    board.goto(f"{stack.server.url}/wallboard?domain=127.0.0.1&user=supervisor&device=1900")
    board.fill("#password", "supervisor")
    board.click("#login")
    board.wait_for_selector("#errorBar .text div:has-text('unknown domain')")
    assert ("Wallboard not updated: unknown domain '127.0.0.1' (HTTP 400)"
            in board.inner_text("#errorBar .text"))
    board.wait_for_selector("#liveState[data-mode='NotReady']")
    assert board.errors == []
    board.context.close()


def test_agent_console_without_a_domain_logs_into_the_default_one(stack: CtiStack,
                                                                  browser: Any) -> None:
    page = new_page(browser)
    page.goto(f"{stack.server.url}/?job=agent2&ext=1002")
    page.fill("#password", "agent2")
    page.click("#login")
    page.wait_for_selector("#workspace", state="visible")
    assert page.inner_text("#agentLabel") == f"agent2 · 1002 · {D}"
    page.wait_for_function("() => wellClient.getCallMemory().connected")
    page.fill("#number", "*#*")           # no phone number: refused, and the refusal shown
    page.click("#make")
    page.wait_for_selector("#errorBar", state="visible")
    assert page.inner_text("#errorBar .text") == "Call: invalid number '*#*' (HTTP 400)"
    page.click("#logout")
    page.wait_for_selector("#loginPanel", state="visible")
    assert page.errors == []
    page.context.close()
