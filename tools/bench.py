"""``make bench`` — routing performance of fsapps' ACD on fake FreeSWITCH nodes with a real
Redis: 1,000 agents in 50 groups, 2,000 callers arriving at a steady rate.

Prints one table: routing decision latency (a call arriving, or an agent turning free, until
an agent is reserved for a call) p50/p99, Redis round trips per decision, CPU time per routed
call, calls routed per second — each against the goal of issue 3. Then the directory and
events rows, and the CTI rows (:mod:`tools.ctibench`: the REST API over keep-alive HTTP,
CSTA push to 200 SockJS/STOMP WebSocket sessions; ``--no-cti`` skips them).

    python -m tools.bench [--agents 1000] [--groups 50] [--calls 2000] [--rate 40]
                           [--no-cti] [--cti-agents 200] [--cti-calls 400] [--cti-rate 20]
                           [--double-offer-runs 5] [--double-offer-load <cores>]

Last, the double-offer row (:mod:`tools.doubleoffer`): the 300-call two-node shape of
tests/test_acd_multinode.py run N times while busy processes saturate the cores, every offer
of a call to an agent followed on the nodes' event buses; doubles counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from fakefs.channel import Behaviour, Channel
from fakefs.scenario import wait_until
from fsapps import directory, metrics
from fsapps.config import NatsSettings, Secret
from fsapps.domain import routing, userdir
from fsapps.domain.callqueue import WaitingCall
from fsapps.events import xcc
from tools import ctibench, doubleoffer
from tools.callcenter import SimulatedCallCenter, reset_database, settings_for
from tools.servers import FreshDatabase, RedisServer, free_port, wait_for_port

DOMAIN = "bench.fsapps"
_rtt = threading.local()


def count_round_trips(client: Any) -> None:
    """Count this process's Redis round trips per thread: every command sent alone and every
    pipeline executed is one."""
    send = client.execute_command
    make_pipeline = client.pipeline

    def execute_command(*args: Any, **options: Any) -> Any:
        _rtt.n = getattr(_rtt, "n", 0) + 1
        return send(*args, **options)

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = make_pipeline(*args, **kwargs)
        run = pipe.execute

        def execute(*a: Any, **k: Any) -> Any:
            _rtt.n = getattr(_rtt, "n", 0) + 1
            return run(*a, **k)
        pipe.execute = execute
        return pipe

    client.execute_command = execute_command
    client.pipeline = pipeline


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def isolated_decisions(center: SimulatedCallCenter, groups: list[str], rng: random.Random,
                       per_thread: int = 500, threads: int = 4) \
        -> tuple[list[tuple[float, ...]], float]:
    """Route calls straight through the decision path (routing facts, candidate order,
    reserve) and release the agent again, from several threads at once; returns the samples
    and decisions per second."""
    def worker(index: int) -> None:
        local = random.Random(index)
        for n in range(per_thread):
            group = local.choice(groups)
            uuid = f"bench-{index}-{n}"
            started = metrics.start()
            facts = center.groups.routing_facts(group, f"137{index:02d}{n:06d}")
            assert facts.group is not None
            order = routing.candidate_order(facts.group.mode, facts.members, rng=local)
            call = WaitingCall(uuid, "bench", group, "137", "137", "normal", "", 0)
            found = center.agents.reserve_or_queue(call, order, lease_ms=20000, enqueue=False,
                                                  record_current=False)
            metrics.stop("isolated", started)
            if found.extension:
                center.agents.release(found.extension, uuid, "cancel")

    metrics.reset()
    metrics.enable()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    metrics.enable(False)
    samples = metrics.samples("isolated")
    return samples, len(samples) / elapsed


class _Params:
    """The request Event xml_fetch reads (only getHeader)."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers

    def getHeader(self, name: str) -> str | None:  # noqa: N802 - FreeSWITCH's name
        return self.headers.get(name)


