"""Queue statistics on a real switch: two trunk callers (SIPp) into a group of fs1, one
answered by an agent's SIPp phone, one hanging up while it waits; then ``GET /api/stats`` and
``GET /metrics`` of ``fsapps cti serve`` (the CTI server of test_cti) show each.
"""

from __future__ import annotations

from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from switch.conftest import DOMAIN, Stack, api, wait_for
from switch.test_cti import CtiServer, agent, cti, queue_call  # noqa: F401 (fixtures)
from tools.realswitch import RealSwitch


def stats_of(server: CtiServer, session: requests.Session, number: str) -> dict[str, Any]:
    reply = session.get(server.url + "/api/stats", params={"group": number}, timeout=10)
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["groups"][0])


def test_answered_and_abandoned_calls_in_stats_and_metrics(
        fs1: RealSwitch, phones: Stack, group: str, cti: CtiServer) -> None:  # noqa: F811
    ext = agent(fs1, phones, group)
    answered = queue_call(fs1, phones, group, ext, "13900006001", talk_ms=1500)
    assert answered.caller.wait(30) == 0, answered.caller.errors()
    wait_for(lambda: phones.redis.hget(f"fsapps:{{{DOMAIN}}}:agent:{ext}", "call_state")
             != "talking", 10, f"{ext} off the call")
    # nobody free: the second caller waits, and hangs up after ~2 s
    api(fs1, f"nway_busy {ext}")
    abandoner = phones.caller(fs1, f"7{group}", "13900006002", talk_ms=2000)
    assert abandoner.wait(30) == 0, abandoner.errors()

    admin = cti.client("admin")
    wait_for(lambda: stats_of(cti, admin, group)["15m"]["abandoned"] == 1, 10,
             "the abandoned call in /api/stats")
    row = stats_of(cti, admin, group)
    block = row["15m"]
    assert (block["offered"], block["answered"], block["abandoned"]) == (2, 1, 1), block
    assert row["serviceLevelSeconds"] == 20 and block["serviceLevel"] == 0.5
    assert block["asaSeconds"] is not None and 0 < block["asaSeconds"] < 20
    assert 1 <= block["longestWaitSeconds"] <= 4, block
    assert row["live"]["waiting"] == 0 and row["live"]["agentsLoggedIn"] == 1

    page = admin.get(cti.url + "/metrics", timeout=10)
    assert page.status_code == 200, page.text
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for family in text_string_to_metric_families(page.text) for s in family.samples}
    labels = (("domain", DOMAIN), ("group", group))
    assert found[("fsapps_queue_calls_offered_total", labels)] == 2
    assert found[("fsapps_queue_calls_answered_total", labels)] == 1
    assert found[("fsapps_queue_calls_abandoned_total", labels)] == 1
    assert found[("fsapps_queue_agents_logged_in", labels)] == 1
    # fs1's runtime counters, from its heartbeat (every second)
    assert found.get(("fsapps_node_calls_routed_total", (("node", fs1.name),)), 0) >= 2
    assert requests.get(cti.url + "/metrics", timeout=10).status_code == 401
