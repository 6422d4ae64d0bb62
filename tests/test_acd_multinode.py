"""The ACD across nodes: several fake switches share one Redis (a plain server, and a 3-master
Redis Cluster to prove the ``{domain}`` hash-tag design), each running fsapps.nwayacd and
fsapps.runtime. Real time, short timings; every wait is on a condition.

A phone registers on one node; another node rings it through that node (fsapps dials
``sofia/internal/fsapps_agent_<ext>@<node>``, whose dialplan relays it to ``user/<ext>``).

What is proved:
- no agent is ever offered two calls at once (a checker on every switch's event bus follows
  each offer leg and each leg ringing an agent's phone from CHANNEL_CREATE to CHANNEL_HANGUP,
  on every node; a sampler reads the offers hash);
- every call ends answered, abandoned or ended by policy, and afterwards nothing is left
  reserved, ringing, talking or queued;
- a node that dies mid-offer strands neither its agents (the lease) nor its queued callers
  (the survivors' reconciler);
- the reconciler repairs agents whose call no longer exists;
- the waiting queue is shared: a caller on one node is served by an agent freed on another;
- skilled calls on two nodes go only to agents with their skills, never doubly offered.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid as uuidlib
from collections import Counter
from collections.abc import Iterator

import pytest

from fakefs import Behaviour, Channel, Switch
from fakefs.scenario import wait_until
from fsapps.channelvars import SKILLS_VAR
from fsapps.context import now_ms
from fsapps.domain.callbacks import Callbacks
from fsapps.domain.callqueue import CallQueue
from fsapps.domain.nodes import DEAD_AFTER_MS, Nodes
from fsapps.domain.skills import Skills
from fsapps.switch import acd
from fsapps.switch.runtime import RECONCILE_MS
from tests.acd_support import DOMAIN, CallCenter, center
from tools.doubleoffer import OfferChecker, OffersSampler, set_phone
from tools.servers import FreshDatabase, RedisClusterServer, RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads")

LEASE_MARGIN_S = 1
SETTLED = ("ready", "typing")
_GAVE_UP = re.compile(r"nwayacd: caller (\S+) waited too long")


# ----------------------------------------------------------------------- helpers ----------
def settled_problems(cc: CallCenter, extensions: list[str]) -> list[str]:
    """What is still reserved, ringing, talking or queued in Redis ([] when all is clean)."""
    problems = []
    for ext in extensions:
        agent = cc.get(ext)
        if agent.call_state not in SETTLED or agent.offer_uuid or agent.lease_until \
                or agent.agent_leg:
            problems.append(f"agent {ext}: {agent.call_state} offer={agent.offer_uuid!r} "
                            f"lease={agent.lease_until} leg={agent.agent_leg!r}")
    keys = cc.ctx.keys(DOMAIN)
    r = cc.ctx.redis
    for group in cc.groups.numbers():
        queued = r.zrange(keys.group_queue(group), 0, -1)
        if queued:
            problems.append(f"group {group} queue: {queued}")
    for name, key in (("waiting", keys.waiting()), ("offers", keys.offers())):
        left = r.hgetall(key)
        if left:
            problems.append(f"{name}: {left}")
    return problems


def wait_settled(cc: CallCenter, extensions: list[str], timeout: float = 15.0) -> None:
    try:
        wait_until(lambda: not settled_problems(cc, extensions), timeout, "settled")
    except TimeoutError:
        raise AssertionError(f"not settled after {timeout}s: "
                             f"{settled_problems(cc, extensions)}") from None


def gave_up(switches: list[Switch]) -> set[str]:
    """Callers the long-wait policy hung up, from the nodes' console logs."""
    found = set()
    for switch in switches:
        for _, message in list(switch.log):
            m = _GAVE_UP.search(message)
            if m:
                found.add(m.group(1))
    return found


def bridged(channel: Channel) -> bool:
    return "bridged" in channel.times


# ----------------------------------------------------------------------- fixtures ---------
@pytest.fixture
def cc(redis_server: RedisServer, database: FreshDatabase) -> Iterator[CallCenter]:
    yield from center(redis_server.url, database.dsn, lease_margin_seconds=LEASE_MARGIN_S,
                      busy_ring_interval_seconds=2)


