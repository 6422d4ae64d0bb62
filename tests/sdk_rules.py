"""The published wellClient SDK's event handling, replayed in Python (issue 16, point 4).

The SDK keeps a call memory (seed 004 §5.1 ``getCallMemory``): per callId, an entry per device
the call's events introduced, and its handlers index that memory by the devices an event names
— for the established of a queue call whose delivered named the dialled queue number as
``calledDevice``, the SDK's handler failed with ``Cannot set properties of undefined (setting
'connectionState')`` (issue 16). What this model holds an event stream to, per subscriber:

- serviceInitiated (``initiatedDevice``), originated and delivered (``callingDevice``,
  ``calledDevice``) create the call's entry and introduce those devices (delivered's
  ``alertingDevice`` is not introduced: the issue's SDK took the queue call's delivered and
  failed only at its established);
- established, held, retrieved need the call's entry and the device they name
  (``answeringDevice``, ``holdingDevice``, ``retrievingDevice``) in it: otherwise the SDK's
  handler throws; established's ``callingDevice`` / ``calledDevice`` must be known too;
- connectionCleared of a known call needs its ``releasingDevice`` in it (clears of calls the
  subscriber never saw are ignored, as the SDK does); the subscriber's own release ends its
  memory of the call;
- transferred and conferenced name calls and devices the subscriber knows (the old calls),
  and introduce ``transferredToDevice`` / ``addedParty`` into ``newCall``;
- seed 004 §6.7/6.8: "this device rings / answered" is ``alertingDevice == srcDeviceId`` /
  ``answeringDevice == srcDeviceId``; a subscriber's delivered and established name a
  ``calledDevice`` that is a party of the call (a device some event of the call is about, or
  the calling device), never a number that was only dialled (a queue, a route).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class SdkError(AssertionError):
    """What the SDK's handler would have thrown (or a seed-004 rule the event breaks)."""


@dataclass
class CallMemory:
    """One subscriber's SDK: callId -> device -> what the handlers set."""

    me: str = ""
    calls: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    handled: int = 0

    def _entry(self, event: dict[str, Any], call_id: str | None = None) -> dict[str, Any]:
        cid = call_id or event.get("callId", "")
        if cid not in self.calls:
            raise SdkError(f"{event['eventName']} of call {cid} that the SDK never saw "
                           f"(Cannot read properties of undefined): {brief(event)}")
        return self.calls[cid]

    def _device(self, entry: dict[str, Any], event: dict[str, Any], name: str) -> dict[str, str]:
        dev = event.get(name, "")
        if dev not in entry:
            raise SdkError(f"{event['eventName']}.{name} = {dev!r} is not a device of call "
                           f"{event.get('callId')} in the SDK's memory {sorted(entry)} "
                           f"(Cannot set properties of undefined): {brief(event)}")
        return entry[dev]

    def _introduce(self, call_id: str, *devices: str) -> dict[str, Any]:
        entry = self.calls.setdefault(call_id, {})
        for dev in devices:
            if dev:
                entry.setdefault(dev, {"connectionState": ""})
        return entry

    def apply(self, event: dict[str, Any]) -> None:
        name = event.get("eventName", "")
        if event.get("eventType") == "agent":
            return
        if not self.me:
            self.me = event.get("srcDeviceId", "")
        self.handled += 1
        cid = event.get("callId", "")
        if name == "serviceInitiated":
            self._introduce(cid, event.get("initiatedDevice", ""))
        elif name in ("originated", "delivered"):
            self._introduce(cid, event.get("callingDevice", ""), event.get("calledDevice", ""))
        elif name == "established":
            entry = self._entry(event)
            self._device(entry, event, "answeringDevice")["connectionState"] = "Connect"
            for name_ in ("callingDevice", "calledDevice"):
                if event.get(name_):
                    self._device(entry, event, name_)
        elif name == "held":
            self._device(self._entry(event), event, "holdingDevice")["connectionState"] = "Hold"
        elif name == "retrieved":
            self._device(self._entry(event), event,
                         "retrievingDevice")["connectionState"] = "Connect"
        elif name == "connectionCleared":
            if cid not in self.calls:
                return
            entry = self.calls[cid]
            self._device(entry, event, "releasingDevice")["connectionState"] = "None"
            if event.get("releasingDevice") == self.me:
                del self.calls[cid]
        elif name == "transferred":
            old = [c for c in (event.get("primaryOldCall"), event.get("secondaryOldCall"))
                   if c and c != "0"]
            if not any(c in self.calls for c in old):
                raise SdkError(f"transferred names no call the SDK knows: {brief(event)}")
            if event.get("transferringDevice") == self.me:
                for c in old:
                    self.calls.pop(c, None)
            else:
                self._introduce(event.get("newCall", cid), event.get("transferredToDevice", ""))
        elif name == "conferenced":
            old = [c for c in (event.get("primaryOldCall"), event.get("secondaryOldCall"),
                               event.get("newCall")) if c and c != "0"]
            if not any(c in self.calls for c in old):
                raise SdkError(f"conferenced names no call the SDK knows: {brief(event)}")
            self._introduce(event.get("newCall", cid), event.get("conferencingDevice", ""),
                            event.get("addedParty", ""))


def brief(event: dict[str, Any]) -> str:
    keys = ("eventName", "callId", "srcDeviceId", "deviceId", "alertingDevice",
            "answeringDevice", "callingDevice", "calledDevice", "releasingDevice")
    return str({k: event[k] for k in keys if k in event})


def parties_named(events: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """callId -> the devices the call's events are about (``deviceId``), and its callers."""
    found: dict[str, set[str]] = {}
    for event in events:
        if event.get("eventType") == "agent":
            continue
        devices = found.setdefault(event.get("callId", ""), set())
        devices.add(event.get("deviceId", ""))
        if event.get("eventName") in ("originated", "delivered", "established"):
            devices.add(event.get("callingDevice", ""))
    return found


def replay(events: list[dict[str, Any]]) -> CallMemory:
    """Run one subscriber's events (in order) through the SDK model; SdkError on the first
    event its handlers could not take or that breaks a seed-004 rule."""
    memory = CallMemory()
    parties = parties_named(events)
    for event in events:
        memory.apply(event)
        name, src = event.get("eventName"), event.get("srcDeviceId")
        if name in ("delivered", "established"):
            called = event.get("calledDevice", "")
            if called and called not in parties.get(event.get("callId", ""), set()):
                raise SdkError(f"{name}.calledDevice {called!r} is no party of the call (a "
                               f"dialled number?): {brief(event)}")
        if name == "delivered" and event.get("deviceId") == src:
            assert event.get("alertingDevice") == src, brief(event)
        if name == "established" and event.get("deviceId") == src:
            assert event.get("answeringDevice") == src, brief(event)
    return memory
