"""``runtime(args)`` — the per-node startup script named in python.conf.xml.

It runs for the life of the switch, in the thread mod_python3 gives it, plus one thread of its
own for the node's command queue (started once, never per call):

- node heartbeat in Redis, so other nodes and CTI servers know the node is alive, with the
  SIP address of its relay profile (``relay_profile``, read from the switch with
  ``sofia xmlstatus profile <name>``): other nodes ring the agents registered here there;
- commands for this node (``break <uuid> [agent]`` wakes a queued caller whose agent is
  reserved, naming the agent on its channel; hold music that starts after the break is broken
  when its PLAYBACK_START shows the agent still untaken;
  ``transfer`` / ``hold`` / ``unhold`` / ``threeway`` run a switch command issued on another
  node for a channel of this one, and answer it);
- the channels of this node, recorded in Redis so other nodes know where a uuid lives;
- the aliases of the switch commands (``nway_login ...`` in fs_cli), installed at start-up;
- directory: ``directory_flush`` commands evict changed extensions from the switch's cache;
- live state (seed 003, :mod:`fsapps.switch.livestate`): cti_userinfo@<domain>,
  registrations, calls;
- switch events: registrations keep agents' reg_state, an agent leg answering makes the agent
  ``talking``, and every call event is published as the seed's ``EVENT_*`` message;
- event bus: with ``nats.enabled`` the configured native events go to NATS as XCC's
  Event.NativeEvent (:mod:`fsapps.events.xcc`); with ``amqp.enabled`` every pub/sub message
  also goes to RabbitMQ (:mod:`fsapps.events.amqp`, a sink of the process's Publisher). Both
  send from a thread of their own (one per process) and drop rather than wait;
- timers: wrap-ups that are over make their agents ready (and offer them waiting calls);
- CDRs: a thread of its own writes the spooled CDRs to PostgreSQL every 0.5 s
  (:mod:`fsapps.events.cdrspool`; a thread so a PostgreSQL that times out never stalls the events);
  calls no app wrote a CDR for get a generic one (:mod:`fsapps.events.cdrcalls`, which also names
  RECORD_START's recording file in the CDR), recorded by that thread too;
- the reconciler: agents ringing or talking for a call that no longer exists, on a node that
  is gone, or whose reservation lease ran out, are repaired and made available again; callers
  queued on a node that is gone (or whose channel is) leave the queue; phones registered on a
  node that is gone are unregistered once their registration's own expiry has passed;
- at start (:meth:`NodeRuntime.recover`): what the node recorded about channels the switch no
  longer has is removed. A switch shutdown turns ``running()`` false, hangs the calls up and
  then unloads mod_python3, stopping this runtime: whether it still reads those hangups races
  the unload, and a crash loses them all. The reconciler's first pass, at once, frees the
  agents and queued callers of such calls.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from fsapps import metrics
from fsapps.channelvars import (
    ACD_AGENT_VAR,
    ACD_ARRIVED_VAR,
    ACD_CALL_VAR,
    ACD_GROUP_VAR,
    ACD_LEVEL_VAR,
    ACD_NUMBER_VAR,
    ACD_OFFER_VAR,
    CALLBACK_ANSWERED_VAR,
    CALLBACK_VAR,
    CTI_NOTIFY_URL_VAR,
    DOMAIN_VAR,
    LEG_VAR,
    event_header,
)
from fsapps.context import Context, get_context, now_ms
from fsapps.domain import stats, workingset
from fsapps.domain.agents import Agent, Agents
from fsapps.domain.callqueue import CallQueue
from fsapps.domain.nodes import HEARTBEAT_MS, Nodes, profile_address
from fsapps.domain.stats import QueueStats
from fsapps.domain.userdir import flush_commands
from fsapps.errors import FsappsError, StoreUnavailable
from fsapps.events import amqp, callevents, xcc
from fsapps.events.cdrcalls import CallRecords
from fsapps.events.cdrspool import INTERVAL_S as CDR_SPOOL_INTERVAL_S
from fsapps.events.cdrspool import SpoolWriter
from fsapps.events.cstafeed import CstaFeed, feed_wanted
from fsapps.events.pubsub import stamp
from fsapps.fslog import log
from fsapps.store.connection import publish_pipeline
from fsapps.switch import acd, callback, commands, httproute, nodecommands, priority
from fsapps.switch.livestate import LiveState, Owner, parse_owner
from fsapps.threads import name_os_thread

WRAPUP_CHECK_MS = 200
EVENT_QUEUE_LEN = 100_000
EVENT_BATCH = 500
# A batch of events gathers this long after its first event: the batch's two Redis round trips
# (and redis-py's per-pipeline cost) are shared by the events that came meanwhile. Without it a
# batch held 1.25 events at 100 agents x 10 calls/s and the pipelines were more than half of
# the runtime thread's CPU, the switch's hottest thread (docs/performance-switch.md). Nothing
# waits on this loop for a call's progress: the agents' leg ends have their own thread.
BATCH_GATHER_S = 0.03
RECONCILE_MS = 2000
# How often the channels this node recorded (from CHANNEL_CREATE / CHANNEL_DESTROY) are checked
# against the switch's own list: one recorded but gone in two checks in a row lost its
# CHANNEL_DESTROY (a full event queue drops events) and is forgotten, so the reconciler, which
# trusts the record, sees it gone.
CHANNEL_AUDIT_MS = 30_000
# The relay profile's address is asked of the switch on every heartbeat until it answers
# (sofia starts its profiles a moment after the runtime starts), then again this often.
RELAY_REFRESH_MS = 30_000
RELAY_WARN_AFTER = 10  # heartbeats without an answer before a warning
# Stopping with the switch: events still arriving are handled until none came for
# STOP_QUIET_S, STOP_DRAIN_S at most (mod_python3 gives a stopping script about 10 s).
STOP_QUIET_S = 1.5
STOP_DRAIN_S = 5.0
# A runtime that cannot start (bad config) or crashed is tried again this often.
START_RETRY_S = 1.0
START_RETRY_MAX_S = 5.0
_EVENTS = ("CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER",
           "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY",
           "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_PARK", "CHANNEL_UNPARK", "DTMF",
           "PLAYBACK_START", "PLAYBACK_STOP", "RECORD_START")
_SOFIA = ("sofia::register", "sofia::unregister", "sofia::expire")
_WORD = re.compile(r"^[A-Za-z0-9_.\-+*#@]{1,64}$")  # a uuid or an extension in an api argument


class NodeRuntime:
    def __init__(self, ctx: Context, fs: Any, node: str) -> None:
        self.ctx = ctx
        self.fs = fs
        self.node = node
        self.nodes = Nodes(ctx)
        self.livestate = LiveState(ctx, node)
        self.stopping = threading.Event()
        self._next = {"heartbeat": 0, "wrapups": 0, "relay": 0}
        self.relay: str | None = None  # host:port of this node's relay profile, once known
        self._relay_misses = 0
        self._unseen: set[str] = set()  # recorded channels the last audit found gone
        self.xcc: xcc.XccPublisher | None = None
        self.cdr_writer = SpoolWriter(ctx, node)
        self.call_records = CallRecords(ctx, node, self.api_execute)
        self.cstafeed = CstaFeed(ctx)
        self.csta_feed = ctx.settings.events.csta_feed == "on"  # auto: from the 1st heartbeat

    # ------------------------------------------------------------------ loops -------------
    def run(self) -> None:
        # this thread is the runtime's for good (pyrun's own): Python first, all along
        priority.run_python_first(self.ctx.settings.python_priority)
        name_os_thread("events")
        for domain in self.ctx.settings.domains:
            self.guarded(workingset.restore_if_empty, self.ctx, domain)
        # A deep queue, drained in batches: the switch drops events a full queue cannot take.
        consumer = self.fs.EventConsumer("", "", EVENT_QUEUE_LEN)
        self.guarded(self.start_buses)
        for name, subclass in self.bindings():
            consumer.bind(name, subclass)
        # after the bind: a channel ending from now on is either live below or its events
        # are queued for the loop
        self.guarded(self.recover)
        self.guarded(self.install_aliases)
        self.start_thread("cmd", self.serve_commands)
        self.start_thread("cdr", self.write_cdrs)
        # The agents' leg ends have a queue and a thread of their own: an agent takes its next
        # call only once the end of its last leg is told (agents.py), and queued behind every
        # other event a loaded switch's hangups reached the loop seconds late (8-9 s at
        # 500 x 40, docs/performance-switch.md) while the agents sat ready but not free.
        leg_ends = self.fs.EventConsumer("CHANNEL_HANGUP_COMPLETE", "", EVENT_QUEUE_LEN)
        self.start_thread("legs", self.serve_leg_ends, leg_ends)
        # The reconciler has a thread of its own too: inline in the loop, its round trips and
        # uuid_exists calls (one per agent or caller it checks) held the switch's events back
        # (py-spy caught the 500 x 40 loop inside it, docs/performance-switch.md).
        self.start_thread("reconcile", self.serve_reconciler)
        log("NOTICE", f"runtime started on node {self.node}")
        told_to_exit = True  # until the loop ends by itself (SystemExit, or worse)
        try:
            while self.fs.running() and not self.stopping.is_set():
                event = consumer.pop(1, 100)
                if event is not None:
                    time.sleep(BATCH_GATHER_S)
                    self.guarded(self.on_events, drain(consumer, event))
                self.guarded(self.tick)
            told_to_exit = False
        finally:
            try:
                log("NOTICE", f"runtime stopping on node {self.node}")
                self.guarded(self.finish_events, consumer, not told_to_exit)
            finally:
                self.stopping.set()  # the command and CDR threads end (the CDRs of the
                #                      events handled above included)

    def start_thread(self, name: str, serve: Callable[..., None], *args: Any) -> None:
        """One of the runtime's own threads, running Python ahead of the switch's media
        (fsapps.switch.priority): all they do is Python, Redis and quick api calls."""
        def run() -> None:
            priority.run_python_first(self.ctx.settings.python_priority)
            name_os_thread(name)
            serve(*args)
        threading.Thread(target=run, name=f"fsapps:{self.node}:{name}", daemon=True).start()

    def finish_events(self, consumer: Any, linger: bool) -> None:
        """Best effort at stop: handle the events still queued and, when the switch stopped
        (``linger``: not told to exit), those still arriving, until none came for STOP_QUIET_S
        (STOP_DRAIN_S at most). The hangups of a shutdown may be among them or not (the
        switch hangs its calls up after ``running()`` turned false, then unloads
        mod_python3, which stops this): :meth:`recover` at the next start removes the
        records of those it missed."""
        deadline = time.monotonic() + STOP_DRAIN_S
        quiet_until = time.monotonic() + (STOP_QUIET_S if linger else 0.0)
        while time.monotonic() < deadline:
            event = consumer.pop(0, 0)
            if event is None:
                if time.monotonic() >= quiet_until:
                    return
                event = consumer.pop(1, 100)
                if event is None:
                    continue
            self.guarded(self.on_events, drain(consumer, event))
            if linger:
                quiet_until = time.monotonic() + STOP_QUIET_S

    def recover(self) -> None:
        """At start: remove what this node recorded about channels the switch no longer has
        (:meth:`fsapps.domain.nodes.Nodes.recorded_channels`, kept by earlier runtimes of the same
        node name): their cti_userinfo / calls records (:meth:`LiveState.channels_gone`), their
        CSTA legs, their channel -> node records. The reconciler's first pass (the loop's first
        tick) then frees the agents ringing or talking for them and drops their queued
        callers. Channels the switch has are recorded as this node's."""
        live = self.switch_channels()
        if live is None:
            return
        recorded = self.nodes.recorded_channels(self.node)
        gone = self.gone_from_switch(recorded, live)
        owned = owners(recorded)
        self.forget_channels(gone, owned)
        self.nodes.channels_live(self.node, live)
        self.livestate.adopt({u: o for u, o in owned.items() if u in live})
        if gone:
            log("WARNING", f"runtime {self.node}: {len(gone)} channel(s) recorded by this "
                           "node ended while no runtime listened (switch shutdown or crash); "
                           "their live state, CSTA legs and channel records are removed")

    def gone_from_switch(self, recorded: dict[str, str], live: set[str]) -> list[str]:
        """The recorded channels the switch no longer has. `show channels` reads the core
        database, filled a moment after a channel is created: a channel missing from it is
        gone only if uuid_exists agrees."""
        return sorted(uuid for uuid in recorded if uuid not in live and
                      self.fs.API().execute("uuid_exists", uuid).strip() == "false")

    def forget_channels(self, gone: list[str], owned: dict[str, Owner]) -> None:
        """Remove what this node recorded about channels that ended unseen: their
        cti_userinfo / calls records, their CSTA legs, their channel -> node records."""
        self.livestate.channels_gone({u: owned[u] for u in gone if u in owned})
        self.cstafeed.channels_gone(gone)
        self.nodes.channels_gone(self.node, gone)

    def audit_channels(self) -> list[str]:
        """Every CHANNEL_AUDIT_MS: the recorded channels the switch no longer has. One gone in
        two audits in a row lost its CHANNEL_DESTROY (a destroy merely late is handled by
        the next audit) and is forgotten as at start. Returns those forgotten."""
        live = self.switch_channels()
        if live is None:
            return []
        recorded = self.nodes.recorded_channels(self.node)
        gone_now = set(self.gone_from_switch(recorded, live))
        lost = sorted(gone_now & self._unseen)
        self._unseen = gone_now - set(lost)
        if lost:
            # CHANNEL_DESTROYs that never came
            metrics.count("events_lost", len(lost), self.node)
            self.forget_channels(lost, owners(recorded))
            log("WARNING", f"runtime {self.node}: {len(lost)} channel(s) ended without their "
                           "CHANNEL_DESTROY reaching the runtime (a full event queue drops "
                           "events); their live state and records are removed")
        return lost

    def switch_channels(self) -> set[str] | None:
        """The uuids of the switch's channels (``show channels as json``: ``{"row_count":0}``
        when there are none), or None when the answer is not that (logged)."""
        text = str(self.fs.API().executeString("show channels as json") or "")
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("row_count"), int):
            log("ERR", f"runtime {self.node}: 'show channels as json' answered "
                       f"{text[:200]!r}; channels recorded earlier are kept")
            return None
        rows = answer.get("rows") or []
        return {str(row["uuid"]) for row in rows if isinstance(row, dict) and row.get("uuid")}

    def bindings(self) -> list[tuple[str, str]]:
        """The events to consume: the runtime's own plus the NATS ones, each bound once (a
        second bind of the same event would queue it twice)."""
        wanted = [(name, "") for name in _EVENTS] + [("CUSTOM", sub) for sub in _SOFIA]
        if self.xcc is not None:
            wanted += sorted(self.xcc.events)
        return list(dict.fromkeys(wanted))

    def start_buses(self) -> None:
        """The process's NATS and AMQP publishers, when enabled (started once per process)."""
        settings = self.ctx.settings
        if settings.nats.enabled:
            self.xcc = xcc.get_publisher(settings.nats)
        if settings.amqp.enabled:
            self.ctx.publisher.add_sink(amqp.get_publisher(settings.amqp).sink)

    def guarded(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)``'s answer; None when it failed (logged)."""
        try:
            return fn(*args)
        except SystemExit:
            raise
        except FsappsError as exc:  # Redis down and the like: log, keep serving
            if isinstance(exc, StoreUnavailable):
                metrics.count("redis_errors", node=self.node)
            log("ERR", f"runtime {self.node}: {exc}")
        except Exception as exc:
            if isinstance(exc, redis.RedisError):
                metrics.count("redis_errors", node=self.node)
            log("ERR", f"runtime {self.node}: {type(exc).__name__}: {exc}")
        return None

    def serve_commands(self) -> None:
        while not self.stopping.is_set():
            try:
                command = self.nodes.next_command(self.node, 0.5)
            except FsappsError as exc:
                log("ERR", f"runtime {self.node}: command queue: {exc}")
                self.stopping.wait(1.0)
                continue
            if command is None:
                continue
            if self.stopping.is_set() or not self.fs.running():
                # Taken while this runtime was stopping (a switch shutting down, a reloaded
                # runtime whose successor already serves the node's name): hand it back to
                # the front of the queue for the live runtime instead of answering it with
                # channels that are gone.
                self.guarded(self.nodes.requeue_command, self.node, command)
                return
            self.guarded(self.on_command, command)

    def write_cdrs(self) -> None:
        """Spooled CDRs to PostgreSQL until the runtime stops (errors logged, then retried)."""
        while not self.stopping.wait(CDR_SPOOL_INTERVAL_S / 5):
            self.guarded(self.call_records.record_pending)
            if self.cdr_writer.due():
                self.guarded(self.cdr_writer.run_once)
        self.guarded(self.call_records.record_pending)  # the calls that ended last

    def install_aliases(self) -> None:
        """``alias add nway_login python fsapps.api nway_login`` and so on for every switch
        command (fs_cli expands aliases; ESL ``api`` does not: there it is
        ``python fsapps.api nway_login ...``)."""
        refused = commands.install_aliases(self.api_execute)
        if refused:
            log("WARNING", f"runtime {self.node}: the switch refused the aliases {refused}")

    def wake(self, uuid: str, agent: str) -> None:
        """Wake a waiting caller's handler whose agent reserved itself (``break``): the agent
        goes on the channel (:data:`ACD_OFFER_VAR`), then its hold music is broken. Music
        that begins after the break carries the variable in its PLAYBACK_START, which
        :meth:`on_event` breaks too: the handler never misses its wake-up, however late it
        started the music. Two quick api calls, once per dispatched call."""
        if not _WORD.match(uuid):
            return
        if _WORD.match(agent):
            self.fs.API().execute("uuid_setvar", f"{uuid} {ACD_OFFER_VAR} {agent}")
        self.fs.API().execute("uuid_break", f"{uuid} all")

    def api_execute(self, cmd: str, args: str) -> str:
        return str(self.fs.API().execute(cmd, args) or "")

    def on_command(self, command: dict[str, Any]) -> None:
        name = command.get("cmd")
        if name == "break":
            self.wake(str(command.get("uuid", "")), str(command.get("agent", "")))
        elif name == "callback":  # a callback's agent reserved: ring it (fsapps.switch.callback)
            callback.place(self.ctx, self.api_execute, self.node, command)
        elif name in nodecommands.COMMANDS:  # channel commands, wellClient call control
            try:
                reply = nodecommands.serve(self.ctx, self.api_execute, self.node, command).text
            except Exception as exc:  # the requester must hear something
                reply = f"-ERR {name} failed on node {self.node}: {type(exc).__name__}: {exc}\n"
            reply_id = command.get("reply")
            if reply_id:
                self.nodes.reply(str(reply_id), reply)
        elif name == "directory_flush":
            # a directory record changed (fsapps.domain.userdir): drop the switch's cached copy
            for args in flush_commands(str(command.get("domain", "")),
                                       list(command.get("users") or [])):
                self.fs.API().execute("xml_flush_cache", args)
        else:
            log("WARNING", f"runtime {self.node}: unknown command {command!r}")

    # ------------------------------------------------------------------ events ------------
    def on_events(self, events: list[Any]) -> None:
        """Handle a batch of events in two Redis round trips whatever its size: one pipeline
        reads what live state and the CSTA feed need, one writes everything (channel records,
        live state, the feed's state, then the pub/sub messages; Redis Cluster takes the
        PUBLISHes in a pipeline of their own). Agent answers and registrations run their
        scripts as they come. Each header is read from the switch once per event."""
        batch = [HeaderCache(event) for event in events]
        for event in batch:  # generic CDRs and recordings first: they need no Redis
            self.guarded(self.call_records.on_event, event)
        # the agents whose legs answered move to talking first, all in one round trip
        answered = self.guarded(self.agents_answered, batch) or {}
        redis = self.ctx.redis
        reads = redis.pipeline(transaction=False)
        # seed 003's cti_userinfo@<domain>, registrations and calls (fsapps.switch.livestate)
        live = self.guarded(self.livestate.read, batch, reads)
        live_reads = len(reads)
        # the CSTA feed of the wellClient event stream (fsapps.events.cstafeed), when wanted
        feed = self.guarded(self.cstafeed.read, batch, reads) if self.csta_feed else None
        queued = len(reads)  # (execute empties the pipeline)
        results = (self.guarded(reads.execute) if queued else []) or []
        writes = redis.pipeline(transaction=False)
        messages = publish_pipeline(redis) if self.ctx.settings.redis.cluster else writes
        for event in batch:
            if self.xcc is not None:
                self.guarded(self.xcc.publish_event, event)
                self.guarded(self.xcc.publish_cdr, event)
            self.guarded(self.on_event, event, writes, messages, answered.get(id(event)))
        if len(results) == queued:  # (else the reads failed: logged)
            if live is not None:
                self.guarded(self.livestate.write, live, results[:live_reads], writes, messages)
            if feed is not None:
                self.guarded(self.cstafeed.write, feed, results[live_reads:], writes, messages)
        if len(writes):
            self.guarded(writes.execute)
        if messages is not writes and len(messages):
            self.guarded(messages.execute)

    def on_event(self, event: Any, pipe: Any = None, messages: Any = None,
                 answered: bool | None = None) -> None:
        """One event; ``answered``: for an agent leg's CHANNEL_ANSWER, whether
        :meth:`agents_answered` moved its agent to talking (None: not asked yet)."""
        name = event.getHeader("Event-Name")
        if name == "CUSTOM":
            if event.getHeader("Event-Subclass") in _SOFIA:  # others are only for NATS
                self.on_registration(event)
            return
        uuid = event.getHeader("Unique-ID")
        if name == "CHANNEL_CREATE" and uuid:
            self.nodes.channel_created(self.node, uuid, pipe)
        elif name == "CHANNEL_DESTROY" and uuid:
            self.nodes.channel_destroyed(self.node, uuid, pipe)
        if name == "CHANNEL_ANSWER":
            extension = event.getHeader(event_header(ACD_AGENT_VAR))
            if extension:
                if answered is None:
                    answered = bool(self.agents_answered([event]).get(id(event)))
                if answered:
                    self.agent_answered(event, extension, pipe, messages)
        elif name == "PLAYBACK_START" and uuid and event.getHeader(event_header(ACD_OFFER_VAR)):
            # a waiting caller's music began after the break that named its agent (the
            # handler clears the variable when it takes the agent): break it now
            self.fs.API().execute("uuid_break", f"{uuid} all")
        if name in httproute.LEG_EVENTS and event.getHeader(event_header(CTI_NOTIFY_URL_VAR)):
            # a B leg of cti_bridge: ring / progress / answer go to its router
            httproute.leg_event(self.ctx.settings.cti_bridge, name, event.getHeader)
        mapped = callevents.call_event(event.getHeader)
        if mapped is not None:
            evt, fields = mapped
            self.ctx.publisher.call_event(evt, pipeline=messages, **fields)

    def on_registration(self, event: Any) -> None:
        subclass = event.getHeader("Event-Subclass")
        user = event.getHeader("username") or event.getHeader("from-user") or \
            event.getHeader("user")
        domain = event.getHeader("domain_name") or event.getHeader("realm") or \
            event.getHeader("from-host") or event.getHeader("host")
        if not user or not domain or domain not in self.ctx.settings.domains:
            domain = self.ctx.settings.default_domain
        if not user:
            return
        agents = Agents(self.ctx, domain)
        agents.ensure(user)
        if subclass == "sofia::register":
            # Where the phone is registered: other nodes reach the agent through this node;
            # and until when: if this node dies, nothing renews it after that (reconcile).
            expires = (event.getHeader("expires") or "").strip()
            # (not the event's FreeSWITCH-IPv4: the machine's address, not where SIP listens)
            agents.registered(user, self.node, self.relay or "",
                              int(expires) if expires.isdigit() else 0,
                              event.getHeader("Event-Date-Timestamp") or "")
            acd.agent_available(self.ctx, domain, user)
        elif agents.unregistered(user, self.node):
            log("INFO", f"runtime {self.node}: agent {user} unregistered")

    def agents_answered(self, batch: list[Any]) -> dict[int, bool]:
        """The CHANNEL_ANSWERs of agent legs in ``batch``: each agent moved to talking in one
        atomic step, only while it still holds the call (the event can come late, after the
        call ended and the agent was reserved for the next one, whose lease a separate write
        would wipe, making the agent look free while it rings). One round trip for the whole
        batch: one each kept the loop seconds behind at 500 agents x 40 calls/s. Whether each
        moved, by ``id`` of its event."""
        answers: dict[str, list[tuple[Any, tuple[str, str, str, str]]]] = {}
        for event in batch:
            if event.getHeader("Event-Name") != "CHANNEL_ANSWER":
                continue
            extension = event.getHeader(event_header(ACD_AGENT_VAR))
            if extension:
                domain = event.getHeader(event_header(DOMAIN_VAR)) or \
                    self.ctx.settings.default_domain
                answers.setdefault(domain, []).append((event, (
                    extension, event.getHeader(event_header(ACD_CALL_VAR)) or "",
                    event.getHeader("Unique-ID") or "", self.node)))
        moved: dict[int, bool] = {}
        for domain, found in answers.items():
            done = Agents(self.ctx, domain).answered_many([answer for _, answer in found])
            moved.update((id(event), each) for (event, _), each in zip(found, done, strict=True))
        return moved

    def agent_answered(self, event: Any, extension: str, pipe: Any = None,
                       messages: Any = None) -> None:
        """An agent that answered its leg (moved to talking by :meth:`agents_answered`): a
        queue call's statistics and the agent's "answered" event, on the batch's writes."""
        domain = event.getHeader(event_header(DOMAIN_VAR)) or self.ctx.settings.default_domain
        call_uuid = event.getHeader(event_header(ACD_CALL_VAR)) or ""
        arrived = event.getHeader(event_header(ACD_ARRIVED_VAR)) or ""
        group = event.getHeader(event_header(ACD_GROUP_VAR)) or ""
        if event.getHeader(event_header(LEG_VAR)) == "nwayacd" and group and arrived.isdigit():
            answered_ms = event_ms(event)
            QueueStats(self.ctx, domain).record(group, stats.ANSWERED, answered_ms,
                                                answered_ms - int(arrived), pipeline=pipe)
        self.ctx.publisher.agent_call_event(
            "answered", uuid=call_uuid,
            # the far party: a queue caller is the leg's caller id; an outbound call
            # (fsapps.switch.outbound) names the dialled number in fsapps_acd_number
            number=event.getHeader(event_header(ACD_NUMBER_VAR)) or
            event.getHeader("Caller-Caller-ID-Number") or "",
            group=group, extension=extension,
            level=event.getHeader(event_header(ACD_LEVEL_VAR)) or "normal",
            callin_time=stamp(int(arrived) / 1000) if arrived.isdigit() else "",
            pipeline=messages)

    def serve_leg_ends(self, consumer: Any) -> None:
        """Until the runtime stops: the agent legs' ends (the CHANNEL_HANGUP_COMPLETE of a leg
        carrying fsapps_acd_agent) free their agents (:meth:`agent_legs_ended`), a batch of
        whatever is queued at a time. Other hangups are dropped here; the main loop has its
        own copy of every event."""
        agent_header = event_header(ACD_AGENT_VAR)
        domain_header = event_header(DOMAIN_VAR)
        callback_header = event_header(CALLBACK_VAR)
        callback_answered = event_header(CALLBACK_ANSWERED_VAR)
        while not self.stopping.is_set():
            event = consumer.pop(1, 500)
            if event is None:
                continue
            ended: dict[str, list[tuple[str, str]]] = {}
            for each in drain(consumer, event):
                extension = each.getHeader(agent_header)
                leg = each.getHeader("Unique-ID")
                if extension and leg:
                    domain = each.getHeader(domain_header) or self.ctx.settings.default_domain
                    called_back = each.getHeader(callback_header)
                    if called_back and not each.getHeader(callback_answered):
                        # a callback's agent that never answered: released (and the
                        # callback back in its place) before its leg's end frees it
                        self.guarded(callback.agent_missed, self.ctx, domain, extension,
                                     called_back, each.getHeader("Hangup-Cause") or "")
                    ended.setdefault(domain, []).append((extension, leg))
            for domain, legs in ended.items():
                self.guarded(self.agent_legs_ended, domain, legs)

    def agent_legs_ended(self, domain: str, legs: list[tuple[str, str]]) -> None:
        """Agents' legs ended (the switch has sent their hangups): each agent, settled by its
        call's handler already, is free again - offered the best waiting call at once, and
        this node's callers woken from here. One round trip for the whole batch (the leg ends'
        scripts offer the calls; a second only for agents whose groups this process had not
        seen as they are): at 500 agents x 40 calls/s each round trip of this thread waited
        0.1-1 s for the GIL, and with four a batch 200-340 agents sat ready, their legs' ends
        untold, while callers waited (docs/performance-switch.md)."""
        taken, freed = Agents(self.ctx, domain).legs_ended(legs)
        acd.agents_available(self.ctx, domain, freed, wake_here=self.wake, taken=taken)

    # ------------------------------------------------------------------ timers ------------
    def serve_reconciler(self) -> None:
        """Every RECONCILE_MS, until the runtime stops: the queue, then the agents, of every
        domain (the queue first: an agent freed below is then never offered a caller that is
        gone - after a restart, both the agent's call and the callers are)."""
        audit_at = now_ms() + CHANNEL_AUDIT_MS
        while not self.stopping.is_set():
            started = now_ms()
            if started >= audit_at:
                audit_at = started + CHANNEL_AUDIT_MS
                self.guarded(self.audit_channels)
            for domain in self.ctx.settings.domains:
                live = self.guarded(self.channel_check) or self._channel_up
                self.guarded(callback.reconcile, self.ctx, domain, now_ms())
                self.guarded(self.reconcile_queue, domain, live)
                self.guarded(self.reconcile, domain, now_ms(), live)
                # occupancy samples (fsapps.domain.stats): one node takes each 10 s slot
                self.guarded(QueueStats(self.ctx, domain).sample_occupancy, self.node, now_ms())
            self.stopping.wait(max(0, RECONCILE_MS - (now_ms() - started)) / 1000)

    def channel_check(self) -> Callable[[str], bool]:
        """Has this node's switch the channel? For one reconciler pass: a channel this node
        recorded (its CHANNEL_CREATE handled, its CHANNEL_DESTROY not yet) is up without
        asking; any other is asked of the switch (uuid_exists), so nothing is freed unless the
        switch says its leg is gone. One round trip a pass instead of a switch call per
        talking agent and waiting caller every pass (5 per connected call at 500 x 40, each
        holding the GIL); a record whose destroy was lost goes at the audit."""
        recorded = self.nodes.channel_set(self.node)
        return lambda uuid: uuid in recorded or self._channel_up(uuid)

    def tick(self) -> None:
        now = now_ms()
        if now >= self._next["heartbeat"]:
            self._next["heartbeat"] = now + HEARTBEAT_MS
            if now >= self._next["relay"]:
                self.guarded(self.learn_relay, now)
            self.nodes.heartbeat(self.node, {"relay": self.relay} if self.relay else None,
                                 stats=self.counters())
            self.csta_feed = bool(self.guarded(feed_wanted, self.ctx))
        if now >= self._next["wrapups"]:
            self._next["wrapups"] = now + WRAPUP_CHECK_MS
            for domain in self.ctx.settings.domains:
                for extension in Agents(self.ctx, domain).end_due_wrapups(now):
                    acd.agent_available(self.ctx, domain, extension)

    def counters(self) -> dict[str, int]:
        """This process's runtime counters for ``/metrics`` (fsapps.metrics: calls routed,
        decisions, Redis errors, ...), with the messages the event buses dropped."""
        counts = metrics.counts(self.node)
        dropped = self.xcc.dropped if self.xcc is not None else 0
        if self.ctx.settings.amqp.enabled:
            dropped += amqp.get_publisher(self.ctx.settings.amqp).dropped
        counts["bus_messages_dropped"] = dropped
        return counts

    def learn_relay(self, now: int) -> None:
        """Where this node's relay profile listens for SIP (``sofia xmlstatus profile
        <relay_profile>``), published with the heartbeat for the other nodes. Until the
        switch answers with the profile's status, asked again on the next heartbeat (a
        warning after RELAY_WARN_AFTER); then every RELAY_REFRESH_MS."""
        profile = self.ctx.settings.relay_profile
        address = profile_address(self.api_execute("sofia", f"xmlstatus profile {profile}"))
        if address is None:
            self._relay_misses += 1
            if self._relay_misses == RELAY_WARN_AFTER:
                log("WARNING", f"runtime {self.node}: sofia profile {profile!r} (relay_profile) "
                               "is not running: agents registered on this node cannot be rung "
                               "from other nodes until it is")
            return
        if address != self.relay:
            log("NOTICE", f"runtime {self.node}: other nodes relay agent calls to sofia "
                          f"profile {profile!r} at {address}")
        self.relay = address
        self._relay_misses = 0
        self._next["relay"] = now + RELAY_REFRESH_MS

    def reconcile(self, domain: str, now: int,
                  channel_up: Callable[[str], bool] | None = None) -> list[str]:
        """Repair agents whose state no longer matches the switch, by the rules of
        :func:`agent_repair`: a reconciler frees an agent only when the switch that owns its
        call says the agent has no live leg (this node's switch, asked with ``uuid_exists``;
        another live node's agents are that node's to repair), or when that node is gone -
        never because a timer ran out alone. Also unregisters phones whose registration on a
        dead node ran out, and offers waiting callers to free agents nobody offered them to
        (a dispatch lost to a Redis error must not stall the queue). Returns the agents
        repaired."""
        agents = Agents(self.ctx, domain)
        alive = self.nodes.alive_as_seen_by(self.node)
        wrapups = agents.wrapup_ends()
        longest_wrapup_ms = max(self.ctx.settings.group_defaults.wrapup_seconds * 1000,
                                RECONCILE_MS)
        repaired = []
        callback_ids = callback.ids(self.ctx, domain)  # (callbacks have no channel)
        free_for_waiting: list[tuple[str, tuple[str, ...]]] = []
        for agent in agents.all():
            # (never this node's own: it is running, and its switch expires its registrations
            # itself - a node whose heartbeats stalled is not gone to itself)
            if agent.reg_state == "reged" and agent.reg_node and agent.reg_node not in alive \
                    and agent.reg_node != self.node:
                self.guarded(self.expire_registration, agents, agent, now)
            if agent.available(now):
                free_for_waiting.append((agent.extension, agent.groups))
                continue
            repair = agent_repair(agent, now, self.node, alive,
                                  callback.reserved_check(agent, callback_ids,
                                                          channel_up or self._channel_up),
                                  agent.extension in wrapups, longest_wrapup_ms)
            if repair is None:
                continue
            if repair.action == "release":
                done = agents.release(agent.extension, agent.offer_uuid, "cancel",
                                      lease_expired=repair.lease_expired,
                                      leg_gone=repair.leg_gone) is not None
            elif repair.action == "leg_end":
                done = agents.leg_ended(agent.extension, agent.leg_pending)
            else:
                done = agents.settle(agent.extension, agent.call_state)
            if done:
                held = f" for call {agent.offer_uuid}" if agent.offer_uuid else ""
                log("WARNING", f"reconciler: agent {agent.extension} was {agent.call_state}"
                               f"{held} but {repair.reason}; repaired")
                repaired.append(agent.extension)
                acd.agent_available(self.ctx, domain, agent.extension)
        waiting_groups = {call.group for call in CallQueue(self.ctx, domain).waiting()} \
            if free_for_waiting else set()
        for extension, groups in free_for_waiting:
            if waiting_groups.intersection(groups):
                if acd.agent_available(self.ctx, domain, extension):
                    log("WARNING", f"reconciler: agent {extension} was free while callers "
                                   "waited for it; offered it the best of them")
        return repaired

    def expire_registration(self, agents: Agents, agent: Agent, now: int) -> bool:
        """The agent's phone is registered on a node that stopped beating. That node is the
        only one that could have renewed the registration, so it is trusted until its own
        expiry and no longer: then the agent is unreg, as the node's sofia::expire would have
        made it. A node that merely stalled and beats again before then loses nothing; a
        phone that registered on another node since has moved reg_node and is left alone
        (both checked atomically by the script)."""
        if not agent.reg_until or agent.reg_until > now:
            return False
        stamp = agents.expire_registration(agent.extension, agent.reg_node, now)
        if stamp is None:
            return False  # re-registered meanwhile, or another node's reconciler was first
        log("WARNING", f"reconciler: agent {agent.extension}'s registration on node "
                       f"{agent.reg_node} (gone) ran out; agent unregistered")
        self.livestate.expire_registration(agents.domain, agent.extension, agent.reg_node,
                                           stamp, agent.reg_until)
        return True

    def reconcile_queue(self, domain: str,
                        channel_up: Callable[[str], bool] | None = None) -> list[str]:
        """Drop waiting calls that no node will ever connect: their node is gone, or (on this
        node) their channel is. An agent reserved for such a call meanwhile is freed. (A live
        node whose caller was dropped by mistake - it missed heartbeats - queues the caller
        again, in the same place, on its next hold segment.) Returns the calls dropped."""
        queue = CallQueue(self.ctx, domain)
        waiting = queue.waiting()
        if not waiting:
            return []
        alive = self.nodes.alive_as_seen_by(self.node)
        dropped = []
        for call in waiting:
            if call.callback or call.node in alive and call.node != self.node:
                continue  # (a callback has no channel: it waits, whatever its node)
            if call.node == self.node and (channel_up or self._channel_up)(call.uuid):
                continue
            removed, extension = queue.leave(call.group, call.uuid)
            if extension:
                Agents(self.ctx, domain).release(extension, call.uuid, "cancel")
                acd.agent_available(self.ctx, domain, extension)
            if not removed:
                continue  # another node's reconciler (or the handler) was first
            dropped.append(call.uuid)
            if call.node != self.node:
                # a node taken for dead may only have stalled: its caller's handler, woken,
                # finds itself out of the queue and queues again (a dead node never reads it)
                self.nodes.send(call.node, "break", uuid=call.uuid)
            why = "is gone" if call.node == self.node else f"was on node {call.node}, gone"
            log("WARNING", f"reconciler: call {call.uuid} from {call.number} waiting in group "
                           f"{call.group} {why}; removed from the queue")
            self.ctx.publisher.queue_event("nway_queue_remove", uuid=call.uuid,
                                           number=call.number, group=call.group,
                                           level=call.level, callin_time=call.callin_time)
        return dropped

    def _channel_up(self, uuid: str) -> bool:
        """This node's switch still has the channel ``uuid`` (anything but a plain "false"
        counts as yes: a reconciler frees nothing on an answer it does not understand)."""
        return str(self.fs.API().execute("uuid_exists", uuid) or "").strip() != "false"


