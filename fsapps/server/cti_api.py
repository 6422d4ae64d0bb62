"""Seed 001's REST API (mod_nwayacd, port 8085), path for path and field for field, plus
``/api/logout`` and ``/api/me``. Handlers are thin: the declaration checks the input
(:mod:`fsapps.server.registry`), the function calls one operation (:mod:`fsapps.server.operations`).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from aiohttp import web

from fsapps.domain.agents import Agents
from fsapps.server import operations as ops
from fsapps.server import reads
from fsapps.server.auth import AuthError, NotAuthorized, request_token
from fsapps.server.registry import Call, Field, Route, json_response, ok, register
from fsapps.store.connection import store_errors

LOG = logging.getLogger("fsapps.server")
EXT = Field("Extension", "extension", own=True, known=True,
            description="the agent's extension")
PATH_EXT = Field("ext", "extension", where="path", own=True, known=True,
                 description="the extension")
# Reading is not acting: any user may read any extension's state (get_extensions lists all).
READ_EXT = Field("ext", "extension", where="path", known=True, description="the extension")
# The seed reuses the eavesdrop field names for transfer and three-way.
EVDED = Field("EvdedPhone", "extension", own=True, known=True)
EVD = Field("EvdPhone", "phone")
GATEWAY = Field("EvdGateway", "gateway", required=False,
                description="a gateway when EvdPhone is an outside number; empty for none")


def _array(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": _object(properties)}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties),
            "properties": {k: {"type": "string", "description": v}
                           for k, v in properties.items()}}


TOKEN = {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}}
QUEUE_ROW = {"Uuid": "the caller's channel uuid", "Number": "the caller's number",
             "RealCallinNumber": "the number as it came in", "Group": "the group",
             "Level": "normal or vip",
             "CallinTime": "when the call arrived (RFC 3339, as Go's time.Time)"}
EXTENSION_ROW = {"Extension": "the extension", "RegStatus": "reged or unreg",
                 "AgentState": "the seat: idle or busy",
                 "CallState": "ready, ring, talking, ivr, typing, no_answer, busy, rest or "
                              "no_ready",
                 "LastStatusChangeTime": "YYYY-MM-DD HH:MM:SS of the last call-state change"}
EXTENSION_INFO = {"reg_state": "reged (registered) or unreg",
                  "seat_status": "idle or busy", "call_state": "ready, talking, ring, ..."}
ME = {"username": "the user", "role": "agent, supervisor or admin",
      "extension": "the user's own extension (may be empty)"}


SEED_NOT_AUTHORIZED = "Not Authorized"


async def login(call: Call) -> Any:
    remote = call.request.remote or ""
    try:
        token = await call.services.run(call.services.auth.login, call["username"],
                                        call["password"], remote)
    except AuthError as exc:
        LOG.warning("login refused for user %r from %s: %s", call["username"], remote,
                    exc.message)
        if isinstance(exc, NotAuthorized):
            # seed 001's answer, verbatim: the JSON string "Not Authorized"
            return json_response(SEED_NOT_AUTHORIZED, 401,
                                 {"WWW-Authenticate": 'Nway realm="fsapps"'})
        raise
    LOG.info("login: user %r from %s", call["username"], remote)
    return {"token": token}


async def logout(call: Call) -> Any:
    await call.services.run(call.services.auth.revoke, request_token(call.request))
    return ok("token revoked")


async def me(call: Call) -> Any:
    assert call.principal is not None
    return {"username": call.principal.username, "role": call.principal.role,
            "extension": call.principal.extension}


def _domain_op(fn: Any, *names: str) -> Any:
    """A route function calling ``fn(ctx, domain, *values)`` and answering ok(message)."""
    async def run(call: Call) -> Any:
        s = call.services
        return ok(await s.run(fn, s.ctx, s.domain, *(call[n] for n in names)))
    run.__name__ = fn.__name__
    return run


def _agent_op(blocking: Any, on_loop: Any) -> Any:
    """agent_ready / agent_busy: on the event loop with the services' asyncio client (one
    script, no worker thread), else ``blocking`` in a worker thread."""
    async def run(call: Call) -> Any:
        s = call.services
        if s.aredis is None:
            return ok(await s.run(blocking, s.ctx, s.domain, call["Extension"]))
        with store_errors(getattr(s.redis, "fsapps_where", "Redis")):
            return ok(await on_loop(s, call["Extension"]))
    run.__name__ = blocking.__name__
    return run


async def queues(call: Call) -> Any:
    s = call.services  # shared by the requests of one moment, encoded once per change
    read = reads.shared(s, "queues", functools.partial(ops.queue_rows, s.ctx, s.domain))
    return reads.body_response(await read.read(s.run))


async def get_extensions(call: Call) -> Any:
    s = call.services
    if s.aredis is not None:  # on the event loop, shared and encoded once per change
        with store_errors(getattr(s.redis, "fsapps_where", "Redis")):
            body = await reads.extension_rows(s).read(s.aredis, Agents(s.ctx, s.domain))
        return reads.body_response(body)
    return await s.run(ops.extension_rows, s.ctx, s.domain)


async def extension_info(call: Call) -> Any:
    if call.prefetched is not None:
        return call.prefetched
    return await call.services.run(ops.extension_info, call.services.ctx,
                                   call.services.domain, call["ext"])


def _services_op(fn: Any, *names: str, **fixed: Any) -> Any:
    """A route function calling ``fn(services, *values, **fixed)`` and answering ok(...)."""
    async def run(call: Call) -> Any:
        args = [call.get(n) for n in names]
        return ok(await call.services.run(fn, call.services, *args, **fixed))
    run.__name__ = f"{fn.__name__}{''.join('_' + k for k, v in fixed.items() if v)}"
    return run


def _named(fn: Any, name: str) -> Any:
    fn.__name__ = name
    return fn


ROUTES = [
    Route("POST", "/api/login", login, "get a token", role=None,
          fields=(Field("username", "text"), Field("password", "text")), response=TOKEN,
          errors=(400, 401, 422, 429),
          description="`{\"username\", \"password\"}` → `{\"token\"}`; a wrong name or "
                      "password answers 401 `Not Authorized`; too many failures 429."),
    Route("POST", "/api/logout", logout, "revoke the token of this request", tag="session"),
    Route("GET", "/api/me", me, "who the token belongs to", response=_object(ME),
          tag="session"),
    Route("POST", "/api/agent_up", _domain_op(ops.agent_up, "Extension", "Groups"),
          "agent up (上线): join exactly these groups, idle and ready",
          fields=(EXT, Field("Groups", "groups", description="e.g. \"12345,110\""))),
    Route("POST", "/api/agent_down", _domain_op(ops.agent_down, "Extension"),
          "agent down (下线): leave every group", fields=(EXT,)),
    Route("POST", "/api/agent_ready", _agent_op(ops.agent_ready, ops.agent_ready_async),
          "ready (置闲): seat idle, call state ready", fields=(EXT,)),
    Route("POST", "/api/agent_busy", _agent_op(ops.agent_busy, ops.agent_busy_async),
          "busy (置忙): no queue calls", fields=(EXT,)),
    Route("POST", "/api/extension_callstate",
          _domain_op(ops.set_call_state, "Extension", "Value"),
          "set the agent's call state (checked transitions)",
          fields=(EXT, Field("Value", "choice", choices=ops.CALL_STATES))),
    Route("GET", "/api/queues", queues, "callers waiting in the queues",
          response=_array(QUEUE_ROW)),
    Route("GET", "/api/get_extensions", get_extensions, "every agent's state",
          response=_array(EXTENSION_ROW)),
    Route("GET", "/api/extension_info/{ext}", extension_info, "one extension's state",
          fields=(READ_EXT,), response=_object(EXTENSION_INFO),
          reads=reads.queue_extension_info),
    Route("POST", "/api/transfer", _services_op(ops.transfer, "EvdedPhone", "EvdPhone",
                                                "EvdGateway"),
          "transfer: the party talking with EvdedPhone goes to EvdPhone",
          fields=(EVDED, EVD, GATEWAY)),
    Route("GET", "/api/answer/{ext}", _services_op(ops.answer, "ext"),
          "the extension's ringing phone answers", fields=(PATH_EXT,)),
    Route("GET", "/api/hangup/{ext}", _services_op(ops.hangup, "ext"),
          "hang up the extension's call", fields=(PATH_EXT,)),
    Route("POST", "/api/eavesdrop",
          _named(_services_op(ops.eavesdrop, "EvdedPhone", "EvdPhone", "EvdGateway",
                              mode="listen"), "eavesdrop"),
          "listen (监听): EvdPhone is rung and listens to EvdedPhone's call (DTMF 1/2/3/0 "
          "switch modes)", role="supervisor",
          fields=(Field("EvdedPhone", "extension", known=True,
                        description="the extension listened to"),
                  Field("EvdPhone", "phone", description="who listens"), GATEWAY)),
    Route("POST", "/api/threeway",
          _services_op(ops.threeway, "EvdPhone", "EvdedPhone", "EvdGateway"),
          "three-way: EvdedPhone is rung into EvdPhone's call",
          fields=(Field("EvdedPhone", "phone", description="who is invited"),
                  Field("EvdPhone", "extension", own=True, known=True,
                        description="the extension on the call"), GATEWAY)),
    Route("GET", "/api/hold/{ext}", _services_op(ops.hold, "ext", on=True),
          "hold the extension's call (its peer hears hold music)", fields=(PATH_EXT,)),
    Route("GET", "/api/unhold/{ext}", _named(_services_op(ops.hold, "ext", on=False),
                                             "unhold"),
          "take the extension's call off hold", fields=(PATH_EXT,)),
    Route("GET", "/api/phone_hold/{ext}", _services_op(ops.phone_hold, "ext", on=True),
          "the phone puts its call on hold", fields=(PATH_EXT,)),
    Route("GET", "/api/phone_unhold/{ext}",
          _named(_services_op(ops.phone_hold, "ext", on=False), "phone_unhold"),
          "the phone takes its call back", fields=(PATH_EXT,)),
]


def install(app: web.Application) -> None:
    for route in ROUTES:
        register(app, route)