@pytest.fixture(params=["redis", "cluster"])
def any_cc(request: pytest.FixtureRequest, database: FreshDatabase) -> Iterator[CallCenter]:
    """The call center on a plain Redis, then on a 3-master Redis Cluster."""
    if request.param == "cluster":
        cluster: RedisClusterServer = request.getfixturevalue("redis_cluster")
        cluster.flushall()
        yield from center(cluster.url, database.dsn, cluster=True,
                          lease_margin_seconds=LEASE_MARGIN_S, busy_ring_interval_seconds=2)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        yield from center(server.url, database.dsn, lease_margin_seconds=LEASE_MARGIN_S,
                          busy_ring_interval_seconds=2)


def two_nodes(cc: CallCenter, checker: OfferChecker | None = None) -> tuple[Switch, Switch]:
    a, b = cc.start_switch("node1"), cc.start_switch("node2")
    if checker is not None:
        checker.watch(a)
        checker.watch(b)
    return a, b


# ----------------------------------------------------------------------- 1, 2: load -------
CALLS = 300
AGENTS = [str(1001 + i) for i in range(20)]
CALL_INTERVAL_S = 0.015         # 67 calls per second, alternating nodes
FLAKY = {"1001", "1016"}        # these phones miss a third of their calls


def test_two_nodes_300_calls_no_double_offer(any_cc: CallCenter) -> None:
    cc = any_cc
    if cc.ctx.settings.redis.cluster:
        # What is proved on the cluster: the domain's keys and the node keys sit in different
        # slots, so every script and transaction must stay within one hash tag.
        slot = cc.ctx.redis.keyslot  # type: ignore[attr-defined]
        assert slot(cc.ctx.keys(DOMAIN).agent("1001")) == slot(cc.ctx.keys(DOMAIN).offers())
        assert slot(cc.ctx.keys(DOMAIN).offers()) != slot(cc.ctx.node_keys.nodes())
    rng = random.Random(20261121)
    checker = OfferChecker()
    a, b = two_nodes(cc, checker)
    nodes = [a, b]
    # 110: agents 1001-1014; 120: 1011-1020 (1011-1014 in both). 120 ends long waits by
    # policy: 1 s of hold music, one busy ring, then a hangup.
    cc.group("110", group_callout_timeout=1, wrapup_seconds=0, max_no_answer=1000)
    cc.group("120", group_callout_timeout=2, wrapup_seconds=0, max_no_answer=1000,
             busy_ring="busy.wav", busy_ring_repeats=1)
    a.media_durations["busy.wav"] = b.media_durations["busy.wav"] = 500

    def phone(ext: str) -> Behaviour:
        miss = rng.random() < (0.33 if ext in FLAKY else 0.05)
        if miss and rng.random() < 0.5:
            return Behaviour(fail_with="USER_BUSY", fail_after_ms=rng.randint(20, 200))
        if miss:
            return Behaviour(answer_after_ms=None)  # rings until the group's timeout
        return Behaviour(answer_after_ms=rng.randint(20, 200),
                         hangup_after_ms=rng.randint(50, 300))

    for i, ext in enumerate(AGENTS):  # registered on node1 and node2 in turn
        groups = ["110", "120"] if 10 <= i < 14 else ["110"] if i < 10 else ["120"]
        cc.agent(ext, groups, switch=nodes[i % 2], behaviour=phone(ext))
    checker.chooser = phone
    sampler = OffersSampler(cc)

    callers: list[tuple[str, str, Channel]] = []
    started = time.monotonic()
    try:
        for n in range(CALLS):
            node = nodes[n % 2]
            group = "110" if rng.random() < 0.5 else "120"
            caller = f"1390000{n:04d}"
            behaviour: dict[str, int] = {}
            if rng.random() < 0.1:
                behaviour["abandon_after_ms"] = rng.randint(100, 2500)
            if rng.random() < 0.3:
                behaviour["hangup_after_bridge_ms"] = rng.randint(50, 300)
            callers.append((caller, group, cc.call(node, caller, f"7{group}", **behaviour)))
            time.sleep(max(0.0, started + (n + 1) * CALL_INTERVAL_S - time.monotonic()))
        placed = time.monotonic() - started
        try:
            # generous: a deadline, not a timing (the shared 2-core machine may be loaded)
            wait_until(lambda: all(ch.done.is_set() for _, _, ch in callers), 90,
                       "every call ended")
        except TimeoutError:
            for caller, group, ch in callers:
                if not ch.done.is_set():
                    print(f"STUCK {caller} {ch.uuid[:8]} group {group} on {ch.switch.name}: "
                          f"up={ch.up} app={ch.application} {ch.application_data} "
                          f"times={sorted(ch.times)} peer={ch.peer}")
            for ext in AGENTS:
                print(ext, cc.get(ext))
                print("  " + "\n  ".join(checker.trail.get(ext, [])[-6:]))
            raise
        wait_until(lambda: checker.live_legs() == 0, 20, "every agent leg ended")
        wait_settled(cc, AGENTS)
        duration = time.monotonic() - started
    finally:
        sampler.close()

    policy = gave_up(nodes)
    outcomes: Counter[str] = Counter()
    odd = []
    for caller, group, ch in callers:
        if bridged(ch):
            outcomes["answered"] += 1
        elif ch.hangup_side == "remote":
            outcomes["abandoned"] += 1
        elif caller in policy and group == "120" and ch.hangup_cause == "NORMAL_CLEARING":
            outcomes["policy"] += 1
        else:
            odd.append(f"{caller} group {group} on {ch.switch.name}: {ch.hangup_cause} "
                       f"({ch.hangup_side})")
    print(f"\n[{cc.ctx.settings.redis.cluster and 'cluster' or 'redis'}] {CALLS} calls placed "
          f"in {placed:.1f}s, all ended in {duration:.1f}s: {dict(outcomes)}; "
          f"{sum(checker.offers.values())} agent offers, {sum(checker.answered.values())} "
          f"answered; {sampler.samples} offers-hash samples")
    for ext in sorted({o.split()[1].rstrip(":") for o in checker.overlaps}):
        print(f"agent {ext}:\n  " + "\n  ".join(checker.trail[ext]))
    print(f"phone legs outliving their offer (cancel crossing nodes): "
          f"{len(checker.lingering)}, longest {max(checker.lingering, default=0) * 1000:.0f} ms")
    assert not checker.overlaps, checker.overlaps[:5]
    for slow in checker.slow_cancels:
        print(slow + "\n  " + "\n  ".join(checker.trail[slow.split()[1].rstrip(":")]))
    assert max(checker.lingering, default=0) < 1.5
    assert not sampler.doubles, sampler.doubles[:5]
    errors = [f"{s.name}: {m.strip()}" for s in nodes for level, m in list(s.log)
              if level in ("ERR", "CRIT")]
    assert not odd, (odd[:10], errors[:10])
    assert not errors, errors[:10]
    assert sum(outcomes.values()) == CALLS
    assert outcomes["answered"] > CALLS // 2
    assert not [e for s in nodes for e in s.python_errors], [s.python_errors for s in nodes]
    assert duration < 60
    assert not settled_problems(cc, AGENTS)
    assert all(checker.offers[ext] for ext in AGENTS), checker.offers


