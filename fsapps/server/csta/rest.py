"""wellClient's REST calls (seed 004; paths and bodies of the public wellClient 2017 source):
``POST /login`` and the ``/api/csta`` call and agent control.

Every call but ``/login`` carries the token ``/login`` answered, in the header ``sessionId``
(``Authorization: Nway <token>`` is taken too), or the session cookie ``/login`` set (from the
CTI server's own pages or an allowed origin only: :mod:`fsapps.server.cors`). An agent may act
only on its own job number and extension; a supervisor on any (the force* calls of the SDK
are the same calls made by a supervisor). Devices are ``<ext>@<domain>``, agents
``<job>@<domain>``, connections ``<device>|<callId>`` (``%7C`` accepted for ``|``); each part
is checked (extension rules of :mod:`fsapps.domain.numbers`, a configured domain, a canonical
callId) before it reaches Redis or a switch. Success is 204, or 200 with JSON where there is
something to say (the new callId); errors are JSON ``{"error": ..., "field": ...}``: 400 bad
input, 401/403, 404 unknown call or connection, 409 the switch refused, 503/504 Redis or the node.

This module parses the requests and answers them; what they do, blocking, is
:mod:`fsapps.server.csta.callcontrol` (switch actions on the node holding the leg, through
:mod:`fsapps.switch.nodecommands`; agent changes through :mod:`fsapps.services.agents`) and
:mod:`fsapps.server.csta.wallboard`. The events that follow come from the switch
(:mod:`fsapps.events.cstafeed`), except agent changes, transfers and conferences, whose records
callcontrol publishes itself.
"""

from __future__ import annotations

import functools
import json
import re
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fsapps.errors import FsappsError
from fsapps.server import cors, reads
from fsapps.server.auth import request_token
from fsapps.server.csta import callcontrol as cc
from fsapps.server.csta import events as ev
from fsapps.server.csta import hub, presence, wallboard
from fsapps.server.csta.callcontrol import CALL_ID, CstaError, split_address
from fsapps.server.http_errors import http_error
from fsapps.server.registry import Field, Route
from fsapps.server.services import CtiServices
from fsapps.server.services import services_of as services_app

