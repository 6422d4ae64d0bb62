"""Call detail records: one :class:`Cdr` per call, written to PostgreSQL (table ``cdr``) and
published as the seed-001 ``cdr`` message (``cdr_callout`` for outbound calls, ``cdr_<group>``
for inbound ones; see :mod:`fsapps.pubsub`).

A CDR is recorded after the call is over, by the handler that ran it, so nothing here can delay
or break the call itself. :func:`record` never raises: it publishes the message once, then
appends the CDR to the durable spool (the Redis stream ``p:{d}:cdr:spool``,
:mod:`fsapps.cdrspool`), from which each node's runtime writes it to PostgreSQL. Redis down: the
CDR is written to PostgreSQL directly; both down: the CDR's JSON is logged at ERR (the last
resort). Writing is idempotent (``ON CONFLICT DO NOTHING`` on ``cdr.uuid`` and on
``cdr_agent_attempt (cdr_uuid, attempt_no)``), so a replayed spool entry writes once.

Every call gets exactly one CDR. The apps that know the call best write their own (queue
calls :mod:`fsapps.acd`, ``nwaycallout`` and ``nway_bridge`` :mod:`fsapps.outbound`, through
:func:`record_own`, which first sets the channel variable :data:`OWN_CDR_VAR`); for every other
call (a plain dialplan bridge, cti_bridge, an IVR, a refused call...) the runtime builds a
generic CDR from the a-leg's CHANNEL_HANGUP_COMPLETE and the events of the legs it originated
(:func:`wants_generic_cdr`, :func:`leg_from_event`, :func:`generic_cdr`: pure, no I/O).

A queue call (:mod:`fsapps.acd`) carries one :class:`Attempt` per agent offered the call;
its ``flag`` is one of :data:`QUEUE_FLAGS`. A generic CDR's flag is :data:`FLAG_ANSWERED`
when a leg it called answered, :data:`FLAG_NOT_CONNECTED` when none did, "" when it called
nobody (an IVR, a refused call: ``hangup_cause`` says more).

The recording: ``a_record_file`` is the channel variable :data:`RECORD_FILE_VAR` — set by the
dialplan, or by the runtime from the RECORD_START event's ``Record-File-Path`` (FreeSWITCH's
``record_session`` sets no variable of its own).

Times are epoch seconds (floats); the message shows them as the seed's local
``YYYY-MM-DD HH:MM:SS`` and PostgreSQL stores them as ``timestamptz``. Durations are whole
seconds between whole-second epochs, as FreeSWITCH computes ``duration`` and ``billsec``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg2
import redis

from fsapps.context import Context
from fsapps.db.connection import transaction
from fsapps.errors import FsappsError
from fsapps.fslog import log
from fsapps.pubsub import stamp

__all__ = ["OWN_CDR_VAR", "QUEUE_FLAGS", "RECORD_FILE_VAR", "Attempt", "Cdr", "Leg",
           "generic_cdr", "leg_from_event", "record", "record_own", "seconds_between",
           "wants_generic_cdr", "write"]

# Set on the a-leg by an app that writes the call's CDR itself (its name): the runtime then
# writes no generic CDR for it, so every call has exactly one.
OWN_CDR_VAR = "fsapps_cdr_by"
# The call's recording: set it in the dialplan, or the runtime sets it from RECORD_START.
RECORD_FILE_VAR = "fsapps_record_file"
# cdr_<group> of the CDRs of inbound calls that are in no group (generic, nway_bridge):
# cdr_direct. Groups are numbered (seed 001: 座席组短号), so, like cdr_callout, it is no
# group's channel.
NO_GROUP_CHANNEL = "direct"
# A leg to fsapps_agent_<ext> is another node ringing one of this node's agents for a call
# that node records (dialplan/10_fsapps_acd.xml): not a call of its own.
_RELAY_PREFIX = "fsapps_agent_"

# The flag of a queue call (seed 001 writes them in Chinese):
FLAG_ANSWERED = "接通"                 # an agent answered
FLAG_ONE_NO_ANSWER = "单座席无应答"     # one agent was offered the call, did not take it
FLAG_MANY_NO_ANSWER = "多座席无应答"    # several agents were offered it, none took it
FLAG_ABANDONED = "排队放弃"             # the caller hung up before any agent was offered it
FLAG_QUEUE_TIMEOUT = "排队超时"         # the long-wait policy hung up (group busy_ring)
FLAG_BLACKLISTED = "黑名单"             # the group's blacklist refused the caller
FLAG_NOT_CONNECTED = "未接通"           # generic CDR: the legs it called did not answer
QUEUE_FLAGS = (FLAG_ANSWERED, FLAG_ONE_NO_ANSWER, FLAG_MANY_NO_ANSWER, FLAG_ABANDONED,
               FLAG_QUEUE_TIMEOUT, FLAG_BLACKLISTED)
# cdr_agent_attempt.result values (the table's CHECK constraint)
ATTEMPT_RESULTS = ("answered", "no_answer", "busy", "rejected", "unregistered", "caller_cancel",
                   "failed")

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
_ATTEMPT_COLUMNS = ("cdr_uuid", "attempt_no", "extension", "leg_uuid", "start_stamp",
                    "answer_stamp", "end_stamp", "duration", "billsec", "result", "hangup_cause")
_INSERT_ATTEMPT = (f"INSERT INTO cdr_agent_attempt ({', '.join(_ATTEMPT_COLUMNS)}) "
                   f"VALUES ({', '.join(f'%({c})s' for c in _ATTEMPT_COLUMNS)}) "
                   "ON CONFLICT (cdr_uuid, attempt_no) DO NOTHING")


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
class Attempt:
    """One agent offered a queue call: ``result`` one of :data:`ATTEMPT_RESULTS`,
    ``leg_uuid`` the agent's leg when the switch told us (answered calls)."""

    attempt_no: int
    extension: str
    start: float | None
    answer: float | None
    end: float | None
    result: str
    hangup_cause: str = ""
    leg_uuid: str = ""

    def row(self, cdr_uuid: str) -> dict[str, Any]:
        return {"cdr_uuid": cdr_uuid, "attempt_no": self.attempt_no,
                "extension": self.extension, "leg_uuid": self.leg_uuid,
                "start_stamp": _timestamp(self.start), "answer_stamp": _timestamp(self.answer),
                "end_stamp": _timestamp(self.end),
                "duration": seconds_between(self.start, self.end),
                "billsec": seconds_between(self.answer, self.end) if self.answer else 0,
                "result": self.result, "hangup_cause": self.hangup_cause}


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
    attempts: tuple[Attempt, ...] = field(default=())
    cti_ip: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Cdr:
        """The CDR :meth:`to_json` wrote; raises ValueError/TypeError/KeyError on anything
        else."""
        data = json.loads(text)
        data["no_answer_agents"] = tuple(data.get("no_answer_agents") or ())
        data["attempts"] = tuple(Attempt(**a) for a in data.get("attempts") or ())
        return cls(**data)

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
            "uuid": self.uuid, "cti_ip": self.cti_ip or cti_ip, "is_callout": self.is_callout,
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

