"""Who may use the CTI server: users and roles from the settings, login tokens in Redis.

- Users (``users:`` in the settings) have a role — ``agent`` < ``supervisor`` < ``admin`` — and
  optionally their own extension; an agent may act only on that extension. Passwords are
  PBKDF2 hashes (:mod:`fsapps.server.passwords`); a login for an unknown user still runs one hash so
  the answer takes as long as for a known one.
- :meth:`Auth.login` answers a fresh random token. Only its SHA-256 lives in Redis
  (``p:{cti}:token:<sha256>``, EX ``cti.token_ttl_seconds``), so any number of stateless CTI
  servers share the sessions and a Redis dump holds no usable token. A token is revoked by
  deleting its key (:meth:`Auth.revoke`).
- The role and extension are read from the settings on every check, never from Redis: a user
  removed from the settings (or demoted) loses its rights at once.
- ``api_tokens:`` are fixed tokens for machine clients, with the admin role; they are compared
  in constant time.
- Failed logins are counted per user name and per client address for
  ``cti.login_window_seconds``; past ``cti.login_max_failures`` (per user) or
  ``cti.login_max_failures_per_address`` the login answers :class:`Throttled` without looking
  at the password. The counter is taken before the password is checked (one atomic INCR), so
  parallel guesses cannot slip past the limit; a successful login gives its count back.

Keys: :class:`fsapps.store.keys.CtiKeys`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fsapps.config import Settings, UserSettings
from fsapps.context import now_ms
from fsapps.errors import Denied
from fsapps.server.passwords import hash_password, verify_password
from fsapps.store.keys import CtiKeys

if TYPE_CHECKING:
    import redis
    from aiohttp import web

ROLES = ("agent", "supervisor", "admin")
RANK = {role: index for index, role in enumerate(ROLES)}
TOKEN_BYTES = 32
# Longer "tokens" are refused before any work is done for them.
MAX_TOKEN_LENGTH = 256
API_TOKEN_USER = "api-token"


def digest(text: str) -> str:
    """SHA-256 hex of ``text``: what goes into a key instead of a token, name or address."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class AuthError(Denied):
    """A request that is not allowed; ``status`` is its HTTP status."""

    status = 401

    def __init__(self, message: str, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(message)


class NotAuthorized(AuthError):
    """No token, an unknown / expired / revoked token, or wrong credentials (401)."""


class Forbidden(AuthError):
    """A valid user without the right to do this (403)."""

    status = 403


class Throttled(AuthError):
    """Too many failed logins (429); ``retry_after`` seconds until the window ends."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


@dataclass(frozen=True)
class Principal:
    """The user behind a request."""

    username: str
    role: str
    extension: str = ""
    token_hash: str = ""  # empty for api_tokens (they cannot be revoked by logout)
    domains: tuple[str, ...] = ()  # a supervisor's domains (empty: every one)

    def at_least(self, role: str) -> bool:
        return RANK.get(self.role, -1) >= RANK[role]

    def oversees(self, domain: str) -> bool:
        """A supervisor oversees its own domains (all when it names none); an admin all."""
        return self.at_least("admin") or (self.at_least("supervisor") and
                                           (not self.domains or domain in self.domains))

    def may_act_on(self, extension: str) -> bool:
        """Agents act only on their own extension; supervisors and admins on any."""
        if self.at_least("supervisor"):
            return True
        return bool(self.extension) and hmac.compare_digest(self.extension, extension)


class Auth:
    """Logins, token checks and revocation (blocking: call from a worker thread)."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.cti = settings.cti
        self.r = client
        self.keys = CtiKeys(settings.redis.key_prefix)
        self.users = {u.username: u for u in settings.users}
        self._dummy_hash: str | None = None

    # ---------------------------------------------------------------- login -------------
    def login(self, username: str, password: str, remote_addr: str) -> str:
        """A new token for ``username``. Raises NotAuthorized (wrong name or password: the
        same answer for both) or Throttled (too many failures: the password is not checked)."""
        user_key = self.keys.login_failures_user(digest(username))
        addr_key = self.keys.login_failures_address(digest(remote_addr or "-"))
        window = int(self.cti.login_window_seconds)
        pipe = self.r.pipeline(transaction=True)
        for key in (user_key, addr_key):
            pipe.set(key, 0, ex=window, nx=True)
            pipe.incr(key)
            pipe.ttl(key)
        _, user_count, user_ttl, _, addr_count, addr_ttl = pipe.execute()
        if int(user_count) > self.cti.login_max_failures:
            self._give_back(addr_key)  # the address did not get to try
            raise Throttled(f"too many failed logins for user {username!r}; try again later",
                            int(user_ttl))
        if int(addr_count) > self.cti.login_max_failures_per_address:
            self._give_back(user_key)
            raise Throttled("too many failed logins from this address; try again later",
                            int(addr_ttl))
        user = self.users.get(username)
        hashed = user.password_hash.reveal() if user else self._dummy()
        if not (verify_password(password, hashed) and user is not None):
            raise NotAuthorized("Not Authorized")
        # A success is not a failure: the user starts afresh, the address gets its try back.
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(user_key)
        pipe.decr(addr_key)
        pipe.execute()
        return self._issue(user)

    def _give_back(self, key: str) -> None:
        self.r.decr(key)

    def _dummy(self) -> str:
        # Same cost as a real user's hash (the first configured one's iterations), so timing
        # does not tell which user names exist.
        if self._dummy_hash is None:
            sample = next(iter(self.users.values()), None)
            iterations = 600_000
            if sample is not None:
                parts = sample.password_hash.reveal().split("$")
                if len(parts) == 4 and parts[1].isdigit():
                    iterations = int(parts[1])
            self._dummy_hash = hash_password(secrets.token_hex(16), iterations=iterations)
        return self._dummy_hash

    def _issue(self, user: UserSettings) -> str:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        token_hash = digest(token)
        ttl = int(self.cti.token_ttl_seconds)
        now = now_ms()
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.token(token_hash), mapping={"username": user.username,
                                                        "created": str(now)})
        pipe.expire(self.keys.token(token_hash), ttl)
        pipe.execute()
        return token

    # ---------------------------------------------------------------- checking ----------
    def check(self, token: str) -> Principal:
        """The principal of a token; NotAuthorized when it is unknown, expired, revoked or
        its user is no longer configured."""
        found = self.token_key(token)
        if isinstance(found, Principal):
            return found
        return self.principal_of(token, self.r.hget(found, "username"))

    def token_key(self, token: str) -> Principal | str:
        """:meth:`check`'s first half, no I/O: the principal of a configured API token, else
        the Redis hash whose ``username`` field names the token's user (NotAuthorized for a
        missing or malformed token). The CTI server's event loop reads that field itself,
        pipelined with the request's own reads
        (:func:`fsapps.server.access.authenticate_reading`)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise NotAuthorized("Not Authorized: missing or malformed token")
        for configured in self.settings.api_tokens:
            if hmac.compare_digest(configured.reveal().encode(), token.encode()):
                return Principal(API_TOKEN_USER, "admin")
        return self.keys.token(digest(token))

    def principal_of(self, token: str, username: str | None) -> Principal:
        """:meth:`check`'s second half: the principal of ``token`` given the ``username``
        its hash holds (None: unknown, expired or revoked)."""
        token_hash = digest(token)
        if not username:
            raise NotAuthorized("Not Authorized: unknown, expired or revoked token")
        user = self.users.get(str(username))
        if user is None:
            raise NotAuthorized("Not Authorized: the token's user is no longer configured")
        return Principal(user.username, user.role, user.extension, token_hash,
                         tuple(user.domains))

    def revoke(self, token: str) -> bool:
        """End one token's session. False when it was not a live token."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return False
        return bool(self.r.delete(self.keys.token(digest(token))))


# ------------------------------------------------------------------------ aiohttp --------
# (the route guard that checks a request's token through the server's services is
# fsapps.server.access: this module knows users and tokens, not the server)
def request_token(request: web.Request, query_key: bool = False) -> str:
    """The token of a request: ``Authorization: Nway <token>`` (seed 001; ``Bearer`` is taken
    too), else, with ``query_key``, the ``key`` query parameter (mod_cti's httpcli form)."""
    header = request.headers.get("Authorization", "").strip()
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("nway", "bearer"):
            return value.strip()
        return ""
    return request.query.get("key", "") if query_key else ""
