"""A SockJS + STOMP 1.1 client for tests (xhr polling or WebSocket transport), written from
the protocols, independent of the server's code: frames are built and parsed here."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests


def frame(command: str, headers: dict[str, str], body: str = "") -> str:
    lines = [command, *[f"{k}:{v}" for k, v in headers.items()]]
    return "\n".join(lines) + "\n\n" + body + "\0"


def parse(text: str) -> tuple[str, dict[str, str], str]:
    text = text.lstrip("\r\n")
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name, value.replace("\\c", ":").replace("\\n", "\n")
                           .replace("\\\\", "\\"))
    return lines[0], headers, body


class StompClient:
    """Opens a SockJS session over xhr polling, CONNECTs with ``token`` and collects frames.
    An empty ``token`` CONNECTs without headers, as wellClient does (``http``: a session
    holding the cookie /login set, and any headers such as Origin its requests carry)."""

    def __init__(self, base: str, token: str, *, heart_beat: str = "0,0",
                 http: requests.Session | None = None) -> None:
        self.url = f"{base}/mvc/stomp/{uuid.uuid4().int % 1000:03d}/{uuid.uuid4().hex[:8]}"
        self.token = token
        self.http = http or requests.Session()
        self.frames: queue.Queue[tuple[str, dict[str, str], str]] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.closed = threading.Event()
        self.heart_beat = heart_beat
        self._buffer = ""
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- transport -------
    def open(self) -> dict[str, str]:
        first = self.http.post(self.url + "/xhr", timeout=10).text
        assert first == "o\n", first
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        headers = {"accept-version": "1.1,1.0", "host": "fsapps", "heart-beat": self.heart_beat}
        if self.token:
            headers["sessionId"] = self.token
        self.send(frame("CONNECT", headers))
        command, headers, body = self.next_frame(10)
        if command != "CONNECTED":
            raise AssertionError(f"expected CONNECTED, got {command} {headers} {body}")
        return headers

    def send(self, text: str) -> None:
        reply = self.http.post(self.url + "/xhr_send", data=json.dumps([text]), timeout=10)
        assert reply.status_code == 204, reply.text

    def _poll(self) -> None:
        while not self.closed.is_set():
            try:
                text = self.http.post(self.url + "/xhr", timeout=40).text
            except requests.RequestException:
                self.closed.set()
                return
            for line in text.split("\n"):
                if not line:
                    continue
                self.raw.append(line)
                if line.startswith("a"):
                    for message in json.loads(line[1:]):
                        self._stomp(message)
                elif line.startswith("c"):
                    self.closed.set()
                    self.frames.put(("CLOSE", {}, line))
                    return

    def _stomp(self, text: str) -> None:
        self._buffer += text
        while "\0" in self._buffer:
            raw, _, self._buffer = self._buffer.partition("\0")
            if not raw.strip("\r\n"):
                continue
            parsed = parse(raw)
            if parsed[0] == "MESSAGE":
                with self._lock:
                    self.events.append(json.loads(parsed[2]))
            self.frames.put(parsed)

    # ---------------------------------------------------------------- STOMP -----------
    def next_frame(self, timeout: float = 10) -> tuple[str, dict[str, str], str]:
        return self.frames.get(timeout=timeout)

    def subscribe(self, destination: str, sub_id: str = "sub-0") -> None:
        self.send(frame("SUBSCRIBE", {"id": sub_id, "destination": destination,
                                      "receipt": f"r-{sub_id}"}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            command, headers, body = self.next_frame(10)
            if command == "RECEIPT" and headers.get("receipt-id") == f"r-{sub_id}":
                return
            if command in ("ERROR", "CLOSE"):
                raise AssertionError(f"SUBSCRIBE {destination} refused: {headers} {body}")
        raise AssertionError("no RECEIPT for SUBSCRIBE")

    def wait_event(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15,
                   what: str = "event") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for event in self.events:
                    if predicate(event):
                        return event
            time.sleep(0.02)
        with self._lock:
            seen = [(e.get("eventName"), e.get("deviceId"), e.get("callId", "")[:8])
                    for e in self.events]
        raise AssertionError(f"no {what} within {timeout}s; events: {seen}")

    def names(self, call_id: str | None = None) -> list[str]:
        with self._lock:
            return [e["eventName"] for e in self.events
                    if call_id is None or e.get("callId") == call_id]

    def close(self) -> None:
        if not self.closed.is_set():
            try:
                self.send(frame("DISCONNECT", {"receipt": "bye"}))
            except (AssertionError, requests.RequestException):
                pass
        self.closed.set()
        self.http.close()
