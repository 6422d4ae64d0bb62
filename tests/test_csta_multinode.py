"""wellClient across nodes: the queue call arrives on node1, the agent's phone is registered on
node2 (the ACD reaches it through the fsapps_agent_<ext> relay). The agent sees one call with
the caller's callId, answers it through /api/csta (run on node2, where the phone's leg is) and
holds it; the relay legs never show as parties."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from csta_support import StompClient
from cti_support import CtiStack, cti_stack
from test_csta_protocol import api, conn, wellclient_login

from fakefs.channel import Behaviour
from fakefs.scenario import wait_until
from fsapps.events.cstafeed import feed_wanted

D = "cc.test"
A2 = f"1002@{D}"


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with cti_stack(redis_server.url, database.dsn, switches=2) as s:
        s.center.agent("1002", ["110"], ready=False, switch=s.switches[1],
                       behaviour=Behaviour(answer_after_ms=None))
        yield s


def test_agent_on_another_node(stack: CtiStack) -> None:
    node1, node2 = stack.switches
    token = wellclient_login(stack, "agent2", "1002")
    client = StompClient(stack.server.url, token)
    try:
        client.open()
        client.subscribe(f"/topic/csta/agent/agent2@{D}")
        caller = stack.center.call(node1, "13800000005", "7110", hangup_after_ms=None)
        ring = client.wait_event(lambda e: e["eventName"] == "delivered")
        assert ring["callId"] == caller.uuid and ring["alertingDevice"] == A2
        http = api(stack, token)
        reply = http.post(conn(caller.uuid, A2) + "/answer", json={})
        assert reply.status_code == 204, reply.text
        est = client.wait_event(lambda e: e["eventName"] == "established")
        assert est["callId"] == caller.uuid and est["answeringDevice"] == A2
        assert http.post(conn(caller.uuid, A2) + "/hold", json={}).status_code == 204
        client.wait_event(lambda e: e["eventName"] == "held")
        node1.hangup(caller)
        client.wait_event(lambda e: e["eventName"] == "connectionCleared"
                          and e["deviceId"] == A2)
        names = client.names(caller.uuid)
        assert names.count("delivered") == 1 and names.count("established") == 1
        relay = [e for e in client.events if "fsapps_agent_" in str(e.get("deviceId"))]
        assert relay == []
        # every event of the call was about its one callId
        assert {e["callId"] for e in client.events if e.get("callId")} == {caller.uuid}
        assert node2.name != node1.name
    finally:
        client.close()


def test_the_feed_runs_as_events_csta_feed_says(redis_server: Any) -> None:
    """events.csta_feed: "on" and "off" whatever listens; "auto" while something listens on a
    served domain's feed channel (every CTI server subscribes there when it starts)."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    channel = "t:{nobody.test}:csta"

    def ctx(mode: str) -> Any:
        return SimpleNamespace(
            settings=SimpleNamespace(events=SimpleNamespace(csta_feed=mode),
                                     domains=("nobody.test",)),
            keys=lambda domain: SimpleNamespace(csta_feed=lambda: channel), redis=client)

    try:
        assert (feed_wanted(ctx("on")), feed_wanted(ctx("off"))) == (True, False)
        assert not feed_wanted(ctx("auto"))
        listener = client.pubsub()
        listener.subscribe(channel)
        wait_until(lambda: feed_wanted(ctx("auto")), 3, "a listener seen")
        assert not feed_wanted(ctx("off"))
        listener.unsubscribe(channel)
        listener.close()
        wait_until(lambda: not feed_wanted(ctx("auto")), 3, "no listener left")
    finally:
        client.close()
