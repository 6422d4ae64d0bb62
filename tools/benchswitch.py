"""``make bench-switch`` — fsapps' ACD in a real FreeSWITCH 1.10.12, side by side with the same
build's mod_callcenter and with no ACD at all (a plain bridge), on one SIPp load.

Agents: ONE SIPp process answers as every agent — N users registered with the same contact —
ringing 300 ms, answering, talking ``--talk`` seconds and hanging up (wrap-up 0). Callers: a
SIPp process per run calling at ``--rate`` calls/s for ``--arrivals`` seconds; a caller who
has not reached an agent gives up ``--patience`` seconds after arriving. Every ACD gets its own
switch, built from the real-switch tier's configuration (:mod:`tools.realswitch`), all three
alive for the whole bench; each run is played on them back to back.

- ``fsapps``: the switch as README installs it (mod_python3, fsapps' directory and runtime,
  its own Redis and PostgreSQL database); callers dial 7<group>, one group of the N agents,
  call mode 2 (cyclic), ring timeout 15 s, wrap-up 0.
- ``callcenter``: the same switch without mod_python3, with mod_callcenter: one queue,
  longest-idle-agent, the N agents (contact ``user/<ext>``, ring timeout 15 s, wrap-up 0, no
  delays after a reject/busy/no answer), hold music ``local_stream://moh`` as fsapps; the users
  in a static XML directory (mod_callcenter's usual setting, no Python in the switch).
- ``plain``: the same switch without mod_python3: the caller's INVITE is bridged to the next
  agent in turn (SIPp takes the agents from an injection file in sequence) — no queue, no
  decision: the cost of the calls themselves.

The table (printed at the end and written to ``--out``): bridged / offered; decision latency
p50/p99 (the caller answered — or arrived, when nothing answers it before an agent rings — to
the first agent leg created, from the switch's CHANNEL_CREATE/ANSWER events over ESL); wait
p50/p99 (arrival to the bridge with an agent); connections per second (bridged calls over the
time from the first arrival to the last bridge); FreeSWITCH CPU ms per offered call (utime +
stime of the process from ``/proc``, the run's arrivals and drain); agents left not ready
after the run (fsapps: the agent hashes; mod_callcenter: ``callcenter_config agent list``) and
channels still up; the most threads the switch had. For fsapps also Redis commands and reads
(≈ round trips) per bridged call, from its own Redis' INFO.

    python -m tools.benchswitch [--runs 100x10,500x20,500x40] [--talk 10] [--arrivals 30]
                                [--patience 30] [--acd fsapps,callcenter,plain] [--out PATH]

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import redis
import yaml

from fsapps import metrics
from fsapps.config import RedisSettings
from fsapps.store.keys import Keys
from tools import sipp
from tools.esl import Esl, EslError
from tools.realswitch import (
    ESL_PASSWORD,
    FS_PREFIX,
    ROOT,
    RealSwitch,
    install_fsapps,
    merged_settings,
    missing_switch,
)
from tools.servers import FreshDatabase, RedisServer, scratch_dir

DOMAIN = "bench.fsapps"
PASSWORD = "bench-pw-1"
FIRST_AGENT = 2000
GROUP = "5000"
QUEUE = f"bench@{DOMAIN}"
RING_TIMEOUT = 15
RING_MS = 300
ACDS = ("fsapps", "callcenter", "plain")
DEFAULT_RUNS = "100x10,500x20,500x40"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The core's log level on every bench switch (the test tier's "debug" would bill each call
# for its own debug lines); the same for the three ACDs (--loglevel).
SWITCH_LOGLEVEL = "notice"
# Headers kept from each event (the rest, every channel variable, is dropped as it arrives).
_KEPT = re.compile(r"^(Event-Name|Unique-ID|Call-Direction|Caller-Caller-ID-Number|"
                   r"Event-Date-Timestamp|Bridge-A-Unique-ID|Bridge-B-Unique-ID|"
                   r"Other-Leg-Unique-ID|variable_cc_member_session_uuid|API-Command): (.*)$",
                   re.M)
# The bench's own commands (its API events are not the ACD's)
_OWN_COMMANDS = ("show", "callcenter_config", "status")


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


@dataclass(frozen=True)
class Run:
    agents: int
    rate: float
    talk: float
    arrivals: float
    patience: float
    profile: Path | None = None
    watch_agents: bool = False

    @property
    def offered(self) -> int:
        return int(round(self.rate * self.arrivals))

    @property
    def label(self) -> str:
        return f"{self.agents} × {self.rate:g}, {self.talk:g} s"


@dataclass
class Result:
    acd: str
    run: Run
    offered: int
    found: Analysis
    cpu_ms_per_call: float
    left_not_ready: str
    channels_left: int
    threads_max: int
    hottest_thread_ms: float
    redis_per_call: str = ""
    redis_top: str = ""
    api_per_call: str = ""
    music_starts: int = 0
    profile: list[str] = field(default_factory=list)
    # fsapps' own decision p50 / p99, timed in its handlers (finer than the switch's events)
    own_decision: str = ""
    # CPU per call of fsapps' own threads in the switch (named_threads_ms)
    own_threads: str = ""


# ------------------------------------------------------------------------ events ------------
class EventLog(Esl):
    """An ESL connection keeping a few headers of every CHANNEL_CREATE/ANSWER/BRIDGE."""

    def _read_loop(self) -> None:
        try:
            while True:
                headers, body = self.reader.message()
                kind = headers.get("Content-Type")
                if kind == "text/event-plain":
                    event = dict(_KEPT.findall(body.partition("\n\n")[0]))
                    event["_rx"] = repr(time.time())
                    with self.events_cond:
                        self.events.append(event)
                elif kind in ("api/response", "command/reply"):
                    self.replies.put((headers, body))
                elif kind == "text/disconnect-notice":
                    return
        except (EslError, OSError):
            return

    def since(self, index: int) -> list[dict[str, str]]:
        with self.events_cond:
            return list(self.events[index:])

    def mark(self) -> int:
        with self.events_cond:
            return len(self.events)


def _stamp(event: dict[str, str]) -> float:
    return int(event.get("Event-Date-Timestamp", "0")) / 1e6


def _received(event: dict[str, str]) -> float:
    """When the event reached the bench: the switch's own stamps tick every 20 ms, too coarse
    for a decision of a few ms (the events of one connection arrive in the switch's order)."""
    return float(event["_rx"])


@dataclass
class Analysis:
    callers_seen: int = 0
    bridged: int = 0
    decision_ms: list[float] = field(default_factory=list)
    wait_s: list[float] = field(default_factory=list)
    per_second: float = 0.0
    # the callers who arrived while an agent was free (no queue to wait in)
    arrived_free: int = 0
    wait_free_s: list[float] = field(default_factory=list)
    # how late the switch's events reached the bench over ESL (its stamps tick every 20 ms)
    event_lag_s: list[float] = field(default_factory=list)
    # Hold music: the callers who heard some, the seconds from their first playback to their
    # bridge (or to giving up), and the playbacks started after each one's first (restarts)
    music_callers: int = 0
    music_s: float = 0.0
    music_restarts: int = 0

    @property
    def restarts_per_caller_second(self) -> float:
        """Playbacks restarted per waiting caller per second of waiting (issue 15 counts
        them: a handler that polls restarts its caller's music every segment)."""
        return self.music_restarts / self.music_s if self.music_s > 0 else 0.0


def analyse(events: Iterable[dict[str, str]], prefix: str, agents: int,
            talk: float, patience: float = 30.0) -> Analysis:
    """Callers (inbound legs whose number starts with ``prefix``), their first agent leg and
    their bridge. An agent counts busy from its leg's creation until ``talk`` after that leg's
    bridge (the phones hang up then; wrap-up is 0), or for the ring when it was never bridged:
    a caller arriving while fewer than ``agents`` were busy arrived with an agent free. A
    caller's playbacks (PLAYBACK_START on its leg) count until its bridge, or until it gave up
    ``patience`` after arriving."""
    created: dict[str, float] = {}
    created_rx: dict[str, float] = {}
    answered_rx: dict[str, float] = {}
    by_number: dict[str, str] = {}
    first_leg: dict[str, float] = {}
    bridged: dict[str, float] = {}
    legs: dict[str, float] = {}
    legs_bridged: dict[str, float] = {}
    events = list(events)
    for event in events:
        uuid = event.get("Unique-ID", "")
        name = event.get("Event-Name")
        inbound = event.get("Call-Direction") == "inbound"
        number = event.get("Caller-Caller-ID-Number", "")
        if name == "CHANNEL_CREATE" and inbound and number.startswith(prefix):
            created[uuid] = _stamp(event)
            created_rx[uuid] = _received(event)
            by_number[number] = uuid
        elif name == "CHANNEL_ANSWER" and uuid in created:
            answered_rx.setdefault(uuid, _received(event))
    music: dict[str, list[float]] = {}  # a caller's playbacks
    for event in events:
        name = event.get("Event-Name")
        if name == "PLAYBACK_START" and event.get("Unique-ID") in created:
            music.setdefault(event["Unique-ID"], []).append(_stamp(event))
        elif name == "CHANNEL_CREATE" and event.get("Call-Direction") == "outbound":
            caller = (event.get("Other-Leg-Unique-ID") or
                      event.get("variable_cc_member_session_uuid") or "")
            if caller not in created:
                caller = by_number.get(event.get("Caller-Caller-ID-Number", ""), "")
            if caller:
                first_leg.setdefault(caller, _received(event))
                legs[event.get("Unique-ID", "")] = _stamp(event)
        elif name == "CHANNEL_BRIDGE":
            sides = [event.get("Bridge-A-Unique-ID", ""), event.get("Bridge-B-Unique-ID", "")]
            for side in sides:
                if side in created:
                    bridged.setdefault(side, _stamp(event))
                else:
                    legs_bridged.setdefault(side, _stamp(event))
    result = Analysis(callers_seen=len(created), bridged=len(bridged),
                      event_lag_s=[_received(e) - _stamp(e) for e in events if "_rx" in e])
    for caller, leg in first_leg.items():
        start = answered_rx.get(caller, created_rx[caller])
        if start > leg:  # not answered before its agent rang (the plain bridge)
            start = created_rx[caller]
        result.decision_ms.append((leg - start) * 1000)
    result.wait_s = [at - created[caller] for caller, at in bridged.items()]
    for caller, starts in music.items():
        end = bridged.get(caller, created[caller] + patience)
        result.music_callers += 1
        result.music_s += max(0.0, end - min(starts))
        result.music_restarts += len(starts) - 1
    if bridged:
        span = max(bridged.values()) - min(created.values())
        result.per_second = len(bridged) / span if span > 0 else 0.0
    busy = [(begin, legs_bridged[uuid] + talk if uuid in legs_bridged else begin + RING_MS / 1000)
            for uuid, begin in legs.items()]
    for caller, arrived in created.items():
        if sum(1 for begin, end in busy if begin <= arrived < end) < agents:
            result.arrived_free += 1
            if caller in bridged:
                result.wait_free_s.append(bridged[caller] - arrived)
    return result


PY_SPY_RATE = 100


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the threads holding the GIL in the switch (``--profile``; py-spy is not
    a dependency: ``pip install py-spy``), without pausing it."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        say(f"  --profile: no {spy} (pip install py-spy); not profiled")
        return None
    return subprocess.Popen([str(spy), "record", "--pid", str(pid), "--gil", "--nonblocking",
                             "--threads", "--format", "raw", "--rate", str(PY_SPY_RATE),
                             "--duration", str(int(seconds)), "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _thread_kind(stack: str) -> str:
    if "NodeRuntime.run " in stack or "runtime (fsapps/switch/runtime.py" in stack:
        return "runtime event loop"
    if "serve_commands" in stack:
        return "runtime command thread"
    if "write_cdrs" in stack:
        return "runtime CDR thread"
    if "nwayacd" in stack or "fsapps/switch/acd.py" in stack:
        return "ACD handlers (caller sessions)"
    if "directory" in stack:
        return "directory lookups"
    return "other"


def profile_summary(path: Path, seconds: float, calls: int) -> list[str]:
    """GIL held, by thread kind and by the runtime loop's functions (py-spy raw samples)."""
    if not path.exists():
        return ["  (no profile written)"]
    kinds: dict[str, int] = {}
    runtime_self: dict[str, int] = {}
    runtime_incl: dict[str, int] = {}
    threads: set[str] = set()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        threads.update(f for f in frames[:2] if f.startswith("thread"))
        kind = _thread_kind(stack)
        kinds[kind] = kinds.get(kind, 0) + count
        if kind == "runtime event loop":
            python = [f for f in frames if "(" in f and not f.startswith(("thread", "process"))]
            if python:
                runtime_self[python[-1]] = runtime_self.get(python[-1], 0) + count
            for frame in {f.split(" (")[0] for f in python}:
                runtime_incl[frame] = runtime_incl.get(frame, 0) + count
    ticks = seconds * PY_SPY_RATE
    ms = 1000 / PY_SPY_RATE
    lines = [f"  GIL held {total / ticks:.0%} of {seconds:.0f} s ({total * ms / max(calls, 1):.1f}"
             f" ms per offered call), {len(threads)} Python threads seen holding it:"]
    for kind, count in sorted(kinds.items(), key=lambda item: -item[1]):
        lines.append(f"    {kind}: {count / ticks:.0%} of the time, "
                     f"{count * ms / max(calls, 1):.1f} ms per call")
    loop = kinds.get("runtime event loop", 0)
    if loop:
        lines.append("  the runtime event loop, inclusive share of its GIL time:")
        top = sorted(runtime_incl.items(), key=lambda item: -item[1])[:14]
        lines.extend(f"    {name}: {count / loop:.0%}" for name, count in top)
    return lines


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    return cpu_seconds_of(f"/proc/{pid}/stat")  # utime + stime


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid``."""
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            times[tid] = cpu_seconds_of(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue
    return times


def named_threads_ms(pid: int, before: dict[str, float], after: dict[str, float],
                     calls: int, total: float) -> str:
    """CPU ms per call of the switch's threads fsapps named (``fsapps-<name>``,
    fsapps.threads.name_os_thread), and of all the others together (``total``: the
    switch's CPU seconds, those of threads that ended meanwhile included)."""
    named: dict[str, float] = {}
    for tid, spent in after.items():
        used = spent - before.get(tid, 0.0)
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            name = ""
        if name.startswith("fsapps-"):
            short = name.removeprefix("fsapps-")
            named[short] = named.get(short, 0.0) + used
    if not named:
        return ""
    ms = 1000 / max(calls, 1)
    return ", ".join(f"{name} {used * ms:.1f}" for name, used in
                     sorted(named.items(), key=lambda item: -item[1])) + \
        f"; every other thread of the switch {(total - sum(named.values())) * ms:.1f} ms " \
        "per offered call"


def cpu_seconds_of(stat: str) -> float:
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


class AgentWatch:
    """``--watch-agents``: every few seconds of an fsapps run, one line with the callers in its
    queue and its agents by state (``+leg`` where the runtime has not yet been told their
    last leg ended: such an agent is not free)."""

    def __init__(self, client: redis.Redis, agents: Sequence[str], every: float = 3.0) -> None:
        self.client, self.agents, self.every = client, agents, every
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            pipe = self.client.pipeline(transaction=False)
            for ext in self.agents:
                pipe.hmget(f"fsapps:{{{DOMAIN}}}:agent:{ext}", "call_state", "leg_pending")
            pipe.zcard(f"fsapps:{{{DOMAIN}}}:group:{GROUP}:queue")
            *states, queued = pipe.execute()
            counts: dict[str, int] = {}
            for state, leg in states:
                name = (state or b"?").decode() + ("+leg" if leg else "")
                counts[name] = counts.get(name, 0) + 1
            say(f"  t={time.monotonic() - self.started:4.0f} s  queue {queued}  agents "
                + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class ThreadSampler:
    """The most threads a process had, sampled every half second."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.most = thread_count(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.most = max(self.most, thread_count(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.most


# ------------------------------------------------------------------------ the ACDs ----------
def agent_ids(count: int) -> list[str]:
    return [str(FIRST_AGENT + i) for i in range(count)]


def static_directory(users: Sequence[str]) -> str:
    """conf/directory/default.xml with ``users`` (one password) for the switches without
    fsapps; the dial-string is FreeSWITCH's default, as fsapps' directory renders it."""
    rows = "\n".join(f'        <user id="{u}"><params><param name="password" '
                     f'value="{PASSWORD}"/></params></user>' for u in users)
    dial = ("{^^:sip_invite_domain=${dialed_domain}:presence_id=${dialed_user}@${dialed_domain}}"
            "${sofia_contact(*/${dialed_user}@${dialed_domain})}")
    return (f'<include>\n  <domain name="{DOMAIN}">\n    <params>\n'
            f'      <param name="dial-string" value={quoteattr(dial)}/>\n    </params>\n'
            f'    <groups><group name="default"><users>\n{rows}\n'
            '    </users></group></groups>\n  </domain>\n</include>\n')


def callcenter_conf(users: Sequence[str]) -> str:
    agents = "\n".join(
        f'    <agent name="{u}@{DOMAIN}" type="callback" '
        f'contact="[leg_timeout={RING_TIMEOUT}]user/{u}@{DOMAIN}" status="Logged Out" '
        'max-no-answer="0" wrap-up-time="0" reject-delay-time="0" busy-delay-time="0" '
        'no-answer-delay-time="0"/>' for u in users)
    tiers = "\n".join(f'    <tier agent="{u}@{DOMAIN}" queue="{QUEUE}" level="1" position="1"/>'
                      for u in users)
    return f"""<configuration name="callcenter.conf" description="CallCenter">
  <settings/>
  <queues>
    <queue name="{QUEUE}">
      <param name="strategy" value="longest-idle-agent"/>
      <param name="moh-sound" value="local_stream://moh"/>
      <param name="time-base-score" value="system"/>
      <param name="max-wait-time" value="0"/>
      <param name="max-wait-time-with-no-agent" value="0"/>
      <param name="tier-rules-apply" value="false"/>
      <param name="discard-abandoned-after" value="60"/>
      <param name="abandoned-resume-allowed" value="false"/>
    </queue>
  </queues>
  <agents>
{agents}
  </agents>
  <tiers>
{tiers}
  </tiers>
</configuration>
"""


BENCH_DIALPLAN = f"""<include>
  <extension name="bench_callcenter">
    <condition field="destination_number" expression="^bench_queue$">
      <action application="answer"/>
      <action application="callcenter" data="{QUEUE}"/>
      <action application="hangup"/>
    </condition>
  </extension>
  <extension name="bench_plain_bridge">
    <condition field="destination_number" expression="^bench_agent_(\\d+)$">
      <action application="set" data="hangup_after_bridge=true"/>
      <action application="bridge" data="{{leg_timeout={RING_TIMEOUT}}}user/$1@{DOMAIN}"/>
    </condition>
  </extension>
</include>
"""


@dataclass
class Target:
    """One ACD on its own switch."""

    acd: str
    sw: RealSwitch
    workdir: Path
    redis_client: redis.Redis | None = None
    logged_in: int = 0
    events: EventLog | None = None

    def number(self, agents: int) -> tuple[str, list[str]]:
        """What the callers dial, and SIPp's extra arguments."""
        if self.acd == "fsapps":
            return f"7{GROUP}", []
        if self.acd == "callcenter":
            return "bench_queue", []
        sequence = self.workdir / f"agents-{agents}.csv"
        sequence.write_text("SEQUENTIAL\n" + "".join(f"{a};\n" for a in agent_ids(agents)))
        return "bench_agent_[field0]", ["-inf", str(sequence)]

    def api(self, line: str) -> str:
        return self.sw.api(line)

    def set_agents(self, count: int, everyone: Sequence[str]) -> None:
        """Exactly the first ``count`` agents logged in and ready."""
        wanted = everyone[:count]
        if self.acd == "fsapps":
            for ext in wanted[self.logged_in:]:
                reply = self.api(f"python fsapps.api nway_login {ext} {GROUP}")
                if not reply.startswith("+OK"):
                    raise RuntimeError(f"nway_login {ext}: {reply}")
            for ext in everyone[count:self.logged_in]:
                self.api(f"python fsapps.api nway_logout {ext}")
        elif self.acd == "callcenter":
            for ext in wanted[self.logged_in:]:
                self.api(f"callcenter_config agent set status {ext}@{DOMAIN} Available")
            for ext in everyone[count:self.logged_in]:
                self.api(f"callcenter_config agent set status {ext}@{DOMAIN} 'Logged Out'")
        self.logged_in = count

    def not_ready(self, agents: Sequence[str]) -> str:
        """Agents of the run not ready (fsapps) or not Available/Waiting (mod_callcenter)."""
        states: dict[str, int] = {}
        if self.acd == "fsapps":
            assert self.redis_client is not None
            pipe = self.redis_client.pipeline(transaction=False)
            for ext in agents:
                pipe.hget(f"fsapps:{{{DOMAIN}}}:agent:{ext}", "call_state")
            for state in pipe.execute():
                name = (state or b"absent").decode() if isinstance(state, bytes) else str(state)
                if name != "ready":
                    states[name] = states.get(name, 0) + 1
        elif self.acd == "callcenter":
            lines = self.api("callcenter_config agent list").splitlines()
            if not lines:
                return "?"
            head = lines[0].split("|")
            status_col, state_col = head.index("status"), head.index("state")
            for line in lines[1:]:
                cols = line.split("|")
                if len(cols) != len(head):
                    continue
                status, state = cols[status_col], cols[state_col]
                if status == "Logged Out":
                    continue
                if status != "Available" or state != "Waiting":
                    name = f"{status}/{state}"
                    states[name] = states.get(name, 0) + 1
        else:
            return "—"
        if not states:
            return "0"
        total = sum(states.values())
        return f"{total} ({', '.join(f'{k} {v}' for k, v in sorted(states.items()))})"

    def channels(self) -> int:
        match = re.search(r"(\d+) total", self.api("show channels count"))
        return int(match.group(1)) if match else -1

    def redis_counters(self) -> dict[str, int]:
        """Commands, reads (≈ round trips: a pipeline is read at once) and calls per command
        of the ACD's own Redis."""
        if self.redis_client is None:
            return {}
        info = self.redis_client.info("stats")
        counters = {"commands": int(info["total_commands_processed"]),
                    "reads": int(info.get("total_reads_processed", 0)),
                    "connections": int(info["total_connections_received"])}
        for name, stats in self.redis_client.info("commandstats").items():
            counters[name.removeprefix("cmdstat_")] = int(stats["calls"])
        return counters


    def decision_counts(self) -> dict[str, int]:
        """fsapps' own decision latency histogram (answered -> first agent rung, counted by its
        ACD handlers, fsapps.metrics.observe), as its nodes' heartbeats left it in Redis."""
        if self.redis_client is None:
            return {}
        counts: dict[str, int] = {}
        for key in self.redis_client.scan_iter(match="*:node:*:stats"):
            for name, value in self.redis_client.hgetall(key).items():
                name = name.decode() if isinstance(name, bytes) else str(name)
                if name.startswith("decision_ms_"):
                    counts[name] = counts.get(name, 0) + int(value)
        return counts


def own_decisions(before: dict[str, int], after: dict[str, int]) -> str:
    """fsapps' own decision p50 / p99 over a run, as bucket bounds ("<= 5 / <= 10 ms")."""
    delta = {name: value - before.get(name, 0) for name, value in after.items()}
    buckets = metrics.histogram(delta, "decision_ms")
    p50, p99 = metrics.quantile(buckets, 0.5), metrics.quantile(buckets, 0.99)
    if p50 is None or p99 is None:
        return ""
    return (f"≤ {p50:,.0f} / ≤ {p99:,.0f} ms over {sum(n for _, n in buckets)} calls"
            .replace("≤ inf", "> 30,000"))


# ------------------------------------------------------------------------ the bench ---------
@dataclass
class Bench:
    acds: Sequence[str]
    max_agents: int
    talk: float
    loglevel: str = SWITCH_LOGLEVEL
    # the git revision whose fsapps the switch runs ("" = the working tree as it is)
    revision: str = "HEAD"
    # "switch": fsapps' Redis gets FreeSWITCH's scheduling (_redis_like_the_switch); "normal"
    redis_priority: str = "switch"
    # fsapps.yaml settings beside the bench's own (--fsapps-setting), e.g. features off
    fsapps_settings: dict[str, Any] = field(default_factory=dict)
    base: Path = field(default_factory=lambda: scratch_dir("fsapps-bench-switch-"))
    targets: list[Target] = field(default_factory=list)
    redis_server: RedisServer | None = None
    database: FreshDatabase | None = None
    agents_uas: sipp.Sipp | None = None

    def start(self) -> None:
        everyone = agent_ids(self.max_agents)
        self.agents_uas = sipp.phone(ring_ms=RING_MS, calls=10_000_000, timeout_s=4 * 3600,
                                     hangup_after_ms=int(self.talk * 1000),
                                     trace_messages=False, starved_ok=True)
        say(f"agents: one SIPp on 127.0.0.1:{self.agents_uas.port} answers as "
            f"{self.max_agents} agents (ring {RING_MS} ms, talk {self.talk:g} s)")
        for acd in self.acds:
            target = self._switch(acd, everyone)
            self.targets.append(target)
            say(f"{acd}: switch up (pid {target.sw.proc.pid if target.sw.proc else '?'}, "
                f"external 127.0.0.1:{target.sw.external_port})")
        for target in self.targets:
            self._register(target, everyone)
        if self.redis_priority == "switch":
            self._redis_like_the_switch()

    def _redis_like_the_switch(self) -> None:
        """Run fsapps' Redis with the scheduling FreeSWITCH gives itself (SCHED_FIFO, priority
        1, unless started with -nort): mod_callcenter keeps its state inside the switch
        process, at that priority; fsapps keeps it in Redis, whose every round trip otherwise
        waits behind every ordinary process of a loaded box (at load ~190, decision p50 5.3 s
        against 0.2 s for mod_callcenter, the switch itself idle). docs/operations.md says the
        same for production."""
        fsapps = next((t for t in self.targets if t.acd == "fsapps"), None)
        if fsapps is None or fsapps.sw.proc is None or self.redis_server is None or \
                self.redis_server.pid is None:
            return
        try:
            policy = os.sched_getscheduler(fsapps.sw.proc.pid)
            param = os.sched_getparam(fsapps.sw.proc.pid)
            os.sched_setscheduler(self.redis_server.pid, policy, param)
        except OSError as exc:
            say(f"fsapps: Redis keeps its ordinary scheduling ({exc})")
            return
        say(f"fsapps: its Redis runs with the switch's scheduling (policy {policy}, "
            f"priority {param.sched_priority})")

    def _switch(self, acd: str, everyone: Sequence[str]) -> Target:
        if acd == "fsapps":
            self.redis_server = RedisServer().start()
            self.database = FreshDatabase().create()
            source = ROOT
            if self.revision:
                source = self.base / "source"
                source.mkdir()
                archive = subprocess.run(["git", "archive", self.revision], cwd=ROOT,
                                         check=True, capture_output=True).stdout
                subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
            say(f"fsapps: installing {self.revision or 'the working tree'} for the switch's "
                "python (pip install --target)")
            site = install_fsapps(self.base / "site", source)
            sw = RealSwitch("bench-fsapps", self.base, site, self.redis_server.url,
                            self.database.dsn, domains=(DOMAIN,), fsapps_extra=merged_settings(
                                {"group_defaults": {"wrapup_seconds": 0,
                                                    "callout_timeout": RING_TIMEOUT}},
                                self.fsapps_settings))
        else:
            sw = RealSwitch(f"bench-{acd}", self.base, self.base / "no-site", "redis://unused",
                            "", with_fsapps=False)
        sw.build()
        # room for ~1,000 calls' RTP (the test tier's 400 ports are for a few calls)
        sw.set_vars(rtp_end_port=str(sw.rtp_start + 3999))
        switch_conf = sw.conf / "autoload_configs" / "switch.conf.xml"
        switch_conf.write_text(re.sub(r'name="loglevel" value="[^"]*"',
                                      f'name="loglevel" value="{self.loglevel}"',
                                      switch_conf.read_text()))
        (sw.conf / "dialplan" / "public" / "00_bench.xml").write_text(BENCH_DIALPLAN)
        if acd != "fsapps":
            # these agents register without a digest, all from one SIPp process (setup only);
            # fsapps' agents answer the challenge, or its runtime never hears of them
            internal = sw.conf / "sip_profiles" / "internal.xml"
            internal.write_text(internal.read_text().replace(
                '<param name="accept-blind-reg" value="false"/>',
                '<param name="accept-blind-reg" value="true"/>'))
            modules = sw.conf / "autoload_configs" / "modules.conf.xml"
            load = '<load module="mod_callcenter"/>' if acd == "callcenter" else ""
            modules.write_text(modules.read_text().replace('<load module="mod_python3"/>', load))
            (sw.conf / "directory" / "default.xml").write_text(static_directory(everyone))
            (sw.conf / "autoload_configs" / "callcenter.conf.xml").write_text(
                callcenter_conf(everyone))
        else:
            migrated = subprocess.run(
                [sys.executable, "-m", "fsapps.cli", "--config", str(sw.config_path), "db",
                 "migrate"], capture_output=True, text=True, timeout=120, cwd=ROOT,
                env={k: v for k, v in os.environ.items() if not k.startswith("FSAPPS_")})
            if migrated.returncode != 0:
                raise RuntimeError(f"fsapps db migrate: {migrated.stderr}")
        sw.start(timeout=90)
        target = Target(acd, sw, self.base)
        if acd == "fsapps":
            assert self.redis_server is not None
            target.redis_client = redis.Redis.from_url(self.redis_server.url)
            record = json.dumps({"param": {"password": PASSWORD}, "variable": {},
                                 "attribute": {}})
            target.redis_client.hset(f"cti_exten@{DOMAIN}",
                                     mapping=dict.fromkeys(everyone, record))
            reply = sw.api(f"python fsapps.api nway_add_group {GROUP} 2")
            if not reply.startswith("+OK"):
                raise RuntimeError(f"nway_add_group: {reply}")
            for ext in everyone:
                reply = sw.api(f"python fsapps.api nway_add_ext {ext}")
                if not reply.startswith("+OK"):
                    raise RuntimeError(f"nway_add_ext {ext}: {reply}")
        target.events = EventLog(sw.esl_port, ESL_PASSWORD)
        target.events.subscribe("CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_BRIDGE API PLAYBACK_START")
        return target

    def _register(self, target: Target, everyone: Sequence[str]) -> None:
        assert self.agents_uas is not None
        started = time.monotonic()
        if target.acd == "fsapps":
            failed = sipp.register_many(target.sw.internal_port, everyone, PASSWORD, DOMAIN,
                                        self.agents_uas.port)
        else:
            blind = sipp.register_blind(target.sw.internal_port, everyone, DOMAIN,
                                        self.agents_uas.port)
            failed = [] if blind.wait(150) == 0 else [blind.errors()[-300:]]
        deadline = time.monotonic() + 60
        count = 0
        while time.monotonic() < deadline:
            if target.redis_client is not None:  # fsapps has seen them (its runtime)
                count = registered_agents(target.redis_client, everyone)
            else:
                match = re.search(r"(\d+) total", target.api("show registrations count"))
                count = int(match.group(1)) if match else 0
            if count >= len(everyone):
                break
            time.sleep(0.5)
        if count < len(everyone):
            raise RuntimeError(f"{target.acd}: {count} of {len(everyone)} agents registered "
                               f"(failed: {' '.join(failed[:20])})")
        say(f"{target.acd}: {count} agents registered in {time.monotonic() - started:.1f} s")

    def agents_alive(self) -> None:
        """Stop the bench, saying why, when the agents' SIPp is gone: every call after would
        ring no one, and the table would blame the ACD."""
        uas = self.agents_uas
        if uas is not None and uas.proc is not None and uas.proc.poll() is not None:
            last = [line for line in uas.errors().replace("\t", " ").splitlines()
                    if line.strip()][-1:]
            raise RuntimeError(f"the agents' SIPp exited ({uas.proc.returncode})"
                               + (f": {last[0][-300:]}" if last else ""))

    def run(self, run: Run, index: int, results: list[Result]) -> None:
        """``run`` on every ACD, one after the other; each result is appended to ``results``
        as soon as it is in (those before a failure stand)."""
        everyone = agent_ids(self.max_agents)
        for target in self.targets:
            self.agents_alive()
            setup = time.monotonic()
            target.set_agents(run.agents, everyone)
            say(f"run {run.label} · {target.acd}: {run.agents} agents ready "
                f"({time.monotonic() - setup:.1f} s); {run.offered} callers over "
                f"{run.arrivals:g} s")
            r = self._play(target, run, index)
            self.agents_alive()  # (a run whose agents died meanwhile is not reported)
            results.append(r)
            say(f"run {run.label} · {target.acd}: bridged {r.found.bridged}/{r.offered}, "
                f"decision {_ms(r.found.decision_ms)}, wait {_s(r.found.wait_s)}, "
                f"{r.cpu_ms_per_call:.1f} CPU ms/call, "
                f"hottest thread {r.hottest_thread_ms:.1f} ms/call, not ready after: "
                f"{r.left_not_ready}")
            say(f"  switch events reached the bench over ESL {_s(r.found.event_lag_s)} late "
                "(p50 / p99)")
            if r.redis_top:
                say(f"  Redis calls per bridged call: {r.redis_top}")
            if r.own_decision:
                say(f"  fsapps' own decision (answered -> first agent rung, timed in its "
                    f"handlers): {r.own_decision}")
            if r.own_threads:
                say(f"  CPU of fsapps' runtime threads: {r.own_threads}")
            if r.api_per_call:
                say(f"  API calls per bridged call: {r.api_per_call}")
            f = r.found
            say(f"  playbacks started (hold music, announcements): {r.music_starts}, "
                f"{r.music_starts / max(r.offered, 1):.2f} per offered call; "
                f"{f.music_callers} callers heard music for {f.music_s:.0f} s in all, "
                f"{f.music_restarts} restarts: {f.restarts_per_caller_second:.3f} per waiting "
                "caller per second")
            for line in r.profile:
                say(line)

    def _play(self, target: Target, run: Run, index: int) -> Result:
        assert target.events is not None and target.sw.proc is not None
        pid = target.sw.proc.pid
        prefix = f"9{index}{ACDS.index(target.acd)}"
        number, extra = target.number(run.agents)
        mark = target.events.mark()
        redis_before = target.redis_counters()
        decisions_before = target.decision_counts()
        cpu_before = cpu_seconds(pid)
        threads_before = thread_cpu(pid)
        sampler = ThreadSampler(pid)
        watch = None
        if run.watch_agents and target.redis_client is not None:
            watch = AgentWatch(target.redis_client, agent_ids(run.agents))
        budget = run.arrivals + run.patience + run.talk + 30
        spy = None
        if run.profile is not None and target.acd == "fsapps":
            spy = start_profile(pid, run.arrivals + run.talk,
                                run.profile / f"fsapps-{run.agents}x{run.rate:g}.txt")
        callers = sipp.caller(target.sw.external_port, number, f"{prefix}[call_number]",
                              talk_ms=int((run.patience + run.talk) * 1000),
                              calls=run.offered, rate=run.rate, timeout_s=int(budget),
                              limit=max(run.offered, 1), extra_args=extra,
                              trace_messages=False)
        try:
            callers.wait(budget + 10)
        except subprocess.TimeoutExpired:
            say(f"  {target.acd}: callers still up after {budget:.0f} s, stopped")
        # the last calls' legs hang up a moment after SIPp's last BYE
        deadline = time.monotonic() + 10
        while target.channels() > 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        cpu = cpu_seconds(pid) - cpu_before
        threads_after = thread_cpu(pid)
        hottest = max((spent - threads_before.get(tid, 0.0)
                       for tid, spent in threads_after.items()), default=0.0)
        own_threads = named_threads_ms(pid, threads_before, threads_after, run.offered, cpu)
        threads = sampler.stop()
        if watch is not None:
            watch.stop()
        redis_after = target.redis_counters()
        if decisions_before or target.redis_client is not None:
            time.sleep(1.2)  # the node's next heartbeat carries its last counts
        own = own_decisions(decisions_before, target.decision_counts())
        channels = target.channels()
        if spy is not None:
            spy.wait()
        events = target.events.since(mark)
        found = analyse(events, prefix, run.agents, run.talk, run.patience)
        bridged = found.bridged
        redis_note = redis_top = ""
        if redis_before and bridged:
            delta = {name: redis_after[name] - redis_before.get(name, 0) for name in redis_after}
            redis_note = (f"{delta.pop('commands') / bridged:.0f} cmds, "
                          f"{delta.pop('reads') / bridged:.0f} reads")
            connections = delta.pop("connections")
            top = sorted(delta.items(), key=lambda item: -item[1])[:8]
            redis_top = ", ".join(f"{name} {calls / bridged:.1f}" for name, calls in top if calls)
            redis_top += f"; {connections} connections opened in the run"
        apis: dict[str, int] = {}
        for event in events:
            command = event.get("API-Command", "")
            if event.get("Event-Name") == "API" and command not in _OWN_COMMANDS:
                apis[command] = apis.get(command, 0) + 1
        api_note = ", ".join(f"{name} {count / max(bridged, 1):.2f}" for name, count in
                             sorted(apis.items(), key=lambda item: -item[1])[:8])
        offered = max(run.offered, 1)
        music = sum(1 for event in events if event.get("Event-Name") == "PLAYBACK_START")
        profile = []
        if spy is not None and run.profile is not None:
            profile = profile_summary(run.profile / f"fsapps-{run.agents}x{run.rate:g}.txt",
                                      run.arrivals + run.talk, run.offered)
        return Result(target.acd, run, run.offered, found, cpu * 1000 / offered,
                      target.not_ready(agent_ids(run.agents)), channels, threads,
                      hottest * 1000 / offered, redis_note, redis_top, api_note, music, profile,
                      own, own_threads)

    def stop(self) -> None:
        for target in self.targets:
            if target.events is not None:
                target.events.close()
            target.sw.stop(timeout=20)
            target.sw.kill()
            if target.redis_client is not None:
                target.redis_client.close()
        if self.agents_uas is not None:
            self.agents_uas.stop()
        if self.database is not None:
            self.database.drop()
        if self.redis_server is not None:
            self.redis_server.close()


# ------------------------------------------------------------------------ the table ---------
def _ms(values: Sequence[float]) -> str:
    if not values:
        return "—"
    return f"{percentile(values, 50):,.0f} / {percentile(values, 99):,.0f} ms"


def _s(values: Sequence[float]) -> str:
    if not values:
        return "—"
    return f"{percentile(values, 50):.2f} / {percentile(values, 99):.2f} s"


def cpu_summary(results: Sequence[Result]) -> str:
    """FreeSWITCH CPU ms per call by run and ACD: each run's figures in the order they ran,
    their median, and fsapps' median over mod_callcenter's (``--repeat`` alternates the ACDs
    run after run, so a machine that slows down weighs on both)."""
    by_run: dict[str, dict[str, list[float]]] = {}
    for r in results:
        by_run.setdefault(r.run.label, {}).setdefault(r.acd, []).append(r.cpu_ms_per_call)
    lines = []
    for label, acds in by_run.items():
        medians = {acd: percentile(values, 50) for acd, values in acds.items()}
        parts = [f"{acd} {', '.join(f'{v:.1f}' for v in values)}"
                 + (f" (median {medians[acd]:.1f})" if len(values) > 1 else "")
                 for acd, values in acds.items()]
        ratio = (f"; fsapps / callcenter {medians['fsapps'] / medians['callcenter']:.2f}"
                 if medians.get("callcenter") and "fsapps" in medians else "")
        lines.append(f"- {label}: {'; '.join(parts)}{ratio}")
    return "FS CPU ms per call:\n\n" + "\n".join(lines)


def table(results: Sequence[Result]) -> str:
    lines = [
        "| agents × calls/s, talk | ACD | bridged / offered | decision p50 / p99 | "
        "wait p50 / p99 | arrived with an agent free: wait p99 | connections/s | "
        "FS CPU ms/call (hottest thread) | agents not ready after | channels left | "
        "FS threads max | Redis per bridged call |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        f = r.found
        free = (f"{f.arrived_free}: {percentile(f.wait_free_s, 99):.2f} s" if f.wait_free_s
                else f"{f.arrived_free}: —")
        lines.append(
            f"| {r.run.label} | {r.acd} | {f.bridged} / {r.offered} | {_ms(f.decision_ms)} | "
            f"{_s(f.wait_s)} | {free} | {f.per_second:.1f} | {r.cpu_ms_per_call:.1f} "
            f"({r.hottest_thread_ms:.1f}) | "
            f"{r.left_not_ready} | {r.channels_left} | {r.threads_max} | "
            f"{r.redis_per_call or '—'} |")
    return "\n".join(lines)


def parse_runs(text: str) -> list[tuple[int, float]]:
    runs = []
    for item in text.split(","):
        agents, _, rate = item.strip().partition("x")
        runs.append((int(agents), float(rate)))
    return runs


def registered_agents(client: redis.Redis, everyone: Sequence[str]) -> int:
    """How many of the agents fsapps' runtime has recorded registered (their agent hashes:
    the seed's ``registrations`` hash may be turned off, --fsapps-setting)."""
    keys = Keys(RedisSettings().key_prefix, DOMAIN)
    pipe = client.pipeline(transaction=False)
    for ext in everyone:
        pipe.hget(keys.agent(ext), "reg_state")
    return sum(state == b"reged" for state in pipe.execute())


def parse_settings(items: Sequence[str]) -> dict[str, Any]:
    """``["events.csta_feed=off", "directory.userinfo=false"]`` as the nested settings they
    name, values read as YAML (quote a number meant as text: ``directory.cacheable='60000'``)
    but for on/off/yes/no, kept as the words they are."""
    settings: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        path = [part for part in key.strip().split(".") if part]
        if not sep or not path:
            raise ValueError(f"--fsapps-setting {item!r}: expected KEY=VALUE")
        node = settings
        for part in path[:-1]:
            node = node.setdefault(part, {})
        text = raw.strip()
        value = yaml.safe_load(text) if text else ""
        node[path[-1]] = text if isinstance(value, bool) and \
            text.lower() not in ("true", "false") else value
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.benchswitch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=DEFAULT_RUNS,
                        help="agents x calls/s, comma separated (default %(default)s)")
    parser.add_argument("--talk", type=float, default=10.0, help="agent talk seconds")
    parser.add_argument("--arrivals", type=float, default=30.0,
                        help="seconds of caller arrivals per run (default %(default)s: the "
                             "default runs on the three ACDs then take under 10 minutes)")
    parser.add_argument("--patience", type=float, default=30.0,
                        help="a caller not connected this long after arriving hangs up")
    parser.add_argument("--acd", default=",".join(ACDS),
                        help="which ACDs, comma separated (default %(default)s)")
    parser.add_argument("--out", default="/tmp/bench-switch.md", help="where the table goes")
    parser.add_argument("--watch-agents", action="store_true",
                        help="every 3 s of an fsapps run: its queue and its agents by state")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy the fsapps switch during each run (threads holding the GIL;"
                             " needs py-spy in the venv), raw samples and a summary in DIR")
    parser.add_argument("--revision", default="HEAD",
                        help="the git revision of fsapps the switch runs (default %(default)s; "
                             "'' for the working tree with its uncommitted edits)")
    parser.add_argument("--loglevel", default=SWITCH_LOGLEVEL,
                        help="the switches' core log level (default %(default)s)")
    parser.add_argument("--redis-priority", choices=("switch", "normal"), default="switch",
                        help="fsapps' Redis scheduled as FreeSWITCH schedules itself (realtime"
                             " FIFO; as mod_callcenter's state inside the switch) or as an "
                             "ordinary process (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the whole series this many times, one after the other "
                             "(the CPU summary gives each ACD's median per run size)")
    parser.add_argument("--fsapps-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="an fsapps.yaml setting of the fsapps switch (dotted key, YAML "
                             "value; repeatable), e.g. events.csta_feed=off")
    args = parser.parse_args(argv)
    try:
        fsapps_settings = parse_settings(args.fsapps_setting)
    except ValueError as exc:
        parser.error(str(exc))
    missing = missing_switch()
    if missing:
        print(f"bench-switch: cannot run: {missing}", file=sys.stderr)
        return 2
    acds = [a.strip() for a in args.acd.split(",") if a.strip()]
    unknown = set(acds) - set(ACDS)
    if unknown:
        parser.error(f"unknown ACD(s) {sorted(unknown)}: choose from {', '.join(ACDS)}")
    callcenter = FS_PREFIX / "mod" / "mod_callcenter.so"
    if "callcenter" in acds and not callcenter.exists():
        print(f"bench-switch: cannot run: no {callcenter} (or leave it out: --acd fsapps,plain)",
              file=sys.stderr)
        return 2
    profile = Path(args.profile) if args.profile else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    runs = [Run(agents, rate, args.talk, args.arrivals, args.patience, profile, args.watch_agents)
            for agents, rate in parse_runs(args.runs)]
    started = time.monotonic()
    # resolved once: others may commit while the bench runs
    revision = subprocess.run(["git", "rev-parse", "--short", args.revision], capture_output=True,
                              text=True, cwd=ROOT, check=True).stdout.strip() \
        if args.revision else ""
    bench = Bench(acds, max(r.agents for r in runs), args.talk, args.loglevel, revision,
                  args.redis_priority, fsapps_settings)
    results: list[Result] = []
    stopped = ""
    try:
        say(f"bench-switch: {', '.join(acds)}; runs {args.runs}; talk {args.talk:g} s, "
            f"{args.arrivals:g} s of arrivals, patience {args.patience:g} s; in {bench.base}")
        bench.start()
        for repeat in range(max(args.repeat, 1)):
            if args.repeat > 1:
                say(f"series {repeat + 1} of {args.repeat}")
            for index, run in enumerate(runs):
                bench.run(run, index, results)
    except RuntimeError as exc:  # (the agents' SIPp died: the runs before it stand)
        stopped = f"stopped early: {exc}"
        say(stopped)
    finally:
        bench.stop()
    commit = revision or subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True, cwd=ROOT).stdout.strip() \
        + " + the working tree's uncommitted edits"
    text = (f"make bench-switch — commit {commit or '?'}, {time.strftime('%Y-%m-%d %H:%M')}, "
            f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
            f"{args.arrivals:g} s of arrivals, talk {args.talk:g} s, ring {RING_MS} ms, "
            f"patience {args.patience:g} s; fsapps' Redis scheduled "
            f"{'as the switch' if args.redis_priority == 'switch' else 'normally'}; "
            + (f"fsapps settings {', '.join(args.fsapps_setting)}; "
               if args.fsapps_setting else "")
            + f"{time.monotonic() - started:.0f} s in all"
            + (f"; {stopped}" if stopped else "") + "\n\n"
            + table(results) + "\n\n" + cpu_summary(results) + "\n")
    Path(args.out).write_text(text)
    print("\n" + text)
    say(f"table written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
