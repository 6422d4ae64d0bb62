"""The Redis client of a process: plain URL, Sentinel or Cluster, cached per settings.

FreeSWITCH reloads only the entry modules on every call; this module is imported by them and
survives, so :func:`redis_client` hands out one client (one connection pool) per settings per
process. Nothing connects at import time; a plain or Sentinel client connects on its first
command, a Cluster client when it is created (it must learn the slot map).

Every command retries on a connection error or timeout with exponential backoff (about
:data:`RETRY_BUDGET_SECONDS` in all), which rides out a Redis restart or a Sentinel failover.
When Redis stays down the command raises :class:`StoreUnavailable`, whose message names the
server but never the password. Responses are decoded to ``str``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
import redis.exceptions
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from fsapps.config import RedisSettings, Secret
from fsapps.errors import StoreUnavailable

__all__ = ["RETRY_BUDGET_SECONDS", "RedisClient", "close_clients", "describe_url",
           "redis_client", "store_errors"]

# A client of either kind; both expose the same command methods.
RedisClient = redis.Redis | RedisCluster

RETRY_ATTEMPTS = 6
RETRY_BASE_SECONDS = 0.05
RETRY_CAP_SECONDS = 1.0
# Sum of the backoff pauses: 0.1 + 0.2 + 0.4 + 0.8 + 1.0 + 1.0 seconds.
RETRY_BUDGET_SECONDS = sum(min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** n)
                           for n in range(1, RETRY_ATTEMPTS + 1))
HEALTH_CHECK_INTERVAL = 15

# Errors that mean "Redis cannot serve us right now"; the cluster ones are raised when the
# cluster reports itself down, a slot has no node, or redirections never settle. (A plain
# RedisClusterException is not here: it also means "keys in different slots", a bug.)
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ClusterError,
    redis.exceptions.SlotNotCoveredError,
)

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^\s/]*(@)")
_QUERY_PASSWORD = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def describe_url(url: str | Secret) -> str:
    """The URL with any password replaced by ``***``."""
    text = url.reveal() if isinstance(url, Secret) else url
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\2", text))


def _secrets(settings: RedisSettings) -> list[str]:
    found = [settings.sentinel_password.reveal()]
    parts = urlsplit(settings.url.reveal())
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    found += [unquote(m) for m in re.findall(r"password=([^&\s]+)", parts.query,
                                                  re.IGNORECASE)]
    return [s for s in found if s]


def _where(settings: RedisSettings) -> str:
    if settings.sentinels:
        hosts = ",".join(f"{host}:{port}" for host, port in settings.sentinels)
        return f"Redis master {settings.sentinel_service!r} via sentinels {hosts}"
    kind = "Redis Cluster" if settings.cluster else "Redis"
    return f"{kind} at {describe_url(settings.url)}"


@contextmanager
def store_errors(where: str, secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """Turn "Redis cannot be reached" errors raised in the block into StoreUnavailable.

    ``where`` names the server in the message; any of ``secrets`` found in the underlying
    error text is masked.
    """
    try:
        yield
    except _UNAVAILABLE as exc:
        reason = _mask(str(exc) or type(exc).__name__, secrets)
        # `from None`: the chained redis error would show its text unmasked.
        raise StoreUnavailable(f"{where} is unavailable: {reason}") from None


def _mask(text: str, secrets: tuple[str, ...]) -> str:
    text = " ".join(text.split())
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class _Translating:
    """Mixin: commands and pipeline executions raise StoreUnavailable when Redis is down."""

    fsapps_where = "Redis"
    fsapps_secrets: tuple[str, ...] = ()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        with store_errors(self.fsapps_where, self.fsapps_secrets):
            return super().execute_command(*args, **options)  # type: ignore[misc]

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        with store_errors(self.fsapps_where, self.fsapps_secrets):
            pipe = super().pipeline(*args, **kwargs)  # type: ignore[misc]
        return _translating_pipeline(pipe, self.fsapps_where, self.fsapps_secrets)


class _PipelineTranslating:
    fsapps_where = "Redis"
    fsapps_secrets: tuple[str, ...] = ()

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        with store_errors(self.fsapps_where, self.fsapps_secrets):
            return super().execute(*args, **kwargs)  # type: ignore[misc]

    def immediate_execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with store_errors(self.fsapps_where, self.fsapps_secrets):
            return super().immediate_execute_command(*args, **kwargs)  # type: ignore[misc]


_PIPELINE_CLASSES: dict[type, type] = {}
_LOCK = threading.Lock()


def _translating_pipeline(pipe: Any, where: str, secrets: tuple[str, ...]) -> Any:
    # Pipelines are built by redis-py with long, version-specific constructor arguments;
    # re-classing the finished object to a subclass adds our error translation without
    # copying them.
    base = type(pipe)
    cls = _PIPELINE_CLASSES.get(base)  # (no lock once built: every round trip passes here)
    if cls is None:
        with _LOCK:
            cls = _PIPELINE_CLASSES.get(base)
            if cls is None:
                cls = _PIPELINE_CLASSES[base] = type(f"Fsapps{base.__name__}",
                                                     (_PipelineTranslating, base), {})
    pipe.__class__ = cls
    pipe.fsapps_where = where
    pipe.fsapps_secrets = secrets
    return pipe


class FsappsRedis(_Translating, redis.Redis):
    """redis.Redis whose connection failures raise StoreUnavailable."""


class FsappsRedisCluster(_Translating, RedisCluster):
    """RedisCluster whose connection failures raise StoreUnavailable."""


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=RETRY_CAP_SECONDS, base=RETRY_BASE_SECONDS),
                 RETRY_ATTEMPTS,
                 supported_errors=(redis.exceptions.ConnectionError,
                                   redis.exceptions.TimeoutError))


# redis-py 7 reads its own version from the package metadata for every connection it makes
# (half a millisecond, holding the GIL and the pool's lock, which every command takes: a
# burst of callers opening connections queued behind it); it is read once here.
try:
    from redis.driver_info import DriverInfo
    _DRIVER_INFO: dict[str, Any] = {"driver_info": DriverInfo()}
except ImportError:  # redis-py before 7
    _DRIVER_INFO = {}


def _common(settings: RedisSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_timeout,
        "max_connections": settings.max_connections,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": _retry(),
        "client_name": "fsapps",
        **_DRIVER_INFO,
    }
    if not settings.url.reveal().startswith("unix:"):
        # TCP only: keepalive notices a peer that vanished without closing (node failure).
        options["socket_keepalive"] = True
    return options


def _sentinel_client(settings: RedisSettings) -> redis.Redis:
    # The url still supplies the master's password, username and database number.
    parts = urlsplit(settings.url.reveal())
    master: dict[str, Any] = _common(settings)
    if parts.password:
        master["password"] = unquote(parts.password)
    if parts.username:
        master["username"] = unquote(parts.username)
    db = parts.path.strip("/")
    if db.isdigit():
        master["db"] = int(db)
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": settings.socket_timeout,
                                       "socket_connect_timeout": settings.socket_timeout,
                                       "decode_responses": True}
    if settings.sentinel_password:
        sentinel_kwargs["password"] = settings.sentinel_password.reveal()
    sentinel = Sentinel(list(settings.sentinels), sentinel_kwargs=sentinel_kwargs)
    client: redis.Redis = sentinel.master_for(settings.sentinel_service,
                                              redis_class=FsappsRedis, **master)
    return client


def _build(settings: RedisSettings) -> RedisClient:
    where, secrets = _where(settings), tuple(_secrets(settings))
    client: Any
    if settings.sentinels:
        client = _sentinel_client(settings)
    elif settings.cluster:
        # RedisCluster connects here to learn the slot map; no reachable node is reported as
        # a bare RedisClusterException.
        try:
            with store_errors(where, secrets):
                client = FsappsRedisCluster.from_url(settings.url.reveal(), **_common(settings))
        except redis.exceptions.RedisClusterException as exc:
            raise StoreUnavailable(f"{where} is unavailable: {_mask(str(exc), secrets)}") from None
    else:
        client = FsappsRedis.from_url(settings.url.reveal(), **_common(settings))
    client.fsapps_where = where
    client.fsapps_secrets = secrets
    return client


_CLIENTS: dict[RedisSettings, RedisClient] = {}


def redis_client(settings: RedisSettings) -> redis.Redis:
    """The process-wide client for ``settings``, created on first use.

    Plain ``redis://``, ``rediss://`` and ``unix://`` URLs give a :class:`redis.Redis`;
    ``settings.sentinels`` gives the Sentinel-managed master of ``sentinel_service`` (the url
    then only supplies password and database); ``settings.cluster`` gives a
    :class:`redis.cluster.RedisCluster`, which has the same command methods and is typed as
    ``redis.Redis`` here so callers need not narrow a union. Raises :class:`StoreUnavailable`
    only for a cluster that cannot be reached (the others connect lazily).
    """
    with _LOCK:
        client = _CLIENTS.get(settings)
    if client is None:
        built = _build(settings)
        with _LOCK:
            # Two threads may build at once; the first stored wins and the other is dropped.
            client = _CLIENTS.setdefault(settings, built)
        if client is not built:
            built.close()
    return cast(redis.Redis, client)


def publish_pipeline(client: RedisClient) -> Any:
    """A pipeline for PUBLISH commands. Redis Cluster refuses PUBLISH in its pipelines, but a
    message published on any node reaches subscribers on every node: there the pipeline is one
    node's own."""
    if isinstance(client, RedisCluster):
        default = client.get_default_node()
        if default is not None:
            return client.get_redis_connection(default).pipeline(transaction=False)
    return client.pipeline(transaction=False)


HashFields = dict[str | bytes, bytes | float | int | str]


def hash_fields(data: dict[str, object]) -> HashFields:
    """``data`` as HSET's mapping: every value a string (None becomes "")."""
    return {k: "" if v is None else str(v) for k, v in data.items()}


def json_object(text: str | None) -> dict[str, Any]:
    """A JSON object stored in a Redis value; {} for a missing, broken or non-object value
    (a record another version wrote, or half a write, must not stop the reader)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def close_clients() -> None:
    """Close and forget every cached client (shutdown, tests)."""
    with _LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:
        client.close()