class HeaderCache:
    """A switch event whose headers are each read from the switch at most once: the parts of
    the runtime (generic CDRs, seed events, live state, the CSTA feed, NATS) ask for the same
    few headers again and again (46 reads per event), and in the switch each read is a call
    into C that searches the event's header list (over a hundred on a hangup)."""

    __slots__ = ("event", "headers", "serialized")

    def __init__(self, event: Any) -> None:
        self.event = event
        self.headers: dict[str, str | None] = {}
        self.serialized: dict[str, str] = {}

    def getHeader(self, name: str) -> str | None:  # noqa: N802 (the switch's Event API)
        try:
            return self.headers[name]
        except KeyError:
            value = self.headers[name] = self.event.getHeader(name)
            return value

    def serialize(self, fmt: str = "") -> str:
        if fmt not in self.serialized:
            self.serialized[fmt] = self.event.serialize(fmt)
        return self.serialized[fmt]


@dataclass(frozen=True)
class Repair:
    """What the reconciler does about one agent: "release" its reservation (the conditions it
    saw are checked again atomically: the lease still run out, the leg still the one found
    gone), "leg_end" (its last leg's end, never told, counts as told) or "settle" a state
    nothing ends (ready again)."""

    action: str
    reason: str
    lease_expired: bool = False
    leg_gone: str | None = None


