"""CTI server latency over real HTTP: ``.venv/bin/python tests/cti_bench.py`` (needs
DATABASE_URL like the tests). One client thread with keep-alive, against a server on one fake
switch, a private redis-server and a fresh PostgreSQL database:

- a read: ``GET /api/get_extensions`` with 20 agents;
- an agent write: ``POST /api/agent_busy`` then ``POST /api/agent_ready``;
- a call action through a node command: ``GET /api/hold`` then ``GET /api/unhold`` on a live
  call (server → Redis → the node's runtime → the switch → the reply back).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cti_support import GROUP, cti_stack

from fakefs.scenario import wait_until
from fakefs.servers import FreshDatabase, RedisServer


def measure(fn: Callable[[], None], count: int) -> str:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    rate = count / (sum(times) / 1000)
    return (f"p50 {statistics.median(times):.2f} ms, p99 {times[int(count * 0.99) - 1]:.2f} ms,"
            f" {rate:.0f}/s")


def main() -> None:
    redis_server, database = RedisServer().start(), FreshDatabase().create()
    try:
        with cti_stack(redis_server.url, database.dsn) as stack:
            for index in range(20):
                stack.center.agent(str(1001 + index), [GROUP])
            client = stack.server.client("admin")

            def read() -> None:
                assert client.get("/api/get_extensions").status_code == 200

            def write() -> None:
                for path in ("/api/agent_busy", "/api/agent_ready"):
                    assert client.post(path, json={"Extension": "1005"}).status_code == 200

            customer = stack.center.call(stack.switch, "13800000000", f"7{GROUP}")
            switch = stack.switch
            leg = wait_until(lambda: customer.peer and switch.channels.get(customer.peer)
                             and switch.channels[customer.peer].answered
                             and switch.channels[customer.peer], 5, "answered")
            ext = leg.get("dialed_user")
            wait_until(lambda: stack.ctx.redis.hget(f"cti_userinfo@{stack.center.domain}",
                                                    ext), 5, "recorded")

            def hold() -> None:
                for path in (f"/api/hold/{ext}", f"/api/unhold/{ext}"):
                    assert client.get(path).status_code == 200

            print("GET /api/get_extensions (20 agents):", measure(read, 500))
            print("agent_busy + agent_ready (pair):     ", measure(write, 200))
            print("hold + unhold via node command (pair):", measure(hold, 200))
    finally:
        database.drop()
        redis_server.close()


if __name__ == "__main__":
    main()
