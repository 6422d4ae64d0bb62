"""The double-offer check and its stress run: the 300-call shape of
tests/test_acd_multinode.py (two fake nodes sharing one Redis, 20 agents in two overlapping
groups, 300 calls at 67/s, flaky phones, callers abandoning or hanging up after the bridge),
run N times while other processes keep every core busy, every offer of a call to an agent
followed on every node's event bus. ``make bench`` prints its row (:func:`stress`); the test
asserts on one run.

A *double offer*: an agent offered a call (a leg fsapps originates to it, CHANNEL_CREATE) while
another offer to it is up (until its CHANNEL_HANGUP), on any node, or a phone leg ringing
while another phone leg of the same agent rings for a live offer (:class:`OfferChecker`); or
the offers hash showing one agent reserved for two calls (:class:`OffersSampler`).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fakefs import Behaviour, Channel, Switch
from fakefs.events import Event
from fakefs.scenario import wait_until
from tools.callcenter import SimulatedCallCenter, reset_database, settings_for


def set_phone(switch: Switch, extension: str, behaviour: Behaviour) -> None:
    """What the agent's phone does on its next call."""
    switch.registrations[(extension, switch.domain)][-1].behaviour = behaviour


@dataclass
class Leg:
    node: str
    uuid: str
    created: float
    offer: str = ""   # phone legs: the fsapps offer leg they ring for (itself when direct)
    via: str = ""     # phone legs rung through another node: the relay's inbound uuid
    ended: float | None = None


@dataclass
class OfferChecker:
    """Watches every switch's bus and records every offer of a call to an agent.

    An *offer* is a leg fsapps originates to an agent (``variable_fsapps_acd_agent``); a *phone
    leg* is what rings the agent's phone (an outbound ``user/<ext>`` leg, on the node the phone
    is registered on: the offer leg itself, or the relay's leg when the offer went through
    another node). Violations: an offer created while another offer to the same agent is up,
    on any node; a phone leg created while another phone leg of the agent is up whose offer is
    up too. A phone leg outliving its offer by the time the cancel takes to cross nodes is
    ``lingering``, not a double offer (the agent was released when its offer ended).

    With ``chooser``, picks each phone's behaviour for its next call (a registration's
    behaviour is read before CHANNEL_CREATE fires)."""

    offer_live: dict[str, dict[str, Leg]] = field(default_factory=dict)
    phone_live: dict[str, dict[str, Leg]] = field(default_factory=dict)
    offer_legs: dict[str, Leg] = field(default_factory=dict)
    relayed: dict[str, str] = field(default_factory=dict)  # relay inbound uuid -> offer uuid
    history: list[Leg] = field(default_factory=list)
    offers: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    overlaps: list[str] = field(default_factory=list)
    lingering: list[float] = field(default_factory=list)  # s a phone leg outlived its offer
    slow_cancels: list[str] = field(default_factory=list)  # those outliving it by over 1 s
    chooser: Callable[[str], Behaviour] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    trail: dict[str, list[str]] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)

    def watch(self, switch: Switch) -> None:
        switch.bus.listen(lambda event: self.on_event(switch, event))

    def on_event(self, switch: Switch, event: Event) -> None:
        name = event.name
        if name not in ("CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP"):
            return
        h = event.headers
        offered = h.get("variable_fsapps_acd_agent")
        phone = h.get("variable_dialed_user") if h.get("Call-Direction") == "outbound" else None
        if not offered and not phone:
            return
        leg_uuid = h.get("Unique-ID", "")
        now = time.monotonic()
        with self.lock:
            self.trail.setdefault(offered or phone or "", []).append(
                f"{now - self.t0:7.3f} {switch.name} {name} {'offer' if offered else 'phone'} "
                f"{leg_uuid[:8]} call={h.get('variable_fsapps_acd_call', '')[:8]} "
                f"via={h.get('variable_sip_peer_uuid', '')[:8]}"
                f"{h.get('variable_originator', '')[:8] if not offered else ''} "
                f"{h.get('Hangup-Cause', '')}")
            if offered:
                self.on_offer(switch, name, offered, leg_uuid, h, now)
            if phone:
                self.on_phone(switch, name, phone, leg_uuid, h, now)

    def on_offer(self, switch: Switch, name: str, agent: str, leg_uuid: str,
                 h: dict[str, str], now: float) -> None:
        live = self.offer_live.setdefault(agent, {})
        if name == "CHANNEL_CREATE":
            self.offers[agent] += 1
            if live:
                self.overlaps.append(f"agent {agent}: offer {leg_uuid[:8]} on {switch.name} "
                                     f"while offer {self._names(live)} is up")
            leg = Leg(switch.name, leg_uuid, now)
            live[leg_uuid] = self.offer_legs[leg_uuid] = leg
            if h.get("variable_sip_peer_uuid"):
                self.relayed[h["variable_sip_peer_uuid"]] = leg_uuid
        elif name == "CHANNEL_ANSWER":
            self.answered[agent] += 1
        else:
            ended = live.pop(leg_uuid, None)
            if ended is not None:
                ended.ended = now

    def on_phone(self, switch: Switch, name: str, agent: str, leg_uuid: str,
                 h: dict[str, str], now: float) -> None:
        live = self.phone_live.setdefault(agent, {})
        if name == "CHANNEL_CREATE":
            direct = bool(h.get("variable_fsapps_acd_agent"))
            leg = Leg(switch.name, leg_uuid, now, offer=leg_uuid if direct else "",
                      via="" if direct else h.get("variable_originator", ""))
            for other in [] if self._offer_over(leg) else live.values():
                if not self._offer_over(other):
                    self.overlaps.append(f"agent {agent}: phone leg {leg_uuid[:8]} on "
                                         f"{switch.name} while phone leg {other.uuid[:8]} on "
                                         f"{other.node} still rings for a live offer")
            live[leg_uuid] = leg
            self.history.append(leg)
            if self.chooser is not None:
                set_phone(switch, agent, self.chooser(agent))
        elif name == "CHANNEL_HANGUP":
            ended = live.pop(leg_uuid, None)
            offer = None if ended is None else self.offer_legs.get(
                ended.offer or self.relayed.get(ended.via, ""))
            if offer is not None and offer.ended is not None and offer.uuid != leg_uuid:
                self.lingering.append(max(0.0, now - offer.ended))
                if now - offer.ended > 1.0:
                    self.slow_cancels.append(f"agent {agent}: phone leg {leg_uuid[:8]} on "
                                             f"{switch.name} ended {now - offer.ended:.2f} s "
                                             f"after its offer {offer.uuid[:8]}")

    def _offer_over(self, leg: Leg) -> bool:
        """The offer this phone leg rings for has ended (False while its CHANNEL_CREATE has
        not been seen yet: a relayed phone leg can show up before its offer's event)."""
        offer = self.offer_legs.get(leg.offer or self.relayed.get(leg.via, ""))
        return offer is not None and offer.ended is not None

    @staticmethod
    def _names(legs: dict[str, Leg]) -> str:
        return ", ".join(f"{leg.uuid[:8]} on {leg.node}" for leg in legs.values())

    def forget_node(self, node: str) -> None:
        """A killed node's legs vanish without events."""
        with self.lock:
            for table in (self.offer_live, self.phone_live):
                for legs in table.values():
                    for leg_uuid in [u for u, leg in legs.items() if leg.node == node]:
                        legs.pop(leg_uuid).ended = time.monotonic()

    def live_legs(self) -> int:
        with self.lock:
            return sum(len(legs) for table in (self.offer_live, self.phone_live)
                       for legs in table.values())


