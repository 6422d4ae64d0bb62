"""``make bench-switch`` (its last table) — how many browser agents one fsapps node holds: the
agent console's WebSocket registrations (docs/webrtc.md) and, for a subset, calls with media.

1. Registrations: browser-like SIP-over-WebSocket clients (:mod:`tools.wssip`, what JsSIP
   sends, no media) register extensions with ``param webrtc=true`` on one switch built as the
   real-switch tier builds it, in steps (``--registrations 500,1000,2000``), ``--parallel``
   REGISTERs in flight; each a WebSocket of its own held open to the end. Each extension's
   browser-phone password is claimed through :class:`fsapps.domain.webrtc.BrowserPhones`, as
   the CTI login does. Per step: registered / tried, REGISTERs per second (digest included:
   two round trips and a directory lookup in Redis each), the switch's resident memory and
   its CPU ms per registration, and the registrations fsapps recorded in Redis.
2. Calls: ``--calls`` headless Chromium consoles (fake microphone) log in to ``fsapps cti
   serve``, register, auto-answer; a SIPp caller playing audio calls the group that many
   times at once and talks ``--talk`` seconds. Per run: calls answered in the pages, audio
   packets received and sent per page (``getStats()``, DTLS-SRTP), and the switch's CPU ms
   per call-second of talk (DTLS-SRTP and the PCMU bridge), all while the registrations of
   step 1 stay up.

    python -m tools.benchwebrtc [--registrations 500,1000,2000] [--parallel 100]
                                [--calls 4] [--talk 10] [--out /tmp/bench-webrtc.md]

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import redis
import yaml

from tools import sipp
from tools.realswitch import ROOT, RealSwitch, install_fsapps, missing_switch
from tools.servers import FreshDatabase, RedisServer, free_port, scratch_dir, wait_for_port
from tools.wssip import WsPhone

DOMAIN = "test.fsapps"
FIRST = 60000
CHROMIUM = "/usr/bin/chromium"
BUNDLE = ROOT / "build" / "web" / "jssip.min.js"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def say(line: str) -> None:
    print(f"bench-webrtc: {line}", flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = scratch_dir("fsapps-bench-webrtc-")
        self.rows: list[str] = []
        self.call_rows: list[str] = []

    # ------------------------------------------------------------------ set-up -------------
    def start(self) -> None:
        say("installing fsapps, starting Redis, PostgreSQL database and the switch")
        site = install_fsapps(self.base / "site")
        self.redis_server = RedisServer().start()
        self.database = FreshDatabase().create()
        self.sw = RealSwitch("fs1", self.base, site, self.redis_server.url, self.database.dsn,
                             fsapps_extra={"webrtc": {"credential_ttl_seconds": 3600}}).build()
        # many sockets: one per browser
        subprocess.run([sys.executable, "-m", "fsapps.cli", "--config",
                        str(self.sw.config_path), "db", "migrate"], check=True, cwd=ROOT,
                       capture_output=True)
        self.sw.start()
        self.redis = redis.Redis.from_url(self.redis_server.url, decode_responses=True)
        from fsapps.config import load_settings
        from fsapps.context import Context

        self.ctx = Context(load_settings(str(self.sw.config_path)))

    def extensions(self, exts: Sequence[str]) -> None:
        from fsapps.domain.webrtc import BrowserPhones

        record = json.dumps({"param": {"password": "desk-pw", "webrtc": True}})
        pipe = self.redis.pipeline(transaction=False)
        for ext in exts:
            pipe.hset(f"cti_exten@{DOMAIN}", ext, record)
        pipe.execute()
        phones = BrowserPhones(self.ctx, DOMAIN)
        self.passwords = getattr(self, "passwords", {})
        for ext in exts:
            self.passwords[ext] = phones.claim(ext, "bench-login").password

    # ------------------------------------------------------------------ registrations ------
    async def register_steps(self, steps: Sequence[int]) -> list[WsPhone]:
        url = f"ws://127.0.0.1:{self.sw.ws_port}"
        held: list[WsPhone] = []
        limit = asyncio.Semaphore(self.args.parallel)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.session = session
        pid = self.sw.proc.pid  # type: ignore[union-attr]

        async def one(phone: WsPhone) -> bool:
            async with limit:
                try:
                    await phone.connect(session)
                    return await phone.register(timeout=30) == 200
                except (OSError, TimeoutError, aiohttp.ClientError):
                    return False

        for total in steps:
            exts = [str(FIRST + i) for i in range(len(held), total)]
            self.extensions(exts)
            phones = [WsPhone(url, ext, self.passwords[ext], DOMAIN, expires=3600)
                      for ext in exts]
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            results = await asyncio.gather(*(one(p) for p in phones))
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(pid) - cpu0
            held += phones
            ok = sum(results)
            live = sum(1 for p in held if p.registered)
            recorded = self.redis.hlen("registrations")
            row = (f"| {total} | {live} / {total} | {ok / elapsed:.0f} | "
                   f"{1000 * cpu / max(1, len(phones)):.2f} | {rss_mb(pid):.0f} | {recorded} |")
            say(row)
            self.rows.append(row)
        return held

    # ------------------------------------------------------------------ calls --------------
    def calls(self) -> None:
        k, talk = self.args.calls, self.args.talk
        if k <= 0:
            return
        if not Path(CHROMIUM).exists() or not BUNDLE.exists():
            self.call_rows.append(f"| {k} | (skipped: {CHROMIUM} or {BUNDLE} missing) | | | |")
            return
        from playwright import sync_api

        from fsapps.server.passwords import hash_password

        agents = [str(FIRST - 100 + i) for i in range(k)]
        record = json.dumps({"param": {"password": "desk-pw", "webrtc": True}})
        for ext in agents:
            self.redis.hset(f"cti_exten@{DOMAIN}", ext, record)
            self.sw.api(f"python fsapps.api nway_add_ext {ext}")
        group = "6900"
        self.sw.api(f"python fsapps.api nway_add_group {group} 0")
        settings = yaml.safe_load(self.sw.config_path.read_text())
        port = free_port()
        settings["cti"] = {"listen": "127.0.0.1", "port": port}
        settings["webrtc"] = {"ws_urls": [f"ws://127.0.0.1:{self.sw.ws_port}"]}
        settings["users"] = [{"username": ext, "role": "agent", "extension": ext,
                              "password_hash": hash_password(ext, iterations=1000)}
                             for ext in agents]
        path = self.base / "cti.yaml"
        path.write_text(yaml.safe_dump(settings))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FSAPPS_")}
        cti = subprocess.Popen([sys.executable, "-m", "fsapps.cli", "--config", str(path), "cti",
                                "serve"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, timeout=30)
            args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                    "--allow-loopback-in-peer-connection",
                    "--autoplay-policy=no-user-gesture-required"]
            with sync_api.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
                pages = []
                for ext in agents:
                    page = browser.new_context().new_page()
                    page.set_default_timeout(60_000)
                    page.goto(f"http://127.0.0.1:{port}/?domain={DOMAIN}&job={ext}&ext={ext}")
                    page.fill("#password", ext)
                    page.click("#login")
                    page.wait_for_selector("#phoneCard[data-state='registered']",
                                           state="attached")
                    page.check("#autoAnswer")
                    self.sw.api(f"python fsapps.api nway_login {ext} {group}")
                    pages.append(page)
                wav = sipp.write_ulaw_wav(self.base / "caller.wav")
                pid = self.sw.proc.pid  # type: ignore[union-attr]
                caller = sipp.caller(self.sw.external_port, f"7{group}", "13900006900",
                                     talk_ms=int(talk * 1000), calls=k, rate=k, limit=k,
                                     audio=str(wav), timeout_s=int(talk) + 120)
                deadline = time.monotonic() + 60
                answered = 0
                while time.monotonic() < deadline:
                    answered = sum(1 for pg in pages if pg.get_attribute(
                        "#phoneCard", "data-state") == "talking")
                    if answered == k:
                        break
                    time.sleep(0.2)
                cpu0, t0 = cpu_seconds(pid), time.monotonic()
                time.sleep(max(1.0, talk / 2))
                cpu = cpu_seconds(pid) - cpu0
                seconds = time.monotonic() - t0
                stats = [pg.evaluate("() => window.fsappsPhone.stats()") for pg in pages]
                code = caller.wait(talk + 120)
                received = sorted(s["packetsReceived"] for s in stats)
                sent = sorted(s["packetsSent"] for s in stats)
                row = (f"| {k} | {answered} / {k} | {received[0]}..{received[-1]} | "
                       f"{sent[0]}..{sent[-1]} | "
                       f"{1000 * cpu / max(1e-9, answered * seconds):.1f} | "
                       f"{'ok' if code == 0 else f'sipp exit {code}'} |")
                say(row)
                self.call_rows.append(row)
                browser.close()
        finally:
            cti.terminate()
            cti.wait(10)

    def still_registered(self, held: Sequence[WsPhone]) -> None:
        """After the calls: how many of the held registrations the switch still has."""
        text = self.sw.api("show registrations as json")
        try:
            rows = json.loads(text).get("rows", []) or []
        except ValueError:
            rows = []
        ours = {str(FIRST + i) for i in range(len(held))}
        self.after = sum(1 for r in rows if r.get("reg_user") in ours)

    def table(self) -> str:
        return "\n".join([
            "WebSocket registrations (browser-like SIP clients, no media) on one node:",
            "",
            "| held | registered / tried | REGISTER/s | switch CPU ms / REGISTER | switch RSS MB "
            "| in Redis registrations |",
            "|---|---|---|---|---|---|",
            *self.rows,
            "",
            "Browser consoles in calls (headless Chromium, DTLS-SRTP, PCMU) while those stay "
            "registered:",
            "",
            "| calls | answered in the page | packets received (min..max) | packets sent | "
            "switch CPU ms per call-second | callers |",
            "|---|---|---|---|---|---|",
            *self.call_rows,
            "",
            f"Registrations of the first table still in the switch after the calls: "
            f"{getattr(self, 'after', '?')}.",
        ])

    def stop(self) -> None:
        for attr in ("sw",):
            sw = getattr(self, attr, None)
            if sw is not None:
                sw.stop(timeout=30)
                sw.kill()
        if hasattr(self, "database"):
            self.database.drop()
        if hasattr(self, "redis_server"):
            self.redis_server.close()


async def _close_all(phones: Sequence[WsPhone], session: Any) -> None:
    await asyncio.gather(*(p.close(unregister=False) for p in phones), return_exceptions=True)
    await session.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registrations", default="500,1000,2000",
                        help="registrations held after each step (cumulative)")
    parser.add_argument("--parallel", type=int, default=100, help="REGISTERs in flight")
    parser.add_argument("--calls", type=int, default=4, help="browser consoles in calls")
    parser.add_argument("--talk", type=float, default=10.0, help="seconds each call talks")
    parser.add_argument("--out", default="/tmp/bench-webrtc.md")
    args = parser.parse_args(argv)
    missing = missing_switch()
    if missing:
        say(f"skipped: {missing}")
        return 0
    steps = [int(n) for n in args.registrations.split(",") if n]
    bench = Bench(args)
    try:
        bench.start()
        # the clients' loop runs in a thread of its own: the sockets are served (OPTIONS
        # answered) while Playwright's sync API drives the consoles in this one
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        held = asyncio.run_coroutine_threadsafe(bench.register_steps(steps), loop).result()
        try:
            bench.calls()
            bench.still_registered(held)
        finally:
            asyncio.run_coroutine_threadsafe(_close_all(held, bench.session), loop).result(120)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
    finally:
        bench.stop()
    text = bench.table()
    Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
