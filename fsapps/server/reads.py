"""The CTI server's hot reads, answered on its event loop in the token check's round trip
(:func:`fsapps.server.access.authenticate_reading`), no worker thread:

- ``GET /api/get_extensions``: one script (agent_rows.lua) reads the rows of every agent,
  shared by the requests that arrive while the previous read is under way (each waits for a
  read that began after it came); the JSON is encoded only when that text differs from the
  last one this process encoded, so a wallboard or CRM polling it costs one comparison, not
  one encoding of 200 rows, until an agent changes. Nothing to invalidate: every answer was
  read from Redis after its request arrived, so a change by any process (a switch, another
  CTI worker, a test writing the hash) is in the next answer.
- ``GET /api/extension_info/<ext>``: one HMGET.

Keys: none of its own (the agent hashes and set are :mod:`fsapps.domain.agents`').
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fsapps.domain.agents import Agents, rows_of
from fsapps.server import rows
from fsapps.store.scripts import arun_script

Finish = Callable[[list[Any]], Any]


class _OneReadPerMoment:
    """The requests of one moment share one run of a read: a request joins the next run to
    start, never one already under way (which may predate a change the request's client has
    seen), so 8 clients polling cost one run per round, not eight."""

    def __init__(self) -> None:
        self._next: asyncio.Future[bytes] | None = None
        self._running: asyncio.Task[None] | None = None

    async def _shared(self, fetch: Callable[[], Awaitable[bytes]]) -> bytes:
        """The body from a run of ``fetch`` that starts after this call."""
        waiting = self._next
        if waiting is None:
            waiting = self._next = asyncio.get_running_loop().create_future()
        if self._running is None:
            self._running = asyncio.ensure_future(self._runs(fetch))
        return await asyncio.shield(waiting)

    async def _runs(self, fetch: Callable[[], Awaitable[bytes]]) -> None:
        try:
            while self._next is not None:
                waiting, self._next = self._next, None
                try:
                    body = await fetch()
                except Exception as exc:
                    waiting.set_exception(exc)
                    waiting.exception()  # (retrieved: each request raises its own copy)
                else:
                    waiting.set_result(body)
        finally:
            self._running = None


class ExtensionRows(_OneReadPerMoment):
    """get_extensions' answer for one domain, encoded once per change of its rows; one
    script per round of requests (:class:`_OneReadPerMoment`)."""

    def __init__(self, domain: str) -> None:
        super().__init__()
        self.domain = domain
        # the extensions of the agents set as last read (agent_rows.lua checks it is current)
        self.extensions: list[str] | None = None
        self.text: str | None = None
        self.body = b""
        self.encoded = 0  # times encoded (tests: once per change)
        self.reads = 0    # scripts run (tests: shared by the requests of one moment)

    async def read(self, client: Any, agents: Agents) -> bytes:
        """The body, from a read that starts after this call (on the asyncio ``client``)."""
        return await self._shared(lambda: self._read(client, agents))

    async def _read(self, client: Any, agents: Agents) -> bytes:
        for _ in range(5):
            if self.extensions is None:
                self.extensions = sorted(await client.smembers(agents.keys.agents()))
            self.reads += 1
            body = self.answer(await arun_script(client, *agents.rows_call(self.extensions)))
            if body is not None:
                return body
            self.extensions = None  # the agents set changed: read it again
        raise RuntimeError("the agents set keeps changing")  # (5 changes in a row)

    def answer(self, reply: Any) -> bytes | None:
        if not reply or int(reply[0]) == 0:
            return None
        text = str(reply[1])
        if text != self.text:
            found = [rows.extension_row(a) for a in rows_of(text, self.domain)]
            self.body = json.dumps(found, ensure_ascii=False).encode("utf-8")
            self.text = text
            self.encoded += 1
        return self.body


class SharedRead(_OneReadPerMoment):
    """A blocking read that many clients poll (the wallboard, ``/api/queues``), run in a
    worker thread once per round of requests (:class:`_OneReadPerMoment`) and JSON-encoded
    only when its result differs from the last one (the queue list between changes; the
    wallboard, whose figures are relative to its read's "now", is encoded once per run, not
    once per request)."""

    def __init__(self, read: Callable[[], Any]) -> None:
        super().__init__()
        self.read_fn = read
        self.result: Any = None
        self.body = b""
        self.encoded = 0
        self.reads = 0

    async def read(self, run: Callable[..., Any]) -> bytes:
        """The body, from a run of the read that starts after this call; ``run(fn)`` runs
        it in a worker thread (the services' ``run``)."""
        return await self._shared(lambda: self._read(run))

    async def _read(self, run: Callable[..., Any]) -> bytes:
        self.reads += 1
        result = await run(self.read_fn)
        if self.encoded == 0 or result != self.result:
            self.body = json.dumps(result, ensure_ascii=False).encode("utf-8")
            self.result = result
            self.encoded += 1
        return self.body


def shared(services: Any, name: str, read: Callable[[], Any]) -> SharedRead:
    """The process's :class:`SharedRead` called ``name`` (made with ``read`` the first
    time)."""
    found = services.caches.get(name)
    if found is None:
        found = services.caches[name] = SharedRead(read)
    return found


def body_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def extension_rows(services: Any) -> ExtensionRows:
    cache = services.caches.get("extension_rows")
    if cache is None:
        cache = services.caches["extension_rows"] = ExtensionRows(services.domain)
    return cache


def queue_extension_info(services: Any, values: dict[str, str], pipe: Any) -> Finish:
    key = services.ctx.keys(services.domain).agent(values["ext"])
    pipe.hmget(key, "reg_state", "seat_status", "call_state")
    pipe.exists(key)

    def finish(replies: list[Any]) -> dict[str, str] | None:
        (reg, seat, state), exists = replies[0], replies[1]
        if not exists:
            return None  # (the slow path words the refusal)
        return {"reg_state": reg or "unreg", "seat_status": seat or "busy",
                "call_state": state or "ready"}
    return finish
