"""The process-wide context of fsapps inside a switch: settings, the Redis client, the
pub/sub publisher and the PostgreSQL pool, created once and shared by every call.

FreeSWITCH reloads the entry modules (``fsapps.nwayacd``, ``fsapps.api``, ...) on every call;
this module is only imported by them, so what it holds survives (FREESWITCH.md). Nothing
connects at import time. Tests and tools inject their own settings with :func:`configure`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fsapps.config import Settings, load_settings
from fsapps.db.connection import Pool, get_pool
from fsapps.events.pubsub import Publisher
from fsapps.store.connection import redis_client
from fsapps.store.keys import Keys, NodeKeys

if TYPE_CHECKING:
    import redis


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Context:
    settings: Settings
    _keys: dict[str, Keys] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _redis: Any = None
    _publisher: Any = None
    _pool: Any = None

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis_client(self.settings.redis)
        return self._redis

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            self._publisher = Publisher(self.redis, self.settings.events)
        return self._publisher

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            pg = self.settings.postgres
            self._pool = get_pool(pg.dsn, connect_timeout=pg.connect_timeout)
        return self._pool

    def keys(self, domain: str | None = None) -> Keys:
        domain = domain or self.settings.default_domain
        found = self._keys.get(domain)
        if found is None:
            with self._lock:
                found = self._keys.setdefault(domain, Keys(self.settings.redis.key_prefix,
                                                           domain))
        return found

    @property
    def node_keys(self) -> NodeKeys:
        return NodeKeys(self.settings.redis.key_prefix)


_context: Context | None = None
_context_lock = threading.Lock()


def get_context() -> Context:
    """The shared context, loading the settings on first use."""
    global _context
    if _context is None:
        with _context_lock:
            if _context is None:
                _context = Context(load_settings())
    return _context


def configure(settings: Settings) -> Context:
    """Replace the shared context (tests, the demo, the benchmarks)."""
    global _context
    with _context_lock:
        _context = Context(settings)
    return _context
