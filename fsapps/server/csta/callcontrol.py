"""wellClient call control over the CSTA records (blocking: the CTI server runs it in its worker
threads): the legs of a call, the actions of ``/api/csta/callControl/...``, wellClient's agent
changes, call data and the supervisor's drop. :mod:`fsapps.server.csta.rest` parses the
requests and answers them; the switch actions go to the node holding the leg, or the node the
phone is registered on, through :mod:`fsapps.switch.nodecommands`; agent changes go through
:mod:`fsapps.services.agents`. Transfers, conferences and agent changes publish their CSTA
records here (:func:`fsapps.server.csta.hub.publish`); the rest come from the switch
(:mod:`fsapps.events.cstafeed`).

Keys (``p`` prefix, ``d`` domain; :mod:`fsapps.store.keys`): ``p:{d}:csta:legs`` (uuid ->
callId) and ``p:{d}:csta:call:<callId>`` (``p:<uuid>`` -> the leg's device and state), written
by the CSTA feed, moved here when a leg changes call; ``p:{d}:csta:agent:<job>`` (device,
mode, since), its index ``p:{d}:csta:agents`` (job -> device, written in the same
MULTI), its presence ``p:{d}:csta:seen`` (:mod:`fsapps.server.csta.presence`) and
``p:{d}:csta:pending:<job>``, the agent's logon; ``p:{d}:csta:userdata:<callId>``
(EX :data:`USERDATA_TTL_S`) the call data.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Mapping
from typing import Any

from fsapps.domain.agents import Agents
from fsapps.domain.numbers import valid_extension, valid_number
from fsapps.errors import ClientError, FsappsError
from fsapps.server.csta import events as ev
from fsapps.server.csta import hub, presence
from fsapps.server.services import CtiServices
from fsapps.services import agents as agent_service
from fsapps.switch import nodecommands
from fsapps.switch.nodecommands import Csta, NodeReply

CALL_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
USERDATA_TTL_S = 3600
# How long a single-step conference's conferenced waits for the added phone to answer (its
# ring time, CSTA_RING_SECONDS, and a margin), and how often it looks.
CONFERENCE_WAIT_S = 35.0
CONFERENCE_POLL_S = 0.2


class CstaError(ClientError):
    """A wellClient call refused with ``status`` and a JSON error naming ``field``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        self.status, self.message, self.field = status, message, field
        super().__init__(message)


def split_address(text: str, what: str, domains: tuple[str, ...]) -> tuple[str, str]:
    """(name, domain) of ``name@domain``; CstaError 400 naming ``what`` otherwise."""
    name, at, domain = str(text or "").rpartition("@")
    if not at or not valid_extension(name):
        raise CstaError(400, f"invalid {what} {text!r}: expected <number>@<domain>", what)
    if domain not in domains:
        raise CstaError(400, f"unknown domain {domain!r} in {what} {text!r}", what)
    return name, domain


def call_legs(ctx: Any, domain: str, call_id: str) -> dict[str, dict[str, str]]:
    """uuid -> {"d": device, "s": localState} of the legs of a call (from the CSTA feed)."""
    raw = ctx.redis.hgetall(ctx.keys(domain).csta_call(call_id))
    legs = {}
    for name, value in raw.items():
        if name.startswith("p:"):
            try:
                legs[name[2:]] = json.loads(value)
            except ValueError:
                continue
    return legs


def leg_for(legs: dict[str, dict[str, str]], device: str, call_id: str) -> str:
    for uuid, leg in legs.items():
        if leg.get("d") == device:
            return uuid
    raise CstaError(404, f"no connection {device}|{call_id}", "connectionId")


def others(legs: dict[str, dict[str, str]], device: str) -> list[str]:
    return [u for u, leg in legs.items() if leg.get("d") != device]


def is_extension(ctx: Any, domain: str, number: str) -> bool:
    """Is ``number`` an extension of the domain (an agent or a directory entry)?"""
    return nodecommands.is_extension(ctx, domain, number)


def target_kind(ctx: Any, domain: str, number: str, field: str) -> str:
    if is_extension(ctx, domain, number):
        return "extension"
    if valid_number(number):
        return "number"
    raise CstaError(400, f"invalid number {number!r}", field)


