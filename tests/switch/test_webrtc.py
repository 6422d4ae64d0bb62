"""The agent console as the agent's phone (issue 19, docs/webrtc.md) on a real FreeSWITCH:
headless Chromium with fake media logs in on the CTI server's page, gets a short-lived SIP
password, registers over SIP-over-WebSocket (sofia's ws-binding, through a TCP relay the test
can cut), takes a queue call from a SIPp caller that plays audio, answers in the page, and
``RTCPeerConnection.getStats()`` shows audio both ways (DTLS-SRTP, ICE on 127.0.0.1). Hold,
DTMF and hang-up from the page are checked in the switch and at the SIPp caller; a second tab
of the agent takes the phone over (or is refused, as configured); a cut WebSocket is followed
by a new registration.

Skips (like the other browser tests) when /usr/bin/chromium, Playwright or the JsSIP bundle
(``make venv``: npm ci && npm run build) is missing.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from fsapps.server.passwords import hash_password
from fsapps.server.webrtc import BUNDLE
from switch.conftest import (
    DOMAIN,
    PASSWORD,
    Stack,
    agent_state,
    api,
    built_stack,
    first_node,
    wait_for,
)
from tools import netns, sipp
from tools.esl import Esl
from tools.realswitch import ESL_PASSWORD, ROOT, RealSwitch
from tools.servers import TcpRelay, database_url, free_port, wait_for_port

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (make system)"),
    pytest.mark.skipif(not BUNDLE.exists(), reason=f"{BUNDLE} missing (make venv builds it: "
                                                   "npm ci && npm run build)"),
]
pytest.importorskip("playwright.sync_api")

# As browser_support.ARGS, plus fake media: a fake microphone (a beep), no permission prompt,
# and host candidates on 127.0.0.1 so media, like all test traffic, stays on loopback.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required"]
TIMEOUT_MS = 20_000
_exts = itertools.count(4711)
EXTS = [str(n) for n in range(4711, 4731)]  # every agent below is a CTI user (job = ext)


# ------------------------------------------------------------------------ the network -------
# This module's switches, Redis, SIPp, CTI servers and Chromium run in a network namespace of
# their own holding only a loopback interface (tools/netns.py): Chromium gathers ICE host
# candidates on every interface and may send from any (192.0.2.2 -> the switch's 127.0.0.1 in
# 1 run of 4 on the machine's network), so only there is "media stays on loopback" a fact
# the test can assert.
@pytest.fixture(scope="module")
def stack(switch_site: Path) -> Iterator[Stack]:
    why = netns.unavailable(database_url())
    if why:
        if os.environ.get("FSAPPS_REQUIRE_SWITCH") == "1":
            pytest.fail(f"WebRTC tests need a loopback-only network: {why}")
        pytest.skip(f"WebRTC tests need a loopback-only network: {why}")
    with netns.loopback_only():
        assert netns.interfaces() == ["lo"], netns.interfaces()
        with built_stack(switch_site, netns.socket_url(database_url())) as st:
            yield st


@pytest.fixture(scope="module")
def fs1(stack: Stack) -> RealSwitch:
    return first_node(stack)


# ------------------------------------------------------------------------ the CTI server -----
@dataclass
class Cti:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_cti(st: Stack, sw: RealSwitch, ws_url: str, second_login: str, name: str) -> Cti:
    """``fsapps cti serve`` on the node's settings with the browser phone on: agents 47xx
    (job number = extension = password), credentials that live 6 s (renewed every 2 s)."""
    settings = yaml.safe_load(sw.config_path.read_text())
    port = free_port()
    settings["cti"] = {"listen": "127.0.0.1", "port": port}
    settings["webrtc"] = {"ws_urls": [ws_url], "credential_ttl_seconds": 6,
                          "second_login": second_login}
    settings["users"] = [{"username": ext, "role": "agent", "extension": ext,
                          "password_hash": hash_password(ext, iterations=1000)} for ext in EXTS]
    settings["users"].append({"username": "supervisor", "role": "supervisor",
                              "password_hash": hash_password("supervisor", iterations=1000)})
    path = st.base / f"{name}.yaml"
    path.write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSAPPS_")}
    with open(st.base / f"{name}.log", "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fsapps.cli", "--config", str(path),
                                 "cti", "serve"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(port, timeout=30)
    return Cti(proc, port)


def stop_cti(cti: Cti) -> None:
    cti.proc.terminate()
    try:
        cti.proc.wait(10)
    except subprocess.TimeoutExpired:
        cti.proc.kill()
        cti.proc.wait()


@pytest.fixture(scope="module")
def relay(fs1: RealSwitch) -> Iterator[TcpRelay]:
    # the browsers' WebSocket to the switch, cut for a network drop
    r = TcpRelay("127.0.0.1", fs1.ws_port)
    yield r
    r.close()


@pytest.fixture(scope="module")
def cti(fs1: RealSwitch, stack: Stack, relay: TcpRelay) -> Iterator[Cti]:
    server = start_cti(stack, fs1, f"ws://127.0.0.1:{relay.port}", "takeover", "cti-webrtc")
    yield server
    stop_cti(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def events(fs1: RealSwitch) -> Iterator[Esl]:
    esl = Esl(fs1.esl_port, ESL_PASSWORD)
    esl.subscribe("CHANNEL_HOLD CHANNEL_UNHOLD CHANNEL_EXECUTE DTMF CHANNEL_HANGUP_COMPLETE")
    yield esl
    esl.close()


@pytest.fixture
def pages(browser: Any) -> Iterator[list[Any]]:
    """New pages (each its own browser context: its own tab, storage and phone); closed after."""
    opened: list[Any] = []
    yield opened
    for page in opened:
        try:
            page.evaluate("() => window.fsappsPhone && window.fsappsPhone.stop()")
        except Exception:  # a page already gone
            pass
        page.context.close()


# ------------------------------------------------------------------------ helpers -----------
def webrtc_extension(sw: RealSwitch, st: Stack) -> str:
    """A directory record with the WebRTC flag (its desk password stays for desk phones)."""
    ext = str(next(_exts))
    st.extension(ext, record={"param": {"password": PASSWORD, "webrtc": True},
                              "variable": {}, "attribute": {}})
    api(sw, f"nway_add_ext {ext}")
    return ext


def open_console(browser: Any, pages: list[Any], cti: Cti, ext: str,
                 auto_answer: bool = False) -> Any:
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())  # "logged in elsewhere: take over?"
    pages.append(page)
    page.goto(f"{cti.url}/?domain={DOMAIN}&job={ext}&ext={ext}")
    page.fill("#password", ext)
    page.click("#login")
    page.wait_for_selector("#workspace", state="visible")
    if auto_answer:  # the setting on the phone card, which shows once the phone is there
        page.check("#autoAnswer")
    return page


def phone_state(page: Any, state: str, timeout_ms: int = TIMEOUT_MS) -> None:
    page.wait_for_selector(f"#phoneCard[data-state='{state}']", state="attached",
                           timeout=timeout_ms)


def registrations(sw: RealSwitch, ext: str) -> list[str]:
    """The contacts sofia holds for ``ext`` (``sofia_contact``; 'error/user_not_registered'
    when none)."""
    reply = sw.api(f"sofia_contact internal/{ext}@{DOMAIN}").strip()
    return [] if reply.startswith("error/") else reply.split(",")


def registered_browser(sw: RealSwitch, st: Stack, ext: str) -> None:
    wait_for(lambda: any("transport=ws" in c for c in registrations(sw, ext)), 20,
             f"a WebSocket registration of {ext} in sofia")
    wait_for(lambda: st.redis.hget("registrations", ext), 10, f"{ext} registered in Redis")


def stats(page: Any) -> dict[str, Any]:
    return page.evaluate("() => window.fsappsPhone.stats()")  # type: ignore[no-any-return]


# ------------------------------------------------------------------------ tests -------------
def test_browser_agent_takes_a_queue_call_with_audio(fs1: RealSwitch, phones: Stack, group: str,
                                                     cti: Cti, browser: Any, pages: list[Any],
                                                     events: Esl, tmp_path: Path) -> None:
    ext = webrtc_extension(fs1, phones)
    page = open_console(browser, pages, cti, ext)
    phone_state(page, "registered")
    registered_browser(fs1, phones, ext)
    # the page never held the directory password
    assert PASSWORD not in page.content()
    api(fs1, f"nway_login {ext} {group}")

    wav = sipp.write_ulaw_wav(tmp_path / "caller.wav")
    number = "13900004711"
    caller = phones.caller(fs1, f"7{group}", number, talk_ms=60_000, audio=str(wav))
    phone_state(page, "ringing")
    # the queue call as the console shows it: caller number from the CTI events, the SIP
    # caller on the phone card
    page.wait_for_selector("#callCard[data-state='ringing']")
    assert page.text_content("#callCaller") == number
    assert number in page.text_content("#phoneParty")
    page.click("#phoneAnswer")
    phone_state(page, "talking")
    page.wait_for_selector("#callCard[data-state='talking']")
    wait_for(lambda: agent_state(phones, ext).get("call_state") == "talking", 20,
             f"agent {ext} talking")
    agent_leg = agent_state(phones, ext)["agent_leg"]
    leg = json.loads(fs1.api(f"uuid_dump {agent_leg} json"))
    assert leg.get("variable_media_webrtc") == "true"
    # DTLS-SRTP with ICE on the switch's side of the browser leg
    local_sdp = leg["variable_rtp_local_sdp_str"]
    assert "RTP/SAVPF" in local_sdp and "a=fingerprint:sha-256" in local_sdp, local_sdp
    assert "a=ice-ufrag" in local_sdp, local_sdp

    # audio both ways: the caller's tone reaches the page; the fake microphone is sent
    def flowing() -> dict[str, Any] | None:
        s = stats(page)
        return s if s["packetsReceived"] > 50 and s["packetsSent"] > 50 else None
    seen: dict[str, Any] = wait_for(flowing, 20, "audio packets both ways in getStats()")  # type: ignore[assignment]
    # ... over DTLS-SRTP, from 127.0.0.1 to the switch's 127.0.0.1
    assert seen["dtlsState"] == "connected" and seen["srtpCipher"], seen
    assert seen["remoteAddress"] == "127.0.0.1", seen
    assert seen["localType"] == "host" and seen["localAddress"] == "127.0.0.1", seen

    shots = os.environ.get("FSAPPS_SCREENSHOTS")  # docs/webrtc.md's picture
    if shots:
        page.screenshot(path=str(Path(shots) / "agent-webrtc.png"))

    # DTMF from the pad reaches the switch on the agent's leg (RFC 2833)
    page.click("#pad button:text('5')")
    events.wait_event(lambda e: e.get("Event-Name") == "DTMF" and e.get("DTMF-Digit") == "5"
                      and e.get("Unique-ID") == agent_leg, 10, "DTMF 5 from the page")

    # hold from the page (the CTI hold, as for a desk phone): the caller hears hold music
    # (the events are kept from the start: only music played from the click on counts; the
    # switch stamps its events with this machine's clock, in microseconds)
    since = int(time.time() * 1_000_000)
    page.click("#hold")
    events.wait_event(lambda e: e.get("Event-Name") == "CHANNEL_HOLD"
                      and e.get("Unique-ID") == agent_leg, 10, "CHANNEL_HOLD")
    page.wait_for_selector("#callCard[data-state='held']")
    customer = leg["variable_signal_bond"] if leg.get("variable_signal_bond") else \
        json.loads(fs1.api(f"uuid_dump {agent_leg} json"))["variable_signal_bond"]
    events.wait_event(lambda e: e.get("Event-Name") == "CHANNEL_EXECUTE"
                      and e.get("Unique-ID") == customer and e.get("Application") == "playback"
                      and int(e.get("Event-Date-Timestamp", 0)) >= since,
                      10, "hold music to the caller")
    page.click("#hold")
    events.wait_event(lambda e: e.get("Event-Name") == "CHANNEL_UNHOLD"
                      and e.get("Unique-ID") == agent_leg, 10, "CHANNEL_UNHOLD")
    page.wait_for_selector("#callCard[data-state='talking']")

    # hang up in the page: SIPp's caller gets the BYE (its scenario ends on the far end's BYE)
    page.click("#phoneHangup")
    assert caller.wait(30) == 0, caller.errors()
    received = caller.messages().split("message received")[1:]
    assert any("\nBYE sip:" in part[:400] for part in received), caller.messages()[-3000:]
    phone_state(page, "registered")
    wait_for(lambda: agent_state(phones, ext).get("call_state") in ("typing", "ready"), 10,
             f"agent {ext} out of the call")
    assert not page.errors, page.errors


def test_second_tab_takes_the_phone_over(fs1: RealSwitch, phones: Stack, cti: Cti,
                                         browser: Any, pages: list[Any]) -> None:
    ext = webrtc_extension(fs1, phones)
    first = open_console(browser, pages, cti, ext)
    phone_state(first, "registered")
    registered_browser(fs1, phones, ext)
    second = open_console(browser, pages, cti, ext)
    phone_state(second, "registered")
    # the first tab learns at its next renewal (every 2 s here) and unregisters
    phone_state(first, "takenOver")
    wait_for(lambda: len(registrations(fs1, ext)) == 1, 20,
             f"one registration of {ext} left")
    assert not first.errors and not second.errors, (first.errors, second.errors)


def test_second_tab_is_refused_when_configured(fs1: RealSwitch, phones: Stack, stack: Stack,
                                               relay: TcpRelay, browser: Any,
                                               pages: list[Any]) -> None:
    refusing = start_cti(stack, fs1, f"ws://127.0.0.1:{relay.port}", "refuse", "cti-refuse")
    try:
        ext = webrtc_extension(fs1, phones)
        first = open_console(browser, pages, refusing, ext)
        phone_state(first, "registered")
        second = open_console(browser, pages, refusing, ext)
        phone_state(second, "refused")
        # the first keeps its phone through its renewals (every 2 s)
        first.wait_for_function("() => window.fsappsPhone.renewals >= 2", timeout=20_000)
        phone_state(first, "registered")
        assert len(registrations(fs1, ext)) == 1
    finally:
        stop_cti(refusing)


def test_phone_registers_again_after_a_network_drop(fs1: RealSwitch, phones: Stack, cti: Cti,
                                                    relay: TcpRelay, browser: Any,
                                                    pages: list[Any]) -> None:
    ext = webrtc_extension(fs1, phones)
    page = open_console(browser, pages, cti, ext)
    phone_state(page, "registered")
    registered_browser(fs1, phones, ext)
    before = page.evaluate("() => window.fsappsPhone.registrations")
    relay.cut()
    page.wait_for_function(f"() => window.fsappsPhone.registrations > {before}",
                           timeout=30_000)
    phone_state(page, "registered")
    registered_browser(fs1, phones, ext)
    # logging out of the console unregisters the phone and gives its password back
    page.click("#logout")
    wait_for(lambda: not registrations(fs1, ext), 20, f"{ext} unregistered at logout")
    wait_for(lambda: not phones.redis.exists(f"fsapps:{{{DOMAIN}}}:webrtc:{ext}"), 10,
             "the browser password dropped at logout")


def test_desk_extension_cannot_register_from_a_browser(fs1: RealSwitch, phones: Stack,
                                                       cti: Cti, browser: Any,
                                                       pages: list[Any]) -> None:
    """An extension without the WebRTC flag: the console gets no SIP account (409), and a
    WebSocket REGISTER with its directory password is refused by the directory."""
    import asyncio

    from tools.wssip import WsPhone

    ext = str(next(_exts))
    phones.extension(ext)
    page = open_console(browser, pages, cti, ext)
    page.wait_for_function("() => /no browser phone/.test(window.fsappsPhone.error)")
    phone_state(page, "off")
    assert page.is_hidden("#phoneCard")

    async def try_register() -> int:
        p = WsPhone(f"ws://127.0.0.1:{fs1.ws_port}", ext, PASSWORD, DOMAIN)
        await p.connect()
        try:
            return await p.register()
        finally:
            await p.close()
    # (in a thread of its own: Playwright's sync API runs a loop in this one)
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(asyncio.run(try_register())))
    worker.start()
    worker.join(30)
    assert codes and codes[0] in (401, 403), codes


def test_nway_bridge_rings_the_browser_which_auto_answers(fs1: RealSwitch, phones: Stack,
                                                           cti: Cti, browser: Any,
                                                           pages: list[Any]) -> None:
    """A direct call (8 + extension: fsapps.nway_bridge) from a desk phone rings the browser
    like any phone; with auto-answer on, the page answers and audio flows; the desk phone's
    hang-up ends the browser's call and the CDR names the browser agent."""
    ext = webrtc_extension(fs1, phones)
    page = open_console(browser, pages, cti, ext, auto_answer=True)
    phone_state(page, "registered")
    registered_browser(fs1, phones, ext)
    desk = str(next(_exts))
    phones.extension(desk)
    call = phones.phone_call(fs1, desk, f"8{ext}", talk_ms=4000)
    phone_state(page, "talking")
    wait_for(lambda: stats(page)["packetsSent"] > 20, 15, "the browser sends audio")
    assert call.wait(30) == 0, call.errors()
    phone_state(page, "registered")
    row = phones.cdr("a_caller_id_number = %s AND destination_number = %s", desk, ext)
    assert row["flag"] == "接通" and row["hangup_cause"] == "NORMAL_CLEARING"
    assert phones.attempts(row["uuid"]) == [(ext, "answered")]
    assert not page.errors, page.errors


