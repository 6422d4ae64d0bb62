"""Pure mappings from fsapps' Redis state to the JSON rows of seed 001's API (the choice of an
extension's call to act on is :mod:`fsapps.services.calls`). No I/O: unit-tested on plain
data.
"""

from __future__ import annotations

from datetime import datetime

from fsapps.domain.agents import Agent
from fsapps.domain.callqueue import WaitingCall


def local_stamp(ms: int) -> str:
    """``YYYY-MM-DD HH:MM:SS`` local time (the seed's time format); "" for 0."""
    if ms <= 0:
        return ""
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def rfc3339(ms: int) -> str:
    """What Go's ``time.Time`` marshals to (the seed's CallinTime field): RFC 3339 with the
    local offset, e.g. ``2021-05-30T17:00:02+08:00``."""
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="seconds")


def queue_row(call: WaitingCall) -> dict[str, str]:
    """One waiting caller as ``/api/queues`` lists it (seed 001's field names)."""
    return {"Uuid": call.uuid, "Number": call.number, "RealCallinNumber": call.real_number,
            "Group": call.group, "Level": call.level,
            "CallinTime": rfc3339(call.arrived_ms) if call.arrived_ms else call.callin_time}


def extension_row(agent: Agent) -> dict[str, str]:
    """One extension as ``/api/get_extensions`` lists it: RegStatus reged/unreg, AgentState
    the seat (idle/busy), CallState the agent call state."""
    return {"Extension": agent.extension, "RegStatus": agent.reg_state,
            "AgentState": agent.seat_status, "CallState": agent.call_state,
            "LastStatusChangeTime": local_stamp(agent.last_change)}


def extension_info(agent: Agent) -> dict[str, str]:
    """``/api/extension_info/<ext>``: reg_state reged/unreg, seat_status idle/busy,
    call_state ready/talking/ring/..."""
    return {"reg_state": agent.reg_state, "seat_status": agent.seat_status,
            "call_state": agent.call_state}
