"""A simulated FreeSWITCH channel: states, variables, timestamps, DTMF, interruptions.

Everything that can wake a blocked application (hangup, uuid_break, transfer, DTMF, the end
of a bridge) goes through :meth:`Channel.wake`, and applications block in :meth:`wait`, so no
test ever needs a sleep to see a state change.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fakefs.causes import q850

if TYPE_CHECKING:
    from fakefs.switch import Switch

CHANNEL_STATES = ["CS_NEW", "CS_INIT", "CS_ROUTING", "CS_SOFT_EXECUTE", "CS_EXECUTE",
                  "CS_EXCHANGE_MEDIA", "CS_PARK", "CS_CONSUME_MEDIA", "CS_HIBERNATE", "CS_RESET",
                  "CS_HANGUP", "CS_REPORTING", "CS_DESTROY"]


def now_us() -> int:
    return int(time.time() * 1_000_000)


@dataclass
class Behaviour:
    """What the far end of a leg does (a phone, a trunk, a caller). Times in ms, scaled by the
    switch's ``time_scale``.

    - ``answer_after_ms``: answers after this long; None never answers (NO_ANSWER at the
      originate timeout).
    - ``fail_with``: refuses instead (``USER_BUSY``, ``CALL_REJECTED``, ...) after
      ``fail_after_ms``.
    - ``ring_after_ms`` / ``early_media``: sends 180 (or 183 with media) after this long.
    - ``hangup_after_ms``: hangs up this long after answering (talk time).
    - ``hangup_after_bridge_ms``: hangs up this long after being bridged.
    - ``abandon_after_ms``: hangs up this long after the call starts unless bridged by then.
    - ``dtmf``: (ms after answer, digits) pairs sent to the switch.
    - ``hangup_event_delay_ms``: the switch is slow to tell of this leg's end: the leg is down
      at once (the originate and the bridge see it), its CHANNEL_HANGUP is fired this much
      later by the thread that hangs it up (a thread descheduled between the two on a loaded
      machine), and it stays a channel of the switch (``uuid_exists``) until then.
    """

    answer_after_ms: int | None = 100
    fail_with: str | None = None
    fail_after_ms: int = 10
    ring_after_ms: int = 10
    early_media: bool = False
    hangup_after_ms: int | None = None
    hangup_after_bridge_ms: int | None = None
    abandon_after_ms: int | None = None
    dtmf: tuple[tuple[int, str], ...] = ()
    hangup_event_delay_ms: int = 0


class Interrupt(Exception):
    """Raised inside an application when the channel must stop what it is doing."""

    def __init__(self, reason: str, detail: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Channel:
    switch: Switch
    uuid: str
    name: str
    direction: str  # inbound | outbound
    caller_id_name: str
    caller_id_number: str
    destination_number: str
    context: str = "default"
    dialplan: str = "XML"
    network_addr: str = "127.0.0.1"
    source: str = "mod_sofia"
    username: str = ""
    behaviour: Behaviour = field(default_factory=Behaviour)
    variables: dict[str, str] = field(default_factory=dict)
    state: str = "CS_NEW"
    callstate: str = "DOWN"
    answer_state: str = "ringing"
    times: dict[str, int] = field(default_factory=dict)
    peer: str | None = None          # uuid of the bridged leg
    originator: str | None = None    # for outbound legs: the uuid that originated us
    hangup_cause: str | None = None
    held: bool = False
    # held so soon after the bridge that the peer's bridge loop had not yet counted its lead
    # frames: the hold music broadcast sits queued (fakefs.media: Media.set_hold)
    hold_music_queued: bool = False
    hit_dialplan: bool = False
    playing: str | None = None       # what the channel currently hears from a playback
    ringback: str | None = None      # the ringback it hears while a bridge it started rings
    application: str = ""
    application_data: str = ""
    eavesdrop: dict[str, Any] | None = None   # {"target": uuid, "mode": listen|...}
    conference: str | None = None
    three_way_with: str | None = None

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.dtmf: deque[str] = deque()
        self.pending: deque[Interrupt] = deque()
        self.broadcasts: deque[tuple[str, str]] = deque()
        self.hangup_hooks: list[Any] = []
        self.done = threading.Event()         # set when the channel is destroyed
        self.session_thread: threading.Thread | None = None
        self.times.setdefault("created", now_us())
        self.hangup_side = ""                 # "local" or "remote": who hung up
        self.variables.setdefault("uuid", self.uuid)
        self.variables.setdefault("call_uuid", self.uuid)

    # ---------------------------------------------------------------- variables -----------
    def get(self, name: str) -> str | None:
        with self.lock:
            return self.variables.get(name)

    def set(self, name: str, value: object) -> None:
        with self.lock:
            if value is None:
                self.variables.pop(name, None)
            else:
                self.variables[name] = str(value)

    @property
    def up(self) -> bool:
        return self.hangup_cause is None

    @property
    def answered(self) -> bool:
        return "answered" in self.times

    # ---------------------------------------------------------------- signalling ----------
    def wake(self, interrupt: Interrupt | None = None) -> None:
        with self.cond:
            if interrupt is not None:
                self.pending.append(interrupt)
            self.cond.notify_all()

    def wait(self, seconds: float | None, *, dtmf: bool = False,
             until: Any = None) -> str:
        """Block the channel's application for ``seconds`` (None: until woken).

        Returns "timeout", "hangup", "dtmf" (when ``dtmf`` and a digit is queued), or "until"
        (when the ``until()`` predicate turned true); raises :class:`Interrupt` for a
        uuid_break / transfer / broadcast aimed at this channel.
        """
        deadline = None if seconds is None else time.monotonic() + max(0.0, seconds)
        with self.cond:
            while True:
                if not self.up:
                    return "hangup"
                if self.pending:
                    raise self.pending.popleft()
                if dtmf and self.dtmf:
                    return "dtmf"
                if until is not None and until():
                    return "until"
                if deadline is None:
                    self.cond.wait(0.1)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout"
                self.cond.wait(min(remaining, 0.1))

    # ---------------------------------------------------------------- headers -------------
    def profile_headers(self, prefix: str = "Caller") -> dict[str, str]:
        t = self.times
        return {
            f"{prefix}-Direction": self.direction,
            f"{prefix}-Logical-Direction": self.direction,
            f"{prefix}-Username": self.username or self.caller_id_number,
            f"{prefix}-Dialplan": self.dialplan,
            f"{prefix}-Caller-ID-Name": self.caller_id_name,
            f"{prefix}-Caller-ID-Number": self.caller_id_number,
            f"{prefix}-Orig-Caller-ID-Name": self.caller_id_name,
            f"{prefix}-Orig-Caller-ID-Number": self.caller_id_number,
            f"{prefix}-Callee-ID-Name": self.variables.get("callee_id_name", ""),
            f"{prefix}-Callee-ID-Number": self.variables.get("callee_id_number", ""),
            f"{prefix}-Network-Addr": self.network_addr,
            f"{prefix}-ANI": self.caller_id_number,
            f"{prefix}-Destination-Number": self.destination_number,
            f"{prefix}-Unique-ID": self.uuid,
            f"{prefix}-Source": self.source,
            f"{prefix}-Context": self.context,
            f"{prefix}-Channel-Name": self.name,
            f"{prefix}-Profile-Index": "1",
            f"{prefix}-Profile-Created-Time": str(t.get("created", 0)),
            f"{prefix}-Channel-Created-Time": str(t.get("created", 0)),
            f"{prefix}-Channel-Answered-Time": str(t.get("answered", 0)),
            f"{prefix}-Channel-Progress-Time": str(t.get("progress", 0)),
            f"{prefix}-Channel-Progress-Media-Time": str(t.get("progress_media", 0)),
            f"{prefix}-Channel-Hangup-Time": str(t.get("hangup", 0)),
            f"{prefix}-Channel-Transfer-Time": str(t.get("transfer", 0)),
            f"{prefix}-Channel-Resurrect-Time": "0",
            f"{prefix}-Channel-Bridged-Time": str(t.get("bridged", 0)),
            f"{prefix}-Channel-Last-Hold": str(t.get("last_hold", 0)),
            f"{prefix}-Channel-Hold-Accum": str(t.get("hold_accum", 0)),
            f"{prefix}-Screen-Bit": "true",
            f"{prefix}-Privacy-Hide-Name": "false",
            f"{prefix}-Privacy-Hide-Number": "false",
        }

    def event_headers(self, with_variables: bool = True) -> dict[str, str]:
        with self.lock:
            headers = {
                "Channel-State": self.state,
                "Channel-Call-State": self.callstate,
                "Channel-State-Number": str(CHANNEL_STATES.index(self.state)),
                "Channel-Name": self.name,
                "Unique-ID": self.uuid,
                "Call-Direction": self.direction,
                "Presence-Call-Direction": self.direction,
                "Channel-HIT-Dialplan": "true" if self.hit_dialplan else "false",
                "Channel-Presence-ID": self.variables.get("presence_id", ""),
                "Channel-Call-UUID": self.variables.get("call_uuid", self.uuid),
                "Answer-State": self.answer_state,
                "Channel-Read-Codec-Name": "PCMA",
                "Channel-Read-Codec-Rate": "8000",
                "Channel-Read-Codec-Bit-Rate": "64000",
                "Channel-Write-Codec-Name": "PCMA",
                "Channel-Write-Codec-Rate": "8000",
                "Channel-Write-Codec-Bit-Rate": "64000",
            }
            if self.hangup_cause is not None:
                headers["Hangup-Cause"] = self.hangup_cause
            headers.update(self.profile_headers())
            peer = self.switch.channels.get(self.peer) if self.peer else None
            if peer is not None:
                headers["Other-Type"] = "originatee" if peer.direction == "outbound" \
                    else "originator"
                headers.update(peer.profile_headers("Other-Leg"))
            if with_variables:
                for key, value in self.variables.items():
                    headers[f"variable_{key}"] = value
            return headers

    def hangup_variables(self, cause: str) -> None:
        """The variables FreeSWITCH sets in the hangup state (CDR material): the cause,
        switch_channel_set_timestamps' stamps and durations, mod_sofia's disposition."""
        t = self.times
        end = t["hangup"]
        start = t["created"]
        answered = t.get("answered", 0)
        fmt = lambda us: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(us / 1e6))  # noqa: E731
        v = self.variables
        v["hangup_cause"] = cause
        v["hangup_cause_q850"] = str(q850(cause))
        v["start_stamp"] = fmt(start)
        v["start_epoch"] = str(start // 1_000_000)
        v["start_uepoch"] = str(start)
        v["answer_stamp"] = fmt(answered) if answered else ""
        v["answer_epoch"] = str(answered // 1_000_000)
        v["answer_uepoch"] = str(answered)
        v["end_stamp"] = fmt(end)
        v["end_epoch"] = str(end // 1_000_000)
        v["end_uepoch"] = str(end)
        v["duration"] = str(end // 1_000_000 - start // 1_000_000)
        v["uduration"] = str(end - start)
        v["mduration"] = str((end - start) // 1000)
        v["billsec"] = str(end // 1_000_000 - answered // 1_000_000) if answered else "0"
        v["billmsec"] = str((end - answered) // 1000) if answered else "0"
        v["billusec"] = str(end - answered) if answered else "0"
        progress = t.get("progress") or t.get("progress_media") or 0
        v["progresssec"] = str((progress - start) // 1_000_000) if progress else "0"
        v["answersec"] = str((answered - start) // 1_000_000) if answered else "0"
        v["waitsec"] = str((t.get("bridged", 0) - start) // 1_000_000) if t.get("bridged") else "0"
        v["sip_hangup_disposition"] = self.sip_hangup_disposition()

    def sip_hangup_disposition(self) -> str:
        """mod_sofia's ``sip_hangup_disposition`` for how the channel ended: who hung up
        (``hangup_side``), answered or not, which direction."""
        answered = "answered" in self.times
        if self.direction == "inbound":
            disposition = {("remote", True): "recv_bye", ("local", True): "send_bye",
                           ("remote", False): "recv_cancel", ("local", False): "send_refuse"}
        else:
            disposition = {("remote", True): "recv_bye", ("local", True): "send_bye",
                           ("remote", False): "recv_refuse", ("local", False): "send_cancel"}
        return disposition[(self.hangup_side or "local", answered)]

    def __hash__(self) -> int:
        return hash(self.uuid)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Channel) and other.uuid == self.uuid

    def __repr__(self) -> str:
        return f"<Channel {self.name} {self.uuid[:8]} {self.state} {self.callstate}>"
