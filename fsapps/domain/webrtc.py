"""The browser phone of the agent console: which extensions may register from a browser, and
the short-lived SIP password one CTI login gets for it (docs/webrtc.md).

Keys (``p`` = prefix, ``d`` = domain):

``p:{d}:webrtc:<ext>``  hash  PX ``webrtc.credential_ttl_seconds``; ``password`` (random, never
                              the directory's) and ``owner`` (SHA-256 of the CTI login token
                              that holds it); written only by the two scripts below

An extension is a WebRTC extension when its ``cti_exten@<d>`` record has ``param.webrtc``
true. Its REGISTERs (and INVITEs) arriving over WebSocket (``sip_via_protocol`` ws/wss in the
directory request) are authenticated with the live password of this hash instead of the
record's; its desk phone, if any, keeps the record's password over UDP/TCP. A second login of
the extension takes the password over or is refused (``webrtc.second_login``); the holder
learns it at its next renewal (``taken``), and its stale registration cannot be renewed since
the old password is gone.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from fsapps.context import Context
from fsapps.errors import Conflict
from fsapps.store.scripts import run_script

WS_TRANSPORTS = frozenset({"ws", "wss"})
_TRUE = frozenset({"true", "yes", "on", "1"})


class TakenOver(Conflict):
    """Another login holds (or took over) the extension's browser phone."""


def is_webrtc(param: dict[str, str]) -> bool:
    """The record's ``param.webrtc`` flag (case-insensitive true/yes/on/1)."""
    return param.get("webrtc", "").strip().lower() in _TRUE


@dataclass(frozen=True)
class Credential:
    password: str
    ttl_seconds: int


class BrowserPhones:
    """The browser-phone passwords of one domain."""

    def __init__(self, ctx: Context, domain: str) -> None:
        self.ctx = ctx
        self.keys = ctx.keys(domain)
        self.settings = ctx.settings.webrtc

    def claim(self, extension: str, owner: str, renew: bool = False) -> Credential:
        """The password ``owner`` (a token digest) registers ``extension``'s browser phone
        with: a fresh one, or the one it holds (its lifetime renewed). Raises TakenOver on a
        renewal another login took over, or a second login in "refuse" mode."""
        ttl = int(self.settings.credential_ttl_seconds)
        status, password = (str(x) for x in run_script(
            self.ctx.redis, "webrtc_claim", [self.keys.webrtc(extension)],
            [owner, secrets.token_urlsafe(24), ttl * 1000, self.settings.second_login,
             "1" if renew else "0"]))
        if status == "taken":
            raise TakenOver(f"the browser phone of {extension} was taken over by another "
                            "login (or expired): log in again to use it here")
        if status == "busy":
            raise TakenOver(f"the browser phone of {extension} is in use by another login "
                            "(webrtc.second_login: refuse)")
        return Credential(password, ttl)

    def release(self, extension: str, owner: str) -> bool:
        return bool(int(run_script(self.ctx.redis, "webrtc_release",
                                   [self.keys.webrtc(extension)], [owner])))

    def password(self, extension: str) -> str | None:
        """The live browser-phone password of ``extension``, None when no login holds one."""
        value = self.ctx.redis.hget(self.keys.webrtc(extension), "password")
        if isinstance(value, bytes):
            value = value.decode()
        return None if value is None else str(value)
