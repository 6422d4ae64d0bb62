"""HTTP-routed bridging (``python fsapps.cti_bridge <url> ...``): ask a router where the call
goes, dial as told, tell the router how the call progresses.

Pure parts (no I/O): :func:`parse_args`, :func:`parse_answer` (a router's answer → a
:class:`Route` or :class:`BadAnswer` naming what was wrong), the cause tables. I/O parts: one
``requests.Session`` per process (a keep-alive pool reused by every call: this module is
imported, not reloaded, by the entry module) and a few notifier threads (``notify_workers``,
each call's notifications always on the same one, so they reach its router in order), both
created on first use, never at import and never per call.

Progress notifications: the handler is blocked in ``bridge`` while the far end rings, so the
B legs carry ``fsapps_cti_notify_url`` / ``fsapps_cti_uuid`` and the node runtime passes their
CHANNEL_PROGRESS (180 → ``ring``), CHANNEL_PROGRESS_MEDIA (183 → ``progress``) and
CHANNEL_ANSWER (``answer``) events to :func:`leg_event`. The handler sends ``hangup`` itself
after ``bridge`` returns. Every notification is fire-and-forget: a slow or dead router never
delays the call; a full queue drops the notification and logs it.
"""

from __future__ import annotations

import json
import re
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from fsapps.channelvars import (
    CTI_CONNECT_MS_VAR,
    CTI_NOTIFY_URL_VAR,
    CTI_REQUEST_VARS_VAR,
    CTI_RESPONSE_MS_VAR,
    CTI_UUID_VAR,
    event_header,
)
from fsapps.config import CtiBridgeSettings
from fsapps.domain import numbers
from fsapps.errors import BadInput
from fsapps.fslog import log
from fsapps.switch.session import ensure_up, hang_up
from fsapps.threads import name_os_thread

DEFAULT_CONNECT_TIMEOUT_MS = 3000
DEFAULT_RESPONSE_TIMEOUT_MS = 3000
DEFAULT_NOTIFY_TYPE = 1
# Notifications waiting for a worker beyond this are dropped (and logged).
NOTIFY_QUEUE_LIMIT = 1000
# HTTP connections kept open per router host (calls and notifier threads share them).
POOL_MAXSIZE = 32
# How long the handler waits, after a successful bridge, for the runtime to have sent the
# answer notification, so the router never sees hangup before answer.
ANSWER_SEEN_WAIT_S = 0.5
DEFAULT_SOFIA_PROFILE = "external"

# Channel variables sent with every request (in "variables"); the dialplan may name more in
# fsapps_cti_request_vars (comma-separated).
REQUEST_VARIABLES = ("sip_from_user", "sip_from_host", "sip_to_user", "sip_req_user",
                     "sip_call_id", "network_addr", "sip_network_ip", "sip_user_agent")

