"""The switch commands (seed 001 part IV), end to end: each is sent exactly as fs_cli and ESL
send it — ``api python fsapps.api nway_login 1000 120`` (``switch.api``) and the seed's own line
``nway_login 1000 120`` through the alias fsapps.runtime installs (``switch.console``) — to two
fake nodes running the project's dialplan and runtime, against the test Redis and PostgreSQL.
Each test checks the reply and then the state: Redis through fsapps.domain.agents /
fsapps.domain.groups, PostgreSQL by querying it, the switch through its events and its audio graph
(``switch.hears``).

Every test uses its own extensions and groups. The tests that stop Redis come last: a
restarted test Redis is empty.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest

from fakefs import Behaviour, Channel, Switch
from fakefs.scenario import wait_until
from fsapps.domain.agents import Agent
from fsapps.domain.nodes import Nodes
from fsapps.switch import commands, nodecommands
from tests.acd_support import DOMAIN, CallCenter, center, sql
from tools.servers import FreshDatabase, RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads")

# What FreeSWITCH's default dialplan does for local extensions: ring the registered phone.
LOCAL_EXTENSIONS = """<include>
  <extension name="local_extension">
    <condition field="destination_number" expression="^(1\\d{3})$">
      <action application="bridge" data="user/$1@${domain_name}"/>
    </condition>
  </extension>
</include>"""
PHONE = Behaviour(answer_after_ms=50)


@dataclass
class Env:
    cc: CallCenter
    node1: Switch
    node2: Switch
    dsn: str

    def api(self, line: str, node: Switch | None = None) -> str:
        """``api python fsapps.api <line>`` (ESL, ``fs_cli -x 'python ...'``)."""
        return (node or self.node1).api(f"python fsapps.api {line}")

    def console(self, line: str, node: Switch | None = None) -> str:
        """The seed's line as typed in fs_cli: the alias expands it."""
        return (node or self.node1).console(line)

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        return sql(self.dsn, query, *params)

    def agent(self, ext: str) -> Agent | None:
        return self.cc.agents.get(ext)

    def phone(self, ext: str, switch: Switch | None = None, groups: list[str] | None = None,
              **behaviour: Any) -> None:
        """A registered phone for ``ext`` (an agent logged into ``groups``)."""
        self.cc.agent(ext, groups or [], switch=switch or self.node1,
                      behaviour=Behaviour(**{"answer_after_ms": 50, **behaviour}))

    def bridged_call(self, group: str, ext: str, caller: str,
                     switch: Switch | None = None) -> tuple[Channel, str]:
        """A caller (on ``switch``) talking to agent ``ext`` through group ``group``: the
        caller's channel and the agent leg's uuid."""
        switch = switch or self.node1
        self.cc.group(group, group_call_mode=0, group_callout_timeout=5, wrapup_seconds=0)
        self.phone(ext, switch, [group])
        channel = self.cc.call(switch, caller, f"7{group}")
        wait_until(lambda: channel.peer and self.hears(switch, channel.uuid, channel.peer),
                   5, f"{caller} talking to {ext}")
        assert channel.peer is not None
        wait_until(lambda: (a := self.agent(ext)) is not None and a.call_state == "talking", 5,
                   f"agent {ext} talking")
        return channel, channel.peer

    @staticmethod
    def hears(switch: Switch, uuid: str, what: str) -> bool:
        return what in switch.hears(uuid)


@pytest.fixture(scope="module")
def env_module(redis_server: RedisServer, database: FreshDatabase) -> Iterator[Env]:
    for cc in center(redis_server.url, database.dsn):
        node1, node2 = cc.start_switch("node1"), cc.start_switch("node2")
        for node in (node1, node2):
            node.dialplan.load_text(LOCAL_EXTENSIONS)
            node.add_gateway("gw1", Behaviour(answer_after_ms=50))
        yield Env(cc, node1, node2, database.dsn)


@pytest.fixture
def env(env_module: Env) -> Iterator[Env]:
    yield env_module
    for node in (env_module.node1, env_module.node2):
        for channel in list(node.channels.values()):
            node.hangup(channel, "NORMAL_CLEARING")
    wait_until(lambda: not env_module.node1.channels and not env_module.node2.channels, 5,
               "every call over")
    wait_until(lambda: env_module.cc.queue.waiting() == [], 5, "the queues empty")


