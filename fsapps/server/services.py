"""What a CTI server's request handlers use: the settings, Redis, PostgreSQL, the auth service
and the way to the switch node that owns a channel.

The CTI server holds no call state of its own (ARCHITECTURE.md): everything it reads is in
Redis or PostgreSQL, and every switch action is a node command
(:mod:`fsapps.switch.nodecommands`) answered by the runtime of the node whose channel it
concerns, so any number of servers can run behind a load balancer. The fsapps services it
calls (:mod:`fsapps.services`, :mod:`fsapps.domain`, ...) are blocking;
:meth:`CtiServices.run` runs them in a bounded pool of worker threads so the event loop never
waits on Redis, PostgreSQL or a node.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio as aioredis
from aiohttp import web

from fsapps.config import Settings
from fsapps.context import Context
from fsapps.events import amqp
from fsapps.server.auth import Auth
from fsapps.switch.nodecommands import SwitchCommands

if TYPE_CHECKING:
    import redis

    from fsapps.db.connection import Pool

T = TypeVar("T")


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
        # the asyncio client of the hot paths (fsapps.server.access, fsapps.server.fastpath),
        # made on first use on the server's event loop
        self._aredis: Any = None
        # per-process answers kept between requests (fsapps.server.reads), each checked
        # against Redis on every request
        self.caches: dict[str, Any] = {}
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
    def aredis(self) -> Any:
        """An asyncio Redis client for the requests answered on the event loop (the token
        check, the agent rows, ...: a round trip without a worker thread's hand-off), made on
        first use (call it on the server's loop). None with Redis Sentinel or Cluster: those
        requests then take the blocking client in the worker threads, as every other does."""
        redis_settings = self.settings.redis
        if self._aredis is None and not redis_settings.sentinels and not redis_settings.cluster:
            self._aredis = aioredis.Redis.from_url(
                redis_settings.url.reveal(), decode_responses=True,
                socket_timeout=redis_settings.socket_timeout,
                socket_connect_timeout=redis_settings.socket_timeout,
                client_name="fsapps-cti")
        return self._aredis

    async def aclose(self) -> None:
        """Close the asyncio client (on the loop that used it)."""
        client, self._aredis = self._aredis, None
        if client is not None:
            await client.aclose()

    @property
    def domain(self) -> str:
        return self.settings.default_domain

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker thread, awaited."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    @property
    def switch(self) -> SwitchCommands:
        """The way to the switch nodes: every command goes to the node that holds its channel
        (or a given / the first live node) and waits ``cti.node_reply_timeout_seconds`` for
        the answer (:mod:`fsapps.switch.nodecommands`; its errors answer 404, 503 or 504)."""
        return SwitchCommands(self.ctx, timeout_s=self.settings.cti.node_reply_timeout_seconds)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


SERVICES: web.AppKey[CtiServices] = web.AppKey("fsapps_cti_services", CtiServices)


def services_of(app: web.Application) -> CtiServices:
    return app[SERVICES]
