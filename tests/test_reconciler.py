"""The reconciler's rule for every agent state (fsapps.switch.runtime.agent_repair), then the
reconciler at work in two fake switches sharing a Redis: agents left in each stuck state are
repaired within a reconcile round or two, and agents whose switch says they have a live leg
are left alone, whatever their lease says.

The rule: a reconciler frees an agent only when the switch that owns its call says the agent
has no live leg (its own switch: uuid_exists), or that node is gone - never because a timer
ran out alone."""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Iterator

import pytest

from fakefs import Behaviour
from fakefs.scenario import wait_until
from fsapps.context import now_ms
from fsapps.domain.agents import Agent
from fsapps.domain.nodes import DEAD_AFTER_MS, Nodes
from fsapps.switch.runtime import RECONCILE_MS, Repair, agent_repair
from tests.acd_support import DOMAIN, CallCenter, center
from tools.servers import FreshDatabase, RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads")

NOW = 1_800_000_000_000
ME, OTHER, DEAD = "node1", "node2", "node9"
ALIVE = {ME, OTHER}
LONGEST_WRAPUP_MS = 30_000


def agent(**fields: object) -> Agent:
    base: dict[str, object] = {"extension": "1001", "domain": DOMAIN, "logged_in": True,
                               "reg_state": "reged", "seat_status": "idle",
                               "last_change": NOW - 60_000}
    base.update(fields)
    return Agent(**base)  # type: ignore[arg-type]


def repair(a: Agent, live: frozenset[str] | set[str] = frozenset(),
           in_wrapup: bool = False) -> Repair | None:
    asked: list[str] = []

    def channel_up(uuid: str) -> bool:
        asked.append(uuid)
        return uuid in live

    found = agent_repair(a, NOW, ME, ALIVE, channel_up, in_wrapup, LONGEST_WRAPUP_MS)
    if a.offer_uuid and (a.offer_node or ME) != ME:
        assert not asked, "another node's channels are never asked of this switch"
    return found


# ------------------------------------------------------------------ holding a call ---------
def test_ring_on_a_run_out_lease_with_a_live_leg_stays() -> None:
    """The late answer: the agent answered, its CHANNEL_ANSWER is late, Redis says ring."""
    a = agent(call_state="ring", offer_uuid="call", offer_node=ME, lease_until=NOW - 10_000,
              agent_leg="leg")
    assert repair(a, live={"leg", "call"}) is None
    assert repair(a, live={"leg"}) is None  # the caller gone, the agent's leg still up


def test_ring_on_a_run_out_lease_whose_leg_is_gone_is_released() -> None:
    a = agent(call_state="ring", offer_uuid="call", offer_node=ME, lease_until=NOW - 1,
              agent_leg="leg")
    assert repair(a, live={"call"}) == Repair(
        "release", "its lease ran out and its leg is gone", lease_expired=True, leg_gone="leg")


def test_ring_never_rung_is_released_once_its_lease_ran_out() -> None:
    """A handler that never rang (no leg named): its ring's compare-and-set fails afterwards."""
    a = agent(call_state="ring", offer_uuid="call", offer_node=ME, lease_until=NOW - 1)
    assert repair(a, live={"call"}) == Repair(
        "release", "its lease ran out before it was rung", lease_expired=True, leg_gone="")
    fresh = agent(call_state="ring", offer_uuid="call", offer_node=ME, lease_until=NOW + 5_000)
    assert repair(fresh, live={"call"}) is None


def test_a_reservation_without_a_lease_counts_as_run_out() -> None:
    a = agent(call_state="ring", offer_uuid="call", offer_node=ME, lease_until=0)
    assert repair(a, live={"call"}) is not None


def test_ring_whose_call_and_leg_are_gone_is_released_before_its_lease_ends() -> None:
    a = agent(call_state="ring", offer_uuid="call", offer_node=ME, lease_until=NOW + 5_000,
              agent_leg="leg")
    assert repair(a) == Repair("release", "its call and its leg are gone", leg_gone="leg")
    assert repair(a, live={"call"}) is None  # the handler is settling it


