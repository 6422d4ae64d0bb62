"""The seed-001 messages on RabbitMQ (the seed's "mq" option), as the JSON form.

Every message :class:`fsapps.events.pubsub.Publisher` sends on Redis is also published, as JSON, on
the topic exchange ``amqp.exchange`` (declared durable) with the routing key made from its
Redis channel by :func:`routing_key`:

==================  ===================
Redis channel       routing key
==================  ===================
event_call          event.call
event_agent         event.agent
queue_<group>       queue.<group>
agent_<number>      agent.<number>
cdr_<group>         cdr.<group>
cdr_callout         cdr.callout
==================  ===================

so a consumer binds e.g. ``queue.*`` or ``cdr.#``. The hook is a sink of the Publisher
(:meth:`AmqpPublisher.sink`, added by the runtime at start-up): every publish of the process,
from calls and from the runtime alike, goes through it.

pika's BlockingConnection is not thread-safe: one daemon thread per process
(:func:`get_publisher`) owns the connection; other threads append to a bounded queue and never
wait. While RabbitMQ is unreachable, or when the queue is full, messages are dropped and
counted (one log line per burst, one when publishing resumes); the thread reconnects every
``reconnect_wait`` seconds.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any

from fsapps.config import AmqpSettings, mask_url
from fsapps.events.delivery import DeliveryCounters, ProcessPublisher
from fsapps.fslog import log
from fsapps.threads import name_os_thread

if TYPE_CHECKING:
    from fsapps.events.pubsub import Message

BUFFER_LEN = 10_000
RECONNECT_WAIT_SECONDS = 2.0
CLOSE_TIMEOUT_SECONDS = 3.0


def routing_key(channel: str) -> str:
    """``queue_5001`` → ``queue.5001``: the Redis channel's first ``_`` becomes a dot."""
    return channel.replace("_", ".", 1)


class AmqpPublisher(DeliveryCounters):
    """Publishes on the exchange from any thread without blocking it.

    :meth:`publish` returns True when the message was queued for sending, False when it was
    dropped (not connected, or the queue full); :attr:`dropped` counts the drops.
    """

    _label = "amqp"

    def __init__(self, settings: AmqpSettings, *, buffer_len: int = BUFFER_LEN,
                 reconnect_wait: float = RECONNECT_WAIT_SECONDS) -> None:
        self.settings = settings
        self.reconnect_wait = reconnect_wait
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(buffer_len)
        DeliveryCounters.__init__(self)
        self._connected = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fsapps:amqp", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return (f"AmqpPublisher(exchange={self.settings.exchange!r}, "
                f"connected={self.connected}, sent={self.sent}, dropped={self.dropped})")

    @property
    def connected(self) -> bool:
        return self._connected

    # ------------------------------------------------------------ any thread ------------
    def sink(self, channel: str, message: Message) -> None:
        """The Publisher sink: ``message`` as JSON with the routing key of ``channel``."""
        self.publish(routing_key(channel), message.json().encode())

    def publish(self, key: str, body: bytes) -> bool:
        """Queue ``body`` for routing key ``key``; never blocks, never raises."""
        if self._stopping.is_set():
            return False
        if not self._connected:
            return self._drop(f"RabbitMQ at {self._where()} is not connected")
        try:
            self._queue.put_nowait((key, body))
        except queue.Full:
            return self._drop(f"the buffer of {self._queue.maxsize} messages is full")
        with self._lock:
            self._accepted_locked()
        return True

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Send what is queued (within ``timeout``), disconnect, end the thread."""
        self._stopping.set()
        self._thread.join(timeout)

    def _drop(self, reason: str) -> bool:
        with self._lock:
            return self._drop_locked(reason)

    def _where(self) -> str:
        return mask_url(self.settings.url.reveal())

    # ------------------------------------------------------------ the sender thread -----
    def _run(self) -> None:
        name_os_thread("amqp")
        # Optional at run time: imported only in the sender thread, which runs only when AMQP
        # is enabled, so a process that never publishes to RabbitMQ does not load pika.
        import pika

        failed = False
        while not self._stopping.is_set():
            try:
                params = pika.URLParameters(self.settings.url.reveal())
                params.socket_timeout = 2
                params.blocked_connection_timeout = 10
                connection = pika.BlockingConnection(params)
                channel = connection.channel()
                channel.exchange_declare(self.settings.exchange, exchange_type="topic",
                                         durable=True)
            except Exception as exc:
                if not failed:
                    log("WARNING", f"amqp: cannot connect to {self._where()} "
                                   f"({type(exc).__name__}: {exc}); retrying every "
                                   f"{self.reconnect_wait:g} s")
                    failed = True
                self._stopping.wait(self.reconnect_wait)
                continue
            failed = False
            self._connected = True
            log("NOTICE", f"amqp: connected to {self._where()}, exchange "
                          f"{self.settings.exchange!r}")
            try:
                self._send(connection, channel, pika)
            except Exception as exc:
                log("WARNING", f"amqp: connection lost: {type(exc).__name__}: {exc}")
            finally:
                self._connected = False
                try:
                    connection.close()
                except Exception:
                    pass

    def _send(self, connection: Any, channel: Any, pika: Any) -> None:
        properties = pika.BasicProperties(content_type="application/json")
        while True:
            try:
                key, body = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                connection.process_data_events(0)  # heartbeats
                continue
            try:
                channel.basic_publish(self.settings.exchange, key, body, properties)
            except Exception as exc:
                self._drop(f"{type(exc).__name__}: {exc}")
                raise
            with self._lock:
                self._sent += 1


# The process's publisher (FreeSWITCH reloads entry modules, not this one).
_process: ProcessPublisher[AmqpPublisher] = ProcessPublisher(AmqpPublisher)
get_publisher = _process.get
close_publisher = _process.close
