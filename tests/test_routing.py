"""Call modes 0-5 (seed 001): candidate order, memory first, tried agents last; queue order."""

import random

import pytest

from fsapps.domain.routing import CallMode, candidate_order, parse_mode, queue_score
from fsapps.errors import FsappsError

MEMBERS = ["1001", "1002", "1003", "1004"]


def test_sequential_always_starts_from_the_first_member() -> None:
    assert candidate_order(CallMode.SEQUENTIAL, MEMBERS, current="1002") == MEMBERS


def test_random_is_a_permutation_and_varies() -> None:
    rng = random.Random(7)
    orders = {tuple(candidate_order(CallMode.RANDOM, MEMBERS, rng=rng)) for _ in range(50)}
    assert all(sorted(o) == sorted(MEMBERS) for o in orders)
    assert len(orders) > 5


def test_cyclic_starts_after_current_and_wraps() -> None:
    assert candidate_order(CallMode.CYCLIC, MEMBERS, current="1002") == \
        ["1003", "1004", "1001", "1002"]
    assert candidate_order(CallMode.CYCLIC, MEMBERS, current="1004") == MEMBERS
    assert candidate_order(CallMode.CYCLIC, MEMBERS, current=None) == MEMBERS
    assert candidate_order(CallMode.CYCLIC, MEMBERS, current="9999") == MEMBERS


@pytest.mark.parametrize("mode", [CallMode.MEMORY_SEQUENTIAL, CallMode.MEMORY_RANDOM,
                                  CallMode.MEMORY_CYCLIC])
def test_memory_modes_put_the_remembered_agent_first(mode: CallMode) -> None:
    order = candidate_order(mode, MEMBERS, current="1001", remembered="1003",
                            rng=random.Random(1))
    assert order[0] == "1003" and sorted(order) == sorted(MEMBERS)


def test_memory_then_base_mode() -> None:
    assert candidate_order(CallMode.MEMORY_SEQUENTIAL, MEMBERS, remembered="1003") == \
        ["1003", "1001", "1002", "1004"]
    assert candidate_order(CallMode.MEMORY_CYCLIC, MEMBERS, current="1001",
                           remembered="1004") == ["1004", "1002", "1003", "1001"]


def test_remembered_agent_no_longer_member_is_ignored() -> None:
    assert candidate_order(CallMode.MEMORY_SEQUENTIAL, MEMBERS, remembered="2000") == MEMBERS


def test_non_memory_modes_ignore_memory() -> None:
    assert candidate_order(CallMode.SEQUENTIAL, MEMBERS, remembered="1003") == MEMBERS


def test_agents_who_failed_this_call_go_last() -> None:
    assert candidate_order(CallMode.SEQUENTIAL, MEMBERS, tried=["1001", "1002"]) == \
        ["1003", "1004", "1001", "1002"]
    assert candidate_order(CallMode.MEMORY_SEQUENTIAL, MEMBERS, remembered="1001",
                           tried=["1001"])[0] == "1002"


@pytest.mark.parametrize("value,mode", [("0", CallMode.SEQUENTIAL), (5, CallMode.MEMORY_CYCLIC),
                                        ("4", CallMode.MEMORY_RANDOM)])
def test_parse_mode(value: object, mode: CallMode) -> None:
    assert parse_mode(value) is mode


@pytest.mark.parametrize("bad", ["6", "-1", "x", ""])
def test_bad_mode_is_named(bad: str) -> None:
    with pytest.raises(FsappsError, match=repr(bad)):
        parse_mode(bad)


def test_queue_order_vip_first_then_first_come() -> None:
    callers = [("normal", 1000), ("vip", 3000), ("normal", 500), ("vip", 2000)]
    ordered = sorted(callers, key=lambda c: queue_score(*c))
    assert ordered == [("vip", 2000), ("vip", 3000), ("normal", 500), ("normal", 1000)]
    assert queue_score("vip", 1_900_000_000_000) < queue_score("normal", 0)
