"""Seed 003's live state, written by fsapps.runtime from the switch's events: cti_userinfo@<domain>,
the registrations hash and the calls hash (and their channel/list copies) through register,
call, answer, bridge, hangup and unregister."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from fakefs.channel import Behaviour
from fakefs.scenario import wait_until
from fakefs.switch import Switch
from fsapps.config import DirectorySettings
from fsapps.domain.userdir import UserDirectory, parse_record
from tests.acd_support import DOMAIN, CallCenter, reset_database, settings_for
from tools.servers import FreshDatabase, RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads")

USERINFO = f"cti_userinfo@{DOMAIN}"
CALL_FIELDS = ["Caller-Destination-Number", "Caller-Caller-ID-Number", "Caller-Callee-ID-Number",
               "Caller-Profile-Created-Time", "Caller-Channel-Answered-Time",
               "Caller-Channel-Hangup-Time", "Caller-Channel-Progress-Time",
               "Caller-Channel-Progress-Media-Time", "Answer-State", "variable_signal_bond"]


def make_center(redis_server: RedisServer, database: FreshDatabase,
                **directory: Any) -> Iterator[CallCenter]:
    reset_database(database.dsn)
    settings = settings_for(redis_server.url, database.dsn)
    settings = dataclasses.replace(settings, directory=DirectorySettings(**directory))
    cc = CallCenter(settings)
    try:
        yield cc
    finally:
        cc.close()


@pytest.fixture
def cc(redis_server: RedisServer, database: FreshDatabase) -> Iterator[CallCenter]:
    yield from make_center(redis_server, database)


def phones(cc: CallCenter) -> Switch:
    sw = cc.start_switch()
    for user in ("1001", "1002"):
        UserDirectory(cc.ctx, DOMAIN).set(parse_record(user, DOMAIN, {
            "param": {"password": "pw"},
            "variable": {"sip-force-contact": "NDLB-connectile-dysfunction-2.0"}}))
    return sw


def hget(cc: CallCenter, key: str, field: str) -> Any:
    text = cc.ctx.redis.hget(key, field)
    return None if text is None else json.loads(text)


def call(cc: CallCenter, sw: Switch, talk_ms: int = 400) -> Any:
    """1001 calls 1002 (user/1002 through the project dialplan); 1002 answers and hangs up
    after ``talk_ms``."""
    assert sw.register("1002", DOMAIN, password="pw", behaviour=Behaviour(
        answer_after_ms=100, ring_after_ms=10, hangup_after_ms=talk_ms)).ok
    return sw.place_call("1001", "fsapps_agent_1002", domain=DOMAIN,
                         behaviour=Behaviour(hangup_after_ms=None),
                         variables={"sip_h_X-FSAPPS-Ring-Timeout": "10"})


def test_register_writes_userinfo_and_registrations(cc: CallCenter) -> None:
    sw = phones(cc)
    assert sw.register("1001", DOMAIN, password="pw", user_agent="www.ddrj.com",
                       network_ip="127.0.0.1").ok

    info = wait_until(lambda: hget(cc, USERINFO, "1001"), 5, "cti_userinfo 1001")
    assert info["FreeSWITCH-Switchname"] == sw.name
    assert list(info) == ["FreeSWITCH-Switchname", "register", "calls"]
    register = info["register"]
    assert set(register) >= {"Hostname", "IPv4", "IPv6", "cluster_ip", "cluster_port",
                             "network-ip", "user-agent", "status", "Timestamp"}
    assert register["status"] == "Registered(AUTO-NAT-2.0)"
    assert (register["user-agent"], register["network-ip"]) == ("www.ddrj.com", "127.0.0.1")
    assert register["Timestamp"].isdigit() and info["calls"] == []

    event = wait_until(lambda: hget(cc, "registrations", "1001"), 5, "registrations 1001")
    assert event["Event-Subclass"] == "sofia::register"
    assert (event["username"], event["user_name"], event["domain_name"]) == \
        ("1001", "1001", DOMAIN)
    assert event["sip-force-contact"] == "NDLB-connectile-dysfunction-2.0"

    sw.unregister("1001", DOMAIN)
    wait_until(lambda: hget(cc, "registrations", "1001") is None, 5, "registration removed")
    wait_until(lambda: hget(cc, USERINFO, "1001") is None, 5, "userinfo removed")


def test_expiry_removes_the_registration(cc: CallCenter) -> None:
    sw = phones(cc)
    assert sw.register("1001", DOMAIN, password="pw").ok
    wait_until(lambda: hget(cc, "registrations", "1001"), 5, "registered")
    sw.unregister("1001", DOMAIN, expired=True)
    wait_until(lambda: hget(cc, "registrations", "1001") is None, 5, "expired")


def test_a_call_through_answer_bridge_and_hangup(cc: CallCenter) -> None:
    sw = phones(cc)
    assert sw.register("1001", DOMAIN, password="pw").ok
    caller = call(cc, sw)

    def bridged(user: str) -> Any:
        record = hget(cc, "calls", user)
        return record if record and record["notify"] == "bridge" else None

    a = wait_until(lambda: bridged("1001"), 5, "1001 bridged")
    b = wait_until(lambda: bridged("1002"), 5, "1002 bridged")
    assert a["username"] == "1001" and a["current"] == caller.uuid
    assert a["activity"] == [caller.uuid]
    b_uuid = b["current"]
    assert b["activity"] == [b_uuid] and b_uuid != caller.uuid
    assert list(a) == ["username", "current", "notify", caller.uuid, "activity"]
    assert set(a[caller.uuid]) <= set(CALL_FIELDS)
    assert a[caller.uuid]["Caller-Destination-Number"] == "fsapps_agent_1002"
    assert a[caller.uuid]["Caller-Caller-ID-Number"] == "1001"
    assert a[caller.uuid]["variable_signal_bond"] == b_uuid
    assert b[b_uuid]["variable_signal_bond"] == caller.uuid
    assert b[b_uuid]["Caller-Channel-Answered-Time"] != "0"

    info = hget(cc, USERINFO, "1001")
    [entry] = info["calls"]
    assert entry["Unique-ID"] == caller.uuid and entry["Call-Direction"] == "inbound"
    assert entry["Call-Number"] == "fsapps_agent_1002"
    assert entry["Signal-Bond"] == b_uuid
    for stamp in ("Created-Time", "Answered-Time", "Timestamp"):
        assert entry[stamp].isdigit(), stamp
    [callee] = hget(cc, USERINFO, "1002")["calls"]
    assert (callee["Unique-ID"], callee["Call-Direction"]) == (b_uuid, "outbound")
    assert callee["Call-Number"] == "1001" and callee["Signal-Bond"] == caller.uuid
    assert callee["Progress-Time"].isdigit() and callee["Answered-Time"].isdigit()

    # 1002 hangs up; the caller's leg ends after the bridge.
    def hung_up(user: str) -> Any:
        record = hget(cc, "calls", user)
        return record if record and record["notify"] == "hangup" else None

    a = wait_until(lambda: hung_up("1001"), 5, "1001 hangup")
    b = wait_until(lambda: hung_up("1002"), 5, "1002 hangup")
    assert a["activity"] == [] and a["current"] == caller.uuid
    assert a[caller.uuid]["Caller-Channel-Hangup-Time"] != "0"  # the last call is kept
    assert b["activity"] == [] and b_uuid in b
    assert hget(cc, USERINFO, "1001")["calls"] == []
    assert "register" in hget(cc, USERINFO, "1001")
    wait_until(lambda: hget(cc, USERINFO, "1002") is not None and
               hget(cc, USERINFO, "1002")["calls"] == [], 5, "1002 calls emptied")


def test_notify_sequence_seen_on_the_call_channel(redis_server: RedisServer,
                                                  database: FreshDatabase) -> None:
    for cc in make_center(redis_server, database, call_channel="gui_calls",
                          call_list="gui_calls_list", call_remove_hangup=True,
                          registration_channel="gui_regs", registration_hash=""):
        sub = cc.ctx.redis.pubsub()
        sub.subscribe("gui_calls", "gui_regs")
        wait_until(lambda: sub.get_message(timeout=0.1) and False or
                   sub.subscribed, 2, "subscribed")
        sw = phones(cc)
        assert sw.register("1001", DOMAIN, password="pw").ok
        caller = call(cc, sw, talk_ms=200)
        wait_until(lambda: not caller.up, 5, "call over")
        wait_until(lambda: hget(cc, "calls", "1001") is None, 5, "record removed on hangup")
        assert cc.ctx.redis.hlen("registrations") == 0  # registration_hash "" = off

        messages: list[dict[str, Any]] = []
        regs: list[dict[str, Any]] = []
        while True:
            message = sub.get_message(timeout=0.5)
            if message is None:
                break
            if message["type"] == "message":
                data = json.loads(message["data"])
                (regs if message["channel"] == "gui_regs" else messages).append(data)
        sub.close()
        assert [r["Event-Subclass"] for r in regs if r.get("username") == "1001"] == \
            ["sofia::register"]
        mine = [m["notify"] for m in messages if m["username"] == "1001"]
        assert mine[0] == "callout" and mine[-1] == "hangup"
        assert "answer" in mine and "bridge" in mine and "unbridge" in mine
        theirs = [m["notify"] for m in messages if m["username"] == "1002"]
        assert theirs[0] == "callin" and "progress" in theirs and theirs[-1] == "hangup"
        listed = [json.loads(x) for x in cc.ctx.redis.lrange("gui_calls_list", 0, -1)]
        assert [m["notify"] for m in listed] == [m["notify"] for m in messages]