def test_single_step_transfer_from_the_browser_agent(fs1: RealSwitch, phones: Stack, group: str,
                                                     cti: Cti, browser: Any,
                                                     pages: list[Any]) -> None:
    """The CTI controls act in the switch whatever the phone: a queue call answered in the
    page is transferred from the page to a desk phone; the browser's leg ends, the caller
    talks on with the desk phone."""
    ext = webrtc_extension(fs1, phones)
    page = open_console(browser, pages, cti, ext, auto_answer=True)
    phone_state(page, "registered")
    registered_browser(fs1, phones, ext)
    api(fs1, f"nway_login {ext} {group}")
    target = str(next(_exts))
    phones.extension(target)
    desk = phones.phone(fs1, target)
    caller = phones.caller(fs1, f"7{group}", "13900004799", talk_ms=8000)
    phone_state(page, "talking")
    page.wait_for_selector("#callCard[data-state='talking']")
    page.fill("#number", target)
    page.click("#sTran")
    phone_state(page, "registered")  # the switch hung up the browser's leg
    wait_for(lambda: "INVITE sip:" in desk.messages(), 15, f"desk phone {target} rung")
    assert caller.wait(30) == 0, caller.errors()
    assert not page.errors, page.errors


@pytest.mark.parametrize(("path", "app"), [("/api/supervise/listen", "eavesdrop"),
                                           ("/api/supervise/barge", "three_way")],
                         ids=["listen", "barge"])
