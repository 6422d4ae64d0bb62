"""The agent console's browser phone (docs/webrtc.md): ``POST /api/webrtc/credentials`` gives the
logged-in agent the SIP account its page registers with over WebSocket, ``DELETE`` gives it
back (logout); ``GET /vendor/jssip.min.js`` serves the JsSIP bundle the build made from the
npm package (``npm ci && npm run build``: build/web/jssip.min.js, never in the repository).

The password is random per login and lives ``webrtc.credential_ttl_seconds`` in Redis
(:mod:`fsapps.domain.webrtc`); the page renews it at a third of that. The directory serves it
only to REGISTERs and INVITEs arriving over WebSocket, so it is useless to a desk phone, and
the extension's directory password never reaches the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from fsapps.domain import webrtc
from fsapps.domain.userdir import UserDirectory
from fsapps.server.csta.callcontrol import CstaError, split_address
from fsapps.server.csta.rest import allow_device, body_of, guarded, principal_of, services_of
from fsapps.server.registry import Field, Route

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "build" / "web" / "jssip.min.js"


def bundle_path(settings: Any) -> Path:
    return Path(settings.webrtc.jssip_path) if settings.webrtc.jssip_path else BUNDLE


async def _device(request: web.Request) -> tuple[Any, str, str, bool]:
    """(principal, extension, domain, renew) of a credentials request, checked: the token,
    the device (the agent's own extension), WebRTC configured."""
    services = services_of(request)
    principal = await principal_of(request)
    if not services.settings.webrtc.ws_urls:
        raise CstaError(404, "WebRTC is not configured (webrtc.ws_urls)")
    body = await body_of(request) if request.method == "POST" else {}
    device = str(body.get("device") or request.query.get("device") or "")
    ext, domain = split_address(device, "device", services.settings.domains)
    allow_device(principal, ext, domain)
    if not principal.token_hash:
        raise CstaError(403, "a browser phone needs a user login (POST /login), not an API "
                             "token")
    renew = body.get("renew", False)
    if not isinstance(renew, bool):
        raise CstaError(400, f"renew must be true or false, not {renew!r}", "renew")
    return principal, ext, domain, renew


@guarded
async def credentials(request: web.Request) -> web.Response:
    """``POST /api/webrtc/credentials`` {device: ext@domain, renew?} → the SIP account."""
    services = services_of(request)
    principal, ext, domain, renew = await _device(request)
    ctx = services.ctx

    def claim() -> webrtc.Credential:
        record = UserDirectory(ctx, domain).get(ext)
        if record is None or record.user != ext:
            raise CstaError(404, f"extension {ext}@{domain} is not in the directory", "device")
        if not webrtc.is_webrtc(record.param):
            raise CstaError(409, f"extension {ext}@{domain} has no browser phone (its "
                                 "directory record needs param webrtc=true)", "device")
        return webrtc.BrowserPhones(ctx, domain).claim(ext, principal.token_hash, renew)

    try:
        cred = await services.run(claim)
    except webrtc.TakenOver as exc:
        raise CstaError(409, str(exc), "device") from None
    settings = services.settings.webrtc
    return web.json_response({
        "uri": f"sip:{ext}@{domain}", "authorizationUser": ext, "password": cred.password,
        "realm": domain, "wsServers": list(settings.ws_urls),
        "iceServers": [{"urls": url} for url in settings.ice_servers],
        "expiresIn": cred.ttl_seconds, "renewAfter": max(1, cred.ttl_seconds // 3),
        "secondLogin": settings.second_login,
    }, headers={"Cache-Control": "no-store"})


@guarded
async def release(request: web.Request) -> web.Response:
    """``DELETE /api/webrtc/credentials?device=ext@domain``: the login gives its password back
    (``{"released": false}`` when another login, or none, held it)."""
    services = services_of(request)
    principal, ext, domain, _ = await _device(request)
    released = await services.run(webrtc.BrowserPhones(services.ctx, domain).release, ext,
                                  principal.token_hash)
    return web.json_response({"released": released})


async def jssip_bundle(request: web.Request) -> web.StreamResponse:
    path = bundle_path(services_of(request).settings)
    if not path.is_file():
        return web.json_response({"error": "the JsSIP bundle is not built (make venv: npm ci "
                                           "&& npm run build)"}, status=404)
    return web.FileResponse(path, headers={"Content-Type": "text/javascript; charset=utf-8",
                                           "Cache-Control": "no-cache"})


def install(app: web.Application) -> None:
    app.router.add_post("/api/webrtc/credentials", credentials)
    app.router.add_delete("/api/webrtc/credentials", release)
    app.router.add_get("/vendor/jssip.min.js", jssip_bundle)


def documented_routes() -> list[Route]:
    """Documentation only (like the wellClient routes): the handlers check for themselves."""
    device = (Field("device", kind="text", required=True),
              Field("renew", kind="text", required=False))
    return [
        Route("POST", "/api/webrtc/credentials", credentials,  # type: ignore[arg-type]
              "the browser phone's SIP account for the agent's own extension (short-lived "
              "password; renew: true keeps this login's)", fields=device, tag="WebRTC",
              response={"type": "object"}, errors=(400, 401, 403, 404, 409)),
        Route("DELETE", "/api/webrtc/credentials", release,  # type: ignore[arg-type]
              "give the browser phone's password back (console logout)",
              fields=(Field("device", kind="text", where="query"),), tag="WebRTC",
              response={"type": "object", "required": ["released"]},
              errors=(400, 401, 403, 404)),
    ]
