"""``python fsapps.cti_bridge <url> [connect_timeout_ms] [response_timeout_ms] [notify_type]``
— ask an HTTP router where the call goes, then dial as told (README: HTTP-routed bridging).

Thin: FreeSWITCH reloads this module on every call; the work, the HTTP connection pool and the
notifier threads live in :mod:`fsapps.switch.httproute`. No exception ever leaves: a failure is
logged and the caller hears a clean hangup.
"""

from __future__ import annotations

from typing import Any

from fsapps.context import get_context
from fsapps.switch import httproute
from fsapps.switch.entry import run_app


def _route(session: Any, args: str) -> None:
    httproute.route_call(session, args, get_context().settings.cti_bridge)


def handler(session: Any, args: str) -> None:
    run_app("cti_bridge", session, args, _route)
