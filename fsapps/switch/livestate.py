"""Live state of extensions in the seed-003 shapes, written by the runtime from switch events.

Keys (seed-defined names, verbatim; the hash/channel/list names come from ``directory.*``
settings, the seed's ``gui`` block; an empty name turns that write off):

``cti_userinfo@<domain>``  hash  extension -> JSON ``{"FreeSWITCH-Switchname", "register":
                                 {Hostname, IPv4, IPv6, cluster_ip, cluster_port, network-ip,
                                 user-agent, status, Timestamp, node}, "calls": [{Unique-ID,
                                 Created-Time, Progress-Time, Answered-Time, Call-Direction,
                                 Call-Number, Timestamp, Signal-Bond}]}``; the field goes when
                                 the extension has neither a registration nor a call.
``registrations``          hash  extension -> the sofia::register event as JSON; removed on
                                 sofia::unregister / sofia::expire. (``registration_channel``:
                                 PUBLISH of each register/unregister event; ``registration_list``:
                                 RPUSH of it.)
                                 A dead node's registrations are also removed once they run out
                                 (:meth:`LiveState.expire_registration`, called by the runtime's
                                 reconciler on a live node), as a sofia::expire would.
``calls``                  hash  extension -> JSON ``{"username", "current": uuid, "notify":
                                 callout|callin|progress|answer|hangup|bridge|unbridge,
                                 "<uuid>": {configured call fields}, "activity": [live uuids]}``;
                                 a hung-up call stays as the last one unless
                                 ``call_remove_hangup``. (``call_channel`` / ``call_list``: the
                                 same JSON on each change.)

Which extension a channel belongs to: the dialled user of a ``user/`` leg
(``variable_dialed_user``), the authenticated user of an inbound call (``variable_user_name``),
or the caller's SIP user (``Caller-Username``) of an inbound call when that user is an extension
of ``cti_exten@<domain>`` or has a registration. The answer is remembered per uuid until the
channel hangs up. A domain fsapps does not serve is filed under the default domain, as the ACD
does.

Which channels' records this node holds is noted in its ``recorded`` hash
(:meth:`fsapps.domain.nodes.Nodes.record_owners`): a switch shutdown hangs its calls up after the
runtime stopped reading events, so their hangups never reach these records; the node's next
start removes them (:meth:`LiveState.channels_gone`) as the hangups would have.

Each batch of events costs two round trips, shared with the runtime's other Redis work: one
pipeline reads the records it touches (:meth:`LiveState.read`), one writes them back
(:meth:`LiveState.write`). With every write above turned off (``userinfo: false`` and the
hash/channel/list names empty) the runtime does no live-state work at all. Not atomic across
nodes: an extension's events come from the node its phone is registered on, so two nodes
rarely write the same field; when they do, the last write wins.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fsapps.context import Context, now_ms
from fsapps.domain.nodes import Nodes
from fsapps.fslog import log
from fsapps.store.connection import publish_pipeline
from fsapps.store.keys import seed_exten_hash, seed_userinfo_hash
from fsapps.store.scripts import run_script

REGISTER_SUBCLASSES = ("sofia::register", "sofia::unregister", "sofia::expire")
NOTIFY = {"CHANNEL_CREATE": "", "CHANNEL_PROGRESS": "progress",
          "CHANNEL_PROGRESS_MEDIA": "progress", "CHANNEL_ANSWER": "answer",
          "CHANNEL_BRIDGE": "bridge", "CHANNEL_UNBRIDGE": "unbridge",
          "CHANNEL_HANGUP_COMPLETE": "hangup"}
_FORGET = ("CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY")
MAX_UNOWNED = 20_000

Owner = tuple[str, str]  # (domain, extension)
Header = Callable[[str], str | None]


@dataclass
class LiveBatch:
    """Live state's part of one batch of events between its read and its write."""

    items: list[tuple[str, Any, Any]]     # ("reg", event, owner) / ("call", event, uuid)
    checks: list[tuple[str, Owner]]       # callers that are an extension's only if known
    reads: list[tuple[str, Owner]]        # the records read, in order
    reads_count: int                      # commands queued on the read pipeline


