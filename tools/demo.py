"""``make demo`` — a simulated call center on fake FreeSWITCH nodes running fsapps' ACD.

Two groups (12320, reached on 85733555 as in seed 001, and 110 on 7110), 20 agents on two
nodes with realistic answer delays and talk times (one of them a phone left on a desk that
never answers), callers arriving at a steady random rate — a few VIPs and blacklisted numbers
among them, some losing patience. A live status line, then a summary. Ctrl-C ends it cleanly.
A CTI server on 127.0.0.1:8085 serves the web agent console and the supervisor wallboard of
the simulated center while it runs (--cti-port 0: none).

The first half minute is scripted (:class:`Opening`), so that whoever watches sees every
feature at once, each told by a line as it happens: a burst of callers above the agents'
capacity builds a queue that then drains, a blacklisted caller is refused, an impatient one
leaves the queue (abandoned), VIPs are served before the others, and the supervisor's phone
listens to a call (through the CTI server's REST calls, as the wallboard's button does).
--time-scale shrinks every delay (the script, answer and talk times) for tests.

    python -m tools.demo [--duration 60] [--rate 1.2] [--agents 20] [--nodes 2] [--seed 1]
                          [--cti-port 8085] [--time-scale 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from fakefs.channel import Behaviour, Channel
from fsapps.config import Secret, UserSettings
from fsapps.domain.extensions import Extensions
from fsapps.server.app import BackgroundServer
from fsapps.server.passwords import hash_password
from fsapps.server.services import CtiServices
from tools.callcenter import SimulatedCallCenter, reset_database, settings_for
from tools.servers import FreshDatabase, RedisServer

DOMAIN = "demo.fsapps"
VIPS = ["13900000001", "13900000002", "13900000003"]
BLACKLIST = ["4000000666", "4000000999"]


@dataclass
class Tally:
    callers: list[tuple[Channel, str]] = field(default_factory=list)  # (channel, kind)

    def outcome(self, channel: Channel) -> str:
        if "bridged" in channel.times:
            return "answered"
        if channel.up:
            return "in progress"
        if channel.hangup_cause == "CALL_REJECTED":
            return "blacklisted"
        return "abandoned" if channel.hangup_side == "remote" else "ended by policy"

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for channel, _ in self.callers:
            kind = self.outcome(channel)
            counts[kind] = counts.get(kind, 0) + 1
        return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fsapps demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals (60)")
    p.add_argument("--rate", type=float, default=1.2, help="calls per second (1.2)")
    p.add_argument("--agents", type=int, default=20, help="agents (20)")
    p.add_argument("--nodes", type=int, default=2, help="fake FreeSWITCH nodes (2)")
    p.add_argument("--seed", type=int, default=1, help="random seed (1)")
    p.add_argument("--cti-port", type=int, default=8085,
                   help="CTI server port on 127.0.0.1 for the web pages (8085; 0: none)")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="multiplies every delay: the opening script, answer and talk times "
                        "(1; tests use less)")
    return p.parse_args(argv)


def job_number(extension: str) -> str:
    """The demo agent's job number: 8001 for extension 1001, and so on."""
    return "8" + extension[1:]


