"""What the background publishers (NATS, AMQP) share: counting what they sent and dropped,
and logging one line when a burst of drops starts and one when sending resumes — never one
line per message, so an unreachable broker cannot flood the switch's console."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from fsapps.fslog import log


class DeliveryCounters:
    """Mix-in for a publisher with a ``_lock``; ``_label`` names it in log lines."""

    _label = "publisher"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dropped = 0
        self._sent = 0
        self._in_burst = False

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    @property
    def sent(self) -> int:
        """Messages handed to the broker's client (which flushes them on its own)."""
        with self._lock:
            return self._sent

    def _drop_locked(self, reason: str) -> bool:
        """Count a dropped message (the caller holds ``_lock``); always False."""
        self._dropped += 1
        if not self._in_burst:
            self._in_burst = True
            log("WARNING", f"{self._label}: dropping messages: {reason}")
        return False

    def _accepted_locked(self) -> None:
        """A message was taken again after drops (the caller holds ``_lock``)."""
        if self._in_burst:
            self._in_burst = False
            log("NOTICE", f"{self._label}: publishing again ({self._dropped} dropped so far)")


class _Closable(Protocol):
    settings: Any

    def close(self) -> None: ...


P = TypeVar("P", bound=_Closable)


class ProcessPublisher(Generic[P]):
    """The one publisher of its kind in this process, started on first use; asked for with
    other settings (tests, a reloaded configuration) it closes the old one and starts anew."""

    def __init__(self, factory: Callable[[Any], P]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._current: P | None = None

    def get(self, settings: Any) -> P:
        with self._lock:
            if self._current is not None and self._current.settings != settings:
                self._current.close()
                self._current = None
            if self._current is None:
                self._current = self._factory(settings)
            return self._current

    def close(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.close()
                self._current = None
