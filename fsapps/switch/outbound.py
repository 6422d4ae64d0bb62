"""Outbound and direct calls that keep the agent's call state: ``python fsapps.nwaycallout
<number> <gateway> <group>`` (an agent calls out through a gateway on behalf of a group, seed
001 ``nwaycallout 18621575908 gw1 110``) and ``python fsapps.nway_bridge <extension>`` (a direct,
non-queue call to an agent's extension). The entry modules only call :func:`callout` and
:func:`direct_call`.

Both move the agent through the same states as a queue call, with the same machinery:

- the agent is reserved ``ring`` in one compare-and-set step (agent_transition.lua), from
  ``ready``, ``typing``, ``busy``, ``rest`` or ``no_ready`` only — never from ``ring``,
  ``talking`` or ``ivr``, so neither call steals an agent a queue call is ringing or one on a
  call. The reservation is a lease like a queue offer's (ring timeout + lease margin) and
  names this node, so the reconciler frees it if this node dies;
- the ringing leg carries the queue offer's leg variables (``fsapps_acd_agent``,
  ``fsapps_acd_call`` = the caller's uuid, ``fsapps_acd_group``, ``fsapps_domain``, ...), so
  the node's runtime makes the agent ``talking`` on that leg's CHANNEL_ANSWER and publishes the
  agent-facing ``answered``;
- after an answered call the agent is ``typing`` for the wrap-up (the group's
  ``wrapup_seconds``; ``group_defaults.wrapup_seconds`` for a direct call), then ``ready``, and
  is offered waiting queue calls at once when ready. The seat status (idle/busy) is never
  touched: an agent who set itself busy and calls out stays out of the queues.

Agent-facing events (``event_agent``): ``callout`` when the ringing starts, ``answered`` (from
the runtime), ``hangup`` when an answered call ends; an unanswered direct call gives
``noanswer``, an unanswered outbound call ``hangup``. An extension without an agent hash, or an
agent already on another call when it dials out, gets its call untracked: no state change, no
agent-facing event. The switch's own events give EVENT_CALLIN / EVENT_CALLOUT (the gateway
leg, with its gateway name) and the rest of the EVENT_* family, as for every call.

Every number, gateway and extension is checked by :mod:`fsapps.domain.numbers` before it reaches a
dial string; a bad one (or missing arguments) hangs up with INVALID_NUMBER_FORMAT and a log
line naming it (and the usage).
"""

from __future__ import annotations

import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from fsapps.channelvars import (
    ACD_AGENT_VAR,
    ACD_ARRIVED_VAR,
    ACD_CALL_VAR,
    ACD_GROUP_VAR,
    ACD_LEVEL_VAR,
    ACD_NUMBER_VAR,
    CALLER_ID_VAR,
    DOMAIN_VAR,
    LEG_VAR,
    RECORD_FILE_VAR,
    RING_TIMEOUT_HEADER,
    RING_TIMEOUT_VAR,
)
from fsapps.context import Context, get_context, now_ms
from fsapps.domain.agents import Agents
from fsapps.domain.groups import Groups
from fsapps.domain.numbers import valid_extension, valid_gateway, valid_number
from fsapps.events import cdr, cdrspool
from fsapps.events.pubsub import stamp
from fsapps.fslog import log
from fsapps.switch import acd
from fsapps.switch.session import hang_up, is_up

CALLOUT_USAGE = "nwaycallout <number> <gateway> <group>"
BRIDGE_USAGE = "nway_bridge <extension>"
CALLOUT_RING_SECONDS = 60
MAX_RING_SECONDS = 600
# CDR flag of an outbound call, by originate disposition (seed 001 writes flags in Chinese).
CALLOUT_FLAGS = {"SUCCESS": "外呼接通", "USER_BUSY": "外呼对方忙", "NO_ANSWER": "外呼无应答",
                 "NO_USER_RESPONSE": "外呼无应答", "ORIGINATOR_CANCEL": "外呼取消"}
CALLOUT_FAILED_FLAG = "外呼失败"
_UNREGISTERED = ("USER_NOT_REGISTERED", "SUBSCRIBER_ABSENT")


