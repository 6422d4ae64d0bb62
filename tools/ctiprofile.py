"""Where a CTI request's time goes (issue 20; docs/performance-cti.md): one CTI server process
(``fsapps.server.app.serve``, one worker) on 200 agents, driven one request at a time by a
keep-alive client in this process, for ``get_extensions``, ``extension_info``,
``agent_busy`` + ``agent_ready`` and a CSTA record fanned out to 200 SockJS sessions. For
each: the latency (p50 / p99), the server process's CPU per request (/proc/<pid>/stat), the
Redis commands and Redis CPU per request (INFO commandstats / cpu), and, with ``--py-spy``,
the functions the server spent its samples in (py-spy, all threads).

Runs against whatever ``fsapps`` is importable: ``PYTHONPATH=<an older tree> python -m
tools.ctiprofile`` measures that tree with the same driver.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import multiprocessing
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import aiohttp
import redis
import requests

from fsapps.config import Secret, UserSettings
from fsapps.domain.agents import Agents
from fsapps.server.passwords import hash_password
from tools.callcenter import SimulatedCallCenter, reset_database, settings_for
from tools.servers import FreshDatabase, RedisServer, free_port

DOMAIN = "cti.profile"


def _serve(settings: Any, port: int) -> None:
    from fsapps.server.app import serve
    from fsapps.server.services import CtiServices
    serve(CtiServices(settings), "127.0.0.1", port)


def cpu_ms(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def redis_figures(client: Any) -> tuple[int, float]:
    stats = client.info("commandstats")
    calls = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
    cpu = client.info("cpu")
    return calls, (float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])) * 1000


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Measure:
    def __init__(self, pid: int, client: Any, spy: bool, name: str) -> None:
        self.pid, self.client, self.spy, self.name = pid, client, spy, name
        self.spy_file = tempfile.mktemp(suffix=".txt")
        self.process: Any = None

    def __enter__(self) -> Measure:
        if self.spy:
            self.process = subprocess.Popen(
                [os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "-p",
                 str(self.pid), "-r", "500", "-f", "raw", "-o", self.spy_file, "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        self.cpu0, (self.calls0, self.rcpu0) = cpu_ms(self.pid), redis_figures(self.client)
        return self

    def __exit__(self, *_: object) -> None:
        self.cpu = cpu_ms(self.pid) - self.cpu0
        calls, rcpu = redis_figures(self.client)
        self.calls, self.rcpu = calls - self.calls0 - 2, rcpu - self.rcpu0  # (our 2 INFOs)
        if self.process is not None:
            self.process.send_signal(2)
            self.process.wait(20)

    def top(self, n: int = 6) -> list[tuple[str, float]]:
        """The functions most samples were in (self time, % of the server's samples)."""
        if not self.spy or not os.path.exists(self.spy_file):
            return []
        leaves: collections.Counter[str] = collections.Counter()
        total = 0
        with open(self.spy_file) as f:
            for line in f:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                frames = stack.split(";")
                leaf = frames[-1] if frames else "?"
                if "select" in leaf or "epoll" in leaf or "wait (threading" in leaf \
                        or "_worker (concurrent" in leaf:
                    continue  # idle: waiting for work
                leaves[leaf.split(" (")[0] + " (" + leaf.split("(")[-1].split(":")[0].rsplit(
                    "/", 1)[-1]] += int(count)
                total += int(count)
        return [(name, 100 * c / max(total, 1)) for name, c in leaves.most_common(n)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools.ctiprofile", description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--records", type=int, default=500)
    p.add_argument("--py-spy", action="store_true", dest="spy")
    args = p.parse_args(argv)
    redis_server = RedisServer().start()
    database = FreshDatabase().create()
    server = None
    try:
        reset_database(database.dsn)
        exts = [str(2000 + n) for n in range(args.agents)]
        users = [UserSettings("admin", Secret(hash_password("admin", iterations=1000)),
                              "admin", "")]
        users += [UserSettings(f"a{e}", Secret(hash_password("pw", iterations=1000)), "agent",
                               e) for e in exts]
        settings = dataclasses.replace(settings_for(redis_server.url, database.dsn, DOMAIN),
                                       users=tuple(users))
        center = SimulatedCallCenter(settings)
        center.group("110")
        agents = Agents(center.ctx, DOMAIN)
        pipe = center.ctx.redis.pipeline(transaction=False)
        for ext in exts:
            agents.ensure(ext, pipeline=pipe)
            agents.set_groups(ext, ["110"], pipe)
        pipe.execute()
        for ext in exts:
            agents.set_fields(ext, reg_state="reged", seat_status="idle")
        port = free_port()
        server = multiprocessing.get_context("spawn").Process(target=_serve,
                                                              args=(settings, port))
        server.start()
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if requests.get(base + "/api/openapi.json", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        http = requests.Session()
        token = http.post(base + "/api/login", json={"username": "admin",
                                                     "password": "admin"}).json()["token"]
        http.headers["Authorization"] = f"Nway {token}"
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        ext = exts[-1]
        pid = int(server.pid or 0)
        ops: list[tuple[str, list[tuple[str, str, Any]]]] = [
               ("GET /api/get_extensions", [("GET", "/api/get_extensions", None)]),
               ("GET /api/extension_info/<ext>", [("GET", f"/api/extension_info/{ext}", None)]),
               ("POST agent_busy + agent_ready (pair)",
                [("POST", "/api/agent_busy", {"Extension": ext}),
                 ("POST", "/api/agent_ready", {"Extension": ext})])]
        results: list[tuple[str, int, list[float], Measure]] = []
        for name, steps in ops:
            for method, path, body in steps * 20:  # warm
                http.request(method, base + path, json=body).raise_for_status()
            times = []
            with Measure(pid, client, args.spy, name) as m:
                for _ in range(args.requests):
                    t0 = time.perf_counter()
                    for method, path, body in steps:
                        http.request(method, base + path, json=body).raise_for_status()
                    times.append((time.perf_counter() - t0) * 1000)
            results.append((name, args.requests, times, m))
        results.append(asyncio.run(fan_out(base, exts, pid, client, args.records,
                                           args.spy)))
        print(f"\n{'operation':<40} {'p50 / p99 ms':>16} {'server CPU':>12} "
              f"{'Redis cmds':>10} {'Redis CPU':>10}   (per request)")
        for name, n, times, m in results:
            print(f"{name:<40} {pct(times, 50):>7.2f} / {pct(times, 99):<6.2f} "
                  f"{m.cpu / n:>9.2f} ms {m.calls / n:>10.1f} {1000 * m.rcpu / n:>7.0f} µs")
        if args.spy:
            for name, _, _, m in results:
                print(f"\n{name}: where the server's samples were (self, all threads)")
                for frame, share in m.top():
                    print(f"  {share:5.1f}%  {frame}")
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.join(10)
        redis_server.close()
        database.drop()


async def fan_out(base: str, exts: list[str], pid: int, client: Any, records: int,
                  spy: bool) -> tuple[str, int, list[float], Measure]:
    """200 SockJS WebSocket sessions, each SUBSCRIBEd to its own device; ``records`` CSTA
    records published one at a time on the domain's feed, each for one session's device:
    from PUBLISH to the MESSAGE in that session."""
    got: dict[str, asyncio.Future[float]] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = {}
        for ext in exts:
            async with http.post(base + "/api/login", json={"username": f"a{ext}",
                                                            "password": "pw"}) as r:
                token = (await r.json())["token"]
            ws = await http.ws_connect(f"{base}/mvc/stomp/{random.randrange(1000):03d}/"
                                       f"{uuid.uuid4().hex[:8]}/websocket")
            await ws.receive()  # o
            for frame in (f"CONNECT\naccept-version:1.1\nheart-beat:0,0\nsessionId:{token}\n\n\0",
                          f"SUBSCRIBE\nid:s\ndestination:/topic/csta/device/{ext}@{DOMAIN}\n"
                          "receipt:r\n\n\0"):
                await ws.send_str(json.dumps([frame]))
                await ws.receive()
            sockets[ext] = ws

        async def read(ws: Any) -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT and msg.data.startswith("a"):
                    now = time.perf_counter()
                    for text in json.loads(msg.data[1:]):
                        if text.startswith("MESSAGE"):
                            call = json.loads(text.split("\n\n", 1)[1].rstrip("\0"))["callId"]
                            if call in got and not got[call].done():
                                got[call].set_result(now)
        readers = [asyncio.ensure_future(read(ws)) for ws in sockets.values()]
        channel = f"t:{{{DOMAIN}}}:csta"
        times = []
        with Measure(pid, client, spy, "fan-out") as m:
            for n in range(records):
                dev = f"{exts[n % len(exts)]}@{DOMAIN}"
                call = f"p-{n}"
                got[call] = asyncio.get_running_loop().create_future()
                t0 = time.perf_counter()
                client.publish(channel, json.dumps({
                    "id": secrets.token_hex(8), "name": "connectionCleared", "callId": call,
                    "uuid": call, "device": dev, "localState": "None", "calling": "1@x",
                    "called": dev, "parties": [dev], "time": int(time.time() * 1000),
                    "domain": DOMAIN}))
                times.append((await asyncio.wait_for(got[call], 10) - t0) * 1000)
        for task in readers:
            task.cancel()
        for ws in sockets.values():
            await ws.close()
    return (f"CSTA record -> 1 of {len(exts)} sessions", records, times, m)


if __name__ == "__main__":
    sys.exit(main())
