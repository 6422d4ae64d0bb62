"""Native switch events on NATS, as XCC publishes them (seed 000).

Each configured event leaves as one JSON-RPC 2.0 notification::

    {"jsonrpc": "2.0", "method": "Event.NativeEvent",
     "params": {"node_uuid": <Core-UUID>, "event": {<every header of the event>}}}

on ``<subject_prefix>.<event name in lower case>`` (``cn.xswitch.ctrl.event.channel_answer``),
or ``<subject_prefix>.custom.<subclass>`` for CUSTOM events
(``cn.xswitch.ctrl.event.custom.conference::maintenance``). ``nats.events`` chooses the events
(``CHANNEL_ANSWER``, ``CUSTOM sofia::register``); empty means :data:`SEED_EVENTS`.

nats-py is asyncio: one :class:`XccPublisher` per process (:func:`get_publisher`) owns one
daemon thread running one event loop. The switch's threads never wait on it: they append to a
bounded buffer and wake the loop only when the buffer was empty. While NATS is unreachable,
or when the buffer is full, messages are dropped and counted (one log line per burst of drops,
one when publishing resumes); nats-py reconnects by itself.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from fsapps.channelvars import RECORD_FILE_VAR, event_header
from fsapps.config import NatsSettings, mask_url
from fsapps.events.delivery import DeliveryCounters, ProcessPublisher
from fsapps.fslog import log
from fsapps.threads import name_os_thread

# Seed 000's list of subscribed events (the sample configuration's nats.events).
SEED_EVENTS = (
    "CHANNEL_CREATE", "CHANNEL_STATE", "CHANNEL_ANSWER", "CHANNEL_BRIDGE",
    "CHANNEL_HANGUP_COMPLETE", "RECORD_START", "RECORD_STOP", "CUSTOM sofia::register",
    "CUSTOM sofia::unregister", "CUSTOM conference::maintenance", "CUSTOM callcenter::info",
    "DTMF", "DETECTED_SPEECH",
)
BUFFER_LEN = 10_000
RECONNECT_WAIT_SECONDS = 2.0
CLOSE_TIMEOUT_SECONDS = 3.0

EventKey = tuple[str, str]  # (EVENT-NAME, subclass or "")


def parse_events(names: Iterable[str]) -> tuple[EventKey, ...]:
    """``["CHANNEL_ANSWER", "CUSTOM sofia::register"]`` → ``(("CHANNEL_ANSWER", ""),
    ("CUSTOM", "sofia::register"))``; duplicates are kept once."""
    keys: dict[EventKey, None] = {}
    for name in names:
        event, _, subclass = name.strip().partition(" ")
        keys[(event.upper(), subclass.strip())] = None
    return tuple(keys)


def subject_for(prefix: str, name: str, subclass: str = "") -> str:
    """The XCC subject of an event: ``<prefix>.<name lower case>`` or
    ``<prefix>.custom.<subclass>``."""
    if name == "CUSTOM":
        return f"{prefix}.custom.{subclass}"
    return f"{prefix}.{name.lower()}"


def envelope(headers: dict[str, Any]) -> dict[str, Any]:
    """The Event.NativeEvent notification of an event's headers."""
    return {"jsonrpc": "2.0", "method": "Event.NativeEvent",
            "params": {"node_uuid": headers.get("Core-UUID", ""), "event": headers}}


