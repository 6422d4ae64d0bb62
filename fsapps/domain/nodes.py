"""FreeSWITCH nodes: who is alive (heartbeats), which channels each node holds, and the
command queue each node's runtime serves, so any process can reach the node that owns a channel
(and, with :meth:`Nodes.request`, wait for its answer).

Keys (``p`` prefix; domain-less, hash tag ``{nodes}``):

``p:{nodes}:nodes``               zset  node names, score = last heartbeat (ms).
``p:{nodes}:node:<n>:heartbeat``  hash  PX 3 heartbeats: facts about the node: ``last`` (ms),
                                        ``relay`` (``host:port`` where its relay sofia profile
                                        listens: other nodes ring the agents registered on n
                                        there, see :func:`fsapps.switch.acd.agent_endpoint`; absent
                                        until the switch reported it).
``p:{nodes}:node:<n>:commands``   list  PX 60 s after the last push: JSON commands for node n,
                                        RPUSH by anyone, BLPOP by n.
``p:{nodes}:node:<n>:channels``   set   PX 60 s, renewed by every heartbeat: uuids of the live
                                        channels of node n (its runtime adds on CHANNEL_CREATE,
                                        removes on CHANNEL_DESTROY); a dead node's set expires.
``p:{nodes}:node:<n>:recorded``  hash  no expiry: every channel node n's runtime recorded state
                                        for (added on CHANNEL_CREATE, removed on CHANNEL_DESTROY),
                                        uuid -> JSON ``[domain, extension]`` of the live-state
                                        record holding it (:mod:`fsapps.switch.livestate`), or "". A
                                        channel the switch ended while no runtime listened (a
                                        shutdown hangs calls up after the runtime stopped; a
                                        crash) stays here until the node's next start, which
                                        removes what was recorded about it (NodeRuntime.recover).
``p:{nodes}:node:<n>:stats``     hash  PX 60 s, renewed by every heartbeat: node n's runtime
                                        counters since its process started (calls_routed,
                                        route_decision, dispatch_decision, redis_errors,
                                        events_lost, bus_messages_dropped), for ``/metrics``.
``p:{nodes}:reply:<id>``          list  PX 30 s: the one answer to a :meth:`Nodes.request`,
                                        RPUSH by the node that ran the command, BLPOP by the
                                        requester.
"""

from __future__ import annotations

import json
import re
import time
import uuid as uuidlib
from typing import Any

from fsapps.context import Context, now_ms
from fsapps.store import hash_fields

HEARTBEAT_MS = 1000
DEAD_AFTER_MS = 5 * HEARTBEAT_MS
COMMANDS_TTL_MS = 60_000
CHANNELS_TTL_MS = 60_000
STATS_TTL_MS = 60_000
REPLY_TTL_MS = 30_000
REPLY_TIMEOUT_S = 5.0

# sofia xmlstatus profile <name>: <url>sip:mod_sofia@127.0.0.1:5080</url> ([v6] in brackets)
_PROFILE_URL = re.compile(r"<url>\s*sips?:[^@<]*@(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)"
                          r"(?::(\d{1,5}))?[;>\s<]")
# what may follow the @ of a sofia dial string: host or address and an optional port
RELAY_ADDRESS = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):\d{1,5}")


def profile_address(xmlstatus: str) -> str | None:
    """``host:port`` where a sofia profile listens for SIP, read from the answer of
    ``sofia xmlstatus profile <name>`` (its ``<url>``; port 5060 when the url names none).
    None when the answer is no profile's status ("Invalid Profile!", an -ERR, a profile still
    starting)."""
    m = _PROFILE_URL.search(xmlstatus or "")
    if m is None:
        return None
    port = int(m.group(2) or 5060)
    if not 1 <= port <= 65535:
        return None
    return f"{m.group(1)}:{port}"


# node heartbeat key and node -> (when read, ms; the relay address then), for this process
_relay_cache: dict[tuple[str, str], tuple[int, str | None]] = {}
RELAY_CACHE_MS = 1000


