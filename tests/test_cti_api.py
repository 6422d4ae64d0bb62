"""Seed 001's REST API over real HTTP against a CTI server wired to a fake switch (running the
project's dialplan and fsapps.runtime), a real Redis and a real PostgreSQL: each endpoint's
action happens on the switch, and the agent state and pub/sub events follow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from cti_support import GROUP, CtiStack, cti_stack
from pubsub_capture import Subscriber

from fakefs import Behaviour, Channel
from fakefs.scenario import wait_until
from fsapps.domain.agents import Agents
from fsapps.switch import acd

AGENT, AGENT2, SUPERVISOR = "1001", "1002", "1900"


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any, no_leaked_switch_threads: None) -> Iterator[CtiStack]:
    with cti_stack(redis_server.url, database.dsn) as s:
        s.center.group("120")
        s.switch.add_user(SUPERVISOR, s.center.domain, password="1234")
        assert s.switch.register(SUPERVISOR, s.center.domain, password="1234",
                                 behaviour=Behaviour(answer_after_ms=30)).ok
        yield s


@pytest.fixture
def cc(stack: CtiStack) -> Iterator[CtiStack]:
    """Agents 1001 and 1002 registered, logged into 110, ready; no call left afterwards."""
    for ext in (AGENT, AGENT2):
        stack.center.agent(ext, [GROUP])
    yield stack
    switch = stack.switch
    for channel in list(switch.channels.values()):
        switch.hangup(channel, "NORMAL_CLEARING")
    wait_until(lambda: not switch.channels, 5, "every call over")
    wait_until(lambda: all(stack.center.get(e).call_state not in ("ring", "talking")
                           for e in (AGENT, AGENT2)), 5, "agents off their calls")


@pytest.fixture
def bus(redis_server: Any) -> Iterator[Subscriber]:
    sub = Subscriber(redis_server.url)
    yield sub
    sub.close()


def agent(cc: CtiStack, ext: str) -> Any:
    return Agents(cc.ctx, cc.center.domain).get(ext)


def queue_call(cc: CtiStack, caller: str = "13800000001") -> tuple[Channel, Channel]:
    """A customer calls group 110 and an agent answers: (customer leg, agent leg)."""
    customer = cc.center.call(cc.switch, caller, f"7{GROUP}")
    agent_leg = wait_until(lambda: customer.peer and cc.switch.channels.get(customer.peer)
                           and cc.switch.channels[customer.peer].answered
                           and cc.switch.channels[customer.peer], 5, "an agent answered")
    return customer, agent_leg


def talking(cc: CtiStack, ext: str) -> None:
    wait_until(lambda: agent(cc, ext).call_state == "talking", 5, f"{ext} talking")
    # the runtime recorded the agent's channel (cti_userinfo) for the node commands
    wait_until(lambda: cc.ctx.redis.hget(f"cti_userinfo@{cc.center.domain}", ext), 5,
               f"{ext} live state")


def event(cc: CtiStack, name: str, channel: Channel) -> Any:
    return cc.switch.bus.wait_for(lambda e: e.name == name
                                  and e.headers.get("Unique-ID") == channel.uuid, 5.0)


def ok(reply: Any) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


# ------------------------------------------------------------------------ agents ----------
def test_agent_up_down_ready_busy(cc: CtiStack, bus: Subscriber) -> None:
    admin = cc.server.client("admin")
    assert ok(admin.post("/api/agent_up", json={"Extension": AGENT, "Groups": "110,120"}))[
        "message"] == f"agent {AGENT} logged into 110,120"
    a = agent(cc, AGENT)
    assert (a.logged_in, a.groups, a.seat_status, a.call_state) == (True, ("110", "120"),
                                                                   "idle", "ready")
    ok(admin.post("/api/agent_busy", json={"Extension": AGENT}))
    assert (agent(cc, AGENT).seat_status, agent(cc, AGENT).call_state) == ("busy", "busy")
    bus.statuses_end(AGENT, ["busy"])
    ok(admin.post("/api/agent_ready", json={"Extension": AGENT}))
    assert (agent(cc, AGENT).seat_status, agent(cc, AGENT).call_state) == ("idle", "ready")
    bus.statuses_end(AGENT, ["ready"])
    reply = ok(admin.post("/api/agent_down", json={"Extension": AGENT}))
    assert reply["message"] == f"agent {AGENT} logged out (was in 110,120)"
    assert (agent(cc, AGENT).logged_in, agent(cc, AGENT).groups) == (False, ())


def test_agent_up_refuses_unknown_group_and_changes_nothing(cc: CtiStack) -> None:
    admin = cc.server.client("admin")
    reply = admin.post("/api/agent_up", json={"Extension": AGENT, "Groups": "110,999"})
    assert reply.status_code == 404
    assert reply.json() == {"error": "unknown group(s) '999'", "field": "Groups"}
    assert agent(cc, AGENT).groups == ("110",)


def test_agent_ready_offers_a_waiting_caller(cc: CtiStack) -> None:
    admin = cc.server.client("admin")
    for ext in (AGENT, AGENT2):
        ok(admin.post("/api/agent_busy", json={"Extension": ext}))
    customer = cc.center.call(cc.switch, "13800000002", f"7{GROUP}")
    rows = wait_until(lambda: admin.get("/api/queues").json(), 5, "the caller queued")
    assert rows == [{"Uuid": customer.uuid, "Number": "13800000002",
                     "RealCallinNumber": "13800000002", "Group": GROUP, "Level": "normal",
                     "CallinTime": rows[0]["CallinTime"]}]
    assert rows[0]["CallinTime"][10] == "T"  # RFC 3339, as Go's time.Time
    ok(admin.post("/api/agent_ready", json={"Extension": AGENT2}))
    talking(cc, AGENT2)
    assert admin.get("/api/queues").json() == []


def test_extension_callstate(cc: CtiStack, bus: Subscriber) -> None:
    admin = cc.server.client("admin")
    ok(admin.post("/api/extension_callstate", json={"Extension": AGENT, "Value": "rest"}))
    assert agent(cc, AGENT).call_state == "rest"
    bus.statuses_end(AGENT, ["rest"])
    ok(admin.post("/api/extension_callstate", json={"Extension": AGENT, "Value": "ready"}))
    assert agent(cc, AGENT).call_state == "ready"
    # no_answer is reached through a call only: ready -> no_answer is illegal
    reply = admin.post("/api/extension_callstate", json={"Extension": AGENT,
                                                          "Value": "no_answer"})
    assert reply.status_code == 409 and reply.json()["field"] == "Value"
    assert "'ready' to 'no_answer'" in reply.json()["error"]
    assert agent(cc, AGENT).call_state == "ready"
    reply = admin.post("/api/extension_callstate", json={"Extension": AGENT, "Value": "nap"})
    assert reply.status_code == 422 and reply.json()["field"] == "Value"


def test_get_extensions_and_extension_info(cc: CtiStack) -> None:
    admin = cc.server.client("admin")
    acd.set_busy(cc.ctx, cc.center.domain, AGENT2)
    rows = {r["Extension"]: r for r in ok(admin.get("/api/get_extensions"))}  # type: ignore[arg-type]
    assert rows[AGENT]["RegStatus"] == "reged"
    assert (rows[AGENT]["AgentState"], rows[AGENT]["CallState"]) == ("idle", "ready")
    assert (rows[AGENT2]["AgentState"], rows[AGENT2]["CallState"]) == ("busy", "busy")
    assert len(rows[AGENT]["LastStatusChangeTime"]) == 19  # YYYY-MM-DD HH:MM:SS
    assert set(rows[AGENT]) == {"Extension", "RegStatus", "AgentState", "CallState",
                                "LastStatusChangeTime"}
    assert ok(admin.get(f"/api/extension_info/{AGENT2}")) == {
        "reg_state": "reged", "seat_status": "busy", "call_state": "busy"}
    missing = admin.get("/api/extension_info/4444")
    assert missing.status_code == 404 and missing.json()["field"] == "ext"


# ------------------------------------------------------------------------ calls -----------
def test_hold_and_unhold(cc: CtiStack) -> None:
    customer, agent_leg = queue_call(cc)
    talking(cc, agent_leg.get("dialed_user") or AGENT)
    ext = agent_leg.get("dialed_user")
    admin = cc.server.client("admin")
    ok(admin.get(f"/api/hold/{ext}"))
    held = event(cc, "CHANNEL_HOLD", agent_leg)
    assert held.headers["Channel-Call-State"] == "HELD"
    assert cc.switch.hears(customer.uuid) == {"media:local_stream://moh"}
    ok(admin.get(f"/api/unhold/{ext}"))
    event(cc, "CHANNEL_UNHOLD", agent_leg)
    assert cc.switch.hears(customer.uuid) == {agent_leg.uuid}


def test_the_callers_channel_is_not_the_agents_call(cc: CtiStack) -> None:
    """As FreeSWITCH 1.10.12 does (observed: tests/switch/test_cti.py), the queue caller's
    channel, which bridged to user/<agent>, carries dialed_user=<agent> too; it is still not
    the agent's call: cti_userinfo lists only the agent's own leg, and hold acts on that leg
    (it held the caller's channel on the real switch, the agent's phone kept talking)."""
    customer, agent_leg = queue_call(cc, "13800000066")
    ext = agent_leg.get("dialed_user")
    talking(cc, ext)
    assert customer.get("dialed_user") == ext  # fakefs does as FreeSWITCH
    cc.switch.bus.wait_for(lambda e: e.name == "CHANNEL_BRIDGE"
                           and customer.uuid in (e.headers.get("Unique-ID"),
                                                 e.headers.get("Other-Leg-Unique-ID")), 5.0)
    admin = cc.server.client("admin")
    assert agent_leg.uuid in ok(admin.get(f"/api/hold/{ext}"))["message"]
    held = event(cc, "CHANNEL_HOLD", agent_leg)
    assert held.headers["Channel-Call-State"] == "HELD" and not customer.held
    info = json.loads(cc.ctx.redis.hget(f"cti_userinfo@{cc.center.domain}", ext) or "{}")
    assert [c["Unique-ID"] for c in info["calls"]] == [agent_leg.uuid]
    ok(admin.get(f"/api/unhold/{ext}"))
    event(cc, "CHANNEL_UNHOLD", agent_leg)


def test_phone_hold_and_unhold(cc: CtiStack) -> None:
    customer, agent_leg = queue_call(cc)
    ext = agent_leg.get("dialed_user")
    talking(cc, ext)
    admin = cc.server.client("admin")
    ok(admin.get(f"/api/phone_hold/{ext}"))
    wait_until(lambda: agent_leg.held, 3, "the phone held the call")
    assert cc.switch.hears(customer.uuid) == {"media:local_stream://moh"}
    ok(admin.get(f"/api/phone_unhold/{ext}"))
    wait_until(lambda: not agent_leg.held, 3, "the phone took the call back")
    assert cc.switch.hears(customer.uuid) == {agent_leg.uuid}


def test_answer_makes_the_ringing_phone_answer(cc: CtiStack) -> None:
    admin = cc.server.client("admin")
    ok(admin.post("/api/agent_busy", json={"Extension": AGENT2}))
    cc.switch.register(AGENT, cc.center.domain, password="1234",
                       behaviour=Behaviour(answer_after_ms=None))  # rings until told
    try:
        customer = cc.center.call(cc.switch, "13800000003", f"7{GROUP}")
        wait_until(lambda: agent(cc, AGENT).call_state == "ring", 5, "agent ringing")
        wait_until(lambda: admin.get(f"/api/answer/{AGENT}").status_code == 200, 5,
                   "answer accepted once the ringing leg is recorded")
        talking(cc, AGENT)
        assert customer.peer and cc.switch.channels[customer.peer].answered
    finally:
        cc.switch.register(AGENT, cc.center.domain, password="1234",
                           behaviour=Behaviour(answer_after_ms=50))
    # nothing rings now: a second answer is refused, naming the path parameter
    reply = admin.get(f"/api/answer/{AGENT}")
    assert reply.status_code == 409 and reply.json()["field"] == "extension"


def test_hangup(cc: CtiStack, bus: Subscriber) -> None:
    customer, agent_leg = queue_call(cc)
    ext = agent_leg.get("dialed_user")
    talking(cc, ext)
    ok(cc.server.client("admin").get(f"/api/hangup/{ext}"))
    event(cc, "CHANNEL_HANGUP_COMPLETE", agent_leg)
    event(cc, "CHANNEL_HANGUP_COMPLETE", customer)
    bus.wait("event_agent", uuid=customer.uuid, method="hangup")
    wait_until(lambda: agent(cc, ext).call_state == "ready", 5, "agent ready again")


def test_transfer_to_another_agent(cc: CtiStack) -> None:
    admin = cc.server.client("admin")
    ok(admin.post("/api/agent_busy", json={"Extension": AGENT2}))
    customer, agent_leg = queue_call(cc)
    talking(cc, AGENT)
    # 8<ext> is the dialplan's direct call to an agent (nway_bridge)
    ok(admin.post("/api/transfer", json={"EvdedPhone": AGENT, "EvdPhone": f"8{AGENT2}",
                                         "EvdGateway": ""}))
    talking(cc, AGENT2)
    leg2 = wait_until(lambda: customer.peer and customer.peer != agent_leg.uuid
                      and cc.switch.channels.get(customer.peer), 5, "customer with 1002")
    assert leg2.get("dialed_user") == AGENT2
    event(cc, "CHANNEL_HANGUP_COMPLETE", agent_leg)
    wait_until(lambda: agent(cc, AGENT).call_state == "ready", 5, "1001 free again")


def test_transferred_queue_call_is_one_cdr(cc: CtiStack, database: Any) -> None:
    """POST /api/transfer of a queue caller to 8<ext> (nway_bridge runs on the caller's
    channel after nwayacd): one CDR row for the call, group 110's, the agent who took the
    queue call as its party, the agent reached after the transfer a ``transferred`` attempt
    (nway_bridge's draft joins nwayacd's); the hangup fields are the switch's."""
    admin = cc.server.client("admin")
    ok(admin.post("/api/agent_busy", json={"Extension": AGENT2}))
    customer, agent_leg = queue_call(cc, "13800000077")
    talking(cc, AGENT)
    ok(admin.post("/api/transfer", json={"EvdedPhone": AGENT, "EvdPhone": f"8{AGENT2}",
                                         "EvdGateway": ""}))
    talking(cc, AGENT2)
    leg2 = wait_until(lambda: customer.peer and customer.peer != agent_leg.uuid
                      and cc.switch.channels.get(customer.peer), 5, "customer with 1002")
    cc.switch.hangup(customer, "NORMAL_CLEARING", side="remote")
    wait_until(lambda: customer.done.is_set(), 5, "the call over")

    def query(sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg2.connect(database.dsn) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    rows = wait_until(lambda: query(
        "SELECT flag, group_number, destination_number, a_billsec, hangup_cause, "
        "a_sip_hangup_disposition FROM cdr WHERE uuid = %s", customer.uuid), 5, "the CDR")
    assert rows == [("接通", GROUP, AGENT, int(customer.get("billsec") or -1),
                     "NORMAL_CLEARING", "recv_bye")]
    attempts = query("SELECT extension, result, transferred, leg_uuid FROM cdr_agent_attempt "
                     "WHERE cdr_uuid = %s ORDER BY attempt_no", customer.uuid)
    assert attempts == [(AGENT, "answered", False, agent_leg.uuid),
                        (AGENT2, "answered", True, leg2.uuid)]
    assert query("SELECT uuid FROM cdr WHERE uuid IN (%s, %s)", agent_leg.uuid,
                 leg2.uuid) == []


def test_threeway_invites_an_extension(cc: CtiStack) -> None:
    customer, agent_leg = queue_call(cc)
    ext = agent_leg.get("dialed_user")
    talking(cc, ext)
    ok(cc.server.client("admin").post("/api/threeway", json={
        "EvdedPhone": SUPERVISOR, "EvdPhone": ext, "EvdGateway": ""}))
    third = wait_until(lambda: next((c for c in cc.switch.channels.values()
                                     if c.get("dialed_user") == SUPERVISOR and c.answered),
                                    None), 5, "the third party answered")
    wait_until(lambda: cc.switch.hears(customer.uuid) == {agent_leg.uuid, third.uuid}, 3,
               "customer hears both")
    assert cc.switch.hears(agent_leg.uuid) == {customer.uuid, third.uuid}


def test_eavesdrop_listens_without_being_heard(cc: CtiStack) -> None:
    customer, agent_leg = queue_call(cc)
    ext = agent_leg.get("dialed_user")
    talking(cc, ext)
    sup = cc.server.client("supervisor")
    ok(sup.post("/api/eavesdrop", json={"EvdedPhone": ext, "EvdPhone": SUPERVISOR,
                                        "EvdGateway": ""}))
    listener = wait_until(lambda: next((c for c in cc.switch.channels.values()
                                        if c.get("dialed_user") == SUPERVISOR and c.answered),
                                       None), 5, "the supervisor answered")
    wait_until(lambda: cc.switch.hears(listener.uuid) == {agent_leg.uuid, customer.uuid}, 3,
               "supervisor hears both")
    assert cc.switch.hears(customer.uuid) == {agent_leg.uuid}
    assert listener.get("eavesdrop_enable_dtmf") == "true"


# ------------------------------------------------------------------------ errors ----------
@pytest.mark.parametrize(("path", "body", "status", "field"), [
    ("/api/agent_ready", {}, 422, "Extension"),
    ("/api/agent_ready", {"Extension": 1001}, 422, "Extension"),
    ("/api/agent_ready", {"Extension": "10 01"}, 422, "Extension"),
    ("/api/agent_ready", {"Extension": "7777"}, 404, "Extension"),
    ("/api/agent_up", {"Extension": "1001"}, 422, "Groups"),
    ("/api/agent_up", {"Extension": "1001", "Groups": "110,,120"}, 422, "Groups"),
    ("/api/agent_up", {"Extension": "1001", "Groups": ["110"]}, 422, "Groups"),
    ("/api/transfer", {"EvdedPhone": "1001", "EvdPhone": "x{y}"}, 422, "EvdPhone"),
    ("/api/transfer", {"EvdedPhone": "1001", "EvdPhone": "1002", "EvdGateway": "g w"}, 422,
     "EvdGateway"),
    ("/api/transfer", {"EvdedPhone": "1001", "EvdPhone": "abc", "EvdGateway": "gw1"}, 422,
     "EvdPhone"),
    ("/api/transfer", {"EvdedPhone": "1001", "EvdPhone": "1002"}, 409, "EvdedPhone"),
    ("/api/threeway", {"EvdedPhone": "1900", "EvdPhone": "1001"}, 409, "EvdPhone"),
])
def test_bad_requests_name_the_field(cc: CtiStack, path: str, body: dict[str, Any],
                                     status: int, field: str) -> None:
    before = agent(cc, AGENT)
    reply = cc.server.client("admin").post(path, json=body)
    assert reply.status_code == status, reply.text
    assert reply.json()["field"] == field
    assert agent(cc, AGENT) == before  # nothing half done


def test_bodies_that_are_not_json_objects(cc: CtiStack) -> None:
    admin = cc.server.client("admin")
    for data in (b"", b"not json", b"[1, 2]", b"\xff\xfe", b'{"Extension": "1001"'):
        reply = admin.post("/api/agent_ready", data=data)
        assert reply.status_code == 400, (data, reply.text)
        assert reply.json()["field"] == "body"
    too_big = admin.post("/api/agent_ready", data=b'{"x": "' + b"a" * 100_000 + b'"}')
    assert too_big.status_code == 413
    assert admin.get("/api/nothing").status_code == 404
    assert admin.get("/api/agent_ready").json() == {"error": "Method Not Allowed"}


def _page_or_stream(path: str) -> bool:
    """Issue 9's pages, static files and SockJS stream are served but are no REST calls."""
    from fsapps.server.plugins import UNDOCUMENTED_PREFIXES

    return any(path == p or (p != "/" and path.startswith(p)) for p in UNDOCUMENTED_PREFIXES)


def test_openapi_document_matches_the_routes(cc: CtiStack) -> None:
    doc = ok(cc.server.anonymous().get("/api/openapi.json"))
    assert doc["openapi"].startswith("3.")
    served = {(r.method, r.resource.canonical)  # type: ignore[union-attr]
              for r in cc.server.runner.app.router.routes()
              if r.resource is not None and r.method != "HEAD"
              and not _page_or_stream(r.resource.canonical)}
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == served - {("GET", "/api/openapi.json")}
    for seed in ("login", "agent_up", "agent_down", "agent_ready", "agent_busy",
                 "extension_callstate", "queues", "get_extensions", "extension_info/{ext}",
                 "transfer", "answer/{ext}", "hangup/{ext}", "eavesdrop", "threeway",
                 "hold/{ext}", "unhold/{ext}", "phone_hold/{ext}", "phone_unhold/{ext}"):
        assert f"/api/{seed}" in doc["paths"], seed
    body = doc["paths"]["/api/transfer"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["schema"]["properties"]) == {"EvdedPhone", "EvdPhone", "EvdGateway"}


def test_no_ready_during_a_call_and_unknown_listeners(cc: CtiStack) -> None:
    customer, agent_leg = queue_call(cc)
    ext = agent_leg.get("dialed_user")
    talking(cc, ext)
    admin = cc.server.client("admin")
    # ready while talking would let the ACD offer a second call
    reply = admin.post("/api/extension_callstate", json={"Extension": ext, "Value": "ready"})
    assert reply.status_code == 409 and "'talking' to 'ready'" in reply.json()["error"]
    assert agent(cc, ext).call_state == "talking"
    for path, body, field in (
            ("/api/eavesdrop", {"EvdedPhone": ext, "EvdPhone": "6060"}, "EvdPhone"),
            ("/api/threeway", {"EvdedPhone": "6060", "EvdPhone": ext}, "EvdedPhone")):
        refused = admin.post(path, json=body)
        assert refused.status_code == 404 and refused.json()["field"] == field, refused.text
    assert cc.switch.hears(customer.uuid) == {agent_leg.uuid}


def test_transfer_and_eavesdrop_through_a_gateway(cc: CtiStack, caplog: Any) -> None:
    if "gw1" not in cc.switch.gateways:
        cc.switch.add_gateway("gw1", Behaviour(answer_after_ms=30))
    customer, agent_leg = queue_call(cc)
    ext = agent_leg.get("dialed_user")
    talking(cc, ext)
    sup = cc.server.client("supervisor")
    caplog.set_level("INFO", logger="fsapps.server.audit")
    ok(sup.post("/api/eavesdrop", json={"EvdedPhone": ext, "EvdPhone": "13900000001",
                                        "EvdGateway": "gw1"}))
    outside = wait_until(lambda: next((c for c in cc.switch.channels.values()
                                       if c.get("sip_gateway_name") == "gw1" and c.answered),
                                      None), 5, "the outside listener answered")
    wait_until(lambda: cc.switch.hears(outside.uuid) == {agent_leg.uuid, customer.uuid}, 3,
               "the outside number listens")
    assert any("supervisor (supervisor) POST /api/eavesdrop" in r.getMessage()
               for r in caplog.records), "the action is in the audit log"
    cc.switch.hangup(outside, "NORMAL_CLEARING", side="remote")
    ok(sup.post("/api/transfer", json={"EvdedPhone": ext, "EvdPhone": "+8613900000002",
                                       "EvdGateway": "gw1"}))
    far = wait_until(lambda: customer.peer and cc.switch.channels.get(customer.peer)
                     and cc.switch.channels[customer.peer].get("sip_gateway_name") == "gw1"
                     and cc.switch.channels[customer.peer], 5, "customer sent out via gw1")
    assert far.uuid != outside.uuid
    event(cc, "CHANNEL_HANGUP_COMPLETE", agent_leg)
