"""A small inbound Event Socket client: ``api`` commands and a stream of events (plain format),
the way fs_cli and every ESL library talk to FreeSWITCH. No library: the protocol is a header
block, an optional Content-Length body, and that is all the tests need."""

from __future__ import annotations

import queue
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable


class EslError(Exception):
    pass


def _parse_headers(block: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.splitlines():
        name, _, value = line.partition(":")
        if name:
            headers[name.strip()] = urllib.parse.unquote(value.strip())
    return headers


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EslError("event socket closed")
        self.buffer += chunk

    def message(self) -> tuple[dict[str, str], str]:
        while b"\n\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\n\n", 1)
        headers = {}
        for line in head.decode().splitlines():
            name, _, value = line.partition(": ")
            headers[name] = value
        length = int(headers.get("Content-Length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return headers, body.decode(errors="replace")


class Esl:
    """One authenticated connection. ``api`` is synchronous; with ``events`` subscribed, a
    reader thread files every event in ``self.events`` and the api replies in their own queue."""

    def __init__(self, port: int, password: str = "ClueCon", timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = _Reader(self.sock)
        self.lock = threading.Lock()
        self.replies: queue.Queue[tuple[dict[str, str], str]] = queue.Queue()
        self.events: list[dict[str, str]] = []
        self.events_cond = threading.Condition()
        self.thread: threading.Thread | None = None
        headers, _ = self.reader.message()
        if headers.get("Content-Type") != "auth/request":
            raise EslError(f"unexpected greeting {headers}")
        reply = self._command(f"auth {password}")
        if not reply.get("Reply-Text", "").startswith("+OK"):
            raise EslError(f"auth refused: {reply}")

    def _command(self, line: str) -> dict[str, str]:
        self.sock.sendall(f"{line}\n\n".encode())
        headers, _ = self.reader.message()
        return headers

    def subscribe(self, spec: str = "ALL") -> None:
        """Start receiving events (``event plain <spec>``); replies then go through the reader."""
        with self.lock:
            self.sock.sendall(f"event plain {spec}\n\n".encode())
            headers, _ = self.reader.message()
            if not headers.get("Reply-Text", "").startswith("+OK"):
                raise EslError(f"event subscription refused: {headers}")
            self.sock.settimeout(None)
            self.thread = threading.Thread(target=self._read_loop, daemon=True, name="esl-events")
            self.thread.start()

    def _read_loop(self) -> None:
        try:
            while True:
                headers, body = self.reader.message()
                kind = headers.get("Content-Type")
                if kind == "text/event-plain":
                    event_head, _, event_body = body.partition("\n\n")
                    event = _parse_headers(event_head)
                    if event_body:
                        event["_body"] = event_body
                    with self.events_cond:
                        self.events.append(event)
                        self.events_cond.notify_all()
                elif kind in ("api/response", "command/reply"):
                    self.replies.put((headers, body))
                elif kind == "text/disconnect-notice":
                    return
        except (EslError, OSError):
            return

    def api(self, command: str, timeout: float = 30.0) -> str:
        with self.lock:
            self.sock.sendall(f"api {command}\n\n".encode())
            if self.thread is None:
                _, body = self.reader.message()
                return body
            _, body = self.replies.get(timeout=timeout)
            return body

    def wait_event(self, match: Callable[[dict[str, str]], bool], timeout: float = 20.0,
                   what: str = "an event") -> dict[str, str]:
        deadline = time.monotonic() + timeout
        with self.events_cond:
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if match(event):
                        return event
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {what} within {timeout}s")
                self.events_cond.wait(left)

    def close(self) -> None:
        try:
            self.sock.sendall(b"exit\n\n")
        except OSError:
            pass
        self.sock.close()