# The seed's switch_call_cause_t table: Q.850 number → FreeSWITCH cause name.
CAUSES: dict[int, str] = {
    0: "NONE", 1: "UNALLOCATED_NUMBER", 2: "NO_ROUTE_TRANSIT_NET", 3: "NO_ROUTE_DESTINATION",
    6: "CHANNEL_UNACCEPTABLE", 7: "CALL_AWARDED_DELIVERED", 16: "NORMAL_CLEARING",
    17: "USER_BUSY", 18: "NO_USER_RESPONSE", 19: "NO_ANSWER", 20: "SUBSCRIBER_ABSENT",
    21: "CALL_REJECTED", 22: "NUMBER_CHANGED", 23: "REDIRECTION_TO_NEW_DESTINATION",
    25: "EXCHANGE_ROUTING_ERROR", 27: "DESTINATION_OUT_OF_ORDER", 28: "INVALID_NUMBER_FORMAT",
    29: "FACILITY_REJECTED", 30: "RESPONSE_TO_STATUS_ENQUIRY", 31: "NORMAL_UNSPECIFIED",
    34: "NORMAL_CIRCUIT_CONGESTION", 38: "NETWORK_OUT_OF_ORDER", 41: "NORMAL_TEMPORARY_FAILURE",
    42: "SWITCH_CONGESTION", 43: "ACCESS_INFO_DISCARDED", 44: "REQUESTED_CHAN_UNAVAIL",
    45: "PRE_EMPTED", 50: "FACILITY_NOT_SUBSCRIBED", 52: "OUTGOING_CALL_BARRED",
    54: "INCOMING_CALL_BARRED", 57: "BEARERCAPABILITY_NOTAUTH", 58: "BEARERCAPABILITY_NOTAVAIL",
    63: "SERVICE_UNAVAILABLE", 65: "BEARERCAPABILITY_NOTIMPL", 66: "CHAN_NOT_IMPLEMENTED",
    69: "FACILITY_NOT_IMPLEMENTED", 79: "SERVICE_NOT_IMPLEMENTED", 81: "INVALID_CALL_REFERENCE",
    88: "INCOMPATIBLE_DESTINATION", 95: "INVALID_MSG_UNSPECIFIED", 96: "MANDATORY_IE_MISSING",
    97: "MESSAGE_TYPE_NONEXIST", 98: "WRONG_MESSAGE", 99: "IE_NONEXIST",
    100: "INVALID_IE_CONTENTS", 101: "WRONG_CALL_STATE", 102: "RECOVERY_ON_TIMER_EXPIRE",
    103: "MANDATORY_IE_LENGTH_ERROR", 111: "PROTOCOL_ERROR", 127: "INTERWORKING",
    142: "SUCCESS", 487: "ORIGINATOR_CANCEL", 500: "CRASH", 501: "SYSTEM_SHUTDOWN",
    502: "LOSE_RACE", 503: "MANAGER_REQUEST", 600: "BLIND_TRANSFER", 601: "ATTENDED_TRANSFER",
    602: "ALLOTTED_TIMEOUT", 603: "USER_CHALLENGE", 604: "MEDIA_TIMEOUT", 605: "PICKED_OFF",
    606: "USER_NOT_REGISTERED", 607: "PROGRESS_TIMEOUT", 608: "INVALID_GATEWAY",
    609: "GATEWAY_DOWN", 610: "INVALID_URL", 611: "INVALID_PROFILE", 612: "NO_PICKUP",
    613: "SRTP_READ_ERROR",
}
CAUSE_NAMES = frozenset(CAUSES.values())

# SIP response → cause, as mod_sofia maps a remote refusal (sofia_glue_sip_cause_to_freeswitch);
# any other 4xx-6xx is NORMAL_UNSPECIFIED... except the classes below.
SIP_TO_CAUSE: dict[int, str] = {
    200: "NORMAL_CLEARING", 400: "NORMAL_TEMPORARY_FAILURE", 401: "CALL_REJECTED",
    402: "CALL_REJECTED", 403: "CALL_REJECTED", 404: "UNALLOCATED_NUMBER",
    405: "SERVICE_UNAVAILABLE", 406: "SERVICE_NOT_IMPLEMENTED", 407: "CALL_REJECTED",
    408: "RECOVERY_ON_TIMER_EXPIRE", 410: "NUMBER_CHANGED", 413: "INTERWORKING",
    414: "INTERWORKING", 415: "SERVICE_NOT_IMPLEMENTED", 416: "INTERWORKING",
    420: "INTERWORKING", 421: "INTERWORKING", 423: "INTERWORKING",
    480: "NO_USER_RESPONSE", 481: "NORMAL_TEMPORARY_FAILURE", 482: "EXCHANGE_ROUTING_ERROR",
    483: "EXCHANGE_ROUTING_ERROR", 484: "INVALID_NUMBER_FORMAT", 485: "NO_ROUTE_DESTINATION",
    486: "USER_BUSY", 487: "ORIGINATOR_CANCEL", 488: "INCOMPATIBLE_DESTINATION",
    500: "NORMAL_TEMPORARY_FAILURE", 501: "SERVICE_NOT_IMPLEMENTED",
    502: "NETWORK_OUT_OF_ORDER", 503: "NORMAL_TEMPORARY_FAILURE",
    504: "RECOVERY_ON_TIMER_EXPIRE", 505: "INTERWORKING", 513: "INTERWORKING",
    600: "USER_BUSY", 603: "CALL_REJECTED", 604: "NO_ROUTE_DESTINATION",
    606: "INCOMPATIBLE_DESTINATION",
}

