"""Routes of the CTI server as data: method, path, role, the fields they take and what they
answer. One declaration drives three things, so they cannot drift apart:

- the aiohttp handler wrapper (:func:`register`): token and role check, validation of every
  path parameter, query parameter and body field (type, format, presence), the own-extension
  rule for agents and the known-extension check — all before the route's function runs, so a
  refused request changes nothing;
- the JSON errors: ``{"error": "<what>", "field": "<name>"}`` with a 4xx status;
- the OpenAPI document (:func:`openapi`), served at ``/api/openapi.json``.

Issue 9's routes (CSTA, SockJS/STOMP) may register the same way to appear in the document.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fsapps import __version__
from fsapps.errors import ClientError
from fsapps.server.access import authenticate, authenticate_reading
from fsapps.server.auth import Forbidden, Principal
from fsapps.server.services import CtiServices, services_of
from fsapps.services.agents import known_reads, unknown_extensions

MAX_TEXT = 256
AUDIT = logging.getLogger("fsapps.server.audit")


class ApiError(ClientError):
    """A request refused with ``status`` (4xx) and a JSON error naming ``field``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        self.status = status
        self.message = message
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Kind:
    """A value format: its JSON schema and the check the server applies."""

    schema: Mapping[str, Any]
    check: Callable[[str], bool]
    what: str


def _matches(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda value: compiled.fullmatch(value) is not None


_NAME = r"[A-Za-z0-9_.-]{1,50}"
KINDS: dict[str, Kind] = {
    "extension": Kind({"type": "string", "pattern": f"^{_NAME}$", "example": "1002"},
                      _matches(_NAME), "an extension ([A-Za-z0-9_.-], 1-50 characters)"),
    "groups": Kind({"type": "string", "pattern": f"^{_NAME}(,{_NAME})*$",
                    "example": "12345,110"},
                   _matches(f"{_NAME}(,{_NAME})*"), "a comma-separated list of groups"),
    "phone": Kind({"type": "string", "pattern": r"^\+?[A-Za-z0-9_.-]{1,50}$", "example": "1003"},
                  _matches(r"\+?[A-Za-z0-9_.-]{1,50}"),
                  "an extension, or a phone number (digits, optional leading +)"),
    "gateway": Kind({"type": "string", "pattern": r"^([A-Za-z0-9_.-]{1,64})?$", "example": ""},
                    _matches(r"([A-Za-z0-9_.-]{1,64})?"),
                    "a gateway name ([A-Za-z0-9_.-]), or empty for none"),
    "text": Kind({"type": "string", "maxLength": MAX_TEXT},
                 lambda value: len(value) <= MAX_TEXT, f"at most {MAX_TEXT} characters"),
    "choice": Kind({"type": "string"}, lambda value: True, "one of the listed values"),
    "node": Kind({"type": "string", "pattern": r"^[^\s{}]{1,64}$"},
                 _matches(r"[^\s{}]{1,64}"), "a node name"),
}


@dataclass(frozen=True)
class Field:
    """One input of a route: a body field (default), a ``path`` or a ``query`` parameter."""

    name: str
    kind: str = "extension"
    required: bool = True
    description: str = ""
    where: str = "body"
    choices: tuple[str, ...] = ()
    # Agents may only name their own extension here.
    own: bool = False
    # Must be an extension fsapps knows (agent, directory, registration or extension record).
    known: bool = False

    def schema(self) -> dict[str, Any]:
        schema = dict(KINDS[self.kind].schema)
        if self.choices:
            schema["enum"] = list(self.choices)
        if self.description:
            schema["description"] = self.description
        return schema

    def parse(self, value: object) -> str:
        """The checked value; ApiError 422 naming the field otherwise."""
        if not isinstance(value, str):
            raise ApiError(422, f"field {self.name!r} must be a string, got "
                           f"{_json_type(value)}", self.name)
        if self.choices and value not in self.choices:
            raise ApiError(422, f"field {self.name!r} = {_short(value)!r}: must be one of "
                           f"{', '.join(self.choices)}", self.name)
        if not KINDS[self.kind].check(value):
            raise ApiError(422, f"field {self.name!r} = {_short(value)!r}: expected "
                           f"{KINDS[self.kind].what}", self.name)
        return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def _short(value: str) -> str:
    return value if len(value) <= 60 else value[:57] + "..."


@dataclass
class Call:
    """What a route's function gets: the checked values and who asked."""

    request: web.Request
    services: CtiServices
    principal: Principal | None
    values: dict[str, str]
    # what the route's ``reads`` found in the token check's round trip (None: not read so)
    prefetched: Any = None

    def __getitem__(self, name: str) -> str:
        return self.values[name]

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name) or default


