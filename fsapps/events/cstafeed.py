"""The CSTA feed: the runtime's compact record of every call-leg change, for the wellClient
event stream of the CTI servers (:mod:`fsapps.server.csta`).

The CTI servers hold no call state; what a CSTA event needs beyond one switch event (which call
a leg belongs to, which devices are in that call, who called whom) is kept here, in Redis, by
the node that sees the events:

``p:{d}:csta:legs``            hash  channel uuid -> CSTA callId (field removed at hangup)
``p:{d}:csta:call:<callId>``   hash  ``calling``, ``called`` (devices), and per leg
                                     ``p:<uuid>`` -> ``{"d": device, "s": localState}``;
                                     EX :data:`CALL_TTL_S` after its last change

and every change is PUBLISHed as one JSON record on the domain's channel ``p:{d}:csta``::

    {"id": "...", "name": "delivered", "callId": "...", "uuid": "<leg>", "device": "8001@d",
     "localState": "Alerting", "calling": "...", "called": "...", "parties": ["8001@d", ...],
     "time": <ms>, "cause": "<hangup cause, for connectionCleared>"}

``name`` is the CSTA event the change means (serviceInitiated, originated, delivered,
established, held, retrieved, connectionCleared); the CTI servers turn one record into one event
per party (:func:`fsapps.server.csta.events.expand`).

A call's id is the a-leg's uuid: a leg carries it in ``fsapps_csta_call`` (legs the CTI server
originates, whose ``origination_uuid`` is the id itself), ``fsapps_acd_call`` (agent legs of a
queue call) or ``originator`` (any b-leg: the uuid of the leg that originated it), else the leg
is an a-leg and its own uuid is the id. A device is ``<number>@<domain>``: the extension a leg
rings (``fsapps_acd_agent``, ``dialed_user``) or, for other legs, the number it stands for.

Redis is read once and written once per batch of events (the records published in the same
pipeline, after the state); a failure is the runtime's to log (the call goes on: only the
browser's view of it suffers). The runtime runs the feed only when ``events.csta_feed`` asks
(:func:`feed_wanted`).
"""

from __future__ import annotations

import json
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fsapps.channelvars import (
    ACD_AGENT_VAR,
    ACD_CALL_VAR,
    CALL_HEADER,
    CSTA_CALL_VAR,
    CSTA_CALLED_VAR,
    CSTA_DEVICE_VAR,
    CSTA_ROLE_VAR,
    DOMAIN_VAR,
    RELAY_PREFIX,
    event_header,
)
from fsapps.context import Context
from fsapps.store import hash_fields, json_object
from fsapps.store.connection import publish_pipeline

Header = Callable[[str], "str | None"]

CALL_TTL_S = 3600
# Legs whose call id this node remembers (its own channels: a few thousand at most); beyond
# it the oldest are forgotten (their next event costs one more read).
MAX_REMEMBERED = 20_000
EVENTS = ("CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER",
          "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_HANGUP_COMPLETE")
INITIATOR = "initiator"


@dataclass(frozen=True)
class Leg:
    """What one switch event says about its leg (pure: read from the headers)."""

    uuid: str
    domain: str
    device: str
    call_hint: str      # the callId the leg's variables name ("" for an a-leg)
    outbound: bool
    initiator: bool     # originated by the CTI server for makeCall / consult: the caller's phone
    called_hint: str    # for an initiator: the device it calls
    hidden: bool = False  # a relay between nodes: in the call, but no party of it