# Leg events the runtime passes on → notification action.
LEG_EVENTS = {"CHANNEL_PROGRESS": "ring", "CHANNEL_PROGRESS_MEDIA": "progress",
              "CHANNEL_ANSWER": "answer"}

_VAR_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
# A variable value may hold commas and spaces (it is single-quoted in the dial string), not
# what would end the quote, open a block, chain a target or expand a ${api(...)} call.
_BAD_VALUE = re.compile(r"['{}\[\]|$\\^\x00-\x1f\x7f]")
_MAX_VALUE = 512
_HOST_PORT = re.compile(r"[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?")
_BAD_URL = re.compile(r"['{}\[\]|$\\^\s\x00-\x1f\x7f]")
_BAD_DIALSTRING = re.compile(r"[\x00-\x1f\x7f]|\$\{")
_MAX_DIALSTRING = 2048


class BadAnswer(BadInput, ValueError):
    """The router's answer (or the app's arguments) cannot be used; the message says why."""


@dataclass(frozen=True)
class Args:
    url: str
    connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS
    response_timeout_ms: int = DEFAULT_RESPONSE_TIMEOUT_MS
    notify: bool = DEFAULT_NOTIFY_TYPE == 1

    @property
    def timeouts(self) -> tuple[float, float]:
        return self.connect_timeout_ms / 1000, self.response_timeout_ms / 1000


@dataclass(frozen=True)
class Route:
    """What the router decided: a dial string to bridge, or a cause to hang up with."""

    kind: str                      # gateway | user | ip | dialstring | hangup
    dialstring: str = ""
    hangup_cause: str = ""
    variables: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------ pure parts ---------
def parse_args(text: str) -> Args:
    """``<url> [connect_timeout_ms] [response_timeout_ms] [notify_type]`` → Args; BadAnswer
    naming the bad argument."""
    parts = (text or "").split()
    if not parts:
        raise BadAnswer("no router URL given")
    url = check_url(parts[0])
    numbers_given = []
    for name, value in zip(("connect_timeout_ms", "response_timeout_ms", "notify_type"),
                           parts[1:4], strict=False):
        if not value.isdigit():
            raise BadAnswer(f"{name} {value!r} is not a whole number")
        numbers_given.append(int(value))
    if len(parts) > 4:
        raise BadAnswer(f"unexpected arguments {parts[4:]!r}")
    connect, response, notify = (numbers_given + [DEFAULT_CONNECT_TIMEOUT_MS,
                                                  DEFAULT_RESPONSE_TIMEOUT_MS,
                                                  DEFAULT_NOTIFY_TYPE][len(numbers_given):])
    if connect <= 0 or response <= 0:
        raise BadAnswer(f"timeouts must be > 0 ms (got {connect}, {response})")
    if notify not in (0, 1):
        raise BadAnswer(f"notify_type {notify!r} must be 0 or 1")
    return Args(url, connect, response, notify == 1)


def check_url(url: str) -> str:
    """An http(s) URL with a host and nothing that could break a dial-string variable."""
    try:
        split = urlsplit(url)
        split.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise BadAnswer(f"router URL {url!r} is not a valid URL") from None
    if split.scheme not in ("http", "https") or not split.hostname:
        raise BadAnswer(f"router URL {url!r} must be http:// or https:// with a host")
    if _BAD_URL.search(url):
        raise BadAnswer(f"router URL {url!r} contains a character not allowed in it "
                        "(quote, braces, brackets, |, $, \\, ^, white space)")
    return url


