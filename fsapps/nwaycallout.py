"""``python fsapps.nwaycallout <number> <gateway> <group>`` — an agent's outbound call (seed 001
``nwaycallout 18621575908 gw1 110``; dialplan ``data="fsapps.nwaycallout $0 test 110"``).

Thin: FreeSWITCH reloads this module on every call; the work is in :mod:`fsapps.switch.outbound`. No
exception ever leaves: a failure is logged and the agent's call is hung up cleanly.
"""

from __future__ import annotations

from typing import Any

from fsapps.switch import outbound
from fsapps.switch.entry import run_app


def handler(session: Any, args: str) -> None:
    run_app("nwaycallout", session, args, outbound.callout)
