"""Queue statistics per group: calls offered, answered, abandoned, the service level, the
average speed of answer, the longest wait and the agents' occupancy — live, and over the last
15 and 60 minutes — for ``GET /api/stats``, ``/metrics`` and the wallboard.

The figures are counted where the outcome is known, as it happens, into one Redis hash per
group and minute, shared by every node: a call entering a group (the ACD's handler, on the
pipeline that sends its first messages), an agent's leg answering a queue call (the runtime, on
the pipeline of its event batch), a caller leaving unanswered (the handler, once the caller is
gone). A window is the sum of its minutes' hashes: reading 60 hashes a group costs one round
trip, and no figure waits for the CDR of a call still talking. Waits are kept per whole second
(``aw:<s>``, ``uw:<s>``), so the service level is computed when read, with the group's setting
as it is then, and the longest wait needs no read-modify-write.

Keys (``p`` prefix, ``d`` domain):

``p:{d}:stats:<g>:<minute>``   hash    PX 2 h: one group's figures of one epoch minute:
                                       ``offered``, ``answered``, ``abandoned``, ``timed_out``,
                                       ``answer_wait_ms`` (sum), ``aw:<s>`` / ``uw:<s>`` (calls
                                       answered / left unanswered after waiting s whole
                                       seconds), ``occ_agents`` / ``occ_talking`` (occupancy
                                       samples: agents logged into the group / of them talking),
                                       ``handled`` / ``handle_ms`` (answered calls ended, and
                                       their talk + wrap-up summed: the estimated wait).
``p:{d}:stats:<g>:total``      hash    no expiry: ``offered``, ``answered``, ``abandoned``,
                                       ``timed_out`` since the group began (Prometheus counters).
``p:{d}:stats_sample:<slot>``  string  PX 2 min: the node that took the occupancy sample of a
                                       10 s slot: whichever node claims it first samples it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fsapps.context import Context
from fsapps.domain.agents import Agent, Agents
from fsapps.domain.callqueue import CallQueue, WaitingCall
from fsapps.domain.groups import Group

MINUTE_MS = 60_000
BUCKET_TTL_MS = 2 * 3600 * 1000
WINDOWS = (("15m", 15), ("60m", 60))
SAMPLE_MS = 10_000
SAMPLE_CLAIM_MS = 120_000

OFFERED = "offered"
ANSWERED = "answered"
ABANDONED = "abandoned"
TIMED_OUT = "timed_out"  # ended by the long-wait policy or the max wait (then overflowed)
OUTCOMES = (OFFERED, ANSWERED, ABANDONED, TIMED_OUT)
ANSWER_WAIT_MS = "answer_wait_ms"
ANSWERED_AFTER = "aw:"    # + whole seconds waited: calls answered after that wait
UNANSWERED_AFTER = "uw:"  # the same for calls abandoned or timed out
OCC_AGENTS = "occ_agents"
OCC_TALKING = "occ_talking"
HANDLED = "handled"      # answered calls that ended (talk + the group's wrap-up: handle_ms)
HANDLE_MS = "handle_ms"  # their handling times, summed (the estimated wait reads them)


def minute_of(ms: int) -> int:
    return int(ms) // MINUTE_MS


def outcome_fields(outcome: str, wait_ms: int = 0) -> dict[str, int]:
    """The increments one call's ``outcome`` adds to its minute's hash."""
    seconds = max(0, int(wait_ms)) // 1000
    if outcome == OFFERED:
        return {OFFERED: 1}
    if outcome == ANSWERED:
        return {ANSWERED: 1, ANSWER_WAIT_MS: max(0, int(wait_ms)),
                f"{ANSWERED_AFTER}{seconds}": 1}
    if outcome in (ABANDONED, TIMED_OUT):
        return {outcome: 1, f"{UNANSWERED_AFTER}{seconds}": 1}
    raise ValueError(f"not a queue outcome: {outcome!r}")


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def window_figures(buckets: Iterable[Mapping[str, str]], service_level_seconds: int) \
        -> dict[str, Any]:
    """A window's figures from its minutes' hashes. The service level is the share of the
    calls that ended their wait in the window (answered, abandoned or timed out) answered
    before waiting ``service_level_seconds``; None (JSON null) when no call did, as the ASA
    and the occupancy are when there is nothing to average."""
    sums = dict.fromkeys((*OUTCOMES, ANSWER_WAIT_MS, OCC_AGENTS, OCC_TALKING), 0)
    within = 0
    longest = 0
    for bucket in buckets:
        for name, raw in bucket.items():
            count = _int(raw)
            if name in sums:
                sums[name] += count
            elif name.startswith((ANSWERED_AFTER, UNANSWERED_AFTER)) and count > 0:
                seconds = _int(name[3:])
                longest = max(longest, seconds)
                if name.startswith(ANSWERED_AFTER) and seconds < service_level_seconds:
                    within += count
    ended = sums[ANSWERED] + sums[ABANDONED] + sums[TIMED_OUT]
    return {
        "offered": sums[OFFERED], "answered": sums[ANSWERED], "abandoned": sums[ABANDONED],
        "timedOut": sums[TIMED_OUT], "answeredInServiceLevel": within,
        "serviceLevel": round(within / ended, 4) if ended else None,
        "asaSeconds": round(sums[ANSWER_WAIT_MS] / sums[ANSWERED] / 1000, 1)
        if sums[ANSWERED] else None,
        "longestWaitSeconds": longest,
        "occupancy": round(sums[OCC_TALKING] / sums[OCC_AGENTS], 4)
        if sums[OCC_AGENTS] else None,
    }


def live_figures(waiting: Iterable[WaitingCall], members: Iterable[str],
                 agents: Mapping[str, Agent], now_ms: int) -> dict[str, Any]:
    """The group now: callers waiting and the oldest one's wait, its logged-in agents, those
    free for a call and those talking; occupancy = talking / logged in."""
    waits = [now_ms - w.arrived_ms for w in waiting]
    present = [agents[m] for m in members if m in agents]
    talking = sum(1 for a in present if a.call_state == "talking")
    return {
        "waiting": len(waits), "longestWaitSeconds": max(0, max(waits, default=0)) // 1000,
        "agentsLoggedIn": len(present),
        "agentsReady": sum(1 for a in present if a.available(now_ms)),
        "agentsTalking": talking,
        "occupancy": round(talking / len(present), 4) if present else None,
    }


@dataclass(frozen=True)
class WaitFacts:
    """What a waiting caller's announcement needs (:meth:`QueueStats.wait_facts`)."""

    position: int                   # 1 = next; 0 = not in the queue
    staffed: int                    # agents logged into the group
    average_handle_ms: int | None   # None: no call of the group ended in the last hour


