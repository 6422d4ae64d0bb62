"""Callbacks instead of waiting (issue 18 item 5): a waiting caller presses the group's exit key
(``exit_to`` ``callback``), keeps its place in the queue and hangs up. Its queue entry stays,
marked ``callback`` with the caller's number; when its turn comes a freed agent reserves
itself for it as for any waiting call (agent_dispatch / agent_ready: the agent module, the
agent's only writer), the agent is rung first, and once it answers the caller is called back
through the group's gateway and bridged to it (:mod:`fsapps.switch.callback`). Not answered
or busy: the agent is freed, the attempt counted, and the callback queued again in the same
place after the group's ``callback_retry_seconds``, up to ``callback_max_attempts``, then
dropped. Attempts and outcome go in the callback's CDR.

Keys (``p`` prefix, ``d`` domain):

``p:{d}:callbacks``       hash  callback id -> JSON of :class:`Callback` (kept from the request
                                until it is answered or dropped: what survives a node restart)
``p:{d}:callbacks:due``   zset  callback id -> ms when its next attempt may queue (a retry)
``p:{d}:group:<g>:queue`` / ``p:{d}:waiting`` / ``p:{d}:offers`` (owned by
    :mod:`fsapps.domain.callqueue`): a queued callback is an entry there like a waiting caller.

A callback is always in exactly one of: the queue (waiting its turn), the offers hash (an agent
reserved for it: being placed), the due zset (waiting for its retry) - or finished and gone.
Every move between them is one step (callback_request.lua, callback_queue.lua, the dispatch
scripts, a MULTI), so a callback is placed exactly once whatever node dispatches it, and one
that is nowhere (its placing node died) is queued again by any reconciler.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from fsapps.context import Context
from fsapps.domain.callqueue import WaitingCall, queued_fields
from fsapps.domain.numbers import valid_gateway, valid_number
from fsapps.domain.routing import queue_score
from fsapps.events import cdr
from fsapps.events.pubsub import stamp
from fsapps.store.scripts import run_script

# What a caller hears once its callback is queued, without a configured file (mod_flite).
DEFAULT_CONFIRM = "flite|kal|Thank you. We will call you back when an agent is free. " \
                  "Goodbye."
# The CDR flags of a callback (fsapps.events.cdr, where every flag is)
FLAG_REQUESTED = cdr.FLAG_CALLBACK_REQUESTED  # the caller's own call
FLAG_CALLED_BACK = cdr.FLAG_CALLED_BACK  # the callback: the caller answered, put through
FLAG_NOT_REACHED = cdr.FLAG_CALLBACK_FAILED  # the callback: dropped after its max attempts


@dataclass
class Callback:
    id: str
    call_uuid: str  # the caller's call that asked for it
    group: str
    number: str  # the caller's number, as valid_number accepts it
    level: str
    arrived_ms: int  # the caller's arrival (its place in the queue)
    requested_ms: int
    node: str  # the node the caller was on (placed there while it is alive)
    domain: str = ""
    # one per time the caller was called: {"extension", "start", "answer", "end", "result",
    # "hangup_cause", "leg_uuid"} (fsapps.events.cdr.Attempt's fields)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)  # agents that missed its ring
    skills: list[tuple[str, int]] = field(default_factory=list)

    @property
    def score(self) -> float:
        return queue_score(self.level, self.arrived_ms)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Callback:
        return cls(**queued_fields(cls, text))

    def waiting(self) -> WaitingCall:
        """Its queue entry: a waiting call marked ``callback``, whose uuid is the id."""
        return WaitingCall(self.id, self.node, self.group, self.number, self.number,
                           self.level, "", self.arrived_ms, list(self.tried),
                           list(self.skills), callback=True)


# ------------------------------------------------------------------ pure decisions ---------
def callback_number(real_number: str, caller: str) -> str | None:
    """The number to call the caller back on: its caller id as the switch gave it, if it is a
    plain number (digits, an optional leading +), else None (no callback: nothing else may
    reach a dial string)."""
    for candidate in (real_number, caller):
        if valid_number(candidate):
            return candidate
    return None


def dial_string(gateway: str, number: str, variables: list[str]) -> str:
    """``{variables}sofia/gateway/<gateway>/<number>``; ValueError when the gateway or number
    is not a plain name / number (they were checked when configured and requested: this is
    the last line)."""
    if not valid_gateway(gateway):
        raise ValueError(f"not a gateway: {gateway!r}")
    if not valid_number(number):
        raise ValueError(f"not a number: {number!r}")
    return f"{{{','.join(variables)}}}sofia/gateway/{gateway}/{number}"


@dataclass(frozen=True)
class Next:
    """What follows an attempt the caller did not answer: ``retry`` at ``at_ms``, or
    ``drop``."""

    action: str
    at_ms: int = 0


def after_unanswered(attempts_made: int, max_attempts: int, retry_seconds: int,
                     now_ms: int) -> Next:
    """The caller was called ``attempts_made`` times (this one included) and did not answer:
    again after ``retry_seconds``, or dropped once it was called ``max_attempts`` times."""
    if attempts_made >= max(1, max_attempts):
        return Next("drop")
    return Next("retry", now_ms + max(0, retry_seconds) * 1000)


# ------------------------------------------------------------------ the store ---------------
class Callbacks:
    """The callbacks of one domain."""

    def __init__(self, ctx: Context, domain: str | None = None) -> None:
        self.ctx = ctx
        self.keys = ctx.keys(domain)
        self.r = ctx.redis

    def get(self, callback_id: str) -> Callback | None:
        raw = self.r.hget(self.keys.callbacks(), callback_id)
        return Callback.from_json(raw) if raw else None

    def all(self) -> list[Callback]:
        return [Callback.from_json(raw) for raw in self.r.hvals(self.keys.callbacks())]

    def request(self, callback: Callback) -> tuple[bool, str]:
        """The caller's queue entry becomes the callback's, in its place (callback_request.lua).
        (True, "") when queued; (False, extension) when an agent reserved itself for the caller
        meanwhile (connect it); (False, "") when the caller is not in the queue."""
        k = self.keys
        done, ext = run_script(
            self.r, "callback_request",
            [k.group_queue(callback.group), k.waiting(), k.offers(), k.callbacks()],
            [callback.call_uuid, callback.id, callback.to_json(),
             callback.waiting().to_json()])
        return bool(int(done)), str(ext or "")

    def queue(self, callback: Callback, mode: str, now: int, keep: bool = False) -> bool:
        """Into its group's queue in its place (callback_queue.lua): ``due`` (its retry time
        came), ``recover`` (it is nowhere), ``again`` (its agent did not answer); ``keep``
        stores the record as given too. True when queued by this call."""
        k = self.keys
        return bool(int(run_script(
            self.r, "callback_queue",
            [k.group_queue(callback.group), k.waiting(), k.offers(), k.callbacks(),
             k.callbacks_due()],
            [callback.id, mode, now, callback.score, callback.waiting().to_json(),
             callback.to_json() if keep else ""])))

    def retry_later(self, callback: Callback, at_ms: int) -> None:
        """Keep the record (with its attempts) and queue it again at ``at_ms``
        (:meth:`queue_due`). Before its agent is released: it is never nowhere."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.callbacks(), callback.id, callback.to_json())
        pipe.zadd(self.keys.callbacks_due(), {callback.id: at_ms})
        pipe.execute()

    def finish(self, callback_id: str) -> None:
        """Answered or dropped: gone."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(self.keys.callbacks(), callback_id)
        pipe.zrem(self.keys.callbacks_due(), callback_id)
        pipe.execute()

    def queue_due(self, now: int) -> list[Callback]:
        """Callbacks whose retry time came go back into their queues (safe on every node at
        once: each is queued by one). One ZRANGEBYSCORE when none is due."""
        due = self.r.zrangebyscore(self.keys.callbacks_due(), "-inf", now, start=0, num=100)
        queued = []
        for callback_id in due:
            callback = self.get(callback_id)
            if callback is None:
                self.r.zrem(self.keys.callbacks_due(), callback_id)
            elif self.queue(callback, "due", now):
                queued.append(callback)
        return queued

    def recover(self, now: int) -> list[Callback]:
        """Callbacks that are nowhere (not queued, not due, no agent reserved for them: the
        node placing one died, or a reconciler freed its agent before the caller was called)
        go back into their queues in their places."""
        ids = self.r.hkeys(self.keys.callbacks())
        if not ids:
            return []
        k = self.keys
        pipe = self.r.pipeline(transaction=False)
        for callback_id in ids:
            pipe.hexists(k.offers(), callback_id)
            pipe.zscore(k.callbacks_due(), callback_id)
        flags = pipe.execute()
        queued = []
        for n, callback_id in enumerate(ids):
            if flags[2 * n] or flags[2 * n + 1] is not None:
                continue
            callback = self.get(callback_id)
            if callback is None or self.r.zscore(k.group_queue(callback.group), callback_id) \
                    is not None:
                continue
            if self.queue(callback, "recover", now):
                queued.append(callback)
        return queued


def queue_told(ctx: Context, callback: Callback, method: str) -> None:
    """The seed's queue message for the callback's entry (``nway_queue_add`` as it is queued,
    on request or again, ``nway_queue_remove`` as its agent is rung), as for a waiting caller:
    a wallboard following the messages sees the callback keep its place."""
    ctx.publisher.queue_event(method, uuid=callback.id, number=callback.number,
                              group=callback.group, level=callback.level,
                              callin_time=stamp(callback.arrived_ms / 1000))
