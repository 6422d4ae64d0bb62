"""The pure parts of the CTI server: Redis state to seed 001's JSON rows, choosing an
extension's call to act on, the /cli allow-list, and the OpenAPI document's shape; and the
``fsapps cti serve`` command."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from fakefs.scenario import wait_until
from fsapps.domain.agents import Agent
from fsapps.domain.callqueue import WaitingCall
from fsapps.server import cti_api as api
from fsapps.server import supervision
from fsapps.server.passwords import hash_password
from fsapps.server.registry import openapi
from fsapps.server.rows import (
    extension_info,
    extension_row,
    local_stamp,
    queue_row,
    rfc3339,
)
from fsapps.services.calls import LiveCall, live_calls, pick
from fsapps.switch.nodecommands import cli_allowed

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
    # the agent's leg named by its ring, the agent not talking yet: not an answered call
    assert live_calls(None, None, U3, agent_talking=False) == [LiveCall(U3, False)]
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


def test_fsapps_cti_serve_command(tmp_path: Path, redis_server: Any) -> None:
    """``fsapps cti serve`` starts a server from a settings file; --listen/--port win."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "fsapps.yaml"
    config.write_text(yaml.safe_dump({
        "redis": {"url": redis_server.url, "key_prefix": "serve"},
        "cti": {"listen": "0.0.0.0", "port": 1},
        "users": [{"username": "admin", "role": "admin", "extension": "",
                   "password_hash": hash_password("admin", iterations=1000)}]}))
    server = subprocess.Popen([sys.executable, "-m", "fsapps.cli", "--config", str(config),
                               "cti", "serve", "--listen", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def answers() -> Any:
            try:
                return requests.post(f"http://127.0.0.1:{port}/api/login", timeout=2,
                                     json={"username": "admin", "password": "admin"})
            except requests.ConnectionError:
                return None
        reply = wait_until(answers, 20, "fsapps cti serve answering")
        assert reply.status_code == 200 and reply.json()["token"]
        server.terminate()  # SIGTERM: a clean stop
        output = server.communicate(timeout=10)[0].decode()
        assert server.returncode == 0, output
        assert "stopping" in output
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