def test_offer_rung_after_its_lease_ran_out_still_holds_the_agent(
        cc: CallCenter, monkeypatch: pytest.MonkeyPatch) -> None:
    """A queued caller's handler can read the agent reserved for it late: the break that wakes
    it may come before its hold music starts, and then it sleeps a whole segment (2-3 s),
    longer than a short lease (ring timeout + margin). Nobody took the agent meanwhile, so the
    compare-and-set lets it ring — and the ringing must hold the agent. It kept the expired
    lease of the reservation, so until the runtime wrote ``talking`` the ringing (and then
    answered) agent looked free: another node's caller reserved it and rang it too (the
    300-call test's double offers). Here the handler is made late on purpose: it reads its
    offer only once the lease has run out."""
    checker = OfferChecker()
    node1, node2 = two_nodes(cc, checker)
    ring_s = 3  # the whole-second originate timer fires after 2.0-2.6 s: the 1 s answer wins
    cc.group("610", group_callout_timeout=ring_s, wrapup_seconds=0, max_no_answer=1000)
    cc.agent("6101", ["610"], switch=node1, ready=False,
             behaviour=Behaviour(answer_after_ms=1000, hangup_after_ms=300))
    first = cc.call(node1, "13800006101", "7610")
    wait_until(lambda: [w.uuid for w in cc.queue.waiting("610")] == [first.uuid], 5,
               "first caller queued")

    late = threading.Event()
    woken_with = acd.Router.woken_with
    offer_or_waiting = CallQueue.offer_or_waiting

    def made_late(uuid: str, extension: str | None) -> str | None:
        if extension and uuid == first.uuid and not late.is_set():
            key = cc.ctx.keys(DOMAIN).agent(extension)
            wait_until(lambda: int(cc.ctx.redis.hget(key, "lease_until") or 0) < now_ms(),
                       ring_s + LEASE_MARGIN_S + 2, "the reservation's lease ran out",
                       interval=0.001)
            late.set()
        return extension

    # the handler learns its agent from the runtime's wake-up (acd.Router.woken_with), or
    # from Redis when the agent was reserved before it started waiting
    def late_wake(router: acd.Router) -> str | None:
        return made_late(router.call.uuid, woken_with(router))

    def late_look(queue: CallQueue, group: str, uuid: str) -> tuple[str | None, bool]:
        extension, waiting = offer_or_waiting(queue, group, uuid)
        return made_late(uuid, extension), waiting

    monkeypatch.setattr(acd.Router, "woken_with", late_wake)
    monkeypatch.setattr(CallQueue, "offer_or_waiting", late_look)
    assert acd.set_ready(cc.ctx, DOMAIN, "6101")  # reserved for the first caller, leased
    wait_until(lambda: checker.offer_live.get("6101"), ring_s + LEASE_MARGIN_S + 3,
               "6101 rung for the first caller, after its lease ran out")
    assert late.is_set()
    # Another node's caller arrives while 6101 rings (it answers after 1 s).
    second = cc.call(node2, "13800006102", "7610")
    wait_until(lambda: first.done.is_set() and second.done.is_set(), 15, "both calls over")
    wait_until(lambda: checker.live_legs() == 0, 5, "every agent leg ended")
    assert not checker.overlaps, checker.overlaps
    assert bridged(first) and bridged(second)
    assert checker.offers["6101"] == 2
    wait_settled(cc, ["6101"])


