"""Registrations held by a dead node run out at their own expiry.

A phone registered on a node that dies cannot be reached, and nothing renews its registration
there; FreeSWITCH itself would forget it at its expiry (sofia::expire). The runtime's
reconciler on a live node does the same for the dead node: once the registration's expiry (the
REGISTER's expires, here sip-force-expires) has passed, the agent is unreg, its live state
(``registrations``, ``cti_userinfo@<domain>``) goes and a sofia::expire is published. A phone
that registered on another node meanwhile stays reged; a node that merely stalls and beats
again before the expiry loses nothing.

Two fake switches share one Redis. The node-death and reconcile periods are shortened for the
test (module settings the runtime reads on each tick); every wait is on a condition.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fakefs import Behaviour, Switch
from fakefs.scenario import wait_until
from fsapps.domain import nodes
from fsapps.domain.nodes import Nodes
from fsapps.store.keys import seed_userinfo_hash
from fsapps.switch import runtime
from tests.acd_support import DOMAIN, settings_for
from tools.callcenter import SimulatedCallCenter, reset_database
from tools.servers import FreshDatabase, RedisClusterServer, RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads")

REG_LIST = "test_registration_list"
DEAD_AFTER_MS = 2500
RECONCILE_MS = 500
# a node counts as dead, then a reconcile round or two, plus room for a loaded machine
DETECT_S = (DEAD_AFTER_MS + 2 * RECONCILE_MS) / 1000 + 5


def _center(url: str, dsn: str, cluster: bool = False) -> Iterator[SimulatedCallCenter]:
    reset_database(dsn)
    settings = settings_for(url, dsn, cluster=cluster, lease_margin_seconds=1)
    # registration events also RPUSHed to a list, to see the expiry published
    settings = dataclasses.replace(settings, directory=dataclasses.replace(
        settings.directory, registration_list=REG_LIST))
    center = SimulatedCallCenter(settings)
    try:
        yield center
    finally:
        center.close()


@pytest.fixture
def cc(redis_server: RedisServer, database: FreshDatabase,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedCallCenter]:
    monkeypatch.setattr(nodes, "DEAD_AFTER_MS", DEAD_AFTER_MS)
    monkeypatch.setattr(runtime, "RECONCILE_MS", RECONCILE_MS)
    yield from _center(redis_server.url, database.dsn)


@pytest.fixture(params=["redis", "cluster"])
def any_cc(request: pytest.FixtureRequest,
           database: FreshDatabase) -> Iterator[SimulatedCallCenter]:
    """No switches: on a plain Redis, then on a 3-master Redis Cluster (each script's keys in
    one slot)."""
    if request.param == "cluster":
        cluster: RedisClusterServer = request.getfixturevalue("redis_cluster")
        cluster.flushall()
        yield from _center(cluster.url, database.dsn, cluster=True)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        yield from _center(server.url, database.dsn)


def phone(cc: SimulatedCallCenter, switch: Switch, extension: str, expires: int | None,
          groups: list[str]) -> None:
    """An agent whose phone registers on ``switch``, for ``expires`` seconds (the user's
    sip-force-expires on that switch; None: the phone's own 3600)."""
    for sw in cc.switches:
        variables = {"sip-force-expires": str(expires)} if sw is switch and expires else {}
        sw.add_user(extension, DOMAIN, password="1234", variables=variables)
    cc.agent(extension, groups, switch=switch)


def registration(cc: SimulatedCallCenter, extension: str) -> dict[str, Any] | None:
    text = cc.ctx.redis.hget("registrations", extension)
    return json.loads(text) if text else None


def userinfo(cc: SimulatedCallCenter, extension: str) -> dict[str, Any] | None:
    text = cc.ctx.redis.hget(seed_userinfo_hash(DOMAIN), extension)
    return json.loads(text) if text else None


def published(cc: SimulatedCallCenter) -> list[dict[str, Any]]:
    return [json.loads(t) for t in cc.ctx.redis.lrange(REG_LIST, 0, -1)]


def offers_to(switch: Switch, extension: str) -> list[str]:
    return [e.headers.get("Unique-ID", "") for e in list(switch.bus.history)
            if e.name == "CHANNEL_CREATE"
            and e.headers.get("variable_fsapps_acd_agent") == extension]


# The killed node's command thread ends on SystemExit, which pytest reports for any thread.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_dead_nodes_registration_runs_out(cc: SimulatedCallCenter) -> None:
    """node2 dies. 7101 (registered there for 2 s) is unreg once node2 is dead and the 2 s are
    over, its live state is gone, a sofia::expire is published, and it is not offered calls.
    7102 registered there too but re-registered on node1: stays reged on node1. 7103's
    registration on node2 has an hour left: still trusted."""
    node1, node2 = cc.start_switch("node1"), cc.start_switch("node2")
    cc.group("710", group_callout_timeout=2, wrapup_seconds=0)
    cc.group("711", group_callout_timeout=2, wrapup_seconds=0)
    phone(cc, node2, "7101", 2, ["711"])
    phone(cc, node2, "7102", 2, ["710"])
    phone(cc, node2, "7103", None, [])
    assert node1.register("7102", DOMAIN, password="1234",
                          behaviour=Behaviour(answer_after_ms=50, hangup_after_ms=100)).ok
    wait_until(lambda: cc.get("7102").reg_node == "node1", 5, "7102 registered on node1")
    wait_until(lambda: (userinfo(cc, "7102") or {}).get("register", {}).get("node") == "node1",
               5, "7102's live state names node1")
    before = cc.get("7101")
    assert (before.reg_state, before.reg_node) == ("reged", "node2")
    assert before.reg_until > 0
    call_id = registration(cc, "7101")["call-id"]  # type: ignore[index]
    assert userinfo(cc, "7101")["register"]["node"] == "node2"  # type: ignore[index]

    node2.kill()
    killed_at = time.time()
    wait_until(lambda: cc.get("7101").reg_state == "unreg",
               DETECT_S + max(0.0, before.reg_until / 1000 - time.time()),
               "7101 unregistered after node2 died and its registration ran out")
    print(f"\n7101 unreg {time.time() - killed_at:.2f}s after node2 died "
          f"({time.time() - before.reg_until / 1000:.2f}s after its registration ran out)")
    dead = cc.get("7101")
    assert not dead.reg_node and not dead.reg_until
    # the live state follows the agent hash (the same reconciler, right after): it removes the
    # registration, then the userinfo entry, then publishes the sofia::expire - so wait for
    # the publish, the last step, before looking at either record
    wait_until(lambda: any(e.get("Event-Subclass") == "sofia::expire" for e in published(cc)),
               2, "7101's sofia::expire published")
    assert registration(cc, "7101") is None
    assert userinfo(cc, "7101") is None  # neither a registration nor a call left
    expired = [e for e in published(cc) if e.get("Event-Subclass") == "sofia::expire"]
    assert [(e["user"], e["host"], e["fsapps-expired-node"]) for e in expired] == \
        [("7101", DOMAIN, "node2")]
    assert expired[0]["FreeSWITCH-Switchname"] == "node2"
    assert expired[0]["call-id"] == call_id
    assert any("agent 7101's registration on node node2 (gone) ran out" in m
               for _, m in list(node1.log))

    # re-registered elsewhere: untouched, live state still node1's
    moved = cc.get("7102")
    assert (moved.reg_state, moved.reg_node) == ("reged", "node1")
    assert registration(cc, "7102")["FreeSWITCH-Switchname"] == "node1"  # type: ignore[index]
    assert userinfo(cc, "7102")["register"]["node"] == "node1"  # type: ignore[index]
    # an hour left on the dead node: trusted until then
    assert (cc.get("7103").reg_state, cc.get("7103").reg_node) == ("reged", "node2")
    assert registration(cc, "7103") is not None

    # 7101 is not offered calls: node1's caller for its group waits; 7102's group is served.
    waiting = cc.call(node1, "13800007101", "7711", abandon_after_ms=1500)
    served = cc.call(node1, "13800007102", "7710")
    wait_until(lambda: "bridged" in served.times, 5, "7102 takes node1's caller")
    wait_until(lambda: waiting.done.is_set(), 5, "the caller for 7101's group gave up")
    assert not offers_to(node1, "7101")
    assert cc.get("7101").call_state == "ready"
    wait_until(lambda: served.done.is_set(), 5, "7102's call ended")


def test_stalled_node_loses_nothing(cc: SimulatedCallCenter,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """node2 stops beating long enough for node1 to count it dead, then beats again. 7201's
    registration there (30 s) had not run out: still reged with its live state. 7202's (1 s)
    had, so node1 unregistered it (which shows node1's reconciler saw node2 dead); its phone's
    next REGISTER on node2 makes it reged again."""
    stalled = threading.Event()
    beat = Nodes.heartbeat

    def heartbeat(self: Nodes, node: str, *args: Any, **kwargs: Any) -> None:
        if node == "node2" and stalled.is_set():
            return  # node2's runtime is stuck: no heartbeat
        beat(self, node, *args, **kwargs)

    monkeypatch.setattr(Nodes, "heartbeat", heartbeat)
    node1, node2 = cc.start_switch("node1"), cc.start_switch("node2")
    cc.group("720", group_callout_timeout=2, wrapup_seconds=0)
    phone(cc, node2, "7201", 30, ["720"])
    phone(cc, node2, "7202", 1, ["720"])
    info = userinfo(cc, "7201")

    stalled.set()
    wait_until(lambda: "node2" not in Nodes(cc.ctx).alive(), DEAD_AFTER_MS / 1000 + 3,
               "node2 counted dead")
    wait_until(lambda: cc.get("7202").reg_state == "unreg", DETECT_S, "7202's 1 s ran out")
    # node1's reconciler logs, then removes the live state and publishes the sofia::expire,
    # after its script made the agent unreg: wait for the publish, its last step, before
    # looking for the line (read at once, it could be missing yet)
    wait_until(lambda: any(e.get("Event-Subclass") == "sofia::expire" for e in published(cc)),
               2, "7202's sofia::expire published")
    assert any("agent 7202's registration on node node2 (gone) ran out" in m
               for _, m in list(node1.log))
    kept = cc.get("7201")
    assert (kept.reg_state, kept.reg_node) == ("reged", "node2")
    stalled.clear()
    wait_until(lambda: "node2" in Nodes(cc.ctx).alive(), 5, "node2 beats again")

    assert (cc.get("7201").reg_state, cc.get("7201").reg_node) == ("reged", "node2")
    assert registration(cc, "7201") is not None
    assert userinfo(cc, "7201") == info
    assert [e["user"] for e in published(cc) if e.get("Event-Subclass") == "sofia::expire"] \
        == ["7202"]
    assert node2.register("7202", DOMAIN, password="1234").ok
    wait_until(lambda: cc.get("7202").reg_state == "reged", 5, "7202 registered again")
    assert registration(cc, "7202") is not None


def test_expiry_script_races(any_cc: SimulatedCallCenter) -> None:
    """agent_reg_expire.lua and the live-state compare-and-set, without switches: only the
    registration the dead node recorded, only once it ran out, only once; a newer one wins."""
    from fsapps.domain.agents import Agents
    from fsapps.switch.livestate import LiveState

    cc = any_cc

    agents = Agents(cc.ctx, DOMAIN)
    r = cc.ctx.redis
    for ext in ("7301", "7302", "7303", "7304"):
        agents.ensure(ext)
    agents.registered("7301", "dead", "127.0.0.9", 2, "1000", now=10_000)   # until 12 000
    agents.registered("7302", "dead", "127.0.0.9", 2, "1000", now=10_000)
    agents.registered("7302", "node1", "127.0.0.11", 3600, "2000", now=11_000)  # moved on
    agents.registered("7303", "dead", "127.0.0.9", 0, "1000")  # no expiry known: kept
    agents.set_fields("7304", reg_state="reged", reg_node="dead")  # recorded before reg_until

    assert agents.expire_registration("7301", "dead", 11_999) is None  # not run out yet
    assert agents.expire_registration("7301", "dead", 12_000) == "1000"
    assert agents.expire_registration("7301", "dead", 12_001) is None  # a second reconciler
    assert agents.expire_registration("7302", "dead", 99_000_000) is None
    assert agents.expire_registration("7303", "dead", 99_000_000) is None
    assert agents.expire_registration("7304", "dead", 99_000_000) is None
    assert [agents.get(e).reg_state for e in ("7301", "7302", "7303", "7304")] == \
        ["unreg", "reged", "reged", "reged"]  # type: ignore[union-attr]

    # live state: what a newer registration wrote is kept, the dead node's own goes
    live = LiveState(cc.ctx, "node1")
    newer = {"Event-Date-Timestamp": "2000", "FreeSWITCH-Switchname": "node1"}
    r.hset("registrations", "7302", json.dumps(newer))
    r.hset(seed_userinfo_hash(DOMAIN), "7302",
           json.dumps({"register": {"node": "node1", "Timestamp": "2000"}, "calls": []}))
    live.expire_registration(DOMAIN, "7302", "dead", "1000", 12_000)
    assert registration(cc, "7302") == newer
    assert userinfo(cc, "7302")["register"]["node"] == "node1"  # type: ignore[index]
    call = {"Unique-ID": "u1"}
    r.hset("registrations", "7301", json.dumps({"Event-Date-Timestamp": "1000"}))
    r.hset(seed_userinfo_hash(DOMAIN), "7301",
           json.dumps({"register": {"node": "dead", "Timestamp": "1000"}, "calls": [call]}))
    live.expire_registration(DOMAIN, "7301", "dead", "1000", 12_000)
    assert registration(cc, "7301") is None
    assert userinfo(cc, "7301") == {"calls": [call]}  # its call stays
    assert [(e["user"], e["expires"]) for e in published(cc)] == [("7302", "12"), ("7301", "12")]