# ---------------------------------------------------------------------- generic CDRs -------
Header = Callable[[str], str | None]


def _h(header: Header, name: str) -> str:
    return str(header(name) or "")


def _micro(header: Header, name: str) -> float | None:
    """A microsecond epoch header (``Caller-Channel-Answered-Time``, ``variable_end_uepoch``)
    as epoch seconds; None when absent or 0."""
    raw = _h(header, name)
    return int(raw) / 1e6 if raw.isdigit() and int(raw) else None


def _whole(header: Header, name: str) -> int | None:
    raw = _h(header, name)
    return int(raw) if raw.isdigit() else None


def wants_generic_cdr(header: Header) -> bool:
    """Whether this CHANNEL_HANGUP_COMPLETE ends a call the runtime writes the CDR of: an
    a-leg (no other channel originated it), not the b side of a loopback, not marked by an
    app that wrote its own (:data:`OWN_CDR_VAR`), not another node's agent relay leg."""
    if _h(header, "Event-Name") != "CHANNEL_HANGUP_COMPLETE" or not _h(header, "Unique-ID"):
        return False
    if _h(header, "variable_originator"):  # a leg another channel originated: part of its call
        return False
    if _h(header, "variable_other_loopback_leg_uuid") and \
            _h(header, "Call-Direction") == "inbound":  # loopback's b side: its a side's call
        return False
    if _h(header, f"variable_{OWN_CDR_VAR}"):
        return False
    return not _h(header, "Caller-Destination-Number").startswith(_RELAY_PREFIX)