RouteFn = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    fn: RouteFn
    summary: str
    role: str | None = "agent"  # None: no token needed
    fields: tuple[Field, ...] = ()
    response: Mapping[str, Any] = field(default_factory=lambda: OK_SCHEMA)
    description: str = ""
    tag: str = "seed 001"
    errors: tuple[int, ...] = (400, 401, 403, 404, 409, 422)
    content_type: str = "application/json"
    # reads(services, values, pipeline) -> finish(replies): the route's Redis reads, queued
    # on the token check's pipeline (one round trip on the event loop); finish's answer is
    # Call.prefetched
    reads: Callable[[CtiServices, dict[str, str], Any], Callable[[list[Any]], Any]] | None = None

    @property
    def query_key(self) -> bool:
        """Does the route take its token as ``?key=`` (mod_cti's httpcli)? Others take it from
        the Authorization header only: a token in a URL ends up in proxy and access logs."""
        return any(f.name == "key" and f.where == "query" for f in self.fields)


ROUTES: web.AppKey[list[Route]] = web.AppKey("fsapps_cti_routes", list)

OK_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["result", "message"],
    "properties": {"result": {"type": "string", "enum": ["ok"]},
                   "message": {"type": "string", "description": "what happened"}}}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what was wrong"},
                   "field": {"type": "string",
                             "description": "the body field or parameter at fault"}}}


def ok(message: str) -> dict[str, str]:
    return {"result": "ok", "message": message.strip()}


def register(app: web.Application, route: Route) -> None:
    """Add ``route`` to the app and to its OpenAPI document."""
    if ROUTES not in app:
        app[ROUTES] = []
    app[ROUTES].append(route)
    app.router.add_route(route.method, route.path, _handler(route))


