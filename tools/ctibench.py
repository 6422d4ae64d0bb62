"""The CTI rows of ``make bench``: the CTI server (:mod:`fsapps.server`, seed 001's REST API) and
wellClient's event stream (:mod:`fsapps.server.csta`, SockJS + STOMP) over real HTTP and WebSocket
connections, against a server wired to a fake switch running fsapps.runtime, a real Redis and
PostgreSQL. Everything (switch, server, clients) runs in this one Python process.

REST (keep-alive ``requests`` sessions):

- one client, one request at a time: ``GET /api/get_extensions`` with every agent,
  ``agent_busy`` + ``agent_ready`` pairs, ``hold`` + ``unhold`` pairs on a live call (server →
  Redis → the node's runtime → the switch → the reply back);
- ``clients`` concurrent clients, each cycling through get_extensions / extension_info /
  agent_busy / agent_ready on its own agent: requests per second and latency under contention.

CSTA (aiohttp WebSocket clients, SockJS framing, STOMP 1.1):

- ``sessions`` agents log in the wellClient way (``POST /login``, agent/state Login Ready),
  each opens a SockJS WebSocket session and SUBSCRIBEs to its agent topic;
- quiet: queue calls one at a time to one agent (the others busy), watched by its WebSocket
  session and by a second session over xhr polling; from the switch event (its
  Event-Date-Timestamp) of the agent leg to the STOMP MESSAGE in the session (delivered ← 180,
  established ← answer, connectionCleared ← hangup);
- fan-out: ``calls`` queue calls at ``rate``/s to all the agents, every session reading: the
  same latency under load, MESSAGE frames per second, and every agent-leg event the switch
  fired checked off against what the sessions received (lost = fired, never received);
- burst: ``burst`` records published at once on the domain's CSTA feed channel, as the switch
  runtimes publish them (a call's delivered / established / connectionCleared, for each
  session in turn): how fast the server's hub turns them into MESSAGE frames, none lost.

``python -m tools.ctibench`` prints only these tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import requests
from aiohttp import WSMsgType

from fakefs.channel import Behaviour, Channel
from fakefs.events import Event
from fakefs.scenario import wait_until
from fsapps.config import Secret, UserSettings
from fsapps.server.app import serve_processes, worker_count
from fsapps.server.passwords import hash_password
from fsapps.switch import acd
from tools.callcenter import SimulatedCallCenter, reset_database, settings_for
from tools.servers import FreshDatabase, RedisServer

DOMAIN = "cti.bench"
GROUP = "110"
Row = tuple[str, str, str]
Key = tuple[str, str, str]  # (CSTA eventName, callId, deviceId)
# agent-leg switch events → the CSTA event the agent's session receives for them
_CSTA_OF = {"CHANNEL_PROGRESS": "delivered", "CHANNEL_PROGRESS_MEDIA": "delivered",
            "CHANNEL_ANSWER": "established", "CHANNEL_HANGUP_COMPLETE": "connectionCleared"}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def progress(text: str) -> None:
    print(f"  {text}", flush=True)


def _p50_p99(values: list[float]) -> str:
    return f"{percentile(values, 50):.2f} / {percentile(values, 99):.2f} ms"


# ------------------------------------------------------------------------ set-up ---------
@dataclass
class Bench:
    center: SimulatedCallCenter
    server: Any
    admin_token: str
    agents: list[str]
    passwords: dict[str, str]

    @property
    def switch(self) -> Any:
        return self.center.switches[0]

    def client(self, token: str | None = None) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Nway {token or self.admin_token}"
        return session

    def close(self) -> None:
        try:
            self.server.close()
        finally:
            self.center.close()


def job(ext: str) -> str:
    """The wellClient job number (CTI user name) of agent ``ext``."""
    return f"a{ext}"


class ServerProcesses:
    """``fsapps cti serve`` as production runs it, in processes of its own (not this one's
    GIL): :func:`fsapps.server.app.serve_processes` with ``processes`` workers on a free
    port."""

    def __init__(self, settings: Any, processes: int) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = multiprocessing.get_context("spawn").Process(
            target=serve_processes, args=(settings, "127.0.0.1", self.port, processes),
            name="cti-server", daemon=True)
        self.process.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(self.url + "/api/openapi.json", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or not self.process.is_alive():
                self.close()
                raise RuntimeError("the CTI server processes did not start")
            time.sleep(0.1)
        time.sleep(0.5)  # every worker listening, not only the first

    def pids(self) -> list[int]:
        """The serving processes: the workers (or the one process when there is one)."""
        pid = int(self.process.pid or 0)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            children = []
        return children or [pid]

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total

    def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(15)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def start(redis_url: str, dsn: str, agents: int, processes: int = 0) -> Bench:
    """A fresh call center (one fake switch, group 110 with ``agents`` agents whose phones
    answer after 50-150 ms), CTI users for them and an admin, and a CTI server (``processes``
    worker processes, 0: one per core) on a free port, with the production thread count."""
    reset_database(dsn)
    exts = [str(2000 + n) for n in range(agents)]
    # Fresh random passwords; cheap hashes (1000 rounds, the production format) so 200 logins
    # measure the server, not PBKDF2.
    passwords = {job(ext): secrets.token_hex(8) for ext in exts}
    passwords["admin"] = secrets.token_hex(8)
    users = tuple(UserSettings(name, Secret(hash_password(pw, iterations=1000)),
                               "admin" if name == "admin" else "agent",
                               "" if name == "admin" else name[1:])
                  for name, pw in passwords.items())
    settings = dataclasses.replace(settings_for(redis_url, dsn, DOMAIN), users=users)
    center = SimulatedCallCenter(settings)
    server = None
    try:
        center.start_switch("cti1")
        center.group(GROUP, group_callout_timeout=10, wrapup_seconds=0)
        rng = random.Random(11)
        for i, ext in enumerate(exts):
            center.agent(ext, [GROUP], behaviour=Behaviour(answer_after_ms=rng.randint(50, 150)))
            if (i + 1) % 100 == 0:
                progress(f"{i + 1}/{agents} agents registered")
        server = ServerProcesses(settings, processes)
        reply = requests.post(server.url + "/api/login", timeout=10, json={
            "username": "admin", "password": passwords["admin"]})
        reply.raise_for_status()
        return Bench(center, server, str(reply.json()["token"]), exts, passwords)
    except BaseException:
        if server is not None:
            server.close()
        center.close()
        raise


# ------------------------------------------------------------------------ REST -----------
def _timed(fn: Callable[[], None], count: int) -> tuple[list[float], float]:
    """``count`` calls of ``fn`` one after another: latencies (ms) and calls per second."""
    times = []
    wall = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times, count / (time.perf_counter() - wall)


def _ok(reply: requests.Response) -> None:
    if reply.status_code != 200:
        raise RuntimeError(f"{reply.request.method} {reply.url}: {reply.status_code} "
                           f"{reply.text[:200]}")


def rest_rows(bench: Bench, requests_each: int = 300, clients: int = 8,
              per_client: int = 200) -> list[Row]:
    base = bench.server.url
    http = bench.client()
    ext = bench.agents[-1]
    _ok(http.get(base + "/api/get_extensions", timeout=15))  # connect, warm up

    def read() -> None:
        _ok(http.get(base + "/api/get_extensions", timeout=15))

    def write() -> None:
        for path in ("/api/agent_busy", "/api/agent_ready"):
            _ok(http.post(base + path, json={"Extension": ext}, timeout=15))

    progress(f"REST: one keep-alive client, {requests_each} get_extensions, "
             f"{requests_each // 2} busy/ready and hold/unhold pairs")
    reads, read_rate = _timed(read, requests_each)
    writes, write_rate = _timed(write, requests_each // 2)

    customer = bench.center.call(bench.switch, "13800000000", f"7{GROUP}")
    switch = bench.switch
    leg = wait_until(lambda: customer.peer and switch.channels.get(customer.peer)
                     and switch.channels[customer.peer].answered
                     and switch.channels[customer.peer], 10, "the hold call answered")
    talking = str(leg.get("dialed_user"))
    wait_until(lambda: bench.center.ctx.redis.hget(f"cti_userinfo@{DOMAIN}", talking), 5,
               "the hold call recorded")

    def hold() -> None:
        for path in (f"/api/hold/{talking}", f"/api/unhold/{talking}"):
            _ok(http.get(base + path, timeout=15))

    # the answer reaches Redis through the node's runtime a moment after the fake leg has it
    wait_until(lambda: http.get(base + f"/api/hold/{talking}", timeout=15).status_code == 200,
               5, "the hold call answered in Redis")
    _ok(http.get(base + f"/api/unhold/{talking}", timeout=15))

    holds, hold_rate = _timed(hold, requests_each // 2)
    switch.hangup(customer)
    wait_until(lambda: not switch.channels, 10, "the hold call ended")
    http.close()

    progress(f"REST: {clients} keep-alive clients in a load process of their own: "
             f"{per_client * 5} get_extensions each, then {per_client} busy/ready pairs each")
    reading = [[[("GET", "/api/get_extensions", None)]] for _ in range(clients)]
    load_reads, load_read_wall, load_read_failed = _load_elsewhere(
        base, bench.admin_token, reading, per_client * 5)
    pairs = [[[("POST", "/api/agent_busy", {"Extension": bench.agents[i % len(bench.agents)]}),
               ("POST", "/api/agent_ready", {"Extension": bench.agents[i % len(bench.agents)]})]]
             for i in range(clients)]
    load_pairs, load_pair_wall, load_pair_failed = _load_elsewhere(
        base, bench.admin_token, pairs, per_client)

    wrk_rows: list[Row] = []
    if shutil.which("wrk"):
        progress(f"REST: wrk, {clients} keep-alive connections, 10 s each: get_extensions, "
                 "then busy/ready")
        wrk_rows = _wrk_rows(base, bench.admin_token, clients,
                             bench.agents[:clients] or bench.agents)

    progress(f"REST: {clients} concurrent keep-alive clients x {per_client} requests "
             "(get_extensions / extension_info / agent_busy / agent_ready)")
    mixed: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    gate = threading.Barrier(clients + 1)

    def worker(index: int) -> None:
        own = bench.agents[index % len(bench.agents)]
        session = bench.client()
        steps = [("GET", "/api/get_extensions", None),
                 ("GET", f"/api/extension_info/{own}", None),
                 ("POST", "/api/agent_busy", {"Extension": own}),
                 ("POST", "/api/agent_ready", {"Extension": own})]
        session.get(base + "/api/me", timeout=15)  # the connection is up before the clock
        gate.wait()
        try:
            for n in range(per_client):
                method, path, body = steps[n % len(steps)]
                t0 = time.perf_counter()
                reply = session.request(method, base + path, json=body, timeout=30)
                mixed[index].append((time.perf_counter() - t0) * 1000)
                if reply.status_code != 200:
                    failures.append(f"{method} {path}: {reply.status_code}")
        finally:
            session.close()

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in pool:
        t.start()
    gate.wait()
    wall = time.perf_counter()
    for t in pool:
        t.join()
    wall = time.perf_counter() - wall
    for index in range(clients):  # a cycle cut short leaves its agent busy: ready again
        acd.set_ready(bench.center.ctx, DOMAIN, bench.agents[index % len(bench.agents)])
    every = [x for per in mixed for x in per]
    n_agents = len(bench.agents)
    return [
        (f"GET /api/get_extensions ({n_agents} agents) p50 / p99", _p50_p99(reads),
         f"{read_rate:.0f}/s"),
        ("agent_busy + agent_ready pair p50 / p99", _p50_p99(writes), f"{write_rate:.0f}/s"),
        ("hold + unhold pair via node command p50 / p99", _p50_p99(holds),
         f"{hold_rate:.0f}/s"),
        (f"{clients} clients, mixed requests p50 / p99", _p50_p99(every),
         f"{len(every) / wall:.0f}/s"),
        (f"{clients} clients (load process): GET /api/get_extensions p50 / p99",
         _p50_p99(load_reads), f"{len(load_reads) / load_read_wall:.0f}/s"),
        (f"{clients} clients (load process): agent_busy + agent_ready pair p50 / p99",
         _p50_p99(load_pairs), f"{len(load_pairs) / load_pair_wall:.0f} pairs/s"),
        *wrk_rows,
        ("failed requests (non-200)",
         str(len(failures) + load_read_failed + load_pair_failed
             + sum(int(r[1]) for r in wrk_rows if r[0].startswith("wrk: non-200"))), ""),
    ]


_WRK_PAIRS = """
local agents, token, n = {%s}, "%s", 0
request = function()
  n = n + 1
  local ext = agents[(math.floor((n - 1) / 2) %% #agents) + 1]
  local path = (n %% 2 == 1) and "/api/agent_busy" or "/api/agent_ready"
  return wrk.format("POST", path, {["Content-Type"] = "application/json",
                                   ["Authorization"] = "Nway " .. token},
                    '{"Extension": "' .. ext .. '"}')
end
"""


def _wrk(args: list[str]) -> tuple[float, float, float, int]:
    """Run wrk (one thread, so it leaves the cores to the server); requests/s, p50 and p99
    (ms) of single requests, and the non-2xx answers."""
    out = subprocess.run(["wrk", "-t1", "--latency", *args], capture_output=True, text=True,
                         timeout=120, check=True).stdout

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M).group(1))  # type: ignore
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rate, p50, p99, int(bad.group(1)) if bad else 0


def _wrk_rows(base: str, token: str, connections: int, agents: list[str]) -> list[Row]:
    """get_extensions and busy/ready pairs from wrk (C, one thread): a load generator far
    cheaper than the server it drives, so the server's share of the two cores is larger."""
    rate, p50, p99, bad = _wrk([f"-c{connections}", "-d10s", "-H",
                                f"Authorization: Nway {token}", base + "/api/get_extensions"])
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_WRK_PAIRS % (", ".join(f'"{a}"' for a in agents), token))
        script.flush()
        prate, pp50, pp99, pbad = _wrk([f"-c{connections}", "-d10s", "-s", script.name, base])
    return [
        (f"wrk, {connections} connections: GET /api/get_extensions p50 / p99",
         f"{p50:.2f} / {p99:.2f} ms", f"{rate:.0f}/s"),
        (f"wrk, {connections} connections: agent_busy / agent_ready (each) p50 / p99",
         f"{pp50:.2f} / {pp99:.2f} ms", f"{prate / 2:.0f} pairs/s"),
        ("wrk: non-200 answers", str(bad + pbad), ""),
    ]


Step = tuple[str, str, Any]


def _load_elsewhere(base: str, token: str, plans: list[list[list[Step]]],
                    count: int) -> tuple[list[float], float, int]:
    """:func:`_load` in a process of its own (a load generator must not share the GIL of what
    it drives): the latencies (ms), the wall time (s) and the failed requests."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_load_process, (base, token, plans, count))


def _load_process(base: str, token: str, plans: list[list[list[Step]]],
                  count: int) -> tuple[list[float], float, int]:
    return asyncio.run(_load(base, token, plans, count))


async def _load(base: str, token: str, plans: list[list[list[Step]]],
                count: int) -> tuple[list[float], float, int]:
    """One keep-alive aiohttp client per plan, all at once, each making ``count`` groups of
    requests (its plan's groups in turn, one request at a time); a group's latency is from
    its first request sent to its last answer read."""
    latencies: list[float] = []
    failed = 0
    go = asyncio.Event()

    async def client(plan: list[list[Step]]) -> None:
        nonlocal failed
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, headers={
                "Authorization": f"Nway {token}"}) as http:
            async with http.get(base + "/api/me") as reply:  # connected before the clock
                await reply.read()
            ready.append(1)
            await go.wait()
            for n in range(count):
                t0 = time.perf_counter()
                for method, path, body in plan[n % len(plan)]:
                    async with http.request(method, base + path, json=body) as reply:
                        await reply.read()
                        if reply.status != 200:
                            failed += 1
                latencies.append((time.perf_counter() - t0) * 1000)
    ready: list[int] = []
    tasks = [asyncio.ensure_future(client(plan)) for plan in plans]
    while len(ready) < len(plans):
        await asyncio.sleep(0.01)
    wall = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return latencies, time.perf_counter() - wall, failed


# ------------------------------------------------------------------------ CSTA -----------
def stomp_frame(command: str, headers: dict[str, str], body: str = "") -> str:
    lines = [command, *[f"{k}:{v}" for k, v in headers.items()]]
    return "\n".join(lines) + "\n\n" + body + "\0"


def parse_stomp(text: str) -> tuple[str, dict[str, str], str]:
    head, _, body = text.lstrip("\r\n").partition("\n\n")
    lines = head.split("\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name, value)
    return lines[0], headers, body


@dataclass
class Session:
    """One wellClient: SockJS over WebSocket (``ws``) or xhr polling (``xhr``: the session's
    URL), STOMP, subscribed to its agent topic."""

    ext: str
    ws: Any = None
    xhr: str = ""
    http: Any = None
    reader: Any = None
    # xhr polling: the sends' own keep-alive connection (the polls hold ``http``'s)
    sender: Any = None
    # (eventName, callId, deviceId) -> arrival time (time.time())
    arrivals: dict[Key, float] = field(default_factory=dict)
    messages: int = 0
    duplicates: int = 0
    buffer: str = ""
    frames: asyncio.Queue[tuple[str, dict[str, str], str]] = field(
        default_factory=asyncio.Queue)

    def feed(self, data: str, now: float) -> None:
        if data[:1] != "a":  # o, h, c: nothing for STOMP
            if data[:1] == "c":
                self.frames.put_nowait(("CLOSE", {}, data))
            return
        for message in json.loads(data[1:]):
            self.buffer += message
            while "\0" in self.buffer:
                raw, _, self.buffer = self.buffer.partition("\0")
                if not raw.strip("\r\n"):
                    continue  # heart-beat
                command, headers, body = parse_stomp(raw)
                if command == "MESSAGE":
                    self.messages += 1
                    event = json.loads(body)
                    key = (str(event.get("eventName")), str(event.get("callId", "")),
                           str(event.get("deviceId", "")))
                    if key in self.arrivals:
                        self.duplicates += 1
                    else:
                        self.arrivals[key] = now
                else:
                    self.frames.put_nowait((command, headers, body))

    async def send(self, text: str) -> None:
        if self.ws is not None:
            await self.ws.send_str(json.dumps([text]))
            return
        async with (self.sender or self.http).post(self.xhr + "/xhr_send",
                                                   data=json.dumps([text])) as reply:
            if reply.status != 204:
                raise RuntimeError(f"xhr_send: {reply.status} {await reply.text()}")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
        if self.sender is not None:
            await self.sender.close()
            await self.http.close()

    async def expect(self, command: str) -> dict[str, str]:
        got, headers, body = await asyncio.wait_for(self.frames.get(), 15)
        if got != command:
            raise RuntimeError(f"agent {self.ext}: expected {command}, got {got} {headers} "
                               f"{body[:200]}")
        return headers


class Tap:
    """Listens on the switch's event bus: when each agent-leg event fired, keyed like the
    CSTA event the agent's session should receive for it."""

    def __init__(self) -> None:
        self.fired: dict[Key, float] = {}
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        name = _CSTA_OF.get(event.name)
        if name is None:
            return
        h = event.headers
        call_id = h.get("variable_fsapps_acd_call")
        agent = h.get("variable_fsapps_acd_agent")
        if not call_id or not agent or h.get("Call-Direction") != "outbound":
            return
        key = (name, call_id, f"{agent}@{DOMAIN}")
        stamp = int(h.get("Event-Date-Timestamp") or 0) / 1e6
        with self.lock:
            self.fired.setdefault(key, stamp)  # 180 then 183: the first is the delivered

    def snapshot(self) -> dict[Key, float]:
        with self.lock:
            return dict(self.fired)


async def _login(http: Any, base: str, bench: Bench, ext: str) -> str:
    """wellClient's login: /login (form), then agent/state Login Ready; the token."""
    name = job(ext)
    async with http.post(base + "/login", data={"username": name,
                                                "password": bench.passwords[name],
                                                "namespace": DOMAIN}) as reply:
        if reply.status != 200:
            raise RuntimeError(f"/login {name}: {reply.status} {await reply.text()}")
        token = str((await reply.json())["sessionId"])
    async with http.post(base + "/api/csta/agent/state", headers={"sessionId": token}, json={
            "func": "Login", "loginId": f"{name}@{DOMAIN}", "device": f"{ext}@{DOMAIN}",
            "agentMode": "Ready"}) as reply:
        if reply.status != 204:
            raise RuntimeError(f"agent/state Login {name}: {reply.status} {await reply.text()}")
    return token


async def _open_session(http: Any, base: str, ext: str, token: str,
                        transport: str = "websocket", topic: str = "") -> Session:
    """A SockJS session (``websocket`` or ``xhr`` polling), STOMP CONNECT with ``token``,
    SUBSCRIBE to the agent topic, or ``topic`` (with a receipt)."""
    session = Session(ext, http=http)
    path = f"{base}/mvc/stomp/{random.randrange(1000):03d}/{uuid.uuid4().hex[:8]}"
    if transport == "websocket":
        session.ws = await http.ws_connect(path + "/websocket", autoping=True, max_msg_size=0)
        session.reader = asyncio.ensure_future(_read(session))
    else:
        # A SockJS session lives in one server process: with several workers on one port
        # its requests must reach that one, as a sticky proxy sends them (README, "Running
        # the CTI server"). Here: two keep-alive connections (polls, sends) that the kernel
        # gave to the same worker.
        session.http, session.sender = await _same_worker(base)
        http = session.http
        session.xhr = path
        async with http.post(path + "/xhr") as reply:
            opened = await reply.text()
        if opened != "o\n":
            raise RuntimeError(f"xhr open: {opened!r}")
        session.reader = asyncio.ensure_future(_poll(session))
    await session.send(stomp_frame("CONNECT", {"accept-version": "1.1,1.0", "host": "fsapps",
                                               "heart-beat": "0,0", "sessionId": token}))
    await session.expect("CONNECTED")
    await session.send(stomp_frame("SUBSCRIBE", {
        "id": "sub-0", "destination": topic or f"/topic/csta/agent/{job(ext)}@{DOMAIN}",
        "receipt": "r-0"}))
    await session.expect("RECEIPT")
    return session


async def _same_worker(base: str) -> tuple[Any, Any]:
    """Two one-connection client sessions kept alive to the same CTI worker process."""
    async def worker(http: Any) -> str:
        async with http.get(base + "/api/openapi.json") as reply:
            await reply.read()
            return str(reply.headers.get("X-Fsapps-Worker", ""))
    first = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    wanted = await worker(first)
    for _ in range(100):
        second = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        if await worker(second) == wanted:
            return first, second
        await second.close()
    raise RuntimeError("no second connection to the same CTI worker")


async def _poll(session: Session) -> None:
    """xhr polling: one long POST at a time, a frame per line of each answer."""
    while True:
        async with session.http.post(session.xhr + "/xhr") as reply:
            text = await reply.text()
        now = time.time()
        for line in text.split("\n"):
            if line:
                session.feed(line, now)
            if line.startswith("c"):
                return


async def _read(session: Session) -> None:
    async for msg in session.ws:
        if msg.type == WSMsgType.TEXT:
            session.feed(msg.data, time.time())
        elif msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR):
            break


def _latencies(tap: dict[Key, float], sessions: list[Session],
               keys: set[Key] | None = None) -> list[float]:
    by_device = {f"{s.ext}@{DOMAIN}": s for s in sessions}
    out = []
    for key, fired in tap.items():
        if keys is not None and key not in keys:
            continue
        session = by_device.get(key[2])
        if session is not None and key in session.arrivals:
            out.append((session.arrivals[key] - fired) * 1000)
    return out


async def _csta(bench: Bench, sessions_n: int, quiet_calls: int, calls: int,
                rate: float, burst: int, held: int = 1000) -> list[Row]:
    base = bench.server.url
    tap = Tap()
    bench.switch.bus.listen(tap)
    center, switch = bench.center, bench.switch
    connector = aiohttp.TCPConnector(limit=0)  # one connection per session, none queued
    async with aiohttp.ClientSession(connector=connector) as http:
        progress(f"CSTA: {sessions_n} agents log in and open SockJS WebSocket sessions")
        gate = asyncio.Semaphore(20)

        tokens: dict[str, str] = {}

        async def one(ext: str) -> Session:
            async with gate:
                tokens[ext] = await _login(http, base, bench, ext)
                return await _open_session(http, base, ext, tokens[ext])
        async def one_more(ext: str) -> Session:
            # (the device's topic: the agent topic follows a login the closed pages ended)
            async with gate:
                return await _open_session(http, base, ext, tokens[ext],
                                           topic=f"/topic/csta/device/{ext}@{DOMAIN}")

        t0 = time.perf_counter()
        sessions = list(await asyncio.gather(*[one(ext)
                                               for ext in bench.agents[:sessions_n]]))
        setup_s = time.perf_counter() - t0
        # only the subscribed agents take calls: every queue call has a session to watch it
        await asyncio.to_thread(_set_all, center, bench.agents[sessions_n:], False)

        def ended(channel: Channel) -> bool:
            return not channel.up

        # quiet: one agent takes the calls, watched by its WebSocket session and by a second
        # session over xhr polling (a second tab: both get every event)
        progress(f"CSTA quiet: {quiet_calls} queue calls one at a time to one agent "
                 "(WebSocket and xhr polling sessions)")
        first = sessions[0]
        polling = await _open_session(http, base, first.ext, tokens[first.ext], "xhr")
        others = [s.ext for s in sessions[1:]]
        await asyncio.to_thread(_set_all, center, others, False)
        quiet_keys: set[Key] = set()
        for n in range(quiet_calls):
            caller = center.call(switch, f"1390000{n:04d}", f"7{GROUP}",
                                 hangup_after_bridge_ms=100)
            await asyncio.to_thread(wait_until, lambda: ended(caller), 15, "quiet call ended")
            want = {k for k in tap.snapshot() if k[1] == caller.uuid}
            await _all_received(sessions, want, 10)
            quiet_keys |= want
        await _all_received([polling], quiet_keys, 10)
        quiet = _latencies(tap.snapshot(), sessions, quiet_keys)
        quiet_xhr = _latencies(tap.snapshot(), [polling], quiet_keys)
        await polling.close()
        await asyncio.to_thread(_set_all, center, others, True)

        progress(f"CSTA fan-out: {calls} queue calls at {rate:g}/s to {sessions_n} sessions")
        before = sum(s.messages for s in sessions)
        fired_before = set(tap.snapshot())
        callers: list[Channel] = []
        rng = random.Random(5)
        wall0, epoch0 = time.perf_counter(), time.time()
        for n in range(calls):
            delay = wall0 + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            callers.append(center.call(switch, f"1391{n:07d}", f"7{GROUP}",
                                       hangup_after_bridge_ms=rng.randint(300, 1500)))
            if (n + 1) % 200 == 0:
                progress(f"{n + 1}/{calls} fan-out calls placed")
        await asyncio.to_thread(wait_until, lambda: all(ended(c) for c in callers), 180,
                                "every fan-out call ended")
        fired = {k: v for k, v in tap.snapshot().items() if k not in fired_before}
        lost = await _all_received(sessions, fired, 15)
        last = max((s.arrivals[k] for s in sessions for k in s.arrivals
                    if k in fired), default=time.time())
        span = max(last - epoch0, 1e-6)
        loaded = _latencies(fired, sessions)
        delivered = sum(s.messages for s in sessions) - before
        answered = sum(1 for k in fired if k[0] == "established")
        duplicates = sum(s.duplicates for s in sessions)
        dropped = switch.bus.dropped()

        progress(f"CSTA burst: {burst} feed records published at once, one per session in "
                 "turn")
        # a call's mix: delivered and established make the hub read the call's userData too
        burst_keys = [(("delivered", "established", "connectionCleared")[n % 3],
                       f"burst-{n // 3:06d}", f"{sessions[n // 3 % len(sessions)].ext}@{DOMAIN}")
                      for n in range(burst)]
        b0 = time.time()
        await asyncio.to_thread(_publish_burst, center, burst_keys)
        published = time.time() - b0
        await _all_received(sessions, burst_keys, 60)
        got = [t for s in sessions for k, t in s.arrivals.items() if k[1].startswith("burst-")]
        burst_span = max((max(got) if got else time.time()) - b0, 1e-6)
        burst_lost = burst - len(got)
        for s in sessions:
            await s.close()

        progress(f"CSTA: {held} SockJS WebSocket sessions held ({held // len(sessions)} per "
                 "agent, each CONNECTed and SUBSCRIBEd to its device)")
        await asyncio.sleep(1.0)
        rss0 = bench.server.rss_kib()
        h0 = time.perf_counter()
        per = max(1, held // len(sessions))
        held_sessions = list(await asyncio.gather(*[
            one_more(s.ext) for s in sessions for _ in range(per)]))
        held_s = time.perf_counter() - h0
        await asyncio.sleep(1.0)
        rss1 = bench.server.rss_kib()
        # every held session still reads: one record to each agent's device
        ping = [("delivered", f"held-{n:04d}", f"{s.ext}@{DOMAIN}")
                for n, s in enumerate(sessions)]
        await asyncio.to_thread(_publish_burst, center, ping)
        async def lost_in(s: Session) -> int:
            want = [k for k in ping if k[2] == f"{s.ext}@{DOMAIN}"]
            return len(await _all_received([s], want, 10))
        held_lost = sum(await asyncio.gather(*[lost_in(s) for s in held_sessions]))
        for s in held_sessions:
            await s.close()
    held_n = len(held_sessions)
    return [
        ("sessions opened (login + WebSocket + CONNECT + SUBSCRIBE)",
         f"{sessions_n} in {setup_s:.1f} s", ""),
        ("quiet: switch event → STOMP MESSAGE, WebSocket p50 / p99", _p50_p99(quiet),
         f"n={len(quiet)}"),
        ("quiet: switch event → STOMP MESSAGE, xhr polling p50 / p99", _p50_p99(quiet_xhr),
         f"n={len(quiet_xhr)}"),
        ("fan-out: calls placed / answered", f"{calls} / {answered}", f"{rate:g}/s offered"),
        ("fan-out: switch event → STOMP MESSAGE p50 / p99", _p50_p99(loaded),
         f"n={len(loaded)}"),
        ("fan-out: MESSAGE frames delivered / per second",
         f"{delivered} / {delivered / span:.0f}/s", ""),
        ("fan-out: agent-leg events fired / lost / duplicated",
         f"{len(fired)} / {len(lost)} / {duplicates}", "lost 0"),
        ("switch events dropped (EventConsumer full)", str(dropped), "0"),
        ("burst: feed records → MESSAGE frames per second",
         f"{len(got) / burst_span:.0f}/s", f"published in {published:.1f} s"),
        ("burst: records published / lost", f"{burst} / {burst_lost}", "lost 0"),
        ("SockJS sessions held at once / opened in", f"{held_n} / {held_s:.1f} s", ""),
        ("server memory per held session (RSS of the workers)",
         f"{(rss1 - rss0) / max(held_n, 1):.1f} KiB", f"{rss0 // 1024} -> {rss1 // 1024} MiB"),
        ("held sessions: one record each, not received", str(held_lost), "0"),
    ]


_STATE = {"delivered": "Alerting", "established": "Connect", "connectionCleared": "None"}


def _publish_burst(center: SimulatedCallCenter, keys: list[Key]) -> None:
    """Feed records as a switch runtime publishes them (fsapps.events.cstafeed's format) on the
    domain's CSTA channel, in pipelines of 100: the hub's own capacity, no switch in front."""
    channel = center.ctx.keys(DOMAIN).csta_feed()
    now = int(time.time() * 1000)
    pipe = center.ctx.redis.pipeline(transaction=False)
    for n, (name, call_id, dev) in enumerate(keys):
        pipe.publish(channel, json.dumps({
            "id": uuid.uuid4().hex, "name": name, "callId": call_id, "uuid": call_id,
            "device": dev, "localState": _STATE[name], "calling": "13800000000@" + DOMAIN,
            "called": dev, "parties": [dev], "time": now, "domain": DOMAIN}))
        if n % 100 == 99:
            pipe.execute()
    pipe.execute()


def _set_all(center: SimulatedCallCenter, exts: list[str], ready: bool) -> None:
    """Agents ``exts`` ready (offered queue calls) or busy (not)."""
    for ext in exts:
        (acd.set_ready if ready else acd.set_busy)(center.ctx, center.domain, ext)


async def _all_received(sessions: list[Session], keys: Any, timeout: float) -> list[Key]:
    """Waits (on this loop, so the readers go on) until every key (event, callId, device)
    arrived in its device's session, or ``timeout`` passes; returns the missing ones (counted,
    not raised). Cheap per poll: the check must not steal the GIL from what it measures."""
    by_device = {f"{s.ext}@{DOMAIN}": s.arrivals for s in sessions}
    missing = list(keys)
    deadline = time.monotonic() + timeout
    while True:
        missing = [k for k in missing if k not in by_device.get(k[2], {})]
        if not missing or time.monotonic() > deadline:
            return missing
        await asyncio.sleep(0.05)


def csta_rows(bench: Bench, sessions: int, quiet_calls: int, calls: int,
              rate: float, burst: int, held: int = 1000) -> list[Row]:
    return asyncio.run(_csta(bench, sessions, quiet_calls, calls, rate, burst, held))


# ------------------------------------------------------------------------ entry ----------
def cti_bench(redis_url: str, dsn: str, *, agents: int = 200, sessions: int | None = None,
              requests_each: int = 300, clients: int = 8, per_client: int = 200,
              quiet_calls: int = 30, calls: int = 400, rate: float = 20.0,
              burst: int = 10_000, processes: int = 0, held: int = 1000) \
        -> tuple[list[Row], list[Row]]:
    """Both tables' rows: (REST, CSTA)."""
    progress(f"CTI: {agents} agents on a fake switch, a CTI server of "
             f"{worker_count(processes)} worker processes on a free port")
    bench = start(redis_url, dsn, agents, processes)
    try:
        rest = rest_rows(bench, requests_each, clients, per_client)
        csta = csta_rows(bench, min(sessions or agents, agents), quiet_calls, calls, rate,
                         burst, held)
        return rest, csta
    finally:
        bench.close()


def print_table(title: str, rows: list[Row], third: str, note: str = "") -> None:
    width = max(len(title), *(len(r[0]) for r in rows))
    value = max(24, *(len(r[1]) for r in rows))
    print(f"\n{title:<{width}}  {'measured':>{value}}  {third}")
    print(f"{'-' * width}  {'-' * value}  {'-' * 12}")
    for name, measured, extra in rows:
        print(f"{name:<{width}}  {measured:>{value}}  {extra}")
    if note:
        print(note)


REST_TITLE = "CTI REST (seed 001, keep-alive HTTP)"
CSTA_TITLE = "CSTA push (SockJS WebSocket + STOMP)"


def print_tables(rest: list[Row], csta: list[Row]) -> None:
    print_table(REST_TITLE, rest, "requests/s")
    print_table(CSTA_TITLE, csta, "")
    print("\n(CTI: the CTI server runs as `fsapps cti serve` does, in worker processes of its "
          "own; the fake switch and the WebSocket clients share the bench's process, the "
          "'load process' rows' HTTP clients have a process of their own; the other REST rows' "
          "clients are in the bench's process. A pair counts as one request.)")


def main(argv: list[str] | None = None) -> int:
    """Only the CTI rows: ``python -m tools.ctibench [--agents 200] [--calls 400] ...``"""
    p = argparse.ArgumentParser(prog="tools.ctibench", description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--calls", type=int, default=400)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--burst", type=int, default=10_000)
    p.add_argument("--processes", type=int, default=0,
                   help="CTI server worker processes (0: one per core)")
    p.add_argument("--held", type=int, default=1000, help="SockJS sessions held at once")
    args = p.parse_args(argv)
    redis_server = RedisServer().start()
    database = FreshDatabase().create()
    try:
        print_tables(*cti_bench(redis_server.url, database.dsn, agents=args.agents,
                                clients=args.clients, calls=args.calls, rate=args.rate,
                                burst=args.burst, processes=args.processes,
                                held=args.held))
        return 0
    finally:
        redis_server.close()
        database.drop()


if __name__ == "__main__":
    sys.exit(main())