OPENAPI_TAG = "wellClient (seed 004)"
MAX_USERDATA = 50
# Call-data keys are names (the seed's agentId, customerId): whatever later uses them (a channel
# variable, a CDR column, a page) gets no ``${``, ``|``, ``,``, quotes, spaces or markup.
_USERDATA_KEY = re.compile(r"\w[\w.\-]{0,99}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def token_of(request: web.Request) -> str:
    """wellClient's ``sessionId`` header, else the ``Authorization`` token, else the session
    cookie (when the page sending it may use it)."""
    return request.headers.get("sessionId", "").strip() or request_token(request) or \
        cors.cookie_token(request)


async def principal_of(request: web.Request) -> Any:
    """The user behind the request's token (:func:`token_of`); NotAuthorized without one."""
    services = services_of(request)
    return await services.run(services.auth.check, token_of(request))


def check_call_id(text: str) -> str:
    if not CALL_ID.fullmatch(text or ""):
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


def allow_device(principal: Any, ext: str, domain: str) -> None:
    """An agent acts on its own extension; a supervisor on those of the domains it oversees."""
    allowed = principal.oversees(domain) if principal.at_least("supervisor") else \
        principal.may_act_on(ext)
    if not allowed:
        raise CstaError(403, f"user {principal.username!r} may not act on extension "
                             f"{ext}@{domain}")


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
    response = web.json_response({"sessionId": token, "username": principal.username,
                                  "role": principal.role, "extension": principal.extension,
                                  "namespace": namespace or services.settings.default_domain})
    # the same token as a cookie: the SDK's STOMP CONNECT carries no header, its SockJS
    # requests and WebSocket handshake carry this
    cors.set_session_cookie(request, response, token,
                            int(services.settings.cti.token_ttl_seconds))
    return response


@guarded
async def agent_state(request: web.Request) -> web.StreamResponse:
    """``POST /api/csta/agent/state`` {func: Login|Logout|SetState, loginId, device,
    agentMode, reason}. Without ``loginId`` (the SDK's SetState and Logout send only
    ``device``) the agent is the session's user."""
    services = services_of(request)
    principal = await principal_of(request)
    body = await body_of(request)
    domains = tuple(services.settings.domains)
    func = str(body.get("func", ""))
    if func not in ("Login", "Logout", "SetState"):
        raise CstaError(400, f"invalid func {func!r}: Login, Logout or SetState", "func")
    job, domain = session_agent(principal, body, services.settings)
    current = await services.run(hub.agent_state, services.ctx, domain, job)
    # (wellClient 4.2.2's Logout names no device: the one the agent logged in on)
    device = str(body.get("device") or
                 (f"{current['device']}@{domain}" if current.get("device") else ""))
    ext, dev_domain = split_address(device, "device", domains)
    if dev_domain != domain:
        raise CstaError(400, f"device {device!r} is not in domain {domain!r}", "device")
    allow_device(principal, ext, domain)
    if func != "Login" and current.get("device") not in (None, ext) \
            and not principal.at_least("supervisor"):
        # an agent changes the session it logged in with, not one named by another device
        raise CstaError(403, f"device {device!r} is not the device agent {job}@{domain} is "
                             f"logged in on", "device")
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
    await services.run(cc.set_agent_mode, services.ctx, domain, job, ext, mode, func, reason)
    return web.Response(status=204)


def session_agent(principal: Any, body: dict[str, Any], settings: Any) -> tuple[str, str]:
    """(job, domain) a state change or heart-beat is for: ``loginId`` when given (an agent only
    its own; a supervisor any), else the session's user in the domain of ``device`` (else
    ``namespace``, else the default domain)."""
    domains = tuple(settings.domains)
    # (wellClient 4.x names the agent agentId in Logout and SetState, loginId elsewhere)
    login_id = str(body.get("loginId") or body.get("agentId") or "")
    if not login_id:
        device = str(body.get("device") or "")
        if device:
            _, domain = split_address(device, "device", domains)
        else:
            domain = str(body.get("namespace") or settings.default_domain)
        login_id = f"{principal.username}@{domain}"
    job, domain = split_address(login_id, "loginId", domains)
    if not (principal.username == job or principal.oversees(domain)):
        raise CstaError(403, f"user {principal.username!r} may not act for agent "
                             f"{job}@{domain}")
    return job, domain


@guarded
async def heartbeat(request: web.Request) -> web.Response:
    """``POST /api/csta/agent/heartbeat[/{loginId}]``: the session is alive (204); without a
    loginId, the session's own agent. The agent's page is heard from: it stays logged in
    (:mod:`fsapps.server.csta.presence`)."""
    services = services_of(request)
    principal = await principal_of(request)
    job, domain = session_agent(principal, {"loginId": request.match_info.get("login_id", ""),
                                            "namespace": request.query.get("namespace", "")},
                                services.settings)
    if principal.username == job:  # (a supervisor's call says nothing of the agent's page)
        await services.run(presence.heard_from, services.ctx, domain, [job])
    return web.Response(status=204)


@guarded
async def make_call(request: web.Request) -> web.Response:
    """``POST /api/csta/callControl/calls`` {from: device, to: number} → {callId}."""
    services = services_of(request)
    principal = await principal_of(request)
    body = await body_of(request)
    ext, domain = split_address(str(body.get("from", "")), "from",
                                tuple(services.settings.domains))
    allow_device(principal, ext, domain)
    to = str(body.get("to", "")).strip()
    kind = await services.run(cc.target_kind, services.ctx, domain, to, "to")
    call_id = str(uuidlib.uuid4())
    await services.run(cc.run_on_phone, services, domain, ext, "call", call_id=call_id, to=to,
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
    allow_device(principal, ext, domain)
    action = request.match_info["action"]
    body = await body_of(request)
    handler = cc.ACTIONS.get(action)
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
    allow_device(principal, ext, domain)
    await services.run(cc.drop, services, domain, call_id, device, ext, {})
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
    await services.run(cc.write_user_data, services, principal, domain, call_id, data)
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
    if not principal.oversees(domain):
        raise CstaError(403, f"user {principal.username!r} does not oversee {domain!r}")
    mode = request.query.get("mode", "listen")
    if mode not in ("listen", "whisper", "barge"):
        raise CstaError(400, f"invalid mode {mode!r}: listen, whisper or barge", "mode")
    target = request.query.get("target", "")
    await services.run(cc.invite_supervisor, services, domain, call_id, ext, mode, target)
    return web.Response(status=204)


# ------------------------------------------------------------------------ routes --------
def install(app: web.Application) -> None:
    base = "/api/csta"
    # Path parameters take any segment: the token is checked first, then the value (a
    # malformed one answers 400 naming it, not 404).
    app.router.add_post("/login", login)
    app.router.add_post(f"{base}/agent/state", agent_state)
    app.router.add_post(f"{base}/agent/heartbeat/{{login_id:[^/]+}}", heartbeat)
    app.router.add_post(f"{base}/agent/heartbeat", heartbeat)
    app.router.add_post(f"{base}/callControl/calls", make_call)
    calls = f"{base}/callControl/calls/{{call_id:[^/]+}}"
    app.router.add_post(f"{calls}/connections/{{connection:[^/]+}}/{{action:[^/]+}}",
                        connection_action)
    app.router.add_delete(f"{calls}/connections/{{connection:[^/]+}}", drop_connection)
    app.router.add_post(f"{calls}/user-data", user_data)
    app.router.add_post(f"{calls}/spy", spy)


# ------------------------------------------------------------------------ wallboard -----
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
    if not principal.oversees(domain):
        raise CstaError(403, f"user {principal.username!r} does not oversee {domain!r}")
    # shared by the supervisors polling it at one moment: one read and one encoding a round
    read = reads.shared(services, f"wallboard:{domain}",
                        functools.partial(wallboard.wallboard, services.ctx, domain))
    return reads.body_response(await read.read(services.run))


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
    if not principal.oversees(domain):
        raise CstaError(403, f"user {principal.username!r} does not oversee {domain!r}")
    await services.run(cc.drop_call, services, domain, call_id)
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
        Route("POST", "/api/csta/agent/heartbeat", doc(heartbeat),
              "heart-beat of the session's own agent", tag=tag, response=ok, errors=errors),
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
