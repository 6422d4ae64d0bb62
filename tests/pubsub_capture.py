"""A real ``PSUBSCRIBE`` on the test Redis that collects the seed 001 pub/sub messages."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from fakefs.scenario import wait_until


@dataclass(frozen=True)
class Published:
    channel: str
    data: dict[str, Any]
    at: float  # time.monotonic() when received
    raw: str


class Subscriber:
    """Subscribes to ``patterns`` (default all four seed families) and keeps every message."""

    def __init__(self, url: str,
                 patterns: Sequence[str] = ("event_*", "queue_*", "agent_*", "cdr_*")) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.pubsub = self.client.pubsub()
        self.messages: list[Published] = []
        self.lock = threading.Lock()
        self.pubsub.psubscribe(**{p: self._on for p in patterns})
        self.thread = self.pubsub.run_in_thread(sleep_time=0.005, daemon=True)
        wait_until(lambda: self.client.execute_command("PUBSUB", "NUMPAT") >= len(patterns),
                   5, "psubscribe active")

    def _on(self, message: dict[str, Any]) -> None:
        raw = message["data"]
        try:
            data = json.loads(raw)
        except ValueError:
            data = {"raw": raw}
        with self.lock:
            self.messages.append(Published(message["channel"], data, time.monotonic(), raw))

    def find(self, channel: str | None = None, **fields: str) -> list[Published]:
        with self.lock:
            found = list(self.messages)
        return [m for m in found if (channel is None or m.channel == channel)
                and all(m.data.get(k) == v for k, v in fields.items())]

    def agent_events(self, uuid: str, method: str | None = None) -> list[Published]:
        if method is None:
            return self.find("event_agent", uuid=uuid)
        return self.find("event_agent", uuid=uuid, method=method)

    def statuses(self, ext: str) -> list[str]:
        """The seed ``agent_<ext>`` statuses received, in order."""
        return [m.data["status"] for m in self.find(f"agent_{ext}")]

    def statuses_end(self, ext: str, expected: list[str], timeout: float = 3.0) -> None:
        """Wait until the last status messages received for ``ext`` are ``expected``."""
        try:
            wait_until(lambda: self.statuses(ext)[-len(expected):] == expected, timeout,
                       f"agent_{ext} statuses ending {expected}")
        except TimeoutError:
            raise AssertionError(f"agent_{ext}: {self.statuses(ext)}") from None

    def wait(self, channel: str | None = None, timeout: float = 5.0,
             **fields: str) -> Published:
        return wait_until(lambda: (self.find(channel, **fields) or [None])[0], timeout,
                          f"a message on {channel or '*'} with {fields}")

    def close(self) -> None:
        self.thread.stop()
        self.thread.join(2)
        self.pubsub.close()
        self.client.close()
