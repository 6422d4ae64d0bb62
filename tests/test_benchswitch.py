"""make bench-switch's arithmetic (tools/benchswitch.py) on events as a real switch sends them,
and the SIPp scenarios it writes (the switch itself runs only in the bench)."""

from __future__ import annotations

import os
import subprocess
import threading
import xml.etree.ElementTree as ET
from typing import Any
from unittest import mock

import pytest
import redis

from fsapps.config import RedisSettings
from fsapps.store.keys import Keys
from fsapps.threads import name_os_thread
from tools import benchswitch, sipp
from tools.realswitch import merged_settings


def event(name: str, uuid: str, at: float, direction: str = "inbound", number: str = "",
          **headers: str) -> dict[str, str]:
    """An event as EventLog keeps it: the switch's stamp (20 ms ticks) and when it arrived."""
    kept = {"Event-Name": name, "Unique-ID": uuid, "Call-Direction": direction,
            "Caller-Caller-ID-Number": number, "Event-Date-Timestamp": str(int(at * 1e6)),
            "_rx": repr(at)}
    kept.update(headers)
    return kept


def queue_call(caller: str, number: str, arrived: float, agent_leg: str, rang: float,
               bridged: float, by_other_leg: bool = True) -> list[dict[str, str]]:
    """An ACD call: answered on arrival, an agent leg created at ``rang``, bridged."""
    link = {"Other-Leg-Unique-ID": caller} if by_other_leg else {}
    return [event("CHANNEL_CREATE", caller, arrived, number=number),
            event("CHANNEL_ANSWER", caller, arrived + 0.002, number=number),
            event("CHANNEL_CREATE", agent_leg, rang, "outbound", number, **link),
            event("CHANNEL_ANSWER", agent_leg, bridged, "outbound", number),
            event("CHANNEL_BRIDGE", caller, bridged, number=number,
                  **{"Bridge-A-Unique-ID": caller, "Bridge-B-Unique-ID": agent_leg})]


def test_decision_wait_and_rate_of_queue_calls() -> None:
    events = (queue_call("c1", "9001", 100.0, "a1", 100.012, 100.33)
              + queue_call("c2", "9002", 101.0, "a2", 103.002, 103.31, by_other_leg=False)
              # another run's caller (prefix 91) and a caller nobody answered
              + queue_call("x1", "9101", 100.5, "ax", 100.6, 100.9)
              + [event("CHANNEL_CREATE", "c3", 102.0, number="9003")])
    found = benchswitch.analyse(events, "90", agents=10, talk=10)
    assert (found.callers_seen, found.bridged) == (3, 2)
    # from the caller's answer to its agent leg (linked by Other-Leg or by caller number)
    assert [round(ms) for ms in found.decision_ms] == [10, 2000]
    assert [round(s, 2) for s in found.wait_s] == [0.33, 2.31]
    assert round(found.per_second, 3) == round(2 / 3.31, 3)


def test_plain_bridge_decision_counts_from_arrival() -> None:
    """Nothing answers the caller before its agent rings: the decision runs from arrival."""
    events = [event("CHANNEL_CREATE", "c1", 50.0, number="9001"),
              event("CHANNEL_CREATE", "a1", 50.004, "outbound", "9001",
                    **{"Other-Leg-Unique-ID": "c1"}),
              event("CHANNEL_ANSWER", "a1", 50.3, "outbound", "9001"),
              event("CHANNEL_ANSWER", "c1", 50.3, number="9001"),
              event("CHANNEL_BRIDGE", "c1", 50.3, number="9001",
                    **{"Bridge-A-Unique-ID": "c1", "Bridge-B-Unique-ID": "a1"})]
    found = benchswitch.analyse(events, "90", agents=1, talk=10)
    assert [round(ms) for ms in found.decision_ms] == [4]


def test_callers_arriving_with_an_agent_free() -> None:
    """One agent: busy from its leg's creation until talk after the bridge. The second caller
    arrives while it talks (a queue to wait in), the third after it hung up."""
    events = (queue_call("c1", "9001", 0.0, "a1", 0.01, 0.3)
              + queue_call("c2", "9002", 5.0, "a2", 10.31, 10.6)
              + queue_call("c3", "9003", 30.0, "a3", 30.01, 30.3))
    found = benchswitch.analyse(events, "90", agents=1, talk=10)
    assert found.arrived_free == 2
    assert [round(s, 2) for s in found.wait_free_s] == [0.3, 0.3]


