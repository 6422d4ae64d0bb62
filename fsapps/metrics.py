"""In-process timings of the hot paths (routing decisions), for ``make bench`` and
diagnostics. Off by default: :func:`timed` then costs one attribute check.

    with metrics.timed("route_decision"):
        ...

records wall time, the calling thread's CPU time (and Redis round trips, when counted) per
sample while :data:`ENABLED`.

Counters are always on (one locked addition each): :func:`count` adds to a named counter of
a node, :func:`stop` counts its name too (every routing and dispatch decision), and each
node's runtime publishes its :func:`counts` with its heartbeat for ``/metrics``
(:mod:`fsapps.domain.nodes`). Counters are kept per node name, not per process: a real
switch is one node per process, but fakefs runs several nodes in one (the demo, the
multi-node tests), each of which must report only its own calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ENABLED = False
_lock = threading.Lock()
_samples: dict[str, list[tuple[float, ...]]] = {}
_counts: dict[str, dict[str, int]] = {}  # node -> counter name -> value
# Optional: the calling thread's Redis round-trip count so far (``make bench`` installs one),
# recorded per sample as a third value.
round_trips: Callable[[], int] | None = None


def enable(on: bool = True) -> None:
    global ENABLED
    ENABLED = on


@contextmanager
def timed(name: str) -> Iterator[None]:
    started = start()
    try:
        yield
    finally:
        stop(name, started)


def start() -> tuple[float, ...] | None:
    """Start a timing that :func:`stop` records (None while disabled)."""
    if not ENABLED:
        return None
    return (time.perf_counter(), time.thread_time(), round_trips() if round_trips else 0)


def stop(name: str, started: tuple[float, ...] | None, node: str = "") -> None:
    """Record (wall seconds, thread CPU seconds, Redis round trips) since ``started``, and
    count one ``name`` of ``node`` whether timings are enabled or not."""
    count(name, node=node)
    if started is None:
        return
    sample = (time.perf_counter() - started[0], time.thread_time() - started[1],
              (round_trips() if round_trips else 0) - started[2])
    with _lock:
        _samples.setdefault(name, []).append(sample)


def count(name: str, n: int = 1, node: str = "") -> None:
    """Add ``n`` to ``node``'s counter ``name``."""
    _add(node, ((name, n),))


def _add(node: str, amounts: tuple[tuple[str, int], ...]) -> None:
    with _lock:
        counters = _counts.setdefault(node, {})
        for name, n in amounts:
            counters[name] = counters.get(name, 0) + n


# Latency histograms (:func:`observe`): the bounds of their buckets, in ms.
BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000)


def observe(name: str, ms: float, node: str = "") -> None:
    """Count one latency of ``ms`` in ``node``'s histogram ``name``, as counters (always on, shipped
    with the heartbeat like the others): ``<name>_le_<bound>`` for the first bucket of
    :data:`BUCKETS_MS` it fits in (``<name>_le_inf`` past the last), ``<name>_count`` and
    ``<name>_sum_us``."""
    bound = next((str(b) for b in BUCKETS_MS if ms <= b), "inf")
    _add(node, ((f"{name}_le_{bound}", 1), (f"{name}_count", 1),
                (f"{name}_sum_us", int(ms * 1000))))


def histogram(counters: dict[str, int], name: str) -> list[tuple[float, int]]:
    """The buckets :func:`observe` counted in ``counters`` (a node's, or a difference of two
    readings): (upper bound in ms, how many), each bucket on its own, in order."""
    bounds = [*BUCKETS_MS, float("inf")]
    return [(float(b), counters.get(f"{name}_le_{b if b != float('inf') else 'inf'}", 0))
            for b in bounds]


def quantile(buckets: list[tuple[float, int]], q: float) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile (0 < q <= 1) of
    :func:`histogram`'s buckets: "at most this many ms"; None when nothing was counted."""
    total = sum(n for _, n in buckets)
    if not total:
        return None
    seen = 0
    for bound, n in buckets:
        seen += n
        if seen >= q * total:
            return bound
    return buckets[-1][0]


def counts(node: str = "") -> dict[str, int]:
    """Every counter of ``node`` since its process started."""
    with _lock:
        return dict(_counts.get(node, {}))


def samples(name: str) -> list[tuple[float, ...]]:
    with _lock:
        return list(_samples.get(name, []))


def reset() -> None:
    with _lock:
        _samples.clear()