def usage(name: str) -> str:
    return f"-ERR usage: {commands.COMMANDS[name].usage}"


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of an aligned table, cut at the header's column starts (so a misaligned row
    shows up as wrong cells)."""
    lines = text.split("\n\n")[0].splitlines()
    columns = list(re.finditer(r"\S+", lines[0]))
    names = [m.group(0) for m in columns]
    starts = [m.start() for m in columns]
    ends = [*starts[1:], None]
    return [{n: line[s:e].strip() for n, s, e in zip(names, starts, ends, strict=True)}
            for line in lines[1:]]


# ------------------------------------------------------------------------ dispatch --------
def test_every_command_has_an_alias_on_every_node(env: Env) -> None:
    for node in (env.node1, env.node2):
        for name in commands.COMMANDS:
            assert node.aliases[name] == f"python fsapps.api {name}"
    assert len(commands.COMMANDS) == 27
    assert env.console("nwayacd_version") == env.api("nwayacd_version")
    assert env.api("nwayacd_version").startswith("+OK fsapps ")


def test_unknown_and_missing_command(env: Env) -> None:
    reply = env.api("nway_fly 1000")
    assert reply.startswith("-ERR unknown command nway_fly; commands: nway_add_ext, ")
    assert all(name in reply for name in commands.COMMANDS)
    assert env.node1.api("python fsapps.api").startswith(
        "-ERR usage: python fsapps.api <command> [args]; commands: ")


def test_an_internal_failure_answers_err_and_nothing_escapes(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(inv: commands.Invocation) -> str:
        raise RuntimeError("boom")
    monkeypatch.setitem(commands.COMMANDS, "nwayacd_version",
                        commands.Command("nwayacd_version", "nwayacd_version", broken))
    errors = len(env.node1.python_errors)
    assert env.console("nwayacd_version") == "-ERR internal error: RuntimeError: boom\n"
    assert len(env.node1.python_errors) == errors  # nothing reached mod_python3


# ------------------------------------------------------------------------ extensions ------
def test_nway_add_ext(env: Env) -> None:
    assert env.console("nway_add_ext 1100 1234") == \
        "+OK extension 1100 added (job number 1234, enabled)\n"
    assert env.sql("SELECT job_number, enabled FROM extensions WHERE number = %s",
                   "1100") == [("1234", True)]
    agent = env.agent("1100")
    assert agent is not None and agent.job_number == "1234" and agent.enabled
    assert not agent.logged_in and agent.reg_state == "unreg"
    assert env.api("nway_add_ext 1100 5678") == \
        "+OK extension 1100 updated (job number 5678, enabled)\n"
    assert env.api("nway_add_ext 1100") == \
        "+OK extension 1100 updated (job number 5678, enabled)\n"
    assert env.api("nway_add_ext 1101") == "+OK extension 1101 added (no job number, enabled)\n"
    assert env.sql("SELECT number, job_number FROM extensions WHERE number IN ('1100', '1101') "
                   "ORDER BY number") == [("1100", "5678"), ("1101", None)]
    ext = usage("nway_add_ext")
    assert env.api("nway_add_ext") == f"{ext} (missing extension)\n"
    assert env.api("nway_add_ext 11,00") == f"{ext} (invalid extension '11,00')\n"
    assert env.api("nway_add_ext 1102 {x=y}") == f"{ext} (invalid job number '{{x=y}}')\n"
    assert env.api("nway_add_ext 1102 1 2") == f"{ext} (unexpected argument '2')\n"
    assert env.api(f"nway_add_ext {'9' * 51}").startswith(f"{ext} (invalid extension")
    assert env.sql("SELECT count(*) FROM extensions WHERE number = '1102'") == [(0,)]


def test_nway_set_ext_jobnumber_and_disabled_extensions(env: Env) -> None:
    env.phone("1110", groups=[])
    assert env.console("nway_set_ext_jobnumber 1110 4321 true") == \
        "+OK extension 1110 job number 4321, enabled\n"
    assert env.sql("SELECT job_number, enabled FROM extensions WHERE number = '1110'") == \
        [("4321", True)]
    env.cc.group("311")
    assert env.console("nway_login 1110 311").startswith("+OK")
    agent = env.agent("1110")
    assert agent is not None and agent.job_number == "4321" and agent.seat_status == "idle"

    assert env.api("nway_set_ext_jobnumber 1110 4321 false") == \
        "+OK extension 1110 job number 4321, disabled\n"
    assert env.sql("SELECT enabled FROM extensions WHERE number = '1110'") == [(False,)]
    agent = env.agent("1110")
    assert agent is not None and not agent.enabled and agent.seat_status == "busy"
    assert agent.call_state == "busy" and not agent.available(0)
    assert env.api("nway_ready 1110") == \
        "-ERR extension '1110' is disabled (nway_set_ext_jobnumber 1110 <job> true)\n"
    assert env.api("nway_login 1110 311").startswith("-ERR extension '1110' is disabled")
    assert env.api("nway_set_ext_jobnumber 1110 4321 TRUE").endswith("enabled\n")
    assert env.api("nway_ready 1110") == "+OK agent 1110 ready\n"

    set_job = usage("nway_set_ext_jobnumber")
    assert env.api("nway_set_ext_jobnumber 1110 4321") == \
        f"{set_job} (missing enabled flag (true or false))\n"
    assert env.api("nway_set_ext_jobnumber 1110 4321 maybe") == \
        f"{set_job} (invalid enabled flag (true or false) 'maybe')\n"
    assert env.api("nway_set_ext_jobnumber 1110") == f"{set_job} (missing job number)\n"


def test_nway_rm_ext(env: Env) -> None:
    env.cc.group("312")
    assert env.api("nway_add_ext 1120 77").startswith("+OK")
    assert env.api("nway_login 1120 312").startswith("+OK")
    assert env.sql("SELECT count(*) FROM ext_group_map WHERE ext = '1120'") == [(1,)]
    assert env.console("nway_rm_ext 1120") == "+OK extension 1120 removed\n"
    assert env.agent("1120") is None
    assert "1120" not in env.cc.groups.members("312")
    assert "1120" not in env.cc.ctx.redis.smembers(env.cc.ctx.keys(DOMAIN).agents())
    assert env.sql("SELECT count(*) FROM extensions WHERE number = '1120'") == [(0,)]
    assert env.sql("SELECT count(*) FROM ext_group_map WHERE ext = '1120'") == [(0,)]
    assert env.api("nway_rm_ext 1120") == "-ERR unknown extension '1120'\n"
    assert env.api("nway_rm_ext") == f"{usage('nway_rm_ext')} (missing extension)\n"


def test_nway_set_reged_and_unreg_ext(env: Env) -> None:
    assert env.api("nway_add_ext 1130").startswith("+OK")
    assert env.console("nway_set_reged_ext 1130") == "+OK extension 1130 registered\n"
    agent = env.agent("1130")
    assert agent is not None and agent.reg_state == "reged"
    assert env.console("nway_set_unreg_ext 1130") == "+OK extension 1130 unregistered\n"
    agent = env.agent("1130")
    assert agent is not None and agent.reg_state == "unreg"
    unknown = "-ERR unknown extension '1139' (add it with nway_add_ext)\n"
    assert env.api("nway_set_reged_ext 1139") == unknown
    assert env.api("nway_set_unreg_ext 1139") == unknown
    assert env.api("nway_set_reged_ext") == f"{usage('nway_set_reged_ext')} (missing extension)\n"
    assert env.api("nway_set_unreg_ext 1130 x") == \
        f"{usage('nway_set_unreg_ext')} (unexpected argument 'x')\n"


def test_nway_set_reged_ext_offers_a_waiting_caller(env: Env) -> None:
    env.cc.group("313", group_callout_timeout=5, wrapup_seconds=0)
    env.phone("1131", groups=["313"])
    assert env.api("nway_set_unreg_ext 1131").startswith("+OK")
    caller = env.cc.call(env.node1, "13900001131", "7313")
    wait_until(lambda: env.cc.queue.waiting("313"), 5, "caller queued")
    assert env.api("nway_set_reged_ext 1131") == \
        f"+OK extension 1131 registered; offered call {caller.uuid}\n"
    wait_until(lambda: caller.peer, 5, "caller bridged to 1131")


# ------------------------------------------------------------------------ groups ----------
def test_nway_add_group(env: Env) -> None:
    assert env.console("nway_add_group 320 4") == \
        "+OK group 320 added (mode 4 remember+1, name 320)\n"
    assert env.sql("SELECT group_name, group_call_mode, group_callout_timeout, domain "
                   "FROM ext_group WHERE group_number = '320'") == [("320", 4, 15, DOMAIN)]
    group = env.cc.groups.get("320")
    assert group is not None and group.group_call_mode == 4 and group.group_name == "320"
    assert env.api("nway_add_group 320 2 Sales team") == \
        "+OK group 320 updated (mode 2 cycle, name Sales team)\n"
    assert env.api("nway_add_group 320 0") == \
        "+OK group 320 updated (mode 0 sequence, name Sales team)\n"
    group = env.cc.groups.get("320")
    assert group is not None and (group.group_call_mode, group.group_name) == (0, "Sales team")
    assert env.sql("SELECT group_name, group_call_mode FROM ext_group "
                   "WHERE group_number = '320'") == [("Sales team", 0)]
    add = usage("nway_add_group")
    assert env.api("nway_add_group 321 9") == f"{add} (invalid mode (0-5) '9')\n"
    assert env.api("nway_add_group 321") == f"{add} (missing mode (0-5))\n"
    assert env.api("nway_add_group 32|1 1") == f"{add} (invalid group '32|1')\n"
    assert env.sql("SELECT count(*) FROM ext_group WHERE group_number = '321'") == [(0,)]
    env.sql("INSERT INTO ext_group (group_number, domain) VALUES ('322', 'other.test')")
    assert env.api("nway_add_group 322 1") == "-ERR group '322' belongs to another domain\n"
    assert env.sql("SELECT group_call_mode FROM ext_group WHERE group_number = '322'") == [(5,)]


def test_nway_rm_group(env: Env) -> None:
    assert env.api("nway_add_group 330 0").startswith("+OK")
    assert env.api("nway_add_group 331 0").startswith("+OK")
    env.cc.groups.set_numbers("330", "blacklist", ["13900000330"])
    assert env.api("nway_login 1140 330,331").startswith("+OK")
    assert env.console("nway_rm_group 330") == "+OK group 330 removed\n"
    assert env.cc.groups.get("330") is None and "330" not in env.cc.groups.numbers()
    assert env.cc.groups.members("330") == []
    agent = env.agent("1140")
    assert agent is not None and agent.groups == ("331",) and agent.logged_in
    assert env.sql("SELECT count(*) FROM ext_group WHERE group_number = '330'") == [(0,)]
    assert env.sql("SELECT count(*) FROM ext_group_map WHERE ext_group_number = '330'") == [(0,)]
    assert env.sql("SELECT count(*) FROM group_blacklist WHERE group_number = '330'") == [(0,)]
    assert env.api("nway_rm_group 330") == "-ERR unknown group '330'\n"
    assert env.api("nway_rm_group") == f"{usage('nway_rm_group')} (missing group)\n"


def test_nway_rm_group_refused_while_callers_wait(env: Env) -> None:
    assert env.api("nway_add_group 332 0").startswith("+OK")
    caller = env.cc.call(env.node1, "13900000332", "7332")
    wait_until(lambda: env.cc.queue.waiting("332"), 5, "caller queued")
    assert env.api("nway_rm_group 332") == \
        "-ERR group 332 has 1 caller(s) waiting; remove it when they are served\n"
    assert env.cc.groups.get("332") is not None
    env.node1.hangup(caller, "NORMAL_CLEARING")
    wait_until(lambda: not env.cc.queue.waiting("332"), 5, "the caller gone")
    assert env.api("nway_rm_group 332") == "+OK group 332 removed\n"


def test_nway_set_ring_group(env: Env) -> None:
    assert env.api("nway_add_group 340 0").startswith("+OK")
    assert env.console("nway_set_ring_group 340 /nway/welcome.wav /nway/black.wav "
                       "/nway/busy.wav /nway/transfer.wav") == \
        "+OK group 340 rings: welcome /nway/welcome.wav, blacklist /nway/black.wav, " \
        "busy /nway/busy.wav, transfer /nway/transfer.wav\n"
    columns = "welcome_ring, black_list_ring, busy_ring, transfer_ring"
    assert env.sql(f"SELECT {columns} FROM ext_group WHERE group_number = '340'") == \
        [("/nway/welcome.wav", "/nway/black.wav", "/nway/busy.wav", "/nway/transfer.wav")]
    assert env.api("nway_set_ring_group 340 - - /nway/busy2.wav -").startswith("+OK")
    group = env.cc.groups.get("340")
    assert group is not None
    assert (group.welcome_ring, group.black_list_ring, group.busy_ring, group.transfer_ring) \
        == ("/nway/welcome.wav", "/nway/black.wav", "/nway/busy2.wav", "/nway/transfer.wav")
    ring = usage("nway_set_ring_group")
    assert env.api("nway_set_ring_group 349 a.wav b.wav c.wav d.wav") == \
        "-ERR unknown group '349'\n"
    assert env.api('nway_set_ring_group 340 a.wav "b".wav c.wav d.wav') == \
        f"{ring} (invalid blacklist ring '\"b\".wav')\n"
    assert env.api("nway_set_ring_group 340 a.wav b.wav c.wav") == \
        f"{ring} (missing transfer ring)\n"
    assert env.sql("SELECT welcome_ring FROM ext_group WHERE group_number = '340'") == \
        [("/nway/welcome.wav",)]


def test_list_commands_print_aligned_tables_or_json(env: Env) -> None:
    assert env.api("nway_add_group 350 3 Support").startswith("+OK")
    assert env.api("nway_add_ext 1150 8001").startswith("+OK")
    assert env.api("nway_login 1150 350").startswith("+OK")
    rows = {r["extension"]: r for r in parse_table(env.console("nway_list_exts"))}
    assert rows["1150"] == {"extension": "1150", "job_number": "8001", "enabled": "true",
                            "logged_in": "true", "groups": "350", "reg_state": "unreg",
                            "reg_node": "-", "seat_status": "idle", "call_state": "ready",
                            "call": "-", "skills": "-"}
    listed = json.loads(env.api("nway_list_exts json"))
    assert listed["row_count"] == len(listed["rows"]) == len(rows)
    assert [r for r in listed["rows"] if r["extension"] == "1150"][0]["groups"] == ["350"]

    text = env.console("nway_list_groups")
    assert text.endswith(f"\n\n{len(env.cc.groups.numbers())} total.\n")
    groups = {r["group"]: r for r in parse_table(text)}
    assert groups["350"]["name"] == "Support" and groups["350"]["mode"] == "3"
    assert groups["350"]["members"] == "1150" and groups["350"]["free"] == "0"
    data = json.loads(env.api("nway_list_groups json"))
    assert [r for r in data["rows"] if r["group"] == "350"][0]["members"] == ["1150"]

    assert env.api("nway_list_exts all") == f"{usage('nway_list_exts')} " \
        "(unexpected argument 'all')\n"
    assert env.api("nway_list_groups x json") == f"{usage('nway_list_groups')} " \
        "(unexpected argument 'x')\n"


def test_nwayacd_status_summary(env: Env) -> None:
    env.cc.group("360", group_callout_timeout=5, wrapup_seconds=0)
    env.phone("1160", groups=["360"])
    assert env.api("nway_busy 1160").startswith("+OK")
    caller = env.cc.call(env.node1, "13900001160", "7360")
    wait_until(lambda: env.cc.queue.waiting("360"), 5, "caller queued")
    text = env.console("nwayacd")
    assert text.startswith("fsapps ") and "ACD on node node1" in text
    assert "callers waiting: 1\n" in text and "busy " in text
    assert {"group": "360", "name": "group 360", "mode": "5", "members": "1",
            "free": "0", "waiting": "1"} in parse_table(text.split("\n\n", 1)[1])
    status = json.loads(env.api("nwayacd json"))
    assert status["waiting"] == 1 and status["node"] == "node1"
    assert status["waiting_calls"][0]["uuid"] == caller.uuid
    assert status["by_state"]["busy"] >= 1
    assert env.api("nwayacd now") == f"{usage('nwayacd')} (unexpected argument 'now')\n"


# ------------------------------------------------------------------------ agents ----------
def test_nway_login_and_logout(env: Env) -> None:
    for group in ("370", "371", "372"):
        assert env.api(f"nway_add_group {group} 0").startswith("+OK")
    assert env.console("nway_login 1170 370,371,372") == \
        "+OK agent 1170 logged into 370,371,372\n"
    agent = env.agent("1170")
    assert agent is not None and agent.groups == ("370", "371", "372") and agent.logged_in
    assert agent.seat_status == "idle" and agent.call_state == "ready"
    assert all("1170" in env.cc.groups.members(g) for g in ("370", "371", "372"))
    assert env.sql("SELECT ext_group_number FROM ext_group_map WHERE ext = '1170' "
                   "ORDER BY 1") == [("370",), ("371",), ("372",)]
    assert env.api("nway_login 1170 371") == "+OK agent 1170 logged into 371\n"
    assert env.cc.groups.members("370") == []
    assert env.api("nway_login 1170 371,379") == \
        "-ERR unknown group(s) '379' for agent '1170'\n"
    assert env.api("nway_login 1171 379") == "-ERR unknown group(s) '379' for agent '1171'\n"
    assert env.agent("1171") is None
    login = usage("nway_login")
    assert env.api("nway_login 1170") == f"{login} (missing group list)\n"
    assert env.api("nway_login 1170 371,,372") == f"{login} (invalid group list '371,,372')\n"

    assert env.console("nway_logout 1170") == "+OK agent 1170 logged out (was in 371)\n"
    agent = env.agent("1170")
    assert agent is not None and agent.groups == () and not agent.logged_in
    assert agent.seat_status == "busy"
    assert env.sql("SELECT count(*) FROM ext_group_map WHERE ext = '1170'") == [(0,)]
    assert env.api("nway_logout 1179") == \
        "-ERR unknown extension '1179' (add it with nway_add_ext)\n"
    assert env.api("nway_logout") == f"{usage('nway_logout')} (missing extension)\n"


def test_nway_busy_and_ready(env: Env) -> None:
    env.phone("1180", groups=[])
    assert env.console("nway_busy 1180") == "+OK agent 1180 busy\n"
    agent = env.agent("1180")
    assert agent is not None and (agent.seat_status, agent.call_state) == ("busy", "busy")
    assert env.console("nway_ready 1180") == "+OK agent 1180 ready\n"
    agent = env.agent("1180")
    assert agent is not None and (agent.seat_status, agent.call_state) == ("idle", "ready")
    for name in ("nway_busy", "nway_ready"):
        assert env.api(f"{name} 1189") == \
            "-ERR unknown extension '1189' (add it with nway_add_ext)\n"
        assert env.api(f"{name} 11 89") == f"{usage(name)} (unexpected argument '89')\n"


# ------------------------------------------------------------------------ channels --------
def test_hold_and_unhold_a_call_on_this_node(env: Env) -> None:
    caller, agent_leg = env.bridged_call("410", "1410", "13900001410")
    assert env.console(f"nway_uuid_hold {caller.uuid}") == \
        f"+OK {caller.uuid} on hold (node node1)\n"
    env.node1.bus.wait_for(lambda e: e.name == "CHANNEL_HOLD"
                           and e.headers.get("Unique-ID") == caller.uuid, 3)
    heard = env.node1.hears(agent_leg)
    assert caller.uuid not in heard and "media:local_stream://moh" in heard
    assert env.api(f"nway_uuid_unhold {caller.uuid}") == \
        f"+OK {caller.uuid} off hold (node node1)\n"
    env.node1.bus.wait_for(lambda e: e.name == "CHANNEL_UNHOLD"
                           and e.headers.get("Unique-ID") == caller.uuid, 3)
    assert caller.uuid in env.node1.hears(agent_leg)

    gone = "00000000-0000-0000-0000-000000000000"
    assert env.api(f"nway_uuid_hold {gone}") == f"-ERR no such channel {gone}\n"
    assert env.api("nway_uuid_hold not-a-uuid") == \
        f"{usage('nway_uuid_hold')} (invalid uuid 'not-a-uuid')\n"
    assert env.api("nway_uuid_unhold") == f"{usage('nway_uuid_unhold')} (missing uuid)\n"
    assert env.api("nway_ready 1410") == "+OK agent 1410 ready when its call ends (talking)\n"
    # an agent on a call is not removed under it
    assert env.api("nway_rm_ext 1410") == \
        "-ERR extension '1410' is on a call (talking); remove it when the call is over\n"
    assert env.agent("1410") is not None


def test_nwayacd_transfer_sends_the_channel_to_the_extension(env: Env) -> None:
    env.phone("1421")
    caller, agent_leg = env.bridged_call("420", "1420", "13900001420")
    assert env.console(f"nwayacd_transfer {caller.uuid} 1421") == \
        f"+OK transferred {caller.uuid} to 1421 (node node1)\n"
    wait_until(lambda: caller.destination_number == "1421" and caller.peer
               and caller.peer != agent_leg and env.hears(env.node1, caller.uuid, caller.peer),
               5, "the caller talking to 1421")
    assert caller.up and caller.context == "default"
    assert caller.get("transfer_ringback") is None  # group 420 has no transfer ring
    wait_until(lambda: (a := env.agent("1420")) is not None and a.call_state == "ready", 5,
               "agent 1420 free again")
    transfer = usage("nwayacd_transfer")
    assert env.api(f"nwayacd_transfer {caller.uuid}") == f"{transfer} (missing extension)\n"
    assert env.api(f"nwayacd_transfer {caller.uuid} 1421,1422") == \
        f"{transfer} (invalid extension '1421,1422')\n"
    gone = "00000000-0000-0000-0000-000000000001"
    assert env.api(f"nwayacd_transfer {gone} 1421") == f"-ERR no such channel {gone}\n"


def ringing_leg(switch: Switch, ext: str) -> Channel:
    """The leg ringing phone ``ext``, once it rings."""
    def find() -> Channel | None:
        for channel in list(switch.channels.values()):
            if channel.get("dialed_user") == ext and not channel.answered \
                    and "progress" in channel.times:
                return channel
        return None
    found: Channel = wait_until(find, 5, f"phone {ext} ringing")
    return found


def test_nwayacd_transfer_plays_the_group_transfer_ring(env: Env) -> None:
    """Seed 001: the group's transfer ring (nway_set_ring_group's fourth file) is what the
    transferred caller hears while the new extension rings; then it talks to that phone."""
    env.phone("1426", answer_after_ms=None)  # rings until the test answers it
    caller, agent_leg = env.bridged_call("425", "1425", "13900001425")
    assert env.api("nway_set_ring_group 425 - - - /nway/transfer.wav").startswith("+OK")
    assert env.api(f"nwayacd_transfer {caller.uuid} 1426") == \
        f"+OK transferred {caller.uuid} to 1426 (node node1)\n"
    leg = ringing_leg(env.node1, "1426")
    wait_until(lambda: env.hears(env.node1, caller.uuid, "media:/nway/transfer.wav"), 5,
               "the caller hearing the transfer ring")
    assert caller.get("transfer_ringback") == "/nway/transfer.wav"
    assert agent_leg not in env.node1.hears(caller.uuid)
    env.node1.answer(leg)
    wait_until(lambda: caller.peer == leg.uuid and env.hears(env.node1, caller.uuid, leg.uuid),
               5, "the caller talking to 1426")
    assert "media:/nway/transfer.wav" not in env.node1.hears(caller.uuid)  # ringing is over


def test_nwayacd_transfer_of_the_agent_leg_rings_the_caller_group_ring(env: Env) -> None:
    """``-bleg`` (mod_cti's transfer of the agent's peer): the caller moves and hears the
    ring; the group is found on the agent's leg named in the command."""
    env.phone("1428", answer_after_ms=None)
    caller, agent_leg = env.bridged_call("427", "1427", "13900001427")
    assert env.api("nway_set_ring_group 427 - - - /nway/transfer427.wav").startswith("+OK")
    def execute(cmd: str, args: str) -> str:
        return env.node1.api(f"{cmd} {args}")
    reply = nodecommands.serve(env.cc.ctx, execute, "node1", nodecommands.Transfer(
        uuid=agent_leg, extension="1428", leg="bleg")).text
    assert reply == f"+OK transferred {agent_leg} peer to 1428 (node node1)\n"
    ringing_leg(env.node1, "1428")
    wait_until(lambda: env.hears(env.node1, caller.uuid, "media:/nway/transfer427.wav"), 5,
               "the caller hearing the transfer ring")


