"""What the CTI server's routes do, as blocking functions over fsapps' services (run in the
server's worker threads by :meth:`fsapps.server.services.CtiServices.run`).

Every function checks what it needs first and refuses with :class:`ApiError` naming the field
before anything changes; an action on a call is one node command to the node that holds the
channel, whose ``-ERR`` reply becomes a 409 with the switch's reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fsapps.context import Context
from fsapps.domain.callqueue import CallQueue
from fsapps.domain.numbers import valid_number
from fsapps.server import rows
from fsapps.server.registry import ApiError
from fsapps.server.services import CtiServices
from fsapps.services import agents, calls
from fsapps.switch.nodecommands import Cli, NodeReply, cli_allowed, valid_uuid


# ------------------------------------------------------------------------ agents ----------
@contextmanager
def refusals(field: str) -> Iterator[None]:
    """The agent services' refusals as the seed REST API words them (the extension in
    ``field``)."""
    try:
        yield
    except agents.NotAnAgent as exc:
        raise ApiError(404, f"extension {exc.extension!r} is not an agent (agent_up, or "
                       f"nway_add_ext {exc.extension}, makes it one)", field) from None
    except agents.AgentDisabled as exc:
        raise ApiError(409, f"extension {exc.extension!r} is disabled "
                       f"(nway_set_ext_jobnumber {exc.extension} <job> true)", field) from None
    except agents.UnknownGroups as exc:
        raise ApiError(404, f"unknown group(s) {', '.join(exc.groups)!r}", "Groups") from None
    except agents.CallStateRefused as exc:
        raise ApiError(409, f"agent {exc.extension}: call state cannot go from "
                       f"{exc.current!r} to {exc.wanted!r}", "Value") from None


def agent_up(ctx: Context, domain: str, extension: str, groups: str) -> str:
    """The agent joins exactly ``groups``, idle and ready (seed 上线)."""
    wanted = list(dict.fromkeys(g for g in groups.split(",") if g))
    with refusals("Extension"):
        joined = agents.login(ctx, domain, extension, wanted)
    return f"agent {extension} logged into {','.join(joined)}"


def agent_down(ctx: Context, domain: str, extension: str) -> str:
    with refusals("Extension"):
        agent = agents.logout(ctx, domain, extension)
    return f"agent {extension} logged out (was in {','.join(agent.groups) or 'no group'})"


def agent_ready(ctx: Context, domain: str, extension: str) -> str:
    with refusals("Extension"):
        readiness = agents.ready(ctx, domain, extension)
    if readiness.now:
        return f"agent {extension} ready"
    state = "?" if readiness.call_state is None else readiness.call_state
    return f"agent {extension} ready when its call ends ({state})"


async def agent_ready_async(services: CtiServices, extension: str) -> str:
    """:func:`agent_ready` on the event loop (the services' asyncio client)."""
    with refusals("Extension"):
        readiness = await agents.aready(services.ctx, services.aredis, services.domain,
                                        extension, services.run)
    if readiness.now:
        return f"agent {extension} ready"
    state = "?" if readiness.call_state is None else readiness.call_state
    return f"agent {extension} ready when its call ends ({state})"


async def agent_busy_async(services: CtiServices, extension: str) -> str:
    """:func:`agent_busy` on the event loop (the services' asyncio client)."""
    with refusals("Extension"):
        await agents.abusy(services.ctx, services.aredis, services.domain, extension)
    return f"agent {extension} busy"


def agent_busy(ctx: Context, domain: str, extension: str) -> str:
    with refusals("Extension"):
        agents.busy(ctx, domain, extension)
    return f"agent {extension} busy"


CALL_STATES = agents.CALL_STATES


def set_call_state(ctx: Context, domain: str, extension: str, value: str) -> str:
    """Set the agent's call state (seed extension_callstate); see
    :func:`fsapps.services.agents.set_call_state`."""
    with refusals("Extension"):
        agents.set_call_state(ctx, domain, extension, value)
    return f"agent {extension} call state {value}"


def queue_rows(ctx: Context, domain: str) -> list[dict[str, str]]:
    waiting = CallQueue(ctx, domain).waiting()
    return [rows.queue_row(w) for w in sorted(waiting, key=lambda w: w.arrived_ms)]


def extension_rows(ctx: Context, domain: str) -> list[dict[str, str]]:
    return [rows.extension_row(a) for a in agents.all_agents(ctx, domain)]


def extension_info(ctx: Context, domain: str, extension: str) -> dict[str, str]:
    with refusals("extension"):
        return rows.extension_info(agents.agent_of(ctx, domain, extension))


# ------------------------------------------------------------------------ calls -----------
@contextmanager
def call_refusals(field: str) -> Iterator[None]:
    """An extension without the call asked for: 409 naming ``field``."""
    try:
        yield
    except calls.NoCall as exc:
        raise ApiError(409, str(exc), field) from None


def done(reply: NodeReply, op: str) -> str:
    """The node's ``+OK`` text, or 409 with its ``-ERR`` reason."""
    if not reply.ok:
        raise ApiError(409, reply.detail or f"{op} failed")
    return reply.detail


def _phone(phone: str, gateway: str, field: str, services: CtiServices | None = None) -> None:
    """A number to ring: a phone number with a gateway; else an extension, which must be
    known when ``services`` is given (it is rung as ``user/<ext>``)."""
    if gateway and not valid_number(phone):
        raise ApiError(422, f"field {field!r} = {phone!r}: with a gateway it must be a phone "
                       "number (digits, optional leading +)", field)
    if not gateway and services is not None and agents.unknown_extensions(
            services.ctx, services.domain, {field: phone}):
        raise ApiError(404, f"unknown extension {phone!r}", field)


def transfer(services: CtiServices, extension: str, target: str, gateway: str) -> str:
    """The party talking with ``extension`` goes to ``target``
    (:func:`fsapps.services.calls.transfer`)."""
    _phone(target, gateway, "EvdPhone")
    with call_refusals("EvdedPhone"):
        reply = calls.transfer(services.ctx, services.switch, services.domain, extension,
                               target, gateway)
    return done(reply, "transfer")


def answer(services: CtiServices, extension: str) -> str:
    """The extension's ringing phone answers (a talk event: the phone must support it)."""
    with call_refusals("extension"):
        reply = calls.answer(services.ctx, services.switch, services.domain, extension)
    return done(reply, "phone_event")


def hangup(services: CtiServices, extension: str, both: bool = False) -> str:
    """Hang up the extension's call (its own leg; with ``both`` its peer too)."""
    with call_refusals("extension"):
        reply = calls.hangup(services.ctx, services.switch, services.domain, extension, both)
    return done(reply, "kill")


def hold(services: CtiServices, extension: str, on: bool) -> str:
    """Switch-side hold of the extension's leg: its peer hears hold music."""
    with call_refusals("extension"):
        reply = calls.hold(services.ctx, services.switch, services.domain, extension, on)
    return done(reply, "hold" if on else "unhold")


def phone_hold(services: CtiServices, extension: str, on: bool) -> str:
    """Ask the phone itself to hold / resume (its hold key, through a NOTIFY)."""
    with call_refusals("extension"):
        reply = calls.phone_hold(services.ctx, services.switch, services.domain, extension, on)
    return done(reply, "phone_event")


def eavesdrop(services: CtiServices, target: str, phone: str, gateway: str, mode: str,
              target_field: str = "EvdedPhone", phone_field: str = "EvdPhone") -> str:
    """Ring ``phone`` to listen to ``target``'s call, or whisper (``mode``)
    (:func:`fsapps.services.calls.eavesdrop`)."""
    _phone(phone, gateway, phone_field, services)
    with call_refusals(target_field):
        reply = calls.eavesdrop(services.ctx, services.switch, services.domain, target, phone,
                                gateway, mode, services.settings.cti.supervise_ring_seconds)
    return done(reply, "eavesdrop")


def threeway(services: CtiServices, in_call: str, phone: str, gateway: str,
             in_call_field: str = "EvdPhone", phone_field: str = "EvdedPhone") -> str:
    """Ring ``phone`` into ``in_call``'s call as a third party (all three hear each other)."""
    _phone(phone, gateway, phone_field, services)
    with call_refusals(in_call_field):
        reply = calls.threeway(services.ctx, services.switch, services.domain, in_call, phone,
                               gateway)
    return done(reply, "threeway")


def force_state(ctx: Context, domain: str, extension: str, state: str) -> str:
    """A supervisor sets an agent ready, busy or logged out."""
    if state == "ready":
        return agent_ready(ctx, domain, extension)
    if state == "busy":
        return agent_busy(ctx, domain, extension)
    return agent_down(ctx, domain, extension)


def cli(services: CtiServices, command: str, arg: str, node: str | None) -> str:
    """mod_cti's /cli: an allow-listed api command on ``node``, or on the node holding the
    channel named by the first argument, or on the first live node."""
    refused = cli_allowed(services.settings.cti.cli_commands, command, arg)
    if refused:
        raise ApiError(403, refused, "cmd")
    if node is None:
        first = arg.split(" ", 1)[0]
        if command == "bgapi":
            first = (arg.split(" ") + ["", ""])[1]
        if valid_uuid(first):
            node = services.switch.owner(first)
            if node is None:
                raise ApiError(404, f"no such channel {first}", "arg")
    return services.switch.on_node(Cli(api=command, arg=arg), node).text
