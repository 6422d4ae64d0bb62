"""The guard every dialplan application entry module shares: run the service function and
make sure no exception reaches FreeSWITCH — log it and give the caller a clean hangup."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fsapps.context import get_context
from fsapps.errors import CallerGone
from fsapps.fslog import log
from fsapps.switch import priority
from fsapps.switch.session import hang_up


def run_app(name: str, session: Any, args: str,
            service: Callable[[Any, str], None]) -> None:
    before = None
    try:
        # the switch lends this thread: Python runs ahead of its media while it has it
        before = priority.run_python_first(get_context().settings.python_priority)
        if before is not None:
            session = priority.Session(session, before)
        service(session, args)
    except CallerGone:  # the caller hung up: not a failure, the app freed what it held
        pass
    except Exception as exc:  # nothing may escape into the switch
        log("ERR", f"{name} {args!r}: {type(exc).__name__}: {exc}")
        try:
            hang_up(session, "NORMAL_TEMPORARY_FAILURE")
        except Exception:  # the channel may be gone already
            pass
    finally:
        priority.give_back(before)
