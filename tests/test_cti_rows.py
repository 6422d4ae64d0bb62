"""The pure parts of the CTI server: Redis state to seed 001's JSON rows, choosing an
extension's call to act on, the /cli allow-list, and the OpenAPI document's shape."""

from __future__ import annotations

import json
from datetime import datetime

from fsapps.agents import Agent
from fsapps.callqueue import WaitingCall
from fsapps.commands import cli_allowed
from fsapps.cti import api, supervision
from fsapps.cti.registry import openapi
from fsapps.cti.rows import (
    LiveCall,
    extension_info,
    extension_row,
    live_calls,
    local_stamp,
    pick,
    queue_row,
    rfc3339,
)

MS = int(datetime(2021, 5, 30, 17, 0, 2).timestamp() * 1000)
U1, U2, U3 = ("7ba750aa-c138-11eb-8bdf-fd851cbd5da" + c for c in "abc")


def test_queue_row_has_the_seed_fields() -> None:
    call = WaitingCall(uuid=U1, node="n1", group="120", number="18638737767",
                       real_number="018638737767", level="vip", callin_time="x",
                       arrived_ms=MS)
    row = queue_row(call)
    assert list(row) == ["Uuid", "Number", "RealCallinNumber", "Group", "Level", "CallinTime"]
    assert row["CallinTime"].startswith("2021-05-30T17:00:02")
    assert datetime.fromisoformat(row["CallinTime"]).timestamp() * 1000 == MS
    assert rfc3339(MS) == row["CallinTime"]


def test_extension_rows() -> None:
    agent = Agent("1002", "d", reg_state="reged", seat_status="idle", call_state="talking",
                  last_change=MS)
    assert extension_row(agent) == {"Extension": "1002", "RegStatus": "reged",
                                    "AgentState": "idle", "CallState": "talking",
                                    "LastStatusChangeTime": "2021-05-30 17:00:02"}
    assert extension_info(agent) == {"reg_state": "reged", "seat_status": "idle",
                                     "call_state": "talking"}
    assert local_stamp(0) == ""


def test_live_calls_from_userinfo_then_calls_then_agent_leg() -> None:
    info = json.dumps({"calls": [{"Unique-ID": U1, "Answered-Time": "1", "Signal-Bond": U2},
                                 {"Unique-ID": U3}, "junk", {"no": "id"}]})
    assert live_calls(info, None) == [LiveCall(U1, True, U2), LiveCall(U3, False)]
    calls = json.dumps({"activity": [U2, 5], U2: {"Caller-Channel-Answered-Time": "0"}})
    assert live_calls(json.dumps({"calls": []}), calls) == [LiveCall(U2, False)]
    assert live_calls("not json", "[1]", U3) == [LiveCall(U3, True)]
    assert live_calls(None, None) == []


def test_pick() -> None:
    ringing, talking = LiveCall(U1, False), LiveCall(U2, True)
    assert pick([talking, ringing], "ringing") == ringing
    assert pick([talking, ringing], "answered") == talking
    assert pick([talking, ringing], "any") == talking
    assert pick([ringing], "any") == ringing
    assert pick([ringing], "answered") is None
    assert pick([], "any") is None


def test_cli_allow_list() -> None:
    allowed = ("status", "uuid_kill", "originate", "bgapi")
    assert cli_allowed(allowed, "status", "") is None
    assert cli_allowed(allowed, "bgapi", "originate user/1 &park") is None
    assert "not allowed" in (cli_allowed(allowed, "system", "id") or "")
    assert "bgapi of 'system'" in (cli_allowed(allowed, "bgapi", "system id") or "")
    assert cli_allowed(allowed, "bgapi", "bgapi status") is not None
    assert cli_allowed(allowed, "bgapi", "") is not None
    assert cli_allowed((), "status", "") is not None


def test_openapi_document() -> None:
    doc = openapi([*api.ROUTES, *supervision.ROUTES])
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) == 28
    login = doc["paths"]["/api/login"]["post"]
    assert login["security"] == [] and "401" in login["responses"]
    assert login["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "username", "password"]
    callstate = doc["paths"]["/api/extension_callstate"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]["Value"]
    assert callstate["enum"][:8] == ["ring", "talking", "ivr", "ready", "typing", "no_answer",
                                     "busy", "rest"]
    hold = doc["paths"]["/api/hold/{ext}"]["get"]
    assert hold["parameters"][0]["in"] == "path" and hold["x-role"] == "agent"
    assert doc["paths"]["/api/supervise/listen"]["post"]["x-role"] == "supervisor"
    assert doc["paths"]["/cli"]["get"]["x-role"] == "admin"
    assert "text/plain" in doc["paths"]["/cli"]["get"]["responses"]["200"]["content"]
    json.dumps(doc)
