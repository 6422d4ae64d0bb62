"""``make demo``'s scripted first minute (tools/demo.py, scaled down with --time-scale): every
feature the README's tour promises happens and is told by a line as it happens - a queue that
builds and drains, a blacklisted caller refused, an impatient caller abandoning, a VIP served
first, the supervisor's phone listening through the CTI server's REST calls - and the pages'
URLs name the demo's domain."""

from __future__ import annotations

import re
import socket
from typing import Any

from tools import demo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_scripted_opening_shows_every_feature(capsys: Any) -> None:
    assert demo.main(["--duration", "14", "--rate", "0", "--time-scale", "0.4",
                      "--cti-port", str(free_port())]) == 0
    out = capsys.readouterr().out
    print(out)  # whole in the report when an assertion below fails (its message is cut)
    told = {name: re.search(pattern, out, re.M) for name, pattern in {
        "wallboard URL": r"/wallboard\?domain=demo\.fsapps&user=supervisor&device=1900",
        "agent console URL": r"/\?domain=demo\.fsapps&job=agent&ext=1001 .*domain demo\.fsapps",
        "burst": r"^t=.*a burst of 30 callers for 20 agents",
        "queue builds": r"^t=.*queue builds: \d+ waiting",
        "blacklisted": r"^t=.*4000000666 refused: blacklisted",
        "abandoned": r"^t=.*the impatient caller left the queue: abandoned",
        "VIP": r"^t=.*VIP 13900000001 answered before the callers queued ahead of it",
        "listen": r"^t=.*supervisor's phone 1900 is listening to call",
        "queue drained": r"^t=.*queue drained: 0 waiting",
    }.items()}
    assert all(told.values()), ([name for name, m in told.items() if not m], out)
    # each happened within the demo's (scaled) first minute, in an order that makes sense
    times = {name: float(re.match(r"t=\s*([\d.]+)s", out[m.start():m.end()]).group(1))
             for name, m in told.items() if m.group(0).startswith("t=")}
    assert max(times.values()) < 60 * 0.4, times
    assert times["queue builds"] < times["queue drained"]
    assert re.search(r"^  blacklisted +1$", out, re.M) and re.search(r"^  abandoned +1$",
                                                                       out, re.M), out


def test_listen_picks_the_call_whose_agent_started_talking_last() -> None:
    board = {"agents": [{"device": "1001@d", "state": "talking", "sinceMs": 9000},
                        {"device": "1002@d", "state": "talking", "sinceMs": 300},
                        {"device": "1003@d", "state": "ring", "sinceMs": 10}],
             "calls": [{"callId": "old", "status": "talking",
                        "parties": [{"device": "138"}, {"device": "1001@d"}]},
                       {"callId": "ringing", "status": "ringing",
                        "parties": [{"device": "139"}, {"device": "1003@d"}]},
                       {"callId": "new", "status": "talking",
                        "parties": [{"device": "137"}, {"device": "1002@d"}]}]}
    chosen = demo.freshest_talking_call(board)
    assert chosen is not None and chosen["callId"] == "new"
    assert demo.freshest_talking_call({"agents": [], "calls": board["calls"][1:2]}) is None
