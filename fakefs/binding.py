"""Which fake switch a thread belongs to: ``import freeswitch`` (fakefs.fsmodule) and
``Event.fire`` talk to the switch bound to the calling thread, so several fake nodes can run
in one process. A thread started by Python code inside a switch belongs to the same switch.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fakefs.switch import Switch

_local = threading.local()

# Threads that Python code starts inside the switch (a runtime's helper thread) talk to the
# same switch as the thread that created them, as they would in a real FreeSWITCH process.
_thread_init = threading.Thread.__init__


def _inheriting_init(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
    _thread_init(self, *args, **kwargs)
    self._fakefs_switch = getattr(_local, "switch", None)  # type: ignore[attr-defined]


threading.Thread.__init__ = _inheriting_init  # type: ignore[method-assign]


def current_switch() -> Switch:
    switch = getattr(_local, "switch", None) or getattr(threading.current_thread(),
                                                        "_fakefs_switch", None)
    if switch is None:
        raise RuntimeError("no fake switch bound to this thread (use switch.bound())")
    return switch


def bind(switch: Switch | None) -> Switch | None:
    previous = getattr(_local, "switch", None)
    _local.switch = switch
    return previous