@dataclass(frozen=True)
class Leg:
    """A leg a call originated (a bridge's b-leg), as its latest event showed it."""

    uuid: str
    destination: str
    start: float | None
    answer: float | None
    end: float | None
    hangup_cause: str = ""


def leg_from_event(header: Header) -> Leg:
    """The leg of any channel event (its ``Caller-Channel-*-Time`` headers)."""
    return Leg(uuid=_h(header, "Unique-ID"),
               destination=_h(header, "Caller-Destination-Number"),
               start=_micro(header, "Caller-Channel-Created-Time"),
               answer=_micro(header, "Caller-Channel-Answered-Time"),
               end=_micro(header, "Caller-Channel-Hangup-Time"),
               hangup_cause=_h(header, "variable_hangup_cause") or _h(header, "Hangup-Cause"))


def generic_cdr(header: Header, *, node: str, domain: str, legs: Sequence[Leg] = (),
                record_file: str = "") -> Cdr:
    """The CDR of a call no app recorded, from its a-leg's CHANNEL_HANGUP_COMPLETE and the
    legs it originated (in the order it called them). ``destination_number`` .. ``billsec``:
    the leg that answered (else the last one called); ``is_callout`` when the switch placed
    the a-leg itself (``originate``); ``record_file`` when the variable is not set."""
    a_end = _micro(header, "variable_end_uepoch") or _micro(header, "Caller-Channel-Hangup-Time")
    answered = next((leg for leg in legs if leg.answer), None)
    leg = answered or (legs[-1] if legs else None)
    if answered is not None:
        flag = FLAG_ANSWERED
    else:
        flag = FLAG_NOT_CONNECTED if legs else ""
    end = None
    if leg is not None:
        # a leg still up when the a-leg's hangup was reported ends with it (the bridge does)
        end = min(leg.end, a_end) if leg.end and a_end else (leg.end or a_end)
    return Cdr(
        uuid=_h(header, "Unique-ID"), is_callout=_h(header, "Call-Direction") == "outbound",
        a_caller_id_number=_h(header, "Caller-Caller-ID-Number"),
        a_destination_number=_h(header, "Caller-Destination-Number"),
        a_start=_micro(header, "variable_start_uepoch") or
        _micro(header, "Caller-Channel-Created-Time"),
        a_answer=_micro(header, "variable_answer_uepoch") or
        _micro(header, "Caller-Channel-Answered-Time"),
        a_end=a_end, a_duration=_whole(header, "variable_duration"),
        a_billsec=_whole(header, "variable_billsec"),
        a_sip_hangup_disposition=_h(header, "variable_sip_hangup_disposition"),
        a_record_file=_h(header, f"variable_{RECORD_FILE_VAR}") or record_file,
        destination_number=leg.destination if leg else "",
        start=leg.start if leg else None, answer=leg.answer if leg else None,
        end=end, flag=flag, domain=domain,
        hangup_cause=_h(header, "variable_hangup_cause") or _h(header, "Hangup-Cause"),
        node=node)