class OffersSampler:
    """Reads the offers hash (one HGETALL: an atomic snapshot) every few ms and records any
    extension reserved for two calls at once."""

    def __init__(self, cc: SimulatedCallCenter) -> None:
        self.cc = cc
        self.key = cc.ctx.keys(cc.domain).offers()
        self.doubles: list[str] = []
        self.samples = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="offers-sampler", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            offers = self.cc.ctx.redis.hgetall(self.key)
            self.samples += 1
            for ext, count in Counter(offers.values()).items():
                if count > 1:
                    calls = sorted(u[:8] for u, e in offers.items() if e == ext)
                    self.doubles.append(f"{ext} reserved for {calls}")
            self.stop.wait(0.01)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


# ----------------------------------------------------------------------- the stress run -----
DOMAIN = "stress.fsapps"
CALLS = 300
AGENTS = [str(1001 + i) for i in range(20)]
CALL_INTERVAL_S = 0.015  # 67 calls per second, alternating nodes
FLAKY = {"1001", "1016"}  # these phones miss a third of their calls


@dataclass
class RunResult:
    calls: int
    answered: int
    offers: int
    doubles: list[str]        # overlapping offers or phone legs (OfferChecker)
    reserved_twice: list[str]  # the offers hash showing an agent reserved for two calls
    unsettled: list[str]      # agents not ready/typing (or still holding something) after
    seconds: float


@contextlib.contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """``processes`` Python busy loops (other processes, as on a loaded machine) for the
    length of the block."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(processes)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


def unsettled(cc: SimulatedCallCenter) -> list[str]:
    """Agents still reserved, ringing, talking, or waiting for a leg's end."""
    left = []
    for ext in AGENTS:
        agent = cc.agents.get(ext)
        if agent is None or agent.call_state not in ("ready", "typing") or agent.offer_uuid \
                or agent.lease_until or agent.agent_leg or agent.leg_pending:
            left.append(f"{ext}: {agent}")
    return left