def build(center: SimulatedCallCenter, args: argparse.Namespace, rng: random.Random) -> None:
    scale = args.time_scale
    for _ in range(args.nodes):
        center.start_switch()
    center.group("12320", group_name="12320 hotline", group_call_mode=5,
                 group_callout_timeout=10, wrapup_seconds=2, max_no_answer=2,
                 busy_ring="/nway/busy.wav", busy_ring_repeats=3,
                 black_list_ring="/nway/black.wav", blacklist_action="playback")
    center.group("110", group_name="110 service", group_call_mode=2, group_callout_timeout=10,
                 wrapup_seconds=2, max_no_answer=2)
    center.groups.set_numbers("12320", "vip", VIPS)
    center.groups.set_numbers("110", "vip", VIPS[:1])
    center.groups.set_numbers("12320", "blacklist", BLACKLIST)
    center.groups.set_numbers("110", "blacklist", BLACKLIST)
    for switch in center.switches:
        switch.media_durations.update({"/nway/busy.wav": 3000, "/nway/black.wav": 2000})
    for i in range(args.agents):
        extension = str(1001 + i)
        groups = ["12320"] if i % 3 == 0 else ["110"] if i % 3 == 1 else ["12320", "110"]
        if i == args.agents - 1:
            behaviour = Behaviour(answer_after_ms=None)  # a phone left on a desk
        else:
            behaviour = Behaviour(answer_after_ms=int(rng.randint(800, 4000) * scale))
        center.agent(extension, groups, switch=center.switches[i % args.nodes],
                     behaviour=behaviour)
        # job numbers as a call center hands them out (the wallboard's job-number column)
        Extensions(center.ctx, DOMAIN).add(extension, job_number(extension))
    # the supervisor's phone, for the wallboard's listen / whisper / barge buttons
    for switch in center.switches:
        switch.add_user(SUPERVISOR_PHONE, DOMAIN, password="1234")
    center.switches[0].register(SUPERVISOR_PHONE, DOMAIN, password="1234",
                                behaviour=Behaviour(answer_after_ms=800))


# Who may log in to the demo's web pages (user, password, role, extension): the supervisor sees
# the wallboard and listens on phone 1900, "agent" is extension 1001's seat (the fake phones
# answer by themselves).
SUPERVISOR_PHONE = "1900"
DEMO_USERS = (("supervisor", "supervisor", "supervisor", SUPERVISOR_PHONE),
              ("agent", "agent", "agent", "1001"))


def start_cti(settings: Any, port: int) -> Any:
    """The CTI server over the simulated center, on 127.0.0.1:``port`` (or, when that port
    is taken, a free one: the demo must not fail for a busy port)."""
    users = tuple(UserSettings(name, Secret(hash_password(password)), role, extension)
                  for name, password, role, extension in DEMO_USERS)
    settings = dataclasses.replace(settings, users=users)
    try:
        return BackgroundServer(CtiServices(settings), "127.0.0.1", port)
    except OSError:
        return BackgroundServer(CtiServices(settings), "127.0.0.1", 0)


def page_lines(url: str) -> list[str]:
    """The web pages' URLs, each logging straight into the demo's domain (the password is
    the only field left to type)."""
    return [f"wallboard      {url}/wallboard?domain={DOMAIN}&user=supervisor&device="
            f"{SUPERVISOR_PHONE}  (password supervisor; domain {DOMAIN}, phone "
            f"{SUPERVISOR_PHONE})",
            f"agent console  {url}/?domain={DOMAIN}&job=agent&ext=1001  (password agent; "
            f"domain {DOMAIN}, extension 1001)"]


def status_line(center: SimulatedCallCenter, tally: Tally, started: float) -> str:
    agents = center.agents.all()
    ringing = sum(a.call_state == "ring" for a in agents)
    talking = sum(a.call_state == "talking" for a in agents)
    counts = tally.counts()
    return (f"t={time.monotonic() - started:5.0f}s  waiting {len(center.queue.waiting()):3d}  "
            f"ringing {ringing:2d}  talking {talking:2d}  answered {counts.get('answered', 0):4d}"
            f"  abandoned {counts.get('abandoned', 0):3d}  policy "
            f"{counts.get('ended by policy', 0):2d}  blacklisted "
            f"{counts.get('blacklisted', 0):2d}")


def place_call(center: SimulatedCallCenter, tally: Tally, rng: random.Random,
               scale: float = 1.0) -> None:
    switch = rng.choice(center.switches)
    roll = rng.random()
    if roll < 0.03:
        number, kind = rng.choice(BLACKLIST), "blacklisted"
    elif roll < 0.12:
        number, kind = rng.choice(VIPS), "vip"
    else:
        number, kind = f"138{rng.randint(0, 99_999_999):08d}", "normal"
    dest = "85733555" if rng.random() < 0.6 else "7110"
    channel = center.call(switch, number, dest,
                          hangup_after_bridge_ms=int(rng.randint(4000, 20000) * scale),
                          abandon_after_ms=int(rng.randint(15000, 60000) * scale))
    tally.callers.append((channel, kind))


