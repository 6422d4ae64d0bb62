"""FreeSWITCH events as mod_python3 shows them: an ``Event`` with ordered headers and a body,
fired on one switch's bus, received by bounded ``EventConsumer`` queues that DROP when full
(exactly like the real consumer: the switch never blocks on a slow Python reader).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from email.utils import formatdate

from fakefs.binding import current_switch

# switch_event_types_t names, as switch_event.c's EVENT_NAMES lists them (FreeSWITCH 1.10).
EVENT_NAMES = frozenset({
    "CUSTOM", "CLONE", "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE",
    "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_OUTGOING",
    "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_APPLICATION", "CHANNEL_ORIGINATE",
    "CHANNEL_UUID", "API", "LOG", "INBOUND_CHAN", "OUTBOUND_CHAN", "STARTUP", "SHUTDOWN",
    "PUBLISH", "UNPUBLISH", "TALK", "NOTALK", "SESSION_CRASH", "MODULE_LOAD", "MODULE_UNLOAD",
    "DTMF", "MESSAGE", "PRESENCE_IN", "NOTIFY_IN", "PRESENCE_OUT", "PRESENCE_PROBE",
    "MESSAGE_WAITING", "MESSAGE_QUERY", "ROSTER", "CODEC", "BACKGROUND_JOB", "DETECTED_SPEECH",
    "DETECTED_TONE", "PRIVATE_COMMAND", "HEARTBEAT", "TRAP", "ADD_SCHEDULE", "DEL_SCHEDULE",
    "EXE_SCHEDULE", "RE_SCHEDULE", "RELOADXML", "NOTIFY", "PHONE_FEATURE",
    "PHONE_FEATURE_SUBSCRIBE", "SEND_MESSAGE", "RECV_MESSAGE", "REQUEST_PARAMS", "CHANNEL_DATA",
    "GENERAL", "COMMAND", "SESSION_HEARTBEAT", "CLIENT_DISCONNECTED", "SERVER_DISCONNECTED",
    "SEND_INFO", "RECV_INFO", "RECV_RTCP_MESSAGE", "SEND_RTCP_MESSAGE", "CALL_SECURE", "NAT",
    "RECORD_START", "RECORD_STOP", "PLAYBACK_START", "PLAYBACK_STOP", "CALL_UPDATE", "FAILURE",
    "SOCKET_DATA", "MEDIA_BUG_START", "MEDIA_BUG_STOP", "CONFERENCE_DATA_QUERY",
    "CONFERENCE_DATA", "CALL_SETUP_REQ", "CALL_SETUP_RESULT", "CALL_DETAIL", "DEVICE_STATE",
    "TEXT", "SHUTDOWN_REQUESTED", "ALL",
})


class Event:
    """``freeswitch.Event``: ordered headers, an optional body, fired with :meth:`fire`."""

    def __init__(self, event_type: str = "CUSTOM", subclass: str = "") -> None:
        if event_type not in EVENT_NAMES:
            raise ValueError(f"unknown event type {event_type!r}")
        self.headers: dict[str, str] = {"Event-Name": event_type}
        if subclass:
            self.headers["Event-Subclass"] = subclass
        self.body: str = ""
        self._switch: object | None = None

    @property
    def name(self) -> str:
        return self.headers["Event-Name"]

    @property
    def subclass(self) -> str:
        return self.headers.get("Event-Subclass", "")

    # mod_python3's camelCase surface ------------------------------------------------------
    def addHeader(self, name: str, value: object) -> bool:  # noqa: N802 - FreeSWITCH's name
        self.headers[str(name)] = "" if value is None else str(value)
        return True

    def getHeader(self, name: str) -> str | None:  # noqa: N802
        return self.headers.get(name)

    def delHeader(self, name: str) -> bool:  # noqa: N802
        return self.headers.pop(name, None) is not None

    def addBody(self, body: str) -> bool:  # noqa: N802
        self.body += body
        return True

    def getBody(self) -> str | None:  # noqa: N802
        return self.body or None

    def getType(self) -> str:  # noqa: N802
        return self.name

    def serialize(self, fmt: str = "") -> str:
        if fmt == "json":
            data = dict(self.headers)
            if self.body:
                data["_body"] = self.body
            return json.dumps(data)
        lines = [f"{k}: {v}" for k, v in self.headers.items()]
        if self.body:
            lines.append(f"Content-Length: {len(self.body)}")
            return "\n".join(lines) + "\n\n" + self.body
        return "\n".join(lines) + "\n"

    def fire(self) -> bool:
        switch = current_switch()
        switch.bus.fire(self, stamp=True)
        return True

    def copy(self) -> Event:
        clone = Event.__new__(Event)
        clone.headers = dict(self.headers)
        clone.body = self.body
        clone._switch = self._switch
        return clone

    def __repr__(self) -> str:
        return f"<Event {self.name}{' ' + self.subclass if self.subclass else ''}>"


class Subscription:
    """A bounded queue bound to some event names; what does not fit is dropped and counted."""

    def __init__(self, capacity: int) -> None:
        self.queue: queue.Queue[Event] = queue.Queue(maxsize=max(1, capacity))
        self.bindings: list[tuple[str, str]] = []
        self.dropped = 0

    def wants(self, event: Event) -> bool:
        for name, subclass in self.bindings:
            if name in ("ALL", "all") or name == event.name:
                if event.name != "CUSTOM" or not subclass or subclass == event.subclass:
                    return True
        return False

    def offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event.copy())
        except queue.Full:
            self.dropped += 1


class EventBus:
    """One switch's event dispatcher: stamps the core headers, keeps a history for tests,
    and hands a copy to each subscription and listener that wants it."""

    def __init__(self, core_headers: Callable[[], dict[str, str]], history: int = 20000,
                 later: Callable[[float, Callable[[], None]], None] | None = None) -> None:
        self._core_headers = core_headers
        self._later = later  # runs a function after some seconds (the switch's timers)
        # (predicate, seconds): matching events reach the subscriptions this much later
        self._delays: list[tuple[Callable[[Event], bool], float]] = []
        self._subs: list[Subscription] = []
        self._listeners: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()
        self._sequence = 0
        self.history: deque[Event] = deque(maxlen=history)
        self._cond = threading.Condition(self._lock)

    def subscribe(self, capacity: int) -> Subscription:
        sub = Subscription(capacity)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def dropped(self) -> int:
        """Events the current subscribers lost to a full queue (EventConsumer's drops)."""
        with self._lock:
            return sum(sub.dropped for sub in self._subs)

    def delay_delivery(self, predicate: Callable[[Event], bool], seconds: float) -> None:
        """From now on, events matching ``predicate`` reach the EventConsumer queues (the
        runtime) ``seconds`` after they are fired - a loaded switch whose event thread falls
        behind; other events keep flowing meanwhile. Listeners and the history see them at
        once."""
        if self._later is None:
            raise RuntimeError("this event bus has no timer to delay events with")
        with self._lock:
            self._delays.append((predicate, seconds))

    def listen(self, callback: Callable[[Event], None]) -> None:
        with self._lock:
            self._listeners.append(callback)

    def fire(self, event: Event, stamp: bool = True) -> Event:
        with self._lock:
            self._sequence += 1
            if stamp:
                now = time.time()
                core = self._core_headers()
                headers = {"Event-Name": event.name}
                headers.update(core)
                headers.update({
                    "Event-Date-Local": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)),
                    "Event-Date-GMT": formatdate(now, usegmt=True),
                    "Event-Date-Timestamp": str(int(now * 1_000_000)),
                    "Event-Calling-File": event.headers.get("Event-Calling-File", "fakefs.c"),
                    "Event-Calling-Function": event.headers.get("Event-Calling-Function",
                                                                 "fakefs_fire"),
                    "Event-Calling-Line-Number": event.headers.get(
                        "Event-Calling-Line-Number", "1"),
                    "Event-Sequence": str(self._sequence),
                })
                for key, value in event.headers.items():
                    if key not in headers or key.startswith("Event-Subclass"):
                        headers[key] = value
                if event.subclass:
                    headers["Event-Subclass"] = event.subclass
                event.headers = headers
            subs = [s for s in self._subs if s.wants(event)]
            listeners = list(self._listeners)
            delay = max((seconds for predicate, seconds in self._delays if predicate(event)),
                        default=0.0)
            self.history.append(event)
            self._cond.notify_all()
        if delay > 0 and self._later is not None:
            held = event.copy()

            def deliver() -> None:
                for sub in subs:
                    sub.offer(held)

            self._later(delay, deliver)
        else:
            for sub in subs:
                sub.offer(event)
        for callback in listeners:
            callback(event)
        return event

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float,
                 since: int = 0) -> Event:
        """The first event in the history (from index ``since``) matching ``predicate``;
        waits for new ones up to ``timeout`` seconds, then raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in list(self.history)[since:]:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching event within {timeout:.1f}s")
                self._cond.wait(min(remaining, 0.05))

    def events(self, name: str | None = None, subclass: str | None = None) -> list[Event]:
        with self._lock:
            found: Iterable[Event] = list(self.history)
        return [e for e in found if (name is None or e.name == name)
                and (subclass is None or e.subclass == subclass)]
