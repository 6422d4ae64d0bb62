"""The CTI server's aiohttp application: ``build_app(services)``, and :func:`serve` behind
``fsapps cti serve``.

Every error leaves as JSON ``{"error": ..., "field": ...}`` with a 4xx status (5xx only for
Redis / PostgreSQL / node trouble, never for bad input); a failure nobody foresaw is logged
with its traceback and answers 500 without details.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import threading
import traceback
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from fsapps.config import UserSettings
from fsapps.errors import ConfigError, DatabaseError, FsappsError, StoreUnavailable
from fsapps.server import cors, stats, supervision
from fsapps.server import cti_api as api
from fsapps.server import plugins as extensions
from fsapps.server.http_errors import http_error
from fsapps.server.passwords import has_known_demo_password
from fsapps.server.registry import ROUTES, json_response, openapi
from fsapps.server.services import SERVICES, CtiServices

logger = logging.getLogger("fsapps.server")
# Request bodies are small JSON objects; anything bigger is refused before it is read.
MAX_BODY_BYTES = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str, field: str | None = None,
          headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": message}
    if field:
        body["field"] = field
    return json_response(body, status, headers)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason, None, {k: v for k, v in exc.headers.items()
                                                     if k in ("Allow",)})
    except FsappsError as exc:
        # by type (fsapps.server.http_errors): fsapps' own refusals (Refused,
        # IllegalTransition, ...) say what was wrong; Redis or PostgreSQL down is a 503
        if isinstance(exc, (StoreUnavailable, DatabaseError)):
            logger.error("%s %s: %s", request.method, request.path, exc)
        answer = http_error(exc)
        return error(answer.status, answer.message, answer.field, answer.headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.error("%s %s failed:\n%s", request.method, request.path, traceback.format_exc())
        return error(500, "internal error (logged)")


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(openapi(request.app[ROUTES]))


def build_app(services: CtiServices) -> web.Application:
    """The CTI server: seed 001's REST API, supervision, the OpenAPI document, /cli, and the
    routes other features add (:func:`fsapps.server.plugins.install`)."""
    app = web.Application(middlewares=[cors.preflight, errors_as_json],
                          client_max_size=MAX_BODY_BYTES)
    app[SERVICES] = services

    async def close_async_client(_: web.Application) -> None:
        await services.aclose()
    app.on_cleanup.append(close_async_client)
    # CORS for the configured origins on every answer, errors and streams included
    app.on_response_prepare.append(cors.cors_headers)
    app[ROUTES] = []
    app.router.add_get("/api/openapi.json", openapi_json)
    api.install(app)
    supervision.install(app)
    stats.install(app)
    extensions.install(app, services)
    return app


def is_loopback(host: str) -> bool:
    """True when only this machine can reach ``host`` ("" and 0.0.0.0 mean every interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name or "": it may resolve to (or mean) any interface
        return False


def refuse_demo_passwords(users: Sequence[UserSettings], host: str) -> None:
    """Raise ConfigError when a user has a published demo password (admin/admin, ...) and
    ``host`` is reachable from other machines: anybody on the network could log in."""
    if is_loopback(host):
        return
    exposed = [user.username for user in users
               if has_known_demo_password(user.username, user.password_hash.reveal())]
    if exposed:
        raise ConfigError(
            "users", exposed,
            f"known demo passwords, refused on {host or 'every interface'} (reachable from "
            "other machines): give each a new password with `fsapps users add <username> "
            "--role <role>`, or listen on 127.0.0.1 (cti.listen / --listen)")


async def start(services: CtiServices, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving on ``host:port`` (port 0: a free one) in the running loop; returns the
    runner (``await runner.cleanup()`` stops it) and the port bound. Refuses (ConfigError)
    users with demo passwords on an address other machines reach."""
    refuse_demo_passwords(services.settings.users, host)
    runner = web.AppRunner(build_app(services), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    addresses = runner.addresses
    bound = addresses[0][1] if addresses else port
    return runner, int(bound)


def serve(services: CtiServices, host: str, port: int) -> None:
    """Serve until interrupted (``fsapps cti serve``); SIGTERM and SIGINT stop it cleanly
    (requests in progress are finished)."""
    async def main() -> None:
        runner, bound = await start(services, host, port)
        logger.info("fsapps CTI server listening on %s:%d", host, bound)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            logger.info("fsapps CTI server stopping")
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        services.close()


class BackgroundServer:
    """The CTI server on its own event loop in a daemon thread, for programs that run it
    beside other work in one process (``make demo`` next to its fake switches, the tests).
    Port 0 takes a free one; :attr:`port` is the one bound. :meth:`close` stops the server
    and closes ``services``."""

    def __init__(self, services: CtiServices, host: str = "127.0.0.1", port: int = 0) -> None:
        self.services, self.host = services, host
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="cti-server", daemon=True)
        self.thread.start()
        try:
            self.runner, self.port = asyncio.run_coroutine_threadsafe(
                start(services, host, port), self.loop).result(10)
        except BaseException:
            self._stop_loop()
            raise

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.close()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self._stop_loop()
        self.services.close()

