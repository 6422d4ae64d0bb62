"""``python fsapps.nwaycallout <number> <gateway> <group>`` — an agent's outbound call (seed 001
``nwaycallout 18621575908 gw1 110``; dialplan ``data="fsapps.nwaycallout $0 test 110"``).

Thin: FreeSWITCH reloads this module on every call; the work is in :mod:`fsapps.outbound`. No
exception ever leaves: a failure is logged and the agent's call is hung up cleanly.
"""

from __future__ import annotations

from typing import Any

from fsapps import outbound
from fsapps.fslog import log


def handler(session: Any, args: str) -> None:
    try:
        outbound.callout(session, args)
    except Exception as exc:
        log("ERR", f"nwaycallout {args!r}: {type(exc).__name__}: {exc}")
        try:
            if session.ready():
                session.hangup("NORMAL_TEMPORARY_FAILURE")
        except Exception:
            pass