def test_supervisor_listens_to_or_barges_into_a_browser_agents_call(
        fs1: RealSwitch, phones: Stack, group: str, cti: Cti, browser: Any, pages: list[Any],
        tmp_path: Path, path: str, app: str) -> None:
    """Supervision acts on the agent's leg in the switch: the supervisor's desk phone is rung
    and runs eavesdrop / three_way on the browser agent's leg; the browser's call goes on,
    audio still flowing both ways, until the caller hangs up."""
    ext = webrtc_extension(fs1, phones)
    page = open_console(browser, pages, cti, ext, auto_answer=True)
    phone_state(page, "registered")
    registered_browser(fs1, phones, ext)
    api(fs1, f"nway_login {ext} {group}")
    sup_phone = str(next(_exts))
    phones.extension(sup_phone)
    phones.phone(fs1, sup_phone)
    wav = sipp.write_ulaw_wav(tmp_path / "caller.wav")
    caller = phones.caller(fs1, f"7{group}", f"1390000{len(path)}{len(app)}", talk_ms=10_000,
                           audio=str(wav))
    phone_state(page, "talking")
    wait_for(lambda: agent_state(phones, ext).get("call_state") == "talking", 20,
             f"agent {ext} talking")
    agent_leg = agent_state(phones, ext)["agent_leg"]
    login = requests.post(cti.url + "/api/login", timeout=10,
                          json={"username": "supervisor", "password": "supervisor"})
    assert login.status_code == 200, login.text
    reply = requests.post(cti.url + path, timeout=15,
                          headers={"Authorization": f"Nway {login.json()['token']}"},
                          json={"Extension": ext, "Phone": sup_phone})
    assert reply.status_code == 200 and agent_leg in reply.json()["message"], reply.text

    def supervising() -> bool:
        rows = json.loads(fs1.api("show channels as json")).get("rows", []) or []
        return any(r.get("dest") == sup_phone and r.get("application") == app
                   and r.get("application_data") == agent_leg
                   and r.get("callstate") == "ACTIVE" for r in rows)
    wait_for(supervising, 15, f"{sup_phone} running {app} on the browser agent's leg")
    before = stats(page)
    wait_for(lambda: stats(page)["packetsReceived"] > before["packetsReceived"] + 25
             and stats(page)["packetsSent"] > before["packetsSent"] + 25, 10,
             "the browser's audio goes on")
    phone_state(page, "talking")
    assert caller.wait(30) == 0, caller.errors()
    phone_state(page, "registered")
    assert not page.errors, page.errors


