"""Python ahead of the switch's media (fsapps.switch.priority): a handler's thread runs its Python
one step above the switch's scheduling and its media calls at the switch's own, and is given
back as it came; a system that refuses is told once and changes nothing. (In a real switch,
where the step is realtime priority + 1: tests/switch/test_waiting.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fsapps.config import Settings
from fsapps.errors import CallerGone
from fsapps.switch import entry, priority
from fsapps.switch.entry import run_app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry points read python_priority from the shared context, which another test of
    the run may have configured otherwise: here it is the default (ahead)."""
    monkeypatch.setattr(entry, "get_context", lambda: SimpleNamespace(settings=Settings()))


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


def in_a_thread(work: Callable[[], Any]) -> Any:
    """``work`` on a thread of its own (the scheduling it changes is that thread's)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join()
    return result[0]


class FakeSession:
    """Records the thread's nice value whenever the switch would do media work."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def execute(self, app: str, data: str = "") -> None:
        self.seen.append((app, own_nice()))

    def hangup(self, cause: str = "") -> None:
        self.seen.append(("hangup", own_nice()))

    def ready(self) -> bool:
        return True

    def getVariable(self, name: str) -> str:  # noqa: N802 (the switch's API)
        return f"{name}@{own_nice()}"


def test_a_handler_runs_python_ahead_and_media_at_the_switchs_priority() -> None:
    switch = priority.Scheduling.of_switch()
    ahead = switch.ahead()
    assert ahead is not None and ahead.nice == max(-20, switch.nice - priority.NICE_STEP)
    fake = FakeSession()
    python_seen: list[int] = []

    def service(session: Any, args: str) -> None:
        python_seen.append(own_nice())
        session.execute("playback", "music")
        python_seen.append(own_nice())  # ahead again after the media
        assert session.getVariable("x") == f"x@{ahead.nice}"  # not media: as it was
        session.hangup("NORMAL_CLEARING")
        python_seen.append(own_nice())

    after = in_a_thread(lambda: (run_app("test", fake, "", service), own_nice())[1])
    assert python_seen == [ahead.nice] * 3
    assert fake.seen == [("playback", switch.nice), ("hangup", switch.nice)]
    assert after == switch.nice  # the switch gets its thread back as it lent it


def test_the_thread_is_given_back_when_the_handler_fails_or_the_caller_leaves() -> None:
    switch = priority.Scheduling.of_switch()

    def gone(session: Any, args: str) -> None:
        raise CallerGone()

    def broken(session: Any, args: str) -> None:
        raise RuntimeError("boom")

    for service in (gone, broken):
        fake = FakeSession()
        assert in_a_thread(lambda: (run_app("test", fake, "", service), own_nice())[1]) == \
            switch.nice
    assert fake.seen == [("hangup", switch.nice)]  # (the failure's clean hangup)


def test_a_thread_already_ahead_is_left_as_it_is() -> None:
    """A thread at or above the step (the runtime's, started by one already raised; a switch
    thread of a higher priority) is not lowered, and nothing is given back."""
    ahead = priority.Scheduling.of_switch().ahead()
    assert ahead is not None

    def already_above() -> tuple[priority.Scheduling | None, int]:
        os.setpriority(os.PRIO_PROCESS, 0, ahead.nice - 1)
        before = priority.run_python_first(priority.AHEAD)
        return before, own_nice()

    assert in_a_thread(already_above) == (None, ahead.nice - 1)


def test_same_changes_nothing() -> None:
    assert in_a_thread(lambda: priority.run_python_first(priority.SAME)) is None
    assert in_a_thread(lambda: (priority.run_python_first(priority.SAME), own_nice())[1]) == \
        priority.Scheduling.of_switch().nice


def test_a_system_that_refuses_is_told_once_and_nothing_changes() -> None:
    """Without CAP_SYS_NICE (setpriv drops it from root): one warning, the thread as it was,
    and the handler runs all the same."""
    script = (
        "import os\n"
        "from fsapps.switch import priority\n"
        "from fsapps.switch.entry import run_app\n"
        "ran = []\n"
        "for _ in range(3):\n"
        "    run_app('test', object(), '', lambda session, args: ran.append(os.getpriority("
        "os.PRIO_PROCESS, 0)))\n"
        "print('ran', ran)\n")
    command = [sys.executable, "-c", script]
    if os.geteuid() == 0:
        command = ["setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice", *command]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60,
                          check=True)
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    assert f"ran [{nice}, {nice}, {nice}]" in done.stdout
    warnings = [line for line in (done.stdout + done.stderr).splitlines()
                if "python_priority ahead: the system refused it" in line]
    assert len(warnings) == 1, done.stdout + done.stderr
    assert "CAP_SYS_NICE" in warnings[0]
