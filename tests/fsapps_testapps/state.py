"""What the test apps saw, for the tests to read. A helper module: mod_python3 reloads only the
entry module named in the dialplan/api data, so this one keeps its state across calls."""

from __future__ import annotations

import threading
from typing import Any

records: list[tuple[str, dict[str, Any]]] = []
counters: dict[str, int] = {}
config: dict[str, Any] = {}
_flags: dict[str, threading.Event] = {}
_lock = threading.Lock()


def reset() -> None:
    with _lock:
        records.clear()
        counters.clear()
        config.clear()
        _flags.clear()


def record(kind: str, **data: Any) -> None:
    with _lock:
        records.append((kind, data))


def find(kind: str) -> list[dict[str, Any]]:
    with _lock:
        return [data for k, data in records if k == kind]


def count(name: str) -> int:
    with _lock:
        counters[name] = counters.get(name, 0) + 1
        return counters[name]


def flag(name: str) -> threading.Event:
    with _lock:
        return _flags.setdefault(name, threading.Event())
