"""``xml_fetch(params, args)`` — the directory binding named in python.conf.xml.

Until the Redis directory lands (seed 003), it answers "" — "nothing from this binding" — so
FreeSWITCH falls back to its static XML. It never returns None (that crashes the switch).
"""

from __future__ import annotations

from typing import Any


def xml_fetch(params: Any, args: str = "") -> str:
    return ""