# Seed 000's default XCC-CDR fields, and where each comes from in CHANNEL_HANGUP_COMPLETE.
CDR_FIELDS: dict[str, tuple[str, ...]] = {
    "caller_id_name": ("Caller-Caller-ID-Name",),
    "start_stamp": ("variable_start_stamp",),
    "billsec": ("variable_billsec",),
    "account_code": ("variable_accountcode", "Caller-Caller-ID-Number"),
    "network_addr": ("Caller-Network-Addr",),
    "abs_path": (event_header(RECORD_FILE_VAR), "variable_record_session_path"),
    "answer_stamp": ("variable_answer_stamp",),
    "sip_hangup_disposition": ("variable_sip_hangup_disposition",),
    "context": ("Caller-Context",),
    "duration": ("variable_duration",),
    "end_stamp": ("variable_end_stamp",),
    "uuid": ("Unique-ID",),
    "bleg_uuid": ("Other-Leg-Unique-ID", "variable_bridge_uuid", "variable_signal_bond"),
    "direction": ("Call-Direction",),
    "destination_number": ("Caller-Destination-Number",),
    "network_port": ("variable_sip_network_port",),
    "realm": ("variable_sip_auth_realm", "variable_domain_name"),
    "caller_id_number": ("Caller-Caller-ID-Number",),
    "hangup_cause": ("variable_hangup_cause", "Hangup-Cause"),
    "logical_direction": ("Caller-Logical-Direction",),
}


def cdr_envelope(headers: dict[str, Any], fields: Iterable[str] = ()) -> dict[str, Any]:
    """The Event.CDR notification (seed 000) of a CHANNEL_HANGUP_COMPLETE's headers: the
    chosen fields (a field outside the default list is read from ``variable_<field>``) and
    ``leg`` a (the channel that started the call) or b (a leg another channel originated)."""
    names = list(fields) or list(CDR_FIELDS)
    cdr: dict[str, str] = {}
    for name in names:
        sources = CDR_FIELDS.get(name, (f"variable_{name}",))
        cdr[name] = next((str(headers[s]) for s in sources if headers.get(s)), "")
    originated = headers.get("variable_originator") or headers.get("Call-Direction") == \
        "outbound"
    cdr["leg"] = "b" if originated else "a"
    return {"jsonrpc": "2.0", "method": "Event.CDR",
            "params": {"node_uuid": headers.get("Core-UUID", ""),
                       "node_ip": headers.get("FreeSWITCH-IPv4", ""), "cdr": cdr,
                       "uuid": headers.get("Unique-ID", "")}}


