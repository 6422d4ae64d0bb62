"""Routes other features add to the CTI server (:func:`fsapps.server.app.build_app` calls
:func:`install`): wellClient (seed 004) — ``POST /login``, ``/api/csta/...``, the SockJS/STOMP
event stream at ``/mvc/stomp``, the agent page at ``/``, the wallboard at ``/wallboard`` and
their static files (well-client.js, styles, translations) under ``/static/``. Everything the
pages need is served from here: no CDN, no other host.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import web

from fsapps.server import cors
from fsapps.server.csta import callcontrol, rest, sockjs
from fsapps.server.csta.hub import Hub
from fsapps.server.registry import ROUTES
from fsapps.server.services import SERVICES

STATIC_DIR = Path(__file__).resolve().parent / "web" / "static"
SOCKJS_PREFIX = "/mvc/stomp"
HUB: web.AppKey[Hub] = web.AppKey("fsapps_csta_hub", Hub)
_PAGES = {"/": "index.html", "/wallboard": "wallboard.html"}
# Served here but not REST calls, so not in the OpenAPI document.
UNDOCUMENTED_PREFIXES = ("/static", "/vendor", SOCKJS_PREFIX, *_PAGES)  # /vendor: JsSIP
# The pages run only their own scripts and talk only to this server: its WebSocket is named
# by host (older browsers do not count ws: as 'self'), never any ws: host, so an injected
# script, were there one, could not carry data away over a socket.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'{sockets}; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'; object-src 'none'")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


def csp_for(request: web.Request) -> str:
    """The pages' policy; the Host header goes in only when it is a plain host[:port]."""
    host = request.host or ""
    sockets = f" ws://{host} wss://{host}" if _HOST.fullmatch(host) else ""
    # the browser phone's SIP WebSockets (webrtc.ws_urls, checked URLs: docs/webrtc.md)
    services = request.app.get(SERVICES)
    if services is not None:
        sockets += "".join(f" {url}" for url in services.settings.webrtc.ws_urls)
    return _CSP.format(sockets=sockets)


async def _hardening_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer, pages, scripts and JSON alike: no MIME sniffing (a JSON error quoting
    the request is never run as a script or page), no framing (clickjacking; old browsers
    that ignore the CSP's frame-ancestors read X-Frame-Options), and the pages' URLs (job
    numbers, extensions) are not sent as Referer."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")


def install(app: web.Application, services: Any) -> None:
    hub = Hub(services, sweep=callcontrol.log_off_gone)
    app[HUB] = hub
    registry = sockjs.SessionRegistry(hub.connection)
    sockjs.install(app, SOCKJS_PREFIX, registry, cors.cookie_token)
    rest.install(app)
    rest.install_supervision(app)
    # the REST calls appear in /api/openapi.json; pages, static files and SockJS do not
    if ROUTES in app:
        app[ROUTES].extend(rest.documented_routes())

    def page(name: str) -> Any:
        async def serve(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(STATIC_DIR / name, headers={
                "Content-Security-Policy": csp_for(request), "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-cache", "Content-Type": "text/html; charset=utf-8"})
        return serve

    for path, name in _PAGES.items():
        app.router.add_get(path, page(name))
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    app.on_response_prepare.append(_hardening_headers)

    async def start(app: web.Application) -> None:
        await hub.start()

    async def close_sessions(app: web.Application) -> None:
        # before the server waits for its requests: a long poll or a WebSocket would keep it
        # waiting for the next heart-beat otherwise
        await registry.close_all()

    async def stop(app: web.Application) -> None:
        await hub.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(close_sessions)
    app.on_cleanup.append(stop)