def _handler(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        services = services_of(request.app)
        prefetched: Any = None
        known: set[str] = set()
        principal: Principal | None
        if route.role and services.aredis is not None:
            # the token, the extensions' existence and the route's own reads: one pipelined
            # round trip on the event loop (a bad field still answers after a bad token)
            try:
                values, refused = await parse(route, request), None
            except ApiError as exc:
                values, refused = {}, exc
            checks = [(spec.name, known_reads(services.ctx, services.domain, values[spec.name]))
                      for spec in route.fields if spec.known and values.get(spec.name)]
            reads = route.reads if refused is None else None

            def queue(pipe: Any) -> Callable[[list[Any]], Any]:
                for _, commands in checks:
                    for command, args in commands:
                        getattr(pipe, command)(*args)
                finish = reads(services, values, pipe) if reads is not None else None
                count = sum(len(commands) for _, commands in checks)

                def done(replies: list[Any]) -> Any:
                    at = 0
                    for name, commands in checks:
                        if any(replies[at:at + len(commands)]):
                            known.add(name)
                        at += len(commands)
                    return finish(replies[count:]) if finish is not None else None
                return done
            principal, prefetched = await authenticate_reading(
                request, route.role, route.query_key, queue)
            if refused is not None:
                raise refused
        else:
            principal = await authenticate(request, route.role, query_key=route.query_key) \
                if route.role else None
            values = await parse(route, request)
        for spec in route.fields:
            value = values.get(spec.name)
            if spec.own and value and principal is not None and not principal.may_act_on(value):
                raise Forbidden(f"user {principal.username!r} may act only on its own "
                                f"extension {principal.extension or '(none)'!r}, not {value!r}",
                                spec.name)
        unknown = [spec.name for spec in route.fields
                   if spec.known and values.get(spec.name) and spec.name not in known]
        if unknown:
            missing = await services.run(unknown_extensions, services.ctx, services.domain,
                                         {name: values[name] for name in unknown})
            if missing:
                name = missing[0]
                raise ApiError(404, f"unknown extension {values[name]!r}", name)
        result = await route.fn(Call(request, services, principal, values, prefetched))
        if isinstance(result, dict) and result.get("result") == "ok" and principal is not None:
            # the audit trail: who did what to which extension (never a secret: only the
            # declared fields, and none of the text kind)
            shown = {k: v for k, v in values.items()
                     if next(f for f in route.fields if f.name == k).kind != "text"}
            AUDIT.info("%s (%s) %s %s %s: %s", principal.username, principal.role,
                       request.method, request.path, shown, result.get("message", ""))
        if isinstance(result, web.StreamResponse):
            return result
        return json_response(result)
    handle.__name__ = route.fn.__name__
    return handle


async def parse(route: Route, request: web.Request) -> dict[str, str]:
    """Every declared input of ``route``, checked; ApiError naming the first bad one."""
    values: dict[str, str] = {}
    body: dict[str, Any] | None = None
    for spec in route.fields:
        if spec.where == "path":
            raw: object = request.match_info.get(spec.name)
        elif spec.where == "query":
            raw = request.query.get(spec.name)
        else:
            if body is None:
                body = await read_json_object(request)
            raw = body.get(spec.name)
        if raw is None or (raw == "" and not spec.required and spec.where != "path"):
            if spec.required:
                raise ApiError(422, f"missing field {spec.name!r}", spec.name)
            continue
        values[spec.name] = spec.parse(raw)
    return values


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (whatever the Content-Type says: the seed's curl lines send
    ``application/json``, others may not); ApiError 400 otherwise."""
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "the request body must be a JSON object; it is empty", "body")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {_short(str(exc))}",
                       "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {_json_type(data)}",
                       "body")
    return data


def json_response(data: Any, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(data, ensure_ascii=False), status=status,
                        content_type="application/json", headers=headers)


# ------------------------------------------------------------------------ OpenAPI --------
_REASONS = {400: "malformed request (not a JSON object)", 401: "no token, or a bad, expired "
            "or revoked token", 403: "the user's role or extension does not allow this",
            404: "unknown extension, channel or node", 409: "refused in the current state "
            "(e.g. the switch refused, an illegal agent state change)",
            422: "a field is missing, has the wrong type or format", 429: "too many failed "
            "logins", 503: "Redis, PostgreSQL or every switch node unavailable",
            504: "the switch node did not answer in time"}


def openapi(routes: list[Route]) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``routes``."""
    paths: dict[str, Any] = {}
    for route in routes:
        op: dict[str, Any] = {"summary": route.summary, "tags": [route.tag],
                              "operationId": route.fn.__name__}
        if route.description:
            op["description"] = route.description
        params = [{"name": f.name, "in": f.where, "required": f.where == "path" or f.required,
                   "schema": f.schema()} for f in route.fields if f.where in ("path", "query")]
        if params:
            op["parameters"] = params
        body = [f for f in route.fields if f.where == "body"]
        if body:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "properties": {f.name: f.schema() for f in body},
                "required": [f.name for f in body if f.required]}}}}
        responses: dict[str, Any] = {"200": {"description": "done", "content": {
            route.content_type: {"schema": dict(route.response)}}}}
        statuses = [*route.errors, 503, *((401, 403) if route.role else ())]
        for status in sorted(set(statuses)):
            responses[str(status)] = {"description": _REASONS.get(status, "error"),
                                      "content": {"application/json": {
                                          "schema": {"$ref": "#/components/schemas/Error"}}}}
        op["responses"] = responses
        if route.role:
            op["security"] = [{"nway": []}]
            op["x-role"] = route.role
        else:
            op["security"] = []
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "fsapps CTI server", "version": __version__,
                 "description": "Seed 001's REST API (mod_nwayacd) and supervision (seed 003). "
                                "Authenticate with POST /api/login, then send "
                                "`Authorization: Nway <token>`."},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"nway": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Nway <token>`: the token from /api/login or an api_tokens "
                               "entry"}}},
        "security": [{"nway": []}],
    }
