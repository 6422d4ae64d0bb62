"""CSTA events of the wellClient SDK (seed 004 §6), built from feed records — pure functions.

A feed record (:mod:`fsapps.events.cstafeed`, or one the CTI server publishes for an agent change, a
transfer or a conference) describes one change; :func:`expand` makes the events each party
receives: the same event once per device in the call, ``srcDeviceId`` naming the receiver
("订阅事件的设备"). Field names and order follow the seed's examples: eventName, eventSrc,
eventTime (``2017.03.18 14:13:24``), eventType (``csta`` / ``agent``), serial (set when the
event is sent: :func:`with_serial`), _type, topics, namespace, srcDeviceId, then the event's
own fields.

Who receives what (seed 004 §6.5-6.13):

- serviceInitiated, originated: only the calling device;
- delivered, established, connectionCleared, held, retrieved: every device in the call
  (the one that changed included);
- transferred: the transferring device and the parties of both calls;
- conferenced: every device of the conference;
- agentLoggedOn/Off, agentReady/NotReady: the agent's device (``eventType`` agent).
"""

from __future__ import annotations

import time
from typing import Any

CALL_EVENTS = ("serviceInitiated", "originated", "delivered", "established",
               "connectionCleared", "transferred", "conferenced", "retrieved", "held")
AGENT_EVENTS = ("agentLoggedOn", "agentLoggedOff", "agentReady", "agentNotReady")
EVENT_NAMES = CALL_EVENTS + AGENT_EVENTS
AGENT_MODES = ("Ready", "NotReady", "WorkNotReady", "Logout", "Unknown")
_ONLY_SELF = ("serviceInitiated", "originated")
# agentStatus of the device whose connection changed, by its new localState
_STATUS = {"Initiate": "OffHook", "Alerting": "Ringing", "Connect": "OnCallIn",
           "Hold": "OnHold", "None": "Idle", "Queued": "Other", "Fail": "Other",
           "Idle": "Idle"}
_MODE_EVENT = {"Ready": "agentReady", "NotReady": "agentNotReady",
               "WorkNotReady": "agentNotReady"}


def event_time(ms: int | float | None = None) -> str:
    """The seed's eventTime, local time: ``2017.03.18 14:13:24``."""
    seconds = (ms / 1000) if ms else time.time()
    return time.strftime("%Y.%m.%d %H:%M:%S", time.localtime(seconds))


def connection_id(device: str, call_id: str) -> str:
    """wellClient's connection id: ``deviceId|callId``."""
    return f"{device}|{call_id}"


def split_connection(text: str) -> tuple[str, str]:
    """(deviceId, callId) of ``deviceId|callId`` (the ``|`` may arrive as ``%7C``)."""
    text = text.replace("%7C", "|").replace("%7c", "|")
    device, sep, call_id = text.partition("|")
    return (device, call_id) if sep else ("", text)


def event_type_name(name: str) -> str:
    """The seed's ``_type`` (the Java class of the original server), which some clients
    switch on: agentLoggedOn → ``component.cti.event.AgentLoggedOnEvent``."""
    return f"component.cti.event.{name[:1].upper()}{name[1:]}Event"


def _head(name: str, kind: str, namespace: str, src: str, ms: int | None,
          event_src: str) -> dict[str, Any]:
    # topics as the seed's examples list them (the original router's instance names left out)
    topics = [name, f"device:{src}", "agent" if kind == "agent" else "extension", "csta"]
    return {"eventName": name, "eventSrc": event_src, "eventTime": event_time(ms),
            "eventType": kind, "serial": 0, "_type": event_type_name(name), "topics": topics,
            "namespace": namespace, "srcDeviceId": src}