class Opening:
    """The demo's scripted first half minute (times in seconds, times --time-scale): what each
    step does and the line that tells it. :meth:`step` is called from the main loop; it
    places the calls when their time comes and says what happened as it happens."""

    BURST_AT, IMPATIENT_AT, BLACKLIST_AT, VIP_AT, LISTEN_AT = 1.0, 2.5, 3.0, 4.0, 6.0

    def __init__(self, center: SimulatedCallCenter, tally: Tally, rng: random.Random,
                 agents: int, scale: float, cti_url: str | None,
                 say: Any) -> None:
        self.center, self.tally, self.rng, self.agents = center, tally, rng, agents
        self.scale, self.cti_url, self.say = scale, cti_url, say
        self.done: set[str] = set()
        self.watch: dict[str, Channel] = {}
        self.peak = 0
        self.listen_call = ""
        self.listen_failures = 0
        self.listen_clicked_us = 0

    def call(self, number: str, dest: str, talk_ms: int, patience_ms: int) -> Channel:
        switch = self.rng.choice(self.center.switches)
        channel = self.center.call(switch, number, dest,
                                   hangup_after_bridge_ms=int(talk_ms * self.scale),
                                   abandon_after_ms=int(patience_ms * self.scale))
        kind = "vip" if number in VIPS else "blacklisted" if number in BLACKLIST else "normal"
        self.tally.callers.append((channel, kind))
        return channel

    def due(self, name: str, at: float, t: float) -> bool:
        if name in self.done or t < at * self.scale:
            return False
        self.done.add(name)
        return True

    def step(self, t: float) -> None:
        waiting = len(self.center.queue.waiting())
        talking = sum(a.call_state == "talking" for a in self.center.agents.all())
        if self.due("burst", self.BURST_AT, t):
            burst = self.agents + self.agents // 2
            self.say(t, f"a burst of {burst} callers for {self.agents} agents "
                        "(more than they can take at once)")
            for i in range(burst):
                self.call(f"1370000{i:04d}", "85733555" if i % 5 < 3 else "7110",
                          self.rng.randint(6000, 12000), 120_000)
        if self.due("impatient", self.IMPATIENT_AT, t):
            self.watch["impatient"] = self.call("13711112222", "85733555", 8000, 4000)
            self.say(t, "an impatient caller 13711112222 joins the queue (hangs up after 4 s)")
        if self.due("blacklist", self.BLACKLIST_AT, t):
            self.watch["blacklist"] = self.call(BLACKLIST[0], "85733555", 8000, 60_000)
            self.say(t, f"blacklisted number {BLACKLIST[0]} calls")
        if self.due("vip", self.VIP_AT, t):
            self.watch["vip"] = self.call(VIPS[0], "85733555", 6000, 120_000)
            self.say(t, f"VIP {VIPS[0]} calls while {waiting} callers wait")
        if waiting > self.peak:
            self.peak = waiting
        if waiting >= 3 and "queue builds" not in self.done:
            self.done.add("queue builds")
            self.say(t, f"queue builds: {waiting} waiting, {talking} agents talking")
        if "queue builds" in self.done and waiting == 0 and "queue drained" not in self.done:
            self.done.add("queue drained")
            self.say(t, f"queue drained: 0 waiting (peak {self.peak}), {talking} agents talking")
        self.outcomes(t, waiting)
        if self.cti_url and talking and self.due("listen", self.LISTEN_AT, t):
            self.listen(t)
        if self.listen_call and "listening" not in self.done:
            leg = self.supervisor_leg()
            if leg == "answered":
                self.done.add("listening")
                self.say(t, f"supervisor's phone {SUPERVISOR_PHONE} is listening to call "
                            f"{self.listen_call[:8]}")
            elif leg == "ended":
                # The call listened to ended before phone 1900 answered (it answers after
                # 800 ms; a talking call may have less left): click listen on another one.
                self.say(t, f"call {self.listen_call[:8]} ended before the supervisor's "
                            "phone answered")
                self.listen_call = ""
                self.retry_listen()

    def outcomes(self, t: float, waiting: int) -> None:
        lines = {"impatient": ("abandoned", "the impatient caller left the queue: abandoned"),
                 "blacklist": ("blacklisted", f"{BLACKLIST[0]} refused: blacklisted"),
                 "vip": ("answered", f"VIP {VIPS[0]} answered before the callers queued "
                                     f"ahead of it ({waiting} still waiting)")}
        for name, channel in self.watch.items():
            outcome, line = lines[name]
            if name + " told" not in self.done and self.tally.outcome(channel) == outcome:
                self.done.add(name + " told")
                waited = ((channel.times.get("bridged") or channel.times.get("hangup") or 0)
                          - channel.times["created"]) / 1e6
                self.say(t, f"{line} (after {waited:.1f} s)")

    def listen(self, t: float) -> None:
        """The wallboard's listen button, over HTTP: log in as the supervisor, read the
        board, spy on the first talking call from phone 1900."""
        http = requests.Session()
        try:
            reply = http.post(f"{self.cti_url}/login", timeout=5, data={
                "username": "supervisor", "password": "supervisor", "namespace": DOMAIN})
            reply.raise_for_status()
            http.headers["sessionId"] = reply.json()["sessionId"]
            board = http.get(f"{self.cti_url}/api/csta/wallboard", params={"domain": DOMAIN},
                             timeout=5)
            board.raise_for_status()
            call = freshest_talking_call(board.json())
            if call is None:
                self.done.discard("listen")  # again at the next step
                return
            self.listen_clicked_us = int(time.time() * 1e6)
            reply = http.post(f"{self.cti_url}/api/csta/callControl/calls/{call['callId']}/spy",
                              params={"deviceId": f"{SUPERVISOR_PHONE}@{DOMAIN}",
                                      "mode": "listen"}, timeout=5)
            reply.raise_for_status()
            self.listen_call = call["callId"]
            agent = next((p["device"].split("@")[0] for p in call["parties"]
                          if p["state"] == "Connect"), "?")
            self.say(t, f"the supervisor clicks listen on {call['calling']} talking to agent "
                        f"{agent}: phone {SUPERVISOR_PHONE} rings")
        except (requests.RequestException, ValueError, KeyError) as exc:
            self.say(t, f"the supervisor's listen failed: {exc}")
            # (the call chosen may have ended between the board and the click)
            self.retry_listen()
        finally:
            http.close()

    def retry_listen(self) -> None:
        """Click listen again on another call at the next step, three tries at most."""
        self.listen_failures += 1
        if self.listen_failures < 3:
            self.done.discard("listen")

    def supervisor_leg(self) -> str:
        """What became of phone 1900's leg rung by the last click: "answered" (listening, or
        listened: the call may have ended since), "ended" (gone unanswered), else ""."""
        own = re.compile(rf"sofia/internal/{SUPERVISOR_PHONE}@")
        legs = [leg for switch in self.center.switches
                for leg in list(switch.all_channels.values())
                if own.match(leg.name) and leg.times["created"] >= self.listen_clicked_us]
        if any(leg.answered for leg in legs):
            return "answered"
        return "ended" if legs and not any(leg.up for leg in legs) else ""


