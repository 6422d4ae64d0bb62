"""Is a wellClient agent's page still there? An agent logged in through the SDK is logged off
when its page has not been heard from for ``cti.agent_presence_timeout_seconds``.

The published SDK does not log off when its page closes (its ``window.onunload`` only closes
the WebSocket; the Logout there is commented out, and a synchronous request from an unloading
page is refused by today's browsers anyway): left alone, a closed page leaves its agent logged
in and ready, rung for queue calls nobody answers. The page is heard from when it logs in or
changes state, at each heart-beat (the SDK sends one every 60 s to
``/api/csta/agent/heartbeat/<loginId>``), and, on every CTI server, while it holds an event
session open on the agent's own topic (refreshed every sweep). A page closed, crashed or cut
off is heard from no more: after the timeout, one CTI server (the one whose step takes it out
of the set, csta_presence_expire.lua) logs the agent off as the SDK's Logout would.

Keys (``p`` prefix, ``d`` domain; :mod:`fsapps.store.keys`): ``p:{d}:csta:seen`` zset, job
number -> when last heard from (ms); an entry exists exactly while the agent is logged in
through the SDK (added at Login, removed at Logout, :mod:`fsapps.server.csta.callcontrol`).
Blocking: the CTI server runs these in its worker threads.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fsapps.store.scripts import run_script

__all__ = ["arrived", "gone", "heard_from", "left"]


def now_ms() -> int:
    return int(time.time() * 1000)


def arrived(pipe: Any, keys: Any, job: str, at_ms: int) -> None:
    """The agent logged in (or changed state): heard from now. Queued on ``pipe``."""
    pipe.zadd(keys.csta_seen(), {job: at_ms})


def left(pipe: Any, keys: Any, job: str) -> None:
    """The agent logged off: nothing to watch any more. Queued on ``pipe``."""
    pipe.zrem(keys.csta_seen(), job)


def heard_from(ctx: Any, domain: str, jobs: Iterable[str], at_ms: int | None = None) -> None:
    """The pages of ``jobs`` are there (a heart-beat, open event sessions). Only agents logged
    in through the SDK are watched: the others are left out (ZADD XX)."""
    stamped = {job: at_ms or now_ms() for job in jobs}
    if stamped:
        ctx.redis.zadd(ctx.keys(domain).csta_seen(), stamped, xx=True)


def gone(ctx: Any, domain: str, timeout_ms: int, at_ms: int | None = None) -> list[str]:
    """The agents of ``domain`` not heard from for ``timeout_ms``, each taken out of the set by
    this call (another CTI server sweeping at the same moment gets the others): the caller
    logs them off."""
    key = ctx.keys(domain).csta_seen()
    cutoff = (at_ms or now_ms()) - timeout_ms
    return [job for job in ctx.redis.zrangebyscore(key, "-inf", cutoff)
            if run_script(ctx.redis, "csta_presence_expire", [key], [job, cutoff])]