def directory_bench(ctx: Any, domain: str, users: int = 100_000,
                    lookups: int = 20_000, seed: int = 7) -> list[tuple[str, str, str]]:
    """Seed 003's directory: ``users`` extensions in ``cti_exten@<domain>`` (a quarter with a
    number-alias), then ``lookups`` REGISTER-style ``xml_fetch`` calls from one thread, by id
    and by alias (and some unknown names). Measures the Python side of a lookup: the Redis
    round trip, parsing the record and rendering the XML. Returns the table rows."""
    rng = random.Random(seed)
    store = userdir.UserDirectory(ctx, domain)
    ctx.redis.delete(store.hash, store.alias_hash)
    exts = [userdir.parse_record(str(100000 + n), domain, {
        "param": {"password": f"pw{n}", "vm-password": str(n)},
        "variable": {"effective_caller_id_name": f"Agent {n}", "user_context": "default"},
        "attribute": {"number-alias": f"a{n}"} if n % 4 == 0 else {}})
        for n in range(users)]
    started = time.perf_counter()
    store.set_many(exts, batch=1000)
    load_s = time.perf_counter() - started
    names = [str(100000 + rng.randrange(users)) for _ in range(lookups)]
    for i in range(0, lookups, 10):
        names[i] = f"a{4 * rng.randrange(users // 4)}"  # 10% by alias
    names[5::50] = ["nobody"] * len(names[5::50])  # 2% unknown
    base = {"section": "directory", "tag_name": "domain", "key_name": "name",
            "key_value": domain, "domain": domain, "action": "sip_auth",
            "sip_auth_method": "REGISTER"}
    latencies: list[float] = []
    found = 0
    wall = time.perf_counter()
    for name in names:
        params = _Params({**base, "user": name, "sip_auth_username": name})
        t0 = time.perf_counter()
        text = directory.xml_fetch(params, "")
        latencies.append((time.perf_counter() - t0) * 1000)
        found += text != userdir.NOT_FOUND
    wall = time.perf_counter() - wall
    return [
        ("extensions in cti_exten@<domain> / import time", f"{users} / {load_s:.1f} s", ""),
        ("lookups (10% by alias, 2% unknown) / found", f"{lookups} / {found}", ""),
        ("lookups per second (one thread)", f"{lookups / wall:.0f}/s", ""),
        ("lookup latency p50", f"{percentile(latencies, 50):.3f} ms", ""),
        ("lookup latency p99", f"{percentile(latencies, 99):.3f} ms", "< 1 ms"),
        ("Redis round trips per lookup", "1 (EVALSHA exten_lookup)", "1"),
    ]


def print_directory_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{'directory (seed 003, xml_fetch)':<{width}}  {'measured':>26}  goal")
    print(f"{'-' * width}  {'-' * 26}  {'-' * 8}")
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value:>26}  {goal}")


def progress(text: str) -> None:
    print(f"  {text}", flush=True)