def test_consult_and_transfer_from_the_browser_agent(fs1: RealSwitch, phones: Stack, group: str,
                                                     cti: Cti, browser: Any,
                                                     pages: list[Any]) -> None:
    """A consult from the page while the browser talks: the switch holds the caller and rings
    the agent's own phone first (sip_auto_answer: Call-Info answer-after=0), which the page
    answers by itself although auto-answer is off, as a desk phone does; the desk phone
    consulted answers; the transfer joins caller and desk phone and both of the browser's
    calls end."""
    ext = webrtc_extension(fs1, phones)
    page = open_console(browser, pages, cti, ext)
    phone_state(page, "registered")
    registered_browser(fs1, phones, ext)
    api(fs1, f"nway_login {ext} {group}")
    target = str(next(_exts))
    phones.extension(target)
    desk = phones.phone(fs1, target)
    caller = phones.caller(fs1, f"7{group}", "13900004788", talk_ms=15_000)
    phone_state(page, "ringing")
    page.click("#phoneAnswer")
    page.wait_for_selector("#callCard[data-state='talking']")
    page.fill("#number", target)
    page.click("#ask")
    page.wait_for_function("() => window.fsappsPhone.others.length === 1 && "
                           "window.fsappsPhone.inCall()")
    wait_for(lambda: "INVITE sip:" in desk.messages(), 15, f"desk phone {target} rung")
    page.wait_for_selector("#tran:not([disabled])")
    # the consulted desk phone answered (its ACK came)
    wait_for(lambda: "\nACK sip:" in desk.messages(), 15, f"desk phone {target} answered")
    page.click("#tran")
    phone_state(page, "registered")
    page.wait_for_function("() => window.fsappsPhone.others.length === 0")
    assert caller.wait(40) == 0, caller.errors()
    assert not page.errors, page.errors


