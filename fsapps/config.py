"""Typed settings of fsapps, loaded from YAML with ``FSAPPS_*`` environment overrides.

Where the file is looked for, in order: the ``--config`` argument, ``$FSAPPS_CONFIG``,
``/etc/fsapps/fsapps.yaml``, ``conf/fsapps.yaml``. Then any single value may be replaced by
``FSAPPS_<SECTION>_<FIELD>`` (``FSAPPS_<FIELD>`` for top-level values), e.g. ``FSAPPS_CTI_PORT``.
An ``FSAPPS_*`` variable that names no setting (``FSAPPS_HOME``, a typo) is ignored with a
warning — logged once per process, naming the closest setting — never an error: inside
FreeSWITCH an error here would stop every entry point of the switch. Secrets are
:class:`Secret` values whose repr and str never show the value.

Each setting is declared once, as a field of the section dataclasses below: its type, its
default and the check its value must pass (:func:`setting`); rules that tie two settings of a
section together are that section's ``_check_across``. One binder (:func:`_build`) walks the
dataclasses for the file, the environment and ``fsapps config check``.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import psycopg2
import psycopg2.extensions
import yaml

from fsapps import fslog
from fsapps.errors import ConfigError
from fsapps.server.passwords import is_password_hash


# Secret has no mutator, so one default instance shared by every settings object is safe.
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


MASK = "**********"
URL_PASSWORD_MASK = "*****"

ROLES = ("agent", "supervisor", "admin")
PUBSUB_FORMATS = ("comma", "json")
CSTA_FEED_MODES = ("on", "off", "auto")
CALL_MODES = range(6)
CTI_BRIDGE_ON_FAILURE = ("hangup", "continue")
MIN_API_TOKEN_LENGTH = 16

# A value's check: returns the value, or raises ConfigError naming ``key`` (its dotted path).
Check = Callable[[Any, str], Any]
# A Redis Sentinel address; written "host:port", "[v6]:port" or [host, port] in the file.
HostPort = tuple[str, int]

_CHECK = "fsapps.check"
_SHOWN_AS_URL = "fsapps.shown_as_url"


def checked(check: Check | None, *, shown_as_url: bool = False) -> dict[str, Any]:
    """A field's metadata: the check its value (each item, for a list) passes once typed, and
    whether ``masked_dict`` shows a secret's URL shape (only its password hidden)."""
    return {_CHECK: check, _SHOWN_AS_URL: shown_as_url}


def setting(default: Any, *, check: Check | None = None, shown_as_url: bool = False) -> Any:
    """A setting with a default: ``field(default=..., metadata=checked(...))``."""
    return field(default=default, metadata=checked(check, shown_as_url=shown_as_url))


# ---- checks of single values --------------------------------------------------------------------


