"""The one exception tree of fsapps.

Every error raised on purpose derives from :class:`FsappsError` through one of the bases below,
which say what kind of failure it is, so a front end maps an error by its type (``isinstance``),
never by its name, and a subclass answers as its base does::

    FsappsError
    ├── ClientError      the request is wrong, not fsapps (a 4xx); ApiError / CstaError carry
    │   │                their own ``status``
    │   ├── BadInput     a value that cannot be used (400)
    │   ├── NotFound     what the request names does not exist (404)
    │   ├── Conflict     a valid request the current state refuses (409)
    │   └── Denied       who asks may not (401 / 403 / 429: AuthError carries the ``status``)
    ├── Unavailable      Redis, PostgreSQL or a switch node cannot be reached now (503)
    │   ├── StoreUnavailable, DatabaseError (and MigrationError, DatabaseUnavailableError)
    ├── InternalError    fsapps itself is misconfigured or broken (500): ConfigError, ScriptError
    └── CallerGone       not a failure: the caller hung up; the switch app stops routing

An error whose class sets ``status`` (an HTTP status) answers that status; the bases set none.
Classes specific to one module live in that module and subclass a base from here. Each message
names the bad value (``{value!r}``) so a log line alone tells an engineer what to fix.
"""


class FsappsError(Exception):
    """Root of every error fsapps raises on purpose."""


class ClientError(FsappsError):
    """The request (a command, an API call, a frame, a router's answer) is what is wrong."""


class BadInput(ClientError):
    """A value that cannot be used: malformed, out of range, of the wrong kind."""


class NotFound(ClientError):
    """What the request names (an agent, a group, a channel, a node) does not exist."""


class Conflict(ClientError):
    """A valid request that the current state refuses (a busy extension, a state change the
    transition table does not allow, a taken alias)."""


class Denied(ClientError):
    """Who asks may not: not authenticated, not authorised, or throttled."""


class Unavailable(FsappsError):
    """Something fsapps needs (Redis, PostgreSQL, a switch node) cannot be reached right now;
    the same request may succeed later."""


class InternalError(FsappsError):
    """fsapps itself is misconfigured or broken: no request could succeed until it is fixed."""


class CallerGone(FsappsError):
    """The caller hung up (or the channel left us): the switch app stops routing and frees
    what it holds. Raised by :func:`fsapps.switch.session.ensure_up`; never reaches a front
    end."""


class ConfigError(InternalError):
    """The configuration file or an environment override holds an invalid value."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"config: {key} = {value!r}: {reason}")


class DatabaseError(Unavailable):
    """PostgreSQL refused or could not run a statement we needed."""


class MigrationError(DatabaseError):
    """A schema migration is malformed or failed to apply."""


class StoreUnavailable(Unavailable):
    """Redis or PostgreSQL cannot be reached right now (the caller decides how to degrade)."""


class ScriptError(InternalError):
    """A Lua script is missing or failed inside Redis."""
