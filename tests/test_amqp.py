"""The seed-001 JSON messages on RabbitMQ (the seed's "mq" option), from the runtime of a
fakefs switch, against the RabbitMQ at 127.0.0.1:5672 (guest/guest); skipped without one."""

from __future__ import annotations

import dataclasses
import json
import socket
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import pytest

from fakefs.channel import Behaviour
from fakefs.scenario import wait_until
from fsapps.config import AmqpSettings, Secret
from fsapps.domain.userdir import UserDirectory, parse_record
from fsapps.events import amqp
from tests.acd_support import DOMAIN, CallCenter, reset_database, settings_for
from tools.servers import FreshDatabase, RedisServer

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def _rabbitmq_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), 0.5).close()
        return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.usefixtures("no_leaked_switch_threads"),
    pytest.mark.skipif(not _rabbitmq_answers(),
                       reason="no RabbitMQ at 127.0.0.1:5672 (optional: apt install "
                              "rabbitmq-server to run these tests)"),
]


@pytest.fixture
def exchange() -> str:
    return f"fsapps-test-{uuidlib.uuid4().hex[:8]}"


@pytest.fixture
def bound_queue(exchange: str) -> Iterator[Any]:
    """An exclusive queue bound to every routing key of the exchange: (channel, queue)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, routing_key="#")
    try:
        yield channel, queue
    finally:
        channel.exchange_delete(exchange)
        connection.close()


@pytest.fixture
def cc(redis_server: RedisServer, database: FreshDatabase, exchange: str) -> Iterator[CallCenter]:
    reset_database(database.dsn)
    settings = dataclasses.replace(
        settings_for(redis_server.url, database.dsn),
        amqp=AmqpSettings(enabled=True, url=Secret(AMQP_URL), exchange=exchange))
    center = CallCenter(settings)
    try:
        yield center
    finally:
        center.close()
        amqp.close_publisher()


def test_a_bound_queue_receives_the_json_messages_of_a_call(cc: CallCenter,
                                                            bound_queue: Any) -> None:
    channel, queue = bound_queue
    sw = cc.start_switch()
    for user in ("1001", "1002"):
        UserDirectory(cc.ctx, DOMAIN).set(parse_record(user, DOMAIN, {
            "param": {"password": "pw"},
            "variable": {"sip-force-contact": "NDLB-connectile-dysfunction-2.0"}}))
    assert sw.register("1002", DOMAIN, password="pw", behaviour=Behaviour(
        answer_after_ms=100, ring_after_ms=10, hangup_after_ms=300)).ok
    publisher = amqp.get_publisher(cc.ctx.settings.amqp)
    wait_until(lambda: publisher.connected, 5, "AMQP connected")

    caller = sw.place_call("1001", "fsapps_agent_1002", domain=DOMAIN,
                           behaviour=Behaviour(hangup_after_ms=None),
                           variables={"sip_h_X-FSAPPS-Ring-Timeout": "10"})
    received: list[tuple[str, dict[str, Any]]] = []

    def hangup_seen() -> bool:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        while method is not None:
            received.append((method.routing_key, json.loads(body)))
            method, _, body = channel.basic_get(queue, auto_ack=True)
        return any(m.get("event_name") == "EVENT_HANGUP" and m.get("aleg_uuid") == caller.uuid
                   for _, m in received)
    wait_until(hangup_seen, 10, "the call's EVENT_HANGUP on RabbitMQ")

    calls = [m for key, m in received if key == "event.call" and m["aleg_uuid"] == caller.uuid]
    names = [m["event_name"] for m in calls]
    assert names[0] == "EVENT_CALLIN"
    assert "EVENT_ANSWER" in names
    assert all(m["type"] == "event" for m in calls)
    assert calls[0]["callin_number"] == "1001"
    assert list(calls[0])[:4] == ["type", "event_name", "aleg_uuid", "bleg_uuid"]
    assert publisher.dropped == 0


def test_routing_keys() -> None:
    assert amqp.routing_key("event_call") == "event.call"
    assert amqp.routing_key("queue_5001") == "queue.5001"
    assert amqp.routing_key("cdr_callout") == "cdr.callout"
    assert amqp.routing_key("agent_1001") == "agent.1001"


def test_unreachable_broker_drops_and_counts() -> None:
    publisher = amqp.AmqpPublisher(AmqpSettings(url=Secret("amqp://guest:guest@127.0.0.1:1/%2F")),
                                   reconnect_wait=0.1)
    try:
        assert publisher.publish("event.call", b"{}") is False
        assert publisher.publish("event.call", b"{}") is False
        assert publisher.dropped == 2
    finally:
        publisher.close()


def test_agent_changes_made_by_the_cti_server_reach_rabbitmq(
        redis_server: RedisServer, database: FreshDatabase, exchange: str,
        bound_queue: Any) -> None:
    """An agent set busy through the CTI server's REST API is announced on RabbitMQ too: the
    server's process publishes it, not a switch's runtime."""
    from tests.cti_support import cti_stack

    channel, queue = bound_queue
    amqp_settings = AmqpSettings(enabled=True, url=Secret(AMQP_URL), exchange=exchange)
    with cti_stack(redis_server.url, database.dsn, sections={"amqp": amqp_settings}) as stack:
        stack.center.agent("1001", ["110"])
        publisher = amqp.get_publisher(amqp_settings)
        wait_until(lambda: publisher.connected, 5, "AMQP connected")
        admin = stack.server.client("admin")
        assert admin.post("/api/agent_busy", json={"Extension": "1001"}).status_code == 200
        received: list[tuple[str, dict[str, Any]]] = []

        def busy_seen() -> bool:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            while method is not None:
                received.append((method.routing_key, json.loads(body)))
                method, _, body = channel.basic_get(queue, auto_ack=True)
            return any(key == "agent.1001" and m.get("status") == "busy" for key, m in received)
        try:
            wait_until(busy_seen, 10, "agent 1001's busy status on RabbitMQ (agent.1001)")
        finally:
            amqp.close_publisher()
