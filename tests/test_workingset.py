"""Redis loses its data: the working set is rebuilt from PostgreSQL and calls route again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakefs.scenario import wait_until
from fsapps.domain.extensions import Extensions
from fsapps.domain.workingset import restore_if_empty
from fsapps.switch import acd
from tests.acd_support import DOMAIN, CallCenter, center
from tools.servers import FreshDatabase, RedisServer


@pytest.fixture
def cc(redis_server: RedisServer, database: FreshDatabase) -> Iterator[CallCenter]:
    yield from center(redis_server.url, database.dsn)


def test_empty_redis_is_rebuilt_from_postgresql(cc: CallCenter) -> None:
    switch = cc.start_switch()
    cc.group("110", group_call_mode=0, group_callout_timeout=2)
    cc.groups.set_numbers("110", "vip", ["13900000001"])
    Extensions(cc.ctx, DOMAIN).add("1001", "J-7")
    cc.agent("1001", ["110"])
    cc.ctx.redis.flushall()  # Redis restarted without persistence

    assert restore_if_empty(cc.ctx, DOMAIN) is True
    assert restore_if_empty(cc.ctx, DOMAIN) is False  # only once
    group = cc.groups.get("110")
    assert group is not None and group.group_callout_timeout == 2
    assert cc.groups.members("110") == ["1001"]
    assert cc.ctx.redis.sismember(cc.ctx.keys(DOMAIN).group_vip("110"), "13900000001")
    agent = cc.get("1001")
    assert agent.logged_in and agent.groups == ("110",) and agent.job_number == "J-7"

    # The phone re-registers (live state is not in PostgreSQL) and calls route again.
    switch.unregister("1001", DOMAIN)
    assert switch.register("1001", DOMAIN, password="1234").ok
    acd.set_ready(cc.ctx, DOMAIN, "1001")
    caller = cc.call(switch, "13800000001", "7110", hangup_after_bridge_ms=200)
    wait_until(lambda: "bridged" in caller.times, 5, "the caller reached agent 1001")


def test_nothing_to_restore_without_groups(cc: CallCenter) -> None:
    assert restore_if_empty(cc.ctx, DOMAIN) is False
