"""Callers waiting for an agent, per group, in Redis: VIP before normal, first come first
served within a level (:func:`fsapps.domain.routing.queue_score`). A waiting call can be on any node
and be served by an agent freed on any other.

Keys (``p`` prefix, ``d`` domain):

``p:{d}:group:<g>:queue``  zset  waiting call uuids, score = queue order.
``p:{d}:waiting``          hash  call uuid -> JSON: node, group, level, number, real number,
                                 callin time, arrival (ms), agents who failed it (``tried``),
                                 the skills it requires (``skills``: [[name, level], ...],
                                 most important first; :mod:`fsapps.domain.skills`).
``p:{d}:offers``           hash  call uuid -> extension reserved for it (the handler of the
                                 call reads it when woken).

Every step that couples an agent and a call is one Lua script. The two that reserve an agent
write the agent hash, so they belong to the agent module (:mod:`fsapps.domain.agents`, the
agent's only writer): reserve-or-queue (:meth:`~fsapps.domain.agents.Agents.reserve_or_queue`,
agent_reserve.lua) and offer-the-best-waiting-call-to-a-freed-agent
(:meth:`~fsapps.domain.agents.Agents.take_waiting_call`, agent_dispatch.lua). Leaving the
queue (queue_leave.lua) is here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from fsapps.context import Context
from fsapps.store.scripts import run_script


def queued_fields(cls: Any, text: str) -> dict[str, Any]:
    """The fields of dataclass ``cls`` in a queue entry's JSON (others ignored; skills as
    (name, level) pairs): a waiting call's or a callback's."""
    data = json.loads(text)
    values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
    if "skills" in values:
        values["skills"] = [(str(name), int(level)) for name, level in values["skills"]]
    return values


@dataclass
class WaitingCall:
    uuid: str
    node: str
    group: str
    number: str
    real_number: str
    level: str
    callin_time: str
    arrived_ms: int
    tried: list[str] = field(default_factory=list)
    # the skills the call requires, as given (the scripts relax them by the wait)
    skills: list[tuple[str, int]] = field(default_factory=list)
    # a callback's entry (fsapps.domain.callbacks): its uuid is the callback's id, nobody is
    # on the line; the agent that takes it is rung first, then the caller is called back
    callback: bool = False

    def to_json(self) -> str:
        # (json's default ", " / ": " separators: agent_reserve.lua looks for '"skills": [['
        # before it decodes, so a call without skills costs no decoding)
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> WaitingCall:
        return cls(**queued_fields(cls, text))


@dataclass(frozen=True)
class Reservation:
    outcome: str  # reserved | offered | queued | none
    extension: str | None = None
    # reserved: the node the agent's phone is registered on, read in the same step (for the
    # dial string)
    reg_node: str = ""
    # ring_all: the other agents reserved in the same step, each (extension, reg_node, leg)
    others: tuple[tuple[str, str, str], ...] = ()


class CallQueue:
    """The waiting callers of one domain."""

    def __init__(self, ctx: Context, domain: str | None = None) -> None:
        self.ctx = ctx
        self.keys = ctx.keys(domain)
        self.r = ctx.redis

    def leave(self, group: str, uuid: str) -> tuple[bool, str]:
        """Take the call out of the queue; returns (it was queued, extension reserved for it
        meanwhile or "") — such a reservation must be released by the caller."""
        k = self.keys
        removed, ext = run_script(self.r, "queue_leave",
                                  [k.group_queue(group), k.waiting(), k.offers()], [uuid])
        return bool(int(removed)), ext or ""

    def is_waiting(self, group: str, uuid: str) -> bool:
        """Is the call in its group's queue now?"""
        return self.r.zscore(self.keys.group_queue(group), uuid) is not None

    def offer_for(self, uuid: str) -> str | None:
        return self.r.hget(self.keys.offers(), uuid)

    def offer_or_waiting(self, group: str, uuid: str) -> tuple[str | None, bool]:
        """(the agent reserved for the call or None, whether the call is in its group's
        queue): one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self.keys.offers(), uuid)
        pipe.zscore(self.keys.group_queue(group), uuid)
        offered, score = pipe.execute()
        return offered or None, score is not None

    def waiting(self, group: str | None = None) -> list[WaitingCall]:
        """Queued calls in queue order (of one group, or of every group of the domain)."""
        groups = [group] if group else sorted(self.r.smembers(self.keys.groups()))
        pipe = self.r.pipeline(transaction=False)
        for g in groups:
            pipe.zrange(self.keys.group_queue(g), 0, -1, withscores=True)
        ordered = sorted(((score, uuid) for per_group in pipe.execute()
                          for uuid, score in per_group))
        if not ordered:
            return []
        infos = self.r.hmget(self.keys.waiting(), [uuid for _, uuid in ordered])
        return [WaitingCall.from_json(info) for info in infos if info]