def third_party(switch: Switch, uuid: str) -> Channel:
    """The leg running ``three_way`` into ``uuid``, once it is in."""
    def find() -> Channel | None:
        for channel in list(switch.channels.values()):
            if channel.get("fsapps_threeway_with") == uuid and channel.eavesdrop:
                return channel
        return None
    found: Channel = wait_until(find, 5, f"a three-way leg into {uuid[:8]}")
    return found


def test_nway_threeway_invites_a_number_through_a_gateway_or_an_extension(env: Env) -> None:
    caller, agent_leg = env.bridged_call("430", "1430", "13900001430")
    reply = env.console(f"nway_threeway {caller.uuid} 018621575908 gw1")
    assert reply.startswith(f"+OK inviting 018621575908 via gw1 into {caller.uuid} (Job-UUID: ")
    third = third_party(env.node1, caller.uuid)
    assert third.name.startswith("sofia/gateway/gw1/018621575908")
    for uuid in (caller.uuid, agent_leg):  # both parties hear the third, and it hears both
        assert third.uuid in env.node1.hears(uuid)
        assert uuid in env.node1.hears(third.uuid)
    env.node1.hangup(third)

    env.phone("1431")
    assert env.api(f"nway_threeway {agent_leg} 1431 -").startswith(
        f"+OK inviting 1431 into {agent_leg} (Job-UUID: ")
    colleague = third_party(env.node1, agent_leg)
    assert colleague.uuid in env.node1.hears(caller.uuid)

    three = usage("nway_threeway")
    assert env.api(f"nway_threeway {caller.uuid} 0186,1000 gw1") == \
        f"{three} (invalid phone '0186,1000')\n"
    assert env.api(f"nway_threeway {caller.uuid} 018621575908 gw/1") == \
        f"{three} (invalid gateway 'gw/1')\n"
    assert env.api(f"nway_threeway {caller.uuid}") == f"{three} (missing extension)\n"