def expand(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The (receiving device, event) pairs of one feed record; [] for a record this module
    does not know (a newer runtime's, say)."""
    name = record.get("name", "")
    if name in AGENT_EVENTS:
        dev = record.get("device", "")
        return [(dev, agent_event(name, record))] if dev else []
    if name not in CALL_EVENTS:
        return []
    dev = str(record.get("device", ""))
    parties = [str(p) for p in record.get("parties", []) if p]
    receivers = [dev] if name in _ONLY_SELF else list(dict.fromkeys(parties or [dev]))
    records = [record]
    if name == "established" and record.get("unannounced"):
        # a leg answered without ringing first: its delivered comes first all the same, so
        # a client that learns a call's devices from delivered (the published SDK) knows
        # the call its established is about
        records = [{**record, "name": "delivered", "localState": "Alerting"}, record]
    return [(src, call_event(r, src)) for r in records for src in receivers if src]


def call_event(record: dict[str, Any], src: str) -> dict[str, Any]:
    """The CSTA call event of ``record`` as device ``src`` receives it."""
    name = record["name"]
    dev = str(record.get("device", ""))
    call_id = str(record.get("callId", ""))
    state = str(record.get("localState", ""))
    event = _head(name, "csta", str(record.get("domain", "")), src, record.get("time"), src)
    event.update({"callId": call_id, "deviceId": dev, "localState": state})
    if src == dev and state in _STATUS:
        event["agentStatus"] = _STATUS[state]
    event["connectionId"] = connection_id(dev, call_id)
    calling, called = record.get("calling", ""), record.get("called", "")
    if name in ("delivered", "established") and dev and dev != calling:
        # The leg that rings or answers is the called device. The call's recorded callee is
        # what was dialled — a queue, an IVR, a route, or the first agent of a call since
        # transferred — which a client indexing its call memory by device never saw as a
        # party: its established handler then finds nothing for the answering device
        # (issue 16). Seed 004's examples: alertingDevice == answeringDevice == calledDevice.
        called = dev
    if name == "serviceInitiated":
        event["initiatedDevice"] = dev
    elif name == "originated":
        event.update({"callingDevice": calling, "calledDevice": called})
    elif name == "delivered":
        event.update({"alertingDevice": dev, "callingDevice": calling, "calledDevice": called})
    elif name == "established":
        event.update({"answeringDevice": dev, "callingDevice": calling, "calledDevice": called})
    elif name == "connectionCleared":
        event["releasingDevice"] = dev
    elif name == "held":
        event["holdingDevice"] = dev
    elif name == "retrieved":
        event["retrievingDevice"] = dev
    elif name == "transferred":
        event.update({"primaryOldCall": record.get("primaryOldCall", ""),
                      "secondaryOldCall": record.get("secondaryOldCall", ""),
                      "transferringDevice": record.get("transferringDevice", ""),
                      "transferredToDevice": record.get("transferredToDevice", ""),
                      "newCall": record.get("newCall", call_id)})
    elif name == "conferenced":
        event.update({"primaryOldCall": record.get("primaryOldCall", ""),
                      "secondaryOldCall": record.get("secondaryOldCall", ""),
                      "conferencingDevice": record.get("conferencingDevice", ""),
                      "addedParty": record.get("addedParty", ""),
                      "newCall": record.get("newCall", call_id)})
    if name in ("delivered", "established"):
        event["userData"] = dict(record.get("userData") or {})
    return event


def agent_event(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """agentLoggedOn/Off, agentReady/NotReady for the agent's device (seed 004 §6.1-6.4)."""
    dev = str(record.get("device", ""))
    event = _head(name, "agent", str(record.get("domain", "")), dev, record.get("time"), dev)
    if record.get("agentId"):
        event["topics"] = [f"agent:{record['agentId']}", *event["topics"]]
    event.update({"deviceId": dev, "agentId": record.get("agentId", ""),
                  "agentMode": record.get("agentMode", "Unknown"),
                  "devices": {"Voice": dev}})
    if name == "agentNotReady" and record.get("reason"):
        event["reason"] = record["reason"]
    return event


def agent_record(name: str, *, domain: str, agent_id: str, device: str, mode: str,
                 reason: str = "", ms: int | None = None) -> dict[str, Any]:
    """A feed record for an agent event (published by the CTI server that changed it)."""
    if name not in AGENT_EVENTS:
        raise ValueError(f"unknown agent event {name!r}")
    record = {"name": name, "domain": domain, "agentId": agent_id, "device": device,
              "agentMode": mode, "time": ms or int(time.time() * 1000)}
    if reason:
        record["reason"] = reason
    return record


def mode_event(mode: str) -> str:
    """The agent event that announces ``mode`` (Ready → agentReady, NotReady → agentNotReady)."""
    return _MODE_EVENT.get(mode, "agentNotReady")


def with_serial(event: dict[str, Any], serial: int) -> dict[str, Any]:
    """``event`` with its ``serial`` (numbered per subscription, as it is sent)."""
    return {**event, "serial": serial}
