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
from fakefs.switch import RegisterResult, Switch

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DIALPLAN_DIR = PROJECT_ROOT / "dialplan"
PYTHON_CONF = PROJECT_ROOT / "conf" / "autoload_configs" / "python.conf.xml"


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
                   **headers: str) -> Event:
        """The first event ``name`` (or CUSTOM subclass) on ``switch`` whose headers match
        ``headers`` (underscores in keys stand for dashes)."""
        wanted = {k.replace("_", "-"): v for k, v in headers.items()}

        def match(event: Event) -> bool:
            if event.name != name and event.subclass != name:
                return False
            return all(event.headers.get(k) == v for k, v in wanted.items())
        return switch.bus.wait_for(match, timeout)

    def idle(self, timeout: float = 5.0) -> None:
        """Wait until no switch has a live channel."""
        wait_until(lambda: all(not s.channels for s in self.switches), timeout,
                   "all channels gone")

    def close(self) -> None:
        for switch in self.switches:
            switch.shutdown(grace=2.0)
        crashed = [s.name for s in self.switches if s.crashed]
        if crashed:
            raise AssertionError(f"fake switch crashed: {crashed}")


@contextmanager
def call_center(**kwargs: Any) -> Iterator[CallCenter]:
    center = CallCenter(**kwargs)
    try:
        yield center
    finally:
        center.close()
