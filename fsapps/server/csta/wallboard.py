"""The wallboard: a supervisor's view of a domain from Redis, for
``GET /api/csta/wallboard`` (:mod:`fsapps.server.csta.rest`).

Reads the groups, the queue and the agents (their modules), each group's statistics of the
last 15 minutes (:mod:`fsapps.domain.stats`: service level, ASA, abandoned), the CSTA agent
records (their
index ``p:{d}:csta:agents``: job -> device, one HGETALL) and the live CSTA calls
(``p:{d}:csta:legs``, ``p:{d}:csta:call:<callId>``).

Each figure is counted once and in its own place: ``summary.readyAgents`` counts distinct
agents (one in two groups is one free agent; the groups' ``ready`` say who could take that
group's calls), ``summary.talking`` counts calls with two parties connected, apart from the
ringing ones and the callers waiting in a queue. Only agents are rows: an extension logged
into a group, with a job number or with a CSTA agent record - not every registered phone
(the supervisor's own, a desk phone).
"""

from __future__ import annotations

import json
import time
from typing import Any

from fsapps.domain.agents import Agents
from fsapps.domain.callqueue import CallQueue
from fsapps.domain.groups import Group, Groups
from fsapps.domain.stats import QueueStats


def wallboard(ctx: Any, domain: str, now_ms: int | None = None) -> dict[str, Any]:
    """The supervisor's view of a domain (blocking; a handful of round trips, none per
    group): groups with their waiting callers and longest wait, agents with state and time
    in it, live calls (each with its ``status``), and the ``summary`` figures."""
    now = now_ms or int(time.time() * 1000)
    keys = ctx.keys(domain)
    numbers = Groups(ctx, domain).numbers()
    waiting = CallQueue(ctx, domain).waiting()
    agents = Agents(ctx, domain).all()
    recent = {row["group"]: row for row in QueueStats(ctx, domain).groups(None, now)}
    # every group's hash and members, the CSTA agent records and the live calls' index: one
    # pipelined round trip, however many groups
    pipe = ctx.redis.pipeline(transaction=False)
    for number in numbers:
        pipe.hgetall(keys.group(number))
        pipe.zrange(keys.group_members(number), 0, -1)
    pipe.hgetall(keys.csta_agents())
    pipe.hvals(keys.csta_legs())
    *per_group, csta_agents, legs = pipe.execute()
    group_rows = []
    for i, number in enumerate(numbers):
        data, members = per_group[2 * i], list(per_group[2 * i + 1])
        group = Group.from_hash(data) if data else None
        mine = [w for w in waiting if w.group == number]
        last15 = recent.get(number, {}).get("15m", {})
        group_rows.append({
            "group": number, "name": group.group_name if group else number,
            "waiting": len(mine), "members": len(members),
            "ready": sum(1 for a in agents if a.extension in members and a.available(now)),
            "longestWaitMs": max((now - w.arrived_ms for w in mine), default=0),
            "callers": [{"number": w.number, "level": w.level, "waitMs": now - w.arrived_ms,
                         "uuid": w.uuid} for w in sorted(mine, key=lambda w: w.arrived_ms)],
            # the last 15 minutes: service level (0..1, None before any call ended its
            # wait), average speed of answer (s), callers who hung up waiting
            "serviceLevel": last15.get("serviceLevel"),
            "serviceLevelSeconds": recent.get(number, {}).get("serviceLevelSeconds", 20),
            "asaSeconds": last15.get("asaSeconds"), "abandoned": last15.get("abandoned", 0),
            "answered": last15.get("answered", 0)})
    jobs = {str(dev): str(job) for job, dev in csta_agents.items() if dev}
    call_ids = sorted(set(legs))
    pipe = ctx.redis.pipeline(transaction=False)
    for call_id in call_ids:
        pipe.hgetall(keys.csta_call(call_id))
    calls = []
    for call_id, doc in zip(call_ids, pipe.execute(), strict=True):
        parties = []
        for name, value in doc.items():
            if name.startswith("p:"):
                try:
                    leg = json.loads(value)
                except ValueError:
                    continue
                parties.append({"uuid": name[2:], "device": leg.get("d", ""),
                                "state": leg.get("s", "")})
        if parties:
            calls.append({"callId": call_id, "calling": doc.get("calling", ""),
                          "called": doc.get("called", ""), "parties": parties,
                          "status": call_status(parties)})
    # A call the ACD did not place (a consult, a direct call) shows on the agent's row too.
    on_call: dict[str, str] = {}
    for call in calls:
        for party in call["parties"]:
            state = {"Alerting": "ring", "Connect": "talking", "Hold": "talking",
                     "Initiate": "talking"}.get(party["state"], "")
            if state and on_call.get(party["device"]) != "talking":
                on_call[party["device"]] = state
    agent_rows = []
    for a in agents:
        if not is_agent(a, jobs):
            continue
        dev = f"{a.extension}@{domain}"
        state = a.call_state
        if state not in ("ring", "talking") and dev in on_call:
            state = on_call[dev]
        agent_rows.append({
            "extension": a.extension, "job": a.job_number or jobs.get(a.extension, ""),
            "state": state, "seat": a.seat_status, "loggedIn": a.logged_in,
            "registered": a.reg_state == "reged", "groups": list(a.groups),
            "sinceMs": max(0, now - a.last_change) if a.last_change else 0, "device": dev})
    summary = {"waiting": len(waiting),
               "ringing": sum(c["status"] == "ringing" for c in calls),
               "talking": sum(c["status"] == "talking" for c in calls),
               "readyAgents": sum(1 for a in agents if a.available(now))}
    return {"domain": domain, "time": now, "groups": group_rows, "agents": agent_rows,
            "calls": calls, "summary": summary}


def call_status(parties: list[dict[str, str]]) -> str:
    """``talking`` once a party is connected and nobody is still alerted (or two parties are
    connected: a third ringing in does not stop a conversation; a caller's leg from outside
    stays ``Null``, on hold counts as connected), ``ringing`` while a party is alerted, else
    ``waiting`` (a caller alone: in the queue, an IVR)."""
    connected = sum(p["state"] in ("Connect", "Hold") for p in parties)
    alerting = any(p["state"] == "Alerting" for p in parties)
    if connected >= 2 or (connected and not alerting):
        return "talking"
    return "ringing" if alerting else "waiting"


def is_agent(agent: Any, csta_jobs: dict[str, str]) -> bool:
    """An extension the wallboard lists: logged into a group, given a job number, or with a
    wellClient agent record. Every registered phone has an agent hash; a supervisor's phone
    that is none of these is no agent."""
    return bool(agent.logged_in or agent.groups or agent.job_number
                or agent.extension in csta_jobs)