def test_hold_music_restarts_per_waiting_caller_per_second() -> None:
    """A caller's playbacks count from its first to its bridge, or to giving up ``patience``
    after arriving; every one after its first is a restart. Another run's caller's music and a
    caller who heard none do not count."""
    events = (queue_call("c1", "9001", 0.0, "a1", 9.9, 10.0)
              + [event("PLAYBACK_START", "c1", 0.5, number="9001"),
                 event("PLAYBACK_START", "c1", 5.5, number="9001")]
              + [event("CHANNEL_CREATE", "c2", 1.0, number="9002"),  # gave up at 1 + 20
                 event("PLAYBACK_START", "c2", 1.0, number="9002")]
              + queue_call("c3", "9003", 2.0, "a3", 2.01, 2.3)
              + queue_call("x1", "9101", 0.0, "ax", 3.0, 3.1)
              + [event("PLAYBACK_START", "x1", 0.1, number="9101")])
    found = benchswitch.analyse(events, "90", agents=1, talk=10, patience=20)
    assert (found.music_callers, found.music_restarts) == (2, 1)
    assert round(found.music_s, 2) == 9.5 + 20.0
    assert round(found.restarts_per_caller_second, 4) == round(1 / 29.5, 4)
    assert benchswitch.analyse([], "90", 1, 10).restarts_per_caller_second == 0.0


def test_table_row() -> None:
    run = benchswitch.Run(500, 40, 10, 30, 30)
    found = benchswitch.analyse(queue_call("c1", "9001", 0.0, "a1", 0.01, 0.3), "90", 500, 10)
    result = benchswitch.Result("fsapps", run, run.offered, found, 75.04, "0", 0, 900, 5.2,
                                "100 cmds, 20 reads")
    row = benchswitch.table([result]).splitlines()[2]
    assert row == ("| 500 × 40, 10 s | fsapps | 1 / 1200 | 8 / 8 ms | 0.30 / 0.30 s | 1: 0.30 s "
                   "| 3.3 | 75.0 (5.2) | 0 | 0 | 900 | 100 cmds, 20 reads |")


def test_cpu_summary_gives_each_acds_median_and_the_ratio() -> None:
    """--repeat runs the series again: per run size, each ACD's figures in the order they ran,
    their median, and fsapps' median over mod_callcenter's."""
    found = benchswitch.analyse([], "90", 100, 10)

    def result(acd: str, run: benchswitch.Run, cpu: float) -> benchswitch.Result:
        return benchswitch.Result(acd, run, run.offered, found, cpu, "0", 0, 1, 1.0)
    small, big = benchswitch.Run(100, 10, 10, 30, 30), benchswitch.Run(500, 40, 10, 30, 30)
    results = [result("fsapps", small, 70.0), result("callcenter", small, 60.0),
               result("fsapps", big, 66.0), result("plain", big, 50.0),
               result("fsapps", small, 80.0), result("callcenter", small, 80.0),
               result("fsapps", small, 75.0), result("callcenter", small, 75.0)]
    assert benchswitch.cpu_summary(results).splitlines()[2:] == [
        "- 100 × 10, 10 s: fsapps 70.0, 80.0, 75.0 (median 75.0); callcenter 60.0, 80.0, 75.0 "
        "(median 75.0); fsapps / callcenter 1.00",
        "- 500 × 40, 10 s: fsapps 66.0; plain 50.0"]


def test_the_cpu_of_the_threads_fsapps_named_and_of_the_rest() -> None:
    """The progress line's CPU per call of each thread named fsapps-<name> (read by name from
    /proc, here this process's own), the others together as the total's remainder."""
    named, stop = threading.Event(), threading.Event()
    tid: list[int] = []

    def probe() -> None:
        name_os_thread("probe")
        tid.append(threading.get_native_id())
        named.set()
        stop.wait(10)
    thread = threading.Thread(target=probe)
    thread.start()
    try:
        assert named.wait(5)
        probe_tid, main_tid = str(tid[0]), str(threading.get_native_id())
        line = benchswitch.named_threads_ms(os.getpid(), {probe_tid: 1.0},
                                            {probe_tid: 1.5, main_tid: 9.0}, 10, 2.0)
    finally:
        stop.set()
        thread.join(5)
    assert line == "probe 50.0; every other thread of the switch 150.0 ms per offered call"
    assert benchswitch.named_threads_ms(os.getpid(), {}, {main_tid: 9.0}, 10, 2.0) == ""