def move_leg(ctx: Any, domain: str, uuid: str, from_call: str, to_call: str) -> None:
    """After a transfer or conference the leg belongs to ``to_call``: later events of it go
    to that call's parties. One transaction."""
    keys = ctx.keys(domain)
    field = f"p:{uuid}"
    value = ctx.redis.hget(keys.csta_call(from_call), field)
    pipe = ctx.redis.pipeline(transaction=True)
    pipe.hset(keys.csta_legs(), uuid, to_call)
    if value:
        pipe.hset(keys.csta_call(to_call), field, value)
        pipe.hdel(keys.csta_call(from_call), field)
    pipe.execute()


def _done(reply: NodeReply) -> NodeReply:
    """The node's reply; CstaError 409 with its reason when the switch refused."""
    if not reply.ok:
        raise CstaError(409, reply.detail or "refused")
    return reply


def run_on_leg(services: CtiServices, uuid: str, action: str, **args: str) -> NodeReply:
    """A csta action (:class:`fsapps.switch.nodecommands.Csta`) on the node that holds
    ``uuid``; CstaError 409 when the switch refuses."""
    return _done(services.switch.on_channel(Csta(action=action, uuid=uuid, **args)))


def run_on_phone(services: CtiServices, domain: str, ext: str, action: str,
                 **args: str) -> NodeReply:
    """A csta action on the node the phone of ``ext`` is registered on (any live one when
    the registration is unknown)."""
    agent = Agents(services.ctx, domain).get(ext)
    node = agent.reg_node if agent is not None and agent.reg_node else None
    return _done(services.switch.on_node(Csta(action=action, domain=domain, device=ext,
                                              **args), node))


def set_agent_mode(ctx: Any, domain: str, job: str, ext: str, mode: str, func: str,
                   reason: str) -> None:
    """Apply a wellClient agent change to the ACD and announce it (blocking)."""
    keys = ctx.keys(domain)
    agent_id, dev = f"{job}@{domain}", f"{ext}@{domain}"
    agents = Agents(ctx, domain)
    now = int(time.time() * 1000)
    if func == "Logout":
        agent_service.make_busy(ctx, domain, ext)
        pipe = ctx.redis.pipeline(transaction=True)
        pipe.delete(keys.csta_agent(job), keys.csta_pending(job))
        pipe.hdel(keys.csta_agents(), job)
        presence.left(pipe, keys, job)
        pipe.execute()
        hub.publish(ctx, ev.agent_record("agentLoggedOff", domain=domain, agent_id=agent_id,
                                         device=dev, mode="Logout", ms=now))
        return
    if func == "Login":  # what the next subscription is owed starts with this login
        ctx.redis.delete(keys.csta_pending(job))
    agents.ensure(ext, job_number=job)
    previous = ctx.redis.hget(keys.csta_agent(job), "device")
    pipe = ctx.redis.pipeline(transaction=True)
    pipe.hset(keys.csta_agent(job), mapping={"device": ext, "mode": mode, "since": now})
    pipe.hset(keys.csta_agents(), job, ext)
    presence.arrived(pipe, keys, job, now)
    pipe.execute()
    if mode == "Ready":
        agent_service.make_ready(ctx, domain, ext)
    else:
        agent_service.make_busy(ctx, domain, ext)
    if func == "Login" or previous != ext:
        hub.publish(ctx, ev.agent_record("agentLoggedOn", domain=domain, agent_id=agent_id,
                                         device=dev, mode=mode, ms=now), pending_job=job)
    hub.publish(ctx, ev.agent_record(ev.mode_event(mode), domain=domain, agent_id=agent_id,
                                     device=dev, mode=mode, reason=reason, ms=now),
                pending_job=job)


def log_off_gone(ctx: Any, domain: str, timeout_s: float) -> list[str]:
    """Log off the SDK agents of ``domain`` whose pages were not heard from for ``timeout_s``
    (:mod:`fsapps.server.csta.presence`), as their Logout would. Returns their job numbers."""
    gone = presence.gone(ctx, domain, int(timeout_s * 1000))
    for job in gone:
        device = hub.agent_state(ctx, domain, job).get("device")
        if device:
            set_agent_mode(ctx, domain, job, device, "Logout", "Logout",
                           f"page not heard from for {timeout_s:g} s")
    return gone


def is_agent_device(ctx: Any, domain: str, device: str) -> bool:
    name, _, dom = device.partition("@")
    return dom == domain and valid_extension(name) and \
        bool(ctx.redis.exists(ctx.keys(domain).agent(name)))