def agent_repair(agent: Agent, now: int, node: str, alive: set[str],
                 channel_up: Callable[[str], bool], in_wrapup: bool,
                 longest_wrapup_ms: int) -> Repair | None:
    """The reconciler's rule for one agent, as seen by the reconciler of ``node``;
    ``channel_up`` asks this node's switch about a channel (called only for this node's
    channels). None: leave the agent as it is.

    An agent holding a call (``offer_uuid``: ring, talking, or a state it chose while it
    rang): its owner is the call's node (``offer_node``). An owner that is gone cannot answer
    any more: its reservations are released. Another live node's are that node's. This
    node's are released once the agent's leg (``agent_leg``: named by the ring, the answer or
    a direct call's reservation) is gone - and either the call is gone too (its handler has
    ended) or the lease ran out (a handler that never rang). A ringing agent's lease running
    out frees nothing while its leg is up: answered, it stays "ring" until its CHANNEL_ANSWER
    arrives, which a loaded switch sends seconds late.

    An agent holding no call: a last leg whose end the switch never told (``leg_pending``: the
    event lost) counts as ended once its node's switch has no such channel, a reconcile
    period after the agent settled (or at once when that node is gone); "typing" with no
    wrap-up timer (a wrap-up nothing will end) after the longest wrap-up, "no_answer" (a miss
    nothing settled) after a reconcile period, and "ring" / "talking" with no call and no live
    leg go ready. Ready agents, and those that chose busy, rest, no_ready or ivr, stay."""
    state = agent.call_state
    if agent.offer_uuid:
        owner = agent.offer_node or node
        if owner != node:
            if owner in alive:
                return None  # that node's switch knows; its own reconciler asks it
            return Repair("release", f"node {owner} is gone", leg_gone=agent.agent_leg)
        leg = agent.agent_leg
        if leg and channel_up(leg):
            return None  # the agent has a live leg, whatever Redis says
        if state == "ring" and agent.lease_until < now:
            why = "its lease ran out and its leg is gone" if leg else \
                "its lease ran out before it was rung"
            return Repair("release", why, lease_expired=True, leg_gone=leg)
        if not channel_up(agent.offer_uuid):
            return Repair("release", "its call and its leg are gone", leg_gone=leg)
        return None
    settled_for = now - agent.last_change
    if agent.leg_pending:
        owner = agent.leg_node or node
        if owner != node and owner not in alive:
            return Repair("leg_end", f"its last leg's node {owner} is gone")
        if owner == node and settled_for > RECONCILE_MS and not channel_up(agent.leg_pending):
            return Repair("leg_end", "its last leg is gone but its end was never told")
    if state == "typing" and not in_wrapup and settled_for > longest_wrapup_ms:
        return Repair("settle", "no wrap-up timer would end its wrap-up")
    if state == "no_answer" and settled_for > RECONCILE_MS:
        return Repair("settle", "nothing settled its missed offer")
    if state in ("ring", "talking") and settled_for > RECONCILE_MS and \
            agent.leg_node in ("", node) and not (agent.agent_leg and
                                                  channel_up(agent.agent_leg)):
        return Repair("settle", "it holds no call and has no live leg")
    return None


