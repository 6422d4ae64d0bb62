"""What may go into a dial string: phone numbers, gateway names, extensions (pure, no I/O).

A dial string is a small language: ``{a=b}`` and ``[a=b]`` set leg variables, ``,`` rings
targets at once, ``|`` one after another, ``/`` and ``@`` separate endpoint parts, a space ends
the string. A value from a caller, a dialplan ``$0`` or an api argument that reaches a dial
string unchecked could ring other phones or set variables (``123,user/1000``, ``{x=y}123``).
So every such value passes one of these checks first; nothing is escaped or repaired — a
value that does not match is refused, and the caller names it in a log line.

- number: digits with an optional leading ``+`` (1 to 32 digits): ``18621575908``,
  ``+8613800000000``, ``0018621575908``.
- gateway: ``[A-Za-z0-9_.-]+`` (a sofia gateway name), at most 64 characters.
- extension: ``[A-Za-z0-9_.-]+`` (a directory user id), at most 64 characters.
"""

from __future__ import annotations

import re

from fsapps.errors import BadInput

__all__ = ["BadDialValue", "check_extension", "check_gateway", "check_number",
           "valid_extension", "valid_gateway", "valid_number"]

_NUMBER = re.compile(r"\+?[0-9]{1,32}")
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class BadDialValue(BadInput, ValueError):
    """A number, gateway or extension that must not reach a dial string."""

    def __init__(self, what: str, value: object) -> None:
        self.what = what
        self.value = value
        super().__init__(f"invalid {what} {value!r}")


def valid_number(text: object) -> bool:
    """True when ``text`` is a phone number: digits, optional leading ``+``, nothing else."""
    return isinstance(text, str) and _NUMBER.fullmatch(text) is not None


def valid_gateway(text: object) -> bool:
    """True when ``text`` is a gateway name ``[A-Za-z0-9_.-]+`` (at most 64 characters)."""
    return isinstance(text, str) and _NAME.fullmatch(text) is not None


def valid_extension(text: object) -> bool:
    """True when ``text`` is an extension ``[A-Za-z0-9_.-]+`` (at most 64 characters)."""
    return isinstance(text, str) and _NAME.fullmatch(text) is not None


def check_number(text: object) -> str:
    """``text`` if :func:`valid_number`, else BadDialValue naming it."""
    if not valid_number(text):
        raise BadDialValue("number", text)
    return str(text)


def check_gateway(text: object) -> str:
    """``text`` if :func:`valid_gateway`, else BadDialValue naming it."""
    if not valid_gateway(text):
        raise BadDialValue("gateway", text)
    return str(text)


def check_extension(text: object) -> str:
    """``text`` if :func:`valid_extension`, else BadDialValue naming it."""
    if not valid_extension(text):
        raise BadDialValue("extension", text)
    return str(text)
