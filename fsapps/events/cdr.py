"""Call detail records: one :class:`Cdr` per call, written to PostgreSQL (table ``cdr``) and
published as the seed-001 ``cdr`` message (``cdr_callout`` for outbound calls, ``cdr_<group>``
for inbound ones; see :mod:`fsapps.events.pubsub`).

A CDR is recorded after the call is over, by the handler that ran it, so nothing here can delay
or break the call itself. :func:`fsapps.events.cdrspool.record` never raises: it publishes the
message once, then appends the CDR to the durable spool (the Redis stream ``p:{d}:cdr:spool``,
:mod:`fsapps.events.cdrspool`), from which each node's runtime writes it to PostgreSQL
(:func:`write`). Redis down: the CDR is written to PostgreSQL directly; both down: the CDR's
JSON is logged at ERR (the last resort). Writing is idempotent (``ON CONFLICT DO NOTHING`` on
``cdr.uuid`` and on ``cdr_agent_attempt (cdr_uuid, attempt_no)``), so a replayed spool entry
writes once.

Every call gets exactly one CDR, and every CDR is recorded by the runtime of the node holding
the caller's channel when that channel's CHANNEL_HANGUP_COMPLETE arrives
(:mod:`fsapps.events.cdrcalls`): only then does FreeSWITCH know the a-leg's ``answer_uepoch``,
``duration``, ``billsec``, ``hangup_cause`` and ``sip_hangup_disposition`` — it sets them in
the channel's hangup state, after the dialplan (a Python handler included) has returned, so a
handler reads None for them even after ``session.hangup()``.

The apps that know the call best (queue calls :mod:`fsapps.switch.acd`, ``nwaycallout`` and
``nway_bridge`` :mod:`fsapps.switch.outbound`) leave a :class:`Draft` of their CDR on the
caller's channel (:func:`fsapps.events.cdrspool.record_own`: the channel variable
:data:`DRAFT_VAR`, plus :data:`OWN_CDR_VAR`) with what only they know — the agents offered the
call, the flag, the group — and the runtime completes it from the HANGUP_COMPLETE and the legs
it followed (:func:`complete`). A caller transferred after the app (``nwayacd_transfer``, a CTI
transfer) stays in that one CDR: the a-leg fields cover the whole call, and every party it
reached after the transfer is an attempt row with ``transferred`` set (a second app on the same
channel adds its draft to the first's). Every other call (a plain dialplan bridge, cti_bridge,
an IVR, a refused call...) gets a generic CDR from the a-leg's CHANNEL_HANGUP_COMPLETE and the
events of the legs it originated (:func:`wants_generic_cdr`, :func:`leg_from_event`,
:func:`generic_cdr`). All of these are pure, no I/O.

A queue call (:mod:`fsapps.switch.acd`) carries one :class:`Attempt` per agent offered the call;
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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from fsapps.channelvars import (
    DRAFT_VAR,
    LEG_VAR,
    OWN_CDR_VAR,
    RECORD_FILE_VAR,
    RELAY_PREFIX,
    event_header,
)
from fsapps.context import Context
from fsapps.db.connection import transaction
from fsapps.events.pubsub import stamp

__all__ = ["DRAFT_VAR", "LEG_VAR", "OWN_CDR_VAR", "QUEUE_FLAGS", "RECORD_FILE_VAR", "Attempt",
           "Cdr", "Draft", "Leg", "attempt_result", "complete", "drafts_from_json",
           "drafts_to_json", "generic_cdr", "leg_from_bridge", "leg_from_event",
           "seconds_between", "wants_generic_cdr", "write"]

# cdr_<group> of the CDRs of inbound calls that are in no group (generic, nway_bridge):
# cdr_direct. Groups are numbered (seed 001: 座席组短号), so, like cdr_callout, it is no
# group's channel.
NO_GROUP_CHANNEL = "direct"

# The flag of a queue call (seed 001 writes them in Chinese):
FLAG_ANSWERED = "接通"                 # an agent answered
FLAG_ONE_NO_ANSWER = "单座席无应答"     # one agent was offered the call, did not take it
FLAG_MANY_NO_ANSWER = "多座席无应答"    # several agents were offered it, none took it
FLAG_ABANDONED = "排队放弃"             # the caller hung up before any agent was offered it
FLAG_QUEUE_TIMEOUT = "排队超时"         # the long-wait policy hung up (group busy_ring)
FLAG_BLACKLISTED = "黑名单"             # the group's blacklist refused the caller
FLAG_NOT_CONNECTED = "未接通"           # generic CDR: the legs it called did not answer
# Callbacks instead of waiting (fsapps.domain.callbacks): the caller's own call, and the
# callback's CDR (its own row; one cdr_agent_attempt per time the caller was called back,
# ``extension`` the agent who called, ``result`` the caller's answer)
FLAG_CALLBACK_REQUESTED = "排队回呼"   # the caller left the queue for a callback
FLAG_CALLED_BACK = "回呼接通"          # the callback: the caller answered, put through
FLAG_CALLBACK_FAILED = "回呼失败"      # the callback: dropped after its max attempts
QUEUE_FLAGS = (FLAG_ANSWERED, FLAG_ONE_NO_ANSWER, FLAG_MANY_NO_ANSWER, FLAG_ABANDONED,
               FLAG_QUEUE_TIMEOUT, FLAG_BLACKLISTED, FLAG_CALLBACK_REQUESTED, FLAG_CALLED_BACK,
               FLAG_CALLBACK_FAILED)
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
# originate_disposition / hangup cause → cdr_agent_attempt.result (anything else: "failed")
_ATTEMPT_RESULTS = {"SUCCESS": "answered", "NO_ANSWER": "no_answer",
                    "NO_USER_RESPONSE": "no_answer", "ALLOTTED_TIMEOUT": "no_answer",
                    "PROGRESS_TIMEOUT": "no_answer", "USER_BUSY": "busy",
                    "CALL_REJECTED": "rejected", "USER_NOT_REGISTERED": "unregistered",
                    "SUBSCRIBER_ABSENT": "unregistered", "ORIGINATOR_CANCEL": "caller_cancel"}
_ATTEMPT_COLUMNS = ("cdr_uuid", "attempt_no", "extension", "leg_uuid", "start_stamp",
                    "answer_stamp", "end_stamp", "duration", "billsec", "result", "hangup_cause",
                    "transferred")
_INSERT_ATTEMPT = (f"INSERT INTO cdr_agent_attempt ({', '.join(_ATTEMPT_COLUMNS)}) "
                   f"VALUES ({', '.join(f'%({c})s' for c in _ATTEMPT_COLUMNS)}) "
                   "ON CONFLICT (cdr_uuid, attempt_no) DO NOTHING")


def attempt_result(disposition: str) -> str:
    """The ``cdr_agent_attempt.result`` of a bridge's ``originate_disposition`` (or a leg's
    hangup cause)."""
    return _ATTEMPT_RESULTS.get(disposition, "failed")


def attempt_cause(session: Any, disposition: str) -> str:
    """The ``cdr_agent_attempt.hangup_cause`` of the party a ``bridge`` rang, read on the
    caller's channel once the bridge returned with ``disposition``. Answered: the party leg's
    own cause, ``bridge_hangup_cause``, whoever ended the bridge ("" while the party is still
    up: a transfer took the caller away). Not ``last_bridge_hangup_cause``: FreeSWITCH sets
    that on the channel whose partner hangs up, so a caller that ended the bridge has none
    (or one left by an earlier failed attempt). Not answered: ``last_bridge_hangup_cause``,
    the leg's cause (e.g. USER_BUSY), else the disposition."""
    if disposition == "SUCCESS":
        return session.getVariable("bridge_hangup_cause") or ""
    return session.getVariable("last_bridge_hangup_cause") or disposition


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the keys ``cls`` does not know (written by a newer fsapps)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


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
    ``leg_uuid`` the agent's leg when the switch told us (answered calls). ``transferred``: a
    party the caller reached after its call was transferred (by the dialplan it was sent to, or
    by a later app on the same channel), not one the app that took the call offered it to."""

    attempt_no: int
    extension: str
    start: float | None
    answer: float | None
    end: float | None
    result: str
    hangup_cause: str = ""
    leg_uuid: str = ""
    transferred: bool = False

    def row(self, cdr_uuid: str) -> dict[str, Any]:
        return {"cdr_uuid": cdr_uuid, "attempt_no": self.attempt_no,
                "extension": self.extension, "leg_uuid": self.leg_uuid,
                "start_stamp": _timestamp(self.start), "answer_stamp": _timestamp(self.answer),
                "end_stamp": _timestamp(self.end),
                "duration": seconds_between(self.start, self.end),
                "billsec": seconds_between(self.answer, self.end) if self.answer else 0,
                "result": self.result, "hangup_cause": self.hangup_cause,
                "transferred": self.transferred}


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
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cdr:
        data = _known(cls, data)
        data["no_answer_agents"] = tuple(data.get("no_answer_agents") or ())
        data["attempts"] = tuple(Attempt(**_known(Attempt, a))
                                 for a in data.get("attempts") or ())
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
    if _h(header, event_header(OWN_CDR_VAR)):
        return False
    return not _h(header, "Caller-Destination-Number").startswith(RELAY_PREFIX)


@dataclass(frozen=True)
class Leg:
    """A leg a call originated (a bridge's b-leg), as its latest event showed it; or a channel
    the call was bridged to without originating it (``uuid_bridge``: a consultation's party
    after a transfer). ``own``: rung by an fsapps app for its CDR (:data:`LEG_VAR`)."""

    uuid: str
    destination: str
    start: float | None
    answer: float | None
    end: float | None
    hangup_cause: str = ""
    own: bool = False


def leg_from_event(header: Header) -> Leg:
    """The leg of any channel event (its ``Caller-Channel-*-Time`` headers)."""
    return Leg(uuid=_h(header, "Unique-ID"),
               destination=_h(header, "Caller-Destination-Number"),
               start=_micro(header, "Caller-Channel-Created-Time"),
               answer=_micro(header, "Caller-Channel-Answered-Time"),
               end=_micro(header, "Caller-Channel-Hangup-Time"),
               hangup_cause=_h(header, "variable_hangup_cause") or _h(header, "Hangup-Cause"),
               own=bool(_h(header, event_header(LEG_VAR))))


def leg_from_bridge(header: Header, prefix: str = "Other-Leg") -> Leg:
    """The party of a CHANNEL_BRIDGE (its ``Other-Leg-*`` headers; ``prefix="Caller"`` for
    the channel that fired it). Its end is not known yet."""
    uuid = _h(header, f"{prefix}-Unique-ID") or (
        _h(header, "Bridge-B-Unique-ID") if prefix == "Other-Leg" else _h(header, "Unique-ID"))
    return Leg(uuid=uuid, destination=_h(header, f"{prefix}-Destination-Number"),
               start=_micro(header, f"{prefix}-Channel-Created-Time"),
               answer=_micro(header, f"{prefix}-Channel-Answered-Time"), end=None)


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
        a_record_file=_h(header, event_header(RECORD_FILE_VAR)) or record_file,
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


@dataclass(frozen=True)
class Draft:
    """What an app knew of its call when its handler finished: its CDR as far as it could
    tell (``cdr``: the flag, the group, the agents offered, their rings), ``started`` when it
    took the call, and the leg of the party that answered (``party_leg``, when the switch said:
    ``last_bridge_to``, the agent's leg). The a-leg's answer / end / durations / cause in it
    are only the handler's own clock: :func:`complete` replaces them with the switch's."""

    app: str
    cdr: Cdr
    started: float
    party_answered: bool = False
    party_leg: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Draft:
        data = _known(cls, data)
        data["cdr"] = Cdr.from_dict(data["cdr"])
        return cls(**data)


def drafts_to_json(drafts: Sequence[Draft]) -> str:
    # ASCII only: the text travels as a channel variable and an event header
    return json.dumps([d.to_dict() for d in drafts], ensure_ascii=True, separators=(",", ":"))


def drafts_from_json(text: str) -> list[Draft]:
    """The drafts :data:`DRAFT_VAR` holds; raises ValueError/TypeError/KeyError on anything
    else."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise TypeError(f"expected a list of drafts, got {type(data).__name__}")
    return [Draft.from_dict(d) for d in data]


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t]
    return min(known) if known else None


def complete(drafts: Sequence[Draft], header: Header, legs: Sequence[Leg] = (),
             record_file: str = "") -> Cdr:
    """The CDR of a call whose apps left ``drafts`` (first the one that took the call), from
    the caller's CHANNEL_HANGUP_COMPLETE and the legs the runtime followed (in call order).

    - ``a_*``: the switch's start / answer / end, ``duration``, ``billsec``,
      ``sip_hangup_disposition``, and ``hangup_cause``; the draft's own guesses only where
      the event has none.
    - The party (``destination_number`` ..): the first draft's; its answer is the answer of
      its leg as the switch reported it (else the draft's, else the caller's own answer: the
      bridge answers the caller when the party does); it ends no later than the caller.
    - After the first draft: the later drafts' attempts and every party the caller reached
      that no app rang (the transfer's) become attempts with ``transferred`` set, in the order
      they began; a later draft's answered party becomes the call's party when the first
      draft's did not answer (a waiting caller transferred to another queue)."""
    first = drafts[0]
    base = first.cdr
    switch_end = _micro(header, "variable_end_uepoch") or \
        _micro(header, "Caller-Channel-Hangup-Time")
    if switch_end:
        a_start = _micro(header, "variable_start_uepoch") or \
            _micro(header, "Caller-Channel-Created-Time") or base.a_start
        a_answer = _micro(header, "variable_answer_uepoch") or \
            _micro(header, "Caller-Channel-Answered-Time")
        a_end: float | None = switch_end
    else:  # not a HANGUP_COMPLETE of the switch: the handler's clock is all there is
        a_start, a_answer, a_end = base.a_start, base.a_answer, base.a_end
    own = {leg.uuid: leg for leg in legs if leg.own}

    def clip(end: float | None) -> float | None:
        return _earliest(end, a_end) if end else end

    def party_answer(draft: Draft) -> float | None:
        if not draft.party_answered:
            return None
        leg = own.get(draft.party_leg)
        answered = [x for x in own.values() if x.answer and (x.start or 0) >= draft.started]
        return (leg.answer if leg else None) or draft.cdr.answer or \
            (answered[-1].answer if answered else None) or a_answer

    def attempts_of(draft: Draft, transferred: bool) -> list[Attempt]:
        done = []
        for attempt in draft.cdr.attempts:
            leg = own.get(attempt.leg_uuid) if attempt.leg_uuid else None
            answer = attempt.answer
            if attempt.result == "answered":
                answer = (leg.answer if leg else None) or answer or party_answer(draft)
            done.append(replace(attempt, answer=answer, end=clip(attempt.end) or a_end,
                                transferred=transferred or attempt.transferred))
        return done

    party = base
    answer = party_answer(first)
    end = _earliest(base.end, own[first.party_leg].end if first.party_leg in own else None,
                    a_end) if base.end or first.party_answered else None
    attempts = attempts_of(first, False)
    later: list[Attempt] = []
    missed = list(base.no_answer_agents)
    flag = base.flag
    for draft in drafts[1:]:
        later += attempts_of(draft, True)
        missed += [ext for ext in draft.cdr.no_answer_agents if ext not in missed]
        if not first.party_answered and draft.party_answered and party is base:
            party, answer, flag = draft.cdr, party_answer(draft), draft.cdr.flag
            end = _earliest(draft.cdr.end, a_end)
    for leg in legs:  # the parties the transfer reached
        if leg.own or (leg.start is not None and leg.start < first.started):
            continue
        later.append(Attempt(
            attempt_no=0, extension=leg.destination, start=leg.start or a_end,
            answer=leg.answer, end=clip(leg.end) or a_end,
            result="answered" if leg.answer else attempt_result(leg.hangup_cause),
            hangup_cause=leg.hangup_cause, leg_uuid=leg.uuid, transferred=True))
    later.sort(key=lambda a: a.start or 0)
    numbered = tuple(replace(a, attempt_no=n) for n, a in enumerate([*attempts, *later], 1))
    return replace(
        base, a_start=a_start, a_answer=a_answer, a_end=a_end,
        a_duration=_whole(header, "variable_duration") if switch_end else base.a_duration,
        a_billsec=_whole(header, "variable_billsec") if switch_end else base.a_billsec,
        a_sip_hangup_disposition=_h(header, "variable_sip_hangup_disposition") or
        base.a_sip_hangup_disposition,
        a_record_file=_h(header, event_header(RECORD_FILE_VAR)) or base.a_record_file or
        record_file,
        no_answer_agents=tuple(missed), destination_number=party.destination_number,
        start=party.start, answer=answer, end=clip(end) if end else end, flag=flag,
        hangup_cause=_h(header, "variable_hangup_cause") or _h(header, "Hangup-Cause") or
        base.hangup_cause, attempts=numbered)
