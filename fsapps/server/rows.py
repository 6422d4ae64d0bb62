"""Pure mappings from fsapps' Redis state to the JSON rows of seed 001's API, and the choice
of an extension's call to act on. No I/O: unit-tested on plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fsapps.domain.agents import Agent
from fsapps.domain.callqueue import WaitingCall
from fsapps.store import json_object


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


@dataclass(frozen=True)
class LiveCall:
    """One channel of an extension: its uuid, whether it was answered, its bridged peer."""

    uuid: str
    answered: bool
    peer: str = ""


def live_calls(userinfo: str | None, calls: str | None, agent_leg: str = "") -> list[LiveCall]:
    """An extension's live channels, oldest first, from its ``cti_userinfo@<domain>`` record
    (``calls``: Unique-ID, Answered-Time, Signal-Bond), else its ``calls`` hash record
    (``activity``), else the agent's leg of a queue call. Malformed records count as none."""
    found: list[LiveCall] = []
    info = json_object(userinfo)
    for entry in info.get("calls", []) if isinstance(info.get("calls"), list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("Unique-ID"), str):
            found.append(LiveCall(entry["Unique-ID"], bool(entry.get("Answered-Time")),
                                  str(entry.get("Signal-Bond") or "")))
    if found:
        return found
    record = json_object(calls)
    activity = record.get("activity")
    for uuid in activity if isinstance(activity, list) else []:
        if isinstance(uuid, str):
            entry = record.get(uuid)
            fields: dict[str, Any] = entry if isinstance(entry, dict) else {}
            answered = str(fields.get("Caller-Channel-Answered-Time") or "0") not in ("", "0")
            found.append(LiveCall(uuid, answered,
                                  str(fields.get("variable_signal_bond") or "")))
    if found:
        return found
    return [LiveCall(agent_leg, True)] if agent_leg else []


def pick(calls: list[LiveCall], want: str) -> LiveCall | None:
    """The call to act on: ``ringing`` the newest unanswered one; ``answered`` the newest
    answered one; ``any`` the newest answered one, else the newest."""
    ringing = [c for c in calls if not c.answered]
    answered = [c for c in calls if c.answered]
    if want == "ringing":
        return ringing[-1] if ringing else None
    if want == "answered":
        return answered[-1] if answered else None
    chosen = answered or calls
    return chosen[-1] if chosen else None
