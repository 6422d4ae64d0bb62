"""The ACD service: routing one queue call (seed 001 steps d–h) and offering freed agents to
waiting callers. The entry module ``fsapps.nwayacd`` only calls :func:`route_call`.

A call, in order: the group's blacklist (hang up, or play the blacklist ring then hang up);
the agent who served this caller last, if the mode asks and that agent is free; otherwise a
free agent in the mode's order; if none, the caller waits in the group's queue with hold
music — VIP first, then first come first served — and is connected the moment an agent turns
free: the agent reserves itself for the best waiting call in Redis (agent_dispatch.lua) and the
owning node's runtime breaks the caller's hold music (``uuid_break``) so its handler bridges.

Everything that couples an agent to a call is atomic in Redis and carries a lease, so several
nodes can route calls to one pool of agents and a node dying mid-offer frees its agents when
the lease runs out.
"""

from __future__ import annotations

import re
import socket
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fsapps import metrics
from fsapps.channelvars import (
    ACD_AGENT_VAR,
    ACD_ARRIVED_VAR,
    ACD_CALL_VAR,
    ACD_GROUP_VAR,
    ACD_LEVEL_VAR,
    ACD_OFFER_VAR,
    CALL_HEADER,
    DOMAIN_VAR,
    LEG_VAR,
    RECORD_FILE_VAR,
    RELAY_DOMAIN_HEADER,
    RELAY_PREFIX,
    RING_TIMEOUT_HEADER,
    SKILLS_VAR,
)
from fsapps.context import Context, get_context, now_ms
from fsapps.domain import callbacks, routing, skills, stats
from fsapps.domain.agents import Agents, Ready
from fsapps.domain.callqueue import CallQueue, WaitingCall
from fsapps.domain.groups import Group, Groups
from fsapps.domain.nodes import Nodes
from fsapps.domain.stats import QueueStats
from fsapps.domain.waiting import (
    CALLBACK,
    HANGUP,
    MAX_GROUP_HOPS,
    Destination,
    announcement,
    estimated_wait_seconds,
    parse_announce,
    parse_destination,
)
from fsapps.errors import BadInput, CallerGone
from fsapps.events import cdr, cdrspool
from fsapps.events.pubsub import stamp
from fsapps.fslog import log
from fsapps.store.connection import publish_pipeline
from fsapps.switch.session import ensure_up, hang_up, is_up

# A waiting caller's hold music lasts until the runtime breaks it with an agent (or the next
# busy ring is due, or the caller hangs up): the handler asks Redis nothing meanwhile. This cap
# only bounds a wake-up lost against all odds (the runtime breaks music that began after its
# break as well, see fsapps.switch.runtime); then the handler looks in Redis itself.
HOLD_SEGMENT_SECONDS = 60
# switch_ivr_play_file ignores a playback_timeout_sec below 2 (its test is "> 1"): a 1 s
# segment of hold music would play until something breaks it.
PLAYBACK_TIMEOUT_MIN_SECONDS = 2
# The switch times a playback by the audio it wrote, not by the clock: after a stall it writes
# the frames it owes back to back, and a timed segment of hold music can end a little before
# the handler's clock says. An announcement or a busy ring due within this much is due now -
# else the shortest segment the switch plays (PLAYBACK_TIMEOUT_MIN_SECONDS) came between,
# and it was heard 2 s late (seen in the real switch: 4.0 s of music between announcements
# every 2 s).
DUE_EARLY_SECONDS = 0.5
# A group with a max wait looks this often whether anybody is still logged in (a logout does
# not wake its callers): nobody is, and the caller overflows.
NO_AGENT_CHECK_SECONDS = 5
# A call whose free agents have all failed it already waits this long before ringing again.
RETRY_PAUSE_SECONDS = PLAYBACK_TIMEOUT_MIN_SECONDS

_SAFE = re.compile(r"^[A-Za-z0-9_.\-+*#@]{1,64}$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.\-+*#@]")

# originate_disposition → (release outcome, agent-facing method)
_FAILURES = {"USER_NOT_REGISTERED": "unregistered", "SUBSCRIBER_ABSENT": "unregistered"}
# originate_disposition → cdr_agent_attempt.result (anything else: "failed")
attempt_result = cdr.attempt_result


def due(at: float) -> bool:
    """Whether something timed for ``at`` (``time.monotonic()``) is due: DUE_EARLY_SECONDS
    early at most."""
    return time.monotonic() >= at - DUE_EARLY_SECONDS


def safe_part(value: str) -> str:
    """A caller number as it may appear in a Redis key or a dial-string variable."""
    return _UNSAFE_CHARS.sub("_", value or "")[:64] or "unknown"


@dataclass
class QueueCall:
    """One queue call as the handler routes it."""

    uuid: str
    node: str
    domain: str
    group: Group
    caller: str
    real_number: str
    level: str
    arrived_ms: int
    tried: list[str] = field(default_factory=list)
    queued: bool = False
    dialled: str = ""  # what the caller dialled, read on arrival (a transfer changes it)
    skills: list[tuple[str, int]] = field(default_factory=list)  # required (fsapps_skills)

    def waiting(self) -> WaitingCall:
        return WaitingCall(self.uuid, self.node, self.group.group_number, self.caller,
                           self.real_number, self.level, stamp(self.arrived_ms / 1000),
                           self.arrived_ms, list(self.tried), list(self.skills))


