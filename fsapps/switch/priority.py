"""Python's work in the switch runs one step ahead of the switch's media (``python_priority``).

One GIL serves every Python thread of the switch. FreeSWITCH runs all its threads as realtime
``SCHED_FIFO`` priority 1 (unless started with ``-nort``): a thread woken to take the GIL, or
by Redis' reply, queues behind every media thread that is ready to run, and meanwhile every
other Python thread waits for it. At 500 agents x 40 calls/s each Redis round trip of the
thread that frees agents waited 0.1-1 s so (docs/performance-switch.md). So Python runs one
step above the switch's own scheduling - realtime priority + 1, or for a switch that is not
realtime a nice value 10 lower: the runtime's threads for good, and the threads the switch
lends (a call's handler, fsapps.switch.entry; a directory lookup, fsapps.directory) while
they run Python, their media work (``session.execute`` and the other calls that let go of
the GIL while the switch plays, bridges or waits) at the switch's own.
Python is a small part of the switch's CPU and always soon blocks on Redis or the switch:
it cannot starve the media (and Linux keeps 5 % of each second for ordinary threads anyway).

Raising a priority needs CAP_SYS_NICE (root, or ``AmbientCapabilities=CAP_SYS_NICE`` in the
service unit; realtime also ``LimitRTPRIO``). Refused, the refusal is logged once and Python
runs at the switch's own priority, as with ``python_priority: same``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from fsapps.fslog import log

AHEAD = "ahead"  # python_priority: one step above the switch
SAME = "same"    # python_priority: the switch's own
NICE_STEP = 10   # how far ahead Python runs on a switch that is not realtime
_REALTIME = (os.SCHED_FIFO, os.SCHED_RR)

# the Session calls that let go of the GIL while the switch works (FREESWITCH.md)
MEDIA_CALLS = frozenset({
    "execute", "hangup", "streamFile", "sleep", "playAndGetDigits", "getDigits", "read",
    "say", "sayPhrase", "speak", "transfer", "recordFile", "originate"})

_refused = threading.Event()  # the system refused a raise once: not asked again
_SWITCH: dict[int, Scheduling] = {}  # process id -> the switch's scheduling


@dataclass(frozen=True)
class Scheduling:
    """A thread's scheduling: its policy and realtime priority, or (not realtime) its nice
    value."""

    policy: int
    priority: int = 0
    nice: int = 0

    @classmethod
    def of_switch(cls) -> Scheduling:
        """The switch's own: its main thread's (Linux keeps scheduling per thread, and the
        process id names the main one), which every thread of the switch starts with. Read
        once per process: the switch sets it at its start."""
        pid = os.getpid()
        known = _SWITCH.get(pid)
        if known is not None:
            return known
        policy = os.sched_getscheduler(pid)
        if policy in _REALTIME:
            known = cls(policy, os.sched_getparam(pid).sched_priority)
        else:
            known = cls(policy, 0, os.getpriority(os.PRIO_PROCESS, pid))
        _SWITCH[pid] = known
        return known

    @classmethod
    def of_thread(cls) -> Scheduling:
        """The calling thread's own (0 names the caller)."""
        policy = os.sched_getscheduler(0)
        if policy in _REALTIME:
            return cls(policy, os.sched_getparam(0).sched_priority)
        return cls(policy, 0, os.getpriority(os.PRIO_PROCESS, 0))

    def rank(self) -> tuple[int, int]:
        """Orders schedulings: any realtime one above any other, then by priority or nice."""
        return (1, self.priority) if self.policy in _REALTIME else (0, -self.nice)

    def ahead(self) -> Scheduling | None:
        """One step above this; None when nothing is above it."""
        if self.policy in _REALTIME:
            if self.priority >= os.sched_get_priority_max(self.policy):
                return None
            return Scheduling(self.policy, self.priority + 1)
        if self.nice <= -20:
            return None
        return Scheduling(self.policy, 0, max(-20, self.nice - NICE_STEP))

    def apply(self) -> bool:
        """Make it the calling thread's. False when refused (the first refusal is logged)."""
        if _refused.is_set():
            return False
        try:
            if self.policy in _REALTIME:
                os.sched_setscheduler(0, self.policy, os.sched_param(self.priority))
            else:
                os.setpriority(os.PRIO_PROCESS, 0, self.nice)
            return True
        except OSError as exc:
            if not _refused.is_set():
                _refused.set()
                log("WARNING", f"python_priority {AHEAD}: the system refused it "
                               f"({exc.strerror}); Python runs at the switch's priority "
                               "(it needs CAP_SYS_NICE)")
            return False


def run_python_first(setting: str) -> Scheduling | None:
    """Run the calling thread's Python one step ahead of the switch (``setting`` AHEAD).
    Returns the thread's own scheduling, to give back and to do media work at; None when
    nothing changed (a thread at or above that step already - one of the runtime's, or a
    switch thread of a higher priority - is left as it is)."""
    if setting != AHEAD or _refused.is_set():
        return None
    try:
        ahead = Scheduling.of_switch().ahead()
        own = Scheduling.of_thread()
    except OSError:
        return None
    if ahead is None or own.rank() >= ahead.rank():
        return None
    return own if ahead.apply() else None


def give_back(before: Scheduling | None) -> None:
    """The thread's own scheduling again, after :func:`run_python_first` (None: nothing to
    do): the switch reuses the threads it lends a call's handler."""
    if before is not None:
        before.apply()


class Session:
    """A call's session whose media calls run at the thread's own scheduling (``media``: as
    the switch lent it) and the Python after them one step ahead of the switch again;
    everything else is the session's own."""

    def __init__(self, session: Any, media: Scheduling) -> None:
        self._session = session
        self._media = media
        self._python = Scheduling.of_switch().ahead() or media

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._session, name)
        if name not in MEDIA_CALLS:
            return attribute

        def at_media_priority(*args: Any) -> Any:
            self._media.apply()
            try:
                return attribute(*args)
            finally:
                self._python.apply()
        return at_media_priority

    def __repr__(self) -> str:
        return f"<{type(self._session).__name__}, Python ahead of its media>"