def refuse(session: Any, app: str, why: str, usage: str) -> None:
    """Bad input: a log line naming it and the usage, then INVALID_NUMBER_FORMAT."""
    log("ERR", f"{app}: {why}; usage: {usage}")
    hang_up(session, "INVALID_NUMBER_FORMAT")


def _domain(ctx: Context, session: Any) -> str:
    domain = session.getVariable("domain_name") or ctx.settings.default_domain
    return domain if valid_extension(domain) else ctx.settings.default_domain


def ring_seconds(session: Any, default: int, app: str) -> int:
    """``fsapps_ring_timeout`` from the channel (1..600 s), else ``default``."""
    raw = session.getVariable(RING_TIMEOUT_VAR)
    if not raw:
        return default
    if raw.isdigit() and 1 <= int(raw) <= MAX_RING_SECONDS:
        return int(raw)
    log("WARNING", f"{app}: ignoring {RING_TIMEOUT_VAR}={raw!r} (1..{MAX_RING_SECONDS} "
                   f"seconds); ringing {default} s")
    return default


@dataclass
class AgentCall:
    """The agent's side of one outbound or direct call; ``tracked`` once reserved."""

    ctx: Context
    domain: str
    extension: str
    uuid: str             # the calling channel: the reservation's call
    node: str
    group: str
    number: str           # the far party, as agent events name it
    arrived_ms: int = field(default_factory=now_ms)
    tracked: bool = False
    done: bool = False

    @property
    def agents(self) -> Agents:
        return Agents(self.ctx, self.domain)

    def reserve(self, ring: int, agent_leg: str) -> bool:
        """Reserve the agent ``ring`` for this call (atomic), on its channel ``agent_leg``
        (what the reconciler asks the switch about). False when it has no agent hash or is on
        (or ringing for) another call."""
        lease_until = now_ms() + acd.lease_ms(self.ctx, ring)
        self.tracked = self.agents.reserve_direct(self.extension, self.uuid, self.node,
                                                  lease_until, agent_leg)
        return self.tracked

    def event(self, method: str) -> None:
        if self.tracked:
            self.ctx.publisher.agent_call_event(
                method, uuid=self.uuid, number=self.number, group=self.group,
                extension=self.extension, level="normal",
                callin_time=stamp(self.arrived_ms / 1000))

    def leg_variables(self) -> list[str]:
        """The queue offer's leg variables (the runtime turns the leg's answer into talking)."""
        if not self.tracked:
            return []
        return [f"{ACD_AGENT_VAR}={self.extension}", f"{ACD_CALL_VAR}={self.uuid}",
                f"{ACD_GROUP_VAR}={self.group}", f"{DOMAIN_VAR}={self.domain}",
                f"{ACD_LEVEL_VAR}=normal", f"{ACD_ARRIVED_VAR}={self.arrived_ms}",
                f"{ACD_NUMBER_VAR}={self.number}"]

    def answered_call_over(self, wrapup_seconds: int) -> None:
        """The answered call ended: ``hangup`` event, wrap-up (or ready at once)."""
        if not self.tracked or self.done:
            return
        self.done = True
        self.event("hangup")
        if self.agents.start_wrapup(self.extension, self.uuid, wrapup_seconds):
            acd.agent_available(self.ctx, self.domain, self.extension)

    def cancel(self) -> None:
        """The call ended before anyone answered, for a reason that is not the agent's:
        ready again (nothing changes if the reservation is no longer ours)."""
        if not self.tracked or self.done:
            return
        self.done = True
        if self.agents.release(self.extension, self.uuid, "cancel") is not None:
            acd.agent_available(self.ctx, self.domain, self.extension)

    def missed(self, disposition: str, max_no_answer: int) -> None:
        """The agent did not take a direct call: handled as a missed queue offer (no_answer,
        then ready — or busy after ``max_no_answer`` misses in a row)."""
        if not self.tracked or self.done:
            return
        self.done = True
        self.event("noanswer")
        outcome = "unregistered" if disposition in _UNREGISTERED else "missed"
        # One script: no_answer, then ready or busy (max_no_answer misses in a row).
        released = self.agents.release(self.extension, self.uuid, outcome,
                                       max_no_answer=max_no_answer)
        if released is not None and released.state == "ready":
            acd.agent_available(self.ctx, self.domain, self.extension)


