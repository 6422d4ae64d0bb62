"""Exactly one CDR per call across nodes (issue 7): a queue call and a direct call on node1
ringing agents registered on node2 (through node2's fsapps_agent_<ext> relay extension) are
one row each — the relay leg on node2 and the legs it calls get none — and both nodes' spool
writers share the one spool without writing anything twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extras
import pytest

from fakefs import Behaviour
from fakefs.scenario import wait_until
from fsapps.events import cdr
from tests.acd_support import DOMAIN, CallCenter, center
from tools.servers import FreshDatabase, RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads")


@pytest.fixture
def cc(redis_server: RedisServer, database: FreshDatabase) -> Iterator[CallCenter]:
    yield from center(redis_server.url, database.dsn, callout_timeout=2)


def rows(dsn: str) -> list[dict[str, Any]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute("SELECT uuid, flag, destination_number, node FROM cdr")
            return [dict(r) for r in cur.fetchall()]
    finally:
        conn.close()


def test_calls_to_an_agent_on_another_node_one_row_each(cc: CallCenter,
                                                        database: FreshDatabase) -> None:
    node1, node2 = cc.start_switch("node1"), cc.start_switch("node2")
    cc.group("601", group_callout_timeout=2, wrapup_seconds=0, group_call_mode=0)
    cc.agent("6011", ["601"], switch=node2, behaviour=Behaviour(answer_after_ms=50))
    queued = cc.call(node1, "13900000601", "7601", hangup_after_bridge_ms=200)
    wait_until(lambda: queued.done.is_set(), 8, "the queue call over")
    wait_until(lambda: cc.get("6011").call_state == "ready", 5, "the agent free again")
    direct = cc.call(node1, "13900000602", "86011", hangup_after_bridge_ms=200)
    wait_until(lambda: direct.done.is_set(), 8, "the direct call over")
    wait_until(lambda: not node1.channels and not node2.channels, 5, "every leg gone")
    relay = [ch for ch in node2.all_channels.values()
             if ch.destination_number == "fsapps_agent_6011"]
    assert len(relay) == 2  # both calls did reach the agent through node2
    wait_until(lambda: len(rows(database.dsn)) >= 2, 5, "two CDR rows")
    time.sleep(0.5)  # room for a stray generic CDR from node2 to show
    got = {r["uuid"]: r for r in rows(database.dsn)}
    assert set(got) == {queued.uuid, direct.uuid}
    assert got[queued.uuid]["flag"] == got[direct.uuid]["flag"] == cdr.FLAG_ANSWERED
    assert got[queued.uuid]["destination_number"] == "6011" == \
        got[direct.uuid]["destination_number"]
    assert {r["node"] for r in got.values()} == {"node1"}
    assert cc.ctx.redis.xlen(cc.ctx.keys(DOMAIN).cdr_spool()) == 0
