"""Call operations shared by the front ends: which live call of an extension to act on, and
the switch commands that act on a call, sent where its channel lives
(:class:`fsapps.switch.nodecommands.SwitchCommands`: here, or the owning node through Redis).

fs_cli names the channel itself (``nway_uuid_hold <uuid>``) and goes straight to the engine;
the seed REST API names an extension, whose call :func:`live_call` finds; wellClient names a
connection, whose leg is in the CSTA records (:mod:`fsapps.server.csta.callcontrol`). Each gets a
:class:`~fsapps.switch.nodecommands.NodeReply` and words it for its users. A missing call is
:class:`NoCall`.

Keys read: ``cti_userinfo@<domain>`` (seed 003's live calls per extension, written by
:mod:`fsapps.switch.livestate`), the agent hash's ``agent_leg`` and ``call_state``, and the
seed's ``calls`` hash (``directory.call_hash``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fsapps.context import Context
from fsapps.errors import Conflict
from fsapps.store import json_object
from fsapps.store.keys import seed_userinfo_hash
from fsapps.switch.nodecommands import (
    Eavesdrop,
    Hold,
    Kill,
    NodeReply,
    PhoneEvent,
    SwitchCommands,
    Threeway,
    Transfer,
    Unhold,
)


@dataclass(frozen=True)
class LiveCall:
    """One channel of an extension: its uuid, whether it was answered, its bridged peer."""

    uuid: str
    answered: bool
    peer: str = ""


def live_calls(userinfo: str | None, calls: str | None, agent_leg: str = "",
               agent_talking: bool = True) -> list[LiveCall]:
    """An extension's live channels, oldest first, from its ``cti_userinfo@<domain>`` record
    (``calls``: Unique-ID, Answered-Time, Signal-Bond), else its ``calls`` hash record
    (``activity``), else the agent's leg of a queue call - answered only while the agent is
    talking: the ring names the leg before the switch has it, and taken for answered while
    the runtime's live state lagged, a hold went to a leg the switch did not have yet ("no
    such channel"). Malformed records count as none."""
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
    return [LiveCall(agent_leg, agent_talking)] if agent_leg else []


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


_NO_CALL = {"ringing": "has no ringing call", "answered": "is not on an answered call"}


class NoCall(Conflict):
    """The extension has no call in the state asked for (``want``: ringing, answered, any)."""

    def __init__(self, extension: str, want: str) -> None:
        self.extension, self.want = extension, want
        super().__init__(f"extension {extension!r} {_NO_CALL.get(want, 'is not on a call')}")


def live_call(ctx: Context, domain: str, extension: str, want: str) -> LiveCall:
    """The extension's call to act on (:func:`pick`); NoCall when it has none in that state.
    One round trip."""
    call_hash = ctx.settings.directory.call_hash
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.hget(seed_userinfo_hash(domain), extension)
    pipe.hmget(ctx.keys(domain).agent(extension), ["agent_leg", "call_state"])
    if call_hash:  # the seed's "calls" hash may be turned off (directory.call_hash: "")
        pipe.hget(call_hash, extension)
    userinfo, (agent_leg, call_state), *calls = pipe.execute()
    found = live_calls(userinfo, calls[0] if calls else None, agent_leg or "",
                       call_state == "talking")
    call = pick(found, want)
    if call is None:
        raise NoCall(extension, want)
    return call


def transfer(ctx: Context, switch: SwitchCommands, domain: str, extension: str, target: str,
             gateway: str) -> NodeReply:
    """The party talking with ``extension`` goes to ``target``: an extension or a group of
    ``domain`` by itself (rung wherever it is registered, relayed across nodes; a group's
    ACD), another number through the dialplan, or a number through ``gateway``
    (:func:`fsapps.switch.nodecommands.direct_destination`); the extension's leg is released."""
    call = live_call(ctx, domain, extension, "answered")
    return switch.on_channel(Transfer(uuid=call.uuid, extension=target, gateway=gateway,
                                      leg="bleg", domain=domain, direct="1"))


def answer(ctx: Context, switch: SwitchCommands, domain: str, extension: str) -> NodeReply:
    """The extension's ringing phone answers (a talk event: the phone must support it)."""
    call = live_call(ctx, domain, extension, "ringing")
    return switch.on_channel(PhoneEvent(uuid=call.uuid, event="talk"))


def hangup(ctx: Context, switch: SwitchCommands, domain: str, extension: str,
           both: bool = False) -> NodeReply:
    """Hang up the extension's call (its own leg; with ``both`` its peer too)."""
    call = live_call(ctx, domain, extension, "any")
    return switch.on_channel(Kill(uuid=call.uuid, cause="MANAGER_REQUEST" if both
                                  else "NORMAL_CLEARING", both="1" if both else ""))


def hold(ctx: Context, switch: SwitchCommands, domain: str, extension: str,
         on: bool) -> NodeReply:
    """Switch-side hold of the extension's leg: its peer hears hold music."""
    call = live_call(ctx, domain, extension, "answered")
    return switch.on_channel(Hold(uuid=call.uuid) if on else Unhold(uuid=call.uuid))


def phone_hold(ctx: Context, switch: SwitchCommands, domain: str, extension: str,
               on: bool) -> NodeReply:
    """Ask the phone itself to hold / resume (its hold key, through a NOTIFY)."""
    call = live_call(ctx, domain, extension, "answered")
    return switch.on_channel(PhoneEvent(uuid=call.uuid, event="hold" if on else "talk"))


def eavesdrop(ctx: Context, switch: SwitchCommands, domain: str, target: str, phone: str,
              gateway: str, mode: str, ring_seconds: int) -> NodeReply:
    """Ring ``phone`` (an extension, or a number through ``gateway``) to listen to
    ``target``'s call, or whisper to the agent / the customer (``mode``); the listener
    switches with DTMF 1/2/3/0."""
    call = live_call(ctx, domain, target, "answered")
    return switch.on_channel(Eavesdrop(uuid=call.uuid, phone=phone, gateway=gateway,
                                       mode=mode, dtmf="true", ring_seconds=str(ring_seconds)))


def threeway(ctx: Context, switch: SwitchCommands, domain: str, in_call: str, phone: str,
             gateway: str) -> NodeReply:
    """Ring ``phone`` into ``in_call``'s call as a third party (all three hear each other)."""
    call = live_call(ctx, domain, in_call, "answered")
    return switch.on_channel(Threeway(uuid=call.uuid, phone=phone, gateway=gateway))