def _failure_cause(disposition: str) -> str:
    """The cause to hang the caller up with after a failed bridge: the far end's."""
    return disposition if disposition not in ("", "NONE") else "NORMAL_TEMPORARY_FAILURE"


def _bridge(session: Any, dialstring: str) -> tuple[str, bool]:
    """Bridge and report (originate_disposition, caller still up). The caller is never hung
    up by the bridge itself (continue_on_fail, no hangup_after_bridge): we decide."""
    session.setVariable("continue_on_fail", "true")
    session.setVariable("hangup_after_bridge", "false")
    session.execute("bridge", dialstring)
    return session.getVariable("originate_disposition") or "NONE", is_up(session)


# ---------------------------------------------------------------------- nwaycallout ---------
def callout(session: Any, args: str) -> None:
    """``nwaycallout <number> <gateway> <group>``: the agent whose phone placed this channel
    (its authenticated ``user_name``, else ``sip_from_user``, else the caller id) calls
    ``number`` through ``sofia/gateway/<gateway>/``. The caller id is the group's number, or
    the channel variable ``fsapps_callout_caller_id`` when it holds a valid number. The far end
    rings ``fsapps_ring_timeout`` seconds (default 60). Afterwards the agent's channel is hung
    up (with the failure cause when the far end did not answer: USER_BUSY, NO_ANSWER, ...) and
    the CDR (is_callout) is published on ``cdr_callout`` and written to PostgreSQL."""
    ctx = get_context()
    handler_started = time.time()
    parts = (args or "").split()
    if len(parts) != 3:
        refuse(session, "nwaycallout", f"expected 3 arguments, got {args!r}", CALLOUT_USAGE)
        return
    number, gateway, group_number = parts
    for what, value, ok in (("number", number, valid_number(number)),
                            ("gateway", gateway, valid_gateway(gateway)),
                            ("group", group_number, valid_extension(group_number))):
        if not ok:
            refuse(session, "nwaycallout", f"invalid {what} {value!r}", CALLOUT_USAGE)
            return
    domain = _domain(ctx, session)
    raw_ext = session.getVariable("user_name") or session.getVariable("sip_from_user") or \
        session.getVariable("caller_id_number") or ""
    if not valid_extension(raw_ext):
        refuse(session, "nwaycallout", f"invalid calling extension {raw_ext!r}", CALLOUT_USAGE)
        return
    group = Groups(ctx, domain).get(group_number)
    if group is None:
        log("ERR", f"nwaycallout: unknown group {group_number!r} in domain {domain!r}")
        session.hangup("UNALLOCATED_NUMBER")
        return
    caller_id = group_number
    wanted_id = session.getVariable(CALLER_ID_VAR)
    if wanted_id:
        if valid_number(wanted_id):
            caller_id = wanted_id
        else:
            log("WARNING", f"nwaycallout: ignoring {CALLER_ID_VAR}={wanted_id!r} (not a "
                           f"number); caller id {group_number}")
    ring = ring_seconds(session, CALLOUT_RING_SECONDS, "nwaycallout")
    uuid = session.get_uuid()
    dialled = session.getVariable("destination_number") or number  # (a transfer changes it)
    agent = AgentCall(ctx, domain, raw_ext, uuid, acd.node_name(ctx), group_number, number)
    # (no leg of the agent's to name: its own channel places the call; the far end's leg,
    # once it answers, is the runtime's to record)
    if not agent.reserve(ring, ""):
        log("INFO", f"nwaycallout: {raw_ext} calls {number} untracked (no agent, or the agent "
                    f"is on another call)")
    answered_before = session.answered()
    try:
        agent.event("callout")
        variables = [f"originate_timeout={ring}", f"origination_caller_id_number={caller_id}",
                     f"{DOMAIN_VAR}={domain}", f"{LEG_VAR}=nwaycallout",
                     *agent.leg_variables()]
        dial_started = time.time()
        disposition, still_up = _bridge(
            session, f"{{{','.join(variables)}}}sofia/gateway/{gateway}/{number}")
        answered = disposition == "SUCCESS"
        cause = (session.getVariable("last_bridge_hangup_cause") or "NORMAL_CLEARING") \
            if answered else _failure_cause(disposition)
        if still_up:
            session.hangup("NORMAL_CLEARING" if answered else cause)
        if answered:
            agent.answered_call_over(group.wrapup(ctx.settings.group_defaults))
        else:
            log("INFO", f"nwaycallout: {raw_ext} -> {number} via {gateway}: {disposition}")
            agent.event("hangup")
            agent.cancel()
    finally:
        agent.cancel()  # an exception on the way: never leave the agent reserved
    # The draft of the CDR: the agent's channel as this handler saw it (FreeSWITCH sets its
    # answer_uepoch, billsec, hangup_cause and sip_hangup_disposition only in the hangup
    # state, after this returns; the runtime completes the draft with them), the far end rung
    # from dial_started, its answer the gateway leg's (known to the runtime).
    a_end = time.time()
    guessed_disposition = (("send_bye" if still_up else "recv_bye") if answered_before or
                           answered else ("send_refuse" if still_up else "recv_cancel"))
    cdrspool.record_own(ctx, session, cdr.Cdr(
        uuid=uuid, is_callout=True, a_caller_id_number=raw_ext,
        a_destination_number=dialled, a_start=handler_started,
        a_answer=handler_started if answered_before else None,
        a_end=a_end, a_sip_hangup_disposition=guessed_disposition,
        a_record_file=session.getVariable(RECORD_FILE_VAR) or "",
        destination_number=number, start=dial_started, end=a_end,
        flag=CALLOUT_FLAGS.get(disposition, f"{CALLOUT_FAILED_FLAG}:{disposition}"),
        group_number=group_number, domain=domain, hangup_cause=cause, node=agent.node),
        "nwaycallout", started=handler_started, party_answered=answered,
        party_leg=(session.getVariable("last_bridge_to") or "") if answered else "")