def test_talking_is_released_only_when_call_and_leg_are_gone() -> None:
    a = agent(call_state="talking", offer_uuid="call", offer_node=ME, agent_leg="leg")
    assert repair(a, live={"call", "leg"}) is None
    assert repair(a, live={"leg"}) is None      # transferred on: the agent still talks
    assert repair(a, live={"call"}) is None     # its handler is about to wrap up
    assert repair(a) == Repair("release", "its call and its leg are gone", leg_gone="leg")


def test_another_live_nodes_agents_are_that_nodes_and_a_dead_nodes_are_released() -> None:
    for state in ("ring", "talking"):
        live_owner = agent(call_state=state, offer_uuid="call", offer_node=OTHER,
                           lease_until=NOW - 60_000, agent_leg="leg")
        assert repair(live_owner) is None
        dead_owner = agent(call_state=state, offer_uuid="call", offer_node=DEAD,
                           lease_until=NOW + 60_000, agent_leg="leg")
        assert repair(dead_owner) == Repair("release", f"node {DEAD} is gone", leg_gone="leg")


def test_a_state_chosen_while_ringing_loses_its_stale_reservation() -> None:
    """busy pressed while the phone rang, and the handler never settled the offer: the
    reservation goes (the release keeps busy), once the switch has no leg or call for it."""
    a = agent(call_state="busy", seat_status="busy", offer_uuid="call", offer_node=ME,
              lease_until=NOW + 5_000, agent_leg="leg")
    assert repair(a, live={"leg"}) is None
    assert repair(a) == Repair("release", "its call and its leg are gone", leg_gone="leg")


