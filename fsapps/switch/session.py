"""The caller's channel as the dialplan apps see it: the one guard for "the caller has gone".

An app calls :func:`ensure_up` where it can go on only while the caller is there: it raises
:class:`~fsapps.errors.CallerGone`, which the app catches where it must free what it holds
(the queue call in :mod:`fsapps.switch.acd`) and :func:`fsapps.switch.entry.run_app` ends
quietly — a caller hanging up is not a failure, nothing is logged. :func:`hang_up` ends the call
unless the caller already has.
"""

from __future__ import annotations

from typing import Any

from fsapps.errors import CallerGone


def is_up(session: Any) -> bool:
    """Whether the caller's channel is still up (the one place that asks the channel)."""
    return bool(session.ready())


def ensure_up(session: Any) -> None:
    """Raise CallerGone when the caller's channel is no longer up (hung up, or gone from this
    handler); nothing happens while it is."""
    if not is_up(session):
        raise CallerGone()


def hang_up(session: Any, cause: str) -> None:
    """Hang the caller up with ``cause``; nothing happens when the channel is gone already."""
    if is_up(session):
        session.hangup(cause)
