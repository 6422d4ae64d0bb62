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
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from fsapps.config import Settings, UserSettings
from fsapps.errors import ConfigError, DatabaseError, FsappsError, StoreUnavailable
from fsapps.server import cors, stats, supervision, webrtc
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
    webrtc.install(app)  # the agent console's browser phone (docs/webrtc.md)
    app[ROUTES].extend(webrtc.documented_routes())
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


async def start(services: CtiServices, host: str, port: int, *, reuse_port: bool = False,
                worker: str = "") -> tuple[web.AppRunner, int]:
    """Start serving on ``host:port`` (port 0: a free one) in the running loop; returns the
    runner (``await runner.cleanup()`` stops it) and the port bound. Refuses (ConfigError)
    users with demo passwords on an address other machines reach. ``reuse_port``: share the
    port with the other worker processes (SO_REUSEPORT); ``worker`` names this one in an
    ``X-Fsapps-Worker`` header of every answer (which process answered, for operators)."""
    refuse_demo_passwords(services.settings.users, host)
    app = build_app(services)
    if worker:
        async def name_worker(_: web.Request, response: web.StreamResponse) -> None:
            response.headers["X-Fsapps-Worker"] = worker
        app.on_response_prepare.append(name_worker)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port or None)
    await site.start()
    addresses = runner.addresses
    bound = addresses[0][1] if addresses else port
    return runner, int(bound)


def serve(services: CtiServices, host: str, port: int, *, reuse_port: bool = False,
          worker: str = "") -> None:
    """Serve until interrupted (``fsapps cti serve``); SIGTERM and SIGINT stop it cleanly
    (requests in progress are finished). ``reuse_port`` / ``worker``: one of
    :func:`serve_processes`' workers."""
    async def main() -> None:
        runner, bound = await start(services, host, port, reuse_port=reuse_port, worker=worker)
        logger.info("fsapps CTI server %slistening on %s:%d",
                    f"worker {worker} (pid {os.getpid()}) " if worker else "", host, bound)
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


def worker_count(processes: int) -> int:
    """cti.processes as a number of processes: 0 is one per CPU core."""
    if processes:
        return processes
    if hasattr(os, "sched_getaffinity"):  # the cores this process may run on
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def serve_processes(settings: Settings, host: str, port: int, processes: int = 0,
                    ready: Callable[[int], None] | None = None) -> None:
    """``fsapps cti serve``: ``processes`` worker processes (0: one per CPU core) serving
    ``host:port`` together, each an aiohttp server with its own event loop, its SO_REUSEPORT
    socket (the kernel spreads new connections over them) and its own Redis clients; they
    share nothing but Redis and PostgreSQL. This process only supervises: it holds the port
    (port 0: a free one, passed to ``ready``), restarts a worker that dies (after a second),
    and on SIGTERM / SIGINT stops them all (each finishes its requests in progress). One
    process: :func:`serve` in this process, as before."""
    count = worker_count(processes)
    if count == 1 and ready is None:
        serve(CtiServices(settings), host, port)
        return
    refuse_demo_passwords(settings.users, host)
    # The port is held by a bound, never listening socket of the same SO_REUSEPORT group:
    # with port 0 the workers all take the one it got; a restarted worker finds it free.
    holder = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host or "0.0.0.0", port))
    port = holder.getsockname()[1]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    def spawn(index: int) -> int:
        pid = os.fork()
        if pid == 0:  # the worker: nothing of the parent's but the settings
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                holder.close()
                serve(CtiServices(settings), host, port, reuse_port=True,
                      worker=str(index + 1))
            except BaseException:
                logger.exception("CTI worker %d failed", index + 1)
                code = 1
            finally:
                os._exit(code)
        return pid

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    workers = {spawn(i): i for i in range(count)}
    logger.info("fsapps CTI server: %d worker processes on %s:%d", count, host, port)
    if ready is not None:
        ready(port)
    try:
        while not stopping:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.2)
                continue
            index = workers.pop(pid, None)
            if index is not None and not stopping:
                logger.error("CTI worker %d (pid %d) ended (status %d): starting it again",
                             index + 1, pid, status)
                time.sleep(1.0)
                workers[spawn(index)] = index
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for pid in list(workers):
            while time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:
                        time.sleep(0.05)
                        continue
                break
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
        holder.close()
        for sig, handler in old.items():
            signal.signal(sig, handler)


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

