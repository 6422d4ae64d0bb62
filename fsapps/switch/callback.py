"""Placing callbacks (fsapps.domain.callbacks) on a node: the agent first, then the caller.

1. A freed agent reserves itself for a callback's queue entry like for any waiting call (the
   dispatch scripts); :func:`fsapps.switch.acd.wake_handler` sends the node that queued it
   (or, gone, a live one) a ``callback`` command - the dispatch itself stays what it was:
   one script per freed agent, nothing per waiting entry.
2. That node's runtime (:func:`place`, its command thread) rings the agent with ``bgapi
   originate`` - never a blocking originate, which holds the GIL - running
   ``python fsapps.nwaycallback`` on the agent's leg once it answers.
3. :func:`run` (that handler) calls the caller back through the group's gateway with
   ``bridge`` (which lets go of the GIL), and settles the outcome: answered - the callback is
   over (its CDR written), the agent wraps up; not answered / busy - the attempt is counted,
   the callback queued again after the group's retry delay or dropped after its max attempts,
   and the agent released (ready: never left reserved).
4. An agent that does not answer its ring never reaches the handler: the end of its leg
   (:func:`agent_missed`, from the runtime's leg-ends thread) releases it as a missed offer and
   puts the callback back in its place at once, that agent tried last.

The reconciler (:func:`reconcile`) queues callbacks whose retry time came and recovers any that
is nowhere (its placing node died), and dispatches free agents of its group to it.
"""

from __future__ import annotations

import re
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from fsapps.channelvars import (
    ACD_AGENT_VAR,
    ACD_CALL_VAR,
    ACD_GROUP_VAR,
    ACD_LEVEL_VAR,
    ACD_NUMBER_VAR,
    CALLBACK_ANSWERED_VAR,
    CALLBACK_VAR,
    DOMAIN_VAR,
    LEG_VAR,
    OWN_CDR_VAR,
    RING_TIMEOUT_HEADER,
)
from fsapps.context import Context, get_context, now_ms
from fsapps.domain import callbacks
from fsapps.domain.agents import Agent, Agents
from fsapps.domain.callbacks import Callback, Callbacks
from fsapps.domain.groups import Groups
from fsapps.events import cdr, cdrspool
from fsapps.events.pubsub import stamp
from fsapps.fslog import log
from fsapps.switch import acd
from fsapps.switch.session import hang_up, is_up

APP = "nwaycallback"
_WORD = re.compile(r"^[A-Za-z0-9_.\-+*#@]{1,64}$")
_UNREGISTERED = ("USER_NOT_REGISTERED", "SUBSCRIBER_ABSENT")


