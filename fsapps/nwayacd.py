"""``python fsapps.nwayacd <group>`` — the ACD application (seed 001 ``nwayacd 110``).

Thin: FreeSWITCH reloads this module on every call; the work is in :mod:`fsapps.switch.acd`. No
exception ever leaves: a failure is logged and the caller hears a clean hangup.
"""

from __future__ import annotations

from typing import Any

from fsapps.switch import acd
from fsapps.switch.entry import run_app


def handler(session: Any, args: str) -> None:
    run_app("nwayacd", session, args, acd.route_call)
