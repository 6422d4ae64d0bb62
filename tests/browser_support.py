"""What the CSTA and browser tests share: a CTI stack whose agents' phones ring until answered
from a page (``uuid_phone_event talk``), and the system Chromium driven by Playwright (never a
downloaded browser: ``make system`` installs Debian's chromium)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cti_support import CtiStack, cti_stack

from fakefs.channel import Behaviour
from fakefs.scenario import wait_until

CHROMIUM = "/usr/bin/chromium"
# As root, in a closed network: no sandbox, no background connections Chromium would retry.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"{CHROMIUM} missing (make system installs it)")


@contextmanager
def agents_stack(redis_url: str, dsn: str, extensions: tuple[str, ...],
                 **cti: Any) -> Iterator[CtiStack]:
    """:func:`cti_stack` with agents ``extensions`` in group 110, not ready, their phones
    ringing until answered."""
    with cti_stack(redis_url, dsn, **cti) as stack:
        for ext in extensions:
            stack.center.agent(ext, ["110"], ready=False,
                               behaviour=Behaviour(answer_after_ms=None))
        yield stack


@contextmanager
def chromium() -> Iterator[Any]:
    """The system Chromium, headless, closed on exit."""
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_off(stack: CtiStack, sessions: Iterable[tuple[Any, Any, str, str]],
             domain: str) -> None:
    """End wellClient sessions ``(http, stomp client, user, extension)``: close the event
    streams, log the agents out, hang up every channel left on the switch."""
    for http, client, user, ext in sessions:
        client.close()
        http.post("/api/csta/agent/state", json={"func": "Logout", "loginId": f"{user}@{domain}",
                                                 "device": f"{ext}@{domain}"})
    for ch in list(stack.switch.channels.values()):
        stack.switch.hangup(ch)
    wait_until(lambda: not stack.switch.channels, 5, "channels gone")


def phone_legs(switch: Any) -> dict[str, str]:
    """Device number -> channel uuid for every channel of a fake ``switch``: an inbound
    channel stands for its caller; a leg the switch rang for the phone it rang (its
    ``sofia/internal/<user>@...`` name). Not ``dialed_user``: as in FreeSWITCH, a channel that
    bridges to ``user/<ext>`` gets ``dialed_user=<ext>`` itself (the caller of a queue call,
    the agent's leg of a makeCall), so it names whom the channel called."""
    legs: dict[str, str] = {}
    for ch in switch.channels.values():
        if ch.direction == "inbound":
            legs[ch.caller_id_number] = ch.uuid
        elif ch.name.startswith("sofia/internal/"):
            legs[ch.name.split("/", 2)[2].split("@")[0]] = ch.uuid
        else:
            legs[ch.get("dialed_user") or ch.caller_id_number] = ch.uuid
    return legs
