"""Agent operations shared by fs_cli (``nway_login`` ...), the seed REST API (``agent_up``
...) and wellClient (``/api/csta/agent/state``): who is an agent, log in and out, ready,
busy, the call state, and whether an extension is known at all.

Every function checks first and raises before anything changes; the refusals carry what
the front end needs to word them:

- :class:`NotAnAgent` — the extension has no agent hash (NotFound);
- :class:`AgentDisabled` — the extension is disabled (Conflict);
- :class:`UnknownGroups` — a login names groups that do not exist (NotFound);
- :class:`CallStateRefused` — the transition table refuses the new call state (Conflict).

Keys: none of its own; the agent hash is :mod:`fsapps.domain.agents`'s, written through
:class:`~fsapps.domain.agents.Agents` and :mod:`fsapps.switch.acd`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fsapps.context import Context
from fsapps.domain.agents import Agent, Agents
from fsapps.domain.extensions import Extensions
from fsapps.domain.groups import Groups
from fsapps.errors import Conflict, NotFound
from fsapps.store.keys import seed_exten_hash, seed_userinfo_hash
from fsapps.switch import acd

CALL_STATES = ("ring", "talking", "ivr", "ready", "typing", "no_answer", "busy", "rest",
               "no_ready")


class NotAnAgent(NotFound):
    def __init__(self, extension: str) -> None:
        self.extension = extension
        super().__init__(f"extension {extension!r} is not an agent")


class AgentDisabled(Conflict):
    def __init__(self, extension: str) -> None:
        self.extension = extension
        super().__init__(f"extension {extension!r} is disabled")


class UnknownGroups(NotFound):
    def __init__(self, extension: str, groups: list[str]) -> None:
        self.extension, self.groups = extension, groups
        super().__init__(f"unknown group(s) {', '.join(groups)!r} for agent {extension!r}")


class CallStateRefused(Conflict):
    def __init__(self, extension: str, current: str, wanted: str) -> None:
        self.extension, self.current, self.wanted = extension, current, wanted
        super().__init__(f"agent {extension}: call state cannot go from {current!r} to "
                         f"{wanted!r}")


@dataclass(frozen=True)
class Readiness:
    """The answer to :func:`ready`: ready now, or at the end of the call it is on
    (``call_state`` is its state after the request, None when the agent vanished meanwhile;
    ``before`` its state when the request came)."""

    now: bool
    call_state: str | None
    before: str = ""


# ------------------------------------------------------------------------ reads -----------
def agent_of(ctx: Context, domain: str, extension: str) -> Agent:
    """The agent of ``extension``; NotAnAgent when there is none."""
    agent = Agents(ctx, domain).get(extension)
    if agent is None:
        raise NotAnAgent(extension)
    return agent


def enabled_agent(ctx: Context, domain: str, extension: str) -> Agent:
    """The agent of ``extension``, which must be enabled (NotAnAgent, AgentDisabled)."""
    agent = agent_of(ctx, domain, extension)
    if not agent.enabled:
        raise AgentDisabled(extension)
    return agent


def all_agents(ctx: Context, domain: str) -> list[Agent]:
    return Agents(ctx, domain).all()


def unknown_extensions(ctx: Context, domain: str, named: dict[str, str]) -> list[str]:
    """The fields of ``named`` (field -> extension) whose extension fsapps does not know: no
    agent, no directory record (``cti_exten@<domain>``), no registration or live call
    (``cti_userinfo@<domain>``) and no extension record in PostgreSQL."""
    if not named:
        return []
    pipe = ctx.redis.pipeline(transaction=False)
    for ext in named.values():
        for command, args in known_reads(ctx, domain, ext):
            getattr(pipe, command)(*args)
    answers = pipe.execute()
    per = len(answers) // len(named)
    return [name for index, (name, ext) in enumerate(named.items())
            if not any(answers[index * per:(index + 1) * per])
            and not known_in_database(ctx, domain, ext)]


def known_reads(ctx: Context, domain: str, extension: str) -> list[tuple[str, tuple[str, ...]]]:
    """The Redis reads (command, arguments) that say ``extension`` is known when any answers
    true: its agent hash, its directory record, its registration or live call. The CTI server
    pipelines them with a request's token check; when none is true,
    :func:`known_in_database` decides."""
    keys = ctx.keys(domain)
    reads = [("exists", (keys.agent(extension),)),
             ("hexists", (seed_exten_hash(domain), extension)),
             ("hexists", (seed_userinfo_hash(domain), extension))]
    registrations = ctx.settings.directory.registration_hash
    if registrations:
        reads.append(("hexists", (registrations, extension)))
    return reads


def known_in_database(ctx: Context, domain: str, extension: str) -> bool:
    """Is there an extension record of ``extension`` in PostgreSQL (blocking)?"""
    return Extensions(ctx, domain).get(extension) is not None


# ------------------------------------------------------------------------ changes ---------
def login(ctx: Context, domain: str, extension: str, groups: list[str]) -> list[str]:
    """The agent joins exactly ``groups``, idle and ready (seed 上线); the groups joined.
    Refused before anything is written (acd.login would create the agent): a disabled
    extension (AgentDisabled), groups that do not exist (UnknownGroups)."""
    agent = Agents(ctx, domain).get(extension)
    if agent is not None and not agent.enabled:
        raise AgentDisabled(extension)
    known = set(Groups(ctx, domain).numbers())
    unknown = [g for g in groups if g not in known]
    if unknown:
        raise UnknownGroups(extension, unknown)
    return acd.login(ctx, domain, extension, groups)


def logout(ctx: Context, domain: str, extension: str) -> Agent:
    """The agent leaves every group (seed 下线); the agent as it was (its groups)."""
    agent = agent_of(ctx, domain, extension)
    acd.logout(ctx, domain, extension)
    return agent


def ready(ctx: Context, domain: str, extension: str) -> Readiness:
    """Seat idle, call state ready (seed 置闲) — at once, or when the agent's call ends.
    The script checks the agent (absent: NotAnAgent, disabled: AgentDisabled; then nothing
    changed): one round trip, no read before it."""
    ready = acd.make_ready(ctx, domain, extension)
    if ready.outcome == "absent":
        raise NotAnAgent(extension)
    if ready.outcome == "disabled":
        raise AgentDisabled(extension)
    if ready.done:
        return Readiness(True, "ready", ready.previous)
    return Readiness(False, ready.previous, ready.previous)


async def aready(ctx: Context, client: Any, domain: str, extension: str,
                 run: Callable[..., Awaitable[Any]]) -> Readiness:
    """:func:`ready` on an asyncio Redis client (the CTI server's event loop, no worker
    thread); ``run(fn, *args)`` runs the blocking rest (waking the handler of a call the
    agent took at once) in a worker thread."""
    ready = await Agents(ctx, domain).amake_ready(client, extension)
    if ready.outcome == "absent":
        raise NotAnAgent(extension)
    if ready.outcome == "disabled":
        raise AgentDisabled(extension)
    if ready.offered:
        await run(acd.wake_handler, ctx, ready.offered, ready.waiting, extension)
    if ready.done:
        return Readiness(True, "ready", ready.previous)
    return Readiness(False, ready.previous, ready.previous)


async def abusy(ctx: Context, client: Any, domain: str, extension: str) -> None:
    """:func:`busy` on an asyncio Redis client (the CTI server's event loop)."""
    previous, _ = await Agents(ctx, domain).abusy_step(client, extension)
    if not previous:
        raise NotAnAgent(extension)


def make_ready(ctx: Context, domain: str, extension: str) -> Readiness:
    """:func:`ready` without its checks, for a front end that has made its own (wellClient
    creates the agent of a job number as it logs in)."""
    ready = acd.make_ready(ctx, domain, extension)
    if ready.done:
        return Readiness(True, "ready")
    # the state the script found it in (none: the agent vanished meanwhile)
    return Readiness(False, ready.previous if ready.outcome != "absent" else None)


def busy(ctx: Context, domain: str, extension: str) -> None:
    """Seat busy: no queue calls (seed 置忙); NotAnAgent (nothing changed) without an agent.
    One round trip (the script), no read before it."""
    previous, _ = Agents(ctx, domain).busy_step(extension)
    if not previous:
        raise NotAnAgent(extension)


def make_busy(ctx: Context, domain: str, extension: str) -> None:
    """:func:`busy` without its check (wellClient, a disabled extension)."""
    acd.set_busy(ctx, domain, extension)


def set_call_state(ctx: Context, domain: str, extension: str, value: str) -> None:
    """Set the agent's call state (seed extension_callstate) through the checked transition
    table; an illegal move is refused (CallStateRefused) naming both states. Ready needs an
    enabled agent, ends a wrap-up and offers the agent a waiting call."""
    agent = agent_of(ctx, domain, extension)
    if value == "ready" and not agent.enabled:
        raise AgentDisabled(extension)
    if not Agents(ctx, domain).set_call_state(extension, value):
        raise CallStateRefused(extension, agent.call_state, value)
    if value == "ready":
        acd.agent_available(ctx, domain, extension)


def handed_on(ctx: Context, domain: str, extension: str, call_id: str) -> None:
    """The agent handed its queue call ``call_id`` on (a wellClient transfer): its wrap-up
    starts now, the wrap-up time of its first group. Nothing happens when the agent no
    longer holds that call (e.g. the call was not a queue call)."""
    agent = Agents(ctx, domain).get(extension)
    if agent is None or agent.offer_uuid != call_id:
        return
    group = Groups(ctx, domain).get(agent.groups[0]) if agent.groups else None
    seconds = group.wrapup(ctx.settings.group_defaults) if group else 0
    if Agents(ctx, domain).start_wrapup(extension, call_id, seconds):
        acd.agent_available(ctx, domain, extension)


def set_registered(ctx: Context, domain: str, extension: str, registered: bool) -> str | None:
    """Mark the agent's phone registered or not by hand (a phone the switch does not see
    register, a repair); registered and free, it is offered a waiting caller at once: the
    uuid of the call offered, if any."""
    agent_of(ctx, domain, extension)
    Agents(ctx, domain).set_reg_state(extension, "reged" if registered else "unreg")
    return acd.agent_available(ctx, domain, extension) if registered else None