def cause_name(value: Any) -> str:
    """A Q.850 number (int or digits) or a cause name → the FreeSWITCH cause name."""
    if isinstance(value, bool):
        raise BadAnswer(f"hangup cause {value!r} is not a cause")
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        name = CAUSES.get(int(value))
        if name is None:
            raise BadAnswer(f"hangup cause {value!r} is not in the cause table")
        return name
    if isinstance(value, str) and value.upper().removeprefix("SWITCH_CAUSE_") in CAUSE_NAMES:
        return value.upper().removeprefix("SWITCH_CAUSE_")
    raise BadAnswer(f"hangup cause {value!r} is not a cause number or name")


def sip_cause(value: Any) -> str:
    """A SIP response code (4xx-6xx, or 200) → the cause mod_sofia maps it to."""
    if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise BadAnswer(f"sipcode {value!r} is not a number")
    code = int(value)
    if code in SIP_TO_CAUSE:
        return SIP_TO_CAUSE[code]
    if 400 <= code <= 699:
        return "NORMAL_UNSPECIFIED"
    raise BadAnswer(f"sipcode {value!r} is not a SIP failure code (400-699)")


def check_variables(raw: Any) -> dict[str, str]:
    """The answer's ``variables``: names ``[A-Za-z0-9_]{1,64}``; values strings or numbers
    without ``' { } [ ] | $ \\ ^`` or control characters (commas and spaces are fine)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadAnswer(f"variables must be an object, got {raw!r}")
    checked: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not _VAR_NAME.fullmatch(name):
            raise BadAnswer(f"variable name {name!r} is not [A-Za-z0-9_]+")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise BadAnswer(f"variable {name} value {value!r} is not a string or number")
        text = str(value)
        if len(text) > _MAX_VALUE or _BAD_VALUE.search(text):
            raise BadAnswer(f"variable {name} value {text!r} contains characters that would "
                            "change the dial string")
        checked[name] = text
    return checked


def _field(dial: Mapping[str, Any], name: str) -> Any:
    if dial.get(name) in (None, ""):
        raise BadAnswer(f"dial type {dial.get('type')!r} needs {name!r}")
    value = dial[name]
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _checked(check: Callable[[object], str], value: Any) -> str:
    try:
        return check(value)
    except numbers.BadDialValue as exc:
        raise BadAnswer(str(exc)) from None


def parse_answer(body: bytes | str, *, domain: str, allow_dialstring: bool) -> Route:
    """A router's answer body → the Route; BadAnswer naming what was wrong. Nothing is
    repaired: a number, gateway, user, address or variable that would change the dial string
    is refused. Only ``dialstring`` may carry dial-string syntax, and only if allowed."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        text = body[:80] if isinstance(body, str) else body[:80].decode("utf-8", "replace")
        raise BadAnswer(f"answer is not JSON ({exc.__class__.__name__}): {text!r}") from None
    if not isinstance(data, dict):
        raise BadAnswer(f"answer must be a JSON object, got {data!r:.80}")
    dial = data.get("dial")
    if not isinstance(dial, dict):
        raise BadAnswer(f"answer has no 'dial' object: {data!r:.120}")
    kind = dial.get("type")
    if kind == "hangup":
        if dial.get("cause") not in (None, ""):
            return Route("hangup", hangup_cause=cause_name(dial["cause"]))
        if dial.get("sipcode") not in (None, ""):
            return Route("hangup", hangup_cause=sip_cause(dial["sipcode"]))
        return Route("hangup", hangup_cause="NORMAL_CLEARING")
    variables = check_variables(data.get("variables"))
    if kind == "gateway":
        gateway = _checked(numbers.check_gateway, _field(dial, "gateway"))
        number = _checked(numbers.check_number, _field(dial, "number"))
        target = f"sofia/gateway/{gateway}/{number}"
    elif kind == "user":
        user = _checked(numbers.check_extension, _field(dial, "user"))
        target = f"user/{user}@{domain}"
        if dial.get("number") not in (None, ""):
            # The registered device (a GSM/PSTN gateway registered as an extension) reads the
            # number to dial from the To header.
            number = _checked(numbers.check_number, _field(dial, "number"))
            target = f"[sip_invite_to_uri='<sip:{number}@{domain}>']{target}"
    elif kind == "ip":
        host = _field(dial, "ip")
        if not isinstance(host, str) or not _HOST_PORT.fullmatch(host) or (
                ":" in host and not 1 <= int(host.rsplit(":", 1)[1]) <= 65535):
            raise BadAnswer(f"invalid ip {host!r} (expected host or host:port)")
        number = _checked(numbers.check_number, _field(dial, "number"))
        profile = _checked(numbers.check_gateway, dial.get("sofia") or DEFAULT_SOFIA_PROFILE)
        if profile == "gateway":
            raise BadAnswer("sofia profile 'gateway' is not a profile (use type gateway)")
        target = f"sofia/{profile}/{number}@{host}"
    elif kind == "dialstring":
        if not allow_dialstring:
            raise BadAnswer("dial type 'dialstring' is not allowed "
                            "(cti_bridge.allow_dialstring is false)")
        text = _field(dial, "dialstring")
        if not isinstance(text, str) or len(text) > _MAX_DIALSTRING or \
                _BAD_DIALSTRING.search(text) or not text.strip():
            raise BadAnswer(f"invalid dialstring {text!r:.120} (control characters or ${{...}})")
        target = text.strip()
    else:
        raise BadAnswer(f"unknown dial type {kind!r}")
    return Route(str(kind), dialstring=target, variables=variables)


