"""FreeSWITCH nodes: who is alive (heartbeats) and the command queue each node's runtime
serves, so any process can reach the node that owns a channel.

Keys (``p`` prefix; domain-less, hash tag ``{nodes}``):

``p:{nodes}:nodes``               zset  node names, score = last heartbeat (ms).
``p:{nodes}:node:<n>:heartbeat``  hash  PX 3 heartbeats: facts about the node (host, started).
``p:{nodes}:node:<n>:commands``   list  PX 60 s after the last push: JSON commands for node n,
                                        RPUSH by anyone, BLPOP by n.
"""

from __future__ import annotations

import json
from typing import Any

from fsapps.context import Context, now_ms
from fsapps.store import hash_fields

HEARTBEAT_MS = 1000
DEAD_AFTER_MS = 5 * HEARTBEAT_MS
COMMANDS_TTL_MS = 60_000


class Nodes:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.keys = ctx.node_keys
        self.r = ctx.redis

    def heartbeat(self, node: str, facts: dict[str, str] | None = None) -> None:
        now = now_ms()
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(self.keys.nodes(), {node: now})
        pipe.hset(self.keys.heartbeat(node), mapping=hash_fields({"last": now, **(facts or {})}))
        pipe.pexpire(self.keys.heartbeat(node), 3 * HEARTBEAT_MS)
        pipe.execute()

    def alive(self) -> set[str]:
        return set(self.r.zrangebyscore(self.keys.nodes(), now_ms() - DEAD_AFTER_MS, "+inf"))

    def forget(self, node: str) -> None:
        self.r.zrem(self.keys.nodes(), node)

    def send(self, node: str, command: str, **args: Any) -> None:
        """Queue a command for ``node``'s runtime (e.g. ``send(n, "break", uuid=...)``). The
        queue expires COMMANDS_TTL_MS after the last command: a live node empties it at once,
        a dead one must not keep it for ever."""
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(self.keys.commands(node), json.dumps({"cmd": command, **args}))
        pipe.pexpire(self.keys.commands(node), COMMANDS_TTL_MS)
        pipe.execute()

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