class Nodes:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.keys = ctx.node_keys
        self.r = ctx.redis

    def heartbeat(self, node: str, facts: dict[str, str] | None = None,
                  stats: dict[str, int] | None = None) -> None:
        """The node is alive (``facts`` in its heartbeat hash); ``stats``: its runtime
        counters, in the same round trip."""
        now = now_ms()
        pipe = self.r.pipeline(transaction=False)
        if stats:
            pipe.hset(self.keys.stats(node), mapping=hash_fields(dict(stats)))
            pipe.pexpire(self.keys.stats(node), STATS_TTL_MS)
        pipe.zadd(self.keys.nodes(), {node: now})
        pipe.hset(self.keys.heartbeat(node), mapping=hash_fields({"last": now, **(facts or {})}))
        pipe.pexpire(self.keys.heartbeat(node), 3 * HEARTBEAT_MS)
        pipe.pexpire(self.keys.channels(node), CHANNELS_TTL_MS)
        pipe.execute()

    def stats(self) -> dict[str, dict[str, int]]:
        """Each node's runtime counters (node -> counter -> value) as its last heartbeat
        left them; a node gone for STATS_TTL_MS has none."""
        nodes = sorted(self.r.zrange(self.keys.nodes(), 0, -1))
        pipe = self.r.pipeline(transaction=False)
        for node in nodes:
            pipe.hgetall(self.keys.stats(node))
        found = pipe.execute() if nodes else []
        return {node: {k: int(v) for k, v in data.items() if str(v).lstrip("-").isdigit()}
                for node, data in zip(nodes, found, strict=True) if data}

    def relay_address(self, node: str) -> str | None:
        """``host:port`` of ``node``'s relay profile, from its live heartbeat: None when the
        node is not beating (its heartbeat expired) or has not reported one."""
        address = self.r.hget(self.keys.heartbeat(node), "relay")
        return str(address) if address and RELAY_ADDRESS.fullmatch(str(address)) else None

    def recent_relay_address(self, node: str) -> str | None:
        """:meth:`relay_address` as this process read it less than RELAY_CACHE_MS ago (a
        heartbeat beats every HEARTBEAT_MS and expires after three): the handlers ringing
        agents on another node read it once a second, not once a call."""
        key = (self.keys.heartbeat(node), node)
        now = now_ms()
        known = _relay_cache.get(key)
        if known is not None and now - known[0] < RELAY_CACHE_MS:
            return known[1]
        address = self.relay_address(node)
        _relay_cache[key] = (now, address)
        return address

    def channel_created(self, node: str, uuid: str, pipeline: Any = None) -> None:
        """Record that ``uuid`` lives on ``node`` (optionally in the caller's pipeline)."""
        pipe = pipeline if pipeline is not None else self.r.pipeline(transaction=False)
        pipe.sadd(self.keys.channels(node), uuid)
        pipe.hsetnx(self.keys.recorded(node), uuid, "")
        if pipeline is None:
            pipe.execute()

    def channel_destroyed(self, node: str, uuid: str, pipeline: Any = None) -> None:
        pipe = pipeline if pipeline is not None else self.r.pipeline(transaction=False)
        pipe.srem(self.keys.channels(node), uuid)
        pipe.hdel(self.keys.recorded(node), uuid)
        if pipeline is None:
            pipe.execute()

    def record_owners(self, node: str, owners: dict[str, str], pipeline: Any) -> None:
        """Note in ``node``'s recorded channels which live-state record holds each channel
        (uuid -> the owner's text), in the caller's pipeline."""
        if owners:
            pipeline.hset(self.keys.recorded(node), mapping=owners)

    def recorded_channels(self, node: str) -> dict[str, str]:
        """Every channel ``node``'s runtime recorded and has not seen destroyed: uuid -> its
        live-state owner's text ("" when none). One round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.keys.recorded(node))
        pipe.smembers(self.keys.channels(node))
        recorded, members = pipe.execute()
        return {**{str(uuid): "" for uuid in members},
                **{str(uuid): str(owner) for uuid, owner in recorded.items()}}

    def channel_set(self, node: str) -> set[str]:
        """The channels ``node``'s runtime saw created and not yet destroyed."""
        return {str(uuid) for uuid in self.r.smembers(self.keys.channels(node))}

    def channels_gone(self, node: str, uuids: list[str]) -> None:
        """Forget channels of ``node`` that no longer exist (their CHANNEL_DESTROY never came)."""
        if not uuids:
            return
        pipe = self.r.pipeline(transaction=False)
        pipe.srem(self.keys.channels(node), *uuids)
        pipe.hdel(self.keys.recorded(node), *uuids)
        pipe.execute()

    def channels_live(self, node: str, uuids: set[str]) -> None:
        """Record channels the switch says live on ``node`` (one created while no runtime of
        the node listened), keeping what is already recorded about them."""
        if not uuids:
            return
        pipe = self.r.pipeline(transaction=False)
        pipe.sadd(self.keys.channels(node), *uuids)
        pipe.pexpire(self.keys.channels(node), CHANNELS_TTL_MS)
        for uuid in sorted(uuids):
            pipe.hsetnx(self.keys.recorded(node), uuid, "")
        pipe.execute()

    def owner(self, uuid: str) -> str | None:
        """The live node whose runtime recorded channel ``uuid`` (None when none did). Two
        round trips: the live nodes, then one membership test per node."""
        alive = sorted(self.alive())
        if not alive:
            return None
        pipe = self.r.pipeline(transaction=False)
        for node in alive:
            pipe.sismember(self.keys.channels(node), uuid)
        for node, member in zip(alive, pipe.execute(), strict=True):
            if member:
                return node
        return None

    def alive(self) -> set[str]:
        return set(self.r.zrangebyscore(self.keys.nodes(), now_ms() - DEAD_AFTER_MS, "+inf"))

    def alive_as_seen_by(self, node: str) -> set[str]:
        """The nodes a reconciler on ``node`` may take for alive: those whose last heartbeat is
        less than DEAD_AFTER_MS older than ``node``'s own (never later than now). A node whose
        own heartbeats stalled - its process, or the Redis they all use, starved of CPU - has
        been as silent as the others: judged against the clock alone, each node's reconciler,
        running again, took the others for gone and freed their agents in the middle of their
        calls (double offers). Judged against its own heartbeat, a node is gone only once it
        stayed silent while this one kept beating. One round trip."""
        beats = {str(name): int(score) for name, score in
                 self.r.zrange(self.keys.nodes(), 0, -1, withscores=True)}
        now = now_ms()
        seen_until = min(now, beats.get(node, now))
        return {name for name, beat in beats.items() if beat >= seen_until - DEAD_AFTER_MS}

    def forget(self, node: str) -> None:
        self.r.zrem(self.keys.nodes(), node)

    def send(self, node: str, command: str, *, pipeline: Any = None, **args: Any) -> None:
        """Queue a command for ``node``'s runtime (e.g. ``send(n, "break", uuid=...)``). The
        queue expires COMMANDS_TTL_MS after the last command: a live node empties it at once,
        a dead one must not keep it for ever. ``pipeline``: queued on it (the caller sends
        it), not sent now."""
        pipe = pipeline if pipeline is not None else self.r.pipeline(transaction=False)
        pipe.rpush(self.keys.commands(node), json.dumps({"cmd": command, **args}))
        pipe.pexpire(self.keys.commands(node), COMMANDS_TTL_MS)
        if pipeline is None:
            pipe.execute()

    def request(self, node: str, command: str, timeout_s: float = REPLY_TIMEOUT_S,
                **args: Any) -> str | None:
        """Send ``command`` to ``node`` and wait up to ``timeout_s`` for its answer (the text
        the node's runtime passed to :meth:`reply`). None when no answer came in time — the
        command may still run there later."""
        reply_id = uuidlib.uuid4().hex
        self.send(node, command, reply=reply_id, **args)
        deadline = time.monotonic() + timeout_s
        # BLPOP in slices shorter than the client's socket timeout: one long BLOCK would be cut
        # by the socket timeout, retried as a connection error and end as StoreUnavailable.
        step = max(0.1, min(1.0, self.ctx.settings.redis.socket_timeout / 2))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            item = self.r.blpop([self.keys.reply(reply_id)], timeout=min(step, remaining))
            if item is not None:
                return str(item[1])

    def reply(self, reply_id: str, text: str) -> None:
        """Answer a :meth:`request` (the requester may have given up: the answer expires)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(self.keys.reply(reply_id), text)
        pipe.pexpire(self.keys.reply(reply_id), REPLY_TTL_MS)
        pipe.execute()

    def requeue_command(self, node: str, command: dict[str, Any]) -> None:
        """Put a command taken by :meth:`next_command` back at the front of the node's queue."""
        self.r.lpush(self.keys.commands(node), json.dumps(command))

    def next_command(self, node: str, timeout_s: float = 1.0) -> dict[str, Any] | None:
        """Block up to ``timeout_s`` for the node's next command (None when none came).
        A malformed entry is returned as {"cmd": "", "raw": text} for the caller to log."""
        item = self.r.blpop([self.keys.commands(node)], timeout=timeout_s)
        if item is None:
            return None
        try:
            command = json.loads(item[1])
            if isinstance(command, dict):
                return command
        except ValueError:
            pass
        return {"cmd": "", "raw": item[1]}
