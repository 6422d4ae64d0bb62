"""Call detail records: one :class:`Cdr` per call, written to PostgreSQL (table ``cdr``) and
published as the seed-001 ``cdr`` message (``cdr_callout`` for outbound calls, ``cdr_<group>``
for inbound ones; see :mod:`fsapps.pubsub`).

A CDR is recorded after the call is over, by the handler that ran it, so nothing here can delay
or break the call itself. :func:`record` never raises: a failed PUBLISH is logged by the
publisher, a PostgreSQL error (down, refused, timed out) is logged at ERR with the CDR's uuid,
and the call has ended normally either way. While PostgreSQL is unreachable the CDR is in that
log line and in the published message only; issue 7 adds the durable spool (the Redis stream
``p:{d}:cdr:spool`` listed in :mod:`fsapps.store.keys`) that keeps such CDRs and writes them
later. Writing is idempotent (``ON CONFLICT (uuid) DO NOTHING``), so a replay writes once.

Times are epoch seconds (floats); the message shows them as the seed's local
``YYYY-MM-DD HH:MM:SS`` and PostgreSQL stores them as ``timestamptz``. Durations are whole
seconds between whole-second epochs, as FreeSWITCH computes ``duration`` and ``billsec``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2

from fsapps.context import Context
from fsapps.db.connection import transaction
from fsapps.errors import FsappsError
from fsapps.fslog import log
from fsapps.pubsub import stamp

__all__ = ["Cdr", "record", "seconds_between", "write"]

_COLUMNS = (
    "uuid", "cti_ip", "is_callout", "a_caller_id_number", "a_destination_number",
    "a_start_stamp", "a_answer_stamp", "a_end_stamp", "a_duration", "a_billsec",
    "a_sip_hangup_disposition", "a_record_file", "str_no_answer_agents", "destination_number",
    "start_stamp", "answer_stamp", "end_stamp", "duration", "billsec", "flag", "group_number",
    "domain", "hangup_cause", "level", "node",
)
_INSERT = (f"INSERT INTO cdr ({', '.join(_COLUMNS)}) "
           f"VALUES ({', '.join(f'%({c})s' for c in _COLUMNS)}) "
           "ON CONFLICT (uuid) DO NOTHING")


def seconds_between(start: float | None, end: float | None) -> int:
    """Whole seconds from ``start`` to ``end`` (0 when either is unknown)."""
    if start is None or end is None:
        return 0
    return max(0, int(end) - int(start))


def _stamp(epoch: float | None) -> str:
    return stamp(epoch) if epoch else ""


def _timestamp(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, tz=UTC) if epoch else None


@dataclass(frozen=True)
class Cdr:
    """One call. ``a_*``: the channel that placed the call (the caller; for an outbound call the
    agent's own phone). ``destination_number``, ``start`` .. ``end``: the party it reached (the
    agent for an inbound call, the dialled number for an outbound one). ``a_duration`` /
    ``a_billsec`` as the switch reported them, else computed from the times."""

    uuid: str
    is_callout: bool
    a_caller_id_number: str
    a_destination_number: str
    a_start: float | None
    a_answer: float | None
    a_end: float | None
    destination_number: str = ""
    start: float | None = None
    answer: float | None = None
    end: float | None = None
    a_duration: int | None = None
    a_billsec: int | None = None
    a_sip_hangup_disposition: str = ""
    a_record_file: str = ""
    no_answer_agents: tuple[str, ...] = ()
    flag: str = ""
    group_number: str = ""
    domain: str = ""
    hangup_cause: str = ""
    level: str = "normal"
    node: str = ""

    @property
    def a_durations(self) -> tuple[int, int]:
        duration = self.a_duration if self.a_duration is not None else \
            seconds_between(self.a_start, self.a_end)
        billsec = self.a_billsec if self.a_billsec is not None else \
            seconds_between(self.a_answer, self.a_end) if self.a_answer else 0
        return duration, billsec

    @property
    def durations(self) -> tuple[int, int]:
        return (seconds_between(self.start, self.end),
                seconds_between(self.answer, self.end) if self.answer else 0)

    def message_fields(self) -> dict[str, Any]:
        """The seed's CDR message fields (``cti_ip`` left to the publisher)."""
        a_duration, a_billsec = self.a_durations
        duration, billsec = self.durations
        return {
            "uuid": self.uuid, "is_callout": self.is_callout,
            "a_caller_id_number": self.a_caller_id_number,
            "a_destination_number": self.a_destination_number,
            "a_start_stamp": _stamp(self.a_start), "a_answer_stamp": _stamp(self.a_answer),
            "a_end_stamp": _stamp(self.a_end), "a_duration": a_duration,
            "a_billsec": a_billsec, "a_sip_hangup_disposition": self.a_sip_hangup_disposition,
            "a_record_file": self.a_record_file,
            "str_no_answer_agents": ",".join(self.no_answer_agents),
            "no_answer_agents": list(self.no_answer_agents),
            "destination_number": self.destination_number,
            "start_stamp": _stamp(self.start), "answer_stamp": _stamp(self.answer),
            "end_stamp": _stamp(self.end), "duration": duration, "flag": self.flag,
            "billsec": billsec,
        }

    def row(self, cti_ip: str) -> dict[str, Any]:
        """The ``cdr`` table row."""
        a_duration, a_billsec = self.a_durations
        duration, billsec = self.durations
        return {
            "uuid": self.uuid, "cti_ip": cti_ip, "is_callout": self.is_callout,
            "a_caller_id_number": self.a_caller_id_number,
            "a_destination_number": self.a_destination_number,
            "a_start_stamp": _timestamp(self.a_start),
            "a_answer_stamp": _timestamp(self.a_answer),
            "a_end_stamp": _timestamp(self.a_end), "a_duration": a_duration,
            "a_billsec": a_billsec, "a_sip_hangup_disposition": self.a_sip_hangup_disposition,
            "a_record_file": self.a_record_file,
            "str_no_answer_agents": ",".join(self.no_answer_agents),
            "destination_number": self.destination_number,
            "start_stamp": _timestamp(self.start), "answer_stamp": _timestamp(self.answer),
            "end_stamp": _timestamp(self.end), "duration": duration, "billsec": billsec,
            "flag": self.flag, "group_number": self.group_number or None,
            "domain": self.domain or "default", "hangup_cause": self.hangup_cause,
            "level": self.level, "node": self.node,
        }


def write(ctx: Context, cdr: Cdr) -> bool:
    """INSERT the CDR (one transaction). True when written, False when a CDR with this uuid
    was there already. Raises the PostgreSQL error (see :func:`record`)."""
    with transaction(ctx.pool) as cur:
        cur.execute(_INSERT, cdr.row(ctx.publisher.cti_ip))
        return bool(cur.rowcount)


def record(ctx: Context, cdr: Cdr) -> bool:
    """Publish the CDR message, then write the row. Never raises: True when the row is in
    PostgreSQL (now or already), False when the write failed (logged at ERR, naming the call;
    issue 7's spool keeps such CDRs)."""
    ctx.publisher.cdr(cdr.message_fields(), group=cdr.group_number)
    try:
        write(ctx, cdr)
    except (FsappsError, psycopg2.Error) as exc:
        log("ERR", f"cdr: call {cdr.uuid} ({cdr.a_caller_id_number} -> "
                   f"{cdr.destination_number or cdr.a_destination_number}) not written to "
                   f"PostgreSQL: {type(exc).__name__}: {' '.join(str(exc).split())}")
        return False
    return True