# ---------------------------------------------------------------------- nway_bridge ---------
def direct_call(session: Any, args: str) -> None:
    """``nway_bridge <extension>``: ring the agent's phone directly (not through a queue). An
    agent on a call, or ringing for a queue call, is busy: the caller is hung up with
    USER_BUSY and the agent is not disturbed. Otherwise it rings ``fsapps_ring_timeout``
    seconds (default ``group_defaults.callout_timeout``); not answered, busy or rejected counts
    as a missed offer (``noanswer``; busy after ``max_no_answer`` in a row) and the caller is
    hung up with that cause; answered: talking, then wrap-up. An extension that is not an
    agent is simply bridged. Every call that got this far has a CDR (:func:`direct_cdr`),
    published on ``cdr_direct``."""
    ctx = get_context()
    handler_started = time.time()
    parts = (args or "").split()
    if len(parts) != 1:
        refuse(session, "nway_bridge", f"expected 1 argument, got {args!r}", BRIDGE_USAGE)
        return
    extension = parts[0]
    if not valid_extension(extension):
        refuse(session, "nway_bridge", f"invalid extension {extension!r}", BRIDGE_USAGE)
        return
    domain = _domain(ctx, session)
    defaults = ctx.settings.group_defaults
    caller = acd.safe_part(session.getVariable("caller_id_number") or "")
    ring = ring_seconds(session, defaults.callout_timeout, "nway_bridge")
    node = acd.node_name(ctx)
    dialled = session.getVariable("destination_number") or extension  # (a transfer changes it)
    agent = AgentCall(ctx, domain, extension, session.get_uuid(), node, "", caller)
    disposition, dial_started, answered_before = "NONE", None, session.answered()
    leg = str(uuidlib.uuid4())  # the agent's leg, named before it exists (origination_uuid)
    try:
        if not agent.reserve(ring, leg) and Agents(ctx, domain).get(extension) is not None:
            # A lost race with a queue offer, or the agent is on a call: busy, as a phone is.
            log("INFO", f"nway_bridge: agent {extension} is busy; caller {caller} gets "
                        f"USER_BUSY")
            disposition = "USER_BUSY"
            session.hangup("USER_BUSY")
            return
        agent.event("callout")
        variables = [f"originate_timeout={ring}", f"{RING_TIMEOUT_HEADER}={ring}",
                     f"origination_caller_id_number={caller}", f"{DOMAIN_VAR}={domain}",
                     f"{LEG_VAR}=nway_bridge", f"origination_uuid={leg}",
                     *agent.leg_variables()]
        endpoint = acd.agent_endpoint(ctx, domain, extension, node)
        dial_started = time.time()
        disposition, still_up = _bridge(session, f"{{{','.join(variables)}}}{endpoint}")
        if disposition == "SUCCESS":
            agent.answered_call_over(defaults.wrapup_seconds)
            hang_up(session, "NORMAL_CLEARING")
        elif disposition == "ORIGINATOR_CANCEL" or not still_up:
            agent.cancel()
        else:
            log("INFO", f"nway_bridge: {extension} did not take the call from {caller} "
                        f"({disposition})")
            agent.missed(disposition, defaults.max_no_answer)
            session.hangup(_failure_cause(disposition))
    finally:
        agent.cancel()
        # an exception on the way: end the call before its CDR
        hang_up(session, "NORMAL_CLEARING")
        record = direct_cdr(session, extension=extension, caller=caller, domain=domain,
                            node=node, disposition=disposition, dial_started=dial_started,
                            answered_before=answered_before, handler_started=handler_started,
                            dialled=dialled)
        cdrspool.record_own(ctx, session, record, "nway_bridge", started=handler_started,
                       party_answered=disposition == "SUCCESS",
                       party_leg=record.attempts[0].leg_uuid)