# ------------------------------------------------ 2b: the double offers, made deterministic ---
# The 300-call test failed about 1 run in 4 on a loaded machine. Its two double offers, each
# forced here with a fakefs knob instead of waiting for the machine to be slow at the right
# moment: (1) the handler freed the agent the moment its bridge ended, while the offer leg's
# hangup was still being told (the thread that hangs a leg up marks it down, then fires
# CHANNEL_HANGUP: descheduled in between, the agent was offered the next call first - 2 and
# 8 ms early in the failed runs); (2) the agent answered but its CHANNEL_ANSWER reached the
# runtime late: still "ring" in Redis, it counted as free once its lease ran out (the
# reservation script's rule and the reconciler's), and was offered a second call while talking.

def queued(cc: CallCenter, group: str, *calls: Channel) -> None:
    wait_until(lambda: [w.uuid for w in cc.queue.waiting(group)] == [c.uuid for c in calls],
               5, f"{len(calls)} caller(s) queued in {group}")


@pytest.mark.parametrize("ending", ["busy", "caller_hangs_up"])
def test_agent_not_offered_again_before_its_offer_leg_has_hung_up(
        cc: CallCenter, ending: str) -> None:
    """The offer leg of agent 7101 goes down (its phone answers busy; or the caller hangs up
    after the bridge, which hangs the agent leg up) but the switch tells CHANNEL_HANGUP 600 ms
    later. A second caller waits meanwhile (on the other node): it must not be offered 7101
    before the first offer leg has hung up."""
    checker = OfferChecker()
    node1, node2 = two_nodes(cc, checker)
    cc.group("710", group_callout_timeout=2, wrapup_seconds=0, max_no_answer=1000)
    slow = 600
    first_phone = Behaviour(fail_with="USER_BUSY", fail_after_ms=50,
                            hangup_event_delay_ms=slow) if ending == "busy" else \
        Behaviour(answer_after_ms=50, hangup_event_delay_ms=slow)
    cc.agent("7101", ["710"], switch=node1, ready=False, behaviour=first_phone)
    checker.chooser = lambda ext: Behaviour(answer_after_ms=50, hangup_after_ms=100)
    first = cc.call(node1, "13800007101", "7710",
                    **({"hangup_after_bridge_ms": 100} if ending != "busy" else {}))
    queued(cc, "710", first)
    second = cc.call(node2, "13800007102", "7710")
    queued(cc, "710", first, second)
    assert acd.set_ready(cc.ctx, DOMAIN, "7101")
    wait_until(lambda: second.done.is_set() and (ending != "busy" or first.done.is_set()),
               15, "the calls are over")
    wait_until(lambda: checker.live_legs() == 0, 5, "every agent leg ended")
    assert not checker.overlaps, checker.overlaps
    assert bridged(second)
    assert checker.offers["7101"] == (3 if ending == "busy" else 2), \
        "\n".join(checker.trail.get("7101", []))
    wait_settled(cc, ["7101"])