def write(ctx: Context, cdr: Cdr) -> bool:
    """INSERT the CDR and its attempts (one transaction; ON CONFLICT DO NOTHING). True when
    written, False when a CDR with this uuid was there already. Raises the PostgreSQL error
    (DatabaseUnavailableError when it cannot be reached)."""
    with transaction(ctx.pool) as cur:
        cur.execute(_INSERT, cdr.row(ctx.publisher.cti_ip))
        written = bool(cur.rowcount)
        for attempt in cdr.attempts:
            cur.execute(_INSERT_ATTEMPT, attempt.row(cdr.uuid))
        return written


def record(ctx: Context, cdr: Cdr) -> bool:
    """Publish the CDR message (once), then append the CDR to the domain's spool, from which a
    runtime writes it to PostgreSQL (:mod:`fsapps.cdrspool`). Never raises. Redis down: write
    to PostgreSQL directly; both down: the CDR's JSON is logged at ERR (nothing else keeps it).
    True when the CDR is kept (spooled or written), False when only the log line has it."""
    from fsapps import cdrspool

    cdr = cdr if cdr.cti_ip else replace(cdr, cti_ip=ctx.publisher.cti_ip)
    ctx.publisher.cdr(cdr.message_fields(), group=cdr.group_number or NO_GROUP_CHANNEL)
    try:
        cdrspool.append(ctx, cdr)
        return True
    except (FsappsError, redis.RedisError) as exc:
        spool_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    try:
        write(ctx, cdr)
        log("WARNING", f"cdr: call {cdr.uuid} written to PostgreSQL directly (spool: "
                       f"{spool_error})")
        return True
    except (FsappsError, psycopg2.Error) as exc:
        log("ERR", f"cdr: call {cdr.uuid} ({cdr.a_caller_id_number} -> "
                   f"{cdr.destination_number or cdr.a_destination_number}) not kept: spool "
                   f"{spool_error}; PostgreSQL {type(exc).__name__}: "
                   f"{' '.join(str(exc).split())}; CDR {cdr.to_json()}")
        return False


def record_own(ctx: Context, session: Any, cdr: Cdr, app: str) -> bool:
    """:func:`record` for an app that writes its call's CDR itself: first marks the channel
    (``OWN_CDR_VAR=<app>``) so the runtime writes no generic CDR for it. Call it once, at the
    end of the handler: the mark and the CDR go together (the channel's CHANNEL_HANGUP_COMPLETE
    comes after the handler returns, so it carries the mark). Never raises."""
    try:
        session.setVariable(OWN_CDR_VAR, app)
    except Exception as exc:  # a session gone wrong still gets its CDR (maybe two rows)
        log("WARNING", f"cdr: call {cdr.uuid}: could not mark the channel "
                       f"({type(exc).__name__}: {exc}); the runtime may add a generic CDR")
    return record(ctx, cdr)


def bridge_times(session: Any, started: float, answered: bool,
                 answered_before: bool) -> tuple[float, float | None, float, float | None]:
    """(start, answer, end) of this channel, and when the party it bridged to answered (None
    when ``answered`` is false). The bridge answers the channel when the far party answers;
    a channel the dialplan had answered already (``answered_before``) has the bridge time as
    the closest the switch reports. ``started``: the start when the switch has none."""
    start = channel_epoch(session, "start") or started
    answer = channel_epoch(session, "answer")
    end = channel_epoch(session, "end") or time.time()
    far_answer = None
    if answered:
        far_answer = (channel_epoch(session, "bridge") or answer) if answered_before else answer
    return start, answer, end, far_answer


def channel_epoch(session: Any, name: str) -> float | None:
    """``<name>_uepoch`` (else ``<name>_epoch``) of the channel in epoch seconds; None when unset
    or zero (FreeSWITCH sets them when the channel hangs up)."""
    micro = session.getVariable(f"{name}_uepoch") or ""
    if micro.isdigit() and int(micro):
        return int(micro) / 1e6
    whole = session.getVariable(f"{name}_epoch") or ""
    return float(whole) if whole.isdigit() and int(whole) else None

