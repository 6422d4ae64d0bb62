"""The one exception tree of fsapps.

Every error raised on purpose derives from :class:`FsappsError`; its message names the bad
value (``{value!r}``) so a log line alone tells an engineer what to fix.
"""


class FsappsError(Exception):
    """Root of every error fsapps raises on purpose."""


class ConfigError(FsappsError):
    """The configuration file or an environment override holds an invalid value."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"config: {key} = {value!r}: {reason}")


class DatabaseError(FsappsError):
    """PostgreSQL refused or could not run a statement we needed."""


class MigrationError(DatabaseError):
    """A schema migration is malformed or failed to apply."""


class StoreUnavailable(FsappsError):
    """Redis or PostgreSQL cannot be reached right now (the caller decides how to degrade)."""


class ScriptError(FsappsError):
    """A Lua script is missing or failed inside Redis."""
