"""STOMP 1.1 frames (https://stomp.github.io/stomp-specification-1.1.html) — codec only, no I/O.

A frame is ``COMMAND\\n`` + ``name:value\\n`` headers + ``\\n`` + body + ``\\0``. A lone
end-of-line between frames is a heart-beat. In 1.1 header names and values escape ``\\``,
line feed and ``:`` (``\\\\``, ``\\n``, ``\\c``), except in CONNECT and CONNECTED frames, which
1.0 clients must be able to read. The :class:`Parser` takes text in whatever pieces the
transport delivers (a SockJS message may hold half a frame or several) and yields whole frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from fsapps.errors import BadInput

HEARTBEAT = "\n"
CLIENT_COMMANDS = frozenset({"CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "BEGIN",
                             "COMMIT", "ABORT", "ACK", "NACK", "DISCONNECT"})
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
_NO_ESCAPE = frozenset({"CONNECT", "CONNECTED"})
# A frame bigger than this is refused: a client can not make the server buffer without end.
MAX_FRAME = 64 * 1024

_ESCAPES = {"\\": "\\\\", "\n": "\\n", ":": "\\c", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "n": "\n", "c": ":", "r": "\r"}


class StompError(BadInput):
    """A frame that is not STOMP 1.1; the message quotes the offending part."""


@dataclass(frozen=True)
class Frame:
    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    def encode(self) -> str:
        """The frame's wire text, ending in NUL. ``content-length`` is not added: bodies here
        are JSON text, which never holds a NUL."""
        escape = self.command not in _NO_ESCAPE
        lines = [self.command]
        for name, value in self.headers.items():
            if escape:
                name, value = _escape(name), _escape(value)
            elif "\n" in name + value:
                raise StompError(f"header {name!r} of {self.command} holds a line break")
            lines.append(f"{name}:{value}")
        return "\n".join(lines) + "\n\n" + self.body + "\0"


def _escape(text: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out = []
    chars = iter(text)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")
        if nxt not in _UNESCAPES:
            raise StompError(f"undefined escape \\{nxt} in header {text!r}")
        out.append(_UNESCAPES[nxt])
    return "".join(out)


def parse_frame(text: str) -> Frame:
    """One frame's text without its NUL (leading end-of-lines, i.e. heart-beats, skipped)."""
    text = text.lstrip("\r\n")
    head, sep, body = text.partition("\n\n")
    if not sep:
        head, sep, body = text.partition("\r\n\r\n")
    if not sep:
        raise StompError(f"frame without a blank line after its headers: {text[:80]!r}")
    lines = head.replace("\r\n", "\n").split("\n")
    command = lines[0].strip()
    if command not in CLIENT_COMMANDS | SERVER_COMMANDS:
        raise StompError(f"unknown STOMP command {command!r}")
    headers: dict[str, str] = {}
    escaped = command not in _NO_ESCAPE
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise StompError(f"header line without a colon: {line!r}")
        if escaped:
            name, value = _unescape(name), _unescape(value)
        headers.setdefault(name, value)  # 1.1: the first of repeated headers counts
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise StompError(f"content-length {length!r} is not a number")
        body = body[:int(length)]
    return Frame(command, headers, body)


class Parser:
    """Incremental parser: :meth:`feed` text, get the frames it completes; heart-beats between
    frames are counted in :attr:`heartbeats` and otherwise ignored."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = ""
        self.max_frame = max_frame
        self.heartbeats = 0

    def feed(self, text: str) -> Iterator[Frame]:
        self._buffer += text
        while True:
            stripped = self._buffer.lstrip("\r\n")
            self.heartbeats += self._buffer[:len(self._buffer) - len(stripped)].count("\n")
            self._buffer = stripped
            end = self._buffer.find("\0")
            if end < 0:
                if len(self._buffer) > self.max_frame:
                    raise StompError(f"frame larger than {self.max_frame} characters")
                return
            raw, self._buffer = self._buffer[:end], self._buffer[end + 1:]
            yield parse_frame(raw)


def negotiate_heartbeat(client: str, server_send_ms: int, server_recv_ms: int) -> tuple[int, int]:
    """(how often the server sends, how often it expects to hear), in ms, from the client's
    ``heart-beat: cx,cy`` header and the server's own ``sx,sy`` (spec 1.1: sending every
    max(sx, cy) when both are non-zero; 0 disables)."""
    try:
        cx_text, cy_text = (client or "0,0").split(",")
        cx, cy = int(cx_text), int(cy_text)
    except ValueError:
        raise StompError(f"invalid heart-beat header {client!r}") from None
    if cx < 0 or cy < 0:
        raise StompError(f"invalid heart-beat header {client!r}")
    send = 0 if not (server_send_ms and cy) else max(server_send_ms, cy)
    recv = 0 if not (server_recv_ms and cx) else max(server_recv_ms, cx)
    return send, recv