class QueueStats:
    """The queue statistics of one domain."""

    def __init__(self, ctx: Context, domain: str | None = None) -> None:
        self.ctx = ctx
        self.keys = ctx.keys(domain)
        self.domain = self.keys.domain
        self.r = ctx.redis

    def record(self, group: str, outcome: str, at_ms: int, wait_ms: int = 0,
               pipeline: Any = None) -> None:
        """Count one call's ``outcome`` in the minute of ``at_ms`` and in the totals. Queued
        on ``pipeline`` when given (the caller sends it), else sent at once."""
        pipe = pipeline if pipeline is not None else self.r.pipeline(transaction=False)
        key = self.keys.stats(group, minute_of(at_ms))
        for name, count in outcome_fields(outcome, wait_ms).items():
            pipe.hincrby(key, name, count)
        pipe.pexpire(key, BUCKET_TTL_MS)
        pipe.hincrby(self.keys.stats_total(group), outcome, 1)
        if pipeline is None:
            pipe.execute()

    def record_handled(self, group: str, at_ms: int, handle_ms: int) -> None:
        """An answered call of the group ended, after ``handle_ms`` of talk and wrap-up."""
        key = self.keys.stats(group, minute_of(at_ms))
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(key, HANDLED, 1)
        pipe.hincrby(key, HANDLE_MS, max(0, int(handle_ms)))
        pipe.pexpire(key, BUCKET_TTL_MS)
        pipe.execute()

    def wait_facts(self, group: str, uuid: str, now_ms: int) -> WaitFacts:
        """The waiting call's place in its group's queue (1 = next; 0: not queued), the agents
        logged into the group and its recent average handling time, in one round trip: over
        the last 15 minutes, else the last 60 (None when no call ended in the hour)."""
        minute = minute_of(now_ms)
        longest = max(minutes for _, minutes in WINDOWS)
        pipe = self.r.pipeline(transaction=False)
        pipe.zrank(self.keys.group_queue(group), uuid)
        pipe.zcard(self.keys.group_members(group))
        for back in range(longest):
            pipe.hmget(self.keys.stats(group, minute - back), [HANDLED, HANDLE_MS])
        rank, staffed, *buckets = pipe.execute()
        average = None
        for _, minutes in WINDOWS:
            handled = sum(_int(b[0] or 0) for b in buckets[:minutes])
            if handled:
                average = sum(_int(b[1] or 0) for b in buckets[:minutes]) // handled
                break
        return WaitFacts(0 if rank is None else int(rank) + 1, int(staffed), average)

    def sample_occupancy(self, node: str, now_ms: int) -> bool:
        """Once per SAMPLE_MS across every node (the first to claim the slot): add each
        group's logged-in agents and those of them talking to the minute's occupancy
        samples. False when another node took this slot."""
        slot = now_ms // SAMPLE_MS
        if not self.r.set(self.keys.stats_sample(slot), node, nx=True, px=SAMPLE_CLAIM_MS):
            return False
        numbers = sorted(self.r.smembers(self.keys.groups()))
        pipe = self.r.pipeline(transaction=False)
        for number in numbers:
            pipe.zrange(self.keys.group_members(number), 0, -1)
        members = pipe.execute() if numbers else []
        agents = {a.extension: a for a in Agents(self.ctx, self.domain).all()}
        writes = self.r.pipeline(transaction=False)
        for number, extensions in zip(numbers, members, strict=True):
            present = [agents[e] for e in extensions if e in agents]
            if not present:
                continue
            key = self.keys.stats(number, minute_of(now_ms))
            writes.hincrby(key, OCC_AGENTS, len(present))
            writes.hincrby(key, OCC_TALKING,
                           sum(1 for a in present if a.call_state == "talking"))
            writes.pexpire(key, BUCKET_TTL_MS)
        if len(writes):
            writes.execute()
        return True

    def groups(self, wanted: Iterable[str] | None, now_ms: int) -> list[dict[str, Any]]:
        """Each group's figures (``wanted``: these groups, else all of the domain): its
        settings, ``live``, one block per window (``15m``, ``60m``: the current minute and the
        ones before it) and ``total`` (counts since the group began). Four round trips."""
        known = sorted(self.r.smembers(self.keys.groups()))
        numbers = [n for n in known if wanted is None or n in set(wanted)]
        longest_window = max(minutes for _, minutes in WINDOWS)
        minute = minute_of(now_ms)
        pipe = self.r.pipeline(transaction=False)
        for number in numbers:
            pipe.hgetall(self.keys.group(number))
            pipe.zrange(self.keys.group_members(number), 0, -1)
            pipe.hgetall(self.keys.stats_total(number))
            for back in range(longest_window):
                pipe.hgetall(self.keys.stats(number, minute - back))
        replies = iter(pipe.execute() if numbers else [])
        waiting = CallQueue(self.ctx, self.domain).waiting() if numbers else []
        agents = {a.extension: a for a in Agents(self.ctx, self.domain).all()} \
            if numbers else {}
        rows = []
        for number in numbers:
            settings, members, total = next(replies), next(replies), next(replies)
            buckets = [next(replies) for _ in range(longest_window)]  # newest first
            group = Group.from_hash(settings) if settings else Group(number)
            row: dict[str, Any] = {
                "group": number, "name": group.group_name or number, "domain": self.domain,
                "serviceLevelSeconds": group.service_level_seconds,
                "live": live_figures([w for w in waiting if w.group == number], members,
                                     agents, now_ms)}
            for name, minutes in WINDOWS:
                row[name] = window_figures(buckets[:minutes], group.service_level_seconds)
            row["total"] = {"offered": _int(total.get(OFFERED, 0)),
                            "answered": _int(total.get(ANSWERED, 0)),
                            "abandoned": _int(total.get(ABANDONED, 0)),
                            "timedOut": _int(total.get(TIMED_OUT, 0))}
            rows.append(row)
        return rows