def test_late_answer_event_does_not_free_a_talking_agent(cc: CallCenter) -> None:
    """Agent 7201 answers at once and talks 6 s, but its leg's CHANNEL_ANSWER reaches node1's
    runtime 8 s late: Redis says "ring" long after the 2 s lease (1 s ring + 1 s margin) ran
    out. A second caller waits on node2 all along: it may have 7201 only once the first call
    is over - not when the lease runs out, nor when a reconciler sees the lease run out."""
    checker = OfferChecker()
    node1, node2 = two_nodes(cc, checker)
    cc.group("720", group_callout_timeout=1, wrapup_seconds=0, max_no_answer=1000)
    cc.agent("7201", ["720"], switch=node1, ready=False,
             behaviour=Behaviour(answer_after_ms=50, hangup_after_ms=6000))
    checker.chooser = lambda ext: Behaviour(answer_after_ms=50, hangup_after_ms=100)
    first = cc.call(node1, "13800007201", "7720")
    queued(cc, "720", first)
    node1.bus.delay_delivery(
        lambda e: e.name == "CHANNEL_ANSWER"
        and e.headers.get("variable_fsapps_acd_call") == first.uuid, 8.0)
    assert acd.set_ready(cc.ctx, DOMAIN, "7201")
    wait_until(lambda: bridged(first), 3, "first caller bridged")
    talking_since = time.monotonic()
    second = cc.call(node2, "13800007202", "7720")
    wait_until(lambda: cc.get("7201").lease_until < now_ms(), 5, "the lease ran out")
    wait_until(lambda: second.done.is_set(), 20, "second call over")
    assert not checker.overlaps, checker.overlaps
    assert bridged(second) and second.times["bridged"] / 1e6 > first.times["hangup"] / 1e6
    assert time.monotonic() - talking_since >= 5.5
    wait_until(lambda: first.done.is_set() and checker.live_legs() == 0, 5, "legs ended")
    # the late CHANNEL_ANSWER, once it comes, changes nothing (the agent holds no call)
    time.sleep(max(0.0, talking_since + 8.5 - time.monotonic()))
    wait_settled(cc, ["7201"])


