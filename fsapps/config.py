"""Typed settings of fsapps, loaded from YAML with ``FSAPPS_*`` environment overrides.

Where the file is looked for, in order: the ``--config`` argument, ``$FSAPPS_CONFIG``,
``/etc/fsapps/fsapps.yaml``, ``conf/fsapps.yaml``. Secrets are :class:`Secret` values whose
repr and str never show the value.

INTERFACE PINNED — the dataclasses below are what the rest of fsapps imports; the loader,
validation, environment overrides and ``check_command`` are filled in underneath them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class Secret:
    """A string that never shows itself in a repr, a str or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class RedisSettings:
    # A plain URL (redis://[:password@]host:port/db, rediss://...) used when no sentinels are set.
    url: Secret = Secret("redis://127.0.0.1:6379/0")
    # Sentinel mode: (host, port) pairs and the monitored master's service name.
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_service: str = "mymaster"
    sentinel_password: Secret = Secret("")
    # Every key fsapps owns (not the seed-defined names) starts with this prefix.
    key_prefix: str = "fsapps"
    socket_timeout: float = 2.0
    # Redis Cluster: when true, connect with RedisCluster to the url's node.
    cluster: bool = False


@dataclass(frozen=True)
class PostgresSettings:
    dsn: Secret = Secret("postgresql://postgres@127.0.0.1:5432/fsapps")
    connect_timeout: int = 5


@dataclass(frozen=True)
class NatsSettings:
    enabled: bool = False
    url: Secret = Secret("nats://127.0.0.1:4222")
    subject_prefix: str = "cn.xswitch.ctrl.event"
    # When set, Event.CDR goes here (seed 000 `cdr-subject`), else on the channel subject.
    cdr_subject: str = ""
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class AmqpSettings:
    enabled: bool = False
    url: Secret = Secret("amqp://guest:guest@127.0.0.1:5672/%2F")
    exchange: str = "fsapps"


@dataclass(frozen=True)
class CtiSettings:
    listen: str = "0.0.0.0"
    port: int = 8085
    token_ttl_seconds: int = 8 * 3600


@dataclass(frozen=True)
class UserSettings:
    username: str
    # A password hash (``pbkdf2_sha256$...``); plain passwords are refused by the loader.
    password_hash: Secret
    role: str = "agent"  # agent | supervisor | admin
    extension: str = ""


@dataclass(frozen=True)
class GroupDefaults:
    call_mode: int = 5
    callout_timeout: int = 15
    wrapup_seconds: int = 300
    max_no_answer: int = 3
    memory_ttl_seconds: int = 30 * 24 * 3600
    hold_music: str = "local_stream://moh"
    # Long-wait policy: play the busy ring this many times then hang up; 0 = never hang up.
    busy_ring_repeats: int = 0


@dataclass(frozen=True)
class EventSettings:
    # Shape of the seed-001 pub/sub messages: "comma" (redis form) or "json" (the MQ form).
    pubsub_format: str = "json"
    cti_ip: str = ""


@dataclass(frozen=True)
class Settings:
    redis: RedisSettings = field(default_factory=RedisSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    nats: NatsSettings = field(default_factory=NatsSettings)
    amqp: AmqpSettings = field(default_factory=AmqpSettings)
    cti: CtiSettings = field(default_factory=CtiSettings)
    users: tuple[UserSettings, ...] = ()
    api_tokens: tuple[Secret, ...] = ()
    domains: tuple[str, ...] = ("default",)
    default_domain: str = "default"
    group_defaults: GroupDefaults = field(default_factory=GroupDefaults)
    events: EventSettings = field(default_factory=EventSettings)
    node_name: str = ""
    log_level: str = "INFO"
