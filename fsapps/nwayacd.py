"""``python fsapps.nwayacd <group>`` — the ACD application (seed 001 ``nwayacd 110``).

Thin: FreeSWITCH reloads this module on every call; the work is in :mod:`fsapps.acd`. No
exception ever leaves: a failure is logged and the caller hears a clean hangup.
"""

from __future__ import annotations

from typing import Any

from fsapps import acd
from fsapps.fslog import log


def handler(session: Any, args: str) -> None:
    try:
        acd.route_call(session, args)
    except Exception as exc:
        log("ERR", f"nwayacd {args!r}: {type(exc).__name__}: {exc}")
        try:
            if session.ready():
                session.hangup("NORMAL_TEMPORARY_FAILURE")
        except Exception:
            pass
