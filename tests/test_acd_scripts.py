"""The ACD's Lua scripts run directly against a real Redis, through the same Python wrappers
the ACD uses (CallQueue, Agents): reserve-or-queue, dispatch, release, the transition
compare-and-set and wrap-up end — including races between threads."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from fsapps.context import Context, now_ms
from fsapps.domain.agent_state import IllegalTransition
from fsapps.domain.agents import Agents, Ready, Released
from fsapps.domain.callqueue import CallQueue, WaitingCall
from fsapps.domain.routing import queue_score
from fsapps.events.pubsub import agent_status, stamp
from fsapps.store.scripts import run_script
from tests.acd_support import DOMAIN, settings_for

LEASE = 60_000
MARGIN_MS = 2_000  # settings_for's lease_margin_seconds


@pytest.fixture
def ctx(redis_client: redis.Redis, redis_server: Any) -> Iterator[Context]:
    """fsapps' context on the (flushed) test Redis; PostgreSQL is never touched here."""
    yield Context(settings_for(redis_server.url, "postgresql://unused.invalid/none"))


@pytest.fixture
def agents(ctx: Context) -> Agents:
    return Agents(ctx, DOMAIN)


@pytest.fixture
def queue(ctx: Context) -> CallQueue:
    return CallQueue(ctx, DOMAIN)


def make_agent(ctx: Context, ext: str, groups: tuple[str, ...] = ("100",),
               **fields: object) -> None:
    """An agent that could take a call now (logged in, registered, idle, ready), with
    ``fields`` overriding that."""
    agents = Agents(ctx, DOMAIN)
    agents.ensure(ext)
    agents.set_fields(ext, **{"logged_in": "1", "reg_state": "reged", "seat_status": "idle",
                              "call_state": "ready", "groups": ",".join(groups),
                              "offer_uuid": "", "lease_until": 0, **fields})


def make_group(ctx: Context, number: str, timeout: int = 15) -> None:
    ctx.redis.hset(ctx.keys(DOMAIN).group(number),
                   mapping={"group_number": number, "group_callout_timeout": timeout})


def call(group: str = "100", level: str = "normal", arrived: int | None = None,
         tried: list[str] | None = None) -> WaitingCall:
    arrived = arrived if arrived is not None else now_ms()
    return WaitingCall(str(uuidlib.uuid4()), "node1", group, f"139{arrived % 10**8:08d}",
                       "", level, "2021-05-30 17:00:02", arrived, list(tried or []))


def enqueue(queue: CallQueue, c: WaitingCall) -> None:
    """Queue a call (no candidates: nobody can be reserved)."""
    assert Agents(queue.ctx, DOMAIN).reserve_or_queue(
        c, [], lease_ms=LEASE, enqueue=True, record_current=False).outcome == "queued"


def reserve(queue: CallQueue, c: WaitingCall, candidates: list[str],
            enqueue: bool = False, record_current: bool = False) -> tuple[str, str | None]:
    found = Agents(queue.ctx, DOMAIN).reserve_or_queue(
        c, candidates, lease_ms=LEASE, enqueue=enqueue, record_current=record_current)
    return found.outcome, found.extension


def state(agents: Agents, ext: str) -> tuple[str, str]:
    agent = agents.get(ext)
    assert agent is not None
    return agent.call_state, agent.offer_uuid


def offers(ctx: Context) -> dict[str, str]:
    return ctx.redis.hgetall(ctx.keys(DOMAIN).offers())


# ------------------------------------------------------------------------ agent_reserve -----
def test_reserve_takes_the_first_available_candidate_in_order(ctx: Context, queue: CallQueue,
                                                              agents: Agents) -> None:
    for ext in ("1001", "1002", "1003"):
        make_agent(ctx, ext)
    first, second = call(), call()
    assert reserve(queue, first, ["1002", "1001", "1003"]) == ("reserved", "1002")
    assert reserve(queue, second, ["1002", "1001", "1003"]) == ("reserved", "1001")
    assert state(agents, "1002") == ("ring", first.uuid)
    assert state(agents, "1001") == ("ring", second.uuid)
    lease_until = agents.get("1002").lease_until  # type: ignore[union-attr]
    assert now_ms() < lease_until <= now_ms() + LEASE
    assert agents.get("1002").offer_node == "node1"  # type: ignore[union-attr]
    assert offers(ctx) == {first.uuid: "1002", second.uuid: "1001"}


def test_a_reservation_naming_the_agent_leg_is_the_ring_too(ctx: Context, queue: CallQueue,
                                                            agents: Agents) -> None:
    """The handler that rings the agent it reserves at once names the leg in the reservation:
    the agent is left as Agents.ringing leaves it (the leg recorded, awaited on this node), and
    the reply says where the phone is registered - no second step before the INVITE. Without
    a leg the reservation records none."""
    make_agent(ctx, "1001", reg_node="node2")
    make_agent(ctx, "1002", reg_node="node1")
    c = call()
    found = agents.reserve_or_queue(c, ["1001"], lease_ms=LEASE, enqueue=False,
                                    record_current=False, agent_leg="leg-1")
    assert (found.outcome, found.extension, found.reg_node) == ("reserved", "1001", "node2")
    agent = agents.get("1001")
    assert agent is not None
    assert (agent.call_state, agent.offer_uuid, agent.offer_node) == ("ring", c.uuid, "node1")
    assert (agent.agent_leg, agent.leg_pending, agent.leg_node) == ("leg-1", "leg-1", "node1")
    assert now_ms() < agent.lease_until <= now_ms() + LEASE
    other = agents.reserve_or_queue(call(), ["1002"], lease_ms=LEASE, enqueue=False,
                                    record_current=False)
    assert (other.extension, other.reg_node) == ("1002", "node1")
    agent = agents.get("1002")
    assert agent is not None
    assert (agent.agent_leg, agent.leg_pending) == ("", "")