def leg_of(h: Header, domains: tuple[str, ...], default_domain: str) -> Leg | None:
    """The leg of an event, or None when the event has no channel."""
    uuid = h("Unique-ID") or ""
    if not uuid:
        return None
    domain = ""
    for name in (event_header(DOMAIN_VAR), "variable_dialed_domain", "variable_domain_name"):
        value = h(name) or ""
        if value in domains:
            domain = value
            break
    domain = domain or default_domain
    outbound = (h("Call-Direction") or "") == "outbound"
    initiator = (h(event_header(CSTA_ROLE_VAR)) or "") == INITIATOR
    # dialed_user names the leg's own user on a user/ leg only: FreeSWITCH sets it on the
    # channel that bridges to user/<ext> too, where it is whom that channel called.
    number = (h(event_header(CSTA_DEVICE_VAR)) or h(event_header(ACD_AGENT_VAR)) or
              (h("variable_dialed_user") if outbound else "") or "")
    outside = False
    if not number and outbound:
        number = h("Caller-Destination-Number") or ""
    elif not number:
        # An inbound leg is an extension's device only when mod_sofia authenticated the
        # phone (sip_authorized, user_name): a caller ID is the caller's to choose, and a
        # trunk caller presenting "1002" must not become 1002's device (its agent would see
        # the call and could hang the caller up). Outside callers are bare numbers.
        if (h("variable_sip_authorized") or "") == "true":
            number = (h("variable_user_name") or h("variable_sip_auth_username") or
                      h("Caller-Caller-ID-Number") or "")
        else:
            number, outside = h("Caller-Caller-ID-Number") or "", True
    # The relay legs between nodes (fsapps_agent_<ext>, see dialplan/10_fsapps_acd.xml) carry
    # the queue call's id in the X-FSAPPS-Call header; the phone's leg on the far node is the
    # party, the relay legs are not.
    call_hint = (h(event_header(CSTA_CALL_VAR)) or h(event_header(ACD_CALL_VAR)) or
                 h(event_header(CALL_HEADER)) or h("variable_originator") or
                 h("variable_originating_leg_uuid") or "")
    called = h(event_header(CSTA_CALLED_VAR)) or ""
    relay = (h("Caller-Destination-Number") or "").startswith(RELAY_PREFIX)
    return Leg(uuid=uuid, domain=domain,
               device=number.strip() if outside else device(number, domain),
               call_hint="" if call_hint == uuid else call_hint, outbound=outbound,
               initiator=initiator, called_hint=device(called, domain) if called else "",
               hidden=relay)


def device(number: str, domain: str) -> str:
    """``number@domain`` (a number that already names its domain is kept)."""
    number = number.strip()
    return number if "@" in number else f"{number}@{domain}"


def change(event_name: str, leg: Leg, state: str) -> tuple[str, str] | None:
    """(CSTA event, new localState) for switch event ``event_name`` on ``leg`` whose state was
    ``state`` ("" when the leg is new to the call), or None when nothing changes for CSTA."""
    if event_name == "CHANNEL_CREATE":
        return ("serviceInitiated", "Initiate") if leg.initiator else None
    if event_name in ("CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA"):
        if leg.initiator or not leg.outbound or state in ("Alerting", "Connect", "Hold"):
            return None  # 180 then 183: one delivered
        return "delivered", "Alerting"
    if event_name == "CHANNEL_ANSWER":
        if leg.initiator:
            return "originated", "Connect"
        if not leg.outbound:
            return None  # an inbound caller answered by the dialplan (IVR, queue music)
        return "established", "Connect"
    if event_name == "CHANNEL_HOLD":
        return ("held", "Hold") if state != "Hold" else None
    if event_name == "CHANNEL_UNHOLD":
        return ("retrieved", "Connect") if state == "Hold" else None
    if event_name == "CHANNEL_HANGUP_COMPLETE":
        return "connectionCleared", "None"
    return None


@dataclass
class FeedBatch:
    """The feed's part of one batch of events between its read and its write (see
    :meth:`CstaFeed.read`)."""

    items: list[tuple[str, Leg, Any]]
    keys: dict[str, Any]
    leg_fields: list[tuple[str, str]]            # (domain, legs field) read, in order
    call_keys: list[tuple[str, str]]             # (domain, callId) whose hash was read
    reads: int = 0                               # commands queued on the read pipeline