# ----------------------------------------------------------------------- 3: node death ----
# The killed node's command thread ends on SystemExit, which pytest reports for any thread.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_node_killed_mid_offer(cc: CallCenter) -> None:
    """node2 dies while its caller rings agent 3101 and another of its callers waits in the
    queue of group 320: the agent is free again when the lease runs out (and takes node1's
    next caller), the dead caller's queue entry is removed once node2 counts as dead."""
    checker = OfferChecker()
    node1, node2 = two_nodes(cc, checker)
    ring_s = 2
    cc.group("310", group_callout_timeout=ring_s, wrapup_seconds=0, max_no_answer=1000)
    cc.group("320", group_callout_timeout=ring_s, wrapup_seconds=0, max_no_answer=1000)
    cc.agent("3101", ["310"], switch=node1, behaviour=Behaviour(answer_after_ms=None))
    cc.agent("3201", ["320"], switch=node1, ready=False)

    ringing = cc.call(node2, "13800003101", "7310")
    waiting = cc.call(node2, "13800003201", "7320")
    wait_until(lambda: cc.get("3101").call_state == "ring" and checker.phone_live.get("3101"),
               5, "3101's phone rings for node2's caller")
    wait_until(lambda: [w.uuid for w in cc.queue.waiting("320")] == [waiting.uuid], 5,
               "node2's second caller queued")
    held = cc.get("3101")
    assert held.offer_uuid == ringing.uuid and held.offer_node == "node2"

    node2.kill()
    killed_at = time.time()
    checker.forget_node("node2")
    assert not node2.running and not node2.channels
    assert all(not t.is_alive() for t in node2.runtime_threads)
    # An abrupt death: nothing was cleaned up by node2 itself.
    after = cc.get("3101")
    assert (after.call_state, after.offer_uuid) == ("ring", ringing.uuid)
    assert [w.uuid for w in cc.queue.waiting("320")] == [waiting.uuid]

    # node1's next caller for 310 waits for 3101, who is rung once the lease has run out.
    set_phone(node1, "3101", Behaviour(answer_after_ms=50, hangup_after_ms=200))
    nxt = cc.call(node1, "13800003102", "7310")
    wait_until(lambda: bridged(nxt), ring_s + LEASE_MARGIN_S + RECONCILE_MS / 1000 + 3,
               "node1's caller bridged to 3101")
    freed_after = time.time() - killed_at
    assert freed_after >= (held.lease_until / 1000 - killed_at) - 0.05, freed_after
    assert any("reconciler: agent 3101 was ring" in m for _, m in list(node1.log))
    print(f"\n3101 rang again {freed_after:.2f}s after node2 died (lease "
          f"{held.lease_until / 1000 - killed_at:.2f}s left at the kill)")
    assert not checker.overlaps, checker.overlaps
    wait_until(lambda: nxt.done.is_set(), 5, "node1's call ended")

    # The dead node's queued caller is dropped by node1's reconciler, not served forever.
    wait_until(lambda: not cc.queue.waiting("320"),
               (DEAD_AFTER_MS + 2 * RECONCILE_MS) / 1000 + 2, "dead node's caller unqueued")
    print(f"node2's queued caller removed {time.time() - killed_at:.2f}s after node2 died")
    acd.set_ready(cc.ctx, DOMAIN, "3201")
    time.sleep(0.3)
    assert cc.get("3201").call_state == "ready" and checker.offers["3201"] == 0
    wait_settled(cc, ["3101", "3201"])


# ----------------------------------------------------------------------- 4: drift ---------
def test_reconciler_repairs_talking_agent_without_call(cc: CallCenter) -> None:
    """Redis says talking, but the call is gone from the agent's node: made available within
    a reconcile round or two — and an agent really talking is left alone."""
    node1, node2 = two_nodes(cc)
    cc.group("410", group_callout_timeout=2, wrapup_seconds=0)
    cc.agent("4101", ["410"], switch=node1)
    cc.agent("4102", ["410"], switch=node2)
    cc.agent("4103", ["410"], switch=node1,
             behaviour=Behaviour(answer_after_ms=20, hangup_after_ms=6000))
    for agent in ("4101", "4102"):
        acd.set_busy(cc.ctx, DOMAIN, agent)
    live = cc.call(node1, "13800004103", "7410")
    wait_until(lambda: cc.get("4103").call_state == "talking", 5, "4103 talking")

    for ext, node in (("4101", "node1"), ("4102", "node2")):
        acd.set_ready(cc.ctx, DOMAIN, ext)
        cc.agents.set_fields(ext, call_state="talking", offer_uuid=str(uuidlib.uuid4()),
                             offer_node=node, agent_leg=str(uuidlib.uuid4()), lease_until=0)
    drifted = time.monotonic()
    wait_until(lambda: all(cc.get(e).call_state == "ready" and not cc.get(e).offer_uuid
                           for e in ("4101", "4102")),
               2 * RECONCILE_MS / 1000 + 1, "drifted agents repaired")
    print(f"\ndrift repaired in {time.monotonic() - drifted:.2f}s")
    talking = cc.get("4103")
    assert talking.call_state == "talking" and talking.offer_uuid == live.uuid
    assert live.up


