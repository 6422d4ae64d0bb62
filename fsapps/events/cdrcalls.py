"""The runtime's side of "a CDR for every call": per node, from the switch events the runtime
consumes, it follows the legs each call originates (and the channels a call is bridged to
without originating them: ``uuid_bridge`` after a consultation) and the recordings channels
make. When a channel's CHANNEL_HANGUP_COMPLETE carries the CDR drafts an app left on it
(:data:`fsapps.channelvars.DRAFT_VAR`: queue, outbound and direct calls, also when the channel was
transferred afterwards) it completes them with the fields FreeSWITCH sets only in the hangup
state (:func:`fsapps.events.cdr.complete`); when an a-leg's says no app took the call
(:func:`fsapps.events.cdr.wants_generic_cdr`) it builds a generic CDR
(:func:`fsapps.events.cdr.generic_cdr`). Either way the call's one CDR is made here, once,
from its one HANGUP_COMPLETE.

No Redis keys: the state is this node's own channels, in memory, bounded. The CDRs it builds
are recorded (published, spooled) by the runtime's CDR thread (:meth:`CallRecords.
record_pending`), never by the event loop: with Redis down
:func:`fsapps.events.cdrspool.record` writes to PostgreSQL directly, which must not stall the
events.

Recordings: FreeSWITCH's ``record_session`` fires RECORD_START with ``Record-File-Path`` and
sets no channel variable. The first recording of a channel is remembered for its generic CDR
and, unless the dialplan named one, set as :data:`fsapps.channelvars.RECORD_FILE_VAR` on the channel
(``uuid_setvar``), so the apps that write their own CDR, the CHANNEL_HANGUP_COMPLETE and the
NATS Event.CDR ``abs_path`` name it too.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fsapps.channelvars import DOMAIN_VAR, DRAFT_VAR, RECORD_FILE_VAR, event_header
from fsapps.context import Context
from fsapps.events import cdr, cdrspool
from fsapps.fslog import log

__all__ = ["CallRecords"]

# Calls (and recordings) followed at once; beyond it the oldest are forgotten (their CDR then
# lacks the b-leg part). A node carries a few thousand channels at most.
MAX_TRACKED = 20_000
_LEG_EVENTS = ("CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA",
               "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE")
Header = Callable[[str], str | None]


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
        if name == "CHANNEL_BRIDGE":
            self.bridged(header, uuid)
        elif name == "CHANNEL_UNBRIDGE":
            self.unbridged(header, uuid)
        originator = header("variable_originator") or ""
        if originator:
            if name in _LEG_EVENTS:
                self.leg_event(header, originator, uuid)
            if name == "CHANNEL_HANGUP_COMPLETE":
                # legs this leg called itself (a transferred agent's), part of the same call
                legs = self.legs.pop(uuid, None)
                if header(event_header(DRAFT_VAR)):
                    # an app ran on this leg after a transfer: its CDR is this leg's
                    self.drafted(header, uuid, list((legs or {}).values()),
                                 self.recordings.get(uuid, ""))
            elif name == "CHANNEL_DESTROY":
                self.recordings.pop(uuid, None)
            return
        if name == "CHANNEL_CREATE":
            _bounded(self.legs)[uuid] = {}
        elif name == "CHANNEL_HANGUP_COMPLETE":
            self.call_over(header, uuid)

    def leg_event(self, header: Header, originator: str, uuid: str) -> None:
        legs = self.legs.get(originator)
        if legs is None:
            if header("Event-Name") != "CHANNEL_CREATE":
                return  # its call is over (or began before this runtime): nothing to add to
            legs = _bounded(self.legs).setdefault(originator, {})
        leg = cdr.leg_from_event(header)
        known = legs.get(uuid)
        if known is not None and known.own and not leg.own:
            leg = replace(leg, own=True)  # an event that came without the leg's variables
        legs[uuid] = leg

    def bridged(self, header: Header, uuid: str) -> None:
        """A call bridged to a channel it did not originate (``uuid_bridge``: the caller and
        the party a consultation reached): that party is one of the call's legs from now on.
        Either side may be the one that fired the event."""
        other = header("Other-Leg-Unique-ID") or header("Bridge-B-Unique-ID") or ""
        if uuid in self.legs and other and other != uuid:
            if other not in self.legs[uuid]:
                self.legs[uuid][other] = cdr.leg_from_bridge(header)
        elif other in self.legs and uuid not in self.legs[other] and \
                (header("variable_originator") or "") != other:
            self.legs[other][uuid] = cdr.leg_from_bridge(header, "Caller")

    def unbridged(self, header: Header, uuid: str) -> None:
        """The end of a bridge to such a party (a leg it originated has its own hangup)."""
        other = header("Other-Leg-Unique-ID") or header("Bridge-B-Unique-ID") or ""
        for call, party in ((uuid, other), (other, uuid)):
            leg = self.legs.get(call, {}).get(party)
            if leg is not None and leg.end is None and not leg.own:
                stamp = header("Event-Date-Timestamp") or ""
                if stamp.isdigit():
                    self.legs[call][party] = replace(leg, end=int(stamp) / 1e6)

    def recording_started(self, header: Header, uuid: str) -> None:
        path = (header("Record-File-Path") or "").strip()
        if not path or uuid in self.recordings:
            return
        _bounded(self.recordings)[uuid] = path
        if not header(event_header(RECORD_FILE_VAR)) and "\n" not in path:
            # the handlers and CHANNEL_HANGUP_COMPLETE read the variable; a channel already
            # gone answers -ERR, and its generic CDR still has the path from here
            self.api("uuid_setvar", f"{uuid} {RECORD_FILE_VAR} {path}")

    def call_over(self, header: Header, uuid: str) -> None:
        legs = list(self.legs.pop(uuid, {}).values())
        recording = self.recordings.pop(uuid, "")
        for leg in legs:
            recording = recording or self.recordings.get(leg.uuid, "")
        drafts = header(event_header(DRAFT_VAR))
        if drafts and self.drafted(header, uuid, legs, recording):
            return
        if not drafts and not cdr.wants_generic_cdr(header):
            return  # (unreadable drafts: a generic CDR rather than none)
        settings = self.ctx.settings
        domain = header("variable_domain_name") or header(event_header(DOMAIN_VAR)) or ""
        if domain not in settings.domains:
            domain = settings.default_domain
        self.pending.put(cdr.generic_cdr(header, node=self.node, domain=domain, legs=legs,
                                         record_file=recording))

    def drafted(self, header: Header, uuid: str, legs: list[cdr.Leg], recording: str) -> bool:
        """Complete the CDR drafts the channel carries; False when they do not parse (logged)."""
        text = header(event_header(DRAFT_VAR)) or ""
        try:
            drafts = cdr.drafts_from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            log("ERR", f"cdr: call {uuid}: unreadable CDR draft ({type(exc).__name__}: "
                       f"{exc}): {text!r}")
            return False
        if not drafts:
            return False
        self.pending.put(cdr.complete(drafts, header, legs, recording))
        return True

    def record_pending(self) -> int:
        """Record the CDRs built since the last call (:func:`fsapps.events.cdrspool.record` never
        raises); how many."""
        done = 0
        while True:
            try:
                record = self.pending.get_nowait()
            except queue.Empty:
                return done
            cdrspool.record(self.ctx, record)
            done += 1


def _bounded(table: dict[str, Any]) -> dict[str, Any]:
    """``table`` with room for one more entry (the oldest dropped when full)."""
    while len(table) >= MAX_TRACKED:
        del table[next(iter(table))]
    return table