class CstaFeed:
    """Applies batches of switch events to the feed's Redis state and publishes the records.

    A batch costs one read and one write round trip, each shared with the runtime's other
    Redis work (:meth:`read`, :meth:`write`): the legs' call ids and the call hashes are read
    together, the call hashes for the call ids this node last saw for the legs; only a leg
    whose call id turns out different (another node or the CTI server moved it) costs a second
    read."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # leg uuid -> the callId last written or read for it by this node (a guess, checked
        # against the legs hash read in the same round trip)
        self.call_of: dict[str, str] = {}

    def apply(self, events: list[Any]) -> list[dict[str, Any]]:
        """Handle a batch (in order) on its own: one read, one write; returns the records
        published."""
        r = self.ctx.redis
        reads = r.pipeline(transaction=False)
        batch = self.read(events, reads)
        if batch is None:
            return []
        results = reads.execute()
        writes = r.pipeline(transaction=False)
        messages = publish_pipeline(r) if self.ctx.settings.redis.cluster else writes
        records = self.write(batch, results, writes, messages)
        writes.execute()
        if messages is not writes:
            messages.execute()
        return records

    def read(self, events: list[Any], pipe: Any) -> FeedBatch | None:
        """Queue on ``pipe`` what a batch needs to read (None: nothing in it for the feed):
        each leg's call id and its call id's guess, and the guessed calls' hashes."""
        settings = self.ctx.settings
        items: list[tuple[str, Leg, Any]] = []
        for event in events:
            name = event.getHeader("Event-Name") or ""
            if name not in EVENTS:
                continue
            leg = leg_of(event.getHeader, tuple(settings.domains), settings.default_domain)
            if leg is not None:
                items.append((name, leg, event))
        if not items:
            return None
        keys = {leg.domain: self.ctx.keys(leg.domain) for _, leg, _ in items}
        leg_fields = list(dict.fromkeys(
            (leg.domain, field) for _, leg, _ in items
            for field in (leg.uuid, leg.call_hint or leg.uuid)))
        for domain, field in leg_fields:
            pipe.hget(keys[domain].csta_legs(), field)
        memory = {(leg.domain, uuid): cid for _, leg, _ in items
                  for uuid in (leg.uuid, leg.call_hint) if uuid and (cid := self.call_of.get(uuid))}
        call_keys = list(dict.fromkeys(self._call_ids(items, memory)))
        for domain, cid in call_keys:
            pipe.hgetall(keys[domain].csta_call(cid))
        return FeedBatch(items, keys, leg_fields, call_keys, len(leg_fields) + len(call_keys))

    @staticmethod
    def _call_ids(items: list[tuple[str, Leg, Any]],
                  known: dict[tuple[str, str], str]) -> list[tuple[str, str]]:
        """Each leg's (domain, callId), in event order, from ``known`` (legs field -> callId):
        what this batch learnt first (a b-leg created right after its originator), then what
        was known; a b-leg belongs to its originator's call, which may itself be a b-leg's."""
        local: dict[tuple[str, str], str] = {}
        found: list[tuple[str, str]] = []
        for _, leg, _ in items:
            cid = str(local.get((leg.domain, leg.uuid)) or known.get((leg.domain, leg.uuid)) or
                      local.get((leg.domain, leg.call_hint)) or
                      known.get((leg.domain, leg.call_hint or leg.uuid)) or leg.call_hint or
                      leg.uuid)
            local[(leg.domain, leg.uuid)] = cid
            found.append((leg.domain, cid))
        return found

    def write(self, batch: FeedBatch, results: list[Any], pipe: Any,
              messages: Any) -> list[dict[str, Any]]:
        """Apply the batch read by :meth:`read` (``results``: the answers to its reads) and
        queue its writes on ``pipe``, then its records on ``messages`` (the same pipeline
        outside Redis Cluster: the records go after the state they describe, which a reader
        may look up). Returns the records."""
        items, keys = batch.items, batch.keys
        stored = dict(zip(batch.leg_fields, results, strict=False))
        known = {key: str(cid) for key, cid in stored.items() if cid}
        call_ids = self._call_ids(items, known)
        guessed = results[len(batch.leg_fields):batch.reads]
        calls = {key: dict(doc) for key, doc in zip(batch.call_keys, guessed, strict=True)}
        missing = [key for key in dict.fromkeys(call_ids) if key not in calls]
        if missing:  # a call id this node did not know (rare): read those calls now
            again = self.ctx.redis.pipeline(transaction=False)
            for domain, cid in missing:
                again.hgetall(keys[domain].csta_call(cid))
            calls.update({key: dict(doc) for key, doc in zip(missing, again.execute(),
                                                              strict=True)})
        before = {key: dict(calls[key]) for key in dict.fromkeys(call_ids)}
        records: list[dict[str, Any]] = []
        dirty: set[tuple[str, str]] = set()
        legs_set: dict[str, dict[str, str]] = {}
        legs_gone: dict[str, list[str]] = {}
        for (name, leg, event), (domain, cid) in zip(items, call_ids, strict=True):
            call = calls[(domain, cid)]
            record = self.step(name, leg, cid, call, event.getHeader)
            dirty.add((domain, cid))
            if name == "CHANNEL_HANGUP_COMPLETE":
                legs_gone.setdefault(domain, []).append(leg.uuid)
                legs_set.get(domain, {}).pop(leg.uuid, None)
                self.call_of.pop(leg.uuid, None)
            else:
                if stored.get((domain, leg.uuid)) is None:  # not yet in the legs hash
                    legs_set.setdefault(domain, {})[leg.uuid] = cid
                _bounded(self.call_of)[leg.uuid] = cid
            if record is not None:
                records.append(record)
        for domain, mapping in legs_set.items():
            if mapping:
                pipe.hset(keys[domain].csta_legs(), mapping=hash_fields(dict[str, object](mapping)))
        for domain, gone in legs_gone.items():
            pipe.hdel(keys[domain].csta_legs(), *gone)
        for domain, cid in dirty:
            # Only the fields that changed: the legs of one call may live on several nodes
            # (an agent registered on another node), each writing its own legs' fields.
            key = keys[domain].csta_call(cid)
            doc, old = calls[(domain, cid)], before[(domain, cid)]
            changed = {k: v for k, v in doc.items() if old.get(k) != v}
            gone = [k for k in old if k not in doc]
            if changed:
                pipe.hset(key, mapping=hash_fields(dict[str, object](changed)))
            if gone:
                pipe.hdel(key, *gone)
            pipe.expire(key, CALL_TTL_S)
        for record in records:
            messages.publish(keys[record["domain"]].csta_feed(), json.dumps(record))
        return records

    def channels_gone(self, uuids: list[str]) -> list[dict[str, Any]]:
        """Legs whose channels the switch ended unseen (hung up by a shutdown after the
        runtime stopped, or lost in a crash) leave their calls as their
        CHANNEL_HANGUP_COMPLETE would have made them: out of the legs hash and their call,
        with a connectionCleared record (no cause: it is unknown). Returns the records."""
        if not uuids:
            return []
        r = self.ctx.redis
        domains = list(self.ctx.settings.domains)
        pipe = r.pipeline(transaction=False)
        for domain in domains:
            for uuid in uuids:
                pipe.hget(self.ctx.keys(domain).csta_legs(), uuid)
        answers = iter(pipe.execute())
        found = [(domain, uuid, str(cid)) for domain in domains for uuid in uuids
                 if (cid := next(answers))]
        if not found:
            return []
        pipe = r.pipeline(transaction=False)
        for domain, uuid, cid in found:
            pipe.hget(self.ctx.keys(domain).csta_call(cid), f"p:{uuid}")
        events: list[_Ended] = []
        parties_gone: dict[str, list[str]] = {}
        for (domain, uuid, cid), text in zip(found, pipe.execute(), strict=True):
            party = json_object(text).get("d")
            if isinstance(party, str) and party:
                events.append(_Ended({"Event-Name": "CHANNEL_HANGUP_COMPLETE",
                                      "Unique-ID": uuid, event_header(DOMAIN_VAR): domain,
                                      event_header(CSTA_DEVICE_VAR): party,
                                      event_header(CSTA_CALL_VAR): cid}))
            else:  # no party of its call (a relay leg, or the call's record expired)
                parties_gone.setdefault(domain, []).append(uuid)
        if parties_gone:
            pipe = r.pipeline(transaction=False)
            for domain, gone in parties_gone.items():
                pipe.hdel(self.ctx.keys(domain).csta_legs(), *gone)
            pipe.execute()
        return self.apply(events) if events else []

    @staticmethod
    def step(name: str, leg: Leg, call_id: str, call: dict[str, str],
             h: Header) -> dict[str, Any] | None:
        """Apply one event to ``call`` (the call hash, changed in place); the record to
        publish, or None."""
        if leg.hidden:
            return None
        field = f"p:{leg.uuid}"
        current = json_object(call.get(field))
        if not call.get("calling"):
            if leg.initiator:
                call["calling"], call["called"] = leg.device, leg.called_hint
            elif leg.uuid == call_id and not leg.outbound:
                call["calling"] = leg.device
                call["called"] = device(h("Caller-Destination-Number") or "", leg.domain)
        found = change(name, leg, current.get("s", ""))
        if name == "CHANNEL_HANGUP_COMPLETE":
            call.pop(field, None)
        elif current or name == "CHANNEL_CREATE" or found is not None:
            call[field] = json.dumps({"d": leg.device, "s": found[1] if found else
                                      current.get("s", "Null")})
        if found is None:
            return None
        parties = [json_object(v).get("d", "") for k, v in call.items() if k.startswith("p:")]
        if name == "CHANNEL_HANGUP_COMPLETE" or leg.device not in parties:
            parties.append(leg.device)
        called = call.get("called", "")
        if found[0] == "delivered" and (not called or called == call.get("calling")):
            called = leg.device
        record = {"id": uuidlib.uuid4().hex, "name": found[0], "domain": leg.domain,
                  "callId": call_id, "uuid": leg.uuid, "device": leg.device,
                  "localState": found[1], "calling": call.get("calling", ""), "called": called,
                  "parties": list(dict.fromkeys(p for p in parties if p)),
                  "time": int(time.time() * 1000), "cause": h("Hangup-Cause") or ""}
        if found[0] == "established" and current.get("s") not in ("Alerting", "Hold"):
            # answered without ringing first (auto-answer, a fast phone): the CTI server
            # sends its delivered before the established (fsapps.server.csta.events)
            record["unannounced"] = True
        return record


def feed_wanted(ctx: Context) -> bool:
    """Whether the runtime keeps the feed, by ``events.csta_feed``: ``on``, ``off``, or
    ``auto``: while something listens on a served domain's feed channel (``PUBSUB NUMSUB``;
    every CTI server subscribes there when it starts). Calls already up when the first CTI
    server starts are missing from its view until they end."""
    mode = ctx.settings.events.csta_feed
    if mode != "auto":
        return mode == "on"
    channels = [ctx.keys(domain).csta_feed() for domain in ctx.settings.domains]
    return any(int(count) > 0 for _, count in ctx.redis.pubsub_numsub(*channels))


def _bounded(remembered: dict[str, str]) -> dict[str, str]:
    """``remembered`` with room for one more (the oldest forgotten)."""
    while len(remembered) >= MAX_REMEMBERED:
        del remembered[next(iter(remembered))]
    return remembered


class _Ended:
    """The CHANNEL_HANGUP_COMPLETE a leg the switch ended unseen never had: the headers
    :func:`leg_of` and :meth:`CstaFeed.step` read for it."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers

    def getHeader(self, name: str) -> str | None:  # noqa: N802 (the switch's Event API)
        return self.headers.get(name)
