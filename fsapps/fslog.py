"""Logging that goes to FreeSWITCH's console inside the switch and to structured logging
outside it (CLI, CTI server, tests without a bound switch)."""

from __future__ import annotations

import logging

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "NOTICE": logging.INFO,
           "WARNING": logging.WARNING, "ERR": logging.ERROR, "CRIT": logging.CRITICAL}
_logger = logging.getLogger("fsapps")


def log(level: str, message: str) -> None:
    """Log ``message`` at a FreeSWITCH level name (DEBUG, INFO, NOTICE, WARNING, ERR, CRIT)."""
    try:
        import freeswitch

        freeswitch.consoleLog(level, f"[fsapps] {message}\n")
        return
    except (ImportError, RuntimeError):
        pass
    _logger.log(_LEVELS.get(level, logging.INFO), message)
