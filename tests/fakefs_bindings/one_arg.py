"""The sample in the FreeSWITCH tree: ``xml_fetch(params)`` with ONE parameter. mod_python3
calls it with two, so it raises (logged) and the switch falls back to its static XML."""

from __future__ import annotations

from typing import Any


def xml_fetch(params: Any) -> str:  # pragma: no cover - never called successfully
    return ""
