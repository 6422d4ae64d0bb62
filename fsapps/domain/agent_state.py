"""The agent call-state machine of seed 001 — a pure transition table, no I/O.

States (``call_state``): ready, ring, talking, ivr, typing, no_answer, busy, rest, no_ready.
A queue call offers a ``ready`` agent (→ ring); answering → talking; hanging up → typing
(wrap-up) → ready; a ring timeout → no_answer → ready again, or busy once the agent missed
``max_no_answer`` offers in a row (a phone left on a desk stops eating calls).
"""

from __future__ import annotations

from enum import StrEnum

from fsapps.errors import BadInput, Conflict


class CallState(StrEnum):
    READY = "ready"
    RING = "ring"
    TALKING = "talking"
    IVR = "ivr"
    TYPING = "typing"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    REST = "rest"
    NO_READY = "no_ready"


class IllegalTransition(Conflict):
    def __init__(self, current: str, wanted: str) -> None:
        self.current, self.wanted = current, wanted
        super().__init__(f"agent call state cannot go from {current!r} to {wanted!r}")


S = CallState
# Manual states (busy, rest, no_ready) can be chosen from anywhere an agent is not on a call;
# ring/talking move only through a call.
_PAUSES = {S.BUSY, S.REST, S.NO_READY}
TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    S.READY: frozenset({S.RING, S.TALKING, S.IVR, *_PAUSES}),
    S.RING: frozenset({S.TALKING, S.NO_ANSWER, S.READY, S.BUSY, S.TYPING}),
    S.TALKING: frozenset({S.TYPING, S.READY, S.IVR, S.TALKING}),
    S.IVR: frozenset({S.TALKING, S.TYPING, S.READY, *_PAUSES}),
    S.TYPING: frozenset({S.READY, S.RING, S.TALKING, *_PAUSES}),
    S.NO_ANSWER: frozenset({S.READY, *_PAUSES}),
    S.BUSY: frozenset({S.READY, S.RING, S.TALKING, S.REST, S.NO_READY, S.TYPING}),
    S.REST: frozenset({S.READY, S.BUSY, S.NO_READY, S.TALKING, S.RING}),
    S.NO_READY: frozenset({S.READY, S.BUSY, S.REST, S.TALKING, S.RING}),
}
# (ring/talking from a pause or from typing: a direct call — nway_bridge, an outbound call —
# reaches the agent whatever its queue availability; only queue offers require ready.)
# The Lua scripts that change call_state apply the same table, written out for Lua in
# fsapps/store/lua/include/agent_rules.lua; tests/test_agent_writers.py checks both are equal.


def parse(value: str) -> CallState:
    try:
        return CallState(value)
    except ValueError:
        raise BadInput(f"unknown agent call state {value!r}; one of "
                          f"{', '.join(s.value for s in CallState)}") from None


def check(current: str, wanted: str) -> CallState:
    """The new state if ``current`` → ``wanted`` is allowed (staying put always is);
    raises IllegalTransition naming both states otherwise."""
    cur, new = parse(current), parse(wanted)
    if cur == new or new in TRANSITIONS[cur]:
        return new
    raise IllegalTransition(cur.value, new.value)


def after_no_answer(consecutive_misses: int, max_no_answer: int) -> CallState:
    """Where an agent goes once an offer rang out: back to ready, or busy after
    ``max_no_answer`` misses in a row (0 = never). agent_release.lua decides the same in the
    missed offer's own step (``agent_after_no_answer`` in agent_rules.lua; a test checks)."""
    if max_no_answer and consecutive_misses >= max_no_answer:
        return S.BUSY
    return S.READY
