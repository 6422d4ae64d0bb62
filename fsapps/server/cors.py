"""Browser pages on other hosts, and the session cookie.

wellClient pages are served by the users' own web servers (seed 004) and call the CTI server
across origins. Which origins may do so is ``cti.cors_origins`` (none by default; ``*`` is a
configuration error, credentials being allowed): an allowed origin gets CORS answers with
credentials on every route, its preflight ``OPTIONS`` is answered on every route, any other
origin gets no CORS header (the browser keeps the answer from the page) and a 403 preflight.

``POST /login`` sets the session cookie (:data:`SESSION_COOKIE`: the token, HttpOnly,
SameSite=Lax, Secure over TLS) besides answering ``sessionId``, so the SDK's STOMP CONNECT,
which carries no header, is authenticated by the cookie its SockJS requests and WebSocket
handshake carry. The published SDK cannot store that cookie from another origin (its /login
is an XHR without credentials); it keeps the same token in a cookie of its own page's host,
:data:`SDK_COOKIE`, which the browser sends to the CTI server when both are on one host name
(any ports): that cookie is taken too. A cookie is an ambient credential — the browser adds
it whatever page sends the request — so it counts only when the request comes from the CTI
server's own pages, from
an allowed origin, or from no browser page at all (no ``Origin`` header): a page on a host
not listed can not act or listen with an agent's cookie (CSRF, cross-site WebSocket
hijacking).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from fsapps.server.auth import MAX_TOKEN_LENGTH
from fsapps.server.services import services_of

SESSION_COOKIE = "fsapps_session"
# where wellClient (4.x, Config.sessionIdCookieName) keeps the sessionId of /login itself
SDK_COOKIE = "wellclient-cookie-session-id"
ALLOW_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
# what the SDK sends: its token header, JSON bodies, jQuery's marker; and Authorization
ALLOW_HEADERS = "Content-Type, sessionId, Authorization, X-Requested-With"
PREFLIGHT_MAX_AGE_S = 600

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def allowed_origins(request: web.Request) -> tuple[str, ...]:
    return tuple(services_of(request.app).settings.cti.cors_origins)


def own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def cross_origin_allowed(request: web.Request) -> str:
    """The request's Origin when it is one of the configured origins, else ''."""
    origin = request.headers.get("Origin", "")
    return origin if origin and origin in allowed_origins(request) else ""


def trusted_page(request: web.Request) -> bool:
    """May the request's cookie speak for its user: no browser page behind it, one of the CTI
    server's own pages, or a page of an allowed origin."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == own_origin(request) or origin in allowed_origins(request)


def cookie_token(request: web.Request) -> str:
    """The session cookie's token when the request may use it (:func:`trusted_page`), else ''.
    The published SDK's own cookie counts too: it keeps the ``sessionId`` of /login in
    ``wellclient-cookie-session-id`` on its page's host (js-cookie), and a browser sends a
    host's cookies to every port of it - so its WebSocket to a CTI server on the same host
    carries the token, though its cross-origin /login (no credentials) could not store ours."""
    token = request.cookies.get(SESSION_COOKIE, "") or request.cookies.get(SDK_COOKIE, "")
    if not token or len(token) > MAX_TOKEN_LENGTH or not trusted_page(request):
        return ""
    return token


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str,
                       max_age_s: int) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age_s, path="/", httponly=True,
                        samesite="Lax", secure=request.secure)


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/", secure=request.secure, httponly=True,
                        samesite="Lax")


# ------------------------------------------------------------------------ aiohttp --------
@web.middleware
async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a CORS preflight on any route (the SDK's POST with JSON and a sessionId header
    is preflighted); other requests go on."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return await handler(request)
    origin = cross_origin_allowed(request)
    if not origin:
        return web.json_response(
            {"error": f"origin {request.headers.get('Origin', '')[:200]!r} is not allowed "
                      "(cti.cors_origins)"}, status=403, headers={"Vary": "Origin"})
    return web.Response(status=204, headers={
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S)})


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer (``on_response_prepare``: streamed SockJS answers and files too): the
    CORS headers with credentials for an allowed origin."""
    if "Origin" not in request.headers:
        return
    vary = response.headers.get("Vary", "")
    if "origin" not in vary.lower():
        response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
    origin = cross_origin_allowed(request)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = "Retry-After, WWW-Authenticate"
