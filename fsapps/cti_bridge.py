"""``python fsapps.cti_bridge <url> [connect_timeout_ms] [response_timeout_ms] [notify_type]``
— ask an HTTP router where the call goes, then dial as told (README: HTTP-routed bridging).

Thin: FreeSWITCH reloads this module on every call; the work, the HTTP connection pool and the
notifier threads live in :mod:`fsapps.switch.httproute`. No exception ever leaves: a failure is
logged and the caller hears a clean hangup.
"""

from __future__ import annotations

from typing import Any

from fsapps.context import get_context
from fsapps.fslog import log
from fsapps.switch import httproute


def handler(session: Any, args: str) -> None:
    try:
        httproute.route_call(session, args, get_context().settings.cti_bridge)
    except Exception as exc:
        log("ERR", f"cti_bridge {args!r}: {type(exc).__name__}: {exc}")
        try:
            if session.ready():
                session.hangup("NORMAL_TEMPORARY_FAILURE")
        except Exception:
            pass
