"""The HTTP answer to an fsapps error, by its type: one table for the seed REST API
(:mod:`fsapps.server.app`) and the wellClient calls (:mod:`fsapps.server.csta.rest`).

An error whose instance says its ``status`` (ApiError, CstaError, AuthError and its
subclasses, the node errors of :mod:`fsapps.switch.nodecommands`: 503 no live node, 504 no
answer) answers that status; any other error answers the status of the first base of
:mod:`fsapps.errors` it derives from (``isinstance``, most specific first), so a subclass
answers as its parent does: a DatabaseUnavailableError is an Unavailable, 503; NoSuchChannel a
NotFound, 404.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsapps.errors import (
    BadInput,
    Conflict,
    Denied,
    FsappsError,
    InternalError,
    NotFound,
    Unavailable,
)

# Most specific first; an error under none of these bases (a bare FsappsError, a ClientError)
# is a refusal of the current state: 409, as the switch's own -ERR answers.
STATUS_BY_TYPE: tuple[tuple[type[FsappsError], int], ...] = (
    (BadInput, 400),
    (NotFound, 404),
    (Conflict, 409),
    (Denied, 403),
    (Unavailable, 503),
    (InternalError, 500),
)
DEFAULT_STATUS = 409


@dataclass(frozen=True)
class HttpError:
    """What a route answers for an error: the status, the JSON ``error`` text, the ``field``
    it names and extra headers."""

    status: int
    message: str
    field: str | None = None
    headers: dict[str, str] | None = None


def status_of(exc: FsappsError) -> int:
    status = getattr(exc, "status", None)
    if isinstance(status, int) and 400 <= status < 600:
        return status
    for kind, by_type in STATUS_BY_TYPE:
        if isinstance(exc, kind):
            return by_type
    return DEFAULT_STATUS


def http_error(exc: FsappsError) -> HttpError:
    """The answer to ``exc``: its status (:func:`status_of`); its ``message`` (else its text;
    an unreachable store or database without a status of its own says ``service
    unavailable: ...``); ``Retry-After`` when it says when to retry; ``WWW-Authenticate``
    on a 401."""
    status = status_of(exc)
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, Unavailable) and not isinstance(getattr(exc, "status", None), int):
        message = f"service unavailable: {exc}"
    headers: dict[str, str] = {}
    retry = getattr(exc, "retry_after", None)
    if retry:
        headers["Retry-After"] = str(retry)
    if status == 401:
        headers["WWW-Authenticate"] = 'Nway realm="fsapps"'
    field = getattr(exc, "field", None)
    return HttpError(status, message, field if isinstance(field, str) else None,
                     headers or None)
