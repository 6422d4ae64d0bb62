"""A browser-like SIP-over-WebSocket client (RFC 7118) without media, for the WebRTC bench row
and the real-switch tests: it opens a ``sip`` sub-protocol WebSocket to sofia's ws-binding
and REGISTERs with digest authentication as JsSIP does (``transport=ws`` contact with an
``.invalid`` host, ``Via: SIP/2.0/WS``), answers OPTIONS, and refuses INVITEs with 486 (or
counts them). One asyncio task per client, so one process holds thousands.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass, field

import aiohttp


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # SIP digest is MD5


def digest_header(challenge: str, method: str, uri: str, user: str, password: str) -> str:
    """The Authorization header value answering a ``WWW-Authenticate: Digest ...``."""
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.split(" ", 1)[1]))
    realm, nonce = fields["realm"], fields["nonce"]
    ha1 = _md5(f"{user}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    parts = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
             "algorithm=MD5"]
    if "auth" in fields.get("qop", "").split(","):
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        parts += [f'cnonce="{cnonce}"', f"nc={nc}", "qop=auth"]
    else:
        response = _md5(f"{ha1}:{nonce}:{ha2}")
    parts.append(f'response="{response}"')
    if "opaque" in fields:
        parts.append(f'opaque="{fields["opaque"]}"')
    return "Digest " + ", ".join(parts)


def parse(message: str) -> tuple[str, dict[str, str]]:
    """(first line, headers by lower-case name; the first of repeated ones)."""
    head = message.split("\r\n\r\n", 1)[0].split("\r\n")
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return head[0], headers


@dataclass
class WsPhone:
    """One browser-like registration: ``await register()``, ``await close()``."""

    url: str
    user: str
    password: str
    domain: str
    expires: int = 600
    invites: int = 0
    registered: bool = False
    call_id: str = field(default_factory=lambda: secrets.token_hex(10))
    instance: str = field(default_factory=lambda: secrets.token_hex(4))
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _session: aiohttp.ClientSession | None = None
    _reader: asyncio.Task[None] | None = None
    _responses: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    _cseq: int = 0

    async def connect(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session or aiohttp.ClientSession()
        self._own_session = session is None
        self._ws = await self._session.ws_connect(self.url, protocols=("sip",), heartbeat=None,
                                                  autoping=True)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            text = msg.data
            first, headers = parse(text)
            if first.startswith("SIP/2.0"):
                await self._responses.put(text)
            else:
                await self._answer_request(first, headers)

    async def _answer_request(self, first: str, headers: dict[str, str]) -> None:
        method = first.split(" ", 1)[0]
        if method == "ACK":
            return
        if method == "INVITE":
            self.invites += 1
        status = "486 Busy Here" if method == "INVITE" else "200 OK"
        reply = (f"SIP/2.0 {status}\r\nVia: {headers.get('via', '')}\r\n"
                 f"From: {headers.get('from', '')}\r\n"
                 f"To: {headers.get('to', '')};tag={self.instance}\r\n"
                 f"Call-ID: {headers.get('call-id', '')}\r\nCSeq: {headers.get('cseq', '')}\r\n"
                 "Content-Length: 0\r\n\r\n")
        assert self._ws is not None
        await self._ws.send_str(reply)

    def _register_text(self, expires: int, auth: str = "") -> str:
        self._cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(8)
        return (f"REGISTER sip:{self.domain} SIP/2.0\r\n"
                f"Via: SIP/2.0/WS {self.instance}.invalid;branch={branch}\r\n"
                "Max-Forwards: 69\r\n"
                f"To: <sip:{self.user}@{self.domain}>\r\n"
                f"From: <sip:{self.user}@{self.domain}>;tag={self.instance}\r\n"
                f"Call-ID: {self.call_id}\r\nCSeq: {self._cseq} REGISTER\r\n"
                f"Contact: <sip:{self.instance}@{self.instance}.invalid;transport=ws>;"
                f"expires={expires}\r\n"
                f"Expires: {expires}\r\n"
                + (f"Authorization: {auth}\r\n" if auth else "")
                + "User-Agent: fsapps-wssip\r\nContent-Length: 0\r\n\r\n")

    async def register(self, expires: int | None = None, timeout: float = 10.0) -> int:
        """REGISTER (answering one digest challenge); the final status code."""
        expires = self.expires if expires is None else expires
        assert self._ws is not None
        await self._ws.send_str(self._register_text(expires))
        first, headers = parse(await asyncio.wait_for(self._responses.get(), timeout))
        if first.split()[1] == "401":
            auth = digest_header(headers["www-authenticate"], "REGISTER", f"sip:{self.domain}",
                                 self.user, self.password)
            await self._ws.send_str(self._register_text(expires, auth))
            first, headers = parse(await asyncio.wait_for(self._responses.get(), timeout))
        code = int(first.split()[1])
        self.registered = code == 200 and expires > 0
        return code

    async def close(self, unregister: bool = True) -> None:
        if self._ws is not None and not self._ws.closed:
            if unregister and self.registered:
                try:
                    await self.register(expires=0, timeout=5)
                except (TimeoutError, ConnectionError):
                    pass
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
        if self._session is not None and getattr(self, "_own_session", False):
            await self._session.close()
