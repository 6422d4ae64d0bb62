"""A simulated call center: fsapps' ACD configured against a real Redis and a migrated
PostgreSQL database, with N fake switches running the project's dialplan/ and
python.conf.xml (so ``fsapps.runtime`` runs on each node). Used by ``make demo``,
``make bench`` and the ACD tests.
"""

from __future__ import annotations

from typing import Any

import psycopg2

from fakefs.channel import Behaviour, Channel
from fakefs.scenario import DIALPLAN_DIR, PUBLIC_DIALPLAN, PYTHON_CONF, wait_until
from fakefs.switch import Switch
from fsapps import context
from fsapps.config import (
    EventSettings,
    GroupDefaults,
    PostgresSettings,
    RedisSettings,
    Secret,
    Settings,
)
from fsapps.db.migrations import migrate
from fsapps.domain.agents import Agents
from fsapps.domain.callqueue import CallQueue
from fsapps.domain.groups import Group, Groups
from fsapps.switch import acd

TABLES = ("cdr_agent_attempt", "cdr", "caller_memory", "group_vip", "group_blacklist",
          "ext_group_map", "ext_group", "extensions")


def settings_for(redis_url: str, dsn: str, domain: str, *, cluster: bool = False,
                 **group_defaults: Any) -> Any:
    """fsapps settings for a simulation: one domain, short wrap-up and lease margins; Python
    at the fake switch's own priority (a fake switch has no media to run ahead of, and the
    double-offer stress's busy processes must weigh on the threads it tests)."""
    defaults = GroupDefaults(**{"wrapup_seconds": 0, "lease_margin_seconds": 2,
                                "busy_ring_interval_seconds": 30, **group_defaults})
    return Settings(redis=RedisSettings(url=Secret(redis_url), key_prefix="t", cluster=cluster),
                    postgres=PostgresSettings(dsn=Secret(dsn)), domains=(domain,),
                    default_domain=domain, group_defaults=defaults,
                    events=EventSettings(pubsub_format="json", cti_ip="127.0.0.1"),
                    python_priority="same")


def reset_database(dsn: str) -> None:
    """Migrate the database and empty fsapps' tables."""
    migrate(dsn)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    finally:
        conn.close()


class SimulatedCallCenter:
    """fsapps + fake switches sharing one Redis."""

    def __init__(self, settings: Any, time_scale: float = 1.0) -> None:
        self.ctx = context.configure(settings)
        self.domain = settings.default_domain
        self.ctx.redis.flushall()
        self.switches: list[Switch] = []
        self.time_scale = time_scale
        self.agents = Agents(self.ctx, self.domain)
        self.groups = Groups(self.ctx, self.domain)
        self.queue = CallQueue(self.ctx, self.domain)

    def start_switch(self, name: str | None = None) -> Switch:
        switch = Switch(name or f"node{len(self.switches) + 1}", dialplan_dir=DIALPLAN_DIR,
                        public_dialplan=PUBLIC_DIALPLAN,
                        python_conf=PYTHON_CONF, domain=self.domain,
                        # as on one host: events name the machine's address, SIP listens on
                        # 127.0.0.1, each node on ports of its own (F5)
                        ipv4=f"127.0.0.{11 + len(self.switches)}", sip_ip="127.0.0.1",
                        time_scale=self.time_scale, seed=len(self.switches) + 1)
        self.switches.append(switch)
        switch.start()
        nodes = self.ctx.node_keys.nodes()
        wait_until(lambda: switch.name in self.ctx.redis.zrange(nodes, 0, -1), 5,
                   f"{switch.name} runtime heartbeat")
        return switch

    def group(self, number: str, **fields: Any) -> Any:
        group = Group(number, group_name=fields.pop("group_name", f"group {number}"),
                      domain=self.domain, **fields)
        self.groups.save(group)
        return group

    def agent(self, extension: str, groups: list[str], *, switch: Switch | None = None,
              behaviour: Behaviour | None = None, ready: bool = True) -> None:
        """An agent: a phone registered on ``switch`` (default the first), logged into
        ``groups``, idle and ready unless ``ready=False``."""
        switch = switch or self.switches[0]
        for sw in self.switches:
            if (extension, self.domain) not in sw.static_directory:
                sw.add_user(extension, self.domain, password="1234")
        acd.login(self.ctx, self.domain, extension, groups)
        if not ready:
            acd.set_busy(self.ctx, self.domain, extension)
        earlier = self.registration_stamp(extension)
        result = switch.register(extension, self.domain, password="1234",
                                 behaviour=behaviour or Behaviour(answer_after_ms=50))
        if not result.ok:
            raise RuntimeError(f"agent {extension} could not register: {result}")
        # This registration's own record (its event's stamp), not only "reged": an agent
        # registered before is reged already while the runtime has yet to write this one's
        # reg_until, which would land in the middle of what the caller does next.
        wait_until(lambda: self.get(extension).reg_state == "reged"
                   and self.registration_stamp(extension) != earlier, 5,
                   f"agent {extension} registered")

    def registration_stamp(self, extension: str) -> str | None:
        """The stamp of the agent's last registration the runtime recorded (its event's)."""
        return self.ctx.redis.hget(self.agents.keys.agent(extension), "reg_stamp")

    def get(self, extension: str) -> Any:
        agent = self.agents.get(extension)
        if agent is None:
            raise KeyError(extension)
        return agent

    def call(self, switch: Switch, caller: str, dest: str, *, profile: str = "internal",
             **behaviour: Any) -> Channel:
        return switch.place_call(caller, dest, domain=self.domain, profile=profile,
                                 behaviour=Behaviour(**behaviour), context="default")

    def close(self) -> None:
        for switch in self.switches:
            switch.shutdown(grace=3.0)
        # every call handler done (its CDR written) before anyone empties the tables again
        lingering = [name for switch in self.switches for name in switch.join_threads()]
        crashed = [s.name for s in self.switches if s.crashed]
        if crashed:
            raise AssertionError(f"fake switch crashed: {crashed}")
        if lingering:
            raise AssertionError(f"threads still running 10 s after shutdown: {lingering}")
