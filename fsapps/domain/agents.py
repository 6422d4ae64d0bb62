"""Agents: an extension (with optional job number) of a domain that logs into groups and
takes queue calls. Its live state is one Redis hash, and this module (with its Lua scripts) is
the only code that writes it: the ACD, nway_bridge, nwaycallout, groups, extensions, the
working-set rebuild and every front end go through :class:`Agents`
(tests/test_agent_writers.py fails on any other writer). The one other write is a rollback,
not a change: when the PostgreSQL commit of a change that also wrote Redis fails,
:class:`fsapps.domain.groups.RedisUndo` puts back the agent fields it captured just before.

One lifecycle for every call that reaches an agent (the ACD, nway_bridge, nwaycallout, and
the front ends' ready / busy): reserve (:meth:`Agents.reserve_or_queue`,
:meth:`Agents.take_waiting_call`, a direct call's :meth:`Agents.reserve_direct`) → ring
(:meth:`Agents.ringing`) → answered (:meth:`Agents.answered`: talking) / missed
(:meth:`Agents.release` "missed": no_answer, then ready or busy, in one script) / cancelled
(:meth:`Agents.release` "cancel") → wrap-up (:meth:`Agents.start_wrapup`: typing) → ready
(:meth:`Agents.end_due_wrapups`, :meth:`Agents.make_ready`). Every script that changes
``call_state`` applies the one transition table (``fsapps/store/lua/include/agent_rules.lua``,
equal to :data:`fsapps.domain.agent_state.TRANSITIONS` — a test checks); the agent's moves
are published on ``agent_<number>`` by the script that makes them, in the same step
(``include/agent_announce.lua``: agent_ready, agent_busy, agent_release, agent_transition,
agent_wrapup, wrapup_end), save the "ring" of agent_reserve / agent_dispatch, published after
their script (with the caller's messages); availability for a queue offer is one rule,
``agent_free`` in the same snippet (:meth:`Agent.available` is its Python twin for reports,
checked against it).

The agent module's scripts (``fsapps/store/lua``): agent_reserve, agent_dispatch,
agent_ready, agent_busy, agent_release, agent_transition, agent_wrapup, wrapup_end,
agent_remove, agent_unregister, agent_reg_expire, agent_leg_end (:data:`SCRIPTS`).

Keys (``p`` prefix, ``d`` domain; see :mod:`fsapps.store.keys`):

``p:{d}:agent:<ext>``  hash  no expiry. Fields: extension, domain, job_number, enabled
    ("0": the extension is disabled, its seat kept busy: no queue calls; absent = enabled),
    logged_in ("1"/"0"), groups (comma list), reg_state (reged/unreg), seat_status (idle/busy),
    reg_node / reg_host (the node the phone registered on, and that node's relay address
    ``host:port`` when it registered — informational: other nodes ring the phone at the
    relay address of reg_node's live heartbeat, :func:`fsapps.switch.acd.agent_endpoint`), reg_until
    (ms when that registration runs out unless renewed: the REGISTER's expires) / reg_stamp
    (the Event-Date-Timestamp of its sofia::register, naming that registration's live state),
    call_state (:class:`~fsapps.domain.agent_state.CallState`), last_change (ms of the last
    call-state
    change), no_answer_count (offers missed in a row), offer_uuid / offer_node / lease_until
    (the reservation: which call, which node, until when in ms), agent_leg (uuid of the
    agent's channel for the call it holds, named by the ring), leg_pending / leg_node (the
    agent's last leg, and the node it is a channel of, until the switch has told its end: the
    agent is not free before - offered the next call while the switch still ended the last,
    its phone would have two; kept after the offer ends, unlike agent_leg), wrapup_until
    (ms); for the strategies (routing.STRATEGIES, ordered in agent_reserve.lua):
    idle_since (ms: the end of its last call - agent_wrapup - or its return from a pause,
    logout or a missed offer - agent_ready, agent_release), stats_day / calls_today /
    talk_ms_today (its calls ended today and their talk time, counted by agent_wrapup; a
    stats_day other than today counts as 0); skills (``name:level,...``, ext_skill: a call
    requiring skills goes only to agents that have them, :mod:`fsapps.domain.skills`).
``p:{d}:agents``       set   the extensions that have an agent hash.
``p:{d}:wrapups``      zset  extensions in wrap-up, score = when it ends (ms).
``p:{d}:group:<g>:members``  zset  (owned by :mod:`fsapps.domain.groups`) updated on login/logout.
``p:{d}:offers`` / ``p:{d}:waiting`` / ``p:{d}:group:<g>:queue``  (owned by
    :mod:`fsapps.domain.callqueue`) changed with the agent by the scripts that reserve it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fsapps.context import Context, now_ms
from fsapps.domain.agent_state import CallState, IllegalTransition, parse
from fsapps.domain.callqueue import Reservation, WaitingCall
from fsapps.domain.routing import queue_score, stats_day
from fsapps.events.pubsub import stamp
from fsapps.fslog import log
from fsapps.store import hash_fields
from fsapps.store.scripts import ScriptCall, arun_script, run_script, run_scripts

# The Lua scripts that write the agent hash: with this module, the agent's only writers.
SCRIPTS = ("agent_reserve", "agent_dispatch", "agent_ready", "agent_busy", "agent_release",
           "agent_transition", "agent_wrapup", "wrapup_end", "agent_remove",
           "agent_unregister", "agent_reg_expire", "agent_leg_end")
# Its scripts that only read the agent hashes (run by the CTI server's event loop).
READ_SCRIPTS = ("agent_rows",)
# The states a manual "ready" may leave: never ring, talking or ivr (a ready agent on a call
# would be offered a second one; it becomes ready when the call ends).
READY_FROM = ("ready", "typing", "no_answer", "busy", "rest", "no_ready")
# The states a direct call (nway_bridge, nwaycallout) may reserve the agent from: anything
# but on or ringing for another call (no_answer: its last offer is still being settled).
FREE_FOR_DIRECT = ("ready", "typing", "busy", "rest", "no_ready")

# transition()'s offer_uuid meaning "only while the agent holds no call"
NO_CALL = "-"

FIELDS = ("extension", "domain", "job_number", "enabled", "logged_in", "groups", "reg_state",
          "reg_node", "reg_host", "reg_until", "reg_stamp",
          "seat_status", "call_state", "last_change", "no_answer_count", "offer_uuid",
          "offer_node", "lease_until", "agent_leg", "leg_pending", "leg_node", "wrapup_until")


@dataclass(frozen=True)
class Agent:
    extension: str
    domain: str
    job_number: str = ""
    enabled: bool = True
    logged_in: bool = False
    groups: tuple[str, ...] = ()
    reg_state: str = "unreg"
    reg_node: str = ""
    reg_host: str = ""
    reg_until: int = 0
    seat_status: str = "busy"
    call_state: str = "ready"
    last_change: int = 0
    no_answer_count: int = 0
    offer_uuid: str = ""
    offer_node: str = ""
    lease_until: int = 0
    agent_leg: str = ""
    leg_pending: str = ""
    leg_node: str = ""
    wrapup_until: int = 0
    skills: str = ""  # name:level,... (fsapps.domain.skills)

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> Agent:
        return cls(
            extension=data.get("extension", ""), domain=data.get("domain", ""),
            job_number=data.get("job_number", ""), enabled=data.get("enabled") != "0",
            logged_in=data.get("logged_in") == "1",
            groups=tuple(g for g in data.get("groups", "").split(",") if g),
            reg_state=data.get("reg_state", "unreg"), reg_node=data.get("reg_node", ""),
            reg_host=data.get("reg_host", ""),
            reg_until=int(data.get("reg_until") or 0),
            seat_status=data.get("seat_status", "busy"),
            call_state=data.get("call_state", "ready"),
            last_change=int(data.get("last_change") or 0),
            no_answer_count=int(data.get("no_answer_count") or 0),
            offer_uuid=data.get("offer_uuid", ""), offer_node=data.get("offer_node", ""),
            lease_until=int(data.get("lease_until") or 0),
            agent_leg=data.get("agent_leg", ""), leg_pending=data.get("leg_pending", ""),
            leg_node=data.get("leg_node", ""),
            wrapup_until=int(data.get("wrapup_until") or 0),
            skills=data.get("skills", ""))

    def available(self, now: int) -> bool:
        """Could a queue call be offered to this agent now? The same rule as ``agent_free``
        in ``fsapps/store/lua/include/agent_rules.lua`` (tests/test_agent_writers.py checks
        both on the same hashes), for reports; reservations themselves are decided in Redis."""
        # (``now`` is kept for the callers: a lease that ran out no longer frees an agent)
        return (self.enabled and self.logged_in and self.reg_state == "reged"
                and self.seat_status == "idle" and self.call_state == "ready"
                and not self.leg_pending)


# agent key -> the groups this process last saw the agent logged into: make_ready passes
# their keys to agent_ready.lua without reading them first (one round trip, not two). Only a
# hint: the script compares it with the hash and says when it is stale (then read again).
_GROUPS_SEEN: dict[str, tuple[str, ...]] = {}
_GROUPS_SEEN_MAX = 100_000
NO_OFFER = "-"  # agent_leg_end.lua: offer the agent nothing (its caller does)


def _remember_groups(key: str, groups: list[str]) -> None:
    if len(_GROUPS_SEEN) >= _GROUPS_SEEN_MAX:
        _GROUPS_SEEN.clear()
    _GROUPS_SEEN[key] = tuple(groups)


def rows_of(text: str, domain: str) -> list[Agent]:
    """The agents of :meth:`Agents.rows_call`'s text (only the fields it carries)."""
    agents = []
    for line in text.split("\n"):
        if line:
            ext, reg, seat, state, changed = (line.split("\t") + ["", "", "", "", ""])[:5]
            agents.append(Agent.from_hash({"extension": ext, "domain": domain,
                                           "reg_state": reg or "unreg",
                                           "seat_status": seat or "busy",
                                           "call_state": state or "ready",
                                           "last_change": changed}))
    return agents