def registration_block(h: Header, node: str) -> dict[str, str]:
    """The ``register`` block of cti_userinfo from a sofia::register event."""
    ipv4 = h("FreeSWITCH-IPv4") or ""
    return {"Hostname": h("FreeSWITCH-Hostname") or "", "IPv4": ipv4,
            "IPv6": h("FreeSWITCH-IPv6") or "",
            # mod_cti's node-to-node address; fsapps reaches a node through its name ("node").
            "cluster_ip": ipv4, "cluster_port": "",
            "network-ip": h("network-ip") or "", "user-agent": h("user-agent") or "",
            "status": h("status") or "", "Timestamp": h("Event-Date-Timestamp") or "",
            "node": node}


def _stamp(h: Header, *names: str) -> str:
    for name in names:
        value = h(name) or ""
        if value and value != "0":
            return value
    return ""


class LiveState:
    def __init__(self, ctx: Context, node: str) -> None:
        self.ctx = ctx
        self.node = node
        self.conf = ctx.settings.directory
        self.fields = tuple(dict.fromkeys(self.conf.call_fields))
        self.owners: dict[str, Owner] = {}
        # Channels whose owner is noted in the node's recorded hash (see channels_gone).
        self._noted: set[str] = set()
        # Channels whose caller was checked and is no extension: not asked again every batch.
        self._unowned: set[str] = set()
        # The calls records when no calls hash keeps them (channel/list only).
        self._calls_memory: dict[Owner, dict[str, Any]] = {}
        self._pushes: list[tuple[str, str, str]] = []  # (publish|rpush, name, JSON)

    @property
    def enabled(self) -> bool:
        c = self.conf
        return bool(c.userinfo or c.registration_hash or c.registration_channel or
                    c.registration_list or c.call_hash or c.call_channel or c.call_list)

    def _domain(self, domain: str | None) -> str:
        settings = self.ctx.settings
        return domain if domain and domain in settings.domains else settings.default_domain

    # ---------------------------------------------------------------- who ---------------
    def registration_owner(self, h: Header) -> Owner | None:
        user = h("username") or h("from-user") or h("user")
        if not user:
            return None
        return self._domain(h("domain_name") or h("realm") or h("from-host") or h("host")), user

    def channel_owner(self, h: Header) -> tuple[Owner | None, bool]:
        """(owner, certain): certain for a dialled user or an authenticated caller; a bare
        Caller-Username must be checked against the directory and the registrations."""
        inbound = (h("Call-Direction") or "") == "inbound"
        dialed = h("variable_dialed_user")
        # FreeSWITCH also sets dialed_user / dialed_domain on the channel that bridges to a
        # user/ endpoint (it expands the user's dial-string there): on an inbound channel they
        # name whom it called, not whose it is (observed on 1.10.12: a trunk caller bridged
        # to user/1001 has variable_dialed_user=1001).
        if dialed and not inbound:
            return (self._domain(h("variable_dialed_domain")), dialed), True
        if not inbound:
            return None, False
        domain = self._domain(h("variable_domain_name") or h("variable_dialed_domain"))
        user = h("variable_user_name")
        if user:
            return (domain, user), True
        user = h("Caller-Username")
        return ((domain, user), False) if user else (None, False)

    # ---------------------------------------------------------------- batch -------------
    def apply(self, events: list[Any]) -> None:
        """Write what ``events`` change, on its own: two round trips (read, write)."""
        r = self.ctx.redis
        reads = r.pipeline(transaction=False)
        batch = self.read(events, reads)
        if batch is None:
            return
        results = reads.execute() if batch.reads else []
        writes = r.pipeline(transaction=False)
        messages = publish_pipeline(r) if self.ctx.settings.redis.cluster else writes
        self.write(batch, results, writes, messages)
        writes.execute()
        if messages is not writes:
            messages.execute()

    def read(self, events: list[Any], pipe: Any) -> LiveBatch | None:
        """Queue on ``pipe`` the reads a batch of events needs: the records it touches and
        whether the callers it is unsure of are extensions (None: nothing to do)."""
        if not self.enabled:
            return None
        items: list[tuple[str, Any, Any]] = []
        unsure: dict[str, Owner] = {}
        for event in events:
            h = event.getHeader
            name = h("Event-Name")
            if name == "CUSTOM":
                if h("Event-Subclass") in REGISTER_SUBCLASSES:
                    owner = self.registration_owner(h)
                    if owner is not None:
                        items.append(("reg", event, owner))
                continue
            uuid = h("Unique-ID")
            if not uuid or (name not in NOTIFY and name != "CHANNEL_DESTROY"):
                continue
            if name in _FORGET:
                self._unowned.discard(uuid)
            if uuid not in self.owners and uuid not in unsure and name != "CHANNEL_DESTROY" \
                    and uuid not in self._unowned:
                found, certain = self.channel_owner(h)
                if found is not None and certain:
                    self.owners[uuid] = found
                elif found is not None:
                    unsure[uuid] = found
            items.append(("call", event, uuid))
        if not items:
            return None
        owners: set[Owner] = set()
        for kind, event, what in items:
            if kind == "reg":
                owners.add(what)
                continue
            for uuid in (what, event.getHeader("Bridge-A-Unique-ID"),
                         event.getHeader("Bridge-B-Unique-ID"),
                         event.getHeader("Other-Leg-Unique-ID")):
                owner = self.owners.get(uuid or "") or unsure.get(uuid or "")
                if owner is not None:
                    owners.add(owner)
        checks = sorted(unsure.items())
        for _, (domain, user) in checks:
            pipe.hexists(seed_exten_hash(domain), user)
            pipe.hexists(self.conf.registration_hash or seed_exten_hash(domain), user)
        reads = self._queue_reads(pipe, owners)
        return LiveBatch(items, checks, reads, 2 * len(checks) + len(reads))

    def write(self, batch: LiveBatch, results: list[Any], pipe: Any, messages: Any) -> None:
        """Apply a batch read by :meth:`read` (``results``: the answers to its reads): queue
        the records' writes on ``pipe`` and their channel copies on ``messages`` (the same
        pipeline outside Redis Cluster)."""
        checks = batch.checks
        forgotten = self._forgotten(batch) if checks else set()
        for index, (uuid, owner) in enumerate(checks):
            if results[2 * index] or results[2 * index + 1]:
                self.owners[uuid] = owner
            elif uuid not in forgotten:
                if len(self._unowned) >= MAX_UNOWNED:  # hangups missed: start again
                    self._unowned.clear()
                self._unowned.add(uuid)
        docs = _docs(batch.reads, results[2 * len(checks):batch.reads_count])
        # Channel and list copies go out once per change, in order (the hashes once a batch).
        self._pushes = []
        dirty: set[tuple[str, Owner]] = set()
        for kind, event, what in batch.items:
            if kind == "reg":
                self._registration(event, what, docs, dirty)
            else:
                self._channel(event, what, docs, dirty)
        # The channels whose records are now held (and still up): noted for the node's next
        # start, which removes the records of those the switch ends unseen.
        noted = {uuid: owner_text(self.owners[uuid]) for kind, _, uuid in batch.items
                 if kind == "call" and uuid in self.owners and uuid not in self._noted}
        self._noted.update(noted)
        self._queue_writes(docs, dirty, noted, pipe, messages)

    @staticmethod
    def _forgotten(batch: LiveBatch) -> set[str]:
        """The channels that end in ``batch``."""
        return {what for kind, event, what in batch.items
                if kind == "call" and event.getHeader("Event-Name") in _FORGET}

    def _queue_reads(self, pipe: Any, owners: set[Owner]) -> list[tuple[str, Owner]]:
        """Queue on ``pipe`` the reads of the owners' cti_userinfo and calls records."""
        reads: list[tuple[str, Owner]] = []
        for owner in sorted(owners):
            if self.conf.userinfo:
                pipe.hget(seed_userinfo_hash(owner[0]), owner[1])
                reads.append(("info", owner))
            if self.conf.call_hash:
                pipe.hget(self.conf.call_hash, owner[1])
                reads.append(("calls", owner))
        return reads

    # ---------------------------------------------------------------- restart -----------
    def channels_gone(self, gone: dict[str, Owner]) -> None:
        """Channels whose records this node holds but which the switch ended unseen (hung up
        by a shutdown after the runtime stopped, or lost in a crash): their records go as
        their CHANNEL_HANGUP_COMPLETE would have taken them (out of cti_userinfo's calls and
        the calls' activity; the calls record says ``hangup``, its channel/list copies go
        out). The hangup's time and cause are unknown, so no field claims them. Two round
        trips."""
        for uuid in gone:
            self.owners.pop(uuid, None)
            self._noted.discard(uuid)
        if not gone or not self.enabled:
            return
        pipe = self.ctx.redis.pipeline(transaction=False)
        reads = self._queue_reads(pipe, set(gone.values()))
        docs = _docs(reads, pipe.execute() if reads else [])
        stamp = str(now_ms() * 1000)

        def ended(header: str) -> str | None:
            return {"Answer-State": "hangup", "Event-Date-Timestamp": stamp}.get(header)

        self._pushes = []
        dirty: set[tuple[str, Owner]] = set()
        for uuid, owner in sorted(gone.items()):
            if self._holds(docs, owner, uuid):  # else it went (or moved on) meanwhile
                self._update(owner, uuid, "hangup", ended, docs, dirty)
        self._write(docs, dirty)

    def _holds(self, docs: dict[tuple[str, Owner], Any], owner: Owner, uuid: str) -> bool:
        """Does ``owner``'s cti_userinfo or calls record still show channel ``uuid`` live?
        (True when neither hash is kept: only the channel/list copies can tell.)"""
        if not (self.conf.userinfo or self.conf.call_hash):
            return True
        calls = (docs.get(("info", owner)) or {}).get("calls")
        if isinstance(calls, list) and any(isinstance(c, dict) and c.get("Unique-ID") == uuid
                                           for c in calls):
            return True
        activity = (docs.get(("calls", owner)) or {}).get("activity")
        return isinstance(activity, list) and uuid in activity

    def adopt(self, owners: dict[str, Owner]) -> None:
        """Live channels whose owners a previous runtime of this node noted: their next
        events update the same records."""
        self.owners.update(owners)
        self._noted.update(owners)

    # ---------------------------------------------------------------- registrations -----
    def _registration(self, event: Any, owner: Owner, docs: dict[tuple[str, Owner], Any],
                      dirty: set[tuple[str, Owner]]) -> None:
        h = event.getHeader
        registered = h("Event-Subclass") == "sofia::register"
        key = ("reg", owner)
        text = event.serialize("json")
        docs.setdefault(key, [])
        docs[key].append((registered, text))
        dirty.add(key)
        if self.conf.registration_channel:
            self._pushes.append(("publish", self.conf.registration_channel, text))
        if self.conf.registration_list:
            self._pushes.append(("rpush", self.conf.registration_list, text))
        if self.conf.userinfo:
            info = docs.setdefault(("info", owner), {}) or {}
            if registered:
                info["FreeSWITCH-Switchname"] = h("FreeSWITCH-Switchname") or ""
                info["register"] = registration_block(h, self.node)
                info.setdefault("calls", [])
            else:
                info.pop("register", None)
            docs[("info", owner)] = info
            dirty.add(("info", owner))

    def expire_registration(self, domain: str, user: str, node: str, stamp: str,
                            until_ms: int) -> None:
        """The registration ``node`` recorded for ``user`` (its sofia::register's
        Event-Date-Timestamp is ``stamp``) ran out while ``node`` was dead: what its
        sofia::expire would have done. The records go only while they are still that
        registration's (compare-and-set): a phone that registered again elsewhere meanwhile
        keeps its new records. The expire event is published as the node would have."""
        c = self.conf
        r = self.ctx.redis
        owner = (domain, user)
        stored: dict[str, Any] = {}
        if c.registration_hash:
            text = r.hget(c.registration_hash, user)
            stored = _loads(text, "registration", owner)
            if text and stored.get("Event-Date-Timestamp", "") == stamp:
                _swap(r, c.registration_hash, user, text, None)
        if c.userinfo:
            key = seed_userinfo_hash(domain)
            text = r.hget(key, user)
            info = _loads(text, "info", owner)
            block = info.get("register")
            if text and isinstance(block, dict) and block.get("node") == node and \
                    block.get("Timestamp", "") == stamp:
                info.pop("register")
                _swap(r, key, user, text, _dumps(info) if info.get("calls") else None)
        if not (c.registration_channel or c.registration_list):
            return
        # mod_sofia's sofia::expire headers (the absolute expiry in seconds), on behalf of the
        # dead node: its core headers come from its own register event when kept.
        event = {"Event-Name": "CUSTOM", "Core-UUID": stored.get("Core-UUID", ""),
                 "FreeSWITCH-Hostname": stored.get("FreeSWITCH-Hostname", node),
                 "FreeSWITCH-Switchname": stored.get("FreeSWITCH-Switchname", node),
                 "FreeSWITCH-IPv4": stored.get("FreeSWITCH-IPv4", ""),
                 "Event-Date-Timestamp": str(now_ms() * 1000),
                 "Event-Subclass": "sofia::expire",
                 "profile-name": stored.get("profile-name", ""),
                 "call-id": stored.get("call-id", ""), "user": user, "host": domain,
                 "contact": stored.get("contact", ""), "expires": str(until_ms // 1000),
                 "user-agent": stored.get("user-agent", ""),
                 # not a mod_sofia header: which node's registration fsapps expired
                 "fsapps-expired-node": node}
        text = json.dumps(event, ensure_ascii=False)
        if c.registration_list:
            r.rpush(c.registration_list, text)
        if c.registration_channel:
            r.publish(c.registration_channel, text)

    # ---------------------------------------------------------------- calls -------------
    def _channel(self, event: Any, uuid: str, docs: dict[tuple[str, Owner], Any],
                 dirty: set[tuple[str, Owner]]) -> None:
        h = event.getHeader
        name = h("Event-Name") or ""
        owner = self.owners.get(uuid)
        if name in _FORGET:
            self.owners.pop(uuid, None)
            self._noted.discard(uuid)  # its CHANNEL_DESTROY drops the note (Nodes)
        if name == "CHANNEL_DESTROY" or owner is None:
            return
        notify = NOTIFY[name] or ("callout" if h("Call-Direction") == "inbound" else "callin")
        self._update(owner, uuid, notify, h, docs, dirty)
        if name in ("CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE"):
            other = h("Bridge-B-Unique-ID") or h("Other-Leg-Unique-ID") or ""
            if other == uuid:
                other = h("Bridge-A-Unique-ID") or ""
            other_owner = self.owners.get(other)
            if other and other_owner is not None:
                def partner(header: str) -> str | None:
                    if header == "variable_signal_bond" and notify == "bridge":
                        return uuid
                    if header in ("Event-Date-Timestamp",):
                        return h(header)
                    return None
                self._update(other_owner, other, notify, partner, docs, dirty)

    def _update(self, owner: Owner, uuid: str, notify: str, h: Header,
                docs: dict[tuple[str, Owner], Any], dirty: set[tuple[str, Owner]]) -> None:
        hangup = notify == "hangup"
        if self.conf.userinfo:
            info = docs.get(("info", owner)) or {}
            calls = [c for c in info.get("calls", []) if isinstance(c, dict)]
            entry = next((c for c in calls if c.get("Unique-ID") == uuid), None)
            if hangup:
                calls = [c for c in calls if c is not entry]
            else:
                if entry is None:
                    direction = h("Call-Direction") or ""
                    number = h("Caller-Destination-Number") if direction == "inbound" \
                        else h("Caller-Caller-ID-Number")
                    entry = {"Unique-ID": uuid,
                             "Created-Time": _stamp(h, "Caller-Channel-Created-Time",
                                                    "Caller-Profile-Created-Time"),
                             "Call-Direction": direction, "Call-Number": number or ""}
                    calls.append(entry)
                progress = _stamp(h, "Caller-Channel-Progress-Time",
                                  "Caller-Channel-Progress-Media-Time")
                answered = _stamp(h, "Caller-Channel-Answered-Time")
                if progress:
                    entry["Progress-Time"] = progress
                if answered:
                    entry["Answered-Time"] = answered
                bond = h("variable_signal_bond") or (h("Other-Leg-Unique-ID")
                                                     if notify == "bridge" else "")
                if bond:
                    entry["Signal-Bond"] = bond
                entry["Timestamp"] = h("Event-Date-Timestamp") or entry.get("Timestamp", "")
            info["calls"] = calls
            docs[("info", owner)] = info
            dirty.add(("info", owner))
        if self.conf.call_hash or self.conf.call_channel or self.conf.call_list:
            if self.conf.call_hash:
                record = docs.get(("calls", owner)) or {}
            else:
                record = self._calls_memory.get(owner) or {}
            activity = [u for u in record.get("activity", []) if isinstance(u, str)]
            known = record.get(uuid)
            fields: dict[str, Any] = known if isinstance(known, dict) else {}
            for name in self.fields:
                value = h(name)
                if value is not None:
                    fields[name] = value
            if hangup:
                activity = [u for u in activity if u != uuid]
            elif uuid not in activity:
                activity.append(uuid)
            keep = set(activity) | ({uuid} if not (hangup and self.conf.call_remove_hangup)
                                    else set())
            per_call = {u: v for u, v in record.items() if u in keep and isinstance(v, dict)}
            if uuid in keep:
                per_call[uuid] = fields
            record = {"username": owner[1], "current": uuid, "notify": notify, **per_call,
                      "activity": activity}
            if hangup and self.conf.call_remove_hangup and not activity:
                record = {"username": owner[1], "current": uuid, "notify": notify,
                          "activity": [], "_remove": True}
            docs[("calls", owner)] = record
            text = _dumps({k: v for k, v in record.items() if k != "_remove"})
            if self.conf.call_channel:
                self._pushes.append(("publish", self.conf.call_channel, text))
            if self.conf.call_list:
                self._pushes.append(("rpush", self.conf.call_list, text))
            if not self.conf.call_hash:
                self._calls_memory[owner] = record
            dirty.add(("calls", owner))

    # ---------------------------------------------------------------- write -------------
    def _write(self, docs: dict[tuple[str, Owner], Any], dirty: set[tuple[str, Owner]]) -> None:
        r = self.ctx.redis
        pipe = r.pipeline(transaction=False)
        messages = publish_pipeline(r) if self.ctx.settings.redis.cluster else pipe
        self._queue_writes(docs, dirty, {}, pipe, messages)
        pipe.execute()
        if messages is not pipe:
            messages.execute()

    def _queue_writes(self, docs: dict[tuple[str, Owner], Any], dirty: set[tuple[str, Owner]],
                      noted: dict[str, str], pipe: Any, messages: Any) -> None:
        """Queue the records' writes on ``pipe``, then their channel copies on ``messages``
        (Redis Cluster refuses PUBLISH in a pipeline: there it is a publish pipeline)."""
        c = self.conf
        pushes = self._pushes
        Nodes(self.ctx).record_owners(self.node, noted, pipe)
        for what, owner in sorted(dirty):
            domain, user = owner
            doc = docs[(what, owner)]
            if what == "reg":
                for registered, text in doc:
                    if c.registration_hash:
                        if registered:
                            pipe.hset(c.registration_hash, user, text)
                        else:
                            pipe.hdel(c.registration_hash, user)
            elif what == "info":
                if not doc.get("register") and not doc.get("calls"):
                    pipe.hdel(seed_userinfo_hash(domain), user)
                else:
                    pipe.hset(seed_userinfo_hash(domain), user, _dumps(doc))
            elif what == "calls":
                remove = bool(doc.pop("_remove", False))
                if c.call_hash:
                    if remove:
                        pipe.hdel(c.call_hash, user)
                    else:
                        pipe.hset(c.call_hash, user, _dumps(doc))
                if remove:
                    self._calls_memory.pop(owner, None)
        for command, name, text in pushes:
            if command == "rpush":
                pipe.rpush(name, text)
        for command, name, text in pushes:
            if command == "publish":
                messages.publish(name, text)


def owner_text(owner: Owner) -> str:
    """How a channel's owner is noted in the node's recorded hash: ``[domain, extension]``."""
    return json.dumps(list(owner), ensure_ascii=False, separators=(",", ":"))


def parse_owner(text: str) -> Owner | None:
    """The owner :func:`owner_text` noted (None for "" or anything else)."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    if isinstance(value, list) and len(value) == 2 and all(
            isinstance(part, str) and part for part in value):
        return value[0], value[1]
    return None


def _docs(reads: list[tuple[str, Owner]], results: list[Any]) -> dict[tuple[str, Owner], Any]:
    return {(what, owner): _loads(text, what, owner)
            for (what, owner), text in zip(reads, results, strict=True)}


def _loads(text: Any, what: str, owner: Owner) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        log("WARNING", f"live state: {what} record of {owner[1]}@{owner[0]} was not JSON; "
                       "starting it again")
        return {}
    return value if isinstance(value, dict) else {}


def _swap(r: Any, key: str, field: str, expected: str, new: str | None) -> bool:
    """Set (or with None delete) ``key``'s ``field`` only while it still holds ``expected``."""
    return bool(run_script(r, "hash_field_swap", [key],
                           [field, expected, "del" if new is None else "set", new or ""]))


def _dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
