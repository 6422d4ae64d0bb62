"""``python fsapps.nway_bridge <extension>`` — a direct (non-queue) call to an agent that keeps
the agent's call state and events as a queue call does (seed 001 application ``nway_bridge``).

Thin: FreeSWITCH reloads this module on every call; the work is in :mod:`fsapps.switch.outbound`. No
exception ever leaves: a failure is logged and the caller hears a clean hangup.
"""

from __future__ import annotations

from typing import Any

from fsapps.switch import outbound
from fsapps.switch.entry import run_app


def handler(session: Any, args: str) -> None:
    run_app("nway_bridge", session, args, outbound.direct_call)
