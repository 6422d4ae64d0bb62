"""Queue statistics (``GET /api/stats``, ``GET /metrics``) on a live call center: a fake
switch running fsapps' dialplan and runtime, real Redis and PostgreSQL, a real CTI server.

One group, service level 2 s: a call answered at once, one answered after ~2.5 s of ringing
(outside the service level), one abandoned after ~1 s in the queue; each figure is checked in
/api/stats, the same in /metrics (parsed as Prometheus text), and both refuse a request
without a token.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cti_support import API_TOKEN, CtiStack, cti_stack
from prometheus_client.parser import text_string_to_metric_families

from fakefs.channel import Behaviour
from fakefs.scenario import wait_until
from fakefs.switch import Switch
from fsapps import metrics
from fsapps.config import Secret
from fsapps.context import now_ms
from fsapps.domain import stats
from fsapps.domain.stats import QueueStats, live_figures, window_figures
from fsapps.switch import acd

G = "110"
SCRAPER = "scrape-0123456789"


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with cti_stack(redis_server.url, database.dsn, group=None, switches=2,
                   metrics_token=Secret(SCRAPER)) as s:
        s.center.group(G, wrapup_seconds=0, service_level_seconds=2,
                       group_callout_timeout=30)
        s.center.group("120")  # no calls: its figures are zeros and nulls
        yield s


def api_stats(stack: CtiStack, **params: str) -> dict[str, Any]:
    reply = stack.server.client("supervisor").get("/api/stats", params=params)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def wallboard(stack: CtiStack) -> dict[str, Any]:
    http = stack.server.anonymous()
    reply = http.post("/login", data={"username": "supervisor", "password": "supervisor",
                                      "namespace": stack.center.domain})
    assert reply.status_code == 200, reply.text
    http.headers["sessionId"] = reply.json()["sessionId"]
    reply = http.get("/api/csta/wallboard", params={"domain": stack.center.domain})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_answered_slow_and_abandoned_calls_in_each_figure(stack: CtiStack) -> None:
    center, switch, ctx = stack.center, stack.switch, stack.ctx
    domain = center.domain
    center.agent("1001", [G], behaviour=Behaviour(answer_after_ms=50))
    center.agent("1002", [G], behaviour=Behaviour(answer_after_ms=2500), ready=False)
    # answered at once
    center.call(switch, "13800000001", f"7{G}", hangup_after_bridge_ms=400)
    wait_until(lambda: center.get("1001").call_state == "talking", 10, "1001 talking")
    live = api_stats(stack, group=G)["groups"][0]["live"]
    assert (live["agentsLoggedIn"], live["agentsTalking"], live["occupancy"]) == (2, 1, 0.5)
    wait_until(lambda: center.get("1001").call_state == "ready" and not switch.channels, 10,
               "first call over")
    # answered after ~2.5 s of ringing: outside the 2 s service level
    acd.set_busy(ctx, domain, "1001")
    acd.set_ready(ctx, domain, "1002")
    center.call(switch, "13800000002", f"7{G}", hangup_after_bridge_ms=300)
    wait_until(lambda: center.get("1002").call_state == "talking", 10, "1002 talking")
    wait_until(lambda: not switch.channels, 10, "second call over")
    # abandoned after ~1.2 s in the queue: nobody is ready
    acd.set_busy(ctx, domain, "1002")
    waiting = center.call(switch, "13800000003", f"7{G}", abandon_after_ms=1200)
    wait_until(lambda: len(center.queue.waiting(G)) == 1, 5, "a caller waiting")
    live = api_stats(stack)["groups"][0]["live"]
    assert live["waiting"] == 1 and live["agentsReady"] == 0
    wait_until(lambda: not switch.channels, 10, "the caller gone")
    assert waiting.hangup_cause

    def figures() -> dict[str, Any]:
        return dict(api_stats(stack, group=G)["groups"][0])

    wait_until(lambda: figures()["15m"]["abandoned"] == 1, 5, "the abandoned call counted")
    row = figures()
    assert row["serviceLevelSeconds"] == 2 and row["name"] == f"group {G}"
    for window in ("15m", "60m"):
        block = row[window]
        assert (block["offered"], block["answered"], block["abandoned"],
                block["timedOut"]) == (3, 2, 1, 0), block
        assert block["answeredInServiceLevel"] == 1
        assert block["serviceLevel"] == pytest.approx(1 / 3, abs=1e-3)
        # (fast ~0.1 s + slow ~2.6 s) / 2
        assert 1.0 <= block["asaSeconds"] <= 2.5, block
        assert 2 <= block["longestWaitSeconds"] <= 3, block
    assert row["live"]["waiting"] == 0 and row["live"]["longestWaitSeconds"] == 0
    assert row["total"] == {"offered": 3, "answered": 2, "abandoned": 1, "timedOut": 0}
    other = api_stats(stack, group="120")["groups"][0]
    assert other["15m"]["offered"] == 0 and other["15m"]["serviceLevel"] is None
    # the wallboard's group rows carry the last 15 minutes
    board = wallboard(stack)
    shown = {g["group"]: g for g in board["groups"]}
    assert shown[G]["serviceLevel"] == row["15m"]["serviceLevel"]
    assert (shown[G]["asaSeconds"], shown[G]["abandoned"], shown[G]["serviceLevelSeconds"]) \
        == (row["15m"]["asaSeconds"], 1, 2)
    assert shown["120"]["serviceLevel"] is None and shown["120"]["abandoned"] == 0

    # the same in /metrics, with a scraper's bearer token
    scraper = requests.get(stack.server.url + "/metrics", timeout=10,
                           headers={"Authorization": f"Bearer {SCRAPER}"})
    assert scraper.status_code == 200, scraper.text
    assert scraper.headers["Content-Type"].startswith("text/plain")
    found = samples(scraper.text)
    group = (("domain", domain), ("group", G))
    assert found[("fsapps_queue_calls_offered_total", group)] == 3
    assert found[("fsapps_queue_calls_answered_total", group)] == 2
    assert found[("fsapps_queue_calls_abandoned_total", group)] == 1
    assert found[("fsapps_queue_waiting_calls", group)] == 0
    assert found[("fsapps_queue_agents_logged_in", group)] == 2
    assert found[("fsapps_queue_service_level_ratio",
                  tuple(sorted((*group, ("window", "15m")))))] == pytest.approx(1 / 3, abs=1e-3)
    # the node's runtime counters, from its heartbeat
    node = (("node", switch.name),)

    def routed() -> float:
        page = requests.get(stack.server.url + "/metrics", timeout=10,
                            headers={"Authorization": f"Nway {API_TOKEN}"})
        return samples(page.text).get(("fsapps_node_calls_routed_total", node), 0)

    wait_until(lambda: routed() >= 3, 5, "the node's calls routed in /metrics")
    found = samples(requests.get(stack.server.url + "/metrics", timeout=10, headers={
        "Authorization": f"Bearer {stack.server.login('agent')}"}).text)
    assert found[("fsapps_node_decisions_total", (("kind", "route"), *node))] >= 1
    assert ("fsapps_node_redis_errors_total", node) in found
    # the decision latency histogram (answered -> first agent rung), in seconds
    decided = found[("fsapps_node_decision_seconds_count", node)]
    assert decided >= 2  # (counters are the process's: earlier tests' calls count too)
    assert found[("fsapps_node_decision_seconds_bucket", (("le", "+Inf"), *node))] == decided
    assert found[("fsapps_node_decision_seconds_bucket", (("le", "30"), *node))] == decided


def test_refused_without_a_valid_token(stack: CtiStack) -> None:
    url = stack.server.url
    for headers in ({}, {"Authorization": "Bearer wrong-token"},
                    {"Authorization": f"Basic {SCRAPER}"}):
        assert requests.get(url + "/metrics", headers=headers, timeout=10).status_code == 401
    assert requests.get(url + "/api/stats", timeout=10).status_code == 401
    # the scraper's token is for /metrics only
    assert requests.get(url + "/api/stats", timeout=10, headers={
        "Authorization": f"Bearer {SCRAPER}"}).status_code == 401
    agent = stack.server.client("agent")
    assert agent.get("/api/stats", params={"group": "999"}).status_code == 404
    assert agent.get("/api/stats", params={"domain": "nowhere.test"}).status_code == 404
    assert agent.get("/api/stats", params={"group": "1{0}"}).status_code == 422


# ------------------------------------------------------------------------ pure figures -----
def test_decision_latency_buckets_and_quantiles() -> None:
    node = "test-node-decisions"  # a node of its own: nothing else counts there
    for ms in (0.4, 3, 3, 4, 7, 9, 12, 40_000):
        metrics.observe("decision_ms", ms, node)
    counts = metrics.counts(node)
    assert "decision_ms_count" not in metrics.counts("another-node")
    assert counts["decision_ms_count"] == 8
    assert counts["decision_ms_le_1"] == 1 and counts["decision_ms_le_5"] == 3
    assert counts["decision_ms_le_10"] == 2 and counts["decision_ms_le_20"] == 1
    assert counts["decision_ms_le_inf"] == 1
    assert counts["decision_ms_sum_us"] == 400 + 3000 + 3000 + 4000 + 7000 + 9000 + 12000 \
        + 40_000_000
    buckets = metrics.histogram(counts, "decision_ms")
    assert metrics.quantile(buckets, 0.5) == 5
    assert metrics.quantile(buckets, 0.75) == 10
    assert metrics.quantile(buckets, 0.99) == float("inf")
    assert metrics.quantile(metrics.histogram({}, "decision_ms"), 0.5) is None


def test_window_figures_from_minute_hashes() -> None:
    minute_a = {"offered": "2", "answered": "1", "answer_wait_ms": "19500", "aw:19": "1"}
    minute_b = {"offered": "3", "answered": "1", "answer_wait_ms": "20500", "aw:20": "1",
                "abandoned": "1", "uw:45": "1", "timed_out": "1", "uw:7": "1",
                "occ_agents": "8", "occ_talking": "2"}
    block = window_figures([minute_a, minute_b], 20)
    assert block == {"offered": 5, "answered": 2, "abandoned": 1, "timedOut": 1,
                     "answeredInServiceLevel": 1, "serviceLevel": 0.25, "asaSeconds": 20.0,
                     "longestWaitSeconds": 45, "occupancy": 0.25}
    assert window_figures([], 20)["serviceLevel"] is None
    assert window_figures([minute_a], 20)["serviceLevel"] == 1.0


def test_live_figures_count_members_only() -> None:
    assert live_figures([], [], {}, 0) == {
        "waiting": 0, "longestWaitSeconds": 0, "agentsLoggedIn": 0, "agentsReady": 0,
        "agentsTalking": 0, "occupancy": None}


def test_minutes_expire_and_totals_stay(stack: CtiStack) -> None:
    ctx = stack.ctx
    q = QueueStats(ctx, stack.center.domain)
    at = now_ms() - 3 * 3600 * 1000  # long before the windows
    q.record("120", stats.ANSWERED, at, 1500)
    key = ctx.keys(stack.center.domain).stats("120", stats.minute_of(at))
    assert 0 < ctx.redis.pttl(key) <= stats.BUCKET_TTL_MS
    row = q.groups(["120"], now_ms())[0]
    assert row["60m"]["answered"] == 0 and row["total"]["answered"] == 1


def test_each_node_counts_only_its_own_calls(stack: CtiStack) -> None:
    """A real switch is one node per process; fakefs runs both nodes in one (the demo
    showed each node the other's calls in /metrics). A call routed on the second node counts
    there only, in the counters its heartbeat publishes and in /metrics."""
    first, second = stack.switches
    stack.center.group("130")  # nobody logged in: the caller waits, then hangs up
    before = {n.name: metrics.counts(n.name).get("calls_routed", 0) for n in (first, second)}
    stack.center.call(second, "13800000009", "7130", abandon_after_ms=300)
    wait_until(lambda: not second.channels, 10, "the caller gone")
    assert metrics.counts(second.name).get("calls_routed", 0) == before[second.name] + 1
    assert metrics.counts(first.name).get("calls_routed", 0) == before[first.name]

    def routed(node: Switch) -> float:
        page = requests.get(stack.server.url + "/metrics", timeout=10,
                            headers={"Authorization": f"Bearer {SCRAPER}"})
        return samples(page.text).get(("fsapps_node_calls_routed_total",
                                       (("node", node.name),)), -1)

    wait_until(lambda: routed(second) == before[second.name] + 1, 10,
               "the second node's call in /metrics")
    assert routed(first) in (before[first.name], -1)
