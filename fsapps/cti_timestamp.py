"""``python fsapps.cti_timestamp``: the switch's current time in microseconds since the epoch
(mod_cti's ``cti_timestamp``), the unit of the Created-Time / Answered-Time stamps in
``cti_userinfo@<domain>``: a call's age is this minus its Created-Time."""

from __future__ import annotations

import time
from typing import Any


def timestamp_us() -> int:
    return time.time_ns() // 1000


def fsapi(session: Any, stream: Any, env: Any, args: str = "") -> None:
    stream.write(f"{timestamp_us()}\n")
