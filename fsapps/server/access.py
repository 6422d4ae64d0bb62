"""Who may call a route: the request's token checked through the CTI server's services.

:mod:`fsapps.server.auth` knows users, roles and tokens; this module ties them to an aiohttp
request (it needs :class:`fsapps.server.services.CtiServices`, which holds the :class:`Auth`,
so it lives above both and neither imports it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.exceptions
from aiohttp import web

from fsapps.server.auth import Forbidden, Principal, request_token
from fsapps.server.services import services_of
from fsapps.store.connection import store_errors
from fsapps.store.scripts import SCRIPTS

# queue(pipeline) -> finish(replies): a route's own reads, queued on the token check's pipeline
Reads = Callable[[Any], Callable[[list[Any]], Any]]

# aiohttp >= 3.12 types request storage with RequestKey; older ones take a plain string.
_REQUEST_KEY = getattr(web, "RequestKey", None)
PRINCIPAL: Any = _REQUEST_KEY("fsapps_cti_principal", Principal) if _REQUEST_KEY \
    else "fsapps_cti_principal"


async def authenticate(request: web.Request, role: str = "agent",
                       query_key: bool = False) -> Principal:
    """The request's principal, checked to hold at least ``role``; raises NotAuthorized /
    Forbidden. The check runs in the services' worker threads (it reads Redis)."""
    services = services_of(request.app)
    principal = await services.run(services.auth.check, request_token(request, query_key))
    if not principal.at_least(role):
        raise Forbidden(f"this needs the {role} role; user {principal.username!r} is "
                        f"{principal.role}")
    request[PRINCIPAL] = principal
    return principal


async def authenticate_reading(request: web.Request, role: str, query_key: bool,
                               queue: Reads | None) -> tuple[Principal, Any]:
    """:func:`authenticate` on the event loop (the services' asyncio client: no worker
    thread), with the route's own reads in the same pipelined round trip: ``queue(pipe)``
    queues them and returns ``finish(replies)``, whose answer comes back with the principal
    (only once the token is good; None without ``queue``). A script the pipeline runs by
    EVALSHA that Redis does not know yet is loaded and the round trip made again."""
    services = services_of(request.app)
    token = request_token(request, query_key)
    found = services.auth.token_key(token)
    client = services.aredis
    with store_errors(getattr(services.redis, "fsapps_where", "Redis")):
        for attempt in (1, 2):
            async with client.pipeline(transaction=False) as pipe:
                if not isinstance(found, Principal):
                    pipe.hget(found, "username")
                finish = queue(pipe) if queue is not None else None
                shas = _queued_shas(pipe)
                replies = await pipe.execute(raise_on_error=False)
            for reply in replies:
                if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 1:
                    break
                if isinstance(reply, Exception):
                    raise reply
            else:
                break
            # Redis lost its script cache (restart, failover): load what this request runs
            for sha in shas:
                if sha in _PIPELINED:
                    await client.script_load(SCRIPTS.get(_PIPELINED[sha]).source)
    if isinstance(found, Principal):
        principal = found
    else:
        principal = services.auth.principal_of(token, replies[0])
        replies = replies[1:]
    if not principal.at_least(role):
        raise Forbidden(f"this needs the {role} role; user {principal.username!r} is "
                        f"{principal.role}")
    request[PRINCIPAL] = principal
    return principal, finish(replies) if finish is not None else None


# sha -> name of the scripts queued by queue_script
_PIPELINED: dict[str, str] = {}


def queue_script(pipe: Any, name: str, keys: list[str], args: list[Any]) -> None:
    """Queue the script ``name`` (EVALSHA) on a pipeline of :func:`authenticate_reading`."""
    script = SCRIPTS.get(name)
    _PIPELINED[script.sha] = name
    pipe.evalsha(script.sha, len(keys), *keys, *args)


def _queued_shas(pipe: Any) -> set[str]:
    return {str(args[1]) for args, _ in pipe.command_stack
            if args and str(args[0]).upper() == "EVALSHA"}

