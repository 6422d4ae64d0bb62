"""The seed-001 Redis pub/sub messages, and the one :class:`Publisher` that sends them.

Outside tools (dashboards, agent bars, the FSGUI) ``PSUBSCRIBE`` to the seed's patterns and
parse the messages by position (comma form) or by key (JSON form), so both shapes below are
the seed's, byte for byte, including its spelling (``EVNET_ALERT``, ``EVENT_DESTORY``).

Channels (all names from :mod:`fsapps.store.keys`; each matches one of the seed's patterns):

==========================  =================  ==================================================
channel                     pattern            messages
==========================  =================  ==================================================
``event_call``              ``event_*``        call events (:func:`call_event`)
``event_agent``             ``event_*``        agent-facing call events, always JSON
                                               (:func:`agent_call_event`)
``queue_<group>``           ``queue_*``        nway_queue_add / nway_queue_remove
                                               (:func:`queue_event`)
``agent_<number>``          ``agent_*``        agent status changes (:func:`agent_status`)
``cdr_<group>``             ``cdr_*``          CDR of an inbound call (:func:`cdr_message`)
``cdr_callout``             ``cdr_*``          CDR of an outbound call (``is_callout`` true)
==========================  =================  ==================================================

Shapes: ``EventSettings.pubsub_format`` picks ``"comma"`` (the seed's Redis form,
``a,b,c``) or ``"json"`` (the seed's MQ form, compact JSON, keys in the seed's order, non-ASCII
kept readable). Every value is a string with surrounding whitespace stripped, as the seed
trims. In the comma form a comma or line break inside a value would shift every later field,
so it becomes a space and a WARNING names the field; nothing raises for it.

The builders (:func:`call_event` ... :func:`cdr_message`) are pure: they return a
:class:`Message` that renders either shape. :class:`Publisher` picks the configured shape and
PUBLISHes; a failed PUBLISH is logged at ERR and counted, never raised, because losing a
notification must not break a call.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

import redis.exceptions

from fsapps.config import PUBSUB_FORMATS, EventSettings
from fsapps.errors import BadInput, ConfigError, FsappsError
from fsapps.fslog import log
from fsapps.store.keys import agent_channel, cdr_channel, event_channel, queue_channel

__all__ = [
    "AGENT_EVENTS_CHANNEL",
    "AGENT_METHODS",
    "CALL_EVENTS_CHANNEL",
    "CDR_CALLOUT_CHANNEL",
    "CDR_FIELDS",
    "NO_ANSWER_AGENTS",
    "QUEUE_METHODS",
    "EventName",
    "Message",
    "MessageError",
    "Publisher",
    "agent_call_event",
    "agent_status",
    "call_event",
    "cdr_message",
    "primary_ipv4",
    "queue_event",
    "stamp",
]

CALL_EVENTS_CHANNEL = event_channel("call")
AGENT_EVENTS_CHANNEL = event_channel("agent")
CDR_CALLOUT_CHANNEL = cdr_channel("callout")

AGENT_METHODS = ("callout", "noanswer", "answered", "hangup")
QUEUE_METHODS = ("nway_queue_add", "nway_queue_remove")

# The seed's CDR JSON example, in its key order (after "type"). The comma form uses the seed's
# `arr` order instead: see _CDR_COMMA.
CDR_FIELDS = (
    "cti_ip", "uuid", "is_callout", "a_caller_id_number", "a_destination_number",
    "a_start_stamp", "a_answer_stamp", "a_end_stamp", "a_duration", "a_billsec",
    "a_sip_hangup_disposition", "a_record_file", "str_no_answer_agents", "destination_number",
    "start_stamp", "answer_stamp", "end_stamp", "duration", "flag", "billsec",
)
_CDR_COMMA = (
    "uuid", "a_caller_id_number", "a_destination_number", "a_start_stamp", "a_answer_stamp",
    "a_end_stamp", "a_duration", "a_billsec", "a_sip_hangup_disposition", "a_record_file",
    "str_no_answer_agents", "destination_number", "start_stamp", "answer_stamp", "end_stamp",
    "duration", "billsec",
)
# Not a JSON key: the extensions that did not answer, the comma form's trailing `{a,b,c}`.
NO_ANSWER_AGENTS = "no_answer_agents"

_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Characters that would split a comma-form message into the wrong fields (or lines).
_BREAKERS = str.maketrans({",": " ", "\n": " ", "\r": " "})
_AGENT_BREAKERS = str.maketrans({",": " ", "\n": " ", "\r": " ", "{": " ", "}": " "})


class EventName(IntEnum):
    """The seed's call event names, numbered as its Go ``1 + iota``; spelled as users match them."""

    EVENT_CALLIN = 1  # 呼入
    EVENT_CALLOUT = 2  # 呼出
    EVENT_RING = 3  # 回铃
    EVNET_ALERT = 4  # 振铃 (sic: the seed's spelling is what subscribers match on)
    EVENT_ANSWER = 5  # 应答
    EVENT_HANGUP = 6  # 挂机
    EVENT_DTMF = 7  # 按键
    EVENT_PLAYRING = 8  # 开始放音
    EVENT_PLAYSTOP = 9  # 放音结束
    EVENT_PARK = 10
    EVENT_UNPARK = 11
    EVENT_HOLD = 12
    EVENT_UNHOLD = 13
    EVENT_BRIDGED = 14  # 已桥接
    EVENT_DESTORY = 15  # 已完全释放 (sic)
    EVENT_TALKING = 16  # 正在通话中
    EVENT_DA = 17  # 回铃检测


