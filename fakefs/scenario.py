"""A small scenario API for tests, the demo and the benchmarks: start switches that run the
project's dialplan/ and python.conf.xml, register agents with behaviours, place calls, and
wait for conditions with a timeout (never bare sleeps)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fakefs.channel import Behaviour, Channel
from fakefs.events import Event
from fakefs.registrar import RegisterResult
from fakefs.switch import Switch

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DIALPLAN_DIR = PROJECT_ROOT / "dialplan"
PYTHON_CONF = PROJECT_ROOT / "conf" / "autoload_configs" / "python.conf.xml"
# What conf/freeswitch puts in the public context (the external profile's: trunks and the
# other nodes' relayed agent calls), as the README's install steps do.
PUBLIC_DIALPLAN = [DIALPLAN_DIR / "10_fsapps_acd.xml"]


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0,
               message: str = "condition", interval: float = 0.005) -> Any:
    """Poll ``predicate`` until it returns something truthy; TimeoutError naming
    ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} not met within {timeout}s")
        time.sleep(interval)


class CallCenter:
    """Several fake switches (nodes) started together and torn down together."""

    def __init__(self, *, dialplan_dir: Path | str | None = DIALPLAN_DIR,
                 python_conf: Path | str | None = None, time_scale: float = 1.0,
                 domain: str = "127.0.0.1") -> None:
        self.dialplan_dir = dialplan_dir
        self.python_conf = python_conf
        self.time_scale = time_scale
        self.domain = domain
        self.switches: list[Switch] = []

    def start_switch(self, name: str | None = None, **kwargs: Any) -> Switch:
        if self.dialplan_dir == DIALPLAN_DIR:
            kwargs.setdefault("public_dialplan", PUBLIC_DIALPLAN)
        switch = Switch(name or f"fs{len(self.switches) + 1}", dialplan_dir=self.dialplan_dir,
                        python_conf=self.python_conf, time_scale=self.time_scale,
                        domain=self.domain, **kwargs)
        self.switches.append(switch)
        return switch.start()

    def add_agent(self, switch: Switch, extension: str, *, password: str = "1234",
                  behaviour: Behaviour | None = None, register: bool = True) -> RegisterResult:
        """Declare the extension in the switch's static directory (unless a directory binding
        serves it) and register a phone for it with the given behaviour."""
        if switch.directory_lookup(extension, self.domain) is None:
            switch.add_user(extension, self.domain, password=password)
        if not register:
            return RegisterResult(0, "not registered")
        return switch.register(extension, self.domain, password=password, behaviour=behaviour)

    def call(self, switch: Switch, caller: str, destination: str, **kwargs: Any) -> Channel:
        return switch.place_call(caller, destination, domain=self.domain, **kwargs)

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0,
                   message: str = "condition") -> Any:
        return wait_until(predicate, timeout, message)

    def wait_event(self, switch: Switch, name: str, timeout: float = 5.0,
                   where: dict[str, str] | None = None, **headers: str) -> Event:
        """The first event ``name`` (or CUSTOM subclass) on ``switch`` whose headers match
        ``headers`` (underscores in keys stand for dashes) and ``where`` (names verbatim, e.g.
        ``variable_hangup_cause``); TimeoutError naming the switch, event and headers."""
        wanted = {k.replace("_", "-"): v for k, v in headers.items()}
        wanted.update(where or {})

        def match(event: Event) -> bool:
            if event.name != name and event.subclass != name:
                return False
            return all(event.headers.get(k) == v for k, v in wanted.items())
        try:
            return switch.bus.wait_for(match, timeout)
        except TimeoutError:
            raise TimeoutError(f"{switch.name}: no {name} event with {wanted} within "
                               f"{timeout}s") from None

    def idle(self, timeout: float = 5.0) -> None:
        """Wait until no switch has a live channel."""
        try:
            wait_until(lambda: all(not s.channels for s in self.switches), timeout,
                       "all channels gone")
        except TimeoutError:
            left = [f"{s.name}:{c.name}" for s in self.switches for c in list(s.channels.values())]
            raise TimeoutError(f"channels still up after {timeout}s: {left}") from None

    def close(self) -> None:
        """Shut every switch down (all of them, even if one fails), then raise if any crashed
        (see Switch.crash) or lost a fakefs thread (a session thread or timer that died is a
        fakefs bug that would otherwise pass unnoticed)."""
        problems: list[str] = []
        for switch in self.switches:
            try:
                switch.shutdown(grace=2.0)
            except Exception as exc:  # report it, keep shutting the others down
                problems.append(f"{switch.name}: shutdown failed: {exc!r}")
        for switch in self.switches:
            if switch.crashed:
                problems.append(f"{switch.name}: crashed: {switch.crashed}")
            problems += [f"{switch.name}: {err}" for err in switch.python_errors
                         if err.startswith("fakefs session")]
            problems += [f"{switch.name}: timer error {err!r}" for err in switch.scheduler.errors]
        if problems:
            raise AssertionError("fake switch crashed: " + "; ".join(problems))

@contextmanager
def call_center(**kwargs: Any) -> Iterator[CallCenter]:
    center = CallCenter(**kwargs)
    try:
        yield center
    finally:
        center.close()
