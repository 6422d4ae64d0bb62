"""The wallboard's figures (``GET /api/csta/wallboard``) on a live call center: fake switch,
real Redis and PostgreSQL. Each figure counted once and in its own column: free agents are
distinct ready agents (one in two groups counts once), queued and ringing calls are not
talking calls, the supervisor's own phone is not an agent, job numbers come from the
extensions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cti_support import CtiStack, cti_stack

from fakefs.channel import Behaviour
from fakefs.scenario import wait_until
from fsapps.context import Context
from fsapps.domain.extensions import Extensions
from fsapps.domain.groups import Groups
from fsapps.server.csta.wallboard import wallboard

D = "cc.test"


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with cti_stack(redis_server.url, database.dsn, group=None) as s:
        for number in ("110", "120", "130"):
            s.center.group(number, group_callout_timeout=120)
        yield s


def board(stack: CtiStack) -> dict[str, Any]:
    http = stack.server.anonymous()
    reply = http.post("/login", data={"username": "supervisor", "password": "supervisor",
                                      "namespace": D})
    assert reply.status_code == 200, reply.text
    http.headers["sessionId"] = reply.json()["sessionId"]
    reply = http.get("/api/csta/wallboard", params={"domain": D})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_each_figure_counted_once_and_in_its_own_column(stack: CtiStack) -> None:
    center, switch = stack.center, stack.switch
    # the supervisor's phone: registered, logged into no group, no agent
    switch.add_user("1900", D, password="1234")
    assert switch.register("1900", D, password="1234",
                           behaviour=Behaviour(answer_after_ms=None)).ok
    # a talking call: 1001 (in two groups) answers
    center.agent("1001", ["110", "120"], behaviour=Behaviour(answer_after_ms=50))
    center.call(switch, "13800000001", "7110", hangup_after_ms=None)
    wait_until(lambda: center.get("1001").call_state == "talking", 10, "1001 talking")
    # a ringing call: 1002's phone never answers
    center.agent("1002", ["110"], behaviour=Behaviour(answer_after_ms=None))
    center.call(switch, "13800000002", "7110", hangup_after_ms=None)
    wait_until(lambda: center.get("1002").call_state == "ring", 10, "1002 ringing")
    # a queued call: group 130's only agent is not ready
    center.agent("1004", ["130"], ready=False)
    center.call(switch, "13800000003", "7130", hangup_after_ms=None)
    wait_until(lambda: len(center.queue.waiting()) == 1, 10, "a caller waiting")
    # free agents: 1003 in two groups, 1005 in one
    center.agent("1003", ["110", "120"])
    center.agent("1005", ["120"])
    for ext in ("1001", "1002", "1003", "1004", "1005"):
        Extensions(stack.ctx, D).add(ext, f"J{ext}")

    data = board(stack)
    groups = {g["group"]: g for g in data["groups"]}
    assert (groups["110"]["ready"], groups["120"]["ready"], groups["130"]["ready"]) == (1, 2, 0)
    assert data["summary"] == {"waiting": 1, "ringing": 1, "talking": 1, "readyAgents": 2}
    assert sorted(c["status"] for c in data["calls"]) == ["ringing", "talking", "waiting"]
    agents = {a["extension"]: a for a in data["agents"]}
    assert sorted(agents) == ["1001", "1002", "1003", "1004", "1005"]   # not 1900
    assert {ext: a["job"] for ext, a in agents.items()} == {e: f"J{e}" for e in agents}
    assert (agents["1001"]["state"], agents["1002"]["state"]) == ("talking", "ring")
    for ch in list(switch.channels.values()):
        switch.hangup(ch)
    wait_until(lambda: not switch.channels, 5, "channels gone")


def round_trips(ctx: Context) -> list[str]:
    """What ``ctx``'s Redis client sends from now on from this thread: each command sent
    alone by its name, each pipeline executed as "pipeline" - one entry per round trip. (The
    client is the process's one for these settings, shared with the fake switches' runtime
    threads: their commands - a script run as agent 1006 logs in - are not the wallboard's.)"""
    sent: list[str] = []
    client = ctx.redis
    real_command, real_pipeline = client.execute_command, client.pipeline
    mine = threading.get_ident()

    def command(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == mine:
            sent.append(str(args[0]))
        return real_command(*args, **kwargs)

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)
        real_execute = pipe.execute

        def execute(*a: Any, **k: Any) -> Any:
            if threading.get_ident() == mine:
                sent.append("pipeline")
            return real_execute(*a, **k)
        pipe.execute = execute  # type: ignore[method-assign]
        return pipe
    client.execute_command = command  # type: ignore[method-assign]
    client.pipeline = pipeline  # type: ignore[method-assign]
    return sent


def test_the_groups_are_read_in_one_round_trip(stack: CtiStack) -> None:
    """The wallboard reads every group's hash and members in one pipeline: two more groups
    cost no more round trips; each row still names its group and counts its members."""
    ctx = Context(stack.ctx.settings)
    try:
        sent = round_trips(ctx)
        before = wallboard(ctx, D)
        trips = list(sent)
        for number in ("140", "150"):
            stack.center.group(number, group_callout_timeout=120)
        stack.center.agent("1006", ["140"])
        sent.clear()
        after = wallboard(ctx, D)
        assert sent == trips, (sent, trips)
        assert [g["group"] for g in before["groups"]] == ["110", "120", "130"]
        assert [g["group"] for g in after["groups"]] == ["110", "120", "130", "140", "150"]
        groups = Groups(stack.ctx, D)
        for row in after["groups"]:
            group = groups.get(row["group"])
            assert row["name"] == (group.group_name if group else row["group"])
            assert row["members"] == len(groups.members(row["group"]))
        assert {g["group"]: g["members"] for g in after["groups"]}["140"] == 1
    finally:
        ctx.redis.close()
