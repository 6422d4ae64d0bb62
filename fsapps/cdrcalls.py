"""The runtime's side of "a CDR for every call": per node, from the switch events the runtime
consumes, it follows the legs each call originates and the recordings channels make, and when
an a-leg's CHANNEL_HANGUP_COMPLETE says no app wrote the call's CDR (:func:`fsapps.cdr.
wants_generic_cdr`) it builds a generic one (:func:`fsapps.cdr.generic_cdr`).

No Redis keys: the state is this node's own channels, in memory, bounded. The CDRs it builds
are recorded (published, spooled) by the runtime's CDR thread (:meth:`CallRecords.
record_pending`), never by the event loop: with Redis down :func:`fsapps.cdr.record` writes
to PostgreSQL directly, which must not stall the events.

Recordings: FreeSWITCH's ``record_session`` fires RECORD_START with ``Record-File-Path`` and
sets no channel variable. The first recording of a channel is remembered for its generic CDR
and, unless the dialplan named one, set as :data:`fsapps.cdr.RECORD_FILE_VAR` on the channel
(``uuid_setvar``), so the apps that write their own CDR, the CHANNEL_HANGUP_COMPLETE and the
NATS Event.CDR ``abs_path`` name it too.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from fsapps import cdr
from fsapps.context import Context

__all__ = ["CallRecords"]

# Calls (and recordings) followed at once; beyond it the oldest are forgotten (their CDR then
# lacks the b-leg part). A node carries a few thousand channels at most.
MAX_TRACKED = 20_000
_LEG_EVENTS = ("CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE")


class CallRecords:
    """Generic CDRs of one node. :meth:`on_event` runs in the event loop (no I/O but one
    ``uuid_setvar`` per recording); :meth:`record_pending` in the CDR thread."""

    def __init__(self, ctx: Context, node: str, api: Callable[[str, str], str]) -> None:
        self.ctx = ctx
        self.node = node
        self.api = api
        self.legs: dict[str, dict[str, cdr.Leg]] = {}  # a-leg uuid -> its legs, in call order
        self.recordings: dict[str, str] = {}            # channel uuid -> first recording
        self.pending: queue.SimpleQueue[cdr.Cdr] = queue.SimpleQueue()

    def on_event(self, event: Any) -> None:
        header = event.getHeader
        name = header("Event-Name") or ""
        uuid = header("Unique-ID") or ""
        if not uuid:
            return
        if name == "RECORD_START":
            self.recording_started(header, uuid)
            return
        originator = header("variable_originator") or ""
        if originator:
            if name in _LEG_EVENTS:
                self.leg_event(header, originator, uuid)
            if name == "CHANNEL_HANGUP_COMPLETE":
                # legs this leg called itself (a transferred agent's), part of the same call
                self.legs.pop(uuid, None)
            elif name == "CHANNEL_DESTROY":
                self.recordings.pop(uuid, None)
            return
        if name == "CHANNEL_CREATE":
            _bounded(self.legs)[uuid] = {}
        elif name == "CHANNEL_HANGUP_COMPLETE":
            self.call_over(header, uuid)

    def leg_event(self, header: Callable[[str], str | None], originator: str,
                  uuid: str) -> None:
        legs = self.legs.get(originator)
        if legs is None:
            if header("Event-Name") != "CHANNEL_CREATE":
                return  # its call is over (or began before this runtime): nothing to add to
            legs = _bounded(self.legs).setdefault(originator, {})
        legs[uuid] = cdr.leg_from_event(header)

    def recording_started(self, header: Callable[[str], str | None], uuid: str) -> None:
        path = (header("Record-File-Path") or "").strip()
        if not path or uuid in self.recordings:
            return
        _bounded(self.recordings)[uuid] = path
        if not header(f"variable_{cdr.RECORD_FILE_VAR}") and "\n" not in path:
            # the handlers and CHANNEL_HANGUP_COMPLETE read the variable; a channel already
            # gone answers -ERR, and its generic CDR still has the path from here
            self.api("uuid_setvar", f"{uuid} {cdr.RECORD_FILE_VAR} {path}")

    def call_over(self, header: Callable[[str], str | None], uuid: str) -> None:
        legs = list(self.legs.pop(uuid, {}).values())
        recording = self.recordings.pop(uuid, "")
        for leg in legs:
            recording = recording or self.recordings.get(leg.uuid, "")
        if not cdr.wants_generic_cdr(header):
            return
        settings = self.ctx.settings
        domain = header("variable_domain_name") or header("variable_fsapps_domain") or ""
        if domain not in settings.domains:
            domain = settings.default_domain
        self.pending.put(cdr.generic_cdr(header, node=self.node, domain=domain, legs=legs,
                                         record_file=recording))

    def record_pending(self) -> int:
        """Record the CDRs built since the last call (:func:`fsapps.cdr.record` never
        raises); how many."""
        done = 0
        while True:
            try:
                record = self.pending.get_nowait()
            except queue.Empty:
                return done
            cdr.record(self.ctx, record)
            done += 1


def _bounded(table: dict[str, Any]) -> dict[str, Any]:
    """``table`` with room for one more entry (the oldest dropped when full)."""
    while len(table) >= MAX_TRACKED:
        del table[next(iter(table))]
    return table