def events_bench(redis_url: str, dsn: str, events: int = 20_000) -> list[tuple[str, str, str]]:
    """Switch events through one node's ``fsapps.runtime`` into Redis pub/sub (seed EVENT_*)
    and NATS (XCC Event.NativeEvent), with a real nats-server when one is installed: how many
    per second the runtime drains, and whether the switch dropped any."""
    nats_proc = None
    settings = settings_for(redis_url, dsn, DOMAIN)
    if shutil.which("nats-server"):
        port = free_port()
        nats_proc = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port)
        settings = dataclasses.replace(settings, nats=NatsSettings(
            enabled=True, url=Secret(f"nats://127.0.0.1:{port}")))
    center = SimulatedCallCenter(settings)
    try:
        switch = center.start_switch("events")
        publisher = xcc.get_publisher(settings.nats) if settings.nats.enabled else None
        if publisher is not None:
            wait_until(lambda: publisher.connected, 5, "NATS connected")
        channel = switch.new_channel(name="sofia/internal/1001@bench", direction="inbound",
                                     caller_id_name="1001", caller_id_number="1001",
                                     destination_number="1002", context="default")
        sent0 = publisher.sent if publisher is not None else 0
        redis_before = center.ctx.redis.info("stats").get("total_commands_processed", 0)
        t0 = time.perf_counter()
        kinds = ("CHANNEL_ANSWER", "CHANNEL_BRIDGE", "DTMF")  # both Redis and NATS carry them
        for n in range(events):
            switch.fire(kinds[n % len(kinds)], channel)
        fired = time.perf_counter() - t0
        if publisher is not None:
            wait_until(lambda: publisher.sent - sent0 >= events, 120,
                       "the runtime published every event on NATS")
        else:
            time.sleep(1.0)
        drained = time.perf_counter() - t0
        dropped = switch.bus.dropped()
        redis_cmds = center.ctx.redis.info("stats").get("total_commands_processed", 0) - \
            redis_before
        return [
            ("events fired by the switch", f"{events} in {fired:.1f} s", ""),
            ("events through the runtime per second", f"{events / drained:.0f}/s", ""),
            ("published on NATS (XCC)", f"{publisher.sent - sent0}" if publisher is not None
             else "skipped: no nats-server", ""),
            ("Redis commands (PUBLISH ...) for them", str(redis_cmds), ""),
            ("switch events dropped (EventConsumer full)", str(dropped), "0"),
        ]
    finally:
        center.close()
        xcc.close_publisher()
        if nats_proc is not None:
            nats_proc.terminate()
            nats_proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fsapps bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--groups", type=int, default=50)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--rate", type=float, default=40.0, help="calls per second (40)")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--directory-users", type=int, default=100_000,
                   help="extensions for the directory row (100000; 0 skips it)")
    p.add_argument("--no-cti", action="store_true",
                   help="skip the CTI rows (REST API and CSTA push, about a minute)")
    p.add_argument("--cti-agents", type=int, default=200,
                   help="agents, each with a SockJS/STOMP session, for the CTI rows (200)")
    p.add_argument("--cti-clients", type=int, default=8,
                   help="concurrent keep-alive REST clients (8)")
    p.add_argument("--cti-calls", type=int, default=400,
                   help="queue calls in the CSTA fan-out row (400)")
    p.add_argument("--cti-rate", type=float, default=20.0,
                   help="their calls per second (20)")
    p.add_argument("--cti-burst", type=int, default=10_000,
                   help="CSTA feed records published at once in the burst row (10000)")
    p.add_argument("--double-offer-runs", type=int, default=5,
                   help="runs of the 300-call two-node shape under CPU load, every offer "
                        "checked for a double (5, about 15 s each; 0 skips them)")
    p.add_argument("--double-offer-load", type=int, default=os.cpu_count() or 2,
                   help="busy processes competing for the CPU meanwhile (one per core)")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)

    print(f"fsapps bench: {args.agents} agents in {args.groups} groups, {args.calls} calls at "
          f"{args.rate:g}/s on {args.nodes} fake nodes, real Redis", flush=True)
    redis_server = RedisServer().start()
    database = FreshDatabase().create()
    center = None
    try:
        reset_database(database.dsn)
        center = SimulatedCallCenter(settings_for(redis_server.url, database.dsn, DOMAIN))
        for _ in range(args.nodes):
            center.start_switch()
        groups = [str(1000 + g) for g in range(args.groups)]
        for number in groups:
            center.group(number, group_call_mode=rng.choice([0, 1, 2, 5]),
                         group_callout_timeout=5, wrapup_seconds=0)
        progress(f"{len(groups)} groups created; registering and logging in agents ...")
        for i in range(args.agents):
            center.agent(str(100000 + i), [groups[i % len(groups)]],
                         switch=center.switches[i % args.nodes],
                         behaviour=Behaviour(answer_after_ms=rng.randint(50, 300)))
            if (i + 1) % 200 == 0:
                progress(f"{i + 1}/{args.agents} agents ready")

        count_round_trips(center.ctx.redis)
        metrics.round_trips = lambda: getattr(_rtt, "n", 0)
        metrics.reset()
        metrics.enable()
        callers: list[Channel] = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        interval = 1.0 / args.rate
        for n in range(args.calls):
            target = wall0 + n * interval
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            switch = center.switches[n % args.nodes]
            callers.append(center.call(switch, f"139{n:08d}", f"7{rng.choice(groups)}",
                                       hangup_after_bridge_ms=rng.randint(300, 2000)))
            if (n + 1) % 500 == 0:
                progress(f"{n + 1}/{args.calls} calls placed")
        wait_until(lambda: all(not c.up for c in callers), 180, "every bench call ended")
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        metrics.enable(False)
        for switch in center.switches:
            switch.media_durations.clear()

        route = metrics.samples("route_decision")
        dispatch = metrics.samples("dispatch_decision")
        loaded = route + dispatch
        answered = sum("bridged" in c.times for c in callers)
        dropped = sum(sw.bus.dropped() for sw in center.switches)

        progress("isolated decision path: the same Redis and data, no simulated switch load")
        isolated, _ = isolated_decisions(center, groups, rng, per_thread=1000, threads=1)
        _, per_second = isolated_decisions(center, groups, rng, per_thread=500, threads=4)

        def stats(samples: list[tuple[float, ...]]) -> tuple[float, float, float, float]:
            latencies = [x[0] * 1000 for x in samples]
            return (percentile(latencies, 50), percentile(latencies, 99),
                    statistics.median([x[2] for x in samples]) if samples else float("nan"),
                    statistics.median([x[1] * 1000 for x in samples]) if samples
                    else float("nan"))

        l50, l99, lrtt, lcpu = stats(loaded)
        i50, i99, irtt, icpu = stats(isolated)
        rows = [
            ("calls placed / answered", f"{args.calls} / {answered}", "", ""),
            ("decisions: on arrival / agent freed", f"{len(route)} / {len(dispatch)}",
             f"{len(isolated)}", ""),
            ("decision latency p50", f"{l50:.3f} ms", f"{i50:.3f} ms", ""),
            ("decision latency p99", f"{l99:.3f} ms", f"{i99:.3f} ms", "< 2 ms"),
            ("Redis round trips per decision (median)", f"{lrtt:.0f}", f"{irtt:.0f}", "<= 3"),
            ("CPU per routed call: decision path (median)", f"{lcpu:.3f} ms", f"{icpu:.3f} ms",
             ""),
            ("CPU per routed call: whole simulation", f"{1000 * cpu / max(len(loaded), 1):.2f} ms",
             "", ""),
            ("calls routed per second", f"{len(loaded) / wall:.0f}/s (offered)",
             f"{per_second:.0f}/s", ">= 200/s"),
            ("switch events dropped (EventConsumer full)", str(dropped), "", "0"),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"\n{'measure':<{width}}  {'under fakefs load':>18}  {'isolated':>10}  goal")
        print(f"{'-' * width}  {'-' * 18}  {'-' * 10}  {'-' * 8}")
        for name, under_load, alone, goal in rows:
            print(f"{name:<{width}}  {under_load:>18}  {alone:>10}  {goal}")
        print(f"\n(load phase: wall {wall:.1f} s, process CPU {cpu:.1f} s, the fake switches "
              "running in the same Python process as fsapps; 'isolated': the decision path "
              "alone — latency from one thread, throughput from 4 threads at once.\n One run "
              "on a shared 2-core machine: compare medians and ratios, not single figures.)")
        if args.directory_users > 0:
            progress(f"directory: {args.directory_users} extensions, xml_fetch lookups")
            print_directory_table(directory_bench(center.ctx, DOMAIN, args.directory_users,
                                                  seed=args.seed))
        center.close()
        center = None
        progress("events: switch events through the runtime into Redis and NATS")
        event_rows = events_bench(redis_server.url, database.dsn)
        width = max(len(r[0]) for r in event_rows)
        print(f"\n{'events (runtime → Redis pub/sub + NATS)':<{width}}  "
              f"{'measured':>24}  goal")
        print(f"{'-' * width}  {'-' * 24}  {'-' * 8}")
        for name, value, goal in event_rows:
            print(f"{name:<{width}}  {value:>24}  {goal}")
        if not args.no_cti:
            ctibench.print_tables(*ctibench.cti_bench(
                redis_server.url, database.dsn, agents=args.cti_agents,
                clients=args.cti_clients, calls=args.cti_calls, rate=args.cti_rate,
                burst=args.cti_burst))
        if args.double_offer_runs > 0:
            progress(f"double offers: {args.double_offer_runs} runs of 300 calls on 2 nodes, "
                     f"{args.double_offer_load} busy processes alongside")
            stress_rows = doubleoffer.rows(doubleoffer.stress(
                redis_server.url, database.dsn, args.double_offer_runs,
                args.double_offer_load, progress), args.double_offer_load)
            width = max(len(r[0]) for r in stress_rows)
            print(f"\n{'double offers (300 calls, 2 nodes, CPU saturated)':<{width}}  "
                  f"{'measured':>20}  goal")
            print(f"{'-' * width}  {'-' * 20}  {'-' * 8}")
            for name, value, goal in stress_rows:
                print(f"{name:<{width}}  {value:>20}  {goal}")
        return 0
    finally:
        if center is not None:
            center.close()
        redis_server.close()
        database.drop()


if __name__ == "__main__":
    sys.exit(main())
