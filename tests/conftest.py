"""Session-wide real servers: one private redis-server and one fresh PostgreSQL database.

Tests that need a clean Redis use the ``redis_client`` fixture, which flushes the private
instance before each test (it is ours alone, never the machine's 6379).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from fakefs.servers import FreshDatabase, RedisServer


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
