"""Shared set-up for ACD scenario tests: fsapps configured against the test Redis and a
migrated PostgreSQL database, fake switches running the project's dialplan and
python.conf.xml (so fsapps.runtime runs on each node), agents and groups."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import psycopg2

from fakefs import Behaviour, Switch
from fakefs.scenario import DIALPLAN_DIR, PYTHON_CONF, wait_until
from fsapps import acd, context
from fsapps.agents import Agent, Agents
from fsapps.callqueue import CallQueue
from fsapps.config import (
    EventSettings,
    GroupDefaults,
    PostgresSettings,
    RedisSettings,
    Secret,
    Settings,
)
from fsapps.db.migrations import migrate
from fsapps.groups import Group, Groups

DOMAIN = "cc.test"
TABLES = ("cdr_agent_attempt", "cdr", "caller_memory", "group_vip", "group_blacklist",
          "ext_group_map", "ext_group", "extensions")


def settings_for(redis_url: str, dsn: str, *, cluster: bool = False,
                 **defaults: Any) -> Settings:
    """Settings for the test servers; ``cluster`` when ``redis_url`` is a Redis Cluster node."""
    group_defaults = GroupDefaults(**{"wrapup_seconds": 0, "lease_margin_seconds": 2,
                                      "busy_ring_interval_seconds": 30, **defaults})
    return Settings(redis=RedisSettings(url=Secret(redis_url), key_prefix="t",
                                        cluster=cluster),
                    postgres=PostgresSettings(dsn=Secret(dsn)), domains=(DOMAIN,),
                    default_domain=DOMAIN, group_defaults=group_defaults,
                    events=EventSettings(pubsub_format="json", cti_ip="127.0.0.1"))


def reset_database(dsn: str) -> None:
    migrate(dsn)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    finally:
        conn.close()


class CallCenter:
    """fsapps + N fake switches sharing one Redis."""

    def __init__(self, settings: Settings, time_scale: float = 1.0) -> None:
        self.ctx = context.configure(settings)
        self.ctx.redis.flushall()
        self.switches: list[Switch] = []
        self.time_scale = time_scale
        self.agents = Agents(self.ctx, DOMAIN)
        self.groups = Groups(self.ctx, DOMAIN)
        self.queue = CallQueue(self.ctx, DOMAIN)

    def start_switch(self, name: str | None = None) -> Switch:
        switch = Switch(name or f"node{len(self.switches) + 1}", dialplan_dir=DIALPLAN_DIR,
                        python_conf=PYTHON_CONF, domain=DOMAIN,
                        ipv4=f"127.0.0.{11 + len(self.switches)}", time_scale=self.time_scale,
                        seed=len(self.switches) + 1)
        self.switches.append(switch)
        switch.start()
        wait_until(lambda: switch.name in self.ctx.redis.zrange("t:{nodes}:nodes", 0, -1),
                   5, f"{switch.name} runtime heartbeat")
        return switch

    def group(self, number: str, **fields: Any) -> Group:
        group = Group(number, group_name=f"g{number}", domain=DOMAIN, **fields)
        self.groups.save(group)
        return group

    def agent(self, extension: str, groups: list[str], *, switch: Switch | None = None,
              behaviour: Behaviour | None = None, ready: bool = True) -> None:
        """An agent: a phone registered on ``switch`` (default the first), logged into
        ``groups``, idle and ready."""
        switch = switch or self.switches[0]
        if (extension, DOMAIN) not in switch.static_directory:
            for sw in self.switches:
                sw.add_user(extension, DOMAIN, password="1234")
        acd.login(self.ctx, DOMAIN, extension, groups)
        if not ready:
            acd.set_busy(self.ctx, DOMAIN, extension)
        result = switch.register(extension, DOMAIN, password="1234",
                                 behaviour=behaviour or Behaviour(answer_after_ms=50))
        assert result.ok, result
        wait_until(lambda: self.get(extension).reg_state == "reged", 5,
                   f"agent {extension} registered")

    def get(self, extension: str) -> Agent:
        agent = self.agents.get(extension)
        assert agent is not None, extension
        return agent

    def call(self, switch: Switch, caller: str, dest: str, **behaviour: Any) -> Any:
        return switch.place_call(caller, dest, domain=DOMAIN,
                                 behaviour=Behaviour(**behaviour), context="default")

    def close(self) -> None:
        for switch in self.switches:
            switch.shutdown(grace=3.0)
        crashed = [s.name for s in self.switches if s.crashed]
        assert not crashed, crashed


def replace(group: Group, **changes: Any) -> Group:
    return dataclasses.replace(group, **changes)


def center(redis_url: str, dsn: str, *, cluster: bool = False,
           **defaults: Any) -> Iterator[CallCenter]:
    reset_database(dsn)
    cc = CallCenter(settings_for(redis_url, dsn, cluster=cluster, **defaults))
    try:
        yield cc
    finally:
        cc.close()