def place(ctx: Context, execute: Any, node: str, command: dict[str, Any]) -> str:
    """The runtime's ``callback`` command: ring the agent reserved for the callback, the
    caller to be called back once it answers (:func:`run`). Returns the switch's reply (or
    why nothing was rung)."""
    callback_id, extension = str(command.get("uuid", "")), str(command.get("agent", ""))
    domain = str(command.get("domain", "")) or ctx.settings.default_domain
    if not (_WORD.match(callback_id) and _WORD.match(extension)) or \
            domain not in ctx.settings.domains:
        return f"bad callback command {command!r}"
    agents = Agents(ctx, domain)
    callback = Callbacks(ctx, domain).get(callback_id)
    group = Groups(ctx, domain).get(callback.group) if callback else None
    if callback is None or group is None:
        agents.release(extension, callback_id, "cancel")
        acd.agent_available(ctx, domain, extension)
        return f"callback {callback_id} is gone"
    held = agents.get(extension)
    if held is None or held.offer_uuid != callback_id or held.agent_leg:
        # rung already for this reservation (a command sent twice) or no longer reserved
        return f"agent {extension} is not waiting to be rung for callback {callback_id}"
    ring = group.group_callout_timeout
    leg = str(uuidlib.uuid4())
    reg_node = agents.ringing(extension, callback_id, node, now_ms() + acd.lease_ms(ctx, ring),
                              leg)
    if reg_node is None:
        # freed meanwhile (a reconciler, the lease): the callback is nowhere now, and the
        # reconciler puts it back in its place
        return f"agent {extension} is no longer reserved for callback {callback_id}"
    variables = [
        f"originate_timeout={ring}", f"{RING_TIMEOUT_HEADER}={ring}",
        f"origination_uuid={leg}", f"origination_caller_id_number={callback.number}",
        "origination_caller_id_name=callback",
        f"{ACD_AGENT_VAR}={extension}", f"{ACD_CALL_VAR}={callback_id}",
        f"{ACD_GROUP_VAR}={callback.group}", f"{DOMAIN_VAR}={domain}",
        f"{ACD_LEVEL_VAR}={callback.level}", f"{ACD_NUMBER_VAR}={callback.number}",
        f"{LEG_VAR}={APP}", f"{OWN_CDR_VAR}={APP}", f"{CALLBACK_VAR}={callback_id}",
    ]
    endpoint = acd.dial_target(ctx, domain, extension, node, reg_node)
    callbacks.queue_told(ctx, callback, "nway_queue_remove")
    ctx.publisher.agent_call_event(
        "callout", uuid=callback_id, number=callback.number, group=callback.group,
        extension=extension, level=callback.level,
        callin_time=stamp(callback.arrived_ms / 1000))
    log("INFO", f"callback {callback_id}: ringing agent {extension} to call back "
                f"{callback.number} (attempt {len(callback.attempts) + 1})")
    # (no space inside &python(...): originate splits its arguments at spaces; the handler
    # finds the callback in the leg's variables)
    return str(execute("bgapi", f"originate {{{','.join(variables)}}}{endpoint} "
                                f"&python(fsapps.{APP})"))


def run(session: Any, args: str = "") -> None:
    """``python fsapps.nwaycallback`` on the agent's leg, once the agent answered: call the
    caller back through the group's gateway and settle the outcome."""
    ctx = get_context()
    session.setVariable(CALLBACK_ANSWERED_VAR, "true")
    callback_id = session.getVariable(CALLBACK_VAR) or ""
    extension = session.getVariable(ACD_AGENT_VAR) or ""
    domain = session.getVariable(DOMAIN_VAR) or ctx.settings.default_domain
    if not (_WORD.match(callback_id) and _WORD.match(extension)) or \
            domain not in ctx.settings.domains:
        log("ERR", f"{APP}: not a callback leg ({callback_id!r}, {extension!r}, {domain!r})")
        hang_up(session, "NORMAL_CLEARING")
        return
    agents = Agents(ctx, domain)
    store = Callbacks(ctx, domain)
    callback = store.get(callback_id)
    group = Groups(ctx, domain).get(callback.group) if callback else None
    node = acd.node_name(ctx)
    if callback is None or group is None or not group.callback_gateway:
        log("WARNING", f"{APP}: callback {callback_id} is gone (or its group has no gateway); "
                       f"agent {extension} released")
        hang_up(session, "NORMAL_CLEARING")
        _release(ctx, agents, domain, extension, callback_id)
        if callback is not None:
            store.finish(callback_id)
        return
    ring = group.group_callout_timeout
    try:
        dial = callbacks.dial_string(group.callback_gateway, callback.number, [
            f"originate_timeout={ring}", f"origination_caller_id_number={group.group_number}",
            f"{LEG_VAR}={APP}"])
    except ValueError as exc:
        log("ERR", f"{APP}: callback {callback_id} dropped: {exc}")
        store.finish(callback_id)
        hang_up(session, "NORMAL_CLEARING")
        _release(ctx, agents, domain, extension, callback_id)
        return
    session.setVariable("continue_on_fail", "true")
    session.setVariable("hangup_after_bridge", "false")
    started = time.time()
    session.execute("bridge", dial)
    ended = time.time()
    disposition = session.getVariable("originate_disposition") or "NONE"
    agent_up = is_up(session)
    if disposition != "SUCCESS" and (disposition == "ORIGINATOR_CANCEL" or not agent_up):
        # the agent hung up while the caller rang: not the caller's attempt; back in its
        # place at once (the agent tried last)
        log("INFO", f"{APP}: agent {extension} left callback {callback_id} before "
                    f"{callback.number} answered; queued again")
        if extension not in callback.tried:
            callback.tried.append(extension)
        if store.queue(callback, "again", now_ms(), keep=True):
            callbacks.queue_told(ctx, callback, "nway_queue_add")
        hang_up(session, "NORMAL_CLEARING")
        _release(ctx, agents, domain, extension, callback_id)
        return
    answer = None
    if disposition == "SUCCESS":
        bridged = session.getVariable("bridge_epoch") or ""
        answer = float(bridged) if bridged.isdigit() and int(bridged) > 0 else started
    callback.attempts.append({
        "extension": extension, "start": started, "answer": answer, "end": ended,
        "result": cdr.attempt_result(disposition),
        "hangup_cause": cdr.attempt_cause(session, disposition),
        "leg_uuid": session.getVariable("bridge_uuid") or ""})
    hang_up(session, "NORMAL_CLEARING")
    publisher = ctx.publisher
    if disposition == "SUCCESS":
        store.finish(callback_id)
        _record(ctx, callback, domain, node, callbacks.FLAG_CALLED_BACK)
        publisher.agent_call_event("hangup", uuid=callback_id, number=callback.number,
                                   group=callback.group, extension=extension,
                                   level=callback.level,
                                   callin_time=stamp(callback.arrived_ms / 1000))
        if agents.start_wrapup(extension, callback_id, group.wrapup(ctx.settings.group_defaults)):
            acd.agent_available(ctx, domain, extension)
        return
    made = len(callback.attempts)
    following = callbacks.after_unanswered(made, group.callback_max_attempts,
                                           group.callback_retry_seconds, now_ms())
    if following.action == "retry":
        log("INFO", f"{APP}: callback {callback_id}: {callback.number} did not answer "
                    f"({disposition}, attempt {made} of {group.callback_max_attempts}); "
                    f"again in {group.callback_retry_seconds} s")
        store.retry_later(callback, following.at_ms)
    else:
        log("NOTICE", f"{APP}: callback {callback_id}: {callback.number} did not answer "
                      f"{made} times ({disposition}); dropped")
        store.finish(callback_id)
        _record(ctx, callback, domain, node, callbacks.FLAG_NOT_REACHED)
    _release(ctx, agents, domain, extension, callback_id)


