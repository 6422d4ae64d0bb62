"""fsapps.fslog: the FreeSWITCH console inside a switch, JSON lines outside it."""

import io
import json

from fakefs import Switch
from fsapps.fslog import log, setup_logging


def test_outside_a_switch_logs_one_json_object_per_line() -> None:
    out = io.StringIO()
    setup_logging("DEBUG", out)
    log("ERR", "agent 1001: lease ran out")
    log("DEBUG", "détail 中文")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["level"], x["message"]) for x in lines] == [
        ("ERROR", "agent 1001: lease ran out"), ("DEBUG", "détail 中文")]
    assert all(x["logger"] == "fsapps" and "T" in x["time"] for x in lines)


def test_inside_a_switch_logs_go_to_its_console() -> None:
    switch = Switch("fs-log", time_scale=0.05)
    try:
        with switch.bound():
            log("WARNING", "no agent in group 110")
        assert ("WARNING", "[fsapps] no agent in group 110") in switch.log
    finally:
        switch.shutdown(grace=1.0)