def direct_cdr(session: Any, *, extension: str, caller: str, domain: str, node: str,
               disposition: str, dial_started: float | None, answered_before: bool,
               handler_started: float, dialled: str = "") -> cdr.Cdr:
    """The CDR draft of an ``nway_bridge`` call (the caller's channel hung up, or
    transferred away, by now): ``a_*`` the caller, ``destination_number`` .. ``billsec`` the
    agent (rung from ``dial_started``), one attempt row; flag ``接通`` when the agent
    answered, else ``单座席无应答`` with the agent in ``str_no_answer_agents`` (busy, not
    answered, or the caller hung up first, as the seed's one-agent example). The caller's
    times are this handler's clock and the agent's answer is left to the runtime, which
    completes the draft from the switch's hangup fields and the agent leg's answer
    (:func:`fsapps.events.cdr.complete`)."""
    answered = disposition == "SUCCESS"
    a_end = time.time()
    cause = cdr.attempt_cause(session, disposition) if dial_started else disposition
    attempt = cdr.Attempt(
        attempt_no=1, extension=extension, start=dial_started or a_end, answer=None,
        end=a_end, result=acd.attempt_result(disposition), hangup_cause=cause,
        leg_uuid=(session.getVariable("last_bridge_to") or "") if answered else "")
    return cdr.Cdr(
        uuid=session.get_uuid(), is_callout=False, a_caller_id_number=caller,
        a_destination_number=dialled or extension, a_start=handler_started,
        a_answer=handler_started if answered_before else None,
        a_end=a_end, a_record_file=session.getVariable(RECORD_FILE_VAR) or "",
        no_answer_agents=() if answered else (extension,), destination_number=extension,
        start=dial_started or a_end, end=a_end,
        flag=cdr.FLAG_ANSWERED if answered else cdr.FLAG_ONE_NO_ANSWER, domain=domain,
        hangup_cause=(session.getVariable("last_bridge_hangup_cause") or "NORMAL_CLEARING")
        if answered else _failure_cause(disposition), node=node, attempts=(attempt,))
