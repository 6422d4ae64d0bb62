"""The threads fsapps starts carry their own names for the system.

In the switch they are a handful among ~1,000 threads all named ``freeswitch``, and a thread
takes its creator's name: without names of their own, ``top -H``, ``ps -L`` and perf could not
tell the runtime's threads from the switch's, nor those fsapps starts from a named one (the
cti_bridge senders, the NATS and AMQP publishers) from their creator (docs/operations.md).
"""

from __future__ import annotations

import ctypes
import functools

PREFIX = "fsapps-"
MAX_LEN = 15  # what Linux keeps of a thread's name (16 bytes with the final NUL)


@functools.cache
def _libc() -> ctypes.CDLL:
    """The process's C library, loaded once (pthread_self answers a pthread_t)."""
    libc = ctypes.CDLL(None)
    libc.pthread_self.restype = ctypes.c_ulong
    return libc


def name_os_thread(name: str) -> None:
    """Name the calling thread ``fsapps-<name>`` (cut to 15 characters). Best effort."""
    try:
        libc = _libc()
        libc.pthread_setname_np(ctypes.c_ulong(libc.pthread_self()),
                                f"{PREFIX}{name}"[:MAX_LEN].encode())
    except (OSError, AttributeError):
        pass