def request_id() -> str:
    """A fresh id for one call of an agent script (the same in redis-py's retries of it): a
    retry after a reply lost to a timeout gets the first run's reply (agent_request.lua)."""
    return secrets.token_hex(8)


def _waiting(info: str) -> WaitingCall | None:
    try:
        return WaitingCall.from_json(info)
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True)
class Ready:
    """What :meth:`Agents.make_ready` did: ``done`` when the agent is ready now; else
    ``outcome`` says why not ("on_call": it becomes ready when the call ends; "disabled";
    "absent"). ``previous``: its call state before; ``offered``: the waiting call it took at
    once ("" if none) and that call's queue record."""

    done: bool
    outcome: str
    previous: str
    offered: str = ""
    waiting: WaitingCall | None = None


@dataclass(frozen=True)
class Released:
    """What ending an offer did (:meth:`Agents.release`): the state the offer's end led to
    (no_answer for a miss), the agent's call state after it, and the misses in a row."""

    ended: str
    state: str
    misses: int


class Agents:
    """The agents of one domain."""

    def __init__(self, ctx: Context, domain: str | None = None) -> None:
        self.ctx = ctx
        self.keys = ctx.keys(domain)
        self.domain = self.keys.domain
        self.r = ctx.redis

    # ---------------------------------------------------------------- reading ------------
    def get(self, extension: str) -> Agent | None:
        data = self.r.hgetall(self.keys.agent(extension))
        return Agent.from_hash(data) if data else None

    def all(self) -> list[Agent]:
        """Every agent of the domain, in extension order (two round trips)."""
        extensions = sorted(self.r.smembers(self.keys.agents()))
        pipe = self.r.pipeline(transaction=False)
        for ext in extensions:
            pipe.hgetall(self.keys.agent(ext))
        return [Agent.from_hash(d) for d in pipe.execute() if d]

    def rows_call(self, extensions: list[str]) -> ScriptCall:
        """The read behind ``GET /api/get_extensions`` as one script (agent_rows.lua, run by
        the caller, pipelined with its other reads): the row fields of ``extensions``'
        hashes, or ``[0]`` when the agents set no longer holds exactly ``extensions`` (read
        it again: :meth:`extensions`). :func:`rows_of` turns its text into agents."""
        return ("agent_rows", [self.keys.agents(), *(self.keys.agent(e) for e in extensions)],
                [len(extensions), *extensions])

    def extensions(self) -> list[str]:
        """The extensions with an agent hash, in extension order."""
        return sorted(self.r.smembers(self.keys.agents()))

    def reg_node(self, extension: str) -> str:
        """The node the agent's phone registered on ("" when none, or no agent)."""
        return str(self.r.hget(self.keys.agent(extension), "reg_node") or "")

    def groups_of(self, extension: str) -> list[str]:
        """The groups the agent is logged into ([] when none, or no agent)."""
        raw = self.r.hget(self.keys.agent(extension), "groups") or ""
        return [g for g in raw.split(",") if g]

    # ---------------------------------------------------------------- writing ------------
    def ensure(self, extension: str, job_number: str | None = None,
               pipeline: Any = None) -> None:
        """Create the agent hash if missing (logged out, unregistered, busy); set the job
        number when given. Idempotent."""
        key = self.keys.agent(extension)
        pipe = pipeline if pipeline is not None else self.r.pipeline(transaction=True)
        for name, value in (("extension", extension), ("domain", self.domain),
                            ("logged_in", "0"), ("reg_state", "unreg"),
                            ("seat_status", "busy"), ("call_state", "ready"),
                            ("last_change", now_ms()), ("no_answer_count", 0),
                            ("groups", ""), ("job_number", "")):
            pipe.hsetnx(key, name, value)
        if job_number is not None:
            pipe.hset(key, "job_number", job_number)
        pipe.sadd(self.keys.agents(), extension)
        if pipeline is None:
            pipe.execute()

    def unregistered(self, extension: str, node: str) -> bool:
        """The phone unregistered (or expired) on ``node``: the agent is unreg unless it has
        registered on another node since. Returns True when the state changed."""
        return bool(run_script(self.r, "agent_unregister", [self.keys.agent(extension)],
                               [node, request_id()]))

    def registered(self, extension: str, node: str, host: str, expires_s: int,
                   stamp: str, now: int | None = None) -> None:
        """The phone registered on ``node`` for ``expires_s`` seconds: reged, reached through
        ``node``, trusted until then (:meth:`expire_registration`, once ``node`` is dead)."""
        until = (now or now_ms()) + expires_s * 1000 if expires_s > 0 else 0
        self.set_fields(extension, reg_state="reged", reg_node=node, reg_host=host,
                        reg_until=until, reg_stamp=stamp)

    def expire_registration(self, extension: str, node: str, now: int) -> str | None:
        """``node`` is dead and the agent's registration there ran out (see
        agent_reg_expire.lua): the agent is unreg. Returns the reg_stamp of the registration
        that ended, or None when nothing changed (it registered again meanwhile, or has not
        run out yet)."""
        result = run_script(self.r, "agent_reg_expire", [self.keys.agent(extension)],
                            [node, now, request_id()])
        if not result:
            return None
        return str(result[1])

    def set_fields(self, extension: str, **fields: object) -> None:
        """Write raw fields, unchecked: for tests and repairs. The call state changes only
        through the checked scripts (:meth:`transition` and the lifecycle methods)."""
        self.r.hset(self.keys.agent(extension), mapping=hash_fields(fields))

    def set_reg_state(self, extension: str, reg_state: str) -> None:
        """Mark the phone registered ("reged") or not ("unreg") by hand (a phone the switch
        does not see register, or a manual repair); where it registered is left as it is."""
        self.r.hset(self.keys.agent(extension), "reg_state", reg_state)

    def set_seat(self, extension: str, seat_status: str) -> None:
        """The seat "idle" (queue calls welcome) or "busy" (none), whatever the call state."""
        self.r.hset(self.keys.agent(extension), "seat_status", seat_status)

    def set_groups(self, extension: str, groups: list[str], pipeline: Any) -> None:
        """Queue in ``pipeline``: the agent is logged into exactly ``groups`` (logged out when
        there are none). The group member zsets are :mod:`fsapps.domain.groups`' part."""
        pipeline.hset(self.keys.agent(extension), mapping=hash_fields(
            {"groups": ",".join(groups), "logged_in": "1" if groups else "0"}))

    def set_skills(self, extension: str, skills: str, pipeline: Any) -> None:
        """Queue in ``pipeline``: the agent's skills (``name:level,...``, checked by
        :mod:`fsapps.domain.skills`; "" none), read by the reserve and dispatch scripts."""
        pipeline.hset(self.keys.agent(extension), "skills", skills)

    def skills_of(self, extension: str) -> str:
        """The agent's skills as its hash holds them ("" when none, or no agent)."""
        return str(self.r.hget(self.keys.agent(extension), "skills") or "")

    def set_enabled(self, extension: str, enabled: bool, pipeline: Any) -> None:
        """Queue in ``pipeline``: the extension enabled, or disabled with its seat made busy
        in the same step (offered no queue call from then on; :meth:`make_ready` refuses)."""
        key = self.keys.agent(extension)
        pipeline.hset(key, "enabled", "1" if enabled else "0")
        if not enabled:
            pipeline.hset(key, "seat_status", "busy")

    def remove(self, extension: str, member_keys: list[str]) -> tuple[str, str]:
        """Delete the agent unless it is on a call (agent_remove.lua): its hash, its entries
        in the agents set and the wrap-ups, and ``member_keys`` (the member zsets of the
        domain's groups). Returns ("removed", ""), ("absent", "") or ("busy", call state):
        then nothing changed."""
        outcome, state = run_script(
            self.r, "agent_remove",
            [self.keys.agent(extension), self.keys.agents(), self.keys.wrapups(), *member_keys],
            [extension])
        return str(outcome), str(state or "")

    def transition(self, extension: str, to: str, *, offer_uuid: str = "",
                   extra: Mapping[str, object] | None = None, strict: bool = False,
                   only_from: tuple[str, ...] | None = None) -> bool:
        """Move the agent's call state to ``to`` if the transition table allows it from the
        state it is in now (atomically); ``only_from`` narrows the allowed states further,
        ``offer_uuid`` to an agent holding that call (:data:`NO_CALL`: holding none).
        Returns False when refused (or, with ``strict``, raises IllegalTransition naming both
        states). The script tells the new state itself (agent_announce), in its step."""
        call = self._transition_call(extension, to, offer_uuid=offer_uuid, extra=extra,
                                     only_from=only_from)
        return self._transitioned(extension, call, run_script(self.r, *call), strict=strict)

    def _transition_call(self, extension: str, to: str, *, offer_uuid: str = "",
                         extra: Mapping[str, object] | None = None,
                         only_from: tuple[str, ...] | None = None) -> ScriptCall:
        """agent_transition.lua's call for :meth:`transition`."""
        target = parse(to)
        now = now_ms()
        # The table itself is applied by the script (agent_rules.lua); this only narrows it.
        allowed = "*" if only_from is None else ",".join(only_from) or "-"
        args: list[str | int | float] = [allowed, target.value, now, offer_uuid, request_id(),
                                         *self._announcement(extension, now)]
        for name, value in (extra or {}).items():
            args += [name, "" if value is None else str(value)]
        return "agent_transition", [self.keys.agent(extension)], args

    def _transitioned(self, extension: str, call: ScriptCall, reply: Any, *,
                      strict: bool = False) -> bool:
        """agent_transition.lua's ``reply`` to ``call``: whether the agent moved (told to the
        other buses when its state changed), or IllegalTransition with ``strict``."""
        args = call[2]
        target, now = str(args[1]), int(args[2])
        previous, done = reply[0], reply[1]
        if not int(done):
            if strict:
                raise IllegalTransition(previous or "(no agent)", target)
            return False
        if previous != target:  # (told by the script: agent_announce)
            self.told(extension, target, now)
        return True

    def settle(self, extension: str, stuck: str) -> bool:
        """The reconciler: an agent left in ``stuck`` (a state nothing will end) while it holds
        no call goes ready, misses in a row forgotten, wrap-up over - atomically, only if it
        is still in that state and still holds no call. False when refused. Publishes."""
        done = self.transition(extension, CallState.READY, offer_uuid=NO_CALL,
                               only_from=(stuck,),
                               extra={"no_answer_count": 0, "lease_until": 0, "agent_leg": ""})
        if done:
            self.r.zrem(self.keys.wrapups(), extension)
        return done

    def wrapup_ends(self) -> dict[str, int]:
        """Every agent whose wrap-up a timer will end, and when (ms)."""
        return {str(ext): int(score) for ext, score in
                self.r.zrange(self.keys.wrapups(), 0, -1, withscores=True)}

    def set_call_state(self, extension: str, value: str) -> bool:
        """Set the call state by hand (seed extension_callstate) where the table allows it;
        "ready" only from :data:`READY_FROM`, forgetting the misses in a row and ending a
        wrap-up. False when refused (nothing changed). Offering a waiting call to the agent,
        ready now, is the caller's (:func:`fsapps.switch.acd.agent_available`)."""
        ready = value == CallState.READY
        done = self.transition(extension, value, only_from=READY_FROM if ready else None,
                               extra={"no_answer_count": 0} if ready else None)
        if done and ready:
            self.r.zrem(self.keys.wrapups(), extension)
        return done

    def publish(self, extension: str, status: str, at_ms: int | None = None,
                pipeline: Any = None) -> None:
        self.ctx.publisher.agent_status(extension, status, stamp((at_ms or now_ms()) / 1000),
                                        pipeline=pipeline)

    def _announcement(self, extension: str, at_ms: int) -> list[str]:
        """The ARGV of a script that tells the agent's moves itself, in the step that makes
        them (include/agent_announce.lua): the agent's channel and its message with
        ``{{status}}`` for the state, stamped ``at_ms`` (the script's now). Told after the
        script, a "ready" reached subscribers after the "ring" of the next call the leg-ends
        thread offered the agent meanwhile (the agent looked ready while it rang)."""
        return list(self.ctx.publisher.agent_status_template(extension, stamp(at_ms / 1000)))

    def told(self, extension: str, status: str, at_ms: int) -> None:
        """A state a script told (:meth:`_announcement`) goes to the other buses too."""
        self.ctx.publisher.agent_status_told(extension, status, stamp(at_ms / 1000))

    def release(self, extension: str, uuid: str, outcome: str, *,
                lease_expired: bool = False, max_no_answer: int = 0,
                leg_gone: str | None = None) -> Released | None:
        """End this call's offer to the agent, in one script (agent_release.lua): "cancel"
        (the caller went away) and "unregistered" (the phone is gone: unreg as well) make it
        ready; "missed" makes it no_answer and then, in the same step, ready — or busy, seat
        busy too, after ``max_no_answer`` misses in a row (0 = never;
        :func:`fsapps.domain.agent_state.after_no_answer`). Publishes each state it passed
        through. An agent that left the ring for a state the table does not let the offer's
        end undo (busy, pressed while ringing) keeps it; its reservation goes all the same.
        Returns what happened, or None when the reservation was no longer ours.
        "leg_alive": the call lets go of the agent whose leg the switch has not ended yet; the
        agent keeps its state (nothing published) for the reconciler, which frees it once the
        switch says the leg is gone.
        ``lease_expired``: only if the agent still rings on a lease that has run out;
        ``leg_gone``: only if the agent's leg is still the one the switch said is gone ("" for
        none) - the reconciler's conditions, checked again atomically: the handler may have
        rung since, renewing the lease and recording a new leg."""
        now = now_ms()
        result = run_script(self.r, "agent_release",
                            [self.keys.agent(extension), self.keys.offers()],
                            [uuid, now, outcome, "1" if lease_expired else "0",
                             max_no_answer, "*" if leg_gone is None else leg_gone,
                             request_id(), *self._announcement(extension, now)])
        if not result:
            return None
        released = Released(str(result[0]), str(result[1]), int(result[2]))
        at, moved = int(result[3]), int(result[4])
        if moved:  # (told by the script: agent_announce)
            self.told(extension, released.ended, at)
        if moved and released.state != released.ended:
            self.told(extension, released.state, at)
        return released

    def make_ready(self, extension: str) -> Ready:
        """The agent makes itself ready, in one script (agent_ready.lua): seat idle; call
        state ready (ending a wrap-up, misses in a row forgotten) unless it is on a call;
        then, free now, it takes the best waiting call of its groups. Nothing changes for a
        disabled extension. The script needs the keys of the agent's groups: the groups this
        process last saw the agent in (:data:`_GROUPS_SEEN`; read first only the first time),
        checked by the script - a third round trip only if they changed since.
        Publishes "ready" and "ring"; waking the offered call's handler is the caller's."""
        key = self.keys.agent(extension)
        seen = _GROUPS_SEEN.get(key)
        groups = list(seen) if seen is not None else self.groups_of(extension)
        _remember_groups(key, groups)
        result = run_script(self.r, *self._ready_call(extension, groups))
        return self._readied(extension, result)

    async def amake_ready(self, client: Any, extension: str) -> Ready:
        """:meth:`make_ready` on an asyncio Redis client (the CTI server's event loop: no
        worker thread): one round trip, the script telling the moves itself; the rare second
        step (the groups changed since this process saw them) runs blocking, as
        :meth:`make_ready` does."""
        key = self.keys.agent(extension)
        seen = _GROUPS_SEEN.get(key)
        if seen is None:
            raw = await client.hget(key, "groups") or ""
            seen = tuple(g for g in raw.split(",") if g)
        _remember_groups(key, list(seen))
        result = await arun_script(client, *self._ready_call(extension, list(seen)))
        if result[0] == "ready" and result[5] == "1":
            return await asyncio.to_thread(self._readied, extension, result)
        return self._readied(extension, result)

    def _ready_call(self, extension: str, groups: list[str]) -> ScriptCall:
        """agent_ready.lua's call: its "ready" and the offered call's "ring" told by the script
        itself (agent_announce: no publish after it, and in the order of the agent's moves)."""
        now = now_ms()
        return ("agent_ready",
                [self.keys.agent(extension), self.keys.waiting(), self.keys.offers(),
                 self.keys.wrapups(), *self._group_keys(groups)],
                [extension, now, *self._lease_args(), ",".join(groups),
                 ",".join(READY_FROM), request_id(), *self._announcement(extension, now)])

    def _readied(self, extension: str, result: Any) -> Ready:
        """What agent_ready.lua's ``result`` means; its moves were told by the script (the
        other buses get them here). With the groups changed since they were read, the offer
        from the new ones is one more step (agent_dispatch, which publishes its ring)."""
        key = self.keys.agent(extension)
        if result[0] != "ready":
            if result[0] in ("absent", "disabled"):
                _GROUPS_SEEN.pop(key, None)
            return Ready(False, str(result[0]), str(result[1]))
        previous, at, uuid, info, regroup = (str(result[1]), int(result[2]), str(result[3]),
                                             str(result[4]), result[5] == "1")
        if previous != CallState.READY:  # (told by the script: agent_announce)
            self.told(extension, CallState.READY, at)
        if regroup:  # logged into other groups meanwhile: offer from those
            groups = self.groups_of(extension)
            _remember_groups(key, groups)
            taken = self.take_waiting_call(extension, groups)
            return Ready(True, "ready", previous, *(taken or ("", None)))
        if not uuid:
            return Ready(True, "ready", previous)
        self.told(extension, CallState.RING, at)
        return Ready(True, "ready", previous, uuid, _waiting(info))

    # -------------------------------------------------------------- the lifecycle --------
    # reserve (reserve_or_queue, take_waiting_call, reserve_direct) -> ring (ringing) ->
    # answered / missed or cancelled (release) -> wrap-up (start_wrapup) -> ready
    # (end_due_wrapups, make_ready).
    def reserve_direct(self, extension: str, uuid: str, node: str, lease_until: int,
                       agent_leg: str) -> bool:
        """A direct call (nway_bridge, nwaycallout) reserves the agent, whatever its queue
        availability, unless it is on or ringing for another call (:data:`FREE_FOR_DIRECT`):
        it rings for ``uuid`` owned by ``node`` until ``lease_until`` (ms), on the leg
        ``agent_leg`` (the agent's channel: what the reconciler asks the switch about).
        Atomic; False when refused (or there is no agent)."""
        return self.transition(extension, CallState.RING, only_from=FREE_FOR_DIRECT,
                               extra={"offer_uuid": uuid, "offer_node": node,
                                      "lease_until": lease_until, "agent_leg": agent_leg,
                                      "leg_pending": agent_leg, "leg_node": node})

    def ringing(self, extension: str, uuid: str, node: str, lease_until: int,
                agent_leg: str) -> str | None:
        """The call's handler is about to ring the agent it reserved on the leg ``agent_leg``
        (the uuid it gives the leg: ``origination_uuid``): still reserved for ``uuid`` (a
        reconciler may have freed it and another call reserved it since), owned by ``node``,
        the lease starting again until ``lease_until``. The leg is recorded in the same step,
        so a reconciler that finds the lease run out asks the switch about that leg before it
        frees the agent. Atomic. Returns the node the agent's phone is registered on ("":
        none), where to ring it from, in the same round trip; None when the reservation is
        no longer this call's (do not ring)."""
        call = self._transition_call(extension, CallState.RING, offer_uuid=uuid,
                                     only_from=("ring",),
                                     extra={"offer_node": node, "lease_until": lease_until,
                                            "agent_leg": agent_leg, "leg_pending": agent_leg,
                                            "leg_node": node})
        reply = run_script(self.r, *call)
        if not self._transitioned(extension, call, reply):
            return None
        return str(reply[2])  # (agent_transition.lua answers the node with every move)

    def answered(self, extension: str, uuid: str, agent_leg: str, node: str) -> bool:
        """The agent's leg ``agent_leg`` (a channel of ``node``) answered the call ``uuid``:
        talking, the lease over; the agent is free again only once that leg's end is told
        (:meth:`leg_ended`). Only while the agent still holds this call (the event can come
        late, after the call ended and the agent was reserved for the next one). False when
        it does not."""
        return self.answered_many([(extension, uuid, agent_leg, node)])[0]

    def answered_many(self, answers: Sequence[tuple[str, str, str, str]]) -> list[bool]:
        """:meth:`answered` for many (extension, uuid, agent_leg, node) at once, in one round
        trip (a busy switch's answers come dozens a second: one round trip each kept the
        runtime's event loop seconds behind at 500 agents x 40 calls/s). A script that failed
        is logged and counts as refused."""
        calls = [self._transition_call(ext, CallState.TALKING, offer_uuid=uuid,
                                       extra={"agent_leg": leg, "lease_until": 0,
                                              "leg_pending": leg, "leg_node": node})
                 for ext, uuid, leg, node in answers]
        done = []
        for (ext, uuid, _, _), call, reply in zip(answers, calls, run_scripts(self.r, calls),
                                                  strict=True):
            if isinstance(reply, Exception):
                log("ERR", f"agent {ext}, answer of call {uuid}: {reply}")
                done.append(False)
            else:
                done.append(self._transitioned(ext, call, reply))
        return done

    def leg_ended(self, extension: str, leg: str) -> bool:
        """The switch told the end of the agent's leg ``leg`` (its CHANNEL_HANGUP_COMPLETE, or
        the reconciler found it gone): the agent may be free again (agent_leg_end.lua). True
        when that was the leg the agent waited for; offering it a waiting call is the
        caller's (:func:`fsapps.switch.acd.agent_available`)."""
        now = now_ms()
        return bool(run_script(self.r, "agent_leg_end",
                               [self.keys.agent(extension), self.keys.waiting(),
                                self.keys.offers()],
                               [leg, request_id(), extension, NO_OFFER, now,
                                *self._lease_args(), "", ""]))

    def legs_ended(self, legs: list[tuple[str, str]]
                   ) -> tuple[list[tuple[str, str, WaitingCall | None]], dict[str, list[str]]]:
        """:meth:`leg_ended` for many (extension, leg) at once, in one round trip (the leg
        ends of a busy switch come dozens a second: one at a time they queued up behind their
        own round trips; each round trip of this thread waited 0.1-1 s for the GIL at 500
        agents x 40 calls/s, docs/performance-switch.md) - and each agent freed takes the
        best waiting call of its groups in the same script, its groups as this process last
        saw them (:data:`_GROUPS_SEEN`, checked by the script). Returns the calls taken (as
        :meth:`take_waiting_calls`: each script told its ring) and the agents freed whose
        groups this process had not seen as they are (extension -> its groups: to offer a
        call from, one more round trip)."""
        now = now_ms()
        calls: list[ScriptCall] = []
        for ext, leg in legs:
            key = self.keys.agent(ext)
            seen = _GROUPS_SEEN.get(key)
            calls.append(("agent_leg_end",
                          [key, self.keys.waiting(), self.keys.offers(),
                           *self._group_keys(list(seen or ()))],
                          [leg, request_id(), ext, NO_OFFER if seen is None else ",".join(seen),
                           now, *self._lease_args(), *self._announcement(ext, now)]))
        taken = []
        freed: dict[str, list[str]] = {}
        for (ext, leg), reply in zip(legs, run_scripts(self.r, calls), strict=True):
            if isinstance(reply, Exception):
                log("ERR", f"agent {ext}, end of leg {leg}: {reply}")
                continue
            if not reply:
                continue
            groups = [g for g in str(reply[1]).split(",") if g]
            _remember_groups(self.keys.agent(ext), groups)
            if reply[2] != "1":
                freed[ext] = groups
            elif reply[3]:
                self.told(ext, CallState.RING, int(reply[5]))
                taken.append((ext, str(reply[3]), _waiting(str(reply[4]))))
        return taken, freed

    def make_busy(self, extension: str) -> bool:
        """The agent makes itself busy, in one script (agent_busy.lua): seat busy (no queue
        calls) and call state busy unless the table forbids it (on a call: the seat alone
        says so then). True when the call state is busy now; publishes it. Nothing changes
        for an extension without an agent."""
        return self.busy_step(extension)[1]

    def busy_step(self, extension: str) -> tuple[str, bool]:
        """:meth:`make_busy`, answering also the call state the agent was in ("" when there
        is no agent: then nothing changed) - so a front end needs no read before it."""
        previous, moved, at = run_script(self.r, *self._busy_call(extension))
        if int(moved) and previous != CallState.BUSY:
            self.told(extension, CallState.BUSY, int(at))
        return str(previous or ""), bool(int(moved))

    def _busy_call(self, extension: str) -> ScriptCall:
        """agent_busy.lua's call: the move to busy told by the script itself (agent_announce:
        one round trip for the whole operation, and in the order of the agent's moves)."""
        now = now_ms()
        return ("agent_busy", [self.keys.agent(extension)],
                [now, request_id(), *self._announcement(extension, now)])

    async def abusy_step(self, client: Any, extension: str) -> tuple[str, bool]:
        """:meth:`busy_step` on an asyncio Redis client (the CTI server's event loop)."""
        previous, moved, at = await arun_script(client, *self._busy_call(extension))
        if int(moved) and previous != CallState.BUSY:
            self.told(extension, CallState.BUSY, int(at))
        return str(previous or ""), bool(int(moved))

    def reserve_or_queue(self, call: WaitingCall, candidates: list[str], *, lease_ms: int,
                         enqueue: bool, record_current: bool, agent_leg: str = "",
                         messages: Any = None, untried: int | None = None,
                         remembered: str = "", more_legs: list[str] | None = None
                         ) -> Reservation:
        """Reserve the first available of ``candidates`` for the call (it rings: published),
        or (with ``enqueue``) put it in its group's queue — atomically (agent_reserve.lua), so
        an agent turning ready at the same moment either is found here or finds the call
        queued. "offered": an agent already reserved itself for the call (published then).
        ``agent_leg``: the handler rings the agent at once on that leg, so the reservation is
        also :meth:`ringing`. ``messages``: a publish pipeline the ring status is queued on
        (the caller sends it) instead of being published at once.
        The group's strategy and tiers order the free candidates in the script: ``untried``
        says how many leading candidates have not failed this call yet (all by default),
        ``remembered`` the agent a memory mode puts first; ``more_legs`` (ring_all) the legs
        for the second, third... agent reserved at once (returned in ``others``)."""
        k = self.keys
        result = run_script(
            self.r, "agent_reserve",
            [k.group(call.group), k.group_queue(call.group), k.waiting(), k.offers(),
             *[k.agent(ext) for ext in candidates]],
            [call.uuid, call.node, now_ms(), lease_ms, "1" if enqueue else "0",
             queue_score(call.level, call.arrived_ms), call.to_json(),
             "1" if record_current else "0", request_id(), agent_leg, stats_day(),
             call.arrived_ms, len(candidates) if untried is None else untried, remembered,
             *(more_legs or [])])
        flat = [str(v or "") for v in result[4]] if len(result) > 4 else []
        others = tuple((flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3))
        found = Reservation(result[0], result[1] if len(result) > 1 else None,
                            str(result[3] or "") if len(result) > 3 else "", others)
        if found.outcome == "reserved" and found.extension:
            self.publish(found.extension, CallState.RING, int(result[2]), messages)
            for extension, _, _ in others:
                self.publish(extension, CallState.RING, int(result[2]), messages)
        return found

    def take_waiting_call(self, extension: str, groups: list[str]) \
            -> tuple[str, WaitingCall | None] | None:
        """A freed agent takes the best waiting call of ``groups`` (its groups): it is
        reserved for it (for the longest ring timeout of its groups plus the lease margin;
        it rings: told by the script) and the call leaves the queue, atomically
        (agent_dispatch.lua). Returns (call uuid, its queue record) or None: not free, or
        nobody waits."""
        taken = self.take_waiting_calls({extension: groups})
        return (taken[0][1], taken[0][2]) if taken else None

    def take_waiting_calls(self, agents: Mapping[str, list[str]]
                           ) -> list[tuple[str, str, WaitingCall | None]]:
        """:meth:`take_waiting_call` for several freed agents (extension -> its groups) in one
        round trip, in turn (each script atomic: two agents never take the same call). Each
        script tells its agent's ring itself (no round trip of its own for the statuses).
        Returns (extension, call uuid, its queue record) for each agent that took a call."""
        now = now_ms()
        wanted = [(ext, groups) for ext, groups in agents.items() if groups]
        calls: list[ScriptCall] = [
            ("agent_dispatch",
             [self.keys.agent(ext), self.keys.waiting(), self.keys.offers(),
              *self._group_keys(groups)],
             [ext, now, *self._lease_args(), request_id(), *self._announcement(ext, now)])
            for ext, groups in wanted]
        taken = []
        for (ext, _), result in zip(wanted, run_scripts(self.r, calls) if calls else [],
                                  strict=True):
            if isinstance(result, Exception):
                log("ERR", f"agent {ext}, offering a waiting call: {result}")
            elif result:
                self.told(ext, CallState.RING, int(result[2]))
                taken.append((ext, str(result[0]), _waiting(str(result[1]))))
        return taken

    def _group_keys(self, groups: list[str]) -> list[str]:
        """For each group: its queue zset, then its hash (the layout agent_take_call reads)."""
        return [key for g in groups for key in (self.keys.group_queue(g), self.keys.group(g))]

    def _lease_args(self) -> list[int]:
        """The lease margin (ms) and the ring timeout (s) of a group that sets none."""
        defaults = self.ctx.settings.group_defaults
        return [defaults.lease_margin_seconds * 1000, defaults.callout_timeout]

    def start_wrapup(self, extension: str, uuid: str, seconds: int) -> bool:
        """The agent's call ``uuid`` ended: typing for ``seconds`` (the wrap-up), then ready;
        one script (agent_wrapup.lua). Returns True when the agent is ready at once (no
        wrap-up). Nothing changes when the agent no longer holds this call (the reconciler
        freed it and it may be ringing for another call by now); the call's entry in the
        offers hash goes either way."""
        now = now_ms()
        until = now + seconds * 1000 if seconds > 0 else 0
        result = run_script(self.r, "agent_wrapup",
                            [self.keys.agent(extension), self.keys.offers(),
                             self.keys.wrapups()],
                            [uuid, now, until, extension, request_id(), stats_day(now / 1000),
                             *self._announcement(extension, now)])
        if not result:
            return False
        previous, state = str(result[0]), str(result[1])
        if previous != state:  # (told by the script: agent_announce)
            self.told(extension, state, int(result[2]))
        return state == CallState.READY

    def end_due_wrapups(self, now: int | None = None) -> list[str]:
        """Agents whose wrap-up is over go ready; returns them (safe on every node at once).
        Each one's "ready" is told by its script (agent_announce)."""
        now = now or now_ms()
        due = self.r.zrangebyscore(self.keys.wrapups(), "-inf", now, start=0, num=200)
        ready = []
        for ext in due:
            if int(run_script(self.r, "wrapup_end", [self.keys.agent(ext), self.keys.wrapups()],
                              [ext, now, request_id(), *self._announcement(ext, now)])):
                self.told(ext, CallState.READY, now)
                ready.append(ext)
        return ready