# ----------------------------------------------------------------------- 5: shared queue --
def test_caller_on_one_node_served_by_agent_freed_on_other(cc: CallCenter) -> None:
    checker = OfferChecker()
    node1, node2 = two_nodes(cc, checker)
    cc.group("510", group_callout_timeout=2, wrapup_seconds=0)
    cc.agent("5101", ["510"], switch=node2, ready=False,
             behaviour=Behaviour(answer_after_ms=30, hangup_after_ms=300))
    caller = cc.call(node1, "13800005101", "7510")
    wait_until(lambda: [w.uuid for w in cc.queue.waiting("510")] == [caller.uuid], 5,
               "caller queued on node1")
    assert cc.queue.waiting("510")[0].node == "node1"
    time.sleep(0.5)  # deep in its hold music
    freed = time.monotonic()
    with node2.bound():  # the agent's ready comes in on node2 (its api / the CTI server)
        assert acd.set_ready(cc.ctx, DOMAIN, "5101")
    wait_until(lambda: bridged(caller), 3, "caller bridged on node1")
    latency = time.monotonic() - freed
    print(f"\nqueued caller on node1 bridged {latency * 1000:.0f} ms after 5101 turned ready "
          "on node2")
    assert latency < 1.0  # woken by uuid_break through node1's command queue, not by polling
    assert [leg.node for leg in checker.history] == ["node2"]  # the phone, via node2
    wait_until(lambda: caller.done.is_set(), 5, "call ended")
    wait_settled(cc, ["5101"])


def test_caller_dropped_from_queue_by_mistake_queues_again(cc: CallCenter) -> None:
    """A reconciler that took a live node for dead (missed heartbeats) drops its caller from
    the queue and sends that node a break (as reconcile_queue does); the caller's handler,
    woken, finds itself out of the queue and queues it again in the same place, so it is
    still served."""
    node1, _ = two_nodes(cc)
    cc.group("520", group_callout_timeout=2, wrapup_seconds=0)
    cc.agent("5201", ["520"], switch=node1, ready=False,
             behaviour=Behaviour(answer_after_ms=30, hangup_after_ms=200))
    caller = cc.call(node1, "13800005201", "7520")
    wait_until(lambda: cc.queue.waiting("520"), 5, "caller queued")
    score = cc.ctx.redis.zscore(cc.ctx.keys(DOMAIN).group_queue("520"), caller.uuid)
    assert cc.queue.leave("520", caller.uuid) == (True, "")
    Nodes(cc.ctx).send(node1.name, "break", uuid=caller.uuid)
    wait_until(lambda: cc.queue.waiting("520"), 4, "caller queued again")
    assert cc.ctx.redis.zscore(cc.ctx.keys(DOMAIN).group_queue("520"), caller.uuid) == score
    assert acd.set_ready(cc.ctx, DOMAIN, "5201")
    wait_until(lambda: bridged(caller), 2, "caller bridged")
    wait_until(lambda: caller.done.is_set(), 5, "call ended")
    wait_settled(cc, ["5201"])


# ----------------------------------------------------------------------- 6: skills --------
def test_two_nodes_skilled_calls_go_only_to_qualified_agents_never_doubly(
        cc: CallCenter) -> None:
    """Calls requiring english:2 or billing:2 (or nothing) on two nodes, agents with one skill
    or the other registered on either node, flaky phones and impatient callers: each answered
    call's agent has the skills it required, and no agent is offered two calls at once."""
    rng = random.Random(20261205)
    checker = OfferChecker()
    nodes = list(two_nodes(cc, checker))
    cc.group("530", group_callout_timeout=1, wrapup_seconds=0, max_no_answer=1000)
    agents = {f"53{i:02d}": ("english:3" if i % 2 else "billing:2") for i in range(1, 9)}

    def phone(ext: str) -> Behaviour:
        if rng.random() < 0.1:
            return Behaviour(fail_with="USER_BUSY", fail_after_ms=rng.randint(20, 100))
        return Behaviour(answer_after_ms=rng.randint(20, 150),
                         hangup_after_ms=rng.randint(50, 250))

    for i, (ext, skills) in enumerate(agents.items()):
        cc.agent(ext, ["530"], switch=nodes[i % 2], behaviour=phone(ext))
        Skills(cc.ctx, DOMAIN).set(ext, [(skills.split(":")[0], int(skills.split(":")[1]))])
    checker.chooser = phone
    sampler = OffersSampler(cc)
    required: dict[str, str] = {}
    callers: list[Channel] = []
    try:
        for n in range(90):
            wanted = rng.choice(["english:2", "billing:2", ""])
            channel = nodes[n % 2].place_call(
                f"1395300{n:04d}", "7530", domain=cc.domain, context="default",
                behaviour=Behaviour(abandon_after_ms=rng.randint(1500, 5000),
                                    hangup_after_bridge_ms=rng.randint(50, 200)),
                variables={SKILLS_VAR: wanted} if wanted else {})
            required[channel.uuid] = wanted
            callers.append(channel)
            time.sleep(0.03)
        wait_until(lambda: all(ch.done.is_set() for ch in callers), 60, "every call ended")
        wait_until(lambda: checker.live_legs() == 0, 20, "every agent leg ended")
        wait_settled(cc, list(agents))
    finally:
        sampler.close()
    answered = {e.headers.get("variable_fsapps_acd_call", ""):
                e.headers.get("variable_fsapps_acd_agent", "")
                for s in nodes for e in s.bus.events("CHANNEL_ANSWER")
                if e.headers.get("variable_fsapps_acd_agent")}
    wrong = [(uuid[:8], required[uuid], ext, agents[ext]) for uuid, ext in answered.items()
             if uuid in required and required[uuid]
             and required[uuid].split(":")[0] != agents[ext].split(":")[0]]
    assert not wrong, wrong
    assert len([u for u in answered if u in required]) > 30
    assert {required[u] for u in answered if u in required} == {"english:2", "billing:2", ""}
    assert not checker.overlaps, checker.overlaps[:5]
    assert not sampler.doubles, sampler.doubles[:5]
    errors = [f"{s.name}: {m.strip()}" for s in nodes for level, m in list(s.log)
              if level in ("ERR", "CRIT")]
    assert not errors, errors[:10]
    assert not settled_problems(cc, list(agents))


