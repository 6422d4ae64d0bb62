"""Measurement, not a test (never collected: no test_ prefix): how long from a switch event
(the fake switch's Event-Date-Timestamp of CHANNEL_PROGRESS / CHANNEL_ANSWER) to the STOMP
MESSAGE in a SockJS (xhr polling) client, for 30 queue calls delivered and answered through
/api/csta. Run: .venv/bin/python -m pytest tests/csta_latency.py -q -s"""

from __future__ import annotations

import statistics
import time

from csta_support import StompClient
from cti_support import CtiStack
from test_csta_protocol import A1, D, api, conn, stack, wellclient_login  # noqa: F401


def test_latency(stack: CtiStack) -> None:  # noqa: F811
    token = wellclient_login(stack, "agent", "1001")
    client = StompClient(stack.server.url, token)
    client.open()
    client.subscribe(f"/topic/csta/agent/agent@{D}")
    arrivals: dict[tuple[str, str], float] = {}
    parse = client._stomp

    def stamped(text: str) -> None:
        before = len(client.events)
        parse(text)
        for event in client.events[before:]:
            arrivals[(event["eventName"], event.get("callId", ""))] = time.time()
    client._stomp = stamped  # type: ignore[method-assign]
    http = api(stack, token)
    lat = []
    for i in range(30):
        ch = stack.center.call(stack.switch, f"1380000{i:04d}", "7110", hangup_after_ms=None)
        client.wait_event(lambda e: e["eventName"] == "delivered" and e["callId"] == ch.uuid)
        http.post(conn(ch.uuid, A1) + "/answer", json={})
        client.wait_event(lambda e: e["eventName"] == "established" and e["callId"] == ch.uuid)
        for name, switch_event in (("delivered", "CHANNEL_PROGRESS"),
                                   ("established", "CHANNEL_ANSWER")):
            fired = [e for e in stack.switch.bus.events(switch_event)
                     if e.getHeader("variable_fsapps_acd_call") == ch.uuid]
            start = int(fired[0].getHeader("Event-Date-Timestamp") or 0) / 1e6
            lat.append((arrivals[(name, ch.uuid)] - start) * 1000)
        stack.switch.hangup(ch)
        client.wait_event(lambda e: e["eventName"] == "connectionCleared"
                          and e["callId"] == ch.uuid)
    lat.sort()
    print(f"\nswitch event -> STOMP MESSAGE (xhr polling), n={len(lat)}: median "
          f"{statistics.median(lat):.1f} ms, p95 {lat[int(len(lat) * 0.95) - 1]:.1f} ms, "
          f"max {lat[-1]:.1f} ms")
    client.close()
