"""Routes added to the CTI server by other features."""

from __future__ import annotations

from typing import Any


def install(app: Any, services: Any) -> None:
    """Routes added by other features (issue 9: CSTA, SockJS/STOMP, web pages)."""
    return None
