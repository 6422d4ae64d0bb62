"""The CTI server's hot reads, answered on its event loop in the token check's round trip
(:func:`fsapps.server.access.authenticate_reading`), no worker thread:

- ``GET /api/get_extensions``: one script (agent_rows.lua) reads the rows of every agent; the
  JSON is encoded only when that text differs from the last one this process encoded, so a
  wallboard or CRM polling it costs one comparison, not one encoding of 200 rows, until an
  agent changes. Nothing to invalidate: every request reads Redis, so a change by any
  process (a switch, another CTI worker, a test writing the hash) is in the next answer.
- ``GET /api/extension_info/<ext>``: one HMGET.

Keys: none of its own (the agent hashes and set are :mod:`fsapps.domain.agents`').
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from fsapps.domain.agents import Agents, rows_of
from fsapps.server import rows
from fsapps.server.access import queue_script
from fsapps.store.scripts import run_script

Finish = Callable[[list[Any]], Any]


class ExtensionRows:
    """get_extensions' answer for one domain, encoded once per change of its rows."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        # the extensions of the agents set as last read (agent_rows.lua checks it is current)
        self.extensions: list[str] | None = None
        self.text: str | None = None
        self.body = b""
        self.encoded = 0  # times encoded (tests: once per change)

    def queue(self, agents: Agents, pipe: Any) -> Finish:
        """Queue the rows' script on ``pipe``; finish(replies) -> the body, or None when the
        agents set changed (then :meth:`refresh`)."""
        if self.extensions is None:
            return lambda replies: None
        name, keys, args = agents.rows_call(self.extensions)
        queue_script(pipe, name, list(keys), list(args))
        return lambda replies: self.answer(replies[0])

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

    def refresh(self, agents: Agents) -> bytes:
        """(blocking) Read the agents set again, then the rows."""
        for _ in range(5):
            self.extensions = agents.extensions()
            name, keys, args = agents.rows_call(self.extensions)
            body = self.answer(run_script(agents.r, name, keys, args))
            if body is not None:
                return body
        raise RuntimeError("the agents set keeps changing")  # (5 changes in a row)


def body_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def extension_rows(services: Any) -> ExtensionRows:
    cache = services.caches.get("extension_rows")
    if cache is None:
        cache = services.caches["extension_rows"] = ExtensionRows(services.domain)
    return cache


def queue_extension_rows(services: Any, values: dict[str, str], pipe: Any) -> Finish:
    return extension_rows(services).queue(Agents(services.ctx, services.domain), pipe)


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
