"""ring_all and longest_idle across two fake nodes sharing one Redis (and a Redis Cluster):
ring_all offers one call to several agents at once by design, so what must hold is the other
half of the ACD's promise - no agent is ever offered two calls at once (the double-offer
checker on both nodes' event buses, and the offers-hash sampler) - and that afterwards no
agent is left reserved, ringing or talking, whatever the phones and callers did."""

from __future__ import annotations

import random
import time

import pytest

from fakefs import Behaviour, Channel
from fakefs.scenario import wait_until
from tests import test_acd_multinode as multinode
from tests.acd_support import CallCenter
from tools.doubleoffer import OfferChecker, OffersSampler

pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads")

AGENTS = [str(7001 + i) for i in range(8)]
CALLS = 60
any_cc = multinode.any_cc


def test_ring_all_on_two_nodes_never_offers_an_agent_two_calls(any_cc: CallCenter) -> None:
    cc = any_cc
    rng = random.Random(18)
    checker = OfferChecker()
    nodes = list(multinode.two_nodes(cc, checker))
    cc.group("710", group_callout_timeout=2, wrapup_seconds=0, max_no_answer=1000,
             agent_strategy="ring_all")

    def phone(ext: str) -> Behaviour:
        if rng.random() < 0.15:
            return Behaviour(answer_after_ms=None)      # rings until cancelled
        return Behaviour(answer_after_ms=rng.randint(30, 400),
                         hangup_after_ms=rng.randint(50, 300))

    for i, ext in enumerate(AGENTS):  # registered on node1 and node2 in turn: relayed legs
        cc.agent(ext, ["710"], switch=nodes[i % 2], behaviour=phone(ext))
    checker.chooser = phone
    sampler = OffersSampler(cc)
    callers: list[Channel] = []
    try:
        for n in range(CALLS):
            behaviour: dict[str, int] = {"hangup_after_bridge_ms": rng.randint(50, 300)}
            if rng.random() < 0.15:
                behaviour["abandon_after_ms"] = rng.randint(100, 1500)
            callers.append(cc.call(nodes[n % 2], f"1397100{n:04d}", "7710", **behaviour))
            time.sleep(0.05)
        wait_until(lambda: all(ch.done.is_set() for ch in callers), 60, "every call ended")
        wait_until(lambda: checker.live_legs() == 0, 20, "every agent leg ended")
        multinode.wait_settled(cc, AGENTS)
    finally:
        sampler.close()
    assert not checker.overlaps, checker.overlaps[:5]
    assert not sampler.doubles, sampler.doubles[:5]
    assert sum(1 for ch in callers if multinode.bridged(ch)) > CALLS // 2
    # several agents were rung for one call (the point of ring_all), on both nodes
    assert sum(checker.offers.values()) > CALLS
    errors = [f"{s.name}: {m.strip()}" for s in nodes for level, m in list(s.log)
              if level in ("ERR", "CRIT")]
    assert not errors, errors[:10]
    assert not [e for s in nodes for e in s.python_errors]
    assert not multinode.settled_problems(cc, AGENTS)
    # and every loser's cancelled leg was told ended: each agent free for the next call
    wait_until(lambda: not [e for e in AGENTS if cc.get(e).leg_pending], 10, "leg ends told")