def leg_variables(variables: Mapping[str, str]) -> str:
    """``{a=1,b='x,y'}``: values with commas or spaces single-quoted (checked beforehand)."""
    items = [f"{k}='{v}'" if ("," in v or " " in v or not v) else f"{k}={v}"
             for k, v in variables.items()]
    return "{" + ",".join(items) + "}" if items else ""


def with_variables(dialstring: str, variables: Mapping[str, str]) -> str:
    """``dialstring`` with ``variables`` for every leg; a leading ``{...}`` of the router's
    own dial string is merged (its own settings come last)."""
    block = leg_variables(variables)
    if not block:
        return dialstring
    if dialstring.startswith("{"):
        return block[:-1] + "," + dialstring[1:]
    return block + dialstring


# ------------------------------------------------------------------------ HTTP -----------------
_lock = threading.Lock()
_http: requests.Session | None = None
_workers: list[ThreadPoolExecutor] = []
_pending = threading.BoundedSemaphore(NOTIFY_QUEUE_LIMIT)


def http() -> requests.Session:
    """The process's HTTP session: keep-alive connections reused across calls."""
    global _http
    if _http is None:
        with _lock:
            if _http is None:
                session = requests.Session()
                adapter = HTTPAdapter(pool_connections=8, pool_maxsize=POOL_MAXSIZE,
                                      max_retries=0)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.headers.update({"User-Agent": "fsapps-cti-bridge"})
                _http = session
    return _http


def post(url: str, payload: Mapping[str, Any], timeouts: tuple[float, float]) -> bytes:
    """POST ``payload`` as JSON; the body of a 2xx answer, else BadAnswer naming the
    failure (connect timeout, response timeout, status, connection refused or closed)."""
    try:
        response = http().post(url, json=payload, timeout=timeouts)
    except requests.ConnectTimeout:
        raise BadAnswer(f"connect timeout ({timeouts[0] * 1000:.0f} ms) to {url}") from None
    except requests.ReadTimeout:
        raise BadAnswer(f"response timeout ({timeouts[1] * 1000:.0f} ms) from {url}") from None
    except requests.RequestException as exc:
        raise BadAnswer(f"request to {url} failed: {type(exc).__name__}: "
                        f"{str(exc)[:160]}") from None
    if not 200 <= response.status_code < 300:
        raise BadAnswer(f"HTTP status {response.status_code} from {url}")
    return response.content