def _release(ctx: Context, agents: Agents, domain: str, extension: str,
             callback_id: str) -> None:
    """The agent's part is over without a call to wrap up: ready (released in one script),
    and offered the next waiting call - once the switch told its leg's end."""
    agents.release(extension, callback_id, "cancel")
    acd.agent_available(ctx, domain, extension)


def agent_missed(ctx: Context, domain: str, extension: str, callback_id: str,
                 cause: str) -> None:
    """The agent's leg for the callback ended without the agent answering (the runtime's
    leg-ends thread, before it frees the agent): the callback goes back in its place at once
    (that agent tried last: not counted as an attempt - the caller was not called), and the
    agent's offer ends as a missed one (no_answer, then ready or busy)."""
    if not (_WORD.match(callback_id) and _WORD.match(extension)):
        return
    store = Callbacks(ctx, domain)
    callback = store.get(callback_id)
    group = Groups(ctx, domain).get(callback.group) if callback else None
    if callback is not None:
        if extension not in callback.tried:
            callback.tried.append(extension)
        if store.queue(callback, "again", now_ms(), keep=True):
            callbacks.queue_told(ctx, callback, "nway_queue_add")
    limit = group.no_answer_limit(ctx.settings.group_defaults) if group else 0
    released = Agents(ctx, domain).release(
        extension, callback_id, "unregistered" if cause in _UNREGISTERED else "missed",
        max_no_answer=limit)
    if callback is not None:
        # another free agent of the group takes it now (this one is free again only once its
        # leg's end is told, after this: it is offered the callback last)
        _offer_to_free_members(ctx, domain, [callback], but=extension)
    if released is not None:
        log("INFO", f"callback {callback_id}: agent {extension} did not answer ({cause}); "
                    "the callback keeps its place")
        ctx.publisher.agent_call_event(
            "noanswer", uuid=callback_id, number=callback.number if callback else "",
            group=callback.group if callback else "", extension=extension,
            level=callback.level if callback else "normal",
            callin_time=stamp(callback.arrived_ms / 1000) if callback else "")


