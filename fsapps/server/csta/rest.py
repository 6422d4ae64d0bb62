"""wellClient's REST calls (seed 004; paths and bodies of the public wellClient 2017 source):
``POST /login`` and the ``/api/csta`` call and agent control.

Every call but ``/login`` carries the token ``/login`` answered, in the header ``sessionId``
(``Authorization: Nway <token>`` is taken too). An agent may act only on its own job number and
extension; a supervisor on any (the force* calls of the SDK are the same calls made by a
supervisor). Devices are ``<ext>@<domain>``, agents ``<job>@<domain>``, connections
``<device>|<callId>`` (``%7C`` accepted for ``|``); each part is checked (extension rules of
:mod:`fsapps.domain.numbers`, a configured domain, a canonical callId) before it reaches Redis or a
switch. Success is 204, or 200 with JSON where there is something to say (the new callId);
errors are JSON ``{"error": ..., "field": ...}``: 400 bad input, 401/403, 404 unknown call or
connection, 409 the switch refused, 503/504 Redis or the node.

The calls map onto switch actions on the node holding the leg (:mod:`fsapps.switch.nodecommands`);
the events that follow come from the switch (:mod:`fsapps.events.cstafeed`), except agent changes,
transfers and conferences, whose records these handlers publish themselves.
"""

from __future__ import annotations