def _worker_for(settings: CtiBridgeSettings, call_uuid: str) -> ThreadPoolExecutor:
    """The worker that sends ``call_uuid``'s notifications: always the same one (each a
    single thread), so a call's ring, answer and hangup reach its router in the order they
    happened - from a shared pool a ring sent later could overtake its answer (seen in the
    real switch: ring after answer); the calls are spread over ``notify_workers``."""
    if not _workers:
        with _lock:
            if not _workers:
                _workers.extend(ThreadPoolExecutor(max_workers=1,
                                                   thread_name_prefix="fsapps-cti-notify",
                                                   initializer=name_os_thread,
                                                   initargs=("notify",))
                                for _ in range(max(1, int(settings.notify_workers))))
    return _workers[zlib.crc32(call_uuid.encode()) % len(_workers)]


def notify(settings: CtiBridgeSettings, url: str, payload: dict[str, Any],
           timeouts: tuple[float, float]) -> bool:
    """Queue one notification for its call's worker (:func:`_worker_for`: a call's
    notifications go out in order); False (and one log line) when the queue is full. Never
    blocks, never raises."""
    if not _pending.acquire(blocking=False):
        log("WARNING", f"cti_bridge: notification queue full, dropped {payload.get('action')} "
                       f"for {payload.get('uuid')}")
        return False
    try:
        _worker_for(settings, str(payload.get("uuid") or "")).submit(_send, url, payload,
                                                                      timeouts)
    except RuntimeError as exc:  # the pool is shut down (process exit)
        _pending.release()
        log("WARNING", f"cti_bridge: notification {payload.get('action')} not sent: {exc}")
        return False
    return True


def _send(url: str, payload: dict[str, Any], timeouts: tuple[float, float]) -> None:
    try:
        post(url, payload, timeouts)
    except BadAnswer as exc:
        log("WARNING", f"cti_bridge: {payload.get('action')} notification for "
                       f"{payload.get('uuid')}: {exc}")
    except Exception as exc:
        log("ERR", f"cti_bridge: notification: {type(exc).__name__}: {exc}")
    finally:
        _pending.release()


# ------------------------------------------------------------------------ calls in progress ---
@dataclass
class _Tracked:
    answered_us: int = 0
    answer_sent: threading.Event = field(default_factory=threading.Event)


# uuid of the A leg → what the runtime saw of its B legs (same process: runtime and handlers).
_calls: dict[str, _Tracked] = {}


def leg_event(settings: CtiBridgeSettings, name: str, header: Callable[[str], str | None]) \
        -> None:
    """The runtime saw ``name`` on a B leg that carries ``fsapps_cti_notify_url``: notify."""
    action = LEG_EVENTS.get(name)
    url = header(event_header(CTI_NOTIFY_URL_VAR))
    call_uuid = header(event_header(CTI_UUID_VAR)) or ""
    if action is None or not url:
        return
    timeouts = (_ms(header(event_header(CTI_CONNECT_MS_VAR)), DEFAULT_CONNECT_TIMEOUT_MS),
                _ms(header(event_header(CTI_RESPONSE_MS_VAR)), DEFAULT_RESPONSE_TIMEOUT_MS))
    payload = {"action": action, "uuid": call_uuid, "leg_uuid": header("Unique-ID") or ""}
    notify(settings, url, payload, timeouts)
    tracked = _calls.get(call_uuid)
    if action == "answer" and tracked is not None:
        answered = header("Caller-Channel-Answered-Time") or ""
        tracked.answered_us = int(answered) if answered.isdigit() else int(time.time() * 1e6)
        tracked.answer_sent.set()


def _ms(text: str | None, default: int) -> float:
    return (int(text) if text and text.isdigit() else default) / 1000


# ------------------------------------------------------------------------ the handler --------
def request_body(session: Any, uuid: str) -> dict[str, Any]:
    """The ``request`` POST body (documented in the README)."""
    get = session.getVariable
    number = get("caller_id_number") or ""
    variables = {name: get(name) for name in REQUEST_VARIABLES if get(name) is not None}
    for name in (get(CTI_REQUEST_VARS_VAR) or "").split(","):
        name = name.strip()
        if _VAR_NAME.fullmatch(name) and get(name) is not None:
            variables[name] = get(name)
    return {"action": "request", "uuid": uuid, "caller_id_number": number,
            "caller_id_name": get("caller_id_name") or number,
            "destination_number": get("destination_number") or "",
            "domain": get("domain_name") or "", "direction": get("direction") or "",
            "context": get("context") or "", "variables": variables}