# ----------------------------------------------------------------------- callbacks --------
# The killed node's threads end on SystemExit, which pytest reports for any thread.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_callbacks_on_two_nodes_placed_once_and_surviving_their_node(cc: CallCenter) -> None:
    """Callbacks (issue 18 item 5) on two nodes. A callback asked for on node1 whose first
    call back rings out is queued again by the reconcilers of both nodes racing for it, and
    placed once: the caller is dialled exactly twice. A second callback asked for on node1
    outlives node1's death (the survivor's reconciler drops node1's waiting callers but never
    a callback) and is placed by node2 when its agent frees there; never a double offer."""
    checker = OfferChecker()
    node1, node2 = two_nodes(cc, checker)
    dialled: list[str] = []
    script = {"13800007101": [Behaviour(answer_after_ms=None)]}
    lock = threading.Lock()

    def far_end(number: str) -> Behaviour:
        with lock:
            dialled.append(number)
            queued = script.get(number) or []
            return queued.pop(0) if queued else Behaviour(answer_after_ms=50,
                                                          hangup_after_ms=200)
    for node in (node1, node2):
        node.add_gateway("cbgw", far_end)
    cc.group("710", group_callout_timeout=1, wrapup_seconds=0, exit_key="1",
             exit_to="callback", callback_gateway="cbgw", callback_max_attempts=3,
             callback_retry_seconds=0)
    cc.agent("7101", ["710"], switch=node2, ready=False,
             behaviour=Behaviour(answer_after_ms=30))

    def ask(number: str) -> str:
        channel = cc.call(node1, number, "7710", dtmf=((500, "1"),))
        wait_until(lambda: channel.done.is_set(), 6, f"{number} hung up after asking")
        return str(wait_until(lambda: next((c.id for c in Callbacks(cc.ctx, DOMAIN).all()
                                            if c.number == number), None), 3,
                              f"{number}'s callback"))

    first = ask("13800007101")
    with node2.bound():
        acd.set_ready(cc.ctx, DOMAIN, "7101")
    wait_until(lambda: not Callbacks(cc.ctx, DOMAIN).get(first), 15, "the first called back")
    assert dialled == ["13800007101", "13800007101"]
    wait_settled(cc, ["7101"])

    acd.set_busy(cc.ctx, DOMAIN, "7101")
    second = ask("13800007102")
    node1.kill()
    checker.forget_node("node1")
    wait_until(lambda: "node1" not in Nodes(cc.ctx).alive(),
               DEAD_AFTER_MS / 1000 + 3, "node1 counted as dead")
    time.sleep(2 * RECONCILE_MS / 1000 + 0.5)  # two passes of node2's reconciler
    assert [w.uuid for w in cc.queue.waiting("710")] == [second]
    with node2.bound():
        acd.set_ready(cc.ctx, DOMAIN, "7101")
    wait_until(lambda: not Callbacks(cc.ctx, DOMAIN).get(second), 10, "the second called back")
    assert dialled.count("13800007102") == 1
    assert not checker.overlaps, checker.overlaps
    wait_settled(cc, ["7101"])