class Router:
    """Routes one call on one session (all state of the call lives in Redis)."""

    def __init__(self, ctx: Context, session: Any, call: QueueCall) -> None:
        self.ctx = ctx
        self.session = session
        self.call = call
        self.defaults = ctx.settings.group_defaults
        self.agents = Agents(ctx, call.domain)
        self.groups = Groups(ctx, call.domain)
        self.queue = CallQueue(ctx, call.domain)
        self.decision_started: tuple[float, ...] | None = None
        # for the CDR: every agent offered the call, and whether the long-wait policy ended it
        self.attempts: list[cdr.Attempt] = []
        self.timed_out = False
        self.answered_at: float | None = None  # when the handler answered the caller
        self.decided = False  # its first agent chosen (decision latency observed)
        self.offered_counted = False  # in the group's statistics (count_offered)
        self.tier_checked_ms = 0  # tiers: the last level deadline the handler looked at
        # waiting (fsapps.domain.waiting): the next announcement (monotonic; 0: at once), the
        # exit key pressed, and where the caller left the queue to (None: it did not)
        self.announce_due = 0.0
        self.exit_pressed = False
        self.left_to: Destination | None = None
        self.callback_requested = False  # left the queue for a callback (its CDR flag)

    # ------------------------------------------------------------------ helpers ----------
    def guard(self) -> None:
        ensure_up(self.session)

    def agent_event(self, method: str, extension: str, messages: Any = None) -> None:
        c = self.call
        self.ctx.publisher.agent_call_event(
            method, uuid=c.uuid, number=c.caller, group=c.group.group_number,
            extension=extension, level=c.level, callin_time=stamp(c.arrived_ms / 1000),
            pipeline=messages)

    def queue_event(self, method: str, messages: Any = None) -> None:
        c = self.call
        self.ctx.publisher.queue_event(method, uuid=c.uuid, number=c.caller,
                                       group=c.group.group_number, level=c.level,
                                       callin_time=stamp(c.arrived_ms / 1000),
                                       pipeline=messages)

    @property
    def lease_ms(self) -> int:
        return lease_ms(self.ctx, self.call.group.group_callout_timeout)

    # ------------------------------------------------------------------ the call ---------
    def run(self, facts_members: list[str], remembered: str | None) -> None:
        members = facts_members
        while True:
            self.guard()
            order = routing.candidate_order(
                self.call.group.mode, members, current=self.call.group.current_ext_number or
                None, remembered=remembered, tried=self.call.tried)
            # The agent's leg is named before the reservation, which rings the agent it
            # reserves on it at once; its ring status goes out with the callout event.
            leg = str(uuidlib.uuid4())
            messages = publish_pipeline(self.ctx.redis)
            self.count_offered(messages)
            ring_all = self.call.group.agent_strategy == routing.RING_ALL
            found = self.agents.reserve_or_queue(
                self.call.waiting(), order, lease_ms=self.lease_ms, enqueue=True,
                record_current=self.call.group.mode.base is routing.CallMode.CYCLIC,
                agent_leg=leg, messages=messages,
                untried=sum(1 for m in order if m not in self.call.tried),
                remembered=remembered or "",
                more_legs=[str(uuidlib.uuid4()) for _ in order[1:]] if ring_all else None)
            if found.outcome in ("reserved", "offered"):
                metrics.stop("route_decision", self.decision_started, self.call.node)
                self.decision_started = None
            if found.outcome == "reserved" and found.extension and found.others:
                self.left_queue(messages)
                rung = [(found.extension, Rung(leg, found.reg_node)),
                        *((ext, Rung(other_leg, reg)) for ext, reg, other_leg in found.others)]
                if self.offer_all(rung, messages):
                    return
            elif found.outcome == "reserved" and found.extension:
                self.left_queue(messages)
                if self.offer(found.extension, Rung(leg, found.reg_node), messages):
                    return
            elif found.outcome == "offered" and found.extension:
                self.left_queue(messages)
                if self.offer(found.extension, messages=messages):
                    return
            else:
                if not self.call.queued:
                    self.call.queued = True
                    self.queue_event("nway_queue_add", messages)
                send_messages(messages)  # (with the call's offered count, if it is new)
                extension = self.wait_for_agent()
                if self.left_to is not None:
                    return  # left the queue on the group's terms (route_call takes it on)
                if not extension:
                    continue  # dropped from the queue by a reconciler: queue again
                messages = publish_pipeline(self.ctx.redis)  # sent with the callout event
                self.left_queue(messages)
                if self.offer(extension, messages=messages):
                    return
            # The offer failed: fresh facts (members may have changed) and try again.
            members = self.groups.members(self.call.group.group_number)
            group = self.groups.get(self.call.group.group_number)
            if group is not None:
                self.call.group = group

    def left_queue(self, messages: Any = None) -> None:
        if self.call.queued:
            self.call.queued = False
            self.queue_event("nway_queue_remove", messages)

    def wait_for_agent(self) -> str:
        """Hold music until an agent reserves itself for this call (its extension), or the
        call is found out of the queue ("": queue it again), or the caller leaves the queue
        on the group's terms ("" with :attr:`left_to` set, or hung up: CallerGone): the exit
        key, the max wait (at once while nobody is logged into the group), or the long-wait
        policy (the busy ring every interval, then leaving after the configured number).
        Every ``announce_seconds`` of hold music the caller hears its place and estimated
        wait (:meth:`announce`)."""
        group = self.call.group
        if group.exit_key:
            # mod_dptools' playback, say and speak stop at a key of playback_terminators
            # (setting playback_terminator_used): the exit key, and no other key, ends them
            self.session.setVariable("playback_terminators", group.exit_key)
        try:
            return self.wait_in_queue(group)
        finally:
            if group.exit_key and is_up(self.session):
                self.session.setVariable("playback_terminators", "")

    def wait_in_queue(self, group: Group) -> str:
        """:meth:`wait_for_agent`'s loop."""
        repeats = group.busy_repeats(self.defaults)
        interval = self.defaults.busy_ring_interval_seconds
        music = group.music(self.defaults)
        rings = 0
        segment_start = time.monotonic()
        while True:
            extension = self.woken_with()
            if extension:
                return extension
            self.guard()
            extension, waiting = self.queue.offer_or_waiting(group.group_number, self.call.uuid)
            if extension:
                return extension
            if not waiting:
                # A reconciler took this call for one whose node is gone (this node missed
                # its heartbeats): "" sends it back through reserve_or_queue, which queues it
                # again in the same place (or finds the offer made meanwhile).
                return ""
            if self.exit_pressed:
                if (group.exit_to or "").strip() == str(CALLBACK):
                    taken = self.request_callback(f"pressed the exit key {group.exit_key}")
                    if taken is None:
                        continue  # no callback possible: the caller waits on
                    return taken
                return self.leave_for(group.exit_to, f"pressed the exit key {group.exit_key}")
            if group.max_wait_seconds:
                waited = now_ms() - self.call.arrived_ms
                if waited >= group.max_wait_seconds * 1000:
                    self.timed_out = True
                    return self.leave_for(group.overflow_to,
                                          f"waited {waited // 1000} s (max wait)")
                if not self.groups.members(group.group_number):
                    self.timed_out = True
                    return self.leave_for(group.overflow_to, "has no agent logged in to wait "
                                                             "for")
            if group.busy_ring and due(segment_start + interval):
                self.session.setVariable("playback_timeout_sec", "")
                self.media("playback", group.busy_ring)
                rings += 1
                segment_start = time.monotonic()
                if repeats and rings >= repeats:
                    if self.queue.offer_for(self.call.uuid):
                        continue  # an agent took the call during the last busy ring
                    self.timed_out = True
                    return self.leave_for(group.overflow_to,
                                          f"waited too long ({rings} busy rings)")
                continue
            if group.announce_seconds and due(self.announce_due):
                self.announce(group)
                self.announce_due = time.monotonic() + group.announce_seconds
                continue
            seconds = HOLD_SEGMENT_SECONDS
            if group.busy_ring:  # until the next busy ring is due (no ring: nothing is due)
                remaining = interval - (time.monotonic() - segment_start)
                seconds = min(seconds, int(remaining) + 1)
            if group.announce_seconds:
                seconds = min(seconds, int(self.announce_due - time.monotonic()) + 1)
            if group.max_wait_seconds:
                # until the max wait; and whether anybody is still logged in, now and then
                left_ms = group.max_wait_seconds * 1000 - (now_ms() - self.call.arrived_ms)
                seconds = min(seconds, NO_AGENT_CHECK_SECONDS, left_ms // 1000 + 1)
            tier_due = self.next_tier_ms()
            if tier_due is not None and tier_due <= now_ms():
                # a higher tier may take the call now: look for a free agent of it (the
                # queue keeps the caller's place), as on arrival
                self.tier_checked_ms = tier_due
                return ""
            if tier_due is not None:
                seconds = min(seconds, (tier_due - now_ms()) // 1000 + 1)
            self.hold_music(music, seconds)

    def next_tier_ms(self) -> int | None:
        """When more agents may take this call, if not looked for yet: tiers with a wait (the
        next level: arrival + k x the group's tier_wait_seconds) and skills that relax (the
        next step: arrival + k x skill_relax_seconds, until nothing is required); None when
        neither is due any more."""
        due = [self.call.arrived_ms + k * wait * 1000
               for wait, steps in ((self.call.group.tier_wait_seconds or 0, routing.MAX_LEVEL - 1),
                                   (self.call.group.skill_relax_seconds or 0,
                                    skills.steps_to_relax_fully(self.call.skills)))
               if wait > 0 for k in range(1, steps + 1)]
        later = [d for d in due if d > self.tier_checked_ms]
        return min(later) if later else None

    def woken_with(self) -> str | None:
        """The agent the runtime woke this caller with (:data:`ACD_OFFER_VAR`), taken: the
        variable is cleared, so music started from now on is not broken for it again."""
        extension = self.session.getVariable(ACD_OFFER_VAR)
        if not extension:
            return None
        self.session.setVariable(ACD_OFFER_VAR, "")
        return str(extension)

    def hold_music(self, music: str, seconds: int) -> None:
        """Play ``music`` for ``seconds`` (at least FreeSWITCH's 2), or until broken (or the
        exit key: :attr:`exit_pressed`)."""
        self.session.setVariable("playback_timeout_sec",
                                 str(max(PLAYBACK_TIMEOUT_MIN_SECONDS, seconds)))
        self.media("playback", music)
        self.session.setVariable("playback_timeout_sec", "")

    def media(self, app: str, data: str) -> None:
        """Run one media application (playback, say, speak) on the caller; a press of the
        group's exit key during it (it stops the application) sets :attr:`exit_pressed`."""
        key = self.call.group.exit_key
        if key:
            self.session.setVariable("playback_terminator_used", "")
        self.session.execute(app, data)
        if key and self.session.getVariable("playback_terminator_used") == key:
            self.exit_pressed = True

    def announce(self, group: Group) -> None:
        """The caller's place in the queue and its estimated wait (fsapps.domain.waiting),
        spoken by the group's announcement steps. One round trip for the figures; each step is
        a switch application that the runtime's break stops like the hold music, and none
        starts once the caller was woken (or pressed the exit key)."""
        try:
            steps = parse_announce(group.announce)
        except ValueError as exc:
            log("WARNING", f"nwayacd: group {group.group_number}'s announcement is not used: "
                           f"{exc}")
            return
        facts = QueueStats(self.ctx, self.call.domain).wait_facts(
            group.group_number, self.call.uuid, now_ms())
        if not facts.position:
            return
        wait = estimated_wait_seconds(facts.position, facts.average_handle_ms, facts.staffed)
        for app, data in announcement(steps, facts.position, wait):
            if self.exit_pressed or self.session.getVariable(ACD_OFFER_VAR) or \
                    not is_up(self.session):
                return
            self.media(app, data)

    def leave_for(self, to: str, why: str) -> str:
        """The caller leaves the queue on the group's terms: out of it in one step (an agent
        reserved for it meanwhile is freed), then to the destination ``to`` names
        (fsapps.domain.waiting): hung up at once (CallerGone), or "" with :attr:`left_to` set
        for :func:`route_call` to take it there once its CDR is written."""
        c = self.call
        try:
            destination = parse_destination(to)
        except ValueError as exc:
            log("WARNING", f"nwayacd: group {c.group.group_number}: {exc}; hanging up")
            destination = HANGUP
        if destination.kind == "callback":
            taken = self.request_callback(why)
            if taken is not None:
                return taken
            destination = HANGUP
        log("NOTICE", f"nwayacd: caller {c.caller} {why} in group {c.group.group_number}; "
                      f"leaving the queue to {destination}")
        self.leave_queue()
        # an agent that reserved itself in that moment is released: the wake-up naming it
        # must not be taken for one in the next group's queue
        self.session.setVariable(ACD_OFFER_VAR, "")
        if destination.kind == "hangup":
            self.session.hangup("NORMAL_CLEARING")
            raise CallerGone()
        self.left_to = destination
        return ""

    def request_callback(self, why: str) -> str | None:
        """The caller asks to be called back (fsapps.domain.callbacks): its queue entry
        becomes the callback's in one step, it hears the confirmation and is hung up
        (CallerGone). None when no callback is possible (the group has no gateway, the caller
        id is no number: logged, the caller waits on); an extension when an agent reserved
        itself for the caller in that moment (connect it), "" when the caller is no longer
        queued (queue it again)."""
        c = self.call
        group = c.group
        self.exit_pressed = False
        number = callbacks.callback_number(c.real_number, c.caller)
        if not group.callback_gateway or number is None:
            reason = "the group has no callback gateway" if not group.callback_gateway else \
                f"its number {c.real_number!r} cannot be called back"
            log("WARNING", f"nwayacd: caller {c.caller} {why} in group {group.group_number} "
                           f"for a callback, but {reason}; it waits on")
            return None
        now = now_ms()
        callback = callbacks.Callback(
            id=str(uuidlib.uuid4()), call_uuid=c.uuid, group=group.group_number, number=number,
            level=c.level, arrived_ms=c.arrived_ms, requested_ms=now, node=c.node,
            domain=c.domain, tried=list(c.tried), skills=list(c.skills))
        queued, extension = callbacks.Callbacks(self.ctx, c.domain).request(callback)
        if not queued:
            return extension
        log("NOTICE", f"nwayacd: caller {c.caller} {why} in group {group.group_number}: "
                      f"callback {callback.id} to {number} keeps its place in the queue")
        self.callback_requested = True
        self.left_queue()
        callbacks.queue_told(self.ctx, callback, "nway_queue_add")
        self.session.setVariable("playback_terminators", "none")
        if group.callback_confirm:
            self.session.execute("playback", group.callback_confirm)
        else:
            self.session.execute("speak", callbacks.DEFAULT_CONFIRM)
        self.session.hangup("NORMAL_CLEARING")
        raise CallerGone()

    def leave_queue(self) -> None:
        """Out of the queue for good; an agent reserved for us meanwhile is freed."""
        _, extension = self.queue.leave(self.call.group.group_number, self.call.uuid)
        self.left_queue()
        if extension:
            self.agents.release(extension, self.call.uuid, "cancel")
            agent_available(self.ctx, self.call.domain, extension)

    def call_variables(self) -> list[str]:
        """The bridge's variables every agent leg of this call gets."""
        c = self.call
        return [
            f"originate_timeout={c.group.group_callout_timeout}",
            # the relay on another node rings the phone no longer than this either
            f"{RING_TIMEOUT_HEADER}={c.group.group_callout_timeout}",
            # the call's id for the phone's leg on another node (fsapps.events.cstafeed)
            f"{CALL_HEADER}={c.uuid}",
            "ignore_early_media=true",
            f"origination_caller_id_number={safe_part(c.caller)}",
            f"{ACD_CALL_VAR}={c.uuid}",
            f"{ACD_GROUP_VAR}={c.group.group_number}", f"{DOMAIN_VAR}={c.domain}",
            f"{ACD_LEVEL_VAR}={c.level}", f"{ACD_ARRIVED_VAR}={c.arrived_ms}",
            f"{LEG_VAR}=nwayacd",
        ]

    @staticmethod
    def agent_variables(extension: str, leg: str) -> list[str]:
        """The variables of one agent's leg: whose it is, and its name - given before it
        exists: recorded with the ring, the agent is free again only once the switch has told
        that leg's end (agents.py)."""
        return [f"{ACD_AGENT_VAR}={extension}", f"origination_uuid={leg}"]

    def observe_decision(self) -> None:
        """The call's first agent is about to ring: how long since the caller was answered (or
        arrived), the decision latency ``make bench-switch`` compares (fsapps_node_decision
        in /metrics), with a resolution the switch's events do not have."""
        if not self.decided:
            self.decided = True
            since = self.answered_at or self.call.arrived_ms / 1000
            metrics.observe("decision_ms", max(0.0, (time.time() - since) * 1000),
                            self.call.node)

    def offer_all(self, rung: list[tuple[str, Rung]], messages: Any) -> bool:
        """ring_all: ring every agent the reservation reserved at once, one bridge whose legs
        are separated by ``,`` (FreeSWITCH rings them together; the first to answer wins, the
        others are hung up with LOSE_RACE). Each agent not connected is released in its own
        script - none stays reserved. True when the call is over (answered, or the caller
        went away); False to try again."""
        self.observe_decision()
        c = self.call
        s = self.session
        legs = {r.leg: ext for ext, r in rung}
        dial = ",".join(with_leg_variables(
            dial_target(self.ctx, c.domain, ext, c.node, r.reg_node),
            self.agent_variables(ext, r.leg)) for ext, r in rung)
        for ext, _ in rung:
            self.agent_event("callout", ext, messages)
        send_messages(messages)
        s.setVariable("continue_on_fail", "true")
        s.setVariable("hangup_after_bridge", "false")
        rang = time.time()
        s.execute("bridge", f"{{{','.join(self.call_variables())}}}{dial}")
        ended = time.time()
        disposition = s.getVariable("originate_disposition") or "NONE"
        winner = ""
        again = all(ext in c.tried for ext, _ in rung)
        if disposition == "SUCCESS":
            hang_up(s, "NORMAL_CLEARING")
            winner = legs.get(s.getVariable("bridge_uuid") or "") or \
                legs.get(s.getVariable("last_bridge_to") or "") or ""
            if not winner:  # (the runtime made the answering agent talking for this call)
                winner = next((ext for ext, _ in rung if (a := self.agents.get(ext))
                               and a.call_state == "talking" and a.offer_uuid == c.uuid), "")
        gone = disposition == "ORIGINATOR_CANCEL" or not is_up(s) and not winner
        for ext, _ in rung:
            if ext == winner:
                continue
            if disposition == "SUCCESS" or gone:
                # lost the race (or the caller left): its leg is cancelled; ready again
                lost = "LOSE_RACE" if winner else "ORIGINATOR_CANCEL"
                self.attempted(ext, rang, lost, ended, cause=lost)
                self.agents.release(ext, c.uuid, "cancel")
            else:
                self.attempted(ext, rang, disposition, ended)
                self.agent_event("noanswer", ext)
                released = self.agents.release(
                    ext, c.uuid, "missed", max_no_answer=c.group.no_answer_limit(self.defaults))
                if ext not in c.tried:
                    c.tried.append(ext)
                if released is None or released.state != "ready":
                    continue
            agent_available(self.ctx, c.domain, ext)
        if winner:
            self.attempted(winner, rang, disposition, ended)
            self.finished(winner)
            return True
        if gone or disposition == "SUCCESS":
            raise CallerGone()
        log("INFO", f"nwayacd: none of agents {', '.join(legs.values())} took call {c.uuid} "
                    f"({disposition})")
        if again:  # (as offer(): no tight loop over phones that refuse at once)
            self.hold_music(c.group.music(self.defaults), RETRY_PAUSE_SECONDS)
        return False

    def offer(self, extension: str, rung: Rung | None = None, messages: Any = None) -> bool:
        """Ring the reserved agent (``rung``: the reservation rang it already, on that leg;
        ``messages``: pub/sub messages to send with the callout event). True when the call is
        over (answered, or the caller went away); False to try the next agent."""
        self.observe_decision()
        c = self.call
        s = self.session
        leg = rung.leg if rung is not None else str(uuidlib.uuid4())
        variables = ",".join([*self.call_variables(),
                              *self.agent_variables(extension, leg)])
        # Say which node holds the reservation (the reconciler checks) — if it is still ours:
        # a reconciler that found the caller gone, or a lease that ran out, may have freed the
        # agent and another call reserved it since. Ringing then would offer the agent two
        # calls at once. The lease starts again with the ring: it was counted from the
        # reservation, and a handler woken late (a break before its hold music started: a
        # whole segment) may ring after it ran out; an expired lease would leave the ringing
        # agent - answered, until the runtime writes talking - free for any other call.
        if rung is not None:
            endpoint = dial_target(self.ctx, c.domain, extension, c.node, rung.reg_node)
        elif (reg_node := self.agents.ringing(extension, c.uuid, c.node,
                                              now_ms() + self.lease_ms, leg)) is not None:
            endpoint = dial_target(self.ctx, c.domain, extension, c.node, reg_node)
        else:
            log("INFO", f"nwayacd: agent {extension}'s reservation for call {c.uuid} was "
                        "released before it rang; not ringing")
            if messages is not None:
                send_messages(messages)  # (the caller left the queue all the same)
            self.guard()
            return False
        messages = messages if messages is not None else publish_pipeline(self.ctx.redis)
        self.agent_event("callout", extension, messages)
        send_messages(messages)
        s.setVariable("continue_on_fail", "true")
        s.setVariable("hangup_after_bridge", "false")
        rang = time.time()
        s.execute("bridge", f"{{{variables}}}{endpoint}")
        ended = time.time()
        disposition = s.getVariable("originate_disposition") or "NONE"
        if disposition == "SUCCESS":
            # The caller goes the moment the bridge ends: the bookkeeping after it (CDR
            # attempt, memory, wrap-up, events) needs Redis and the GIL, which a loaded
            # switch grants late, and must not keep a finished call's channel up meanwhile.
            hang_up(s, "NORMAL_CLEARING")
            self.attempted(extension, rang, disposition, ended)
            self.finished(extension)
            return True
        self.attempted(extension, rang, disposition if is_up(s) else "ORIGINATOR_CANCEL",
                       ended)
        if disposition == "ORIGINATOR_CANCEL" or not is_up(s):
            self.agents.release(extension, c.uuid, "cancel")
            agent_available(self.ctx, c.domain, extension)
            raise CallerGone()
        outcome = _FAILURES.get(disposition, "missed")
        if outcome == "unregistered" and endpoint.startswith("user/") and \
                self.agents.reg_node(extension) not in ("", c.node):
            # Rung on this node because its own node's relay address was unknown (a heartbeat
            # late on a loaded machine): the phone is registered there, not gone. Marked unreg,
            # every agent of that node was lost to the queue for good (a stalled queue).
            outcome = "cancel"
        log("INFO", f"nwayacd: agent {extension} did not take call {c.uuid} ({disposition})")
        self.agent_event("noanswer", extension)
        # One script: no_answer, then ready or busy (max_no_answer misses in a row).
        released = self.agents.release(extension, c.uuid, outcome,
                                       max_no_answer=c.group.no_answer_limit(self.defaults))
        again = extension in c.tried
        if not again:
            c.tried.append(extension)
        if released is not None and released.state == "ready":
            agent_available(self.ctx, c.domain, extension)
        if again:
            # Only agents who failed this call already were free (a phone that refuses at
            # once would be rung in a tight loop): hold music for a moment, then try again.
            self.hold_music(c.group.music(self.defaults), RETRY_PAUSE_SECONDS)
        return False

    def attempted(self, extension: str, rang: float, disposition: str, ended: float,
                  cause: str = "") -> None:
        """Note the attempt for the CDR (``ended``: when the bridge returned). An answered
        one: the answer time and the agent's leg are what the runtime wrote on the agent's
        CHANNEL_ANSWER (still ``talking`` for this call: the wrap-up starts after this), else
        the bridge's start and ``bridge_uuid``."""
        s = self.session
        answer = None
        leg = ""
        if disposition == "SUCCESS":
            agent = self.agents.get(extension)
            if agent is not None and agent.call_state == "talking" and \
                    agent.offer_uuid == self.call.uuid and agent.last_change:
                answer = agent.last_change / 1000
                leg = agent.agent_leg
            answer = answer or rang
            leg = leg or s.getVariable("bridge_uuid") or s.getVariable("last_bridge_to") or ""
        cause = cause or cdr.attempt_cause(s, disposition)
        self.attempts.append(cdr.Attempt(
            attempt_no=len(self.attempts) + 1, extension=extension, start=rang, answer=answer,
            end=ended, result=attempt_result(disposition),
            hangup_cause=cause, leg_uuid=leg))

    def call_record(self, a_start: float) -> cdr.Cdr:
        """The call's CDR draft, from the attempts (the caller's channel hung up, or
        transferred away, by now)."""
        c = self.call
        s = self.session
        answered = next((a for a in self.attempts if a.result == "answered"), None)
        missed = []
        for attempt in self.attempts:
            if attempt.result != "answered" and attempt.extension not in missed:
                missed.append(attempt.extension)
        if answered is not None:
            flag = cdr.FLAG_ANSWERED
        elif self.callback_requested:
            flag = callbacks.FLAG_REQUESTED
        elif self.timed_out:
            flag = cdr.FLAG_QUEUE_TIMEOUT
        elif not missed:
            flag = cdr.FLAG_ABANDONED
        else:
            flag = cdr.FLAG_ONE_NO_ANSWER if len(missed) == 1 else cdr.FLAG_MANY_NO_ANSWER
        # the agent who answered; else, as in the seed, the last agent rung
        agent = answered or (self.attempts[-1] if self.attempts else None)
        return caller_cdr(
            self.ctx, s, c.uuid, c.caller, c.group.group_number, c.domain, c.node, c.level,
            a_start, flag, missed, agent, tuple(self.attempts), a_answer=self.answered_at,
            dialled=c.dialled, hang_up_caller=self.left_to is None)

    def record(self, a_start: float) -> None:
        """Leave the call's CDR draft on the channel, for the runtime to complete when the
        channel's hangup completes (cdrspool.record_own never raises)."""
        record = self.call_record(a_start)
        answered = next((a for a in self.attempts if a.result == "answered"), None)
        cdrspool.record_own(self.ctx, self.session, record, "nwayacd", started=a_start,
                       party_answered=answered is not None,
                       party_leg=answered.leg_uuid if answered else "")
        if answered is None:
            self.count_unanswered()

    # ------------------------------------------------------------ queue statistics -------
    # (fsapps.domain.stats: the runtime counts the answers, at the agent leg's CHANNEL_ANSWER)
    def count_offered(self, messages: Any) -> None:
        """The call entered its group: counted once, on the pipeline of its first messages
        (no round trip of its own; Redis Cluster refuses other keys on that one-node
        pipeline, so there it is sent apart)."""
        if self.offered_counted:
            return
        self.offered_counted = True
        c = self.call
        metrics.count("calls_routed", node=c.node)
        QueueStats(self.ctx, c.domain).record(
            c.group.group_number, stats.OFFERED, c.arrived_ms,
            pipeline=None if self.ctx.settings.redis.cluster else messages)

    def count_unanswered(self) -> None:
        """The caller left without an agent answering: abandoned, or ended by the long-wait
        policy. After the call (the caller is gone): a failure is only logged."""
        if not self.offered_counted:
            return
        c = self.call
        try:
            QueueStats(self.ctx, c.domain).record(
                c.group.group_number, stats.TIMED_OUT if self.timed_out else stats.ABANDONED,
                now_ms(), now_ms() - c.arrived_ms)
        except Exception as exc:
            log("ERR", f"nwayacd: call {c.uuid} not counted in the statistics: "
                       f"{type(exc).__name__}: {exc}")

    def count_handled(self, extension: str) -> None:
        """The answered call's handling time (its talk, as the attempt recorded it, plus the
        group's wrap-up) for the estimated wait of the callers after it. Only logged on a
        failure: the call is over."""
        c = self.call
        answered = next((a for a in reversed(self.attempts)
                         if a.extension == extension and a.answer), None)
        if answered is None or not answered.end:
            return
        talk_ms = int((answered.end - answered.answer) * 1000) if answered.answer else 0
        try:
            QueueStats(self.ctx, c.domain).record_handled(
                c.group.group_number, now_ms(),
                max(0, talk_ms) + c.group.wrapup(self.defaults) * 1000)
        except Exception as exc:
            log("ERR", f"nwayacd: call {c.uuid}'s handling time not counted: "
                       f"{type(exc).__name__}: {exc}")

    def finished(self, extension: str) -> None:
        """The agent answered and the bridge is over (the caller hung up already): the
        agent's "hangup" event and the caller's memory in one round trip, then the wrap-up.
        The agent is free from the wrap-up on, so nothing else comes before it: at 500 agents
        x 40 calls/s, hundreds of agents whose calls had ended waited seconds for their
        handlers' round trips (docs/performance-switch.md). The handling time is counted
        after."""
        c = self.call
        messages = publish_pipeline(self.ctx.redis)
        self.agent_event("hangup", extension, messages)
        # (Redis Cluster refuses other keys on the publishing pipeline: there apart)
        self.groups.remember(c.group.group_number, c.caller, extension,
                             pipeline=None if self.ctx.settings.redis.cluster else messages)
        send_messages(messages)
        if self.agents.start_wrapup(extension, c.uuid, c.group.wrapup(self.defaults)):
            agent_available(self.ctx, c.domain, extension)
        self.count_handled(extension)


def caller_cdr(ctx: Context, session: Any, uuid: str, caller: str, group_number: str,
               domain: str, node: str, level: str, a_start: float, flag: str,
               missed: list[str], agent: cdr.Attempt | None,
               attempts: tuple[cdr.Attempt, ...] = (), *,
               a_answer: float | None = None, dialled: str = "",
               hang_up_caller: bool = True) -> cdr.Cdr:
    """A queue call's CDR draft: the agent part from ``agent``, the caller's times as this
    handler saw them (``a_start`` when it took the call, ``a_answer`` when it answered, now
    as the end). Inside the handler FreeSWITCH has not set the caller's ``answer_uepoch``,
    ``billsec``, ``hangup_cause``, ``sip_hangup_disposition`` yet (its hangup state does,
    after the handler returns): the runtime puts the switch's values in
    (:func:`fsapps.events.cdr.complete`). ``dialled``: what the caller dialled, read when the call
    arrived — after a transfer the channel's ``destination_number`` is the transfer's.
    ``hang_up_caller`` False: the caller left the queue for another destination and goes on
    (the record's end is when it left)."""
    if hang_up_caller:
        hang_up(session, "NORMAL_CLEARING")
    a_end = time.time()
    # the bridge returns a moment after the caller's hangup: the agent's part ends with it
    end = min(agent.end, a_end) if agent and agent.end else None
    return cdr.Cdr(
        uuid=uuid, is_callout=False, a_caller_id_number=caller,
        a_destination_number=dialled or group_number, a_start=a_start, a_answer=a_answer,
        a_end=a_end,
        a_record_file=session.getVariable(RECORD_FILE_VAR) or "",
        no_answer_agents=tuple(missed),
        destination_number=agent.extension if agent else "",
        start=agent.start if agent else None, answer=agent.answer if agent else None,
        end=end, flag=flag, group_number=group_number,
        domain=domain, level=level, node=node, attempts=attempts)


@dataclass(frozen=True)
class Rung:
    """A reservation that rang the agent in the same step (agent_reserve.lua)."""

    leg: str       # the uuid the agent's leg gets
    reg_node: str  # the node the agent's phone is registered on


def with_leg_variables(endpoint: str, variables: list[str]) -> str:
    """``endpoint`` with per-leg ``[...]`` variables (merged into the ones it has: a relay
    target carries its own)."""
    if endpoint.startswith("["):
        return f"[{','.join(variables)},{endpoint[1:]}"
    return f"[{','.join(variables)}]{endpoint}"


def send_messages(messages: Any) -> None:
    """Send the pub/sub messages queued on ``messages``; a failure is logged (a message lost
    must not end the call)."""
    try:
        messages.execute()
    except Exception as exc:
        log("ERR", f"nwayacd: messages not published: {type(exc).__name__}: {exc}")


def agent_endpoint(ctx: Context, domain: str, extension: str, node: str) -> str:
    """Where to ring an agent's phone from ``node`` (this one).

    ``user/<ext>@<domain>`` when the phone is registered on this node (or on none: the switch
    then answers USER_NOT_REGISTERED). A phone registered on another live node is rung through
    that node: ``[sip_h_X-FSAPPS-Domain=<domain>]sofia/<relay_profile>/fsapps_agent_<ext>@
    <host:port>`` — sent from this node's relay profile to the address the other node's
    relay profile listens on (its heartbeat's ``relay``: read from its switch, not the
    machine's FreeSWITCH-IPv4, which need not be where SIP listens). There it lands in that
    profile's context, whose ``fsapps_agent_relay`` extension (dialplan/10_fsapps_acd.xml)
    rings the local user of the domain the header names. When that node has no relay address (it
    stopped beating, or never reported one) the phone is unreachable from here: ``user/``,
    which fails at once, and a warning."""
    return dial_target(ctx, domain, extension, node, Agents(ctx, domain).reg_node(extension))


def dial_target(ctx: Context, domain: str, extension: str, node: str, reg_node: str) -> str:
    """:func:`agent_endpoint` for a phone known to be registered on ``reg_node``: no round
    trip when that is this node (or none), at most one a second per node otherwise (the relay
    address as this process last read it, :meth:`Nodes.recent_relay_address`)."""
    if not reg_node or reg_node == node:
        return f"user/{extension}@{domain}"
    relay = Nodes(ctx).recent_relay_address(str(reg_node))
    if relay is None:
        log("NOTICE", f"agent {extension}@{domain} is registered on node {reg_node}, which "
                       "reports no relay address (gone, or its relay profile "
                       f"{ctx.settings.relay_profile!r} is not running); not reachable from "
                       f"node {node}")
        return f"user/{extension}@{domain}"
    return (f"[{RELAY_DOMAIN_HEADER}={domain}]sofia/{ctx.settings.relay_profile}/"
            f"{RELAY_PREFIX}{extension}@{relay}")


def agent_available(ctx: Context, domain: str, extension: str) -> str | None:
    """The agent may be free now: reserve it for the best waiting call of its groups and wake
    that call's handler through its node. Returns the call uuid offered, if any."""
    offered = agents_available(ctx, domain,
                               {extension: Agents(ctx, domain).groups_of(extension)})
    return offered[0] if offered else None


def agents_available(ctx: Context, domain: str, freed: dict[str, list[str]],
                     wake_here: Callable[[str, str], None] | None = None,
                     taken: Sequence[tuple[str, str, WaitingCall | None]] = ()) -> list[str]:
    """:func:`agent_available` for agents freed together (extension -> its groups: the leg
    ends of one batch): each takes the best waiting call left (one script each, in turn, in
    one round trip, each telling its ring itself), then the callers are woken. ``wake_here``
    (the runtime's :meth:`~fsapps.switch.runtime.NodeRuntime.wake`) wakes a caller of this
    node at once, with no node command: no second round trip and no hop through the command
    thread, each a wait for the GIL on a loaded switch; the others' nodes get a command.
    ``taken``: calls agents took already (their leg ends' scripts offered them: woken
    here the same way). Returns the call uuids offered."""
    if not freed and not taken:
        return []
    started = metrics.start()
    taken = [*taken, *(Agents(ctx, domain).take_waiting_calls(freed) if freed else ())]
    node = node_name(ctx) if taken else ""
    sends = ctx.redis.pipeline(transaction=False)
    for extension, uuid, waiting in taken:
        metrics.stop("dispatch_decision", started, node)
        if wake_here is not None and waiting is not None and not waiting.callback and \
                waiting.node == node:
            try:
                wake_here(uuid, extension)
                continue
            except Exception as exc:  # (the node command below wakes it instead)
                log("ERR", f"nwayacd: call {uuid} not woken for agent {extension} here: "
                           f"{type(exc).__name__}: {exc}")
        wake_handler(ctx, uuid, waiting, extension, sends, domain=domain)
    if len(sends):
        sends.execute()
    return [uuid for _, uuid, _ in taken]


def wake_handler(ctx: Context, uuid: str, waiting: WaitingCall | None, extension: str,
                 pipeline: Any = None, domain: str = "") -> None:
    """The agent ``extension`` reserved itself for the waiting call ``uuid``: the node that
    holds the call breaks its hold music, naming the agent, so its handler rings it now
    without asking Redis. A callback's entry (nobody on the line): the node the caller was
    on - or, that node gone, this one or any live one - places it (its runtime's ``callback``
    command, :func:`fsapps.switch.callback.place`). ``pipeline``: the command is queued on it
    (the caller sends it)."""
    if waiting is not None and waiting.callback:
        nodes = Nodes(ctx)
        alive = nodes.alive()
        here = node_name(ctx)
        node = waiting.node if waiting.node in alive else \
            here if here in alive else min(alive, default=waiting.node)
        nodes.send(node, "callback", pipeline=pipeline, uuid=uuid, agent=extension,
                   domain=domain or ctx.settings.default_domain)
        return
    if waiting is not None and waiting.node:
        Nodes(ctx).send(waiting.node, "break", pipeline=pipeline, uuid=uuid, agent=extension)


def lease_ms(ctx: Context, ring_seconds: int) -> int:
    """How long a reservation holds: the ring timeout plus the configured margin."""
    return (ring_seconds + ctx.settings.group_defaults.lease_margin_seconds) * 1000


_NODE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
# a switch run's core_uuid -> its name (one switch in a real process; several in fakefs)
_switch_names: dict[str, str] = {}


def node_name(ctx: Context) -> str:
    """This node's name: the settings' ``node_name``, else FreeSWITCH's own name for itself
    (the ``switchname`` api: switch.conf's ``switchname`` param, else the host name). There is
    no ``switchname`` global variable in FreeSWITCH 1.10 unless vars.xml sets one, so nodes
    that read it were all called the same. Outside a switch: the host name."""
    if ctx.settings.node_name:
        return ctx.settings.node_name
    core = ""
    try:
        import freeswitch

        # Asked once per switch run (its core_uuid), not on every call: the api holds the GIL
        # and is one more command per call for the switch.
        core = str(freeswitch.getGlobalVariable("core_uuid") or "")
        if core in _switch_names:
            return _switch_names[core]
        name = str(freeswitch.API().executeString("switchname") or "").strip()
    except (ImportError, RuntimeError, AttributeError):
        name = ""
    if not _NODE_NAME.match(name):
        name = socket.gethostname().split(".")[0] or "fs"
    if core:
        _switch_names[core] = name
    return name


def route_call(session: Any, args: str, overflowed: int = 0,
               ring_extension: Callable[[Any, str], None] | None = None) -> None:
    """``python fsapps.nwayacd <group>``: route the call on ``session`` into ``group``.
    A caller leaving the queue on the group's terms goes on from here (:func:`take_to`):
    ``overflowed`` counts the groups it overflowed from, ``ring_extension`` rings an
    extension as ``nway_bridge`` does (the entry module passes it: that module imports this
    one)."""
    ctx = get_context()
    group_number = (args or "").split()[0] if (args or "").split() else ""
    if not _SAFE.match(group_number):
        log("ERR", f"nwayacd: bad or missing group {group_number!r}; usage: nwayacd <group>")
        session.hangup("UNALLOCATED_NUMBER")
        return
    domain = session.getVariable("domain_name") or ctx.settings.default_domain
    if not _SAFE.match(domain):
        domain = ctx.settings.default_domain
    raw_caller = session.getVariable("caller_id_number") or ""
    caller = safe_part(raw_caller)
    dialled = session.getVariable("destination_number") or group_number
    started = metrics.start()
    facts = Groups(ctx, domain).routing_facts(group_number, caller)
    if facts.group is None:
        log("ERR", f"nwayacd: unknown group {group_number!r} in domain {domain!r}")
        session.hangup("UNALLOCATED_NUMBER")
        return
    group = facts.group
    if facts.blacklisted:
        log("NOTICE", f"nwayacd: caller {caller} is blacklisted in group {group_number}")
        a_start = time.time()
        answered = None
        if group.blacklist_action == "playback" and group.black_list_ring:
            session.execute("answer", "")  # (lets go of the GIL, as below)
            answered = time.time()
            session.execute("playback", group.black_list_ring)
        session.hangup("CALL_REJECTED")
        cdrspool.record_own(ctx, session, caller_cdr(
            ctx, session, session.get_uuid(), caller, group_number, domain, node_name(ctx),
            routing.LEVEL_VIP if facts.vip else routing.LEVEL_NORMAL, a_start,
            cdr.FLAG_BLACKLISTED, [], None, a_answer=answered, dialled=dialled), "nwayacd",
            started=a_start)
        return
    uuid = session.get_uuid()
    call = QueueCall(uuid=uuid, node=node_name(ctx), domain=domain, group=group, caller=caller,
                     real_number=raw_caller, level=routing.LEVEL_VIP if facts.vip
                     else routing.LEVEL_NORMAL, arrived_ms=now_ms(), dialled=dialled,
                     skills=required_skills(session.getVariable(SKILLS_VAR), uuid, group_number))
    router = Router(ctx, session, call)
    router.decision_started = started
    a_start = time.time()
    try:
        # the answer application, not CoreSession.answer(): mod_python3 holds the GIL through
        # answer() - every Python thread of the switch stood still while a caller was
        # answered (45-65 % of the handlers' GIL time at 500 agents x 40 calls/s,
        # docs/performance-switch.md); execute() lets go of it.
        session.execute("answer", "")
        router.answered_at = time.time()
        if group.welcome_ring and not overflowed:
            session.execute("playback", group.welcome_ring)
        remembered = facts.remembered if group.mode.uses_memory else None
        try:
            router.run(facts.members, remembered)
        except CallerGone:
            router.leave_queue()
    finally:
        # once per call, whatever ended it (cdrspool.record_own never raises)
        router.record(a_start)
    if router.left_to is not None:
        take_to(ctx, session, router.left_to, overflowed, ring_extension)


def take_to(ctx: Context, session: Any, destination: Destination, overflowed: int,
            ring_extension: Callable[[Any, str], None] | None) -> None:
    """The caller left its group's queue (max wait, exit key) for ``destination``: another
    group's queue (at most MAX_GROUP_HOPS groups a call: groups overflowing into each other
    would keep it forever), an extension rung as nway_bridge does, or the dialplan
    (``transfer``: the handler returns and the switch routes the call there)."""
    if not is_up(session):
        return
    if destination.kind == "group":
        if overflowed + 1 >= MAX_GROUP_HOPS:
            log("WARNING", f"nwayacd: call {session.get_uuid()} overflowed through "
                           f"{overflowed + 1} groups; hanging up instead of entering group "
                           f"{destination.target}")
            hang_up(session, "NORMAL_CLEARING")
            return
        route_call(session, destination.target, overflowed + 1, ring_extension)
    elif destination.kind == "extension" and ring_extension is not None:
        ring_extension(session, destination.target)
    elif destination.kind == "dialplan":
        session.execute("transfer", destination.target)
    else:
        hang_up(session, "NORMAL_CLEARING")


def required_skills(raw: str | None, uuid: str, group_number: str) -> list[tuple[str, int]]:
    """The skills the call requires, from its ``fsapps_skills`` variable: none when unset;
    a malformed value is logged (naming the call and what was wrong) and ignored - the call
    routes as one without skills rather than not at all."""
    try:
        return skills.parse_skills(raw)
    except BadInput as exc:
        log("WARNING", f"nwayacd: call {uuid} to group {group_number}: {SKILLS_VAR} "
                       f"{str(raw)[:80]!r} ignored: {exc}")
        return []


# ---------------------------------------------------------------------- agent operations ---
# What agent_up / agent_down / agent_ready / agent_busy (REST) and nway_login / nway_logout /
# nway_ready / nway_busy (api) do; each ends by offering the agent a waiting call if it is
# free now.

def login(ctx: Context, domain: str, extension: str, groups: list[str]) -> list[str]:
    """The agent joins exactly ``groups`` (seed ``Groups: "12345,110"``), idle and ready."""
    agents = Agents(ctx, domain)
    agents.ensure(extension)
    joined = Groups(ctx, domain).login(extension, groups)
    set_ready(ctx, domain, extension)
    return joined


def logout(ctx: Context, domain: str, extension: str) -> None:
    """The agent leaves all its groups; it gets no more queue calls."""
    agents = Agents(ctx, domain)
    agents.ensure(extension)
    Groups(ctx, domain).login(extension, [])
    agents.set_seat(extension, "busy")


def set_ready(ctx: Context, domain: str, extension: str) -> bool:
    """Seat idle and call state ready (ending a wrap-up early), and a waiting call offered at
    once (:func:`make_ready`). False when the agent is on a call (it becomes ready when the
    call ends), or its extension is disabled (nothing changes)."""
    return make_ready(ctx, domain, extension).done


def make_ready(ctx: Context, domain: str, extension: str) -> Ready:
    """:func:`set_ready`, answering what happened: one script (:meth:`Agents.make_ready`)
    after reading the agent's groups, then the offered call's handler woken."""
    started = metrics.start()
    ready = Agents(ctx, domain).make_ready(extension)
    if ready.offered:
        metrics.stop("dispatch_decision", started, node_name(ctx))
        wake_handler(ctx, ready.offered, ready.waiting, extension, domain=domain)
    return ready


def set_busy(ctx: Context, domain: str, extension: str) -> None:
    """Seat busy: no queue calls; the call state says busy unless the agent is on a call."""
    Agents(ctx, domain).make_busy(extension)