def owners(recorded: dict[str, str]) -> dict[str, Owner]:
    """The live-state owners of recorded channels (uuid -> owner), those that have one."""
    owned: dict[str, Owner] = {}
    for uuid, text in recorded.items():
        owner = parse_owner(text)
        if owner is not None:
            owned[uuid] = owner
    return owned


def event_ms(event: Any) -> int:
    """When the switch fired ``event`` (its Event-Date-Timestamp, in µs), else now."""
    raw = event.getHeader("Event-Date-Timestamp") or ""
    return int(raw) // 1000 if raw.isdigit() else now_ms()


def drain(consumer: Any, first: Any) -> list[Any]:
    """``first`` and whatever else is queued now, up to EVENT_BATCH events."""
    batch = [first]
    while len(batch) < EVENT_BATCH:
        event = consumer.pop(0, 0)
        if event is None:
            break
        batch.append(event)
    return batch


def runtime(args: str = "") -> None:
    """The startup script. Everything it needs is made inside the retry loop: a context that
    cannot be made (a bad fsapps.yaml, a ConfigError) or a runtime that crashes is logged at
    CRIT on every try and tried again (START_RETRY_S, growing to START_RETRY_MAX_S) for as
    long as the switch runs, so fixing the file brings the node up with no switch restart
    (F7: read once before the loop, a bad config at start stopped the runtime for good)."""
    import freeswitch

    node = ""
    wait = START_RETRY_S
    while freeswitch.running():
        try:
            ctx = get_context()  # cached only once the settings load
            node = acd.node_name(ctx)
            NodeRuntime(ctx, freeswitch, node).run()
            return
        except SystemExit:
            raise
        except Exception as exc:
            what = f"runtime {node} crashed" if node else "runtime cannot start"
            log("CRIT", f"{what}: {type(exc).__name__}: {exc}; retrying in {wait:g} s "
                        "(`fsapps config check` and `python fsapps.diag` say what is wrong)")
            retry_at = time.monotonic() + wait
            while freeswitch.running() and time.monotonic() < retry_at:
                time.sleep(0.1)  # a shutdown meanwhile ends the loop at once
            wait = min(wait * 2, START_RETRY_MAX_S)
