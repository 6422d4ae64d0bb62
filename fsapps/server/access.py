"""Who may call a route: the request's token checked through the CTI server's services.

:mod:`fsapps.server.auth` knows users, roles and tokens; this module ties them to an aiohttp
request (it needs :class:`fsapps.server.services.CtiServices`, which holds the :class:`Auth`,
so it lives above both and neither imports it).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fsapps.server.auth import Forbidden, Principal, request_token
from fsapps.server.services import services_of

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