def reconcile(ctx: Context, domain: str, now: int) -> list[str]:
    """The reconciler's pass over the callbacks (every node's, safe at once): those whose
    retry time came, and any that is nowhere (its placing node died), go back into their
    queues in their places; the free agents of their groups are offered them. Returns the
    callbacks queued. One ZRANGEBYSCORE and one HKEYS when there is nothing to do."""
    store = Callbacks(ctx, domain)
    queued = [*store.queue_due(now), *store.recover(now)]
    if not queued:
        return []
    for callback in queued:
        callbacks.queue_told(ctx, callback, "nway_queue_add")
    _offer_to_free_members(ctx, domain, queued)
    return [c.id for c in queued]


def _offer_to_free_members(ctx: Context, domain: str, queued: list[Callback],
                           but: str = "") -> None:
    """Callbacks just queued again: the free agents of their groups take the best waiting
    calls (one dispatch script each, in one round trip; an agent that is not free answers
    at once). A freed agent, not an arriving call, is what dispatch waits for: without this
    a callback queued while agents sat idle would wait for the next agent to free."""
    groups = Groups(ctx, domain)
    free: dict[str, list[str]] = {}
    for callback in queued:
        for member in groups.members(callback.group):
            if member != but:
                free.setdefault(member, []).append(callback.group)
    acd.agents_available(ctx, domain, free)


def ids(ctx: Context, domain: str) -> set[str]:
    """The callbacks kept now (one HKEYS), for the reconciler's :func:`reserved_check`."""
    return set(ctx.redis.hkeys(ctx.keys(domain).callbacks()))


def reserved_check(agent: Agent, callback_ids: set[str],
                   channel_up: Callable[[str], bool]) -> Callable[[str], bool]:
    """``channel_up`` for the reconciler's rule about ``agent`` (runtime.agent_repair). A
    callback has no channel: an agent reserved for one that has not answered yet (the
    ``callback`` command on its way to the placing node, or the leg named by the ring but
    not created yet: bgapi originates it a moment later) holds a live call - its lease and
    its node's life bound it, as for a caller's reservation (a ring whose lease ran out and
    whose leg is gone is released). Once it answered, its leg is what counts. (Taken for
    gone, the agent was released under the placing node and the callback dispatched again:
    two rings for one callback.)"""
    if agent.offer_uuid and agent.offer_uuid in callback_ids and agent.call_state == "ring":
        held = agent.offer_uuid
        return lambda uuid: uuid == held or channel_up(uuid)
    return channel_up


def _record(ctx: Context, callback: Callback, domain: str, node: str, flag: str) -> None:
    """The callback's CDR (its own row, uuid = the callback's id): the caller's number and the
    group it called; the agent of the last attempt as the party; one cdr_agent_attempt row per
    time the caller was called back, its result the caller's answer (answered, no_answer,
    busy, ...)."""
    attempts = tuple(cdr.Attempt(attempt_no=n, **a) for n, a in
                     enumerate(callback.attempts, 1))
    last = attempts[-1] if attempts else None
    answered = flag == callbacks.FLAG_CALLED_BACK
    cdrspool.record(ctx, cdr.Cdr(
        uuid=callback.id, is_callout=False, a_caller_id_number=callback.number,
        a_destination_number=callback.group, a_start=callback.requested_ms / 1000,
        a_answer=last.answer if last and answered else None,
        a_end=last.end if last else time.time(),
        destination_number=last.extension if last else "",
        start=last.start if last else None, answer=last.answer if answered and last else None,
        end=last.end if last else None, flag=flag, group_number=callback.group,
        domain=domain, level=callback.level, node=node, attempts=attempts,
        hangup_cause=last.hangup_cause if last else ""))