class XccPublisher(DeliveryCounters):
    """Publishes on NATS from any thread without blocking it; see the module docstring.

    :meth:`publish` returns True when the message was buffered for sending, False when it was
    dropped (NATS not connected, or the buffer full). :attr:`dropped` counts the drops.
    """

    _label = "nats"

    def __init__(self, settings: NatsSettings, *, buffer_len: int = BUFFER_LEN,
                 reconnect_wait: float = RECONNECT_WAIT_SECONDS) -> None:
        self.settings = settings
        self.events = frozenset(parse_events(settings.events or SEED_EVENTS))
        self.buffer_len = buffer_len
        self.reconnect_wait = reconnect_wait
        self._buffer: collections.deque[tuple[str, bytes]] = collections.deque()
        DeliveryCounters.__init__(self)
        self._connected = False
        self._stopping = False
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="fsapps:nats", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return (f"XccPublisher(connected={self.connected}, sent={self.sent}, "
                f"dropped={self.dropped})")

    @property
    def connected(self) -> bool:
        return self._connected

    # ------------------------------------------------------------ any thread ------------
    def wants(self, event: Any) -> bool:
        name = event.getHeader("Event-Name") or ""
        subclass = (event.getHeader("Event-Subclass") or "") if name == "CUSTOM" else ""
        return (name, subclass) in self.events

    def publish_event(self, event: Any) -> bool:
        """Publish a switch event (a freeswitch.Event) if it is one of the configured events;
        False when it is not or when it was dropped."""
        if not self.wants(event):
            return False
        headers = json.loads(event.serialize("json"))
        subject = subject_for(self.settings.subject_prefix, headers.get("Event-Name", ""),
                              headers.get("Event-Subclass", ""))
        return self.publish_json(subject, envelope(headers))

    def publish_cdr(self, event: Any) -> bool:
        """Event.CDR for a CHANNEL_HANGUP_COMPLETE, on ``cdr_subject`` when set, else on the
        channel subject (``<prefix>.channel_hangup_complete``), as XCC does."""
        if event.getHeader("Event-Name") != "CHANNEL_HANGUP_COMPLETE":
            return False
        headers = json.loads(event.serialize("json"))
        subject = self.settings.cdr_subject or subject_for(self.settings.subject_prefix,
                                                           "CHANNEL_HANGUP_COMPLETE")
        return self.publish_json(subject, cdr_envelope(headers, self.settings.cdr_fields))

    def publish_json(self, subject: str, message: Any) -> bool:
        return self.publish(subject, json.dumps(message, ensure_ascii=False).encode())

    def publish(self, subject: str, payload: bytes) -> bool:
        """Buffer ``payload`` for ``subject``; never blocks, never raises."""
        with self._lock:
            if self._stopping:
                return False
            if not self._connected:
                return self._drop_locked(f"NATS at {self._where()} is not connected")
            if len(self._buffer) >= self.buffer_len:
                return self._drop_locked(f"the buffer of {self.buffer_len} messages is full")
            self._accepted_locked()
            was_empty = not self._buffer
            self._buffer.append((subject, payload))
        if was_empty:
            self._call_soon(self._wake.set)
        return True

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Send what is buffered (within ``timeout``), disconnect, end the thread."""
        with self._lock:
            self._stopping = True
        self._call_soon(self._wake.set)
        self._thread.join(timeout)

    def _call_soon(self, fn: Callable[[], Any]) -> None:
        try:
            self._loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop is closed: the publisher was closed meanwhile
            pass

    def _where(self) -> str:
        return mask_url(self.settings.url.reveal())

    # ------------------------------------------------------------ the loop thread -------
    def _run(self) -> None:
        name_os_thread("nats")
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except Exception as exc:
            log("ERR", f"nats: publisher stopped: {type(exc).__name__}: {exc}")
        finally:
            self._connected = False
            self._loop.close()

    async def _main(self) -> None:
        client = await self._connect()
        if client is None:
            return
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch = list(self._buffer)
                self._buffer.clear()
                stopping = self._stopping
            for subject, payload in batch:
                try:
                    await client.publish(subject, payload)
                except Exception as exc:  # the client's own buffer is full while reconnecting
                    with self._lock:
                        self._drop_locked(f"{type(exc).__name__}: {exc}")
                else:
                    with self._lock:
                        self._sent += 1
            if stopping:
                break
        try:
            await asyncio.wait_for(client.drain(), CLOSE_TIMEOUT_SECONDS)
        except Exception:
            await client.close()

    async def _connect(self) -> Any:
        """A connected nats-py client, retrying until it connects (None if closed first)."""
        # Optional at run time: imported only once NATS publishing is on, so a process that
        # never publishes to NATS (most switch handlers) does not load nats-py.
        import nats

        async def disconnected() -> None:
            self._connected = False

        async def reconnected() -> None:
            self._connected = True
            log("NOTICE", f"nats: reconnected to {self._where()}")

        async def error(exc: Exception) -> None:
            log("DEBUG", f"nats: {type(exc).__name__}: {exc}")

        servers = [url.strip() for url in self.settings.url.reveal().split(",")]
        failed = False
        while not self._stopping:
            try:
                client = await nats.connect(
                    servers, name="fsapps", allow_reconnect=True, max_reconnect_attempts=-1,
                    reconnect_time_wait=self.reconnect_wait, connect_timeout=2,
                    disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error)
            except Exception as exc:
                if not failed:
                    log("WARNING", f"nats: cannot connect to {self._where()} "
                                   f"({type(exc).__name__}: {exc}); retrying every "
                                   f"{self.reconnect_wait:g} s")
                    failed = True
                try:
                    await asyncio.wait_for(self._wake.wait(), self.reconnect_wait)
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            self._connected = True
            log("NOTICE", f"nats: connected to {self._where()}")
            return client
        return None


# The process's publisher (FreeSWITCH reloads entry modules, not this one).
_process: ProcessPublisher[XccPublisher] = ProcessPublisher(XccPublisher)
get_publisher = _process.get
close_publisher = _process.close
