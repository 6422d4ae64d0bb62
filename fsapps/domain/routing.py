"""Which agents a queue call tries, in which order — seed 001's call modes, pure functions.

0 sequential: always from the first member, in member order; 1 random; 2 cyclic: start after
``current_ext_number`` and wrap around; 3/4/5: the agent who last served this caller first
(memory), then as 0/1/2. The order is decided here; reserving the first *available* agent of
it is one atomic Lua script (``fsapps/store/lua/reserve_agent.lua``), so a lost race simply moves to
the next candidate.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from enum import IntEnum

from fsapps.errors import BadInput


class CallMode(IntEnum):
    SEQUENTIAL = 0
    RANDOM = 1
    CYCLIC = 2
    MEMORY_SEQUENTIAL = 3
    MEMORY_RANDOM = 4
    MEMORY_CYCLIC = 5

    @property
    def uses_memory(self) -> bool:
        return self >= 3

    @property
    def base(self) -> CallMode:
        return CallMode(self % 3)


def parse_mode(value: object) -> CallMode:
    try:
        return CallMode(int(str(value)))
    except ValueError:
        raise BadInput(f"call mode {value!r} is not one of 0-5 (0 sequential, 1 random, "
                          "2 cyclic, 3/4/5 memory first + 0/1/2)") from None


def candidate_order(mode: CallMode, members: Sequence[str], *, current: str | None = None,
                    remembered: str | None = None, tried: Iterable[str] = (),
                    rng: random.Random | None = None) -> list[str]:
    """Members in the order this call should try them.

    ``members`` is the group's member order; ``current`` the group's current_ext_number (for
    cyclic); ``remembered`` the agent who last served this caller (memory modes); agents in
    ``tried`` (they already failed this call) go last, so they are not offered it again
    before the others.
    """
    base = mode.base
    if base is CallMode.SEQUENTIAL:
        order = list(members)
    elif base is CallMode.RANDOM:
        order = list(members)
        (rng or random).shuffle(order)
    else:
        order = list(members)
        if current in members:
            start = members.index(current) + 1
            order = order[start:] + order[:start]
    if mode.uses_memory and remembered in order:
        order.remove(remembered)
        order.insert(0, remembered)
    done = set(tried)
    if done:
        order = [m for m in order if m not in done] + [m for m in order if m in done]
    return order


# Strategies beside the call modes (ext_group.agent_strategy): which free agent of the mode's
# candidates gets the call. The order is decided inside agent_reserve.lua from fields it reads
# anyway (no round trip more): "" keeps the mode's order; the others sort the free candidates
# (ties keep the mode's order) - ring_all reserves and rings all of them at once.
STRATEGY_MODE = ""
STRATEGIES = {
    STRATEGY_MODE: "the call mode's order",
    "longest_idle": "the free agent whose last call ended (or who came back from a pause) "
                    "longest ago",
    "fewest_calls": "the free agent with the fewest calls today",
    "least_talk_time": "the free agent with the least talk time today",
    "ring_all": "every free member at once; the first to answer wins",
}
RING_ALL = "ring_all"
MAX_LEVEL = 9


def parse_strategy(value: object) -> str:
    text = "" if value is None else str(value).strip()
    text = "" if text in ("-", "mode") else text
    if text not in STRATEGIES:
        raise BadInput(f"strategy {value!r} is not one of mode, "
                       f"{', '.join(s for s in STRATEGIES if s)}")
    return text


def parse_level(value: object) -> int:
    try:
        level = int(str(value))
    except ValueError:
        level = 0
    if not 1 <= level <= MAX_LEVEL:
        raise BadInput(f"level {value!r} is not 1-{MAX_LEVEL}")
    return level


def stats_day(at_s: float | None = None) -> str:
    """The day an agent's daily counters (calls, talk time) belong to: the node's local date."""
    return time.strftime("%Y%m%d", time.localtime(at_s))


LEVEL_VIP = "vip"
LEVEL_NORMAL = "normal"
_LEVEL_RANK = {LEVEL_VIP: 0, LEVEL_NORMAL: 1}


def queue_score(level: str, arrived_ms: int) -> float:
    """Sorted-set score of a waiting caller: every VIP before every normal caller, first come
    first served within a level. (Scores stay exact: ms timestamps < 2**53 / 2.)"""
    return _LEVEL_RANK.get(level, 1) * 1e13 + arrived_ms
