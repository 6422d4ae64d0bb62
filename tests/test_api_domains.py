"""The switch commands in a domain other than the default one: ``1000@b.test`` and
``5001@b.test`` wherever seed 001 takes an extension or a group. Sent as fs_cli sends them
(``api python fsapps.api ...`` and the seed's line through its alias) to a fake node running
the project's dialplan and runtime, against the test Redis and PostgreSQL, with two
configured domains: cc.test (the default) and b.test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from fakefs import Behaviour, Channel, Switch
from fakefs.scenario import wait_until
from fsapps.domain.agents import Agent, Agents
from fsapps.domain.groups import Groups
from fsapps.switch import commands, nodecommands
from tests.acd_support import DOMAIN, settings_for, sql
from tests.test_api_commands import LOCAL_EXTENSIONS, ringing_leg, third_party
from tools.callcenter import SimulatedCallCenter, reset_database
from tools.servers import FreshDatabase, RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads")

OTHER = "b.test"


@dataclass
class Env:
    cc: SimulatedCallCenter
    node: Switch
    dsn: str

    def api(self, line: str) -> str:
        return self.node.api(f"python fsapps.api {line}")

    def console(self, line: str) -> str:
        return self.node.console(line)

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        return sql(self.dsn, query, *params)

    def agent(self, ext: str, domain: str = OTHER) -> Agent | None:
        return Agents(self.cc.ctx, domain).get(ext)

    def phone(self, ext: str, domain: str = OTHER, **behaviour: Any) -> None:
        """A phone registered for ``ext@domain`` (not logged into any group)."""
        self.node.add_user(ext, domain, password="1234")
        result = self.node.register(ext, domain, password="1234", behaviour=Behaviour(
            **{"answer_after_ms": 50, **behaviour}))
        assert result.ok, result
        wait_until(lambda: (a := self.agent(ext, domain)) is not None
                   and a.reg_state == "reged", 5, f"{ext}@{domain} registered")


@pytest.fixture(scope="module")
def env(redis_server: RedisServer, database: FreshDatabase) -> Iterator[Env]:
    reset_database(database.dsn)
    settings = dataclasses.replace(settings_for(redis_server.url, database.dsn),
                                   domains=(DOMAIN, OTHER))
    cc = SimulatedCallCenter(settings)
    try:
        node = cc.start_switch("node1")
        node.dialplan.load_text(LOCAL_EXTENSIONS)
        yield Env(cc, node, database.dsn)
    finally:
        cc.close()


def usage(name: str) -> str:
    return f"-ERR usage: {commands.COMMANDS[name].usage}"


def test_extension_commands_act_in_the_named_domain(env: Env) -> None:
    assert env.console(f"nway_add_ext 1500@{OTHER} 77") == \
        f"+OK extension 1500@{OTHER} added (job number 77, enabled)\n"
    assert env.sql("SELECT domain, job_number FROM extensions WHERE number = '1500'") == \
        [(OTHER, "77")]
    agent = env.agent("1500")
    assert agent is not None and agent.job_number == "77"
    assert env.agent("1500", DOMAIN) is None  # the default domain has no 1500
    assert env.api("nway_set_reged_ext 1500") == \
        "-ERR unknown extension '1500' (add it with nway_add_ext)\n"

    assert env.api(f"nway_set_ext_jobnumber 1500@{OTHER} 78 false") == \
        f"+OK extension 1500@{OTHER} job number 78, disabled\n"
    agent = env.agent("1500")
    assert agent is not None and not agent.enabled and agent.seat_status == "busy"
    assert env.api(f"nway_set_reged_ext 1500@{OTHER}") == \
        f"+OK extension 1500@{OTHER} registered\n"
    assert env.api(f"nway_set_unreg_ext 1500@{OTHER}") == \
        f"+OK extension 1500@{OTHER} unregistered\n"
    agent = env.agent("1500")
    assert agent is not None and agent.reg_state == "unreg"

    # the same number in the default domain is another extension
    assert env.api("nway_add_ext 1500 99").startswith("+OK extension 1500 added")
    assert env.api(f"nway_rm_ext 1500@{OTHER}") == f"+OK extension 1500@{OTHER} removed\n"
    assert env.agent("1500") is None and env.agent("1500", DOMAIN) is not None
    assert env.sql("SELECT domain, job_number FROM extensions WHERE number = '1500'") == \
        [(DOMAIN, "99")]
    assert env.api(f"nway_rm_ext 1500@{OTHER}") == f"-ERR unknown extension '1500@{OTHER}'\n"
    # the default domain written out is the default domain
    assert env.api(f"nway_rm_ext 1500@{DOMAIN}") == f"+OK extension 1500@{DOMAIN} removed\n"


def test_group_and_agent_commands_act_in_the_named_domain(env: Env) -> None:
    assert env.console(f"nway_add_group 550@{OTHER} 1 Tenant B") == \
        f"+OK group 550@{OTHER} added (mode 1 random, name Tenant B)\n"
    assert env.sql("SELECT domain, group_call_mode FROM ext_group "
                   "WHERE group_number = '550'") == [(OTHER, 1)]
    assert "550" in Groups(env.cc.ctx, OTHER).numbers()
    assert "550" not in Groups(env.cc.ctx, DOMAIN).numbers()
    assert env.api(f"nway_set_ring_group 550@{OTHER} /b/welcome.wav - - /b/transfer.wav") == \
        f"+OK group 550@{OTHER} rings: welcome /b/welcome.wav, blacklist -, busy -, " \
        "transfer /b/transfer.wav\n"
    assert env.api("nway_set_ring_group 550 a.wav - - -") == "-ERR unknown group '550'\n"
    assert env.api(f"nway_add_group 551@{OTHER} 0").startswith("+OK")

    # a plain group is in the domain the extension names, and the other way round
    assert env.console(f"nway_login 1510@{OTHER} 550,551@{OTHER}") == \
        f"+OK agent 1510@{OTHER} logged into 550,551\n"
    agent = env.agent("1510")
    assert agent is not None and agent.groups == ("550", "551") and agent.logged_in
    assert env.sql("SELECT ext_group_number FROM ext_group_map WHERE ext = '1510' "
                   "ORDER BY 1") == [("550",), ("551",)]
    assert env.api(f"nway_login 1510 550@{OTHER}") == \
        f"+OK agent 1510@{OTHER} logged into 550\n"
    assert env.api("nway_login 1510 550") == "-ERR unknown group(s) '550' for agent '1510'\n"
    assert env.agent("1510", DOMAIN) is None

    assert env.api(f"nway_busy 1510@{OTHER}") == f"+OK agent 1510@{OTHER} busy\n"
    agent = env.agent("1510")
    assert agent is not None and agent.seat_status == "busy"
    assert env.api(f"nway_ready 1510@{OTHER}") == f"+OK agent 1510@{OTHER} ready\n"
    assert env.api("nway_ready 1510") == \
        "-ERR unknown extension '1510' (add it with nway_add_ext)\n"
    assert env.api(f"nway_logout 1510@{OTHER}") == \
        f"+OK agent 1510@{OTHER} logged out (was in 550)\n"
    assert env.api(f"nway_rm_group 551@{OTHER}") == f"+OK group 551@{OTHER} removed\n"
    assert Groups(env.cc.ctx, OTHER).get("551") is None


def test_an_unknown_domain_is_refused_and_nothing_changes(env: Env) -> None:
    assert env.api("nway_add_ext 1520@x.test 1") == \
        f"-ERR unknown domain 'x.test' in extension '1520@x.test' " \
        f"(configured: {DOMAIN}, {OTHER})\n"
    assert env.api("nway_add_group 560@x.test 0") == \
        f"-ERR unknown domain 'x.test' in group '560@x.test' (configured: {DOMAIN}, {OTHER})\n"
    assert env.api("nway_login 1520 560@x.test").startswith(
        "-ERR unknown domain 'x.test' in group '560@x.test'")
    assert env.sql("SELECT count(*) FROM extensions WHERE number = '1520'") == [(0,)]
    assert env.sql("SELECT count(*) FROM ext_group WHERE group_number = '560'") == [(0,)]
    assert env.agent("1520") is None and env.agent("1520", DOMAIN) is None
    # a malformed value is a usage error, as before
    ext = usage("nway_add_ext")
    assert env.api("nway_add_ext 1520@") == f"{ext} (invalid extension '1520@')\n"
    assert env.api("nway_add_ext 1520@a@b") == f"{ext} (invalid extension '1520@a@b')\n"
    assert env.api("nway_add_ext 1520@{x}") == f"{ext} (invalid extension '1520@{{x}}')\n"
    assert env.api("nway_add_ext @b.test") == f"{ext} (invalid extension '@b.test')\n"
    assert env.api("nway_login 1520 560,@b.test") == \
        f"{usage('nway_login')} (invalid group list '560,@b.test')\n"


def test_one_command_never_mixes_domains(env: Env) -> None:
    assert env.api(f"nway_add_group 570@{OTHER} 0").startswith("+OK")
    assert env.api("nway_add_group 571 0").startswith("+OK")  # the default domain's
    mixed = f"-ERR group '571@{DOMAIN}' is in domain '{DOMAIN}' but the command's other " \
        f"values are in '{OTHER}'; one command acts in one domain\n"
    assert env.api(f"nway_login 1530@{OTHER} 570,571@{DOMAIN}") == mixed
    assert env.api(f"nway_login 1530 570@{OTHER},571@{DOMAIN}") == mixed
    assert env.api(f"nway_login 1530@{DOMAIN} 570@{OTHER}") == \
        f"-ERR group '570@{OTHER}' is in domain '{OTHER}' but the command's other values " \
        f"are in '{DOMAIN}'; one command acts in one domain\n"
    # refused before anything was written, in either domain
    assert env.agent("1530") is None and env.agent("1530", DOMAIN) is None
    assert env.sql("SELECT count(*) FROM ext_group_map WHERE ext = '1530'") == [(0,)]
    assert Groups(env.cc.ctx, OTHER).members("570") == []
    assert Groups(env.cc.ctx, DOMAIN).members("571") == []


def bridged_call(env: Env, group: str, ext: str, caller: str) -> tuple[Channel, str]:
    """A default-domain caller talking to agent ``ext`` of group ``group``."""
    env.cc.group(group, group_call_mode=0, group_callout_timeout=5, wrapup_seconds=0)
    env.cc.agent(ext, [group], switch=env.node)
    channel = env.cc.call(env.node, caller, f"7{group}")
    wait_until(lambda: channel.peer and channel.peer in env.node.hears(channel.uuid), 5,
               f"{caller} talking to {ext}")
    assert channel.peer is not None
    return channel, channel.peer


def test_transfer_and_threeway_to_an_extension_of_another_domain(env: Env) -> None:
    env.phone("1541", answer_after_ms=None)  # b.test's 1541: rings until answered
    env.phone("1541", DOMAIN, answer_after_ms=None)  # the default domain's 1541
    env.phone("1542")
    caller, agent_leg = bridged_call(env, "580", "1540", "13900001540")
    assert env.api("nway_set_ring_group 580 - - - /nway/t580.wav").startswith("+OK")
    assert env.console(f"nwayacd_transfer {caller.uuid} 1541@{OTHER}") == \
        f"+OK transferred {caller.uuid} to 1541@{OTHER} (node node1)\n"
    leg = ringing_leg(env.node, "1541")
    assert leg.get("dialed_domain") == OTHER  # b.test's phone rings, not cc.test's
    assert caller.get("domain_name") == OTHER
    # the ring is the caller's group's (cc.test's group 580), wherever the transfer goes
    wait_until(lambda: "media:/nway/t580.wav" in env.node.hears(caller.uuid), 5,
               "the caller hearing the transfer ring")
    env.node.answer(leg)
    wait_until(lambda: caller.peer == leg.uuid, 5, "the caller talking to 1541@b.test")
    assert caller.peer != agent_leg

    assert env.api(f"nway_threeway {caller.uuid} 1542@{OTHER}").startswith(
        f"+OK inviting 1542@{OTHER} into {caller.uuid} (Job-UUID: ")
    third = third_party(env.node, caller.uuid)
    assert third.get("dialed_domain") == OTHER and third.get("dialed_user") == "1542"
    assert third.uuid in env.node.hears(caller.uuid)

    assert env.api(f"nwayacd_transfer {caller.uuid} 1541@x.test") == \
        f"-ERR unknown domain 'x.test' in extension '1541@x.test' " \
        f"(configured: {DOMAIN}, {OTHER})\n"
    assert env.api(f"nway_threeway {caller.uuid} 1542@{OTHER} gw1") == \
        f"{usage('nway_threeway')} (invalid phone '1542@{OTHER}')\n"
    for channel in list(env.node.channels.values()):
        env.node.hangup(channel, "NORMAL_CLEARING")
    wait_until(lambda: not env.node.channels, 5, "every call over")


def test_a_node_command_naming_an_unconfigured_domain_is_refused(env: Env) -> None:
    """A node command is only as trustworthy as whoever can write to Redis: the owning node
    checks the domain again."""
    reply = nodecommands.serve(
        env.cc.ctx, lambda cmd, args: env.node.api(f"{cmd} {args}"), "node1",
        {"cmd": "transfer", "uuid": "00000000-0000-0000-0000-000000000002", "extension": "1000",
         "domain": "x.test"}).text
    assert reply == "-ERR unknown domain 'x.test'\n"