def run_once(redis_url: str, dsn: str, seed: int) -> RunResult:
    """One run of the 300-call shape (the test's, on its own Redis and database)."""
    reset_database(dsn)
    cc = SimulatedCallCenter(settings_for(redis_url, dsn, DOMAIN, lease_margin_seconds=1,
                                          busy_ring_interval_seconds=2))
    rng = random.Random(seed)
    checker = OfferChecker()
    sampler: OffersSampler | None = None
    try:
        nodes = [cc.start_switch("node1"), cc.start_switch("node2")]
        for node in nodes:
            checker.watch(node)
        cc.group("110", group_callout_timeout=1, wrapup_seconds=0, max_no_answer=1000)
        cc.group("120", group_callout_timeout=2, wrapup_seconds=0, max_no_answer=1000,
                 busy_ring="busy.wav", busy_ring_repeats=1)
        for node in nodes:
            node.media_durations["busy.wav"] = 500

        def phone(ext: str) -> Behaviour:
            miss = rng.random() < (0.33 if ext in FLAKY else 0.05)
            if miss and rng.random() < 0.5:
                return Behaviour(fail_with="USER_BUSY", fail_after_ms=rng.randint(20, 200))
            if miss:
                return Behaviour(answer_after_ms=None)
            return Behaviour(answer_after_ms=rng.randint(20, 200),
                             hangup_after_ms=rng.randint(50, 300))

        for i, ext in enumerate(AGENTS):
            groups = ["110", "120"] if 10 <= i < 14 else ["110"] if i < 10 else ["120"]
            cc.agent(ext, groups, switch=nodes[i % 2], behaviour=phone(ext))
        checker.chooser = phone
        sampler = OffersSampler(cc)
        callers: list[Channel] = []
        started = time.monotonic()
        for n in range(CALLS):
            group = "110" if rng.random() < 0.5 else "120"
            behaviour: dict[str, Any] = {}
            if rng.random() < 0.1:
                behaviour["abandon_after_ms"] = rng.randint(100, 2500)
            if rng.random() < 0.3:
                behaviour["hangup_after_bridge_ms"] = rng.randint(50, 300)
            callers.append(cc.call(nodes[n % 2], f"1390000{n:04d}", f"7{group}", **behaviour))
            time.sleep(max(0.0, started + (n + 1) * CALL_INTERVAL_S - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: all(ch.done.is_set() for ch in callers), 120, "calls ended")
            wait_until(lambda: checker.live_legs() == 0, 20, "agent legs ended")
            wait_until(lambda: not unsettled(cc), 15, "agents settled")
        seconds = time.monotonic() - started
        sampler.close()
        return RunResult(CALLS, sum("bridged" in ch.times for ch in callers),
                         sum(checker.offers.values()), list(checker.overlaps),
                         list(sampler.doubles), unsettled(cc), seconds)
    finally:
        if sampler is not None:
            sampler.close()
        cc.close()


def stress(redis_url: str, dsn: str, runs: int, load: int | None = None,
           progress: Callable[[str], None] | None = None) -> list[RunResult]:
    """``runs`` runs of the 300-call shape while ``load`` busy processes (default: one per
    core) compete for the CPU."""
    results = []
    with cpu_load(load if load is not None else (os.cpu_count() or 2)):
        for run in range(runs):
            results.append(run_once(redis_url, dsn, seed=20261121 + run))
            if progress is not None:
                last = results[-1]
                progress(f"double-offer run {run + 1}/{runs}: {len(last.doubles)} double "
                         f"offers, {last.answered}/{last.calls} answered, "
                         f"{last.seconds:.1f} s")
    return results


def rows(results: list[RunResult], load: int) -> list[tuple[str, str, str]]:
    """The bench table's rows for :func:`stress`."""
    runs = len(results)
    clean = sum(not r.doubles and not r.reserved_twice and not r.unsettled for r in results)
    return [
        ("runs clean (no double offer, all settled)", f"{clean}/{runs}", f"{runs}/{runs}"),
        ("double offers (overlapping offers or phone legs)",
         str(sum(len(r.doubles) for r in results)), "0"),
        ("agents reserved for two calls (offers hash)",
         str(sum(len(r.reserved_twice) for r in results)), "0"),
        ("agents left unsettled after a run", str(sum(len(r.unsettled) for r in results)),
         "0"),
        ("offers / calls answered / calls",
         f"{sum(r.offers for r in results)} / {sum(r.answered for r in results)} / "
         f"{sum(r.calls for r in results)}", ""),
        ("seconds per run (median)",
         f"{sorted(r.seconds for r in results)[runs // 2]:.1f}" if runs else "-", ""),
        ("CPU load: busy processes alongside", str(load), ""),
    ]
