"""Logging that goes to FreeSWITCH's console inside the switch and to structured logging
outside it (CLI, CTI server, tests without a bound switch)."""

from __future__ import annotations

import json
import logging
import sys
import time

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


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any) —
    what log shippers read without a parsing rule."""

    def format(self, record: logging.LogRecord) -> str:
        data = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
                + f".{int(record.msecs):03d}", "level": record.levelname,
                "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(level: str = "INFO", stream: object = None) -> None:
    """Structured logging for fsapps processes outside the switch (CLI, CTI server)."""
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(JsonLines())
    _logger.handlers[:] = [handler]
    _logger.setLevel(_LEVELS.get(level.upper(), logging.INFO))
    _logger.propagate = False