def route_call(session: Any, args_text: str, settings: CtiBridgeSettings) -> None:
    """Ask the router, then bridge, hang up or fall back. Every bad answer gives ONE log
    line and the configured fallback; the caller is never left in silence."""
    uuid = session.get_uuid()
    started = time.monotonic()
    try:
        args = parse_args(args_text)
    except BadAnswer as exc:
        fallback(session, settings, f"cti_bridge {uuid}: bad arguments: {exc}")
        return
    domain = session.getVariable("domain_name") or ""
    try:
        body = post(args.url, request_body(session, uuid), args.timeouts)
        route = parse_answer(body, domain=domain, allow_dialstring=settings.allow_dialstring)
    except BadAnswer as exc:
        fallback(session, settings, f"cti_bridge {uuid}: {exc}")
        return
    if route.kind == "hangup":
        log("INFO", f"cti_bridge {uuid}: router says hang up with {route.hangup_cause}")
        session.hangup(route.hangup_cause)
        return
    variables = dict(route.variables)
    if args.notify:
        variables.update({CTI_NOTIFY_URL_VAR: args.url, CTI_UUID_VAR: uuid,
                          CTI_CONNECT_MS_VAR: str(args.connect_timeout_ms),
                          CTI_RESPONSE_MS_VAR: str(args.response_timeout_ms)})
        _calls[uuid] = _Tracked()
    dialstring = with_variables(route.dialstring, variables)
    # bridge hangs the caller up itself on most failures: we need the channel afterwards.
    session.setVariable("continue_on_fail", "true")
    session.setVariable("hangup_after_bridge", "false")
    bridge_started = time.monotonic()
    try:
        session.execute("bridge", dialstring)
        ended = time.monotonic()
        disposition = session.getVariable("originate_disposition") or ""
        cause = (session.getVariable("last_bridge_hangup_cause") or
                 session.getVariable("bridge_hangup_cause") or disposition or "NONE")
        if args.notify:
            tracked = _calls.get(uuid) or _Tracked()
            if disposition == "SUCCESS":
                tracked.answer_sent.wait(ANSWER_SEEN_WAIT_S)
            ended_us = int(time.time() * 1e6)
            talk_ms = max(0, (ended_us - tracked.answered_us) // 1000) \
                if tracked.answered_us else 0
            if disposition == "SUCCESS" and not tracked.answered_us:
                talk_ms = int((ended - bridge_started) * 1000)  # runtime not running: rough
            notify(settings, args.url, {
                "action": "hangup", "uuid": uuid, "cause": cause,
                "disposition": disposition, "duration_ms": int((ended - started) * 1000),
                "bridge_ms": int((ended - bridge_started) * 1000), "talk_ms": talk_ms,
                "billsec": talk_ms // 1000}, args.timeouts)
    finally:
        _calls.pop(uuid, None)
    if disposition == "SUCCESS":
        hang_up(session, cause if cause in CAUSE_NAMES and cause != "NONE"
                else "NORMAL_CLEARING")
        return
    ensure_up(session)
    if settings.on_failure == "continue":
        log("INFO", f"cti_bridge {uuid}: bridge to {route.kind} failed ({disposition}); "
                    "continuing the dialplan")
        return
    log("INFO", f"cti_bridge {uuid}: bridge to {route.kind} failed ({disposition})")
    session.hangup(disposition if disposition in CAUSE_NAMES else settings.failure_cause)


def fallback(session: Any, settings: CtiBridgeSettings, why: str) -> None:
    """The one log line and the configured fallback for an unusable router answer."""
    if settings.on_failure == "continue":
        log("WARNING", f"{why}; continuing the dialplan")
        return
    log("WARNING", f"{why}; hanging up with {settings.failure_cause}")
    hang_up(session, settings.failure_cause)
