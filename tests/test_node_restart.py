"""F4: calls up when a node's switch shuts down (or dies), then the same node name starts again
on the same Redis.

A real FreeSWITCH 1.10.12 shuts down in this order (fakefs/switch.py ``shutdown``):
``running()`` turns false, SHUTDOWN, every call hung up (their hangup events fire), and only
then does mod_python3 unload and stop the runtime. The runtime keeps handling events a while
after ``running()`` turned false, so it may read some of those hangups before it is stopped,
or none: a race. A crash reads none. What the runtime recorded about calls whose hangups it did
not read - cti_userinfo@<domain> and ``calls`` (seed 003 live state), channel -> node, CSTA
legs - outlives them: the node's next start must remove it, and the reconciler's first pass
must free the agents and queued callers of those calls, so the CTI no longer acts on calls
that are gone. The tests prove what is deterministic: after a crash the records stay until
the restart; after a shutdown, whatever the runtime read, the restart leaves all clean.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cti_support import GROUP, CtiStack, cti_stack

from fakefs import Behaviour, Channel, Switch
from fakefs.scenario import wait_until
from fsapps.domain.agents import Agents
from fsapps.domain.callqueue import CallQueue
from fsapps.switch import acd

pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads")

AGENT, AGENT2, CALLER, CALLEE = "1001", "1002", "1900", "1003"


@pytest.fixture
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with cti_stack(redis_server.url, database.dsn) as s:
        for ext in (AGENT, AGENT2):
            s.center.agent(ext, [GROUP])
        yield s


@dataclass
class Calls:
    """What was up on the node when it stopped."""

    agent: str            # the agent talking with the queue caller
    queue_call: Channel   # the queue caller (talking with the agent)
    waiting: Channel      # a second queue caller, waiting (the other agent is busy)
    direct: Channel       # CALLER's call to CALLEE (not through the ACD)
    uuids: set[str]       # every channel of the node


def userinfo(stack: CtiStack, ext: str) -> Any:
    text = stack.ctx.redis.hget(f"cti_userinfo@{stack.center.domain}", ext)
    return None if text is None else json.loads(text)


def calls_record(stack: CtiStack, ext: str) -> Any:
    text = stack.ctx.redis.hget("calls", ext)
    return None if text is None else json.loads(text)


def live_uuids(stack: CtiStack, ext: str) -> list[str]:
    """The calls cti_userinfo and the calls hash show live for ``ext``."""
    info = userinfo(stack, ext) or {}
    record = calls_record(stack, ext) or {}
    return [c["Unique-ID"] for c in info.get("calls", [])] + list(record.get("activity", []))


def node_records(stack: CtiStack, node: str) -> set[str]:
    keys = stack.ctx.node_keys
    return set(stack.ctx.redis.smembers(keys.channels(node))) | \
        set(stack.ctx.redis.hkeys(keys.recorded(node)))


def csta_legs(stack: CtiStack) -> set[str]:
    return set(stack.ctx.redis.hkeys(stack.ctx.keys(stack.center.domain).csta_legs()))


def agent(stack: CtiStack, ext: str) -> Any:
    return Agents(stack.ctx, stack.center.domain).get(ext)


def waiting(stack: CtiStack) -> list[str]:
    return [w.uuid for w in CallQueue(stack.ctx, stack.center.domain).waiting()]


def put_calls_up(stack: CtiStack) -> Calls:
    center, sw, domain = stack.center, stack.switch, stack.center.domain
    customer = center.call(sw, "13800000001", f"7{GROUP}")
    agent_leg = wait_until(lambda: customer.peer and sw.channels.get(customer.peer) and
                           sw.channels[customer.peer].answered and
                           sw.channels[customer.peer], 5, "an agent answered")
    ext = agent_leg.get("dialed_user")
    other = AGENT2 if ext == AGENT else AGENT
    wait_until(lambda: agent(stack, ext).call_state == "talking", 5, f"{ext} talking")
    acd.set_busy(stack.ctx, domain, other)
    second = center.call(sw, "13800000002", f"7{GROUP}")
    wait_until(lambda: second.uuid in waiting(stack), 5, "the second caller queued")

    for user in (CALLER, CALLEE):
        sw.add_user(user, domain, password="1234")
    assert sw.register(CALLER, domain, password="1234").ok
    assert sw.register(CALLEE, domain, password="1234",
                       behaviour=Behaviour(answer_after_ms=50, hangup_after_ms=None)).ok
    direct = sw.place_call(CALLER, f"fsapps_agent_{CALLEE}", domain=domain,
                           behaviour=Behaviour(hangup_after_ms=None),
                           variables={"sip_h_X-FSAPPS-Ring-Timeout": "10",
                                      "sip_h_X-FSAPPS-Domain": domain})
    wait_until(lambda: direct.peer and sw.channels.get(direct.peer) and
               sw.channels[direct.peer].answered, 5, "the direct call answered")
    uuids = set(sw.channels)
    # everything the runtime records about them is there
    for user in (ext, CALLER, CALLEE):
        wait_until(lambda u=user: len(live_uuids(stack, u)) == 2 and
                   (calls_record(stack, u) or {}).get("notify") in ("answer", "bridge"), 5,
                   f"{user}'s live state")
    wait_until(lambda: node_records(stack, sw.name) >= uuids, 5, "channel records")
    wait_until(lambda: uuids - {direct.peer} <= csta_legs(stack), 5, "CSTA legs")
    return Calls(ext, customer, second, direct, uuids)


def assert_clean(stack: CtiStack, calls: Calls, node: str) -> None:
    """Nothing of the calls is left once the node started again (waits for the runtime)."""
    for user in (calls.agent, CALLER, CALLEE):
        wait_until(lambda u=user: live_uuids(stack, u) == [], 5, f"{user}'s calls gone")
        info = userinfo(stack, user)
        assert info is None or info["calls"] == []
        record = calls_record(stack, user)
        assert record["activity"] == [] and record["notify"] == "hangup"
        assert record["current"] in calls.uuids
    wait_until(lambda: not node_records(stack, node) & calls.uuids, 5, "channel records gone")
    assert not csta_legs(stack) & calls.uuids
    wait_until(lambda: waiting(stack) == [], 5, "no caller left in the queue")
    freed = wait_until(lambda: agent(stack, calls.agent).call_state not in ("ring", "talking")
                       and agent(stack, calls.agent), 5, "the agent is off the call")
    assert (freed.offer_uuid, freed.agent_leg) == ("", "")

    # The CTI no longer acts on them: the extensions are on no call (409 naming the
    # extension), not "no such channel" (404) nor a switch refusal.
    admin = stack.server.client("admin")
    for path, says in ((f"/api/hangup/{calls.agent}", "is not on a call"),
                       (f"/api/hold/{calls.agent}", "is not on an answered call"),
                       (f"/api/hangup/{CALLER}", "is not on a call"),
                       (f"/api/hold/{CALLEE}", "is not on an answered call")):
        reply = admin.get(path)
        assert reply.status_code == 409, (path, reply.status_code, reply.text)
        assert says in reply.json()["error"] and reply.json()["field"] == "extension", path


def restart(stack: CtiStack, old: Switch) -> Switch:
    """The same node name starts again on the same Redis (as a restarted FreeSWITCH would)."""
    wait_until(lambda: not old.channels, 5, "the old switch's channels ended")
    return stack.center.start_switch(old.name)


@pytest.mark.parametrize("unload_first", [False, True], ids=["shutdown", "runtime_gone_first"])
def test_shutdown_with_calls_up_then_the_restart_leaves_everything_clean(
        stack: CtiStack, unload_first: bool) -> None:
    """``runtime_gone_first``: the runtime is stopped before the shutdown's hangups, so it
    reads none of them for sure (one outcome of the race; with fakefs's plain shutdown it
    usually reads them all)."""
    calls = put_calls_up(stack)
    old = stack.switch
    [runtime] = old.runtime_threads
    if unload_first:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(runtime.ident),
                                                   ctypes.py_object(SystemExit))
        runtime.join(5)
        assert not runtime.is_alive()
        for user in (calls.agent, CALLER, CALLEE):
            assert len(live_uuids(stack, user)) == 2, user
    old.shutdown(grace=2.0)
    assert not runtime.is_alive()
    wait_until(lambda: not old.channels, 5, "the shutdown hung every call up")

    # FreeSWITCH's order: SHUTDOWN, then every call's hangup (SYSTEM_SHUTDOWN). Whether the
    # stopping runtime read some of them before mod_python3's unload stopped it is a race:
    # the records may or may not be gone here; the restart must leave them gone either way.
    names = [(e.name, e.headers.get("Unique-ID")) for e in list(old.bus.history)]
    shutdown_at = names.index(("SHUTDOWN", None))
    hangups = {uuid: i for i, (name, uuid) in enumerate(names) if name == "CHANNEL_HANGUP"}
    assert calls.uuids <= set(hangups)
    assert all(hangups[uuid] > shutdown_at for uuid in calls.uuids)
    assert {calls.queue_call.hangup_cause, calls.waiting.hangup_cause,
            calls.direct.hangup_cause} == {"SYSTEM_SHUTDOWN"}
    if unload_first:  # nobody read the hangups: the records outlived the calls
        for user in (calls.agent, CALLER, CALLEE):
            assert len(live_uuids(stack, user)) == 2, user
        assert node_records(stack, old.name) >= calls.uuids

    restart(stack, old)
    assert_clean(stack, calls, old.name)


# The killed node's helper threads end on SystemExit, which pytest reports for any thread.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_crash_then_restart_removes_the_calls_agents_and_queue(stack: CtiStack) -> None:
    calls = put_calls_up(stack)
    old = stack.switch
    old.kill()  # no hangup events at all, no call handler finishes its work
    # nothing read the calls' end: what the runtime recorded about them stays until the
    # node starts again
    assert agent(stack, calls.agent).call_state == "talking"
    assert calls.waiting.uuid in waiting(stack)
    for user in (calls.agent, CALLER, CALLEE):
        assert len(live_uuids(stack, user)) == 2, user
    assert node_records(stack, old.name) >= calls.uuids
    assert calls.uuids - {calls.direct.peer} <= csta_legs(stack)
    restart(stack, old)
    assert_clean(stack, calls, old.name)


def test_a_restarted_runtime_keeps_the_live_calls(stack: CtiStack) -> None:
    """A runtime that starts again while the switch runs (pyrun after a crash of the script)
    must not take the live calls for stale ones."""
    calls = put_calls_up(stack)
    sw = stack.switch
    [thread] = sw.runtime_threads
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                               ctypes.py_object(SystemExit))
    thread.join(5)
    assert not thread.is_alive()
    assert sw.api("pyrun fsapps.runtime") == "OK\n"
    wait_until(lambda: any("runtime started" in m for _, m in sw.log[-50:]), 5,
               "the runtime started again")
    assert node_records(stack, sw.name) >= calls.uuids
    for user in (calls.agent, CALLER, CALLEE):
        assert len(live_uuids(stack, user)) == 2, user
    assert agent(stack, calls.agent).call_state == "talking"
    # and their hangups, read by the new runtime, still end them
    for channel in list(sw.channels.values()):
        sw.hangup(channel, "NORMAL_CLEARING")
    for user in (calls.agent, CALLER, CALLEE):
        wait_until(lambda u=user: live_uuids(stack, u) == [], 5, f"{user}'s calls ended")
    wait_until(lambda: not node_records(stack, sw.name) & calls.uuids, 5, "records gone")
