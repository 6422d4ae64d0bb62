"""The server side of SockJS (protocol 0.3, https://github.com/sockjs/sockjs-protocol) in aiohttp,
enough for wellClient's event stream at ``/mvc/stomp``:

- ``GET  <prefix>/info``                             → ``{"websocket": true, ...}``
- ``GET  <prefix>/<server>/<session>/websocket``     → WebSocket with SockJS framing
- ``POST <prefix>/<server>/<session>/xhr_streaming`` → one long response, a frame per line
- ``POST <prefix>/<server>/<session>/xhr``           → long polling, one frame per response
- ``POST <prefix>/<server>/<session>/xhr_send``      → client messages for the polling forms
- ``GET  <prefix>/websocket``                        → raw WebSocket, no framing

Frames from the server: ``o`` (open), ``h`` (heart-beat, every :data:`HEARTBEAT_S`),
``a["msg", ...]`` (messages), ``c[code,"reason"]`` (close). The client sends a JSON array of
strings (a lone JSON string is taken too). A session outlives a polling request: it is kept
while a transport is attached or for :data:`SESSION_TIMEOUT_S` after the last one left (that
is transport state, per process; a load balancer must keep a SockJS session on one server, as
for any SockJS server).

What the messages mean is the :class:`Receiver`'s business (here: STOMP, :mod:`.stompconn`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import WSMsgType, web

logger = logging.getLogger("fsapps.server.csta.sockjs")

HEARTBEAT_S = 25.0
SESSION_TIMEOUT_S = 10.0
STREAM_LIMIT = 128 * 1024   # bytes on one xhr_streaming response before the client reconnects
MAX_MESSAGE = 64 * 1024
# Characters queued for a client that does not take them (a stalled poller, a slow socket):
# past this the session is closed with 3001 and its queue dropped, so one slow consumer can not
# make the server's memory grow without end. wellClient reconnects and logs in again.
MAX_OUTBOX = 1024 * 1024
SLOW_CONSUMER = (3001, "slow consumer: too many messages waiting")
_NAME = re.compile(r"[^./]{1,64}")


def open_frame() -> str:
    return "o"


def heartbeat_frame() -> str:
    return "h"


def message_frame(messages: list[str]) -> str:
    return "a" + json.dumps(messages, separators=(",", ":"))


def close_frame(code: int, reason: str) -> str:
    return "c" + json.dumps([code, reason], separators=(",", ":"))


def decode_client(text: str) -> list[str]:
    """The messages of a client frame: a JSON array of strings (or one string). Raises
    ValueError for anything else."""
    if not text:
        return []
    value = json.loads(text)
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("a SockJS client frame is a JSON array of strings")
    return value


class Receiver(Protocol):
    """What a session hands its messages to (one per session)."""

    async def on_message(self, text: str) -> None: ...

    async def on_close(self) -> None: ...


class Session:
    """One SockJS session: messages to send, queued until a transport takes them."""

    def __init__(self, sid: str, registry: SessionRegistry) -> None:
        self.id = sid
        self.registry = registry
        self.outbox: list[str] = []
        self.outbox_chars = 0
        self.ready = asyncio.Event()
        self.closed: tuple[int, str] | None = None
        self.attached = False
        self.opened = False
        self.receiver: Receiver | None = None
        self.remote = ""
        # the token of the session cookie the transport's HTTP requests carried (only from a
        # page allowed to use it): what a CONNECT without headers is authenticated by
        self.cookie_token = ""
        self._expiry: asyncio.TimerHandle | None = None

    def send(self, text: str) -> None:
        """Queue one message (a STOMP frame); nothing happens once the session is closed."""
        if self.closed is None:
            if self.outbox_chars + len(text) > MAX_OUTBOX:
                logger.warning("SockJS session %s (%s): slow consumer, %d characters waiting; "
                               "closing it", self.id, self.remote, self.outbox_chars)
                self.outbox, self.outbox_chars = [], 0
                self.close(*SLOW_CONSUMER)
                return
            self.outbox.append(text)
            self.outbox_chars += len(text)
            self.ready.set()

    def close(self, code: int = 3000, reason: str = "Go away!") -> None:
        if self.closed is None:
            self.closed = (code, reason)
            self.ready.set()

    def take(self) -> list[str]:
        batch, self.outbox = self.outbox, []
        self.outbox_chars = 0
        self.ready.clear()
        return batch

    async def received(self, messages: list[str]) -> None:
        if self.receiver is None or self.closed is not None:
            return
        for text in messages:
            await self.receiver.on_message(text)

    def attach(self) -> bool:
        """A transport takes the session; False when one already has it."""
        if self.attached:
            return False
        self.attached = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        return True

    def detach(self) -> None:
        self.attached = False
        loop = asyncio.get_running_loop()
        if self.closed is not None:
            self.registry.forget(self)
        else:
            self._expiry = loop.call_later(SESSION_TIMEOUT_S, self.registry.expire, self)


class SessionRegistry:
    """The live SockJS sessions of this process; ``factory(session)`` makes each receiver."""

    def __init__(self, factory: Callable[[Session], Receiver]) -> None:
        self.factory = factory
        self.sessions: dict[str, Session] = {}
        self.sockets: set[Session] = set()  # WebSocket sessions (private to their socket)

    def get_or_create(self, sid: str, remote: str) -> tuple[Session, bool]:
        session = self.sessions.get(sid)
        if session is not None:
            return session, False
        session = Session(sid, self)
        session.remote = remote
        session.receiver = self.factory(session)
        self.sessions[sid] = session
        # A session no transport ever takes (a client that opened it with one poll and went
        # away) expires like one whose transport left: otherwise each would stay for good.
        session._expiry = asyncio.get_running_loop().call_later(SESSION_TIMEOUT_S,
                                                                 self.expire, session)
        return session, True

    def forget(self, session: Session) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
            if session.receiver is not None:
                asyncio.ensure_future(session.receiver.on_close())

    def expire(self, session: Session) -> None:
        if not session.attached:
            session.close(3000, "session timed out")
            self.forget(session)

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            session.close(1001, "server shutting down")
            self.forget(session)
        for session in list(self.sockets):
            session.close(1001, "server shutting down")


def _no_credentials(request: web.Request) -> str:
    return ""


def install(app: web.Application, prefix: str, registry: SessionRegistry,
            credentials: Callable[[web.Request], str] = _no_credentials) -> None:
    """Add the SockJS routes under ``prefix`` (e.g. ``/mvc/stomp``); ``credentials(request)``
    is the token a transport request carries by itself (the session cookie), kept on the
    session for its CONNECT."""
    def remember_credentials(session: Session, request: web.Request) -> None:
        token = credentials(request)
        if token:
            session.cookie_token = token

    async def greeting(request: web.Request) -> web.Response:
        return web.Response(text="Welcome to SockJS!\n",
                            content_type="text/plain", charset="UTF-8")

    async def info(request: web.Request) -> web.Response:
        body = {"websocket": True, "cookie_needed": False, "origins": ["*:*"],
                "entropy": random.SystemRandom().randint(0, 2**32 - 1)}
        return web.json_response(body, headers=_no_cache(request))

    def session_for(request: web.Request) -> tuple[Session, bool]:
        server, sid = request.match_info["server"], request.match_info["session"]
        if not (_NAME.fullmatch(server) and _NAME.fullmatch(sid)):
            raise web.HTTPNotFound()
        session, new = registry.get_or_create(sid, request.remote or "")
        if session.remote != (request.remote or ""):
            # The session id is the client's choice and travels in URLs: another address
            # that learnt it must not read the session's messages.
            raise web.HTTPNotFound()
        remember_credentials(session, request)
        return session, new

    async def socket_closed(session: Session, sender: asyncio.Future[Any]) -> None:
        """The socket under ``session`` is gone: end the session, its sender and receiver."""
        registry.sockets.discard(session)
        session.close(1000, "closed")
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        if session.receiver is not None:
            await session.receiver.on_close()

    async def websocket(request: web.Request) -> web.StreamResponse:
        server, sid = request.match_info["server"], request.match_info["session"]
        if not (_NAME.fullmatch(server) and _NAME.fullmatch(sid)):
            raise web.HTTPNotFound()
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, autoping=True)
        await ws.prepare(request)
        # A WebSocket session belongs to its socket alone: a new, private session.
        session = Session(sid, registry)
        session.remote = request.remote or ""
        session.receiver = registry.factory(session)
        session.attached = True
        remember_credentials(session, request)
        registry.sockets.add(session)
        await ws.send_str(open_frame())
        sender = asyncio.ensure_future(_pump_ws(ws, session))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    messages = decode_client(msg.data)
                except ValueError:
                    break  # broken framing: the protocol says close the socket
                await session.received(messages)
                if session.closed is not None:
                    break
        finally:
            await socket_closed(session, sender)
            if not ws.closed:
                await ws.close()
        return ws

    async def raw_websocket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, autoping=True)
        await ws.prepare(request)
        session = Session("raw", registry)
        session.remote = request.remote or ""
        remember_credentials(session, request)
        session.receiver = registry.factory(session)
        registry.sockets.add(session)
        sender = asyncio.ensure_future(_pump_raw(ws, session))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await session.received([msg.data])
                    if session.closed is not None:
                        break
        finally:
            await socket_closed(session, sender)
        return ws

    async def xhr_streaming(request: web.Request) -> web.StreamResponse:
        session, new = session_for(request)
        response = web.StreamResponse(headers={
            "Content-Type": "application/javascript; charset=UTF-8", **_no_cache(request)})
        await response.prepare(request)
        # 2 KiB prelude: some browsers buffer a response until that much arrived
        await response.write(b"h" * 2048 + b"\n")
        if not session.attach():
            await response.write((close_frame(2010, "Another connection still open") +
                                  "\n").encode())
            return response
        try:
            if not session.opened:
                session.opened = True
                await response.write(b"o\n")
            sent = 0
            while sent < STREAM_LIMIT:
                frame = await _next_frame(session)
                await response.write((frame + "\n").encode())
                sent += len(frame)
                if frame.startswith("c"):
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            session.detach()
        return response

    async def xhr(request: web.Request) -> web.Response:
        session, new = session_for(request)
        if not session.opened:
            session.opened = True
            return web.Response(text="o\n", content_type="application/javascript",
                                headers=_no_cache(request))
        if not session.attach():
            return web.Response(text=close_frame(2010, "Another connection still open") + "\n",
                                content_type="application/javascript")
        try:
            frame = await _next_frame(session)
            if session.closed is not None and not frame.startswith("c") \
                    and not session.outbox:
                # the last messages of a closing session (an ERROR) and its close frame in
                # one answer: the session is forgotten as this request leaves, and a client
                # polling again would only meet a new session instead of the close
                frame += "\n" + close_frame(*session.closed)
        finally:
            session.detach()
        return web.Response(text=frame + "\n", content_type="application/javascript",
                            headers=_no_cache(request))

    async def xhr_send(request: web.Request) -> web.Response:
        sid = request.match_info["session"]
        session = registry.sessions.get(sid)
        if session is None or session.remote != (request.remote or ""):
            raise web.HTTPNotFound()
        remember_credentials(session, request)
        raw = await request.read()
        if not raw:
            return web.Response(status=500, text="Payload expected.")
        # (500 for a bad payload is what the SockJS protocol answers; clients expect it)
        try:
            messages = decode_client(raw.decode("utf-8"))
        except ValueError:  # not JSON, not strings, not UTF-8
            return web.Response(status=500, text="Broken JSON encoding.")
        await session.received(messages)
        return web.Response(status=204, headers=_no_cache(request))

    base = prefix.rstrip("/")
    app.router.add_get(base, greeting)
    app.router.add_get(base + "/", greeting)
    app.router.add_get(base + "/info", info)
    app.router.add_get(base + "/websocket", raw_websocket)
    app.router.add_get(base + "/{server}/{session}/websocket", websocket)
    app.router.add_post(base + "/{server}/{session}/xhr_streaming", xhr_streaming)
    app.router.add_post(base + "/{server}/{session}/xhr", xhr)
    app.router.add_post(base + "/{server}/{session}/xhr_send", xhr_send)


def _no_cache(request: web.Request) -> dict[str, str]:
    # (CORS headers, for the configured origins only, are the application's:
    # fsapps.server.cors — never the request's Origin echoed back, now that a cookie
    # authenticates a session)
    return {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0"}


async def _next_frame(session: Session) -> str:
    """The next frame for a polling/streaming transport: queued messages, a close, or a
    heart-beat after HEARTBEAT_S of silence."""
    if not session.outbox and session.closed is None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(session.ready.wait(), HEARTBEAT_S)
    if session.outbox:
        return message_frame(session.take())
    if session.closed is not None:
        return close_frame(*session.closed)
    return heartbeat_frame()


async def _pump_ws(ws: web.WebSocketResponse, session: Session) -> None:
    while not ws.closed:
        frame = await _next_frame(session)
        await ws.send_str(frame)
        if frame.startswith("c"):
            await ws.close()
            return


async def _pump_raw(ws: web.WebSocketResponse, session: Session) -> None:
    while not ws.closed:
        if not session.outbox and session.closed is None:
            await session.ready.wait()
        for text in session.take():
            await ws.send_str(text)
        if session.closed is not None:
            await ws.close()
            return
