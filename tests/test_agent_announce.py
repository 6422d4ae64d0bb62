"""An agent's status messages (agent_<ext>) arrive in the order of its moves, whichever thread
makes them. The call's handler ends an offer or a call (agent_release / agent_wrapup: ready)
while the runtime's leg-ends thread, told the agent's last leg ended, offers it the next
waiting caller (ring). Told after its script returned, the handler's "ready" reached
subscribers after that "ring" when the handler was descheduled in between: the agent looked
ready while it rang (seen once in a full CI run of test_acd). The scripts now tell their moves
themselves (include/agent_announce.lua). Each test below makes the interleaving happen: the
agent's leg end reaches the runtime 0.1 s late, and the handler sleeps 0.3 s right after its
script."""

from __future__ import annotations

import time
from typing import Any

import pytest

from fakefs.scenario import wait_until
from fsapps.domain.agents import Agents
from tests.test_acd import Acd, a, center_module  # noqa: F401  (the ACD tests' fixtures)


@pytest.fixture
def slow_handler(a: Acd, monkeypatch: pytest.MonkeyPatch) -> Acd:  # noqa: F811
    """The handler descheduled right after the script that made the agent ready, and the
    agents' leg ends reaching the runtime late."""
    for name in ("publish", "told"):
        real = getattr(Agents, name)

        def slow(self: Agents, extension: str, status: str, *args: Any,
                 _real: Any = real, **kwargs: Any) -> Any:
            if status == "ready":
                time.sleep(0.3)
            return _real(self, extension, status, *args, **kwargs)

        monkeypatch.setattr(Agents, name, slow)
    a.switch.bus.delay_delivery(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE"
                                and bool(e.headers.get("variable_fsapps_acd_agent")), 0.1)
    return a


def statuses_are(a: Acd, ext: str, expected: list[str]) -> None:  # noqa: F811
    try:
        wait_until(lambda: a.bus.statuses(ext)[:len(expected)] == expected, 5,
                   f"agent_{ext} statuses {expected}")
    except TimeoutError:
        raise AssertionError(f"agent_{ext} published {a.bus.statuses(ext)}") from None


def test_a_cancelled_offers_ready_comes_before_the_next_callers_ring(slow_handler: Acd
                                                                     ) -> None:
    a = slow_handler  # noqa: F811 (the fixture's call center)
    a.group("214", mode=0, group_callout_timeout=5)
    a.agents("214", "2141", answer_after_ms=1500)
    first = a.call("214", "13900001401", abandon_after_ms=600)
    a.wait_state("2141", "ring")
    second = a.call("214", "13900001402", hangup_after_bridge_ms=50)
    wait_until(lambda: second.uuid in a.queued("214"), 3, "second caller queued")
    a.gone(first, 3)
    assert a.answered_by(second) == "2141"
    statuses_are(a, "2141", ["ring", "ready", "ring", "talking", "ready"])
    a.gone(second)


def test_an_ended_calls_ready_comes_before_the_next_callers_ring(slow_handler: Acd) -> None:
    a = slow_handler  # noqa: F811 (the fixture's call center)
    a.group("215", mode=0, group_callout_timeout=5, wrapup_seconds=0)
    a.agents("215", "2151", answer_after_ms=100)
    first = a.call("215", "13900001501", hangup_after_bridge_ms=400)
    a.wait_state("2151", "talking")
    second = a.call("215", "13900001502", hangup_after_bridge_ms=50)
    wait_until(lambda: second.uuid in a.queued("215"), 3, "second caller queued")
    a.gone(first, 5)
    assert a.answered_by(second) == "2151"
    statuses_are(a, "2151", ["ring", "talking", "ready", "ring", "talking", "ready"])
    a.gone(second)