@pytest.fixture(scope="module")
def fs3(stack: Stack, fs1: RealSwitch) -> Iterator[RealSwitch]:
    """A second node (same Redis and database; named apart from test_multinode's fs2)."""
    sw = stack.switch("fs3").build(trunk_port=stack.trunk_port).start()
    yield sw
    sw.stop(timeout=20)


def test_browser_registered_on_another_node_takes_a_queue_call(
        fs1: RealSwitch, fs3: RealSwitch, phones: Stack, stack: Stack, group: str,
        browser: Any, pages: list[Any], tmp_path: Path) -> None:
    """Several nodes: the console registers on fs3 (its node's WebSocket), the caller queues
    on fs1; fs1 rings the agent through fs3's relay profile and fs3 sends the INVITE down the
    browser's WebSocket; audio flows both ways through both switches."""
    wait_for(lambda: phones.redis.hget("fsapps:{nodes}:node:fs3:heartbeat", "relay"), 15,
             "fs3's relay address published")
    on_fs3 = start_cti(stack, fs3, f"ws://127.0.0.1:{fs3.ws_port}", "takeover", "cti-fs3")
    try:
        ext = webrtc_extension(fs1, phones)
        page = open_console(browser, pages, on_fs3, ext, auto_answer=True)
        phone_state(page, "registered")
        registered_browser(fs3, phones, ext)
        wait_for(lambda: agent_state(phones, ext).get("reg_node") == "fs3", 10,
                 f"{ext} recorded as registered on fs3")
        api(fs1, f"nway_login {ext} {group}")
        wav = sipp.write_ulaw_wav(tmp_path / "caller.wav")
        caller = phones.caller(fs1, f"7{group}", "13900004733", talk_ms=6000, audio=str(wav))
        phone_state(page, "talking")
        wait_for(lambda: (lambda s: s["packetsReceived"] > 50 and s["packetsSent"] > 50)(
            stats(page)), 20, "audio both ways through fs1 and fs3")
        assert caller.wait(40) == 0, caller.errors()
        phone_state(page, "registered")
        row = phones.cdr("a_caller_id_number = %s", "13900004733")
        assert (row["node"], row["destination_number"]) == ("fs1", ext)
        assert phones.attempts(row["uuid"]) == [(ext, "answered")]
        assert not page.errors, page.errors
    finally:
        stop_cti(on_fs3)