# ------------------------------------------------------------------------ actions -------
# ACTIONS[name](services, domain, callId, device, ext, body) for
# POST /api/csta/callControl/calls/{callId}/connections/{device|callId}/{name}
def _leg_action(op: str) -> Callable[..., None]:
    """An action that runs the node command ``op`` on the leg of ``device`` in the call."""
    def act(services: Any, domain: str, call_id: str, device: str, ext: str,
            body: dict[str, Any]) -> None:
        legs = call_legs(services.ctx, domain, call_id)
        run_on_leg(services, leg_for(legs, device, call_id), op, domain=domain)
    act.__name__ = f"_{op}"
    return act


answer, drop = _leg_action("answer"), _leg_action("drop")
_hold, _retrieve = _leg_action("hold"), _leg_action("unhold")


def _target(services: Any, domain: str, body: dict[str, Any], field: str) -> tuple[str, str]:
    number = str(body.get(field, "")).strip()
    if "@" in number:
        number, _ = split_address(number, field, (domain,))
    return number, target_kind(services.ctx, domain, number, field)


def _single_step_transfer(services: Any, domain: str, call_id: str, device: str, ext: str,
                          body: dict[str, Any]) -> None:
    number, kind = _target(services, domain, body, "transferTo")
    legs = call_legs(services.ctx, domain, call_id)
    leg_for(legs, device, call_id)  # the agent must be in the call
    parties = others(legs, device)
    if not parties:
        raise CstaError(409, f"call {call_id} has no other party to transfer")
    # transferred goes out before the switch moves the party: the agent's leg ends with that
    # bridge, and its connectionCleared (from the switch's feed) must not reach a client
    # first - the SDK forgets the call on it and then meets a transferred naming no call.
    hub.publish(services.ctx, {
        "name": "transferred", "domain": domain, "callId": call_id, "device": device,
        "localState": "None", "parties": [leg.get("d") for leg in legs.values()],
        "primaryOldCall": call_id, "secondaryOldCall": "", "transferringDevice": device,
        "transferredToDevice": f"{number}@{domain}", "newCall": call_id,
        "time": int(time.time() * 1000)})
    run_on_leg(services, parties[0], "transfer", domain=domain, to=number, kind=kind,
               call_id=call_id)
    # The agent's leg is not killed here: it ends with its bridge, as a bridged leg without
    # a dialplan of its own does; a uuid_kill racing that bridge's end could take the
    # transferred party down with it.
    agent_service.handed_on(services.ctx, domain, ext, call_id)


def _single_step_conference(services: Any, domain: str, call_id: str, device: str, ext: str,
                            body: dict[str, Any]) -> None:
    number = str(body.get("conferenceParticipant", "")).strip()
    if "@" in number:
        number, _ = split_address(number, "conferenceParticipant", (domain,))
    if not is_extension(services.ctx, domain, number):
        raise CstaError(400, f"conferenceParticipant {number!r} is not an extension of "
                             f"{domain}", "conferenceParticipant")
    kind = str(body.get("participationType") or "Active")
    if kind not in ("Active", "Silent"):
        raise CstaError(400, f"invalid participationType {kind!r}: Active or Silent",
                        "participationType")
    legs = call_legs(services.ctx, domain, call_id)
    mine = leg_for(legs, device, call_id)
    # on the node holding the agent's leg (three_way / eavesdrop need it there), which rings
    # the phone wherever it is registered (relayed: nodecommands.ring_extension)
    run_on_leg(services, mine, "invite", domain=domain, device=number,
               mode="barge" if kind == "Active" else "listen", call_id=call_id)
    added = f"{number}@{domain}"
    record = {
        "name": "conferenced", "domain": domain, "callId": call_id, "device": added,
        "localState": "Connect", "primaryOldCall": "0", "secondaryOldCall": call_id,
        "conferencingDevice": device, "addedParty": added, "newCall": call_id}
    # conferenced once the added phone answered (seed 004: delivered, established, then
    # conferenced): sent at the invite, it reached the added party's SDK before any event of
    # the call, which it could not place. The request does not wait for the answer.
    threading.Thread(target=announce_when_joined, name="csta-conference", daemon=True,
                     args=(services.ctx, record, CONFERENCE_WAIT_S)).start()


