"""Agents: an extension (with optional job number) of a domain that logs into groups and
takes queue calls. Its live state is one Redis hash; every change of call state goes through
a checked transition (:mod:`fsapps.domain.agent_state`) applied by a compare-and-set Lua script, and
is published on ``agent_<number>``.

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
    agent's channel), wrapup_until (ms).
``p:{d}:agents``       set   the extensions that have an agent hash.
``p:{d}:wrapups``      zset  extensions in wrap-up, score = when it ends (ms).
``p:{d}:group:<g>:members``  zset  (owned by :mod:`fsapps.domain.groups`) updated on login/logout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fsapps.context import Context, now_ms
from fsapps.domain.agent_state import TRANSITIONS, CallState, IllegalTransition, parse
from fsapps.events.pubsub import stamp
from fsapps.store import hash_fields
from fsapps.store.scripts import run_script

FIELDS = ("extension", "domain", "job_number", "enabled", "logged_in", "groups", "reg_state",
          "reg_node", "reg_host", "reg_until", "reg_stamp",
          "seat_status", "call_state", "last_change", "no_answer_count", "offer_uuid",
          "offer_node", "lease_until", "agent_leg", "wrapup_until")


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
    wrapup_until: int = 0

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
            agent_leg=data.get("agent_leg", ""),
            wrapup_until=int(data.get("wrapup_until") or 0))

    def available(self, now: int) -> bool:
        """Could a queue call be offered to this agent now? (The same rule as the Lua
        scripts, for reports; reservations themselves are decided in Redis.)"""
        if not (self.enabled and self.logged_in and self.reg_state == "reged"
                and self.seat_status == "idle"):
            return False
        return self.call_state == "ready" or (self.call_state == "ring"
                                              and self.lease_until < now)


def _allowed_from(target: CallState) -> str:
    sources = [s.value for s, targets in TRANSITIONS.items() if target in targets]
    return ",".join(sorted({*sources, target.value}))


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
        return bool(run_script(self.r, "agent_unregister", [self.keys.agent(extension)], [node]))

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
                            [node, now])
        if not result:
            return None
        return str(result[1])

    def set_fields(self, extension: str, **fields: object) -> None:
        self.r.hset(self.keys.agent(extension), mapping=hash_fields(fields))

    def transition(self, extension: str, to: str, *, offer_uuid: str = "",
                   extra: Mapping[str, object] | None = None, strict: bool = False,
                   only_from: tuple[str, ...] | None = None) -> bool:
        """Move the agent's call state to ``to`` if the transition table allows it from the
        state it is in now (atomically); ``only_from`` narrows the allowed states further.
        Returns False when refused (or, with ``strict``, raises IllegalTransition naming both
        states). Publishes the new state."""
        target = parse(to)
        now = now_ms()
        allowed = _allowed_from(target)
        if only_from is not None:
            allowed = ",".join(s for s in allowed.split(",") if s in only_from) or "-"
        args: list[str | int | float] = [allowed, target.value, now, offer_uuid]
        for name, value in (extra or {}).items():
            args += [name, "" if value is None else str(value)]
        previous, done = run_script(self.r, "agent_transition", [self.keys.agent(extension)],
                                    args)
        if not int(done):
            if strict:
                raise IllegalTransition(previous or "(no agent)", target.value)
            return False
        if previous != target.value:
            self.publish(extension, target.value, now)
        return True

    def publish(self, extension: str, status: str, at_ms: int | None = None) -> None:
        self.ctx.publisher.agent_status(extension, status, stamp((at_ms or now_ms()) / 1000))

    def release(self, extension: str, uuid: str, outcome: str, *,
                lease_expired: bool = False) -> tuple[str, int] | None:
        """End this call's offer to the agent (see agent_release.lua). Returns the agent's new
        call state and consecutive misses, or None when the reservation was no longer ours.
        ``lease_expired``: only if the agent still rings on a lease that has run out (the
        reconciler's reason, checked again atomically: the handler may have rung since,
        renewing the lease)."""
        result = run_script(self.r, "agent_release",
                            [self.keys.agent(extension), self.keys.offers()],
                            [uuid, now_ms(), outcome, "1" if lease_expired else "0"])
        if not result:
            return None
        state, misses = result[0], int(result[1])
        self.publish(extension, state)
        return state, misses

    def start_wrapup(self, extension: str, uuid: str, seconds: int) -> bool:
        """The agent's call ``uuid`` ended: typing for ``seconds`` (the wrap-up), then ready.
        Returns True when the agent is ready at once (no wrap-up). Nothing changes when the
        agent no longer holds this call (the reconciler freed it and it may be ringing for
        another call by now); the call's entry in the offers hash goes either way."""
        now = now_ms()
        # The call is over: nothing reads its offer any more. Removed before the agent turns
        # free, so the offers hash never shows the agent reserved for two calls.
        self.r.hdel(self.keys.offers(), uuid)
        common = {"offer_uuid": "", "offer_node": "", "lease_until": 0, "agent_leg": "",
                  "no_answer_count": 0}
        if seconds <= 0:
            return self.transition(extension, "ready", offer_uuid=uuid, extra=common)
        until = now + seconds * 1000
        if self.transition(extension, "typing", offer_uuid=uuid,
                           extra={**common, "wrapup_until": until}):
            self.r.zadd(self.keys.wrapups(), {extension: until})
        return False

    def end_due_wrapups(self, now: int | None = None) -> list[str]:
        """Agents whose wrap-up is over go ready; returns them (safe on every node at once)."""
        now = now or now_ms()
        due = self.r.zrangebyscore(self.keys.wrapups(), "-inf", now, start=0, num=200)
        ready = []
        for ext in due:
            if int(run_script(self.r, "wrapup_end", [self.keys.agent(ext), self.keys.wrapups()],
                              [ext, now])):
                self.publish(ext, "ready", now)
                ready.append(ext)
        return ready