import json
import re
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fsapps.domain.agents import Agents
from fsapps.domain.callqueue import CallQueue
from fsapps.domain.groups import Groups
from fsapps.domain.numbers import valid_extension, valid_number
from fsapps.errors import ClientError, FsappsError
from fsapps.server.auth import request_token
from fsapps.server.csta import events as ev
from fsapps.server.csta import hub
from fsapps.server.http_errors import http_error
from fsapps.server.registry import Field, Route
from fsapps.server.services import CtiServices
from fsapps.server.services import services_of as services_app
from fsapps.services import agents as agent_service
from fsapps.store.keys import seed_exten_hash
from fsapps.switch.nodecommands import Csta, NodeReply

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
USERDATA_TTL_S = 3600
OPENAPI_TAG = "wellClient (seed 004)"
MAX_USERDATA = 50
# Call-data keys are names (the seed's agentId, customerId): whatever later uses them (a channel
# variable, a CDR column, a page) gets no ``${``, ``|``, ``,``, quotes, spaces or markup.
_USERDATA_KEY = re.compile(r"\w[\w.\-]{0,99}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CstaError(ClientError):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        self.status, self.message, self.field = status, message, field
        super().__init__(message)


def _error(status: int, message: str, field: str | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": message, **({"field": field} if field else {})}
    if status == 401:  # as the rest of the CTI server answers
        headers = {**(headers or {}), "WWW-Authenticate": 'Nway realm="fsapps"'}
    return web.json_response(body, status=status, headers=headers)


def guarded(handler: Handler) -> Handler:
    """Errors as JSON whatever app middleware is around (statuses as the module says)."""
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except FsappsError as exc:  # by type: fsapps.server.http_errors
            answer = http_error(exc)
            return _error(answer.status, answer.message, answer.field, answer.headers)
    run.__name__ = handler.__name__
    return run


# ------------------------------------------------------------------------ parsing -------
def services_of(request: web.Request) -> CtiServices:
    return services_app(request.app)


async def principal_of(request: web.Request) -> Any:
    """wellClient's ``sessionId`` header, else the CTI server's ``Authorization`` token."""
    services = services_of(request)
    token = request.headers.get("sessionId", "").strip() or request_token(request)
    return await services.run(services.auth.check, token)


def split_address(text: str, what: str, domains: tuple[str, ...]) -> tuple[str, str]:
    """(name, domain) of ``name@domain``; CstaError 400 naming ``what`` otherwise."""
    name, at, domain = str(text or "").rpartition("@")
    if not at or not valid_extension(name):
        raise CstaError(400, f"invalid {what} {text!r}: expected <number>@<domain>", what)
    if domain not in domains:
        raise CstaError(400, f"unknown domain {domain!r} in {what} {text!r}", what)
    return name, domain


def check_call_id(text: str) -> str:
    if not _UUID.fullmatch(text or ""):
        raise CstaError(400, f"invalid callId {text!r}", "callId")
    return text


async def body_of(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        # bytes, not request.text(): a body that is not UTF-8 is bad input (400), not a
        # decoding error escaping as a 500
        value = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is one
        raise CstaError(400, "the body is not JSON (UTF-8)") from None
    if not isinstance(value, dict):
        raise CstaError(400, "the body must be a JSON object")
    return value


def allow_device(principal: Any, ext: str) -> None:
    if not principal.may_act_on(ext):
        raise CstaError(403, f"user {principal.username!r} may not act on extension {ext!r}")


# ------------------------------------------------------------------------ Redis (blocking)
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
    if not valid_extension(number):
        return False
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.exists(ctx.keys(domain).agent(number))
    pipe.hexists(seed_exten_hash(domain), number)
    return any(pipe.execute())


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


# ------------------------------------------------------------------------ handlers ------
@guarded
async def login(request: web.Request) -> web.Response:
    """``POST /login`` (form: username, password, namespace) → ``{"sessionId": token}``."""
    services = services_of(request)
    try:
        form = await request.post()
    except ValueError:  # not UTF-8, a multipart body without its boundary ...
        raise CstaError(400, "the body is not a form (username, password, namespace)") \
            from None
    fields = {}
    for name in ("username", "password", "namespace"):
        value = form.get(name, "")
        if not isinstance(value, str):  # a file part
            raise CstaError(400, f"{name} must be a text field", name)
        fields[name] = value
    username, password = fields["username"].strip(), fields["password"]
    namespace = fields["namespace"].strip()
    if namespace and username.endswith("@" + namespace):
        username = username[:-len(namespace) - 1]
    if not username:
        raise CstaError(400, "username is required", "username")
    token = await services.run(services.auth.login, username, password, request.remote or "")
    principal = await services.run(services.auth.check, token)
    return web.json_response({"sessionId": token, "username": principal.username,
                              "role": principal.role, "extension": principal.extension,
                              "namespace": namespace or services.settings.default_domain})


@guarded
async def agent_state(request: web.Request) -> web.StreamResponse:
    """``POST /api/csta/agent/state`` {func: Login|Logout|SetState, loginId, device,
    agentMode, reason}."""
    services = services_of(request)
    principal = await principal_of(request)
    body = await body_of(request)
    domains = tuple(services.settings.domains)
    func = str(body.get("func", ""))
    if func not in ("Login", "Logout", "SetState"):
        raise CstaError(400, f"invalid func {func!r}: Login, Logout or SetState", "func")
    job, domain = split_address(str(body.get("loginId", "")), "loginId", domains)
    if not (principal.username == job or principal.at_least("supervisor")):
        raise CstaError(403, f"user {principal.username!r} may not act for agent {job!r}")
    current = await services.run(hub.agent_state, services.ctx, domain, job)
    device = str(body.get("device") or current.get("device", ""))
    ext, dev_domain = split_address(device, "device", domains)
    if dev_domain != domain:
        raise CstaError(400, f"device {device!r} is not in domain {domain!r}", "device")
    allow_device(principal, ext)
    mode = str(body.get("agentMode") or ("Logout" if func == "Logout" else "NotReady"))
    if func == "Logout":
        mode = "Logout"
    elif mode not in ("Ready", "NotReady", "WorkNotReady"):
        raise CstaError(400, f"invalid agentMode {mode!r}: Ready or NotReady", "agentMode")
    force = body.get("force", False)
    if force not in (None, True, False, "true", "false", 1, 0):
        raise CstaError(400, f"invalid force {str(force)[:40]!r}: true or false", "force")
    force = force in (True, "true", 1)
    reason = body.get("reason") or ""
    if not isinstance(reason, str) or len(reason) > 100 or _CONTROL.search(reason):
        raise CstaError(400, "reason must be text of at most 100 characters without control "
                             "characters", "reason")
    if func == "SetState" and not current:
        raise CstaError(409, f"agent {job}@{domain} is not logged in")
    if func == "Login" and current.get("device") not in (None, ext) and not force:
        # wellClient's loginMode: "ask" asks the agent, "force" logs in anyway, "stop" stops
        raise CstaError(409, f"agent {job}@{domain} is logged in on device "
                             f"{current.get('device')}@{domain}; send force to take over",
                        "device")
    await services.run(set_agent_mode, services.ctx, domain, job, ext, mode, func, reason)
    return web.Response(status=204)


def set_agent_mode(ctx: Any, domain: str, job: str, ext: str, mode: str, func: str,
                   reason: str) -> None:
    """Apply a wellClient agent change to the ACD and announce it (blocking)."""
    keys = ctx.keys(domain)
    agent_id, dev = f"{job}@{domain}", f"{ext}@{domain}"
    agents = Agents(ctx, domain)
    now = int(time.time() * 1000)
    if func == "Logout":
        agent_service.make_busy(ctx, domain, ext)
        ctx.redis.delete(keys.csta_agent(job), keys.csta_pending(job))
        hub.publish(ctx, ev.agent_record("agentLoggedOff", domain=domain, agent_id=agent_id,
                                         device=dev, mode="Logout", ms=now))
        return
    if func == "Login":  # what the next subscription is owed starts with this login
        ctx.redis.delete(keys.csta_pending(job))
    agents.ensure(ext, job_number=job)
    previous = ctx.redis.hget(keys.csta_agent(job), "device")
    ctx.redis.hset(keys.csta_agent(job), mapping={"device": ext, "mode": mode, "since": now})
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


@guarded
async def heartbeat(request: web.Request) -> web.Response:
    """``POST /api/csta/agent/heartbeat/{loginId}``: the session is alive (204)."""
    services = services_of(request)
    principal = await principal_of(request)
    job, _ = split_address(request.match_info["login_id"], "loginId",
                           tuple(services.settings.domains))
    if not (principal.username == job or principal.at_least("supervisor")):
        raise CstaError(403, f"user {principal.username!r} may not act for agent {job!r}")
    return web.Response(status=204)


@guarded
async def make_call(request: web.Request) -> web.Response:
    """``POST /api/csta/callControl/calls`` {from: device, to: number} → {callId}."""
    services = services_of(request)
    principal = await principal_of(request)
    body = await body_of(request)
    ext, domain = split_address(str(body.get("from", "")), "from",
                                tuple(services.settings.domains))
    allow_device(principal, ext)
    to = str(body.get("to", "")).strip()
    kind = await services.run(target_kind, services.ctx, domain, to, "to")
    call_id = str(uuidlib.uuid4())
    await services.run(run_on_phone, services, domain, ext, "call", call_id=call_id, to=to,
                       kind=kind)
    return web.json_response({"callId": call_id,
                              "connectionId": ev.connection_id(f"{ext}@{domain}", call_id)})


def _connection(request: web.Request, services: Any) -> tuple[str, str, str, str]:
    """(callId, device, ext, domain) of the request's path."""
    call_id = check_call_id(request.match_info["call_id"])
    device, conn_call = ev.split_connection(request.match_info["connection"])
    if not device:
        raise CstaError(400, "the connection must be <deviceId>|<callId>", "connectionId")
    if conn_call and conn_call != call_id:
        raise CstaError(400, f"connection {request.match_info['connection']!r} is not of call "
                             f"{call_id}", "connectionId")
    ext, domain = split_address(device, "deviceId", tuple(services.settings.domains))
    return call_id, device, ext, domain


@guarded
async def connection_action(request: web.Request) -> web.StreamResponse:
    """``POST /api/csta/callControl/calls/{callId}/connections/{connectionId}/{action}``."""
    services = services_of(request)
    principal = await principal_of(request)
    call_id, device, ext, domain = _connection(request, services)
    allow_device(principal, ext)
    action = request.match_info["action"]
    body = await body_of(request)
    handler = _ACTIONS.get(action)
    if handler is None:
        raise CstaError(404, f"unknown call control action {action!r}")
    result = await services.run(handler, services, domain, call_id, device, ext, body)
    if result:
        return web.json_response(result)
    return web.Response(status=204)


@guarded
async def drop_connection(request: web.Request) -> web.StreamResponse:
    """``DELETE /api/csta/callControl/calls/{callId}/connections/{connectionId}``."""
    services = services_of(request)
    principal = await principal_of(request)
    call_id, device, ext, domain = _connection(request, services)
    allow_device(principal, ext)
    await services.run(_drop, services, domain, call_id, device, ext, {})
    return web.Response(status=204)


@guarded
async def user_data(request: web.Request) -> web.StreamResponse:
    """``POST /api/csta/callControl/calls/{callId}/user-data`` {entries: [{key, value}]}."""
    services = services_of(request)
    principal = await principal_of(request)
    call_id = check_call_id(request.match_info["call_id"])
    body = await body_of(request)
    entries = body.get("entries")
    if not isinstance(entries, list) or len(entries) > MAX_USERDATA:
        raise CstaError(400, f"entries must be a list of at most {MAX_USERDATA} "
                             "{key, value} objects", "entries")
    data = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) \
                or not _USERDATA_KEY.fullmatch(entry["key"]):
            raise CstaError(400, f"invalid entry {str(entry)[:200]!r}: {{key, value}} with a "
                                 "key of letters, digits, '_', '.' or '-' (at most 100)",
                            "entries")
        value = entry.get("value", "")
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            raise CstaError(400, f"the value of {entry['key']!r} must be text or a number",
                            "entries")
        text = "" if value is None else str(value)
        if len(text) > 1000 or _CONTROL.search(text):
            raise CstaError(400, f"the value of {entry['key']!r} must be at most 1000 "
                                 "characters without control characters", "entries")
        data[entry["key"]] = text
    domain = str(request.query.get("domain") or services.settings.default_domain)
    if domain not in services.settings.domains:
        raise CstaError(400, f"unknown domain {domain!r}", "domain")

    def write() -> None:
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
    await services.run(write)
    return web.Response(status=204)


@guarded
async def spy(request: web.Request) -> web.StreamResponse:
    """``POST /api/csta/callControl/calls/{callId}/spy?deviceId=<supervisor device>`` (and
    ``mode`` listen | whisper | barge; listen by default): a supervisor's phone joins."""
    services = services_of(request)
    principal = await principal_of(request)
    if not principal.at_least("supervisor"):
        raise CstaError(403, f"user {principal.username!r} is not a supervisor")
    call_id = check_call_id(request.match_info["call_id"])
    ext, domain = split_address(request.query.get("deviceId", ""), "deviceId",
                                tuple(services.settings.domains))
    mode = request.query.get("mode", "listen")
    if mode not in ("listen", "whisper", "barge"):
        raise CstaError(400, f"invalid mode {mode!r}: listen, whisper or barge", "mode")
    target = request.query.get("target", "")

    def invite() -> None:
        legs = call_legs(services.ctx, domain, call_id)
        if not legs:
            raise CstaError(404, f"no call {call_id}", "callId")
        # the agent's leg: what it hears is the whole conversation; whisper reaches it
        uuid = leg_for(legs, target, call_id) if target else next(
            (u for u, leg in legs.items() if is_agent_device(services.ctx, domain,
                                                              leg.get("d", ""))), next(iter(legs)))
        run_on_phone(services, domain, ext, "invite", uuid=uuid, mode=mode, call_id=call_id)
    await services.run(invite)
    return web.Response(status=204)


def is_agent_device(ctx: Any, domain: str, device: str) -> bool:
    name, _, dom = device.partition("@")
    return dom == domain and valid_extension(name) and \
        bool(ctx.redis.exists(ctx.keys(domain).agent(name)))


# ------------------------------------------------------------------------ actions -------
# (blocking; run in the services' worker threads) services, domain, callId, device, ext, body
def _leg_action(op: str) -> Callable[..., None]:
    """An action that runs the node command ``op`` on the leg of ``device`` in the call."""
    def act(services: Any, domain: str, call_id: str, device: str, ext: str,
            body: dict[str, Any]) -> None:
        legs = call_legs(services.ctx, domain, call_id)
        run_on_leg(services, leg_for(legs, device, call_id), op, domain=domain)
    act.__name__ = f"_{op}"
    return act


_answer, _drop = _leg_action("answer"), _leg_action("drop")
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
    run_on_leg(services, parties[0], "transfer", domain=domain, to=number, kind=kind)
    hub.publish(services.ctx, {
        "name": "transferred", "domain": domain, "callId": call_id, "device": device,
        "localState": "None", "parties": [leg.get("d") for leg in legs.values()],
        "primaryOldCall": call_id, "secondaryOldCall": "", "transferringDevice": device,
        "transferredToDevice": f"{number}@{domain}", "newCall": call_id,
        "time": int(time.time() * 1000)})
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
    run_on_phone(services, domain, number, "invite", uuid=mine,
                 mode="barge" if kind == "Active" else "listen", call_id=call_id)
    hub.publish(services.ctx, {
        "name": "conferenced", "domain": domain, "callId": call_id,
        "device": f"{number}@{domain}", "localState": "Connect",
        "parties": [*[leg.get("d") for leg in legs.values()], f"{number}@{domain}"],
        "primaryOldCall": "0", "secondaryOldCall": call_id, "conferencingDevice": device,
        "addedParty": f"{number}@{domain}", "newCall": call_id,
        "time": int(time.time() * 1000)})


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
    if not _UUID.fullmatch(consult):
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
    if held[mine].get("s") == "Hold":
        run_on_leg(services, mine, "unhold", domain=domain)
    # the agent's consult leg ends with its bridge, the consulted party having left it
    hub.publish(services.ctx, {
        "name": "conferenced", "domain": domain, "callId": call_id, "device": added,
        "localState": "Connect",
        "parties": list(dict.fromkeys([*[leg.get("d") for leg in held.values()], added])),
        "primaryOldCall": call_id, "secondaryOldCall": consult, "conferencingDevice": device,
        "addedParty": added, "newCall": call_id, "time": int(time.time() * 1000)})


_ACTIONS: dict[str, Callable[..., Any]] = {
    "answer": _answer, "hold": _hold, "retrieve": _retrieve,
    "singleStepTransfer": _single_step_transfer,
    "singleStepConference": _single_step_conference, "consult": _consult,
    "conference": _conference, "cancelConsult": _cancel_consult, "transfer": _transfer,
    "clear": _drop,
}


def install(app: web.Application) -> None:
    base = "/api/csta"
    # Path parameters take any segment: the token is checked first, then the value (a
    # malformed one answers 400 naming it, not 404).
    app.router.add_post("/login", login)
    app.router.add_post(f"{base}/agent/state", agent_state)
    app.router.add_post(f"{base}/agent/heartbeat/{{login_id:[^/]+}}", heartbeat)
    app.router.add_post(f"{base}/callControl/calls", make_call)
    calls = f"{base}/callControl/calls/{{call_id:[^/]+}}"
    app.router.add_post(f"{calls}/connections/{{connection:[^/]+}}/{{action:[^/]+}}",
                        connection_action)
    app.router.add_delete(f"{calls}/connections/{{connection:[^/]+}}", drop_connection)
    app.router.add_post(f"{calls}/user-data", user_data)
    app.router.add_post(f"{calls}/spy", spy)


# ------------------------------------------------------------------------ wallboard -----
def wallboard(ctx: Any, domain: str, now_ms: int | None = None) -> dict[str, Any]:
    """The supervisor's view of a domain (blocking; a handful of round trips): groups with
    their waiting callers and longest wait, agents with state and time in it, live calls."""
    now = now_ms or int(time.time() * 1000)
    keys = ctx.keys(domain)
    groups = Groups(ctx, domain)
    waiting = CallQueue(ctx, domain).waiting()
    agents = Agents(ctx, domain).all()
    group_rows = []
    for number in groups.numbers():
        group = groups.get(number)
        mine = [w for w in waiting if w.group == number]
        members = groups.members(number)
        group_rows.append({
            "group": number, "name": group.group_name if group else number,
            "waiting": len(mine), "members": len(members),
            "ready": sum(1 for a in agents if a.extension in members and a.available(now)),
            "longestWaitMs": max((now - w.arrived_ms for w in mine), default=0),
            "callers": [{"number": w.number, "level": w.level, "waitMs": now - w.arrived_ms,
                         "uuid": w.uuid} for w in sorted(mine, key=lambda w: w.arrived_ms)]})
    jobs: dict[str, str] = {}
    for key in ctx.redis.scan_iter(match=keys.csta_agent("*"), count=500):
        job = str(key).rsplit(":", 1)[-1]
        dev = ctx.redis.hget(key, "device")
        if dev:
            jobs[str(dev)] = job
    call_ids = sorted(set(ctx.redis.hvals(keys.csta_legs())))
    pipe = ctx.redis.pipeline(transaction=False)
    for call_id in call_ids:
        pipe.hgetall(keys.csta_call(call_id))
    calls = []
    for call_id, doc in zip(call_ids, pipe.execute(), strict=True):
        parties = []
        for name, value in doc.items():
            if name.startswith("p:"):
                try:
                    leg = json.loads(value)
                except ValueError:
                    continue
                parties.append({"uuid": name[2:], "device": leg.get("d", ""),
                                "state": leg.get("s", "")})
        if parties:
            calls.append({"callId": call_id, "calling": doc.get("calling", ""),
                          "called": doc.get("called", ""), "parties": parties})
    # A call the ACD did not place (a consult, a direct call) shows on the agent's row too.
    on_call: dict[str, str] = {}
    for call in calls:
        for party in call["parties"]:
            state = {"Alerting": "ring", "Connect": "talking", "Hold": "talking",
                     "Initiate": "talking"}.get(party["state"], "")
            if state and on_call.get(party["device"]) != "talking":
                on_call[party["device"]] = state
    agent_rows = []
    for a in agents:
        dev = f"{a.extension}@{domain}"
        state = a.call_state
        if state not in ("ring", "talking") and dev in on_call:
            state = on_call[dev]
        agent_rows.append({
            "extension": a.extension, "job": a.job_number or jobs.get(a.extension, ""),
            "state": state, "seat": a.seat_status, "loggedIn": a.logged_in,
            "registered": a.reg_state == "reged", "groups": list(a.groups),
            "sinceMs": max(0, now - a.last_change) if a.last_change else 0, "device": dev})
    return {"domain": domain, "time": now, "groups": group_rows, "agents": agent_rows,
            "calls": calls}


@guarded
async def wallboard_view(request: web.Request) -> web.Response:
    """``GET /api/csta/wallboard?domain=<d>`` (supervisor)."""
    services = services_of(request)
    principal = await principal_of(request)
    if not principal.at_least("supervisor"):
        raise CstaError(403, f"user {principal.username!r} is not a supervisor")
    domain = request.query.get("domain") or services.settings.default_domain
    if domain not in services.settings.domains:
        raise CstaError(400, f"unknown domain {domain!r}", "domain")
    return web.json_response(await services.run(wallboard, services.ctx, domain))


@guarded
async def force_drop(request: web.Request) -> web.StreamResponse:
    """``POST /api/csta/supervise/drop {callId, uuid}`` (supervisor): hang up one leg of a
    call (the wallboard's hang-up; the SDK's forceDrop uses DELETE on the connection)."""
    services = services_of(request)
    principal = await principal_of(request)
    if not principal.at_least("supervisor"):
        raise CstaError(403, f"user {principal.username!r} is not a supervisor")
    body = await body_of(request)
    call_id = check_call_id(str(body.get("callId", "")))
    domain = str(body.get("domain") or services.settings.default_domain)
    if domain not in services.settings.domains:
        raise CstaError(400, f"unknown domain {domain!r}", "domain")

    def drop_all() -> None:
        legs = call_legs(services.ctx, domain, call_id)
        if not legs:
            raise CstaError(404, f"no call {call_id}", "callId")
        for uuid in legs:
            try:
                run_on_leg(services, uuid, "drop", domain=domain)
            except (CstaError, FsappsError):
                pass
    await services.run(drop_all)
    return web.Response(status=204)


def install_supervision(app: web.Application) -> None:
    app.router.add_get("/api/csta/wallboard", wallboard_view)
    app.router.add_post("/api/csta/supervise/drop", force_drop)


def documented_routes() -> list[Any]:
    """The wellClient REST calls as entries of the CTI server's OpenAPI document
    (:mod:`fsapps.server.registry`); documentation only: the handlers above do their own checks."""
    def path(*names: str) -> tuple[Any, ...]:
        return tuple(Field(n, kind="text", where="path") for n in names)

    def body(*names: str) -> tuple[Any, ...]:
        return tuple(Field(n, kind="text", required=False) for n in names)

    def doc(handler: Handler) -> Any:
        return handler  # only its name is used (operationId)

    conn = "/api/csta/callControl/calls/{call_id}/connections/{connection}"
    tag, ok = OPENAPI_TAG, {"type": "object"}
    errors = (400, 401, 403, 404, 409)
    return [
        Route("POST", "/login", doc(login), "wellClient login (form: username, password, "
              "namespace) -> sessionId", role=None, tag=tag, response=ok,
              errors=(400, 401, 429), content_type="application/json"),
        Route("POST", "/api/csta/agent/state", doc(agent_state),
              "Login / Logout / SetState of an agent (loginId job@domain, device ext@domain)",
              fields=body("func", "loginId", "device", "agentMode", "reason"), tag=tag,
              response=ok, errors=errors),
        Route("POST", "/api/csta/agent/heartbeat/{login_id}", doc(heartbeat), "agent heart-beat",
              fields=path("login_id"), tag=tag, response=ok, errors=errors),
        Route("POST", "/api/csta/callControl/calls", doc(make_call), "makeCall {from, to}",
              fields=body("from", "to"), tag=tag, response=ok, errors=errors),
        Route("POST", conn + "/{action}", doc(connection_action),
              "answer | hold | retrieve | singleStepTransfer | singleStepConference | consult "
              "| conference | cancelConsult | transfer", fields=path("call_id", "connection",
                                                                     "action"),
              tag=tag, response=ok, errors=errors),
        Route("DELETE", conn, doc(drop_connection), "hang up a connection",
              fields=path("call_id", "connection"), tag=tag, response=ok, errors=errors),
        Route("POST", "/api/csta/callControl/calls/{call_id}/user-data", doc(user_data),
              "set call data {entries: [{key, value}]}", fields=path("call_id"), tag=tag,
              response=ok, errors=errors),
        Route("POST", "/api/csta/callControl/calls/{call_id}/spy", doc(spy),
              "a supervisor's phone listens / whispers / barges (?deviceId=&mode=)",
              role="supervisor", fields=path("call_id"), tag=tag, response=ok,
              errors=errors),
        Route("GET", "/api/csta/wallboard", doc(wallboard_view), "the wallboard snapshot",
              role="supervisor", tag=tag, response=ok, errors=errors),
        Route("POST", "/api/csta/supervise/drop", doc(force_drop), "hang up every leg of a call",
              role="supervisor", fields=body("callId", "domain"), tag=tag, response=ok,
              errors=errors),
    ]
