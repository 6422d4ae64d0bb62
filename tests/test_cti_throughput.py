"""Issue 20, the CTI server's throughput parts, for correctness (no timings):

- get_extensions' per-process answer (encoded once per change, fsapps.server.reads): a change
  made by anyone - the REST API, the ACD's module, a raw write to the hash, a new or removed
  agent - is in the very next answer; an unchanged domain is not encoded again;
- extension_info and agent_busy / agent_ready on their one round trip keep their refusals;
- several worker processes on one port (``fsapps cti serve`` with cti.processes): both
  answer, and a change made through one is seen through the other;
- the CSTA hub's subscription index: a record reaches the subscriptions of its parties'
  devices (and the domain's), no other, also after an agent moves to another device and after
  subscriptions end.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cti_support import cti_stack

from fakefs.scenario import wait_until
from fsapps.domain.agents import Agents
from fsapps.server.csta.hub import Hub, Subscription
from fsapps.server.passwords import hash_password
from fsapps.server.services import SERVICES


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Any:
    with cti_stack(redis_server.url, database.dsn) as s:
        for ext in ("1001", "1002", "1003"):
            s.center.agent(ext, ["110"])
        yield s


def rows(client: Any) -> dict[str, dict[str, str]]:
    reply = client.get("/api/get_extensions")
    assert reply.status_code == 200, reply.text
    return {row["Extension"]: row for row in reply.json()}


def cache_of(stack: Any) -> Any:
    services = stack.server.runner.app[SERVICES]
    return services.caches["extension_rows"]


def test_a_change_is_in_the_next_get_extensions(stack: Any) -> None:
    admin = stack.server.client("admin")
    assert rows(admin)["1002"]["CallState"] == "ready"
    # through the REST API
    assert admin.post("/api/agent_busy", json={"Extension": "1002"}).status_code == 200
    assert rows(admin)["1002"]["CallState"] == "busy"
    assert rows(admin)["1002"]["AgentState"] == "busy"
    assert admin.post("/api/agent_ready", json={"Extension": "1002"}).status_code == 200
    after = rows(admin)["1002"]
    assert (after["CallState"], after["AgentState"]) == ("ready", "idle")
    # through the agent module directly (a switch's runtime), and a raw write nobody publishes
    Agents(stack.ctx, stack.center.domain).make_busy("1003")
    assert rows(admin)["1003"]["CallState"] == "busy"
    Agents(stack.ctx, stack.center.domain).set_reg_state("1003", "unreg")
    assert rows(admin)["1003"]["RegStatus"] == "unreg"
    Agents(stack.ctx, stack.center.domain).set_reg_state("1003", "reged")
    assert rows(admin)["1003"]["RegStatus"] == "reged"
    # a new agent, then the same one removed
    Agents(stack.ctx, stack.center.domain).ensure("1077", "77")
    assert "1077" in rows(admin)
    assert Agents(stack.ctx, stack.center.domain).remove("1077", [])[0] == "removed"
    assert "1077" not in rows(admin)


def test_an_unchanged_domain_is_encoded_once(stack: Any) -> None:
    admin = stack.server.client("admin")
    first = admin.get("/api/get_extensions").content
    encoded = cache_of(stack).encoded
    for _ in range(5):
        assert admin.get("/api/get_extensions").content == first
    assert cache_of(stack).encoded == encoded
    assert admin.post("/api/agent_busy", json={"Extension": "1001"}).status_code == 200
    changed = admin.get("/api/get_extensions").content
    assert changed != first and cache_of(stack).encoded == encoded + 1
    assert admin.post("/api/agent_ready", json={"Extension": "1001"}).status_code == 200


def test_reads_and_agent_operations_keep_their_answers(stack: Any) -> None:
    admin = stack.server.client("admin")
    info = admin.get("/api/extension_info/1001")
    assert info.status_code == 200
    assert info.json() == {"reg_state": "reged", "seat_status": "idle", "call_state": "ready"}
    unknown = admin.get("/api/extension_info/4711")
    assert unknown.status_code == 404 and unknown.json()["field"] == "ext"
    assert admin.post("/api/agent_busy", json={"Extension": "4711"}).status_code == 404
    assert admin.post("/api/agent_ready", json={"Extension": "4711"}).status_code == 404
    assert admin.get("/api/get_extensions", headers={
        "Authorization": "Nway not-a-token"}).status_code == 401
    # an agent acts on its own extension only, reads any
    agent = stack.server.client("agent")
    assert agent.post("/api/agent_busy", json={"Extension": "1002"}).status_code == 403
    assert agent.get("/api/extension_info/1002").status_code == 200
    # a disabled extension is refused by the script itself, nothing changed
    with stack.ctx.redis.pipeline() as pipe:
        Agents(stack.ctx, stack.center.domain).set_enabled("1003", False, pipe)
        pipe.execute()
    try:
        refused = admin.post("/api/agent_ready", json={"Extension": "1003"})
        assert refused.status_code == 409, refused.text
    finally:
        with stack.ctx.redis.pipeline() as pipe:
            Agents(stack.ctx, stack.center.domain).set_enabled("1003", True, pipe)
            pipe.execute()
    # ready after the groups changed behind the process's back: the script notices
    Agents(stack.ctx, stack.center.domain).make_ready("1001")
    with stack.ctx.redis.pipeline() as pipe:
        Agents(stack.ctx, stack.center.domain).set_groups("1001", [], pipe)
        pipe.execute()
    try:
        assert admin.post("/api/agent_busy", json={"Extension": "1001"}).status_code == 200
        assert admin.post("/api/agent_ready", json={"Extension": "1001"}).status_code == 200
        assert rows(admin)["1001"]["CallState"] == "ready"
    finally:
        with stack.ctx.redis.pipeline() as pipe:
            Agents(stack.ctx, stack.center.domain).set_groups("1001", ["110"], pipe)
            pipe.execute()


def test_agent_busy_and_ready_tell_each_move_once(stack: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """agent_busy / agent_ready over REST: the token's read and the script, which publishes
    the move itself - each status once on agent_<ext>, in the seed's format, and nothing
    published after the script (the publish after it is not called)."""
    from fsapps.events.pubsub import agent_status, stamp

    admin = stack.server.client("admin")
    agents = Agents(stack.ctx, stack.center.domain)
    agents.make_ready("1002")
    after: list[str] = []
    monkeypatch.setattr(Agents, "publish", lambda self, ext, status, *a, **k:
                        after.append(status))
    listener = stack.ctx.redis.pubsub()
    listener.subscribe("agent_1002")
    assert listener.get_message(timeout=2.0)["type"] == "subscribe"
    try:
        told = []
        for op, state in (("agent_busy", "busy"), ("agent_busy", "busy"),
                          ("agent_ready", "ready"), ("agent_ready", "ready")):
            assert admin.post(f"/api/{op}", json={"Extension": "1002"}).status_code == 200
            at = agents.get("1002").last_change  # type: ignore[union-attr]
            told.append(agent_status("1002", state, stamp(at / 1000))
                        .render(stack.ctx.publisher.shape))
        got = []
        while (message := listener.get_message(timeout=0.3)) is not None:
            got.append(message["data"])
        assert got == [told[0], told[2]]  # the second of each changed nothing: told nothing
    finally:
        listener.close()
    assert after == []


def test_two_worker_processes_on_one_port(tmp_path: Path, redis_server: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "fsapps.yaml"
    config.write_text(yaml.safe_dump({
        "redis": {"url": redis_server.url, "key_prefix": "workers"},
        "domains": ["w.test"], "default_domain": "w.test",
        "cti": {"listen": "127.0.0.1", "port": port, "processes": 2},
        "users": [{"username": "admin", "role": "admin", "extension": "",
                   "password_hash": hash_password("admin", iterations=1000)}]}))
    server = subprocess.Popen([sys.executable, "-m", "fsapps.cli", "--config", str(config),
                               "cti", "serve"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def login() -> Any:
            try:
                return requests.post(base + "/api/login", timeout=2,
                                     json={"username": "admin", "password": "admin"})
            except requests.ConnectionError:
                return None
        token = wait_until(login, 20, "fsapps cti serve answering").json()["token"]
        headers = {"Authorization": f"Nway {token}", "Connection": "close"}
        # new connections are spread over the workers: each answers, with the same token
        seen: dict[str, Any] = {}

        def both() -> bool:
            reply = requests.get(base + "/api/get_extensions", headers=headers, timeout=5)
            assert reply.status_code == 200, reply.text
            seen.setdefault(reply.headers["X-Fsapps-Worker"], reply)
            return len(seen) == 2
        wait_until(both, 30, "both workers answering")
        # a change through one worker is seen through the other
        with requests.Session() as one, requests.Session() as other:
            one.headers.update(headers | {"Connection": "keep-alive"})
            other.headers.update(headers | {"Connection": "keep-alive"})

            def worker(session: requests.Session) -> str:
                return str(session.get(base + "/api/me", timeout=5).headers["X-Fsapps-Worker"])
            first = worker(one)
            for _ in range(200):
                other.close()
                if worker(other) != first:
                    break
            assert worker(other) != first
            assert other.get(base + "/api/get_extensions", timeout=5).json() == []
            ctx_redis = __import__("redis").Redis.from_url(redis_server.url,
                                                          decode_responses=True)
            ctx_redis.sadd("workers:{w.test}:agents", "2001")
            ctx_redis.hset("workers:{w.test}:agent:2001", mapping={
                "extension": "2001", "domain": "w.test", "call_state": "ready",
                "seat_status": "idle", "reg_state": "unreg", "groups": "", "logged_in": "0"})
            assert [r["Extension"] for r in other.get(base + "/api/get_extensions",
                                                      timeout=5).json()] == ["2001"]
            assert one.post(base + "/api/agent_busy", json={"Extension": "2001"},
                            timeout=5).status_code == 200
            row = other.get(base + "/api/get_extensions", timeout=5).json()[0]
            assert (row["CallState"], row["AgentState"]) == ("busy", "busy")
            assert one.post(base + "/api/logout", timeout=5).status_code == 200
            assert other.get(base + "/api/me", timeout=5).status_code == 401
        server.terminate()
        output = server.communicate(timeout=15)[0].decode()
        assert server.returncode == 0, output
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


class FakeConn:
    def __init__(self) -> None:
        self.got: list[tuple[str, str, str]] = []

    def deliver(self, sub: Subscription, record_id: str, event: dict[str, Any],
                encoded: Any = None) -> None:
        text = encoded.with_serial(7) if encoded is not None else ""
        assert '"serial": 7' in text
        self.got.append((sub.sub_id, event["eventName"], str(event.get("srcDeviceId", ""))))


def test_fan_out_reaches_only_the_parties_subscriptions() -> None:
    asyncio.run(fan_out())


async def fan_out() -> None:
    hub = Hub(services=None)
    a, b, wall, other = FakeConn(), FakeConn(), FakeConn(), FakeConn()
    agent_a = Subscription(a, "s-a", "/topic/csta/agent/a1@d", "agent", "d", "a1@d", "1001@d")
    device_b = Subscription(b, "s-b", "/topic/csta/device/1002@d", "device", "d",
                            device="1002@d")
    board = Subscription(wall, "s-w", "/topic/csta/domain/d", "domain", "d")
    elsewhere = Subscription(other, "s-o", "/topic/csta/device/1003@d", "device", "d",
                             device="1003@d")
    for sub in (agent_a, device_b, board, elsewhere):
        hub.add(sub)
    call = {"id": "r1", "name": "established", "callId": "c1", "uuid": "u1",
            "device": "1001@d", "localState": "Connect", "calling": "1002@d",
            "called": "1001@d", "parties": ["1001@d", "1002@d"], "time": 1, "domain": "d",
            "userData": {}}
    await hub.dispatch(dict(call))
    assert [g[0] for g in a.got] == ["s-a"] and [g[0] for g in b.got] == ["s-b"]
    assert len(wall.got) == 1 and other.got == []
    # the agent logs in on another device: its subscription follows it
    await hub.dispatch({"id": "r2", "name": "agentLoggedOn", "agentId": "a1@d",
                        "device": "1003@d", "domain": "d", "time": 2})
    assert agent_a.device == "1003@d"
    assert [g[1] for g in a.got[-1:]] == ["agentLoggedOn"]
    a.got.clear()
    other.got.clear()
    await hub.dispatch(dict(call, id="r3"))
    assert a.got == []
    await hub.dispatch(dict(call, id="r4", device="1003@d", parties=["1003@d"]))
    assert [g[0] for g in a.got] == ["s-a"] and [g[0] for g in other.got] == ["s-o"]
    # ended subscriptions get nothing more, the index forgets them
    hub.remove(a)
    hub.remove(other, "s-o")
    a.got.clear()
    other.got.clear()
    await hub.dispatch(dict(call, id="r5", device="1003@d", parties=["1003@d"]))
    assert a.got == [] and other.got == []
    assert hub.subscriptions == [device_b, board]
    assert not hub._by_device.get("1003@d") and not hub._by_agent


def test_requests_of_one_moment_share_one_read(stack: Any) -> None:
    """A request joins the next read to start, never one under way: with a read held in
    flight, the three requests that come meanwhile are answered by one more read, which
    sees a change made after the first read began."""
    import redis.asyncio as aioredis

    from fsapps.server.reads import ExtensionRows

    agents = Agents(stack.ctx, stack.center.domain)

    async def run() -> None:
        client = aioredis.Redis.from_url(stack.ctx.settings.redis.url.reveal(),
                                         decode_responses=True)
        gate, answered = asyncio.Event(), asyncio.Event()
        real = client.evalsha

        async def held(*args: Any) -> Any:  # the real script, answered once the gate opens
            reply = await real(*args)
            answered.set()
            await gate.wait()
            return reply
        client.evalsha = held  # type: ignore[method-assign]
        rows_cache = ExtensionRows(stack.center.domain)
        try:
            await asyncio.to_thread(agents.make_ready, "1003")
            first = asyncio.ensure_future(rows_cache.read(client, agents))
            await answered.wait()  # Redis ran the first read
            await asyncio.to_thread(agents.make_busy, "1003")  # after the first read began
            later = [asyncio.ensure_future(rows_cache.read(client, agents)) for _ in range(3)]
            await asyncio.sleep(0.05)
            gate.set()
            before = json.loads(await first)
            after = [json.loads(await f) for f in later]
            assert rows_cache.reads == 2
            assert {r["Extension"]: r["CallState"] for r in before}["1003"] != "busy"
            for answer in after:
                assert {r["Extension"]: r["CallState"] for r in answer}["1003"] == "busy"
        finally:
            await asyncio.to_thread(agents.make_ready, "1003")
            await client.aclose()
    asyncio.run(run())


def test_queue_list_and_wallboard_are_shared_reads_encoded_once_per_change(stack: Any) -> None:
    """/api/queues: an unchanged queue is not encoded again; a caller queuing or leaving is in
    the next answer. The wallboard answers from the same kind of shared read."""
    import time

    from fsapps.domain.callqueue import CallQueue, WaitingCall

    admin = stack.server.client("admin")
    services = stack.server.runner.app[SERVICES]

    def waiting() -> list[str]:
        reply = admin.get("/api/queues")
        assert reply.status_code == 200, reply.text
        return [row["Uuid"] for row in reply.json()]
    assert waiting() == []
    encoded = services.caches["queues"].encoded
    assert waiting() == [] and services.caches["queues"].encoded == encoded
    now = int(time.time() * 1000)
    call = WaitingCall(uuid="q-0001", node="n1", group="110", number="13800000001",
                       real_number="13800000001", level="normal", callin_time="", arrived_ms=now)
    found = Agents(stack.ctx, stack.center.domain).reserve_or_queue(
        call, [], lease_ms=10_000, enqueue=True, record_current=False)
    assert found.outcome == "queued", found
    try:
        assert waiting() == ["q-0001"]
        assert services.caches["queues"].encoded == encoded + 1
        board = admin.get("/api/csta/wallboard")
        assert board.status_code == 200, board.text
        assert board.json()["summary"]["waiting"] == 1
    finally:
        CallQueue(stack.ctx, stack.center.domain).leave("110", "q-0001")
    assert waiting() == []
    assert admin.get("/api/csta/wallboard").json()["summary"]["waiting"] == 0