def _port(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(key, value, "expected a port number 1..65535")
    return value


def _positive(value: float, key: str) -> float:
    if value <= 0:
        raise ConfigError(key, value, "must be greater than 0")
    return value


def _hold_music_seconds(value: int, key: str) -> int:
    # FreeSWITCH times a playback only from 2 s up (playback_timeout_sec > 1)
    if value < 2:
        raise ConfigError(key, value, "must be 2 or more (FreeSWITCH times hold music from "
                          "2 s up)")
    return value


def _not_negative(value: int, key: str) -> int:
    if value < 0:
        raise ConfigError(key, value, "must be 0 or more")
    return value


def _word(value: str, key: str) -> str:
    """Non-empty, no white space: names that end up in keys, subjects and channel names."""
    if not value or any(c.isspace() for c in value):
        raise ConfigError(key, value, "must be non-empty and contain no spaces")
    return value


def _word_or_empty(value: str, key: str) -> str:
    return _word(value, key) if value else value


def _cacheable(value: str, key: str) -> str:
    if value and value != "true" and not value.isdigit():
        raise ConfigError(key, value, 'expected milliseconds ("60000"), "true" or ""')
    return value


def _key_part(value: str, key: str) -> str:
    # Braces would move or break the {domain} hash tag that keeps a domain in one cluster slot.
    _word(value, key)
    if "{" in value or "}" in value:
        raise ConfigError(key, value, "must not contain '{' or '}' (used for Redis hash tags)")
    return value


def _key_part_or_empty(value: str, key: str) -> str:
    return _key_part(value, key) if value else value


_SOFIA_PROFILE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def _sofia_profile(value: str, key: str) -> str:
    # it goes into dial strings (sofia/<profile>/...) and api arguments
    if not isinstance(value, str) or not _SOFIA_PROFILE.fullmatch(value):
        raise ConfigError(key, value, "expected a sofia profile name [A-Za-z0-9_.-]")
    return value


def _one_of(choices: Sequence[Any]) -> Check:
    def check(value: Any, key: str) -> Any:
        if value not in choices:
            raise ConfigError(key, value, "expected one of " + ", ".join(map(str, choices)))
        return value

    return check


def _subject(value: str, key: str) -> str:
    # Wildcards belong to subscribers; a subject we publish on must be literal.
    _word(value, key)
    if "*" in value or ">" in value or ".." in value or value.startswith(".") \
            or value.endswith("."):
        raise ConfigError(key, value, "expected a literal NATS subject like 'a.b.c'")
    return value


def _subject_or_empty(value: str, key: str) -> str:
    return _subject(value, key) if value else value


_EVENT_NAME = re.compile(r"[A-Z][A-Z0-9_]*|CUSTOM \S+")


def _event_name(value: str, key: str) -> str:
    if not _EVENT_NAME.fullmatch(value):
        raise ConfigError(key, value, "expected a FreeSWITCH event name like 'CHANNEL_ANSWER' "
                          "or 'CUSTOM sofia::register'")
    return value


def _url(schemes: Sequence[str], *, several: bool = False) -> Check:
    """A check of a URL secret: scheme, host and port (each of a comma-separated list if
    ``several``). The error shows the URL with its password masked."""

    def check(secret: Secret, key: str) -> Secret:
        text = secret.reveal()
        for part in text.split(",") if several else [text]:
            part = part.strip()
            try:
                split = urlsplit(part)
                port = split.port
            except ValueError:
                raise ConfigError(key, mask_url(text), "not a valid URL") from None
            if split.scheme not in schemes:
                raise ConfigError(key, mask_url(text),
                                  "the scheme must be one of " + ", ".join(schemes))
            if split.scheme == "unix":
                if not split.path:
                    raise ConfigError(key, mask_url(text), "expected unix:///path/to/socket")
            elif not split.hostname:
                raise ConfigError(key, mask_url(text), "the URL has no host")
            if port is not None and not 1 <= port <= 65535:
                raise ConfigError(key, mask_url(text), "expected a port number 1..65535")
        return secret

    return check


def _postgres_dsn(secret: Secret, key: str) -> Secret:
    text = secret.reveal()
    if not text.strip():
        raise ConfigError(key, "", "expected a PostgreSQL DSN")
    if "://" in text and urlsplit(text).scheme not in ("postgresql", "postgres"):
        raise ConfigError(key, mask_url(text), "the scheme must be postgresql or postgres")
    try:
        params = psycopg2.extensions.parse_dsn(text)
    except psycopg2.ProgrammingError:
        # libpq's message may quote part of the DSN, the password included: not repeated here.
        raise ConfigError(key, mask_url(text), "not a valid PostgreSQL DSN (a URL "
                          "postgresql://user@host:port/db or key=value pairs)") from None
    for port in params.get("port", "").split(","):
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigError(key, mask_url(text), "expected a port number 1..65535")
    return secret


def _password_hash(secret: Secret, key: str) -> Secret:
    if not is_password_hash(secret.reveal()):
        raise ConfigError(key, MASK, "expected pbkdf2_sha256$<iterations>$<salt>$<hash>, "
                          "the output of `python -m fsapps.server.passwords`")
    return secret


def _api_token(secret: Secret, key: str) -> Secret:
    if len(secret.reveal()) < MIN_API_TOKEN_LENGTH:
        raise ConfigError(key, MASK, f"an API token needs at least {MIN_API_TOKEN_LENGTH} "
                          "characters to be unguessable")
    return secret


_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?")


def _cors_origin(value: str, key: str) -> str:
    # Credentials (the session cookie, the sessionId header) are allowed for every listed
    # origin, so "*" (any page on any host) is never one; an origin is scheme://host[:port]
    # exactly as a browser sends it in its Origin header, without a path or trailing slash.
    if value.strip() == "*":
        raise ConfigError(key, value, "'*' can not be allowed together with credentials; "
                          "list each origin (scheme://host:port) of the pages that use the CTI "
                          "server")
    if not _ORIGIN.fullmatch(value):
        raise ConfigError(key, value, "expected an origin like 'https://crm.example.com' or "
                          "'http://10.0.0.5:8080' (scheme://host[:port], no path)")
    return value


def _cause(value: str, key: str) -> str:
    if not re.fullmatch(r"[A-Z][A-Z0-9_]*", value):
        raise ConfigError(key, value, "expected a FreeSWITCH hangup cause name like "
                          "'NORMAL_TEMPORARY_FAILURE'")
    return value


_WS_URL = re.compile(r"wss?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/\-]*)?|"
                     r"wss?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?(/[A-Za-z0-9._~/\-]*)?")
_ICE_URL = re.compile(r"(stun|stuns|turn|turns):[A-Za-z0-9.\-\[\]:]+(\?transport=(udp|tcp))?")


def _ws_url(value: str, key: str) -> str:
    # it goes into the pages' Content-Security-Policy (connect-src) as it is
    if not _WS_URL.fullmatch(value):
        raise ConfigError(key, value, "expected a WebSocket URL like 'wss://pbx.example.com:7443' "
                          "(sofia's wss-binding) or 'ws://127.0.0.1:5066'")
    return value


def _ice_url(value: str, key: str) -> str:
    if not _ICE_URL.fullmatch(value):
        raise ConfigError(key, value, "expected a STUN/TURN URL like "
                          "'stun:stun.example.com:3478' or 'turn:turn.example.com?transport=udp'")
    return value


# ---- the sections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisSettings:
    # A plain URL (redis://[:password@]host:port/db, rediss://...) used when no sentinels are set.
    url: Secret = setting(Secret("redis://127.0.0.1:6379/0"),
                          check=_url(("redis", "rediss", "unix")), shown_as_url=True)
    # Sentinel mode: (host, port) pairs and the monitored master's service name.
    sentinels: tuple[HostPort, ...] = ()
    sentinel_service: str = setting("mymaster", check=_word)
    sentinel_password: Secret = Secret("")
    # Every key fsapps owns (not the seed-defined names) starts with this prefix.
    key_prefix: str = setting("fsapps", check=_key_part)
    socket_timeout: float = setting(2.0, check=_positive)
    # Redis Cluster: when true, connect with RedisCluster to the url's node.
    cluster: bool = False
    # Connections one process may hold to one Redis server. Every call handler thread of the
    # switch may use one at once; redis-py's own default (100 since 8.0) is too low for a busy
    # node, and past the cap a command fails instead of waiting.
    max_connections: int = setting(2000, check=_positive)

    def _check_across(self) -> None:
        if self.cluster and self.sentinels:
            raise ConfigError("redis.cluster", True, "Redis Cluster and Sentinel exclude each "
                              "other; leave sentinels empty or cluster false")


@dataclass(frozen=True)
class PostgresSettings:
    dsn: Secret = setting(Secret("postgresql://postgres@127.0.0.1:5432/fsapps"),
                          check=_postgres_dsn, shown_as_url=True)
    connect_timeout: int = setting(5, check=_positive)


@dataclass(frozen=True)
class NatsSettings:
    enabled: bool = False
    url: Secret = setting(Secret("nats://127.0.0.1:4222"),
                          check=_url(("nats", "tls", "ws", "wss"), several=True),
                          shown_as_url=True)
    subject_prefix: str = setting("cn.xswitch.ctrl.event", check=_subject)
    # When set, Event.CDR goes here (seed 000 `cdr-subject`), else on the channel subject.
    cdr_subject: str = setting("", check=_subject_or_empty)
    # Fields of Event.CDR (seed 000's default list when empty).
    cdr_fields: tuple[str, ...] = setting((), check=_key_part)
    events: tuple[str, ...] = setting((), check=_event_name)


@dataclass(frozen=True)
class AmqpSettings:
    enabled: bool = False
    url: Secret = setting(Secret("amqp://guest:guest@127.0.0.1:5672/%2F"),
                          check=_url(("amqp", "amqps")), shown_as_url=True)
    exchange: str = "fsapps"


@dataclass(frozen=True)
class CtiSettings:
    listen: str = setting("0.0.0.0", check=_word)
    port: int = setting(8085, check=_port)
    token_ttl_seconds: int = setting(8 * 3600, check=_positive)
    # Failed logins allowed per user name, and per client address, within the window; past
    # that, /api/login answers 429 until the window ends.
    login_max_failures: int = setting(5, check=_positive)
    login_max_failures_per_address: int = setting(20, check=_positive)
    login_window_seconds: int = setting(300, check=_positive)
    # Switch api commands GET /cli may run (admin only); for bgapi, the command it runs must be
    # listed too. Empty: /cli is off.
    cli_commands: tuple[str, ...] = setting(
        ("status", "show", "uuid_kill", "uuid_hold", "originate", "bgapi"), check=_word)
    # How long a supervisor's phone rings for listen / whisper / barge (seconds).
    supervise_ring_seconds: int = setting(30, check=_positive)
    # How long a request waits for the switch node holding the call to answer (seconds).
    node_reply_timeout_seconds: float = setting(5.0, check=_positive)
    # Threads running the blocking Redis/PostgreSQL/node calls of the requests.
    workers: int = setting(16, check=_positive)
    # Processes serving cti.port together (SO_REUSEPORT: the kernel spreads connections over
    # them); 0 = one per CPU core. State is in Redis; a SockJS session lives in one process.
    processes: int = setting(0, check=_not_negative)
    # Origins (scheme://host[:port]) of pages on other hosts allowed to use the CTI server
    # from a browser (CORS with credentials; the session cookie is taken from them). None by
    # default: only pages served by the CTI server itself.
    cors_origins: tuple[str, ...] = setting((), check=_cors_origin)
    # An agent logged in through wellClient whose page was not heard from for this long (no
    # heart-beat - the SDK sends one a minute - and no event session open) is logged off: the
    # SDK does not log off when its page is closed. 0: never.
    agent_presence_timeout_seconds: float = setting(150.0, check=_not_negative)
    # A bearer token for Prometheus scrapers of /metrics (Authorization: Bearer <token>), so
    # they need no user login. Empty: /metrics takes only a user's or an api_tokens token.
    metrics_token: Secret = Secret("")


@dataclass(frozen=True)
class CtiBridgeSettings:
    """``python fsapps.cti_bridge <url> ...``: what happens when the router's answer is
    unusable (timeout, HTTP error, not JSON, bad or unsafe fields) or the bridge fails."""

    # "hangup": hang up with failure_cause; "continue": return to the next dialplan action.
    on_failure: str = setting("hangup", check=_one_of(CTI_BRIDGE_ON_FAILURE))
    failure_cause: str = setting("NORMAL_TEMPORARY_FAILURE", check=_cause)
    # Let the router answer with a raw dial string ({vars}, "," and "|" included).
    allow_dialstring: bool = False
    # Threads sending the progress notifications (one pool per switch process).
    notify_workers: int = setting(4, check=_positive)


@dataclass(frozen=True)
class UserSettings:
    username: str = field(metadata=checked(_word))
    # A password hash (``pbkdf2_sha256$...``); plain passwords are refused by the loader.
    password_hash: Secret = field(metadata=checked(_password_hash))
    role: str = setting("agent", check=_one_of(ROLES))  # agent | supervisor | admin
    extension: str = setting("", check=_word_or_empty)
    # The domains a supervisor oversees (its wellClient event stream: agents' topics and the
    # wallboard's); empty: every domain. Each must be one of ``domains``.
    domains: tuple[str, ...] = setting((), check=_word)

    # Keys the file may not hold, and why; their value (a plain password) is never echoed.
    refused: ClassVar[Mapping[str, str]] = {
        "password": "plain passwords are refused; store password_hash, the output of "
                    "`python -m fsapps.server.passwords`"}


@dataclass(frozen=True)
class GroupDefaults:
    call_mode: int = setting(5, check=_one_of(CALL_MODES))
    callout_timeout: int = setting(15, check=_positive)
    wrapup_seconds: int = setting(300, check=_not_negative)
    max_no_answer: int = setting(3, check=_not_negative)
    memory_ttl_seconds: int = setting(30 * 24 * 3600, check=_positive)
    hold_music: str = setting("local_stream://moh", check=_word)
    # Long-wait policy: play the busy ring this many times then hang up; 0 = never hang up.
    busy_ring_repeats: int = setting(0, check=_not_negative)
    # How long a caller hears hold music between two busy rings (seconds).
    busy_ring_interval_seconds: int = setting(30, check=_hold_music_seconds)
    # An agent's reservation for a call lasts the ring timeout plus this margin (seconds); a
    # node that dies mid-offer frees its agents when it runs out.
    lease_margin_seconds: int = setting(10, check=_positive)


@dataclass(frozen=True)
class EventSettings:
    # Shape of the seed-001 pub/sub messages: "comma" (redis form) or "json" (the MQ form).
    pubsub_format: str = setting("json", check=_one_of(PUBSUB_FORMATS))
    cti_ip: str = setting("", check=_word_or_empty)
    # The CSTA feed of the wellClient event stream (fsapps.events.cstafeed), the runtime's
    # costliest work per event: "on", "off" (no CTI server uses wellClient), or "auto": on
    # while a CTI server listens (checked with every node heartbeat).
    csta_feed: str = setting("on", check=_one_of(CSTA_FEED_MODES))


# Channel fields the seed's gui.call block lists (its sample names Created-Time twice).
SEED_CALL_FIELDS = ("Caller-Destination-Number", "Caller-Caller-ID-Number",
                    "Caller-Callee-ID-Number", "Caller-Profile-Created-Time",
                    "Caller-Channel-Answered-Time", "Caller-Channel-Hangup-Time",
                    "Caller-Channel-Progress-Time", "Caller-Channel-Progress-Media-Time",
                    "Answer-State", "variable_signal_bond")


@dataclass(frozen=True)
class DirectorySettings:
    """Seed 003: the Redis directory (cti_exten@<domain>) and the live-state writes of its
    ``gui`` block. An empty hash/channel/list name turns that write off."""

    # cacheable attribute (ms, or "true") for records that set none; "" = not cached.
    cacheable: str = setting("", check=_cacheable)
    # cti_userinfo@<domain>: per extension, its register block and current calls.
    userinfo: bool = True
    registration_hash: str = setting("registrations", check=_word_or_empty)
    registration_channel: str = setting("", check=_word_or_empty)
    registration_list: str = setting("", check=_word_or_empty)
    call_hash: str = setting("calls", check=_word_or_empty)
    call_channel: str = setting("", check=_word_or_empty)
    call_list: str = setting("", check=_word_or_empty)
    call_fields: tuple[str, ...] = setting(SEED_CALL_FIELDS, check=_word)
    # true: a hung-up call's record leaves the calls hash; false: the last one stays.
    call_remove_hangup: bool = False


WEBRTC_SECOND_LOGIN = ("takeover", "refuse")
PYTHON_PRIORITIES = ("ahead", "same")  # (fsapps.switch.priority's AHEAD and SAME)


@dataclass(frozen=True)
class WebrtcSettings:
    """The agent console as the agent's phone (docs/webrtc.md): the browser registers over
    SIP-over-WebSocket with a short-lived password its CTI login gets. Off while ws_urls is
    empty."""

    # Where browsers register: sofia's wss-binding (ws-binding behind a TLS proxy, or tests).
    ws_urls: tuple[str, ...] = setting((), check=_ws_url)
    # STUN/TURN servers the browser gathers candidates with (none on a LAN).
    ice_servers: tuple[str, ...] = setting((), check=_ice_url)
    # Lifetime of a browser's SIP password; the page renews it at a third of this.
    credential_ttl_seconds: int = setting(120, check=_positive)
    # A second console (tab) of an extension whose browser phone is live: "takeover" (the
    # first one is told and unregisters at its next renewal) or "refuse".
    second_login: str = setting("takeover", check=_one_of(WEBRTC_SECOND_LOGIN))
    # The bundled JsSIP (npm run build: build/web/jssip.min.js); "" = the checkout's.
    jssip_path: str = ""


@dataclass(frozen=True)
class Settings:
    redis: RedisSettings = field(default_factory=RedisSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    nats: NatsSettings = field(default_factory=NatsSettings)
    amqp: AmqpSettings = field(default_factory=AmqpSettings)
    cti: CtiSettings = field(default_factory=CtiSettings)
    cti_bridge: CtiBridgeSettings = field(default_factory=CtiBridgeSettings)
    users: tuple[UserSettings, ...] = ()
    api_tokens: tuple[Secret, ...] = setting((), check=_api_token)
    domains: tuple[str, ...] = setting(("default",), check=_key_part)
    default_domain: str = setting("default", check=_key_part)
    group_defaults: GroupDefaults = field(default_factory=GroupDefaults)
    events: EventSettings = field(default_factory=EventSettings)
    directory: DirectorySettings = field(default_factory=DirectorySettings)
    webrtc: WebrtcSettings = field(default_factory=WebrtcSettings)
    node_name: str = setting("", check=_key_part_or_empty)
    # The sofia profile other nodes relay agent calls to on this node, and this node's calls
    # to agents registered elsewhere leave from (README "Several nodes").
    relay_profile: str = setting("external", check=_sofia_profile)
    # fsapps' threads run Python inside the switch "ahead" of its media (one step above the
    # switch's scheduling) or at the "same" priority: one GIL serves them all, and a holder
    # queued behind media threads stalls every one (fsapps.switch.priority). Needs
    # CAP_SYS_NICE; refused, that is logged once and Python runs at the switch's priority.
    python_priority: str = setting("ahead", check=_one_of(PYTHON_PRIORITIES))
    # Settings earlier versions took and nothing reads any more: accepted with a warning (once
    # per process) so an upgrade does not stop the switch's entry points over a stale line.
    retired: ClassVar[Mapping[str, str]] = {
        "log_level": "no longer used (inside the switch fsapps logs at FreeSWITCH's own "
                     "console levels; the fsapps command sets its own); delete the line",
    }

    def _check_across(self) -> None:
        seen: set[str] = set()
        for index, domain in enumerate(self.domains):
            if domain in seen:
                raise ConfigError(f"domains[{index}]", domain, "listed twice")
            seen.add(domain)
        if self.default_domain not in self.domains:
            raise ConfigError("default_domain", self.default_domain,
                              f"must be one of domains {list(self.domains)!r}")
        names: set[str] = set()
        for index, user in enumerate(self.users):
            if user.username in names:
                raise ConfigError(f"users[{index}].username", user.username, "listed twice")
            names.add(user.username)
            for at, domain in enumerate(user.domains):
                if domain not in self.domains:
                    raise ConfigError(f"users[{index}].domains[{at}]", domain,
                                      f"must be one of domains {list(self.domains)!r}")


# ---------------------------------------------------------------------------------------------
# Loading: file → raw mapping → FSAPPS_* overrides → typed, validated Settings.
# ---------------------------------------------------------------------------------------------

SYSTEM_PATH = Path("/etc/fsapps/fsapps.yaml")
# The commented sample shipped with the source tree; found from a checkout or editable install.
BUNDLED_PATH = Path(__file__).resolve().parent.parent / "conf" / "fsapps.yaml"
PATH_VARIABLE = "FSAPPS_CONFIG"
ENV_PREFIX = "FSAPPS_"

# Names that probably hold a secret: the value of an unknown key like these is never echoed.
_SECRET_LOOKING = re.compile(r"pass|secret|token|dsn|url|hash|auth", re.IGNORECASE)


def config_path(
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    system_path: Path = SYSTEM_PATH,
    bundled_path: Path = BUNDLED_PATH,
) -> Path | None:
    """The settings file to read, or None when only the built-in defaults apply.

    Order: ``path``, ``$FSAPPS_CONFIG``, ``system_path`` if it exists, ``bundled_path`` if it
    exists. A file named explicitly (argument or variable) must exist: ConfigError otherwise,
    rather than silently running on defaults.
    """
    env = os.environ if environ is None else environ
    named_by: tuple[tuple[str, str | None], ...] = (
        ("--config", path), (PATH_VARIABLE, env.get(PATH_VARIABLE)))
    for origin, named in named_by:
        if named:
            if not Path(named).is_file():
                raise ConfigError(origin, named, "no such file")
            return Path(named)
    for candidate in (system_path, bundled_path):
        if candidate.is_file():
            return candidate
    return None


def load_settings(
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    system_path: Path = SYSTEM_PATH,
    bundled_path: Path = BUNDLED_PATH,
) -> Settings:
    """Read, override and validate the settings; raise the first problem as one ConfigError.

    The file is found by :func:`config_path`; ``FSAPPS_<SECTION>_<FIELD>`` variables in
    ``environ`` (default ``os.environ``) then replace single values. Nothing is connected to.
    """
    env = os.environ if environ is None else environ
    warn_environment(env)
    source = config_path(path, env, system_path=system_path, bundled_path=bundled_path)
    settings, _ = _load(source, env)
    return settings


def _load(source: Path | None, environ: Mapping[str, str]) -> tuple[Settings, dict[str, str]]:
    """The settings from ``source`` and the environment, and which variable set which key."""
    raw = _read_yaml(source) if source is not None else {}
    overrides = _environment_overrides(environ)
    origins: dict[str, str] = {}
    for (section, name), (variable, value) in overrides.items():
        if name is None:
            raw[section] = value
            origins[section] = variable
            continue
        if raw.get(section) is None:
            raw[section] = {}
        # A section that is not a mapping is reported by _build; the override cannot land in it.
        if isinstance(raw[section], dict):
            raw[section][name] = value
            origins[f"{section}.{name}"] = variable
    try:
        settings = _build(Settings, raw, "")
        _check_sections(settings)
    except ConfigError as exc:
        origin = _origin_of(exc.key, origins)
        if origin is None:
            raise
        raise ConfigError(exc.key, exc.value, f"{exc.reason} (from ${origin})") from None
    return settings, origins


def _origin_of(key: str, origins: Mapping[str, str]) -> str | None:
    for dotted, variable in origins.items():
        if key == dotted or key.startswith((dotted + "[", dotted + ".")):
            return variable
    return None


# ---- the file ----------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (the last would win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(source: Path) -> dict[str, Any]:
    file = str(source)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(file, file, f"cannot read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(file, where, f"YAML syntax error: {problem}") from None
    if data is None:  # an empty or all-comment file means: defaults
        return {}
    if not isinstance(data, dict):
        raise ConfigError(file, type(data).__name__, "the top level must be a mapping of settings")
    return data


# ---- the environment ---------------------------------------------------------------------------


def _environment_names() -> dict[str, tuple[str, str | None]]:
    """FSAPPS_<SECTION>_<FIELD> → (section, field); FSAPPS_<FIELD> → (field, None)."""
    names: dict[str, tuple[str, str | None]] = {}
    for top in fields(Settings):
        hint = _hints(Settings)[top.name]
        if is_dataclass(hint):
            for sub in fields(hint):
                names[f"{ENV_PREFIX}{top.name}_{sub.name}".upper()] = (top.name, sub.name)
        elif not _is_list_of_sections(hint):  # a list of mappings has no one-variable form
            names[f"{ENV_PREFIX}{top.name}".upper()] = (top.name, None)
    return names


def _is_list_of_sections(hint: Any) -> bool:
    return get_origin(hint) is tuple and is_dataclass(get_args(hint)[0])


def environment_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per ``FSAPPS_*`` variable of ``environ`` (default ``os.environ``) that sets
    nothing: a name that is no setting (with the closest one), or ``FSAPPS_USERS``. Those
    variables are ignored; their values are never shown."""
    env = os.environ if environ is None else environ
    names = _environment_names()
    lists = {f"{ENV_PREFIX}{item.name}".upper(): item.name for item in fields(Settings)
             if _is_list_of_sections(_hints(Settings)[item.name])}
    known = [*names, PATH_VARIABLE]
    warnings = []
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX) or variable in names \
                or variable == PATH_VARIABLE:
            continue
        if variable in lists:
            warnings.append(f"config: ${variable} is ignored: {lists[variable]} cannot be set "
                            "from the environment; list them in the settings file")
            continue
        closest = difflib.get_close_matches(variable, known, n=1, cutoff=0.0)
        hint = f"; the closest setting is ${closest[0]}" if closest else ""
        if closest and closest[0] in names:
            section, name = names[closest[0]]
            hint += f" ({section if name is None else f'{section}.{name}'})"
        warnings.append(f"config: ${variable} names no setting and is ignored{hint}")
    return warnings


# Variables already warned about by this process (load_settings runs on every entry point).
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(line: str) -> None:
    with _warned_lock:
        if line in _warned:
            return
        _warned.add(line)
    fslog.log("WARNING", line)


def warn_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """Log (WARNING) each of :func:`environment_warnings` this process has not logged yet;
    return the lines logged now."""
    fresh = []
    for line in environment_warnings(environ):
        variable = line.split("$", 1)[1].split(" ", 1)[0]
        with _warned_lock:
            if variable in _warned:
                continue
            _warned.add(variable)
        fresh.append(line)
    for line in fresh:
        fslog.log("WARNING", line)
    return fresh


def _environment_overrides(
    environ: Mapping[str, str],
) -> dict[tuple[str, str | None], tuple[str, Any]]:
    """The values of the ``FSAPPS_*`` variables that name a setting; any other ``FSAPPS_*``
    variable is left out here (see :func:`environment_warnings`)."""
    names = _environment_names()
    overrides: dict[tuple[str, str | None], tuple[str, Any]] = {}
    for variable in sorted(environ):
        if variable not in names:
            continue
        text = environ[variable]
        section, name = names[variable]
        owner: Any = Settings if name is None else _hints(Settings)[section]
        hint = _hints(owner)[name or section]
        dotted = section if name is None else f"{section}.{name}"
        overrides[(section, name)] = (variable, _from_text(hint, text, dotted, variable))
    return overrides


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _from_text(hint: Any, text: str, key: str, variable: str) -> Any:
    """An environment string as the value YAML would have given; _build checks it further."""
    if get_origin(hint) is tuple:
        # Comma-separated: "a,b", and for sentinels "host:port,host:port".
        return [part.strip() for part in text.split(",") if part.strip()]
    word = text.strip()
    if hint is bool:
        if word.lower() in _TRUE:
            return True
        if word.lower() in _FALSE:
            return False
        raise ConfigError(key, text, f"expected true/false/1/0/yes/no (from ${variable})")
    if hint is int:
        try:
            return int(word)
        except ValueError:
            raise ConfigError(key, text, f"expected an integer (from ${variable})") from None
    if hint is float:
        try:
            return float(word)
        except ValueError:
            raise ConfigError(key, text, f"expected a number (from ${variable})") from None
    return text


# ---- the binder: raw mapping → typed, checked dataclasses -------------------------------------


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return get_type_hints(cls)


def _suggestion(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return "; known: " + ", ".join(sorted(known))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _build(cls: Any, raw: Any, path: str) -> Any:
    """An instance of the dataclass ``cls`` from the mapping ``raw``; ``path`` is its dotted key."""
    if not isinstance(raw, dict):
        raise ConfigError(path, raw, "expected a mapping of settings")
    hints = _hints(cls)
    known = [item.name for item in fields(cls)]
    for name, reason in getattr(cls, "refused", {}).items():
        if name in raw:
            raise ConfigError(_join(path, name), MASK, reason)
    retired = getattr(cls, "retired", {})
    for name in raw:
        if name in retired:
            _warn_once(f"config: {_join(path, str(name))} is ignored: {retired[name]}")
        elif name not in known:
            key = _join(path, str(name))
            close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
            secret = _SECRET_LOOKING.search(str(name)) or (close and _is_secret(hints[close[0]]))
            raise ConfigError(key, MASK if secret else raw[name],
                              "unknown setting" + _suggestion(str(name), known))
    values: dict[str, Any] = {}
    for item in fields(cls):
        key = _join(path, item.name)
        value = raw.get(item.name)
        if value is None:  # absent, or written with no value: the default applies
            if item.default is MISSING and item.default_factory is MISSING:
                raise ConfigError(key, None, "required")
            continue
        values[item.name] = _convert(hints[item.name], value, key, item.metadata.get(_CHECK))
    return cls(**values)


def _is_secret(hint: Any) -> bool:
    return hint is Secret or (get_origin(hint) is tuple and Secret in get_args(hint))


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               Secret: "a string"}


def _convert(hint: Any, value: Any, key: str, check: Check | None) -> Any:
    """``value`` as the type ``hint``, passed through ``check`` (each item's, for a list)."""
    if is_dataclass(hint):
        return _build(hint, value, key)
    if hint == HostPort:
        return _host_port(value, key)
    if get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, MASK if _is_secret(hint) else value, "expected a list")
        item_hint = get_args(hint)[0]
        return tuple(_convert(item_hint, item, f"{key}[{index}]", check)
                     for index, item in enumerate(value))
    # bool is an int to Python; a YAML `true` where a number belongs is still a mistake.
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is Secret:
        ok = isinstance(value, str)
    if not ok:
        hint_text = " (quote it)" if hint in (str, Secret) and isinstance(value, int) else ""
        shown = MASK if hint is Secret else value
        raise ConfigError(key, shown, f"expected {_TYPE_NAMES[hint]}{hint_text}")
    typed = Secret(value) if hint is Secret else float(value) if hint is float else value
    return check(typed, key) if check else typed


def _host_port(value: Any, key: str) -> HostPort:
    """A sentinel address from "host:port", "[v6]:port" or a [host, port] list."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        host, port = value
    elif isinstance(value, str) and ":" in value:
        host, _, port_text = value.rpartition(":")
        port = int(port_text) if port_text.isdigit() else port_text
    else:
        raise ConfigError(key, value, "expected 'host:port'")
    host = host.strip("[]") if isinstance(host, str) else host
    if not isinstance(host, str) or not host or any(c.isspace() for c in host):
        raise ConfigError(key, value, "expected 'host:port' with a host name or address")
    return host, _port(port, key)


def _check_sections(section: Any) -> None:
    """Each section's ``_check_across`` once every value passed its own check: inner sections
    first, in field order, then the section itself."""
    for item in fields(section):
        value = getattr(section, item.name)
        for inner in value if isinstance(value, tuple) else (value,):
            if is_dataclass(inner):
                _check_sections(inner)
    rules = getattr(section, "_check_across", None)
    if rules is not None:
        rules()


# ---------------------------------------------------------------------------------------------
# Showing settings without their secrets.
# ---------------------------------------------------------------------------------------------

# password=... in a key=value DSN or a URL query string, quoted or not.
_KV_PASSWORD = re.compile(r"(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&#]*)",
                          re.IGNORECASE)
_MASKED_PASSWORD = r"\g<1>" + URL_PASSWORD_MASK
# Schemes where "scheme://word@host" makes the word a credential (a NATS token, a Redis
# password written without its colon), not a user name to show.
_LONE_USERINFO_IS_SECRET = ("nats", "tls", "ws", "wss", "redis", "rediss", "unix")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``*****``: ``redis://:*****@host:6379/0``.

    Handles URLs (user info and ``password=`` query parameters), comma-separated URL lists and
    libpq ``key=value`` DSNs. Anything it cannot take apart safely is masked whole.
    """
    if "," in url and "://" in url:
        return ",".join(mask_url(part) for part in url.split(","))
    if "://" not in url:
        return _KV_PASSWORD.sub(_MASKED_PASSWORD, url) if "=" in url else MASK
    scheme, rest = url.split("://", 1)
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:authority_end], rest[authority_end:]
    if "@" in tail and "@" not in authority:
        return MASK  # an '@' past the host: a password with an unescaped '/', '?' or '#'
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + URL_PASSWORD_MASK
        elif scheme.lower() in _LONE_USERINFO_IS_SECRET:
            userinfo = URL_PASSWORD_MASK
        authority = f"{userinfo}@{host}"
    return f"{scheme}://{authority}{_KV_PASSWORD.sub(_MASKED_PASSWORD, tail)}"


def masked_dict(settings: Settings) -> dict[str, Any]:
    """The settings as plain YAML-ready data (the file's layout), every secret masked.

    URL and DSN secrets keep their shape with the password shown as ``*****``; other secrets
    become ``**********`` (an empty secret stays ``""``: there is nothing to hide).
    """
    data = _plain(settings, type(settings))
    assert isinstance(data, dict)
    return data


def _plain(value: Any, hint: Any, shown_as_url: bool = False) -> Any:
    if isinstance(value, Secret):
        if not value:
            return ""
        return mask_url(value.reveal()) if shown_as_url else MASK
    if is_dataclass(value) and not isinstance(value, type):
        hints = _hints(type(value))
        return {item.name: _plain(getattr(value, item.name), hints[item.name],
                                  item.metadata.get(_SHOWN_AS_URL, False))
                for item in fields(value)}
    if hint == HostPort:
        host, port = value
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(value, tuple):
        item_hint = get_args(hint)[0] if get_origin(hint) is tuple else None
        return [_plain(item, item_hint, shown_as_url) for item in value]
    return value


# ---------------------------------------------------------------------------------------------
# `fsapps config check`
# ---------------------------------------------------------------------------------------------


def check_command(
    path: str | None,
    *,
    environ: Mapping[str, str] | None = None,
    system_path: Path = SYSTEM_PATH,
    bundled_path: Path = BUNDLED_PATH,
) -> int:
    """Print the effective settings as YAML, secrets masked, and where they came from: 0.

    On an invalid configuration print the one ConfigError line to stderr instead: 1. Either
    way, each ignored ``FSAPPS_*`` variable is named first on stderr (``fsapps: warning:``).
    """
    env = os.environ if environ is None else environ
    for line in environment_warnings(env):
        print(f"fsapps: warning: {line}", file=sys.stderr)
    try:
        source = config_path(path, env, system_path=system_path, bundled_path=bundled_path)
        settings, origins = _load(source, env)
    except ConfigError as exc:
        print(f"fsapps: {exc}", file=sys.stderr)
        return 1
    print(f"# settings file: {source if source is not None else '(none: built-in defaults)'}")
    for dotted, variable in sorted(origins.items()):
        print(f"# {dotted} from ${variable}")
    print(yaml.safe_dump(masked_dict(settings), sort_keys=False, allow_unicode=True), end="")
    return 0
