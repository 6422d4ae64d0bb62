"""``python fsapps.nwaycallback`` — runs on an agent's leg that answered a callback's ring (the
node's runtime originates it, :mod:`fsapps.switch.callback`): the caller is called back through
the group's gateway and bridged to the agent.

Thin: FreeSWITCH reloads this module on every call; the work is in
:mod:`fsapps.switch.callback`. No exception ever leaves: a failure is logged and the leg hung up.
"""

from __future__ import annotations

from typing import Any

from fsapps.switch import callback
from fsapps.switch.entry import run_app


def handler(session: Any, args: str) -> None:
    run_app("nwaycallback", session, args, callback.run)