def test_a_leg_end_offers_the_freed_agent_a_call_in_the_same_step(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    """agent_leg_end.lua: the agent freed by its leg's end takes the best waiting call of its
    groups in the same script when its groups are the ones this process last saw; the first
    time (nothing seen), or its groups changed since, it answers them and takes nothing (the
    caller offers it a call from those: a second round trip). Another leg's end frees
    nobody; the reconciler's single leg_ended offers nothing."""
    from fsapps.domain import agents as agents_module

    make_group(ctx, "100")
    make_group(ctx, "200")
    agents_module._GROUPS_SEEN.clear()
    first, second, third = (call(arrived=now_ms() - 3000 + i) for i in range(3))
    for c in (first, second, third):
        enqueue(queue, c)
    make_agent(ctx, "1001", leg_pending="leg-1")
    assert agents.legs_ended([("1001", "leg-0")]) == ([], {})  # not the awaited leg
    # first time: groups unseen, answered; nothing taken here
    assert agents.legs_ended([("1001", "leg-1")]) == ([], {"1001": ["100"]})
    assert agents.get("1001").call_state == "ready"  # type: ignore[union-attr]
    # seen now: the next leg end takes the longest waiting call in the same step
    agents.set_fields("1001", leg_pending="leg-2")
    taken, freed = agents.legs_ended([("1001", "leg-2")])
    assert (freed, [(ext, uuid) for ext, uuid, _ in taken]) == ({}, [("1001", first.uuid)])
    agent = agents.get("1001")
    assert agent is not None and (agent.call_state, agent.offer_uuid) == ("ring", first.uuid)
    assert offers(ctx) == {first.uuid: "1001"}
    # logged into another group since: answered again, nothing taken
    make_agent(ctx, "1001", groups=("100", "200"), leg_pending="leg-3")
    assert agents.legs_ended([("1001", "leg-3")]) == ([], {"1001": ["100", "200"]})
    # the reconciler's leg_ended frees, offers nothing (its caller does)
    make_agent(ctx, "1001", groups=("100", "200"), leg_pending="leg-4")
    assert agents.leg_ended("1001", "leg-4")
    assert agents.get("1001").call_state == "ready"  # type: ignore[union-attr]
    assert [c.uuid for c in queue.waiting("100")] == [second.uuid, third.uuid]


@pytest.mark.parametrize("field,value", [
    ("reg_state", "unreg"), ("seat_status", "busy"), ("logged_in", "0"),
    ("call_state", "talking"), ("call_state", "typing"), ("call_state", "busy"),
    ("call_state", "no_answer"), ("call_state", "rest")])
def test_reserve_skips_agents_that_cannot_take_a_call(ctx: Context, queue: CallQueue,
                                                      agents: Agents, field: str,
                                                      value: str) -> None:
    make_agent(ctx, "1001", **{field: value})
    make_agent(ctx, "1002")
    c = call()
    assert reserve(queue, c, ["1001", "1002"]) == ("reserved", "1002")
    assert agents.get("1001").offer_uuid == ""  # type: ignore[union-attr]


def test_reserve_skips_an_agent_ringing_for_another_call(ctx: Context, queue: CallQueue,
                                                         agents: Agents) -> None:
    make_agent(ctx, "1001", call_state="ring", offer_uuid="other",
               lease_until=now_ms() + 10_000)
    make_agent(ctx, "1002")
    assert reserve(queue, call(), ["1001", "1002"]) == ("reserved", "1002")
    assert state(agents, "1001") == ("ring", "other")


def test_an_expired_lease_alone_does_not_free_the_agent(ctx: Context, queue: CallQueue,
                                                        agents: Agents) -> None:
    """A reservation whose lease ran out still holds the agent: answered, an agent stays
    "ring" until its CHANNEL_ANSWER reaches the runtime, which a loaded switch sends seconds
    late (a timer alone freed agents who were talking: double offers). The reconciler frees
    it once the switch says it has no live leg; then the stale offer entry is dropped too."""
    stale = call()
    make_agent(ctx, "1001")
    assert reserve(queue, stale, ["1001"]) == ("reserved", "1001")
    agents.set_fields("1001", lease_until=now_ms() - 1)
    fresh = call()
    assert reserve(queue, fresh, ["1001"]) == ("none", None)
    assert state(agents, "1001") == ("ring", stale.uuid)
    assert agents.release("1001", stale.uuid, "cancel", lease_expired=True, leg_gone="") == \
        Released("ready", "ready", 0)
    assert reserve(queue, fresh, ["1001"]) == ("reserved", "1001")
    assert state(agents, "1001") == ("ring", fresh.uuid)
    assert offers(ctx) == {fresh.uuid: "1001"}


def test_an_agent_is_not_free_until_its_last_leg_end_is_told(ctx: Context, queue: CallQueue,
                                                             agents: Agents) -> None:
    """The offer's end (release, wrap-up) makes the agent ready, but it takes no call until
    the switch has told the end of the leg it was rung on (agent_leg_end, from the runtime's
    CHANNEL_HANGUP_COMPLETE): another leg's end changes nothing."""
    make_agent(ctx, "1001")
    c = call()
    assert reserve(queue, c, ["1001"]) == ("reserved", "1001")
    assert agents.ringing("1001", c.uuid, "node1", now_ms() + LEASE, "leg-1") is not None
    assert agents.release("1001", c.uuid, "missed") == Released("no_answer", "ready", 1)
    agent = agents.get("1001")
    assert agent is not None and (agent.agent_leg, agent.leg_pending) == ("", "leg-1")
    assert not agent.available(now_ms())
    assert reserve(queue, call(), ["1001"]) == ("none", None)
    assert not agents.leg_ended("1001", "leg-0")
    assert agents.leg_ended("1001", "leg-1")
    assert not agents.leg_ended("1001", "leg-1")  # told twice: nothing more
    assert agents.get("1001").available(now_ms())  # type: ignore[union-attr]
    assert reserve(queue, call(), ["1001"])[0] == "reserved"


def test_an_offer_to_an_unregistered_phone_leaves_no_leg_to_wait_for(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    """USER_NOT_REGISTERED: the user endpoint refused before any channel existed, so no
    hangup will ever be told of the named leg; the release does not wait for one."""
    make_agent(ctx, "1001")
    c = call()
    reserve(queue, c, ["1001"])
    assert agents.ringing("1001", c.uuid, "node1", now_ms() + LEASE, "leg-1") is not None
    assert agents.release("1001", c.uuid, "unregistered") == Released("ready", "ready", 0)
    agent = agents.get("1001")
    assert agent is not None and (agent.reg_state, agent.leg_pending) == ("unreg", "")


def test_ringing_answers_where_the_phone_is_registered_in_the_same_step(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    """A woken handler rings its agent from the node the ring transition answers (no round
    trip of its own for it): the phone's node, "" for none; None when the reservation is no
    longer the call's (a retry of the same request gets the first run's answer)."""
    make_agent(ctx, "1001", reg_node="node2")
    c = call()
    reserve(queue, c, ["1001"])
    assert agents.ringing("1001", c.uuid, "node1", now_ms() + LEASE, "leg-1") == "node2"
    agents.set_fields("1001", reg_node="")
    assert agents.ringing("1001", c.uuid, "node1", now_ms() + LEASE, "leg-1") == ""
    assert agents.ringing("1001", "another-call", "node1", now_ms() + LEASE, "leg-2") is None


def test_reconciler_release_counts_the_leg_it_found_gone_as_ended(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    """The reconciler releases an agent whose leg the switch no longer has: that leg's end
    counts as told. Its condition is the leg it asked about: a ring since, on another leg,
    makes the release change nothing."""
    make_agent(ctx, "1001")
    c = call()
    reserve(queue, c, ["1001"])
    assert agents.ringing("1001", c.uuid, "node1", now_ms() - 1, "leg-1") is not None
    assert agents.release("1001", c.uuid, "cancel", lease_expired=True, leg_gone="leg-0") is None
    assert agents.release("1001", c.uuid, "cancel", lease_expired=True, leg_gone="leg-1") == \
        Released("ready", "ready", 0)
    assert agents.get("1001").available(now_ms())  # type: ignore[union-attr]


def test_reserve_queues_the_call_when_nobody_is_available(ctx: Context, queue: CallQueue,
                                                          agents: Agents) -> None:
    make_agent(ctx, "1001", seat_status="busy")
    c = call(level="vip", arrived=1_000)
    assert reserve(queue, c, ["1001"]) == ("none", None)
    assert queue.waiting("100") == []
    assert reserve(queue, c, ["1001"], enqueue=True) == ("queued", None)
    k = ctx.keys(DOMAIN)
    assert ctx.redis.zscore(k.group_queue("100"), c.uuid) == queue_score("vip", 1_000)
    assert json.loads(ctx.redis.hget(k.waiting(), c.uuid))["level"] == "vip"
    assert queue.waiting("100") == [c]
    assert reserve(queue, c, ["1001"], enqueue=True) == ("queued", None)  # idempotent
    assert ctx.redis.zcard(k.group_queue("100")) == 1
    assert state(agents, "1001") == ("ready", "")


def test_queueing_behind_busy_agents_reads_each_agent_once(ctx: Context, queue: CallQueue,
                                                          agents: Agents) -> None:
    # With every agent busy, each caller queued read all of them twice plus their levels
    # (~3 Redis commands per agent per caller: 588 HMGETs per bridged call at 500 x 40).
    candidates = [str(1001 + n) for n in range(30)]
    for ext in candidates:
        make_agent(ctx, ext, seat_status="busy")
    ctx.redis.config_resetstat()
    assert reserve(queue, call(), candidates, enqueue=True) == ("queued", None)
    stats = ctx.redis.info("commandstats")
    assert stats["cmdstat_hmget"]["calls"] == len(candidates) + 1  # + the group's settings
    assert "cmdstat_hget" not in stats or stats["cmdstat_hget"]["calls"] <= 2


def test_reserve_reports_an_offer_made_while_the_call_was_queued(ctx: Context,
                                                                 queue: CallQueue) -> None:
    make_agent(ctx, "1001", seat_status="busy")
    c = call()
    enqueue(queue, c)
    ctx.redis.hset(ctx.keys(DOMAIN).agent("1001"), "seat_status", "idle")
    assert Agents(ctx, DOMAIN).take_waiting_call("1001", ["100"]) is not None
    assert reserve(queue, c, [], enqueue=True) == ("offered", "1001")
    assert queue.waiting("100") == []


def test_reserve_records_the_current_ext_number_for_cyclic_modes(ctx: Context,
                                                                 queue: CallQueue) -> None:
    make_group(ctx, "100")
    make_agent(ctx, "1001")
    make_agent(ctx, "1002")
    reserve(queue, call(), ["1001"])
    assert ctx.redis.hget(ctx.keys(DOMAIN).group("100"), "current_ext_number") is None
    reserve(queue, call(), ["1002"], record_current=True)
    assert ctx.redis.hget(ctx.keys(DOMAIN).group("100"), "current_ext_number") == "1002"


def test_reserve_never_gives_one_agent_two_offers_under_contention(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    """8 threads × 150 calls on 5 agents, the ACD's own cycle: reserve-or-queue; a queued
    call waits for an agent to reserve itself (dispatch); the call holds its agent briefly,
    releases it, and the freed agent takes the best waiting call. No agent may ever be held
    by two calls, and every call must get an agent."""
    exts = [f"10{i:02d}" for i in range(1, 6)]
    for ext in exts:
        make_agent(ctx, ext)
    held: dict[str, str] = {}
    lock = threading.Lock()
    problems: list[str] = []
    served = [0]

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(150):
            c = call()
            order = exts[:]
            rng.shuffle(order)
            found = agents.reserve_or_queue(c, order, lease_ms=LEASE, enqueue=True,
                                            record_current=False)
            ext = found.extension
            deadline = time.monotonic() + 10
            while ext is None:
                ext = queue.offer_for(c.uuid)
                if time.monotonic() > deadline:
                    problems.append(f"call {c.uuid} never got an agent")
                    return
                time.sleep(0.0005)
            with lock:
                if ext in held:
                    problems.append(f"{ext} offered {held[ext]} and {c.uuid}")
                held[ext] = c.uuid
            current = agents.get(ext)
            if current is None or current.offer_uuid != c.uuid:
                problems.append(f"{ext} holds {current and current.offer_uuid}, not {c.uuid}")
            if rng.random() < 0.5:
                time.sleep(rng.random() / 1000)
            with lock:
                del held[ext]
                served[0] += 1
            if agents.release(ext, c.uuid, "cancel") is None:
                problems.append(f"{ext} was no longer reserved for {c.uuid}")
            Agents(ctx, DOMAIN).take_waiting_call(ext, ["100"])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not problems, problems[:5]
    assert served[0] == 8 * 150
    assert offers(ctx) == {}
    assert queue.waiting() == []
    assert {state(agents, ext) for ext in exts} == {("ready", "")}


# ------------------------------------------------------------------------ agent_dispatch ----
def test_dispatch_takes_vip_first_then_fifo_across_the_agents_groups(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    make_group(ctx, "100")
    make_group(ctx, "200")
    make_group(ctx, "300")
    make_agent(ctx, "1001", groups=("100", "200"))
    n1 = call("100", "normal", 1_000)
    n0 = call("200", "normal", 900)
    v1 = call("200", "vip", 2_000)
    v0 = call("100", "vip", 2_500)
    elsewhere = call("300", "vip", 1)  # not one of the agent's groups
    for c in (n1, n0, v1, v0, elsewhere):
        enqueue(queue, c)
    taken = []
    while (got := Agents(ctx, DOMAIN).take_waiting_call("1001", ["100", "200"])) is not None:
        uuid, info = got
        assert info is not None and info.uuid == uuid
        assert state(agents, "1001") == ("ring", uuid)
        assert offers(ctx) == {uuid: "1001"}
        assert uuid not in [w.uuid for w in queue.waiting()]
        taken.append(uuid)
        assert agents.release("1001", uuid, "cancel") == Released("ready", "ready", 0)
    assert taken == [v1.uuid, v0.uuid, n0.uuid, n1.uuid]
    assert queue.waiting("300") == [elsewhere]


def test_dispatch_skips_calls_the_agent_failed(ctx: Context, queue: CallQueue,
                                               agents: Agents) -> None:
    """A freed agent is not offered a call it already failed while another call waits for it;
    another agent takes the failed call. When only failed calls wait, it gets the best of them
    (tried last, not never: nobody else is free to take it)."""
    make_group(ctx, "100")
    make_agent(ctx, "1001")
    make_agent(ctx, "1002")
    failed = call(arrived=1_000, tried=["1001"], level="vip")
    fresh = call(arrived=2_000)
    enqueue(queue, failed)
    enqueue(queue, fresh)
    assert Agents(ctx, DOMAIN).take_waiting_call("1001", ["100"])[0] == fresh.uuid  # type: ignore[index]
    assert Agents(ctx, DOMAIN).take_waiting_call("1002", ["100"])[0] == failed.uuid  # type: ignore[index]
    agents.release("1001", fresh.uuid, "cancel")
    agents.release("1002", failed.uuid, "cancel")
    older, newer = call(arrived=3_000, tried=["1001"]), call(arrived=4_000, tried=["1001"])
    enqueue(queue, older)
    enqueue(queue, newer)
    assert Agents(ctx, DOMAIN).take_waiting_call("1001", ["100"])[0] == older.uuid  # type: ignore[index]


def test_freed_agents_wake_this_nodes_callers_here_and_others_by_command(
        ctx: Context, queue: CallQueue) -> None:
    """The leg-ends thread wakes its own node's callers itself (wake_here), the others'
    through their nodes' command queues - and one it failed to wake here through its own
    node's queue, so no caller is left in its hold music with an agent reserved for it."""
    from fsapps.domain.nodes import Nodes
    from fsapps.switch import acd

    here = acd.node_name(ctx)
    mine, theirs, refused = (dataclasses.replace(call(arrived=now_ms() - 3000 + i), node=node)
                             for i, node in enumerate((here, "node2", here)))
    for c, ext in ((mine, "1001"), (theirs, "1002"), (refused, "1003")):
        make_agent(ctx, ext, seat_status="busy")
        enqueue(queue, c)
        ctx.redis.hset(ctx.keys(DOMAIN).agent(ext), "seat_status", "idle")
    woken = []

    def wake_here(uuid: str, extension: str) -> None:
        if uuid == refused.uuid:
            raise RuntimeError("the switch refused")
        woken.append((uuid, extension))

    offered = acd.agents_available(ctx, DOMAIN, {"1001": ["100"], "1002": ["100"],
                                                 "1003": ["100"]}, wake_here=wake_here)
    assert offered == [mine.uuid, theirs.uuid, refused.uuid]  # the longest waiting first
    assert woken == [(mine.uuid, "1001")]
    nodes = Nodes(ctx)
    assert nodes.next_command("node2", 0.1) == {"cmd": "break", "uuid": theirs.uuid,
                                                 "agent": "1002"}
    assert nodes.next_command(here, 0.1) == {"cmd": "break", "uuid": refused.uuid,
                                              "agent": "1003"}
    assert nodes.next_command(here, 0.1) is None


@pytest.mark.parametrize("field,value", [
    ("reg_state", "unreg"), ("seat_status", "busy"), ("logged_in", "0"),
    ("call_state", "typing"), ("call_state", "talking")])
def test_dispatch_offers_nothing_to_an_agent_that_is_not_free(
        ctx: Context, queue: CallQueue, field: str, value: str) -> None:
    make_group(ctx, "100")
    make_agent(ctx, "1001", **{field: value})
    c = call()
    enqueue(queue, c)
    assert Agents(ctx, DOMAIN).take_waiting_call("1001", ["100"]) is None
    assert queue.waiting("100") == [c]
    assert offers(ctx) == {}


def test_dispatch_leases_for_the_longest_ring_timeout_of_the_agents_groups(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    make_group(ctx, "100", timeout=5)
    make_group(ctx, "200", timeout=20)
    make_agent(ctx, "1001", groups=("100", "200"))
    enqueue(queue, call("100"))
    before = now_ms()
    assert Agents(ctx, DOMAIN).take_waiting_call("1001", ["100", "200"]) is not None
    lease_until = agents.get("1001").lease_until  # type: ignore[union-attr]
    assert before + 20_000 + MARGIN_MS <= lease_until <= now_ms() + 20_000 + MARGIN_MS


# ------------------------------------------------------------------------ agent_release -----
def test_release_acts_only_for_the_call_that_holds_the_reservation(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    make_agent(ctx, "1001")
    mine, other = call(), call()
    reserve(queue, mine, ["1001"])
    assert agents.release("1001", other.uuid, "missed") is None
    agent = agents.get("1001")
    assert agent is not None
    assert (agent.call_state, agent.offer_uuid, agent.no_answer_count) == ("ring", mine.uuid, 0)
    assert offers(ctx) == {mine.uuid: "1001"}
    # a missed offer is one step: no_answer, then (no max_no_answer) ready
    assert agents.release("1001", mine.uuid, "missed") == Released("no_answer", "ready", 1)
    assert state(agents, "1001") == ("ready", "")
    assert offers(ctx) == {}
    assert agents.release("1001", mine.uuid, "missed") is None  # twice: nothing more
    assert agents.get("1001").no_answer_count == 1  # type: ignore[union-attr]


def test_reconciler_release_of_a_run_out_lease_spares_an_offer_rung_since(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    """The reconciler read the reservation's lease as run out; before its release the call's
    handler rang the agent, which starts the lease again (acd.Router.offer's compare-and-set).
    The release checks again and changes nothing: freeing the ringing agent let another call
    reserve it and ring it too."""
    make_agent(ctx, "1001")
    c = call()
    assert reserve(queue, c, ["1001"]) == ("reserved", "1001")
    agents.set_fields("1001", lease_until=now_ms() - 1)  # the handler is late
    assert agents.transition("1001", "ring", offer_uuid=c.uuid, only_from=("ring",),
                             extra={"lease_until": now_ms() + LEASE})
    assert agents.release("1001", c.uuid, "cancel", lease_expired=True) is None
    assert state(agents, "1001") == ("ring", c.uuid)
    assert offers(ctx) == {c.uuid: "1001"}
    assert reserve(queue, call(), ["1001"]) == ("none", None)  # held by the ringing call
    agents.set_fields("1001", lease_until=now_ms() - 1)  # really run out: released
    assert agents.release("1001", c.uuid, "cancel", lease_expired=True) == \
        Released("ready", "ready", 0)
    assert state(agents, "1001") == ("ready", "") and offers(ctx) == {}


def test_release_outcomes(ctx: Context, queue: CallQueue, agents: Agents) -> None:
    make_agent(ctx, "1001", no_answer_count=2)
    c = call()
    reserve(queue, c, ["1001"])
    assert agents.release("1001", c.uuid, "cancel") == Released("ready", "ready", 2)
    c = call()
    reserve(queue, c, ["1001"])
    assert agents.release("1001", c.uuid, "unregistered") == Released("ready", "ready", 2)
    assert agents.get("1001").reg_state == "unreg"  # type: ignore[union-attr]


def test_missed_offer_is_one_step_busy_after_max_no_answer(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    """no_answer and the decision after it (agent_state.after_no_answer) in one script: no
    moment where another writer sees no_answer, nor a second round trip to lose."""
    make_agent(ctx, "1001")
    first = call()
    reserve(queue, first, ["1001"])
    assert agents.release("1001", first.uuid, "missed", max_no_answer=2) == \
        Released("no_answer", "ready", 1)
    second = call()
    reserve(queue, second, ["1001"])
    assert agents.release("1001", second.uuid, "missed", max_no_answer=2) == \
        Released("no_answer", "busy", 2)
    agent = agents.get("1001")
    assert agent is not None
    assert (agent.call_state, agent.seat_status, agent.offer_uuid) == ("busy", "busy", "")
    assert offers(ctx) == {}


def test_missed_offer_of_an_agent_that_went_busy_meanwhile_keeps_busy(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    """The agent pressed busy while its phone rang: busy -> no_answer is not in the table, so
    the miss releases the reservation and leaves the call state alone."""
    make_agent(ctx, "1001")
    c = call()
    reserve(queue, c, ["1001"])
    assert agents.transition("1001", "busy")
    assert agents.release("1001", c.uuid, "missed", max_no_answer=1) == \
        Released("busy", "busy", 0)
    assert state(agents, "1001") == ("busy", "") and offers(ctx) == {}


# ------------------------------------------------------------------------ agent_ready -------
def test_make_ready_takes_the_best_waiting_call_in_the_same_step(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    make_group(ctx, "100")
    make_agent(ctx, "1001", seat_status="busy", call_state="typing", no_answer_count=3)
    ctx.redis.zadd(ctx.keys(DOMAIN).wrapups(), {"1001": now_ms() + 60_000})
    c = call()
    enqueue(queue, c)
    ready = agents.make_ready("1001")
    assert (ready.done, ready.previous, ready.offered) == (True, "typing", c.uuid)
    assert ready.waiting is not None and ready.waiting.uuid == c.uuid
    agent = agents.get("1001")
    assert agent is not None
    assert (agent.call_state, agent.offer_uuid, agent.seat_status, agent.no_answer_count) == \
        ("ring", c.uuid, "idle", 0)
    assert ctx.redis.zcard(ctx.keys(DOMAIN).wrapups()) == 0
    assert offers(ctx) == {c.uuid: "1001"} and queue.waiting() == []


@pytest.mark.parametrize("fields,outcome", [
    ({"enabled": "0", "call_state": "busy", "seat_status": "busy"}, "disabled"),
    ({"call_state": "talking", "seat_status": "busy"}, "on_call"),
    ({"call_state": "ring", "seat_status": "busy"}, "on_call")])
def test_make_ready_refusals(ctx: Context, queue: CallQueue, agents: Agents,
                             fields: dict[str, str], outcome: str) -> None:
    make_group(ctx, "100")
    make_agent(ctx, "1001", **fields)
    enqueue(queue, call())
    ready = agents.make_ready("1001")
    assert (ready.done, ready.outcome, ready.previous) == (False, outcome, fields["call_state"])
    agent = agents.get("1001")
    assert agent is not None and agent.call_state == fields["call_state"]
    # a disabled seat stays busy; an agent on a call is idle for when its call ends
    assert agent.seat_status == ("busy" if outcome == "disabled" else "idle")
    assert offers(ctx) == {}
    assert agents.make_ready("9999") == Ready(False, "absent", "")


def test_make_ready_with_groups_changed_since_they_were_read(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    """The script refuses to offer from groups that are no longer the agent's (the caller
    read them first): it is ready, and make_ready offers again from the new ones."""
    make_group(ctx, "100")
    make_group(ctx, "200")
    make_agent(ctx, "1001", groups=("200",), call_state="busy")
    c = call("100")
    enqueue(queue, c)
    k = ctx.keys(DOMAIN)
    result = run_script(ctx.redis, "agent_ready",
                        [k.agent("1001"), k.waiting(), k.offers(), k.wrapups(),
                         k.group_queue("100"), k.group("100")],
                        ["1001", now_ms(), MARGIN_MS, 15, "100", "ready,busy"])
    assert result[0] == "ready" and result[3] == "" and result[5] == "1"
    assert state(agents, "1001") == ("ready", "") and queue.waiting("100") == [c]


# ------------------------------------------------------------------------ agent_busy --------
@pytest.mark.parametrize("before,after,moved", [
    ("ready", "busy", True), ("typing", "busy", True), ("ring", "busy", True),
    ("busy", "busy", True), ("talking", "talking", False)])
def test_make_busy_sets_the_seat_and_the_state_the_table_allows(
        ctx: Context, agents: Agents, before: str, after: str, moved: bool) -> None:
    make_agent(ctx, "1001", call_state=before)
    assert agents.make_busy("1001") is moved
    agent = agents.get("1001")
    assert agent is not None and (agent.call_state, agent.seat_status) == (after, "busy")
    assert agents.make_busy("9999") is False


def test_make_busy_tells_the_move_in_its_own_step(ctx: Context, agents: Agents,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """agent_busy.lua publishes the agent's busy itself (one round trip for the whole
    operation, in the order of the agent's moves); nothing is published after it."""
    make_agent(ctx, "1001", call_state="ready")
    published: list[str] = []
    monkeypatch.setattr(Agents, "publish", lambda self, ext, status, *a, **k:
                        published.append(status))
    listener = ctx.redis.pubsub()
    listener.subscribe("agent_1001")
    assert listener.get_message(timeout=2.0)["type"] == "subscribe"  # type: ignore[index]
    try:
        assert agents.make_busy("1001") is True
        message = listener.get_message(timeout=2.0)
        assert message is not None and "busy" in str(message["data"])
        assert agents.make_busy("1001") is True  # busy already: nothing more to tell
        assert listener.get_message(timeout=0.3) is None
    finally:
        listener.close()
    assert published == []
    assert agents.get("9999") is None


# ------------------------------------------------------------------------ told by the scripts
class AgentChannel:
    """What ``agent_<ext>`` carried, as Redis delivered it."""

    def __init__(self, ctx: Context, ext: str) -> None:
        self.listener = ctx.redis.pubsub()
        self.listener.subscribe(f"agent_{ext}")
        assert self.listener.get_message(timeout=2.0)["type"] == "subscribe"  # type: ignore[index]

    def messages(self, quiet: float = 0.3) -> list[str]:
        """Every message until none came for ``quiet`` seconds."""
        got = []
        while (message := self.listener.get_message(timeout=quiet)) is not None:
            got.append(str(message["data"]))
        return got

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(params=["comma", "json"])
def told(request: pytest.FixtureRequest, redis_client: redis.Redis, redis_server: Any,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Context, AgentChannel, list[str]]]:
    """A context publishing in each shape, agent 1001's channel, and what :meth:`Agents.publish`
    (the publish after a script) was asked to send: nothing, when the scripts tell the moves."""
    settings = settings_for(redis_server.url, "postgresql://unused.invalid/none")
    ctx = Context(dataclasses.replace(settings, events=dataclasses.replace(
        settings.events, pubsub_format=request.param)))
    published: list[str] = []
    monkeypatch.setattr(Agents, "publish", lambda self, ext, status, *a, **k:
                        published.append(status))
    channel = AgentChannel(ctx, "1001")
    try:
        yield ctx, channel, published
    finally:
        channel.close()


def as_published(ctx: Context, ext: str, *moves: tuple[str, int]) -> list[str]:
    """The messages the publish after the script sent for these (state, at ms): the seed's
    format, byte for byte, which the scripts' own must equal."""
    return [agent_status(ext, status, stamp(at / 1000)).render(ctx.publisher.shape)
            for status, at in moves]


def test_make_ready_tells_ready_and_ring_in_its_own_step(
        told: tuple[Context, AgentChannel, list[str]]) -> None:
    """agent_ready.lua publishes the agent's "ready" and the offered call's "ring" itself, the
    messages the publish after it sent, once each; nothing is published after it."""
    ctx, channel, published = told
    agents = Agents(ctx, DOMAIN)
    make_group(ctx, "100")
    make_agent(ctx, "1001", call_state="typing", seat_status="busy")
    ready = agents.make_ready("1001")
    assert (ready.done, ready.previous, ready.offered) == (True, "typing", "")
    at = agents.get("1001").last_change  # type: ignore[union-attr]
    assert channel.messages() == as_published(ctx, "1001", ("ready", at))
    assert agents.make_ready("1001").done  # ready already: nothing to tell
    assert channel.messages() == []
    assert agents.make_busy("1001")
    c = call()
    enqueue(CallQueue(ctx, DOMAIN), c)
    channel.messages()
    ready = agents.make_ready("1001")
    assert (ready.previous, ready.offered) == ("busy", c.uuid)
    at = agents.get("1001").last_change  # type: ignore[union-attr]
    assert channel.messages() == as_published(ctx, "1001", ("ready", at), ("ring", at))
    assert not agents.make_ready("1001").done  # ringing: on a call, nothing to tell
    assert channel.messages() == []
    assert published == []


def test_amake_ready_is_one_round_trip_telling_its_moves(
        told: tuple[Context, AgentChannel, list[str]]) -> None:
    """The CTI server's ready on the asyncio client: the script alone (EVALSHA), which tells
    "ready" and "ring" itself - no publish after it, none missing, none twice."""
    import redis.asyncio as aioredis

    ctx, channel, published = told
    agents = Agents(ctx, DOMAIN)
    make_group(ctx, "100")
    make_agent(ctx, "1001", call_state="busy", seat_status="busy")

    async def run() -> list[tuple[Ready, list[str]]]:
        client = aioredis.Redis.from_url(ctx.settings.redis.url.reveal(),
                                         decode_responses=True)
        sent: list[str] = []
        real = client.execute_command

        async def counted(*args: Any, **kwargs: Any) -> Any:
            sent.append(str(args[0]).upper())
            return await real(*args, **kwargs)
        client.execute_command = counted  # type: ignore[method-assign]
        client.pipeline = None  # type: ignore[assignment,method-assign]  # (none may be used)
        done = []
        try:
            await agents.amake_ready(client, "1001")  # (may read the groups first)
            await asyncio.to_thread(agents.make_busy, "1001")
            await asyncio.to_thread(enqueue, CallQueue(ctx, DOMAIN), call())
            sent.clear()
            done.append((await agents.amake_ready(client, "1001"), list(sent)))
        finally:
            await client.aclose()
        return done

    [(ready, commands)] = asyncio.run(run())
    assert ready.done and ready.offered and commands == ["EVALSHA"]
    at = agents.get("1001").last_change  # type: ignore[union-attr]
    assert channel.messages()[-2:] == as_published(ctx, "1001", ("ready", at), ("ring", at))
    assert published == []


def test_transitions_and_wrapup_ends_tell_their_moves_in_their_step(
        told: tuple[Context, AgentChannel, list[str]]) -> None:
    """agent_transition.lua (answered, a hand-set call state, the reconciler's settle) and
    wrapup_end.lua publish the new state themselves, once, only when it changed."""
    ctx, channel, published = told
    agents = Agents(ctx, DOMAIN)
    make_agent(ctx, "1001", call_state="ring", offer_uuid="call-1")
    # ring again
    assert agents.ringing("1001", "call-1", "node1", now_ms() + LEASE, "leg-1") is not None
    assert channel.messages() == []
    assert agents.answered("1001", "call-1", "leg-1", "node1")
    talking = agents.get("1001").last_change  # type: ignore[union-attr]
    assert agents.transition("1001", "rest") is False  # refused: nothing told
    assert agents.set_call_state("1001", "typing")
    typing = agents.get("1001").last_change  # type: ignore[union-attr]
    assert channel.messages() == as_published(ctx, "1001", ("talking", talking),
                                              ("typing", typing))
    now = now_ms()
    ctx.redis.zadd(ctx.keys(DOMAIN).wrapups(), {"1001": now - 1})
    assert agents.end_due_wrapups(now) == ["1001"]
    assert agents.end_due_wrapups(now) == []  # (once)
    assert channel.messages() == as_published(ctx, "1001", ("ready", now))
    assert published == []


def test_the_answers_of_an_event_batch_move_their_agents_together(
        told: tuple[Context, AgentChannel, list[str]]) -> None:
    """The runtime's answers of one event batch (Agents.answered_many): each agent still
    ringing for its call is talking on its leg, told once; one whose call is another's (the
    answer came late) is refused and keeps its state."""
    ctx, channel, published = told
    agents = Agents(ctx, DOMAIN)
    make_agent(ctx, "1001", call_state="ring", offer_uuid="call-1")
    make_agent(ctx, "1002", call_state="ring", offer_uuid="call-2")
    make_agent(ctx, "1003", call_state="ring", offer_uuid="call-next")
    assert agents.answered_many([("1001", "call-1", "leg-1", "node1"),
                                 ("1002", "call-2", "leg-2", "node1"),
                                 ("1003", "call-3", "leg-3", "node1")]) == [True, True, False]
    first, second, late = (agents.get(ext) for ext in ("1001", "1002", "1003"))
    assert (first.call_state, first.agent_leg, first.leg_pending) == (  # type: ignore[union-attr]
        "talking", "leg-1", "leg-1")
    assert (second.call_state, second.agent_leg) == ("talking", "leg-2")  # type: ignore[union-attr]
    assert (late.call_state, late.offer_uuid) == ("ring", "call-next")  # type: ignore[union-attr]
    assert channel.messages() == as_published(  # (the channel of 1001)
        ctx, "1001", ("talking", first.last_change))  # type: ignore[union-attr]
    assert published == []


# ------------------------------------------------------------------------ agent_transition --
def test_transition_refuses_illegal_moves_and_names_both_states(agents: Agents,
                                                                ctx: Context) -> None:
    make_agent(ctx, "1001", call_state="talking", offer_uuid="call-1")
    assert agents.transition("1001", "rest") is False
    with pytest.raises(IllegalTransition) as caught:
        agents.transition("1001", "rest", strict=True)
    assert (caught.value.current, caught.value.wanted) == ("talking", "rest")
    assert "'talking'" in str(caught.value) and "'rest'" in str(caught.value)
    assert state(agents, "1001")[0] == "talking"
    assert agents.transition("1001", "typing", strict=True) is True
    assert state(agents, "1001")[0] == "typing"
    with pytest.raises(IllegalTransition, match="no agent"):
        agents.transition("9999", "ready", strict=True)
    assert agents.get("9999") is None


def test_transition_only_while_holding_the_given_call(agents: Agents, ctx: Context,
                                                      queue: CallQueue) -> None:
    make_agent(ctx, "1001")
    c = call()
    reserve(queue, c, ["1001"])
    assert agents.transition("1001", "talking", offer_uuid="another-call") is False
    assert agents.transition("1001", "talking", offer_uuid=c.uuid, extra={"agent_leg": "L"})
    agent = agents.get("1001")
    assert agent is not None and (agent.call_state, agent.agent_leg) == ("talking", "L")


def test_transition_only_from_narrows_the_table(agents: Agents, ctx: Context) -> None:
    """ring → ready is in the table (a released offer) but not for an agent pressing
    "ready" (acd.set_ready passes the off-call states only)."""
    make_agent(ctx, "1001", call_state="ring")
    assert agents.transition("1001", "ready", only_from=("typing", "busy")) is False
    assert state(agents, "1001")[0] == "ring"
    agents.set_fields("1001", call_state="typing")
    assert agents.transition("1001", "ready", only_from=("typing", "busy")) is True


# ------------------------------------------------------------------------ wrapup_end --------
def test_wrapup_end_is_done_once_when_two_nodes_race(ctx: Context, agents: Agents) -> None:
    make_agent(ctx, "1001", call_state="talking", offer_uuid="call-1")
    assert agents.start_wrapup("1001", "call-1", 30) is False
    assert state(agents, "1001")[0] == "typing"
    assert agents.end_due_wrapups() == []  # not due yet
    due = now_ms() + 31_000
    barrier = threading.Barrier(2)
    results: list[list[str]] = []

    def node() -> None:
        other = Agents(Context(ctx.settings), DOMAIN)  # as another node's runtime would
        barrier.wait()
        results.append(other.end_due_wrapups(due))

    threads = [threading.Thread(target=node) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(results) == [[], ["1001"]]
    assert state(agents, "1001")[0] == "ready"
    assert ctx.redis.zcard(ctx.keys(DOMAIN).wrapups()) == 0


def test_wrapup_end_leaves_an_agent_that_is_no_longer_typing(ctx: Context,
                                                             agents: Agents) -> None:
    make_agent(ctx, "1001", call_state="talking", offer_uuid="call-1")
    agents.start_wrapup("1001", "call-1", 1)
    agents.transition("1001", "rest")
    k = ctx.keys(DOMAIN)
    args = ["1001", now_ms() + 5_000]
    assert run_script(ctx.redis, "wrapup_end", [k.agent("1001"), k.wrapups()], args) == 0
    assert state(agents, "1001")[0] == "rest"
    assert ctx.redis.zcard(k.wrapups()) == 0


# ------------------------------------------------------------------- retry-safe scripts -----
def snapshot(ctx: Context) -> dict[str, Any]:
    """Every key of the domain and its content (what a repeated request must not change)."""
    r = ctx.redis
    found: dict[str, Any] = {}
    for key in sorted(r.scan_iter(match="*")):
        kind = r.type(key)
        found[key] = (r.hgetall(key) if kind == "hash" else
                      r.zrange(key, 0, -1, withscores=True) if kind == "zset" else
                      sorted(r.smembers(key)) if kind == "set" else r.get(key))
    return found


def retry_cases(ctx: Context, agents: Agents, queue: CallQueue) \
        -> Iterator[tuple[str, list[str], list[Any], int]]:
    """(script, KEYS, ARGV without the request id, where the request id goes) for each agent
    script, with the agent set up so that the first run changes something."""
    k = ctx.keys(DOMAIN)
    make_group(ctx, "100")
    agent = k.agent("1001")
    now = now_ms()
    # agent_release: a missed offer (no_answer -> ready, a miss counted)
    c = call()
    reserve(queue, c, ["1001"])
    yield "agent_release", [agent, k.offers()], [c.uuid, now, "missed", "0", 0, "*"], 6
    # agent_wrapup: the answered call ends, wrap-up 10 s
    c = call()
    make_agent(ctx, "1001", call_state="talking", offer_uuid=c.uuid)
    yield "agent_wrapup", [agent, k.offers(), k.wrapups()], [c.uuid, now, now + 10_000,
                                                             "1001"], 4
    # wrapup_end: that wrap-up is due
    yield "wrapup_end", [agent, k.wrapups()], ["1001", now + 20_000], 2
    # agent_dispatch: the ready agent takes the one waiting call
    c = call()
    make_agent(ctx, "1001")
    enqueue(queue, c)
    yield "agent_dispatch", [agent, k.waiting(), k.offers(), k.group_queue("100"),
                             k.group("100")], ["1001", now, MARGIN_MS, 15], 4
    # agent_ready: a busy agent makes itself ready and takes the next waiting call
    c = call()
    make_agent(ctx, "1001", call_state="busy", seat_status="busy", offer_uuid="")
    enqueue(queue, c)
    yield "agent_ready", [agent, k.waiting(), k.offers(), k.wrapups(), k.group_queue("100"),
                          k.group("100")], ["1001", now, MARGIN_MS, 15, "100",
                                            ",".join(("ready", "busy"))], 6
    # agent_reserve: a call reserves the ready agent
    c = call()
    make_agent(ctx, "1001")
    yield "agent_reserve", [k.group("100"), k.group_queue("100"), k.waiting(), k.offers(),
                            agent], [c.uuid, "node1", now, LEASE, "1",
                                     queue_score("normal", now), c.to_json(), "0"], 8
    # agent_transition: ring -> talking for that call (the runtime's answered)
    yield "agent_transition", [agent], ["ring", "talking", now, c.uuid], 4
    # agent_busy, agent_leg_end, agent_unregister, agent_reg_expire
    make_agent(ctx, "1001", leg_pending="leg-1")
    yield "agent_busy", [agent], [now], 1
    make_agent(ctx, "1001", leg_pending="leg-1")
    enqueue(queue, call())  # (the freed agent takes it in the same step)
    yield "agent_leg_end", [agent, k.waiting(), k.offers(), k.group_queue("100"),
                            k.group("100")], ["leg-1", "1001", "100", now, MARGIN_MS, 15], 1
    make_agent(ctx, "1001", reg_node="node1")
    yield "agent_unregister", [agent], ["node1"], 1
    make_agent(ctx, "1001", reg_node="node2", reg_until=now - 1, reg_stamp="42")
    yield "agent_reg_expire", [agent], ["node2", now], 2


def test_every_agent_script_answers_a_repeated_request_as_the_first_time(
        ctx: Context, agents: Agents, queue: CallQueue) -> None:
    """Every Redis command is retried after a timeout (store/connection.py): a script whose
    reply was lost runs again with the same arguments. Run twice with the same request id,
    each agent script answers the second time what it answered the first and changes
    nothing more; with a fresh id the same arguments are a new request (and, the agent
    having changed, mostly answer "nothing done" - what a retry answered before)."""
    make_agent(ctx, "1001")
    checked = []
    for script, keys, args, at in retry_cases(ctx, agents, queue):
        req = f"req-{script}"
        with_id = [*args[:at], req, *args[at:]]
        first = run_script(ctx.redis, script, keys, with_id)
        after_first = snapshot(ctx)
        again = run_script(ctx.redis, script, keys, with_id)
        assert again == first, (script, first, again)
        assert snapshot(ctx) == after_first, script
        fresh = run_script(ctx.redis, script, keys, [*args[:at], "req-other", *args[at:]])
        checked.append((script, first != fresh))
    assert [name for name, _ in checked] == [
        "agent_release", "agent_wrapup", "wrapup_end", "agent_dispatch", "agent_ready",
        "agent_reserve", "agent_transition", "agent_busy", "agent_leg_end", "agent_unregister",
        "agent_reg_expire"]
    # without the id, a retry of these would have answered differently ("nothing done")
    assert {name for name, differs in checked if differs} >= {
        "agent_release", "agent_wrapup", "wrapup_end", "agent_dispatch", "agent_leg_end",
        "agent_unregister", "agent_reg_expire"}, checked


def test_a_release_retried_after_its_reply_was_lost_still_makes_the_agent_ready(
        ctx: Context, queue: CallQueue, agents: Agents) -> None:
    """The field report: agent_release ran, its reply timed out, the retry answered "not
    ours" and the ACD skipped the agent's next step. The same request again answers what
    the first run did: the miss, the agent ready."""
    make_agent(ctx, "1001")
    c = call()
    reserve(queue, c, ["1001"])
    k = ctx.keys(DOMAIN)
    args = [c.uuid, now_ms(), "missed", "0", 0, "*", "req-lost"]
    first = run_script(ctx.redis, "agent_release", [k.agent("1001"), k.offers()], args)
    retried = run_script(ctx.redis, "agent_release", [k.agent("1001"), k.offers()], args)
    assert retried == first and first[:3] == ["no_answer", "ready", 1]
    assert agents.get("1001").no_answer_count == 1  # type: ignore[union-attr]