def test_channel_commands_reach_the_node_that_owns_the_call(env: Env) -> None:
    """Issued on node1 for a call on node2: a node command, and node2's answer is the reply."""
    env.phone("1441", switch=env.node2)
    caller, agent_leg = env.bridged_call("440", "1440", "13900001440", switch=env.node2)
    assert caller.uuid not in env.node1.channels
    nodes = Nodes(env.cc.ctx)
    wait_until(lambda: nodes.owner(caller.uuid) == "node2", 3, "node2 recorded the call")

    assert env.console(f"nway_uuid_hold {caller.uuid}") == \
        f"+OK {caller.uuid} on hold (node node2)\n"
    env.node2.bus.wait_for(lambda e: e.name == "CHANNEL_HOLD"
                           and e.headers.get("Unique-ID") == caller.uuid, 3)
    assert env.api(f"nway_uuid_unhold {caller.uuid}") == \
        f"+OK {caller.uuid} off hold (node node2)\n"
    assert caller.uuid in env.node2.hears(agent_leg)

    assert env.api(f"nway_threeway {caller.uuid} 13800000000 gw1").startswith(
        f"+OK inviting 13800000000 via gw1 into {caller.uuid} (Job-UUID: ")
    third = third_party(env.node2, caller.uuid)
    assert third.uuid in env.node2.hears(caller.uuid)
    env.node2.hangup(third)

    assert env.api(f"nwayacd_transfer {caller.uuid} 1441") == \
        f"+OK transferred {caller.uuid} to 1441 (node node2)\n"
    wait_until(lambda: caller.destination_number == "1441" and caller.peer
               and caller.peer != agent_leg, 5, "the caller talking to 1441 on node2")
    env.node2.hangup(caller)
    wait_until(lambda: nodes.owner(caller.uuid) is None, 3, "node2 forgot the call")