def freshest_talking_call(board: dict[str, Any]) -> dict[str, Any] | None:
    """The wallboard's talking call whose agent started talking last: the one with the most
    talk left, as a supervisor picks a call to listen to from the start."""
    talking_for = {a["device"]: a["sinceMs"] for a in board["agents"] if a["state"] == "talking"}
    calls = [(min(talking_for[p["device"]] for p in c["parties"] if p["device"] in talking_for),
              i, c) for i, c in enumerate(board["calls"]) if c["status"] == "talking"
             and any(p["device"] in talking_for for p in c["parties"])]
    return min(calls)[2] if calls else None


def summary(center: SimulatedCallCenter, tally: Tally, elapsed: float, agents: int) -> str:
    counts = tally.counts()
    waits = [(c.times["bridged"] - c.times["created"]) / 1e6 for c, _ in tally.callers
             if "bridged" in c.times]
    talk = 0.0
    for switch in center.switches:
        for leg in switch.all_channels.values():
            if leg.get("fsapps_acd_agent") and leg.answered:
                end = leg.times.get("hangup") or int(time.time() * 1e6)
                talk += (end - leg.times["answered"]) / 1e6
    vip_waits = [(c.times["bridged"] - c.times["created"]) / 1e6 for c, k in tally.callers
                 if k == "vip" and "bridged" in c.times]
    lines = [
        "", "fsapps demo — summary",
        f"  calls placed        {len(tally.callers)}",
        *[f"  {k:<19} {v}" for k, v in sorted(counts.items())],
        f"  average wait        {sum(waits) / len(waits):.1f} s" if waits else "",
        f"  longest wait        {max(waits):.1f} s" if waits else "",
        f"  VIP average wait    {sum(vip_waits) / len(vip_waits):.1f} s" if vip_waits else "",
        f"  agent utilisation   {100 * talk / (agents * elapsed):.0f} % of agent time talking"
        if elapsed > 0 else "",
    ]
    return "\n".join(line for line in lines if line)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    print(f"fsapps demo: starting Redis, PostgreSQL database, {args.nodes} fake FreeSWITCH "
          f"nodes, {args.agents} agents ...", flush=True)
    redis_server = RedisServer().start()
    database = FreshDatabase().create()
    center = None
    cti = None
    tally = Tally()
    started = time.monotonic()
    try:
        reset_database(database.dsn)
        settings = settings_for(redis_server.url, database.dsn, DOMAIN)
        center = SimulatedCallCenter(settings)
        build(center, args, rng)
        if args.cti_port:
            cti = start_cti(settings, args.cti_port)
            for line in page_lines(cti.url):
                print(line, flush=True)
        print(f"running {args.duration:.0f} s of calls at {args.rate}/s "
              "(Ctrl-C to stop early)", flush=True)
        started = time.monotonic()
        next_call = started + 8 * args.time_scale  # after the opening's burst
        last_print = 0.0
        tty = sys.stdout.isatty()
        every = 0.5 if tty else max(1.0, 5.0 * args.time_scale)

        def say(t: float, text: str) -> None:
            line = f"t={t:5.1f}s  {text}"
            print("\r\033[K" + line if tty else line, flush=True)

        opening = Opening(center, tally, rng, args.agents, args.time_scale,
                          cti.url if cti is not None else None, say)
        while time.monotonic() - started < args.duration:
            now = time.monotonic()
            opening.step(now - started)
            if args.rate > 0 and now >= next_call:
                place_call(center, tally, rng, args.time_scale)
                next_call = now + rng.expovariate(args.rate)
            if now - last_print >= every:
                last_print = now
                line = status_line(center, tally, started)
                print("\r" + line if tty else line, end="" if tty else "\n", flush=True)
            time.sleep(0.05)
        print("\narrivals over; letting calls in progress finish (Ctrl-C to stop now)",
              flush=True)
        deadline = time.monotonic() + 90
        while any(c.up for c, _ in tally.callers) and time.monotonic() < deadline:
            time.sleep(0.1)
            opening.step(time.monotonic() - started)
            if time.monotonic() - last_print >= every:
                last_print = time.monotonic()
                line = status_line(center, tally, started)
                print("\r" + line if tty else line, end="" if tty else "\n", flush=True)
    except KeyboardInterrupt:
        # A second Ctrl-C must not cut the clean-up short (servers, database, threads).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("\ninterrupted: hanging up the calls in progress", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        elapsed = time.monotonic() - started
        if cti is not None:
            cti.close()
        if center is not None:
            print(summary(center, tally, elapsed, args.agents), flush=True)
            center.close()
        redis_server.close()
        database.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
