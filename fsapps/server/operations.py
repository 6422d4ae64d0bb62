"""What the CTI server's routes do, as blocking functions over fsapps' services (run in the
server's worker threads by :meth:`fsapps.server.services.CtiServices.run`).

Every function checks what it needs first and refuses with :class:`ApiError` naming the field
before anything changes; an action on a call is one node command to the node that holds the
channel, whose ``-ERR`` reply becomes a 409 with the switch's reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fsapps.context import Context
from fsapps.domain.callqueue import CallQueue
from fsapps.domain.nodes import Nodes
from fsapps.domain.numbers import valid_number
from fsapps.server import rows
from fsapps.server.registry import ApiError
from fsapps.server.services import CtiServices
from fsapps.services import agents
from fsapps.store.keys import seed_userinfo_hash
from fsapps.switch.commands import cli_allowed, valid_uuid


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
def find_call(ctx: Context, domain: str, extension: str, want: str, field: str) -> rows.LiveCall:
    """The extension's call to act on (:func:`fsapps.server.rows.pick`); 409 naming ``field``
    when it has none in that state."""
    call_hash = ctx.settings.directory.call_hash
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.hget(seed_userinfo_hash(domain), extension)
    pipe.hget(ctx.keys(domain).agent(extension), "agent_leg")
    if call_hash:  # the seed's "calls" hash may be turned off (directory.call_hash: "")
        pipe.hget(call_hash, extension)
    userinfo, agent_leg, *calls = pipe.execute()
    found = rows.live_calls(userinfo, calls[0] if calls else None, agent_leg or "")
    call = rows.pick(found, want)
    if call is None:
        what = {"ringing": "has no ringing call", "answered": "is not on an answered call"}
        raise ApiError(409, f"extension {extension!r} {what.get(want, 'is not on a call')}",
                       field)
    return call


def on_channel(services: CtiServices, uuid: str, op: str, **args: Any) -> str:
    """Node command ``op`` for channel ``uuid``; the node's ``+OK`` text, or 409 with its
    ``-ERR`` reason."""
    reply = services.node_command(uuid, op, **args).strip()
    if not reply.startswith("+OK"):
        raise ApiError(409, reply.removeprefix("-ERR").strip() or f"{op} failed")
    return reply.removeprefix("+OK").strip()


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
    """The party talking with ``extension`` goes to ``target`` (an extension, through the
    dialplan; or a number through ``gateway``); the extension's leg is released."""
    _phone(target, gateway, "EvdPhone")
    call = find_call(services.ctx, services.domain, extension, "answered", "EvdedPhone")
    return on_channel(services, call.uuid, "transfer", extension=target, gateway=gateway,
                      leg="bleg")


def answer(services: CtiServices, extension: str) -> str:
    """The extension's ringing phone answers (a talk event: the phone must support it)."""
    call = find_call(services.ctx, services.domain, extension, "ringing", "extension")
    return on_channel(services, call.uuid, "phone_event", event="talk")


def hangup(services: CtiServices, extension: str, both: bool = False) -> str:
    """Hang up the extension's call (its own leg; with ``both`` its peer too)."""
    call = find_call(services.ctx, services.domain, extension, "any", "extension")
    args = {"both": "1"} if both else {}
    return on_channel(services, call.uuid, "kill", cause="NORMAL_CLEARING" if not both
                      else "MANAGER_REQUEST", **args)


def hold(services: CtiServices, extension: str, on: bool) -> str:
    """Switch-side hold of the extension's leg: its peer hears hold music."""
    call = find_call(services.ctx, services.domain, extension, "answered", "extension")
    return on_channel(services, call.uuid, "hold" if on else "unhold")


def phone_hold(services: CtiServices, extension: str, on: bool) -> str:
    """Ask the phone itself to hold / resume (its hold key, through a NOTIFY)."""
    call = find_call(services.ctx, services.domain, extension, "answered", "extension")
    return on_channel(services, call.uuid, "phone_event", event="hold" if on else "talk")


def eavesdrop(services: CtiServices, target: str, phone: str, gateway: str, mode: str,
              target_field: str = "EvdedPhone", phone_field: str = "EvdPhone") -> str:
    """Ring ``phone`` (an extension, or a number through ``gateway``) to listen to
    ``target``'s call, or whisper to the agent / the customer (``mode``); the listener
    switches with DTMF 1/2/3/0."""
    _phone(phone, gateway, phone_field, services)
    call = find_call(services.ctx, services.domain, target, "answered", target_field)
    return on_channel(services, call.uuid, "eavesdrop", phone=phone, gateway=gateway,
                      mode=mode, dtmf="true",
                      ring_seconds=str(services.settings.cti.supervise_ring_seconds))


def threeway(services: CtiServices, in_call: str, phone: str, gateway: str,
             in_call_field: str = "EvdPhone", phone_field: str = "EvdedPhone") -> str:
    """Ring ``phone`` into ``in_call``'s call as a third party (all three hear each other)."""
    _phone(phone, gateway, phone_field, services)
    call = find_call(services.ctx, services.domain, in_call, "answered", in_call_field)
    return on_channel(services, call.uuid, "threeway", phone=phone, gateway=gateway)


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
            node = Nodes(services.ctx).owner(first)
            if node is None:
                raise ApiError(404, f"no such channel {first}", "arg")
    return services.any_node_command("cli", node=node, api=command, arg=arg)