def test_channel_command_errors_from_the_owning_node(env: Env,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The owning node's refusal is the reply; a node that never answers times out."""
    nodes = Nodes(env.cc.ctx)
    stale = "11111111-2222-3333-4444-555555555555"  # recorded by node2, gone since
    env.cc.ctx.redis.sadd(env.cc.ctx.node_keys.channels("node2"), stale)
    try:
        assert env.api(f"nway_uuid_hold {stale}") == \
            f"-ERR hold {stale}: Operation Failed (node node2)\n"
        assert env.api(f"nwayacd_transfer {stale} 1000") == \
            f"-ERR transfer {stale}: No such channel! (node node2)\n"
    finally:
        env.cc.ctx.redis.srem(env.cc.ctx.node_keys.channels("node2"), stale)
    ghost = "66666666-7777-8888-9999-000000000000"  # on a node that beats but serves nothing
    nodes.heartbeat("ghost")
    nodes.channel_created("ghost", ghost)
    monkeypatch.setattr(commands, "REPLY_TIMEOUT_S", 0.3)
    try:
        assert env.api(f"nway_uuid_unhold {ghost}") == f"-ERR node ghost holding {ghost} " \
            "did not answer within 0.3 s (the command may still run there)\n"
    finally:
        nodes.forget("ghost")
        env.cc.ctx.redis.delete(env.cc.ctx.node_keys.channels("ghost"),
                                env.cc.ctx.node_keys.commands("ghost"))


# ------------------------------------------------------------------------ failures --------
# Last: stopping the test Redis empties it.
@pytest.fixture
def redis_down(redis_server: RedisServer) -> Iterator[RedisServer]:
    try:
        yield redis_server
    finally:
        if not redis_server.running:
            redis_server.start()


@pytest.fixture
def failing_commit(env: Env) -> Iterator[None]:
    """PostgreSQL refuses to commit a change to extension 19xx or its group memberships (a
    deferred constraint trigger: the statements succeed, the COMMIT fails)."""
    env.sql("""
        CREATE FUNCTION fsapps_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'test refuses the commit'; END $$;
        CREATE CONSTRAINT TRIGGER fsapps_test_refuse AFTER INSERT OR UPDATE ON extensions
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.number LIKE '19%%')
            EXECUTE FUNCTION fsapps_test_refuse();
        CREATE CONSTRAINT TRIGGER fsapps_test_refuse AFTER INSERT ON ext_group_map
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.ext LIKE '19%%')
            EXECUTE FUNCTION fsapps_test_refuse();""")
    try:
        yield
    finally:
        env.sql("DROP TRIGGER fsapps_test_refuse ON extensions; "
                "DROP TRIGGER fsapps_test_refuse ON ext_group_map; "
                "DROP FUNCTION fsapps_test_refuse()")


def test_a_failed_commit_puts_redis_back(env: Env, failing_commit: None) -> None:
    assert env.api("nway_add_group 910 0").startswith("+OK")
    reply = env.api("nway_add_ext 1900 55")
    assert reply == "-ERR PostgreSQL refused the change: test refuses the commit; " \
                    "nothing changed\n"
    assert env.agent("1900") is None
    assert "1900" not in env.cc.ctx.redis.smembers(env.cc.ctx.keys(DOMAIN).agents())
    assert env.sql("SELECT count(*) FROM extensions WHERE number = '1900'") == [(0,)]

    assert env.api("nway_login 1901 910").endswith("; nothing changed\n")
    agent = env.agent("1901")  # the login made the agent first; its groups are put back
    assert agent is not None and agent.groups == () and not agent.logged_in
    assert env.cc.groups.members("910") == []
    assert env.sql("SELECT count(*) FROM ext_group_map WHERE ext = '1901'") == [(0,)]


def test_redis_down_answers_err_and_leaves_postgresql_unchanged(
        env: Env, redis_down: RedisServer) -> None:
    redis_down.stop()
    reply = env.api("nway_add_ext 1910 66")
    assert reply.startswith("-ERR Redis at redis://127.0.0.1:") and "is unavailable" in reply
    assert reply.endswith("; nothing changed\n")
    assert env.sql("SELECT count(*) FROM extensions WHERE number = '1910'") == [(0,)]


def test_redis_failing_mid_command_leaves_postgresql_unchanged(
        env: Env, redis_down: RedisServer) -> None:
    """Redis stops in the middle of ``nway_login``: the command has read Redis (the groups,
    the agent) and waits on PostgreSQL (a lock the test holds); then its DELETE and INSERT run,
    its Redis write fails, and the transaction is rolled back: the agent is still a member of
    its old group in PostgreSQL."""
    for group in ("930", "931"):
        assert env.api(f"nway_add_group {group} 0").startswith("+OK")
    assert env.api("nway_login 1920 930").startswith("+OK")
    holder = psycopg2.connect(env.dsn)
    replies: list[str] = []
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE ext_group_map IN SHARE MODE")  # its writes wait
        worker = threading.Thread(target=lambda: replies.append(env.api("nway_login 1920 931")))
        worker.start()
        blocked: Callable[[], list[tuple[Any, ...]]] = lambda: env.sql(  # noqa: E731
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'DELETE FROM ext_group_map %%'")
        wait_until(blocked, 5, "the command's DELETE waiting on the lock")
        redis_down.stop()
        holder.commit()
        worker.join(15)
    finally:
        holder.close()
    assert len(replies) == 1 and replies[0].startswith("-ERR Redis at ")
    assert replies[0].endswith("; nothing changed\n")
    assert env.sql("SELECT ext_group_number FROM ext_group_map WHERE ext = '1920'") == \
        [("930",)]


def test_a_stopping_runtime_hands_a_command_back_to_the_live_one(
        redis_server: RedisServer, database: FreshDatabase) -> None:
    """A runtime that takes a command after its switch stopped (a reloaded runtime, a switch
    shutting down while the next one already serves the node's name) puts it back at the
    front of the node's queue instead of answering it with channels that are gone."""
    from fsapps.switch.runtime import NodeRuntime

    class Stopped:  # the freeswitch module of a switch that is no longer running
        @staticmethod
        def running() -> bool:
            return False

    for cc in center(redis_server.url, database.dsn):
        nodes = Nodes(cc.ctx)
        queue = cc.ctx.node_keys.commands("node9")
        first, second = {"cmd": "status", "n": 1}, {"cmd": "status", "n": 2}
        for command in (first, second):
            cc.ctx.redis.rpush(queue, json.dumps(command))
        NodeRuntime(cc.ctx, Stopped, "node9").serve_commands()
        assert nodes.next_command("node9", 0.1) == first
        assert nodes.next_command("node9", 0.1) == second
