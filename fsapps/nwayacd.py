"""``python fsapps.nwayacd <group>`` — the ACD application (seed 001 ``nwayacd 110``).

Thin: FreeSWITCH reloads this module on every call; the work is in :mod:`fsapps.switch.acd`. No
exception ever leaves: a failure is logged and the caller hears a clean hangup.
"""

from __future__ import annotations

from typing import Any

from fsapps.switch import acd, outbound
from fsapps.switch.entry import run_app


def route_call(session: Any, args: str) -> None:
    # a caller leaving the queue for an extension (overflow, exit key) rings it as
    # nway_bridge does; outbound imports acd, so the two meet here
    acd.route_call(session, args, ring_extension=outbound.direct_call)


def handler(session: Any, args: str) -> None:
    run_app("nwayacd", session, args, route_call)