# ------------------------------------------------------------------ holding no call -------
def test_a_last_leg_whose_end_was_never_told_counts_as_ended_once_gone() -> None:
    """The CHANNEL_HANGUP_COMPLETE was lost (a full event queue drops events)."""
    recent = agent(call_state="ready", leg_pending="leg", leg_node=ME,
                   last_change=NOW - RECONCILE_MS // 2)
    assert repair(recent) is None  # its event may still be on its way
    old = agent(call_state="ready", leg_pending="leg", leg_node=ME)
    assert repair(old, live={"leg"}) is None
    assert repair(old) == Repair("leg_end", "its last leg is gone but its end was never told")
    assert repair(agent(call_state="ready", leg_pending="leg", leg_node=OTHER)) is None
    assert repair(agent(call_state="ready", leg_pending="leg", leg_node=DEAD)) == \
        Repair("leg_end", f"its last leg's node {DEAD} is gone")


def test_typing_without_a_wrapup_timer_ends_after_the_longest_wrapup() -> None:
    assert repair(agent(call_state="typing"), in_wrapup=True) is None
    assert repair(agent(call_state="typing", last_change=NOW - LONGEST_WRAPUP_MS // 2)) is None
    assert repair(agent(call_state="typing")) == \
        Repair("settle", "no wrap-up timer would end its wrap-up")


def test_no_answer_nothing_settled_goes_ready() -> None:
    assert repair(agent(call_state="no_answer", last_change=NOW - 100)) is None
    assert repair(agent(call_state="no_answer")) == \
        Repair("settle", "nothing settled its missed offer")


def test_ring_or_talking_holding_no_call_goes_ready_without_a_live_leg() -> None:
    for state in ("ring", "talking"):
        assert repair(agent(call_state=state)) == \
            Repair("settle", "it holds no call and has no live leg")
        assert repair(agent(call_state=state, agent_leg="leg", leg_node=ME),
                      live={"leg"}) is None
        assert repair(agent(call_state=state, last_change=NOW - 100)) is None


def test_chosen_states_and_ready_stay() -> None:
    for state in ("ready", "busy", "rest", "no_ready", "ivr"):
        assert repair(agent(call_state=state, last_change=NOW - 3_600_000)) is None


# ------------------------------------------------------------------ at work -----------------
@pytest.fixture
def cc(redis_server: RedisServer, database: FreshDatabase) -> Iterator[CallCenter]:
    yield from center(redis_server.url, database.dsn, lease_margin_seconds=1,
                      busy_ring_interval_seconds=2)


def test_every_stuck_state_is_repaired_and_live_legs_are_left_alone(cc: CallCenter) -> None:
    """Agents written into each stuck state (as a lost event, a retried script or a crashed
    handler leave them) are repaired by the nodes' reconcilers; an agent talking on a live
    leg whose Redis state says ring on a run-out lease (a late CHANNEL_ANSWER) is not."""
    node1, node2 = cc.start_switch("node1"), cc.start_switch("node2")
    cc.group("810", group_callout_timeout=2, wrapup_seconds=0)
    stuck = {"8101": node1, "8102": node2, "8103": node1, "8104": node2, "8105": node1,
             "8106": node1}
    for ext, node in stuck.items():
        cc.agent(ext, ["810"], switch=node, ready=False)  # nobody offers them a call
    cc.agent("8109", ["810"], switch=node1,
             behaviour=Behaviour(answer_after_ms=20, hangup_after_ms=8000))
    live = cc.call(node1, "13800008109", "7810")
    wait_until(lambda: cc.get("8109").call_state == "talking", 5, "8109 talking")
    # 8109's Redis state as a late CHANNEL_ANSWER leaves it: ring, lease run out, leg live
    cc.agents.set_fields("8109", call_state="ring", lease_until=now_ms() - 60_000)
    old = now_ms() - 60_000
    set_stuck = cc.agents.set_fields
    set_stuck("8101", call_state="typing", last_change=old)               # no wrap-up timer
    set_stuck("8102", call_state="no_answer", last_change=old)            # a miss never settled
    set_stuck("8103", call_state="ring", offer_uuid=str(uuidlib.uuid4()),  # never rung, gone
              offer_node="node1", lease_until=now_ms() - 1, last_change=old)
    set_stuck("8104", call_state="ring", offer_uuid=str(uuidlib.uuid4()),  # a dead node's
              offer_node="node9", lease_until=now_ms() + 60_000, agent_leg="x",
              last_change=old)
    set_stuck("8105", call_state="ready", leg_pending=str(uuidlib.uuid4()),  # end never told
              leg_node="node1", last_change=old)
    set_stuck("8106", call_state="talking", last_change=old)              # holds no call
    for ext in stuck:
        cc.agents.set_seat(ext, "idle")

    def repair_logs() -> list[str]:
        return [m for s in (node1, node2) for _, m in list(s.log) if "reconciler: agent" in m]

    # (a reconciler logs a repair after writing it: the last agent's line may come just
    # after the agent reads free - 1 fresh-clone CI run in ~10 read the logs in between)
    wait_until(lambda: all(cc.get(e).available(now_ms()) for e in stuck)
               and all(any(f"agent {e} " in m for m in repair_logs()) for e in stuck),
               3 * RECONCILE_MS / 1000 + 2, "every stuck agent repaired and logged")
    held = cc.get("8109")
    assert held.call_state == "ring" and held.offer_uuid == live.uuid and live.up
    assert not [m for m in repair_logs() if "8109" in m], repair_logs()


def test_a_leg_whose_destroy_was_lost_is_freed_after_two_channel_audits(
        cc: CallCenter, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reconciler takes a channel its node recorded (CHANNEL_CREATE seen, CHANNEL_DESTROY
    not yet) as up without asking the switch. A record whose destroy was lost would hold its
    agent for ever: the channel audit finds it missing from the switch twice in a row,
    forgets it, and the next pass (asking the switch, which says gone) frees the agent; an
    agent talking on a live, recorded leg is left alone all along."""
    import fsapps.switch.runtime as runtime

    monkeypatch.setattr(runtime, "CHANNEL_AUDIT_MS", 400)
    node1 = cc.start_switch("node1")
    cc.group("820", group_callout_timeout=2, wrapup_seconds=0)
    cc.agent("8201", ["820"], switch=node1, ready=False)
    cc.agent("8209", ["820"], switch=node1,
             behaviour=Behaviour(answer_after_ms=20, hangup_after_ms=8000))
    live = cc.call(node1, "13800008209", "7820")
    wait_until(lambda: cc.get("8209").call_state == "talking", 5, "8209 talking")
    lost = str(uuidlib.uuid4())  # a leg of node1 whose CHANNEL_DESTROY never came
    Nodes(cc.ctx).channel_created("node1", lost)
    cc.agents.set_fields("8201", call_state="talking", agent_leg=lost, leg_node="node1",
                         last_change=now_ms() - 60_000)
    cc.agents.set_seat("8201", "idle")
    wait_until(lambda: cc.get("8201").available(now_ms()), 3 * RECONCILE_MS / 1000 + 3,
               "8201 freed once its lost leg is forgotten")
    assert lost not in Nodes(cc.ctx).channel_set("node1")
    assert any("without their CHANNEL_DESTROY" in m for _, m in list(node1.log))
    held = cc.get("8209")
    assert held.call_state == "talking" and live.up


# ------------------------------------------------------------------ stalled heartbeats ------
def test_a_node_is_gone_only_when_silent_while_the_judge_kept_beating(
        cc: CallCenter) -> None:
    """Nodes.alive_as_seen_by: a node whose last heartbeat is DEAD_AFTER_MS older than the
    judging node's own is gone; when the judge's heartbeats stalled as long (its process or
    Redis starved of CPU), the others are not, whatever the clock says."""
    nodes = Nodes(cc.ctx)
    key = cc.ctx.node_keys.nodes()
    now = now_ms()
    cc.ctx.redis.zadd(key, {"me": now - 6_000, "other": now - 6_500, "dead": now - 20_000})
    assert nodes.alive() == set()  # by the clock alone, everyone is gone
    assert nodes.alive_as_seen_by("me") == {"me", "other"}
    cc.ctx.redis.zadd(key, {"me": now - 200})  # the judge beats again, the other does not
    assert nodes.alive_as_seen_by("me") == {"me"}
    assert nodes.alive_as_seen_by("never-beat") == nodes.alive() == {"me"}


def test_stalled_heartbeats_do_not_free_another_nodes_talking_agent(
        cc: CallCenter, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every node's heartbeats stop for longer than DEAD_AFTER_MS (a starved Redis or
    process: the stress run of issue 15 that offered 9 agents a second call took 28 s instead
    of 9) while node2's agent talks. node1's reconciler, still running, must not take node2
    for gone and free that agent: it was silent itself. Once node1 beats again and node2
    stays silent, node2 is gone."""
    cc.start_switch("node1")  # (its reconciler is the judge)
    node2 = cc.start_switch("node2")
    cc.group("820", group_callout_timeout=5, wrapup_seconds=0)
    cc.agent("8201", ["820"], switch=node2,
             behaviour=Behaviour(answer_after_ms=20, hangup_after_ms=60_000))
    call = cc.call(node2, "13800008201", "7820")
    wait_until(lambda: cc.get("8201").call_state == "talking", 5, "8201 talking")
    silent: set[str] = {"node1", "node2"}
    beat = Nodes.heartbeat

    def heartbeat(self: Nodes, node: str, *args: object, **kwargs: object) -> None:
        if node not in silent:
            beat(self, node, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Nodes, "heartbeat", heartbeat)
    time.sleep((DEAD_AFTER_MS + 2 * RECONCILE_MS) / 1000)  # node1's reconciler ran meanwhile
    held = cc.get("8201")
    assert (held.call_state, held.offer_uuid) == ("talking", call.uuid) and call.up
    silent.discard("node1")  # node1 beats again; node2 stays silent: gone after DEAD_AFTER_MS
    wait_until(lambda: cc.get("8201").offer_uuid != call.uuid,
               (DEAD_AFTER_MS + 3 * RECONCILE_MS) / 1000 + 2, "node2's agent released")
