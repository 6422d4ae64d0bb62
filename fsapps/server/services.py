"""What a CTI server's request handlers use: the settings, Redis, PostgreSQL, the auth service
and the way to the switch node that owns a channel.

The CTI server holds no call state of its own (ARCHITECTURE.md): everything it reads is in
Redis or PostgreSQL, and every switch action is a node command (:mod:`fsapps.domain.nodes`) answered
by the runtime of the node whose channel it concerns, so any number of servers can run behind
a load balancer. The fsapps services it calls (:mod:`fsapps.switch.acd`,
:mod:`fsapps.domain.agents`, ...)
are blocking; :meth:`CtiServices.run` runs them in a bounded pool of worker threads so the
event loop never waits on Redis, PostgreSQL or a node.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from fsapps.config import Settings
from fsapps.context import Context
from fsapps.domain.nodes import Nodes
from fsapps.errors import Unavailable
from fsapps.events import amqp
from fsapps.server.auth import Auth

if TYPE_CHECKING:
    import redis

    from fsapps.db.connection import Pool

T = TypeVar("T")


class NodeCommandError(Unavailable):
    """A node command could not be delivered or answered; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        self.status = status
        super().__init__(message)


class CtiServices:
    """One per CTI server process; shared by every request."""

    def __init__(self, settings: Settings, *, ctx: Context | None = None,
                 workers: int | None = None) -> None:
        self.settings = settings
        # Its own context (not the process-wide one of fsapps.context): a server embedded in a
        # test next to fake switches keeps its clients apart from theirs.
        self.ctx = ctx or Context(settings)
        self.auth = Auth(settings, self.ctx.redis)
        self.executor = ThreadPoolExecutor(workers or settings.cti.workers,
                                           thread_name_prefix="fsapps-cti")
        if settings.amqp.enabled:
            # Agent changes made here (agent_ready, force busy, ...) are published by this
            # process: AMQP consumers must see them as they see the switches' own.
            self.ctx.publisher.add_sink(amqp.get_publisher(settings.amqp).sink)

    @property
    def redis(self) -> redis.Redis:
        return self.ctx.redis

    @property
    def pool(self) -> Pool:
        return self.ctx.pool

    @property
    def domain(self) -> str:
        return self.settings.default_domain

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker thread, awaited."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def node_command(self, uuid: str, op: str, *, timeout_s: float | None = None,
                     **args: Any) -> str:
        """Run channel command ``op`` (:data:`fsapps.switch.commands.CHANNEL_COMMANDS`) on the node
        whose runtime holds channel ``uuid`` and return that node's reply (``+OK ...`` /
        ``-ERR ...``). Blocking. Raises NodeCommandError: 404 when no live node holds the
        channel, 504 when the node did not answer in time (the command may still run)."""
        timeout_s = timeout_s or self.settings.cti.node_reply_timeout_seconds
        nodes = Nodes(self.ctx)
        owner = nodes.owner(uuid)
        if owner is None:
            raise NodeCommandError(f"no such channel {uuid}", 404)
        reply = nodes.request(owner, op, timeout_s, uuid=uuid, **args)
        if reply is None:
            raise NodeCommandError(f"node {owner} holding {uuid} did not answer within "
                                   f"{timeout_s:g} s (the command may still run there)", 504)
        return reply

    def any_node_command(self, op: str, *, timeout_s: float | None = None,
                         node: str | None = None, **args: Any) -> str:
        """Run node command ``op`` on ``node`` (default: the first live node by name)."""
        timeout_s = timeout_s or self.settings.cti.node_reply_timeout_seconds
        nodes = Nodes(self.ctx)
        alive = sorted(nodes.alive())
        if node is None:
            if not alive:
                raise NodeCommandError("no live FreeSWITCH node", 503)
            node = alive[0]
        elif node not in alive:
            raise NodeCommandError(f"node {node!r} is not alive", 404)
        reply = nodes.request(node, op, timeout_s, **args)
        if reply is None:
            raise NodeCommandError(f"node {node} did not answer within {timeout_s:g} s "
                                   "(the command may still run there)", 504)
        return reply

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


SERVICES: web.AppKey[CtiServices] = web.AppKey("fsapps_cti_services", CtiServices)


def services_of(app: web.Application) -> CtiServices:
    return app[SERVICES]