class MessageError(BadInput, ValueError):
    """A message that the seed's format cannot express: an unknown event, method or CDR key."""

    def __init__(self, what: str, value: object, allowed: Iterable[str]) -> None:
        self.what = what
        self.value = value
        super().__init__(f"invalid {what} {value!r}: expected one of {', '.join(allowed)}")


Value = str | int | float | bool | None


def _text(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # Go's strconv.FormatBool spelling, as in "is_callout":"false"
        return "true" if value else "false"
    return str(value).strip()


def _time_text(value: Value) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return stamp(value)
    return _text(value)


def _comma_safe(field: str, value: str, table: dict[int, str]) -> str:
    safe = value.translate(table)
    if safe != value:
        log("WARNING", f"pubsub: field {field!r} value {value!r} holds a separator; "
                       "replaced by spaces in the comma form")
    return safe


def stamp(epoch_seconds: float) -> str:
    """``epoch_seconds`` as the seed's ``YYYY-MM-DD HH:MM:SS`` in local time."""
    return time.strftime(_TIME_FORMAT, time.localtime(epoch_seconds))


@dataclass(frozen=True)
class Message:
    """One seed-001 message, renderable in either shape; building it touched nothing.

    ``fields`` are the JSON keys after ``type``, in order; ``comma_fields`` name the comma
    form's fields in order, or are None for a JSON-only message (the agent-facing events).
    ``agents`` is the CDR's trailing ``{a,b,c}`` element of the comma form.
    """

    type: str
    fields: tuple[tuple[str, str], ...]
    comma_fields: tuple[str, ...] | None
    agents: tuple[str, ...] | None = None

    def json(self) -> str:
        """Compact JSON as the seed's Go string concatenation writes it, ``type`` first."""
        return json.dumps({"type": self.type, **dict(self.fields)},
                          ensure_ascii=False, separators=(",", ":"))

    def comma(self) -> str:
        """The comma form (the JSON form for a JSON-only message); separators in values are
        replaced by spaces, one WARNING per field that held one."""
        if self.comma_fields is None:
            return self.json()
        values = dict(self.fields)
        parts = [_comma_safe(name, values[name], _BREAKERS) for name in self.comma_fields]
        if self.agents is not None:
            agents = [_comma_safe(NO_ANSWER_AGENTS, agent, _AGENT_BREAKERS).strip()
                      for agent in self.agents]
            agents = [agent for agent in agents if agent]
            parts.append("{" + ",".join(agents) + "}" if agents else "")
        return ",".join(parts)

    def render(self, shape: str) -> str:
        """``shape`` "comma" or "json"; anything else raises MessageError."""
        if shape == "json":
            return self.json()
        if shape == "comma":
            return self.comma()
        raise MessageError("pubsub format", shape, PUBSUB_FORMATS)


def _event_name(name: EventName | str) -> str:
    if isinstance(name, EventName):
        return name.name
    if name in EventName.__members__:
        return name
    raise MessageError("event name", name, EventName.__members__)


def call_event(
    name: EventName | str,
    *,
    callin_number: Value,
    dest_number: Value,
    domain: Value,
    dtmf: Value = "",
    gateway: Value = "",
    originate_number: Value = "",
    direction: Value = "",
    auuid: Value = "",
    buuid: Value = "",
    origination_dest_number: Value = "",
) -> Message:
    """A call event for ``event_call``.

    Comma: ``evt_name,callin_number,dest_number,domain,dtmf,gateway,originate_number,direction,
    auuid,buuid,origination_dest_number``. JSON: ``type`` "event", ``event_name``, ``aleg_uuid``,
    ``bleg_uuid``, then the others in the comma order. ``name`` is an :class:`EventName` or its
    exact name; any other raises MessageError.
    """
    fields = (
        ("event_name", _event_name(name)),
        ("aleg_uuid", _text(auuid)),
        ("bleg_uuid", _text(buuid)),
        ("callin_number", _text(callin_number)),
        ("dest_number", _text(dest_number)),
        ("domain", _text(domain)),
        ("dtmf", _text(dtmf)),
        ("gateway", _text(gateway)),
        ("originate_number", _text(originate_number)),
        ("direction", _text(direction)),
        ("origination_dest_number", _text(origination_dest_number)),
    )
    comma = ("event_name", "callin_number", "dest_number", "domain", "dtmf", "gateway",
             "originate_number", "direction", "aleg_uuid", "bleg_uuid",
             "origination_dest_number")
    return Message("event", fields, comma)


def _method(method: str, allowed: tuple[str, ...], what: str) -> str:
    if method not in allowed:
        raise MessageError(what, method, allowed)
    return method


def agent_call_event(
    method: str,
    *,
    cti_ip: Value,
    uuid: Value,
    number: Value,
    group: Value,
    extension: Value,
    level: Value,
    callin_time: Value,
) -> Message:
    """An agent-facing event for ``event_agent``; JSON in both shapes (the seed shows no other).

    ``method``: callout (ringing the agent), noanswer, answered, hangup; any other raises
    MessageError. ``number`` is the caller, ``extension`` the agent; ``callin_time`` is text or
    epoch seconds (formatted by :func:`stamp`).
    """
    fields = (
        ("method", _method(method, AGENT_METHODS, "agent event method")),
        ("cti_ip", _text(cti_ip)),
        ("uuid", _text(uuid)),
        ("number", _text(number)),
        ("group", _text(group)),
        ("extension", _text(extension)),
        ("level", _text(level)),
        ("callin_time", _time_text(callin_time)),
    )
    return Message("event", fields, None)


def queue_event(
    method: str,
    *,
    cti_ip: Value,
    uuid: Value,
    number: Value,
    group: Value,
    level: Value,
    callin_time: Value,
) -> Message:
    """A queue change for ``queue_<group>``: ``method`` nway_queue_add or nway_queue_remove.

    Comma: ``method,uuid,number,group,level,callin_time``. JSON: ``type`` "queue", method,
    cti_ip, uuid, number, group, level, callin_time (cti_ip on both methods).
    """
    fields = (
        ("method", _method(method, QUEUE_METHODS, "queue event method")),
        ("cti_ip", _text(cti_ip)),
        ("uuid", _text(uuid)),
        ("number", _text(number)),
        ("group", _text(group)),
        ("level", _text(level)),
        ("callin_time", _time_text(callin_time)),
    )
    return Message("queue", fields, ("method", "uuid", "number", "group", "level",
                                     "callin_time"))


def agent_status(number: Value, status: Value, time: Value) -> Message:
    """An agent status change for ``agent_<number>``: comma ``number,status,time``; JSON
    ``type`` "agent", number, status, time (text or epoch seconds)."""
    fields = (("number", _text(number)), ("status", _text(status)), ("time", _time_text(time)))
    return Message("agent", fields, ("number", "status", "time"))


def cdr_message(fields: Mapping[str, Value | Iterable[str]]) -> Message:
    """A CDR for ``cdr_<group>`` / ``cdr_callout``.

    ``fields`` holds any of :data:`CDR_FIELDS` (a missing one is ""), plus optionally
    ``no_answer_agents``: the extensions that did not answer, which the comma form appends as
    ``{a,b,c}`` ("" when none). Comma: the seed's ``arr`` order (uuid, a_caller_id_number, ...,
    billsec, agents); JSON: ``type`` "cdr" then :data:`CDR_FIELDS` in order. An unknown key
    raises MessageError (a misspelt key would otherwise send "").
    """
    allowed = (*CDR_FIELDS, NO_ANSWER_AGENTS)
    for key in fields:
        if key not in allowed:
            raise MessageError("CDR field", key, allowed)
    values: list[tuple[str, str]] = []
    for name in CDR_FIELDS:
        value = fields.get(name)
        if value is not None and not isinstance(value, str | int | float | bool):
            raise MessageError(f"CDR field {name!r} value", value, ("a string",))
        values.append((name, _text(value)))
    raw_agents = fields.get(NO_ANSWER_AGENTS) or ()
    if isinstance(raw_agents, str | int | float | bool):
        raise MessageError(f"{NO_ANSWER_AGENTS!r} value", raw_agents, ("a list of extensions",))
    agents = tuple(_text(agent) for agent in raw_agents)
    return Message("cdr", tuple(values), _CDR_COMMA, agents)


def primary_ipv4() -> str:
    """This machine's primary IPv4 address: the source address of its default route.

    connect() on a UDP socket only picks a route and a source address; no packet is sent, so
    no host is contacted. Falls back to the host name's address, then 127.0.0.1.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 9))  # any non-local address; never reached
            address = probe.getsockname()[0]
            if isinstance(address, str) and not address.startswith(("0.", "127.")):
                return address
    except OSError:
        pass
    try:
        address = socket.gethostbyname(socket.gethostname())
        if not address.startswith("127."):
            return address
    except OSError:
        pass
    return "127.0.0.1"


class _Publishes(Protocol):
    """A Redis client or a pipeline (plain or cluster): anything with PUBLISH."""

    def publish(self, channel: str, message: str) -> Any: ...


# What a failed publish may raise: StoreUnavailable (fsapps clients), any redis error (plain
# clients, a refused command), an OS-level socket error, or a bad channel part (KeyPartError).
_PUBLISH_ERRORS = (FsappsError, redis.exceptions.RedisError, OSError)


class Publisher:
    """Sends seed-001 messages in the configured shape; see the module docstring for channels.

    Every method returns True when the PUBLISH was sent (or queued on ``pipeline``) and False
    when it failed; a failure is logged at ERR and counted in :attr:`failed`, never raised.
    With ``pipeline`` the PUBLISH is only queued: the caller executes it, together with its own
    changes, and a failure there is the caller's to handle (and is not counted here).
    """

    def __init__(self, client: _Publishes, events: EventSettings) -> None:
        if events.pubsub_format not in PUBSUB_FORMATS:
            raise ConfigError("events.pubsub_format", events.pubsub_format,
                              f"expected one of {', '.join(PUBSUB_FORMATS)}")
        self.client = client
        self.shape = events.pubsub_format
        self.cti_ip = events.cti_ip or primary_ipv4()
        self._failed = 0
        self._lock = threading.Lock()
        self._sinks: tuple[Callable[[str, Message], None], ...] = ()

    def add_sink(self, sink: Callable[[str, Message], None]) -> None:
        """Also hand every message built from now on to ``sink(channel, message)`` (e.g.
        :meth:`fsapps.events.amqp.AmqpPublisher.sink`), whatever became of its Redis PUBLISH. A sink
        must not block; what it raises is logged, never passed on. Adding one twice is a no-op."""
        with self._lock:
            if sink not in self._sinks:
                self._sinks = (*self._sinks, sink)

    def __repr__(self) -> str:
        return f"Publisher(shape={self.shape!r}, cti_ip={self.cti_ip!r}, failed={self.failed})"

    @property
    def failed(self) -> int:
        """How many publishes failed since this publisher was made."""
        with self._lock:
            return self._failed

    def call_event(
        self,
        name: EventName | str,
        *,
        callin_number: Value,
        dest_number: Value,
        domain: Value,
        dtmf: Value = "",
        gateway: Value = "",
        originate_number: Value = "",
        direction: Value = "",
        auuid: Value = "",
        buuid: Value = "",
        origination_dest_number: Value = "",
        pipeline: _Publishes | None = None,
    ) -> bool:
        """:func:`call_event` on ``event_call``."""
        def build() -> tuple[str, Message]:
            return CALL_EVENTS_CHANNEL, call_event(
                name, callin_number=callin_number, dest_number=dest_number, domain=domain,
                dtmf=dtmf, gateway=gateway, originate_number=originate_number,
                direction=direction, auuid=auuid, buuid=buuid,
                origination_dest_number=origination_dest_number)
        return self._send("call event", build, pipeline)

    def agent_call_event(self, method: str, *, uuid: Value, number: Value, group: Value,
                         extension: Value, level: Value, callin_time: Value,
                         cti_ip: str | None = None,
                         pipeline: _Publishes | None = None) -> bool:
        """:func:`agent_call_event` on ``event_agent``; ``cti_ip`` defaults to this node's."""
        def build() -> tuple[str, Message]:
            return AGENT_EVENTS_CHANNEL, agent_call_event(
                method, cti_ip=cti_ip or self.cti_ip, uuid=uuid, number=number, group=group,
                extension=extension, level=level, callin_time=callin_time)
        return self._send("agent call event", build, pipeline)

    def queue_event(self, method: str, *, uuid: Value, number: Value, group: str,
                    level: Value, callin_time: Value, cti_ip: str | None = None,
                    pipeline: _Publishes | None = None) -> bool:
        """:func:`queue_event` on ``queue_<group>``; ``cti_ip`` defaults to this node's."""
        def build() -> tuple[str, Message]:
            return queue_channel(str(group).strip()), queue_event(
                method, cti_ip=cti_ip or self.cti_ip, uuid=uuid, number=number, group=group,
                level=level, callin_time=callin_time)
        return self._send("queue event", build, pipeline)

    def agent_status(self, number: str, status: Value, time: Value, *,
                     pipeline: _Publishes | None = None) -> bool:
        """:func:`agent_status` on ``agent_<number>``."""
        def build() -> tuple[str, Message]:
            return agent_channel(str(number).strip()), agent_status(number, status, time)
        return self._send("agent status", build, pipeline)

    def agent_status_template(self, number: str, time: Value) -> tuple[str, str]:
        """(channel, message) of :meth:`agent_status` with ``{{status}}`` where the status
        goes, for a script that tells the agent's moves itself (agent_announce.lua: told in
        the step that makes them, they keep their order); then :meth:`agent_status_told`."""
        status = "{{status}}"
        return (agent_channel(str(number).strip()),
                agent_status(number, status, time).render(self.shape))

    def agent_status_told(self, number: str, status: Value, time: Value) -> None:
        """A status a script published (:meth:`agent_status_template`) goes to the other
        buses (NATS, AMQP) as :meth:`agent_status` sends them."""
        self._to_sinks(agent_channel(str(number).strip()), agent_status(number, status, time))

    def cdr(self, fields: Mapping[str, Value | Iterable[str]], *, group: str = "",
            pipeline: _Publishes | None = None) -> bool:
        """:func:`cdr_message` on ``cdr_callout`` when ``is_callout`` is true, else on
        ``cdr_<group>`` (an inbound CDR without a group fails: logged and counted).
        ``cti_ip`` defaults to this node's."""
        def build() -> tuple[str, Message]:
            message = cdr_message({**fields, "cti_ip": fields.get("cti_ip") or self.cti_ip})
            callout = dict(message.fields)["is_callout"].lower() == "true"
            return (CDR_CALLOUT_CHANNEL if callout else cdr_channel(group.strip())), message
        return self._send("cdr", build, pipeline)

    def _send(self, what: str, build: Callable[[], tuple[str, Message]],
              pipeline: _Publishes | None) -> bool:
        channel = "?"
        message: Message | None = None
        try:
            channel, message = build()
            payload = message.render(self.shape)
            (pipeline if pipeline is not None else self.client).publish(channel, payload)
        except _PUBLISH_ERRORS as exc:
            with self._lock:
                self._failed += 1
            log("ERR", f"pubsub: {what} on {channel} not published: {exc}")
            return False
        finally:
            if message is not None:
                self._to_sinks(channel, message)
        return True

    def _to_sinks(self, channel: str, message: Message) -> None:
        for sink in self._sinks:
            try:
                sink(channel, message)
            except Exception as exc:
                log("ERR", f"pubsub: sink {sink!r} failed on {channel}: {exc}")
