"""Switch-side hold (``uuid_hold <uuid>``) that the held leg's peer really hears as music.

FreeSWITCH 1.10.12 (switch_ivr_hold, switch_ivr_bridge.c audio_bridge_thread): ``uuid_hold``
marks the leg held and *suspended* (CF_HOLD, CF_SUSPEND) and queues the hold music to its peer
as a broadcast (a private event: ``playback`` of the hold music, looped). The peer's bridge loop
runs private events only once it has read more than DEFAULT_LEAD_FRAMES (10) audio frames since
the bridge began — and while its partner is suspended it reads without counting. So a hold that
lands in the bridge's first ~11 frames (220 ms at 20 ms ptime) leaves the music queued and the
caller in silence for the whole hold; the unhold lets the loop count again and the queued music
then starts, looping, while the two parties talk (observed: tests/switch/test_cti.py, a hold
60 ms after the bridge; the music came 0.34 s after the unhold).

:func:`hold` therefore lets a fresh bridge settle before it holds: it waits until the peer's
bridge (``Caller-Channel-Bridged-Time`` of the peer) is :data:`LEAD_FRAMES` frames of the peer's
ptime old, twice over for a loaded switch, at most :data:`MAX_WAIT_S`. Holds later in a call
(nearly all) do not wait at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Execute = Callable[[str, str], str]

LEAD_FRAMES = 11        # switch_ivr_bridge.c: private events once read_frame_count > 10
SETTLE_FACTOR = 2       # margin: the loop starts a little after the bridge time, frames are late
DEFAULT_PTIME_MS = 20
MAX_WAIT_S = 2.0


def dump_fields(text: str) -> dict[str, str]:
    """``uuid_dump``'s ``Name: value`` lines (values URL-encoded as the switch gives them)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def settle_seconds(execute: Execute, uuid: str, now: float) -> float:
    """How long to wait before holding ``uuid`` so that its peer's bridge loop has counted
    past its lead frames (0 when it has, or when there is no bridged peer)."""
    peer = execute("uuid_getvar", f"{uuid} signal_bond").strip()
    if not peer or peer == "_undef_" or peer.startswith("-ERR"):
        return 0.0
    fields = dump_fields(execute("uuid_dump", peer))
    try:
        bridged_us = int(fields.get("Caller-Channel-Bridged-Time", "0") or 0)
    except ValueError:
        return 0.0
    if bridged_us <= 0:
        return 0.0
    try:
        ptime = int(fields.get("variable_rtp_use_codec_ptime", "") or DEFAULT_PTIME_MS)
    except ValueError:
        ptime = DEFAULT_PTIME_MS
    ptime = min(max(ptime, 10), 120)
    ready_at = bridged_us / 1e6 + SETTLE_FACTOR * LEAD_FRAMES * ptime / 1000
    return min(max(ready_at - now, 0.0), MAX_WAIT_S)


def hold(execute: Execute, uuid: str, *, clock: Callable[[], float] = time.time,
         sleep: Callable[[float], None] = time.sleep) -> str:
    """``uuid_hold <uuid>`` once the bridge is old enough for the peer to get the music; the
    switch's reply. ``execute`` is ``API().execute``: the wait is a Python sleep (the GIL is
    free meanwhile), never ``freeswitch.msleep``."""
    wait = settle_seconds(execute, uuid, clock())
    if wait > 0:
        sleep(wait)
    return execute("uuid_hold", uuid)
