"""What the test apps saw, for the tests to read. A helper module: mod_python3 reloads only the
entry module named in the dialplan/api data, so this one keeps its state across calls.

In a real FreeSWITCH (tests/switch) the apps run in the switch's process: with
``TESTAPPS_REPORT`` naming a file in the switch's environment, every record is also appended
to it as one JSON line ``{"kind": ..., "data": {...}}`` for the test to read."""

from __future__ import annotations

import json
import os
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
        report = os.environ.get("TESTAPPS_REPORT")
        if report:
            with open(report, "a", encoding="utf-8") as out:
                out.write(json.dumps({"kind": kind, "data": data}, default=str) + "\n")


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
