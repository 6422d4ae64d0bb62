"""The agent call-state transition table (seed 001), pure."""

import pytest

from fsapps.domain.agent_state import (
    TRANSITIONS,
    CallState,
    IllegalTransition,
    after_no_answer,
    check,
)
from fsapps.errors import FsappsError


def test_queue_call_lifecycle() -> None:
    state = CallState.READY
    for wanted in ("ring", "talking", "typing", "ready"):
        state = check(state, wanted)
    assert state is CallState.READY


def test_ring_timeout_goes_to_no_answer_then_ready() -> None:
    assert check("ring", "no_answer") is CallState.NO_ANSWER
    assert check("no_answer", "ready") is CallState.READY


@pytest.mark.parametrize("current,wanted", [("typing", "no_answer"), ("no_answer", "talking"),
                                            ("talking", "ring"), ("talking", "busy"),
                                            ("ready", "typing"), ("no_answer", "ring")])
def test_illegal_transition_names_both_states(current: str, wanted: str) -> None:
    with pytest.raises(IllegalTransition) as err:
        check(current, wanted)
    assert repr(current) in str(err.value) and repr(wanted) in str(err.value)


def test_staying_put_is_always_allowed() -> None:
    for state in CallState:
        assert check(state, state) is state


def test_unknown_state_is_named() -> None:
    with pytest.raises(FsappsError, match="'sleeping'"):
        check("ready", "sleeping")


def test_every_state_can_get_back_to_ready() -> None:
    for state, targets in TRANSITIONS.items():
        assert CallState.READY in targets or state is CallState.READY


@pytest.mark.parametrize("misses,limit,expected", [(1, 3, "ready"), (2, 3, "ready"),
                                                   (3, 3, "busy"), (9, 0, "ready")])
def test_consecutive_no_answers_make_the_agent_busy(misses: int, limit: int,
                                                    expected: str) -> None:
    assert after_no_answer(misses, limit) == expected
