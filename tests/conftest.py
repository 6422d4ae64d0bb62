"""Session-wide real servers: one private redis-server and one fresh PostgreSQL database.

Tests that need a clean Redis use the ``redis_client`` fixture, which flushes the private
instance before each test (it is ours alone, never the machine's 6379).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import redis

from fakefs import Switch
from fakefs.scenario import wait_until
from tools.servers import FreshDatabase, RedisClusterServer, RedisServer

# Fake-switch time runs 20x faster in tests: a 5 s originate timeout takes 250 ms.
SWITCH_TIME_SCALE = 0.05


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    if not redis_server.running:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def database() -> Iterator[FreshDatabase]:
    db = FreshDatabase().create()
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture
def make_switch() -> Iterator[Callable[..., Switch]]:
    """Start fake switches (fast time, seeded); all are shut down after the test, and none
    may have crashed."""
    switches: list[Switch] = []

    def make(name: str = "fs1", **kwargs: object) -> Switch:
        kwargs.setdefault("time_scale", SWITCH_TIME_SCALE)
        kwargs.setdefault("seed", 1)
        switch = Switch(name, **kwargs)  # type: ignore[arg-type]
        switches.append(switch)
        return switch.start()

    try:
        yield make
    finally:
        for switch in switches:
            switch.shutdown(grace=2.0)
        assert all(s.crashed is None for s in switches)


@pytest.fixture
def clean_testapps_state() -> Iterator[None]:
    """The recorder of the test-only python apps (tests/fsapps_testapps) starts empty."""
    from fsapps_testapps import state

    state.reset()
    yield
    state.reset()


@pytest.fixture
def switch(make_switch: Callable[..., Switch]) -> Switch:
    return make_switch()


@pytest.fixture(scope="module")
def no_leaked_switch_threads() -> Iterator[None]:
    """Every switch a module started is shut down: none of their threads outlives it."""
    before = set(threading.enumerate())
    yield
    wait_until(lambda: not [t for t in threading.enumerate() if t not in before], 5.0,
               "the fake switches' threads ended")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServer]:
    """A private 3-master Redis Cluster, started the first time a test asks for it (about 2 s)
    and shared by the whole session; tests that need it empty call ``flushall()``."""
    cluster = RedisClusterServer().start()
    try:
        yield cluster
    finally:
        cluster.close()