def announce_when_joined(ctx: Any, record: dict[str, Any], timeout_s: float) -> bool:
    """Publish ``record`` (a conferenced) when its ``addedParty`` is connected in its call;
    False when it did not answer within ``timeout_s``."""
    domain, call_id, added = record["domain"], record["callId"], record["addedParty"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        legs = call_legs(ctx, domain, call_id)
        if any(leg.get("d") == added and leg.get("s") == "Connect" for leg in legs.values()):
            hub.publish(ctx, {**record, "time": int(time.time() * 1000),
                              "parties": list(dict.fromkeys(leg.get("d") for leg in
                                                            legs.values()))})
            return True
        time.sleep(CONFERENCE_POLL_S)
    return False


def _consult(services: Any, domain: str, call_id: str, device: str, ext: str,
             body: dict[str, Any]) -> dict[str, Any]:
    number, kind = _target(services, domain, body, "consultationParticipant")
    legs = call_legs(services.ctx, domain, call_id)
    mine = leg_for(legs, device, call_id)
    if legs[mine].get("s") != "Hold":
        run_on_leg(services, mine, "hold", domain=domain)
    consult_id = str(uuidlib.uuid4())
    run_on_phone(services, domain, ext, "call", call_id=consult_id, to=number, kind=kind)
    return {"callId": consult_id, "connectionId": ev.connection_id(device, consult_id)}


def _consult_call(body: dict[str, Any]) -> str:
    consult = str(body.get("consultCallId") or body.get("activeCallId") or "")
    if not CALL_ID.fullmatch(consult):
        raise CstaError(400, f"invalid consultCallId {consult!r}", "consultCallId")
    return consult


def _cancel_consult(services: Any, domain: str, call_id: str, device: str, ext: str,
                    body: dict[str, Any]) -> None:
    consult = _consult_call(body)
    held = call_legs(services.ctx, domain, call_id)
    mine = leg_for(held, device, call_id)
    consulting = call_legs(services.ctx, domain, consult)
    if device in [leg.get("d") for leg in consulting.values()]:
        run_on_leg(services, leg_for(consulting, device, consult), "drop", domain=domain)
    run_on_leg(services, mine, "unhold", domain=domain)


def _transfer(services: Any, domain: str, call_id: str, device: str, ext: str,
              body: dict[str, Any]) -> None:
    """Consult transfer: the held party and the consulted one talk; the agent leaves both."""
    consult = _consult_call(body)
    held = call_legs(services.ctx, domain, call_id)
    leg_for(held, device, call_id)
    consulting = call_legs(services.ctx, domain, consult)
    leg_for(consulting, device, consult)
    held_party, consulted = others(held, device), others(consulting, device)
    if not held_party or not consulted:
        raise CstaError(409, f"calls {call_id} and {consult} have no parties to connect")
    to_device = consulting[consulted[0]].get("d", "")
    run_on_leg(services, held_party[0], "bridge", domain=domain, other=consulted[0])
    move_leg(services.ctx, domain, held_party[0], call_id, consult)
    moved = held[held_party[0]].get("d", "")
    everyone = list(dict.fromkeys([*[leg.get("d") for leg in held.values()],
                                   *[leg.get("d") for leg in consulting.values()]]))
    announce_connection(services.ctx, domain, consult, to_device, moved, everyone)
    hub.publish(services.ctx, {
        "name": "transferred", "domain": domain, "callId": consult, "device": device,
        "localState": "None",
        "parties": list(dict.fromkeys([*[leg.get("d") for leg in held.values()],
                                       *[leg.get("d") for leg in consulting.values()]])),
        "primaryOldCall": call_id, "secondaryOldCall": consult, "transferringDevice": device,
        "transferredToDevice": to_device, "newCall": consult,
        "time": int(time.time() * 1000)})
    # Both of the agent's legs end with their bridges (see _single_step_transfer).
    agent_service.handed_on(services.ctx, domain, ext, call_id)


def _conference(services: Any, domain: str, call_id: str, device: str, ext: str,
                body: dict[str, Any]) -> None:
    """Consult conference: the consulted party joins the held call; the agent returns."""
    consult = _consult_call(body)
    held = call_legs(services.ctx, domain, call_id)
    mine = leg_for(held, device, call_id)
    consulting = call_legs(services.ctx, domain, consult)
    # The agent must be in the consult call: else any call's party (another agent's
    # customer) could be pulled into this one by naming its callId.
    leg_for(consulting, device, consult)
    consulted = others(consulting, device)
    if not consulted:
        raise CstaError(409, f"consult call {consult} has no party to add")
    added = consulting[consulted[0]].get("d", "")
    run_on_leg(services, consulted[0], "join", domain=domain, target=mine)
    move_leg(services.ctx, domain, consulted[0], consult, call_id)
    calling = str(services.ctx.redis.hget(services.ctx.keys(domain).csta_call(call_id),
                                          "calling") or "")
    # the added party's delivered / established and the conferenced come before the
    # retrieve, whose retrieved reaches the added party too: by then its SDK knows the call,
    # its caller and the conferencing agent
    parties = list(dict.fromkeys([*[leg.get("d") for leg in held.values()], added]))
    announce_connection(services.ctx, domain, call_id, added, calling, parties)
    # the agent's consult leg ends with its bridge, the consulted party having left it
    hub.publish(services.ctx, {
        "name": "conferenced", "domain": domain, "callId": call_id, "device": added,
        "localState": "Connect", "parties": parties,
        "primaryOldCall": call_id, "secondaryOldCall": consult, "conferencingDevice": device,
        "addedParty": added, "newCall": call_id, "time": int(time.time() * 1000)})
    if held[mine].get("s") == "Hold":
        run_on_leg(services, mine, "unhold", domain=domain)


def announce_connection(ctx: Any, domain: str, call_id: str, device: str, calling: str,
                        parties: list[Any]) -> None:
    """A party moved into ``call_id`` by a consult transfer or conference: its delivered and
    established there (seed 004 §6.7/6.8: the transferring / conferencing party and the
    target receive them), naming ``calling`` — the party the target was not in a call with
    — so a client indexing its call memory by device knows every party of the call it now
    is in before that party's events (its hangup) arrive."""
    if not device:
        return
    now = int(time.time() * 1000)
    base = {"domain": domain, "callId": call_id, "device": device, "calling": calling,
            "called": device, "parties": [p for p in parties if p], "time": now}
    hub.publish(ctx, {**base, "name": "delivered", "localState": "Alerting"})
    hub.publish(ctx, {**base, "name": "established", "localState": "Connect"})


ACTIONS: dict[str, Callable[..., Any]] = {
    "answer": answer, "hold": _hold, "retrieve": _retrieve,
    "singleStepTransfer": _single_step_transfer,
    "singleStepConference": _single_step_conference, "consult": _consult,
    "conference": _conference, "cancelConsult": _cancel_consult, "transfer": _transfer,
    "clear": drop,
}


def write_user_data(services: CtiServices, principal: Any, domain: str, call_id: str,
                    data: Mapping[str | bytes, str]) -> None:
    """Set call data on ``call_id`` (one transaction; the hash lives USERDATA_TTL_S); the
    principal must be allowed to act on one of the call's parties."""
    legs = call_legs(services.ctx, domain, call_id)
    if not legs:
        raise CstaError(404, f"no call {call_id}", "callId")
    if not any(principal.may_act_on(leg.get("d", "").split("@")[0])
               for leg in legs.values()):
        raise CstaError(403, f"user {principal.username!r} is not in call {call_id}")
    key = services.ctx.keys(domain).csta_userdata(call_id)
    pipe = services.ctx.redis.pipeline(transaction=True)
    if data:
        pipe.hset(key, mapping=data)
    pipe.expire(key, USERDATA_TTL_S)
    pipe.execute()


def invite_supervisor(services: CtiServices, domain: str, call_id: str, ext: str, mode: str,
                      target: str) -> None:
    """Ring the supervisor's phone ``ext`` into the call: on ``target``'s leg, else the
    agent's (what it hears is the whole conversation; whisper reaches it)."""
    legs = call_legs(services.ctx, domain, call_id)
    if not legs:
        raise CstaError(404, f"no call {call_id}", "callId")
    uuid = leg_for(legs, target, call_id) if target else next(
        (u for u, leg in legs.items() if is_agent_device(services.ctx, domain,
                                                          leg.get("d", ""))), next(iter(legs)))
    run_on_leg(services, uuid, "invite", domain=domain, device=ext, mode=mode, call_id=call_id)


def drop_call(services: CtiServices, domain: str, call_id: str) -> None:
    """Hang up every leg of the call (a leg already gone is no error)."""
    legs = call_legs(services.ctx, domain, call_id)
    if not legs:
        raise CstaError(404, f"no call {call_id}", "callId")
    for uuid in legs:
        try:
            run_on_leg(services, uuid, "drop", domain=domain)
        except (CstaError, FsappsError):
            pass
