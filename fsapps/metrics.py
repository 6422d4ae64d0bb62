"""In-process timings of the hot paths (routing decisions), for ``make bench`` and
diagnostics. Off by default: :func:`timed` then costs one attribute check.

    with metrics.timed("route_decision"):
        ...

records wall time and the calling thread's CPU time per sample while :data:`ENABLED`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

ENABLED = False
_lock = threading.Lock()
_samples: dict[str, list[tuple[float, float]]] = {}


def enable(on: bool = True) -> None:
    global ENABLED
    ENABLED = on


@contextmanager
def timed(name: str) -> Iterator[None]:
    if not ENABLED:
        yield
        return
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        sample = (time.perf_counter() - wall, time.thread_time() - cpu)
        with _lock:
            _samples.setdefault(name, []).append(sample)


def start() -> tuple[float, float] | None:
    """Start a timing that :func:`stop` records (None while disabled)."""
    return (time.perf_counter(), time.thread_time()) if ENABLED else None


def stop(name: str, started: tuple[float, float] | None) -> None:
    if started is None:
        return
    sample = (time.perf_counter() - started[0], time.thread_time() - started[1])
    with _lock:
        _samples.setdefault(name, []).append(sample)


def samples(name: str) -> list[tuple[float, float]]:
    with _lock:
        return list(_samples.get(name, []))


def reset() -> None:
    with _lock:
        _samples.clear()
