"""wellClient's event stream: STOMP 1.1 sessions over SockJS, fed by the domains' CSTA feeds.

One :class:`Hub` per CTI server process listens to ``p:{d}:csta`` of every configured domain
(records from the switch runtimes, :mod:`fsapps.events.cstafeed`, and from CTI servers for agent
changes, transfers and conferences), turns each record into the events of each party
(:func:`fsapps.server.csta.events.expand`) and sends them to the STOMP subscriptions of those
parties. It keeps no call state: a record carries all its event needs.

Destinations a client may SUBSCRIBE to (after a CONNECT carrying its token in the header
``sessionId``, ``passcode`` or ``Authorization``, or — wellClient's CONNECT has no header — a
CONNECT on a SockJS session whose requests carried the session cookie set by ``/login``, from a
page allowed to use it: :mod:`fsapps.server.cors`):

- ``/topic/csta/agent/<job>@<domain>``: the events of that agent's device (wellClient's); an
  agent only its own job number, a supervisor any of the domains it oversees (``users[].
  domains``, every domain when empty);
  later wellClient releases name the same topic ``/topic/event.agent.*.<job>@<domain>`` with
  the domain's dots written as underscores;
- ``/topic/csta/device/<ext>@<domain>``: the events of one device (an agent only its own);
- ``/topic/csta/domain/<domain>``: one event per change in the domain, for the wallboard
  (supervisor).

Agent events published before the agent's subscription arrived (wellClient logs in, goes ready,
then opens the socket) wait in ``p:{d}:csta:pending:<job>`` for 30 s and are delivered, in
order, when the subscription comes; an event is never delivered twice to one session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from fsapps import __version__
from fsapps.server.auth import NotAuthorized
from fsapps.server.csta import events as ev
from fsapps.server.csta import presence, stomp
from fsapps.server.csta.sockjs import Session
from fsapps.store.keys import KeyPartError

logger = logging.getLogger("fsapps.server.csta")

SERVER_HEARTBEAT_MS = 10_000
PENDING_TTL_S = 30
WALLBOARD_PATTERNS = ("queue_*", "agent_*")
# Feed messages handled together: their user data is read in one round trip.
BATCH = 200
_SEEN = 512
# A session's token is checked again this often (and on every SUBSCRIBE): a revoked or expired
# token, or a user removed or demoted in the settings, ends the session instead of leaving it
# reading events for as long as the socket stays up.
TOKEN_RECHECK_S = 30.0
# A session that has not CONNECTed by then is closed: an open socket costs memory, and only
# an authenticated one is worth it.
CONNECT_TIMEOUT_S = 15.0
# Bounds one user can not push past (per CTI server process): live STOMP sessions per user
# (a few browser tabs, not thousands) and subscriptions per session (each is a scan per event).
MAX_SESSIONS_PER_USER = 20
# How often open event sessions count as their agents' pages being there, and gone pages are
# looked for (at most: a third of cti.agent_presence_timeout_seconds when that is shorter).
PRESENCE_SWEEP_S = 10.0
MAX_SUBSCRIPTIONS = 16


@dataclass(eq=False)
class Subscription:
    conn: StompConnection
    sub_id: str
    destination: str
    kind: str            # agent | device | domain
    domain: str
    agent_id: str = ""   # job@domain for kind agent
    device: str = ""     # ext@domain (agent: the device it logged in with)


@dataclass
class Hub:
    services: Any
    subscriptions: list[Subscription] = field(default_factory=list)
    # username -> its CONNECTed STOMP sessions in this process
    sessions_of: dict[str, set[StompConnection]] = field(default_factory=dict)
    # log_off_gone(ctx, domain, timeout_s) -> jobs: the presence sweep (callcontrol's)
    sweep: Any = None
    _task: asyncio.Task[None] | None = None
    _presence: asyncio.Task[None] | None = None
    _client: Any = None
    _by_conn: dict[Any, list[Subscription]] = field(default_factory=dict)
    _by_device: dict[str, list[Subscription]] = field(default_factory=dict)
    _by_agent: dict[str, list[Subscription]] = field(default_factory=dict)
    _by_domain: dict[str, list[Subscription]] = field(default_factory=dict)

    # ---------------------------------------------------------------- feed ---------------
    async def start(self) -> None:
        settings = self.services.settings
        self._client = aioredis.Redis.from_url(settings.redis.url.reveal(),
                                               decode_responses=True)
        channels = [self.services.ctx.keys(d).csta_feed() for d in settings.domains]
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(*channels)
        # the seed's queue and agent messages: the wallboard refreshes on them
        await pubsub.psubscribe(*WALLBOARD_PATTERNS)
        self._task = asyncio.ensure_future(self._listen(pubsub))
        if settings.cti.agent_presence_timeout_seconds and self.sweep is not None:
            self._presence = asyncio.ensure_future(self._watch_presence(
                settings.cti.agent_presence_timeout_seconds))

    async def stop(self) -> None:
        for task in (self._task, self._presence):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._client is not None:
            await self._client.aclose()

    async def _listen(self, pubsub: Any) -> None:
        while True:
            try:
                batch = await self._next_batch(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: say so once a second, go on
                logger.error("CSTA feed: %s", exc)
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await pubsub.subscribe(*[self.services.ctx.keys(d).csta_feed()
                                             for d in self.services.settings.domains])
                continue
            records: list[dict[str, Any]] = []
            for message in batch:
                if message.get("type") == "pmessage":
                    self.wallboard_signal(str(message.get("channel", "")), message.get("data"))
                elif message.get("type") == "message":
                    try:
                        records.append(json.loads(message["data"]))
                    except ValueError:
                        logger.warning("CSTA feed: not JSON: %r", message["data"][:200])
            await self._add_user_data(records)
            for record in records:
                try:
                    await self.dispatch(record)
                except Exception:
                    logger.exception("CSTA feed: record %r", record)

    async def _watch_presence(self, timeout_s: float) -> None:
        """Every few seconds: the agents with an event session open here on their own topic
        are heard from; then those of every domain heard from by no one for ``timeout_s`` are
        logged off (:mod:`fsapps.server.csta.presence`)."""
        services = self.services
        while True:
            await asyncio.sleep(min(PRESENCE_SWEEP_S, timeout_s / 3))
            try:
                for domain, jobs in self.open_agent_pages().items():
                    await services.run(presence.heard_from, services.ctx, domain, jobs)
                for domain in services.settings.domains:
                    for job in await services.run(self.sweep, services.ctx, domain, timeout_s):
                        logger.info("agent %s@%s logged off: its page was not heard from "
                                    "for %g s", job, domain, timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the next sweep tries again
                logger.warning("agent presence: %s", exc)

    def open_agent_pages(self) -> dict[str, set[str]]:
        """domain -> the job numbers with a session subscribed here to their own topic (a
        supervisor watching an agent does not keep the agent's page alive)."""
        pages: dict[str, set[str]] = {}
        for sub in self.subscriptions:
            job, _, domain = sub.agent_id.partition("@")
            if sub.kind == "agent" and sub.conn.principal is not None and \
                    sub.conn.principal.username == job:
                pages.setdefault(domain, set()).add(job)
        return pages

    async def _next_batch(self, pubsub: Any) -> list[dict[str, Any]]:
        """The messages waiting on the feed (at most BATCH; waits up to 1 s for the first)."""
        first = await pubsub.get_message(timeout=1.0)
        if first is None:
            return []
        batch = [first]
        while len(batch) < BATCH:
            more = await pubsub.get_message(timeout=0)
            if more is None:
                break
            batch.append(more)
        return batch

    async def _add_user_data(self, records: list[dict[str, Any]]) -> None:
        """delivered / established carry the call's user data (seed 004): read it for a whole
        batch in one pipelined round trip, not one wait per record."""
        wanted = [r for r in records if r.get("name") in ("delivered", "established")
                  and "userData" not in r and r.get("callId")]
        if not wanted or self._client is None:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for record in wanted:
                    keys = self.services.ctx.keys(record.get("domain") or None)
                    pipe.hgetall(keys.csta_userdata(record["callId"]))
                found = await pipe.execute()
        except Exception as exc:  # the events still go out, without their user data
            logger.warning("CSTA feed: user data not read: %s", exc)
            return
        for record, data in zip(wanted, found, strict=True):
            record["userData"] = data

    async def dispatch(self, record: dict[str, Any],
                       only: Subscription | None = None) -> None:
        """Send ``record``'s events to the subscriptions of its parties (or to ``only``)."""
        name = record.get("name", "")
        if name in ("delivered", "established") and "userData" not in record:
            await self._add_user_data([record])
        if name in ev.AGENT_EVENTS:
            agents = [only] if only is not None else self._by_agent.get(
                str(record.get("agentId", "")), [])
            for sub in list(agents):
                if sub.kind == "agent" and sub.agent_id == record.get("agentId"):
                    self._move(sub, str(record.get("device", sub.device)))
        pairs = ev.expand(record)
        if not pairs:
            return
        record_id = record.get("id", "")
        # each event is encoded once, whatever the number of sessions it goes to (only the
        # per-session serial is put in as it is sent: EncodedEvent)
        encoded: dict[int, EncodedEvent] = {}

        def once(event: dict[str, Any]) -> EncodedEvent:
            found = encoded.get(id(event))
            if found is None:
                found = encoded[id(event)] = EncodedEvent(event)
            return found
        domain_subs = [only] if only is not None else self._by_domain.get(
            str(record.get("domain", "")), [])
        for sub in list(domain_subs):
            if sub.kind == "domain" and sub.domain == record.get("domain"):
                own = [e for src, e in pairs if src == record.get("device")]
                event = (own or [pairs[0][1]])[0]
                sub.conn.deliver(sub, record_id, event, once(event))
        for src, event in pairs:
            if not src:
                continue
            targets = ([only] if only.kind != "domain" and only.device == src else []) \
                if only is not None else self._by_device.get(src, [])
            for sub in list(targets):
                sub.conn.deliver(sub, record_id, event, once(event))

    def wallboard_signal(self, channel: str, data: Any) -> None:
        """A seed queue_*/agent_* message: the wallboards (domain subscriptions) refresh."""
        kind = "queueChanged" if channel.startswith("queue_") else "agentChanged"
        event = {"eventName": kind, "eventType": "wallboard", "eventTime": ev.event_time(),
                 "serial": 0, "channel": channel, "data": str(data or "")[:1000]}
        encoded = EncodedEvent(event)
        for subs in list(self._by_domain.values()):
            for sub in list(subs):
                sub.conn.deliver(sub, "", event, encoded)

    # ---------------------------------------------------------------- sessions -----------
    def connection(self, session: Session) -> StompConnection:
        return StompConnection(self, session)

    # The subscriptions are indexed by what a record names (its parties' devices, its
    # agent, its domain) and by session: a record reaches its few subscriptions without a
    # look at the others (it scanned every subscription of the process before).
    def add(self, sub: Subscription) -> None:
        self.subscriptions.append(sub)
        self._by_conn.setdefault(sub.conn, []).append(sub)
        if sub.kind == "domain":
            self._by_domain.setdefault(sub.domain, []).append(sub)
        else:
            if sub.kind == "agent":
                self._by_agent.setdefault(sub.agent_id, []).append(sub)
            if sub.device:
                self._by_device.setdefault(sub.device, []).append(sub)

    def _move(self, sub: Subscription, device: str) -> None:
        """An agent subscription follows its agent to ``device`` (it logged in there)."""
        if device == sub.device:
            return
        _discard(self._by_device, sub.device, sub)
        sub.device = device
        if device and sub in self._by_conn.get(sub.conn, []):
            self._by_device.setdefault(device, []).append(sub)

    def remove(self, conn: StompConnection, sub_id: str | None = None) -> None:
        mine = self._by_conn.get(conn, [])
        gone = [s for s in mine if sub_id is None or s.sub_id == sub_id]
        if not gone:
            return
        for sub in gone:
            _discard(self._by_conn, conn, sub)
            if sub.kind == "domain":
                _discard(self._by_domain, sub.domain, sub)
            _discard(self._by_agent, sub.agent_id, sub)
            _discard(self._by_device, sub.device, sub)
        dropped = {id(s) for s in gone}
        self.subscriptions = [s for s in self.subscriptions if id(s) not in dropped]

    def subscriptions_of(self, conn: StompConnection) -> list[Subscription]:
        return list(self._by_conn.get(conn, []))

    def register(self, conn: StompConnection, username: str) -> bool:
        """Count a CONNECTed session of ``username``; False when it has too many already."""
        mine = self.sessions_of.setdefault(username, set())
        if conn not in mine and len(mine) >= MAX_SESSIONS_PER_USER:
            return False
        mine.add(conn)
        return True

    def unregister(self, conn: StompConnection) -> None:
        for username, conns in list(self.sessions_of.items()):
            conns.discard(conn)
            if not conns:
                del self.sessions_of[username]


def _discard(index: dict[Any, list[Subscription]], key: Any, sub: Subscription) -> None:
    subs = index.get(key)
    if subs is not None:
        with contextlib.suppress(ValueError):
            subs.remove(sub)
        if not subs:
            del index[key]


_SERIAL = "__fsapps_serial__"


class EncodedEvent:
    """An event's JSON text, made once for every session it goes to; each session's
    ``serial`` (:func:`fsapps.server.csta.events.with_serial`) is put in as it is sent."""

    def __init__(self, event: dict[str, Any]) -> None:
        text = json.dumps(ev.with_serial(event, _SERIAL), ensure_ascii=False)  # type: ignore
        self.head, _, self.tail = text.partition(json.dumps(_SERIAL))

    def with_serial(self, serial: int) -> str:
        return f"{self.head}{serial}{self.tail}"


class StompConnection:
    """One STOMP session on one SockJS session."""

    def __init__(self, hub: Hub, session: Session) -> None:
        self.hub = hub
        self.session = session
        self.parser = stomp.Parser()
        self.principal: Any = None
        self.serial = 0
        self.message_no = 0
        self.seen: deque[str] = deque(maxlen=_SEEN)
        self._beat: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        # the CONNECT's token, kept to check it again; never logged nor shown in a repr
        self._token = ""
        self._connect_timer = asyncio.get_running_loop().call_later(
            CONNECT_TIMEOUT_S, self._connect_timeout)

    def __repr__(self) -> str:
        who = self.principal.username if self.principal is not None else "-"
        return f"<StompConnection {self.session.id} user={who}>"

    def _connect_timeout(self) -> None:
        if self.principal is None and self.session.closed is None:
            self.error("not connected", f"no CONNECT within {CONNECT_TIMEOUT_S:g} s")

    # ------------------------------------------------------------ out -------------------
    def send(self, frame: stomp.Frame) -> None:
        self.session.send(frame.encode())

    def error(self, message: str, detail: str = "") -> None:
        self.send(stomp.Frame("ERROR", {"message": message,
                                        "content-type": "text/plain"}, detail or message))
        self.session.close(3000, message[:100])

    def deliver(self, sub: Subscription, record_id: str, event: dict[str, Any],
                encoded: EncodedEvent | None = None) -> None:
        if self.session.closed is not None:
            # closed (a slow consumer, a revoked token) but not yet forgotten: stop feeding it
            self.hub.remove(self)
            return
        key = f"{sub.sub_id}/{record_id}/{event.get('eventName')}/{event.get('srcDeviceId')}"
        if record_id and key in self.seen:
            return
        self.seen.append(key)
        self.serial += 1
        self.message_no += 1
        body = (encoded or EncodedEvent(event)).with_serial(self.serial)
        self.send(stomp.Frame("MESSAGE", {
            "subscription": sub.sub_id, "message-id": f"{self.session.id}-{self.message_no}",
            "destination": sub.destination, "content-type": "application/json;charset=UTF-8"},
            body))

    # ------------------------------------------------------------ in --------------------
    async def on_message(self, text: str) -> None:
        try:
            frames = list(self.parser.feed(text))
        except stomp.StompError as exc:
            self.error("malformed frame", str(exc))
            return
        for frame in frames:
            if self.session.closed is not None:
                return
            await self.on_frame(frame)

    async def on_close(self) -> None:
        self.hub.remove(self)
        self.hub.unregister(self)
        self._connect_timer.cancel()
        for task in (self._beat, self._watch):
            if task is not None:
                task.cancel()

    async def on_frame(self, frame: stomp.Frame) -> None:
        command = frame.command
        if command in ("CONNECT", "STOMP"):
            await self.connect(frame)
            return
        if self.principal is None:
            self.error("not connected", f"{command} before CONNECT")
            return
        if command == "SUBSCRIBE":
            await self.subscribe(frame)  # answers its receipt itself, before held events
            return
        if command == "UNSUBSCRIBE":
            self.hub.remove(self, frame.header("id"))
        elif command == "DISCONNECT":
            self.receipt(frame)
            self.hub.remove(self)
            self.session.close(1000, "disconnected")
            return
        elif command == "SEND":
            self.error("SEND is not supported", "the event stream is read-only")
            return
        self.receipt(frame)

    def receipt(self, frame: stomp.Frame) -> None:
        receipt = frame.header("receipt")
        if receipt:
            self.send(stomp.Frame("RECEIPT", {"receipt-id": receipt}))

    async def connect(self, frame: stomp.Frame) -> None:
        if self.principal is not None:
            # one CONNECT per session: a second one could swap the user under live
            # subscriptions that were allowed for the first
            self.error("already connected", "a session CONNECTs once")
            return
        versions = frame.header("accept-version", "1.0").split(",")
        if "1.1" not in versions and "1.0" not in versions:
            self.error("unsupported STOMP version", f"server speaks 1.1, not {versions}")
            return
        # the CONNECT's own token, else (wellClient connects with no header) the session
        # cookie its transport's requests carried; neither: refused (check of '')
        token = frame.header("sessionId") or frame.header("passcode") or \
            frame.header("Authorization").removeprefix("Nway ").removeprefix("Bearer ") or \
            self.session.cookie_token
        services = self.hub.services
        try:
            self.principal = await services.run(services.auth.check, token)
        except Exception as exc:  # NotAuthorized and Redis trouble alike: no session
            self.error("Not Authorized", str(exc))
            return
        if not self.hub.register(self, self.principal.username):
            self.error("too many sessions",
                       f"user {self.principal.username!r} has {MAX_SESSIONS_PER_USER} event "
                       "sessions open on this server already")
            self.principal = None
            return
        self._token = token
        self._connect_timer.cancel()
        try:
            send_ms, recv_ms = stomp.negotiate_heartbeat(frame.header("heart-beat", "0,0"),
                                                         SERVER_HEARTBEAT_MS, 0)
        except stomp.StompError as exc:
            self.error("bad heart-beat header", str(exc))
            return
        self.send(stomp.Frame("CONNECTED", {
            "version": "1.1" if "1.1" in versions else "1.0",
            "heart-beat": f"{SERVER_HEARTBEAT_MS},0", "server": f"fsapps/{__version__}",
            "session": self.session.id, "user-name": self.principal.username}))
        if send_ms:
            self._beat = asyncio.ensure_future(self._heartbeat(send_ms / 1000))
        self._watch = asyncio.ensure_future(self._recheck_token())

    async def still_authorized(self) -> bool:
        """Is the CONNECT's token still good for the same user and rights? Ends the session
        with an ERROR when it is not (Redis trouble is not a refusal: the session stays)."""
        services = self.hub.services
        try:
            now = await services.run(services.auth.check, self._token)
        except NotAuthorized as exc:
            self.error("Not Authorized", str(exc))
        except Exception:  # Redis away: the next check decides
            return True
        else:
            if now == self.principal:
                return True
            self.error("Not Authorized", "the user's role or extension changed")
        self.hub.remove(self)
        return False

    async def _recheck_token(self) -> None:
        while self.session.closed is None:
            await asyncio.sleep(TOKEN_RECHECK_S)
            if self.session.closed is None and not await self.still_authorized():
                return

    async def _heartbeat(self, every_s: float) -> None:
        while self.session.closed is None:
            await asyncio.sleep(every_s)
            self.session.send(stomp.HEARTBEAT)

    async def subscribe(self, frame: stomp.Frame) -> None:
        sub_id, destination = frame.header("id"), frame.header("destination")
        if not sub_id or not destination:
            self.error("SUBSCRIBE needs id and destination")
            return
        mine = self.hub.subscriptions_of(self)
        if any(s.sub_id == sub_id for s in mine):
            self.error("duplicate subscription id", f"id {sub_id!r} is subscribed already")
            return
        if len(mine) >= MAX_SUBSCRIPTIONS:
            self.error("too many subscriptions",
                       f"a session may hold {MAX_SUBSCRIPTIONS} subscriptions")
            return
        if not await self.still_authorized():
            return
        settings = self.hub.services.settings
        parsed = parse_destination(destination, settings.domains)
        if parsed is None or parsed[1] not in settings.domains:
            self.error("unknown destination", destination)
            return
        kind, domain, name = parsed
        p = self.principal
        # an agent its own topics; a supervisor those of the domains it oversees
        if kind == "agent":
            allowed = p.username == name or p.oversees(domain)
        elif kind == "device":
            allowed = p.oversees(domain) if p.at_least("supervisor") else p.may_act_on(name)
        else:
            allowed = p.oversees(domain)
        if not allowed:
            self.error("Forbidden", f"user {p.username!r} may not subscribe to {destination}")
            return
        sub = Subscription(self, sub_id, destination, kind, domain)
        if kind == "agent":
            sub.agent_id = f"{name}@{domain}"
            state = await self.hub.services.run(agent_state, self.hub.services.ctx, domain,
                                                name)
            sub.device = state.get("device", "")
        elif kind == "device":
            sub.device = f"{name}@{domain}"
        self.hub.add(sub)
        self.receipt(frame)
        if kind == "agent":
            for record in await self.hub.services.run(take_pending, self.hub.services.ctx,
                                                      domain, name):
                await self.hub.dispatch(record, only=sub)


# Later wellClient releases (3.9 on) subscribe to the agent's events as
# ``/topic/event.agent.*.<loginId>`` with the loginId's dots written as underscores
# (``5001@test_cc`` for 5001@test.cc): the same agent topic under another name.
AGENT_TOPIC_ALIAS = "/topic/event.agent.*."


def parse_destination(destination: str,
                      domains: Iterable[str] = ()) -> tuple[str, str, str] | None:
    """(kind, domain, name) of a destination this server serves, else None. ``domains``
    (the configured ones) resolve the underscored domain of :data:`AGENT_TOPIC_ALIAS`."""
    if destination.startswith(AGENT_TOPIC_ALIAS):
        name, at, written = destination[len(AGENT_TOPIC_ALIAS):].rpartition("@")
        if not (at and name and written) or "/" in name:
            return None
        matches = [d for d in domains if d.replace(".", "_") == written]
        return ("agent", matches[0], name) if len(matches) == 1 else None
    for kind in ("agent", "device"):
        prefix = f"/topic/csta/{kind}/"
        if destination.startswith(prefix):
            name, at, domain = destination[len(prefix):].rpartition("@")
            if at and name and domain and "/" not in name:
                return kind, domain, name
            return None
    prefix = "/topic/csta/domain/"
    if destination.startswith(prefix) and "/" not in destination[len(prefix):]:
        return "domain", destination[len(prefix):], ""
    return None


# -------------------------------------------------------------------- Redis (blocking) ----
def agent_state(ctx: Any, domain: str, job: str) -> dict[str, str]:
    """The CSTA agent record of ``job`` (device, mode, since), {} when not logged in."""
    try:
        return dict(ctx.redis.hgetall(ctx.keys(domain).csta_agent(job)))
    except KeyPartError:
        return {}


def take_pending(ctx: Any, domain: str, job: str) -> list[dict[str, Any]]:
    """The agent events held for ``job`` until its subscription arrived (left for other
    sessions of the same agent until they expire: a second tab gets them too)."""
    try:
        raw = ctx.redis.lrange(ctx.keys(domain).csta_pending(job), 0, -1)
    except KeyPartError:
        return []
    records = []
    for text in raw:
        with contextlib.suppress(ValueError):
            records.append(json.loads(text))
    return records


def publish(ctx: Any, record: dict[str, Any], *, pending_job: str = "") -> None:
    """Publish a record on its domain's feed (every CTI server sends it to its sessions);
    with ``pending_job`` it is also held for that agent's next subscription."""
    record.setdefault("id", uuid.uuid4().hex)
    keys = ctx.keys(record.get("domain") or None)
    text = json.dumps(record, ensure_ascii=False)
    if pending_job:
        key = keys.csta_pending(pending_job)
        pipe = ctx.redis.pipeline(transaction=False)
        pipe.rpush(key, text)
        pipe.ltrim(key, -20, -1)
        pipe.expire(key, PENDING_TTL_S)
        pipe.execute()
    ctx.redis.publish(keys.csta_feed(), text)