def test_runs_flag() -> None:
    assert benchswitch.parse_runs("100x10, 500x40") == [(100, 10.0), (500, 40.0)]


def test_agent_phone_that_hangs_up_is_valid_sipp_xml() -> None:
    with mock.patch.object(sipp.Sipp, "start", lambda self: self):
        hangs_up = sipp.phone(hangup_after_ms=10_000, trace_messages=False)
        plain = sipp.phone()
    root = ET.fromstring(hangs_up.scenario.encode("iso-8859-1"))
    labels = {node.get("id") for node in root.iter("label")}
    assert {"hangup", "bye", "cancelled", "end"} <= labels
    assert 'timeout="10000" ontimeout="hangup"' in hangs_up.scenario
    assert "BYE [$peer_contact] SIP/2.0" in hangs_up.scenario
    # the tests' phone is the one it was: no hangup of its own, no $placeholders left
    ET.fromstring(plain.scenario.encode("iso-8859-1"))
    assert "hangup" not in plain.scenario and "$" not in plain.scenario


def test_the_agents_outlast_a_starved_machine_and_their_end_stops_the_bench(
        tmp_path: Any) -> None:
    """The bench's agents (one SIPp for all of a --repeat series) keep going however often
    the saturated machine starves them; the tests' phones keep SIPp's watchdog. Should the
    agents' SIPp end all the same, the bench stops saying why instead of timing calls that
    ring no one."""
    with mock.patch.object(sipp.Sipp, "start", lambda self: self):
        agents = sipp.phone(hangup_after_ms=10_000, trace_messages=False, starved_ok=True)
        phone = sipp.phone()
    assert agents.args[agents.args.index("-watchdog_minor_maxtriggers") + 1] == "1000000000"
    assert "-watchdog_minor_maxtriggers" not in phone.args
    bench = benchswitch.Bench(["fsapps"], 1, 10.0, base=tmp_path)
    bench.agents_uas = agents
    agents.proc = subprocess.Popen(["sleep", "30"])
    try:
        bench.agents_alive()  # running: nothing to say
    finally:
        agents.proc.kill()
        agents.proc.wait()
    (agents.workdir / "phone.err").write_text(
        "2026-12-06\t17:27:30.209494\t1796578050.209494: Overload error: the watchdog timer "
        "has tripped the minor threshold of 500ms too many times (121 out of 120 allowed)\n")
    with pytest.raises(RuntimeError, match=r"the agents' SIPp exited \(-9\): .*Overload error"):
        bench.agents_alive()


def test_fsapps_setting_flag() -> None:
    settings = benchswitch.parse_settings([
        "events.csta_feed=off", "directory.userinfo=false", "directory.call_hash=",
        "directory.cacheable='60000'", "group_defaults.wrapup_seconds=3"])
    assert settings == {"events": {"csta_feed": "off"},
                        "directory": {"userinfo": False, "call_hash": "",
                                      "cacheable": "60000"},
                        "group_defaults": {"wrapup_seconds": 3}}
    for bad in ("events.csta_feed", "=off", "."):
        with pytest.raises(ValueError, match="expected KEY=VALUE"):
            benchswitch.parse_settings([bad])
    # laid over the bench's own settings section by section
    assert merged_settings({"group_defaults": {"wrapup_seconds": 0, "callout_timeout": 15}},
                           settings)["group_defaults"] == {"wrapup_seconds": 3,
                                                           "callout_timeout": 15}


def test_fsapps_agents_count_registered_from_their_hashes(redis_server: Any) -> None:
    client = redis.Redis.from_url(redis_server.url)
    keys = Keys(RedisSettings().key_prefix, benchswitch.DOMAIN)
    client.hset(keys.agent("2000"), "reg_state", "reged")
    client.hset(keys.agent("2001"), "reg_state", "unreg")
    try:
        assert benchswitch.registered_agents(client, ["2000", "2001", "2002"]) == 1
    finally:
        client.delete(keys.agent("2000"), keys.agent("2001"))
        client.close()
