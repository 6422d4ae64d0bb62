"""Seed 001's curl lines, verbatim (the document's line wraps joined, its ``bash`` code-block
labels dropped), run with the real curl against a CTI server on a fake switch. Only the
placeholders change: ``ip:8085`` / ``192.168.1.115:8085`` become the test server and the word
``token`` / ``Token`` after ``Nway`` the token the login line returned."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from cti_support import CtiStack, cti_stack

from fakefs import Behaviour
from fakefs.scenario import wait_until
from fsapps.domain.agents import Agents
from fsapps.services.calls import NoCall, live_call

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

LOGIN = """curl -d '{"username": "admin", "password": "admin"}' -H "Content-Type:application/json" http://ip:8085/api/login"""
SEED = {
    "agent_up": """curl -H "Content-Type: application/json" -d '{"Extension":"1002","Groups":"12345,110"}'  -H "Authorization:Nway token " http://ip:8085/api/agent_up""",  # noqa: E501
    "agent_down": """curl -H "Content-Type: application/json" -d '{"Extension":"1002"}'  -H "Authorization:Nway token " http://ip:8085/api/agent_down""",  # noqa: E501
    "agent_ready": """curl -H "Content-Type: application/json" -d '{"Extension":"1002"}'  -H "Authorization:Nway token " http://ip:8085/api/agent_ready""",  # noqa: E501
    "agent_busy": """curl -H "Content-Type: application/json" -d '{"Extension":"1002"}'  -H "Authorization:Nway token " http://ip:8085/api/agent_busy""",  # noqa: E501
    "extension_callstate": """curl -H "Content-Type: application/json" -d '{"Extension":"1002","Value":"ready" }'  -H "Authorization:Nway token " http://ip:8085/api/extension_callstate""",  # noqa: E501
    "queues": """curl -H "Authorization:Nway token " http://ip:8085/api/queues""",
    "get_extensions": """curl  -H "Authorization:Nway token " http://ip:8085/api/get_extensions""",
    "transfer": """curl -H "Content-Type: application/json" -d '{"EvdedPhone":"1002","EvdPhone":"1003","EvdGateway":""}' -H "Authorization:Nway token" http://ip:8085/api/transfer""",  # noqa: E501
    "answer": """curl -H "Authorization:Nway token" http://ip:8085/api/answer/1002""",
    "hangup": """curl -H "Authorization:Nway token" http://ip:8085/api/hangup/1002""",
    "eavesdrop": """curl -H "Content-Type: application/json" -d '{"EvdedPhone":"1002","EvdPhone":"1003","EvdGateway":""}' -H "Authorization:Nway token " http://ip:8085/api/eavesdrop""",  # noqa: E501
    "threeway": """curl -H "Content-Type: application/json" -d '{"EvdedPhone":"1002","EvdPhone":"1003","EvdGateway":""}' -H "Authorization:Nway token " http://192.168.1.115:8085/api/threeway""",  # noqa: E501
    "hold": """curl -H "Authorization:Nway token" http://ip:8085/api/hold/1002""",
    "unhold": """curl -H "Authorization:Nway token" http://ip:8085/api/unhold/1002""",
    "phone_hold": """curl -H "Authorization:Nway token" http://ip:8085/api/phone_hold/1002""",
    "phone_unhold": """curl -H "Authorization:Nway token" http://ip:8085/api/phone_unhold/1002""",
    "extension_info": """curl -H "Authorization:Nway Token" http://192.168.1.115:8085/api/extension_info/1002""",
}
# The switch's own extensions (FreeSWITCH's default dialplan has the same Local_Extension).
LOCAL_EXTENSIONS = """<include><context name="default">
  <extension name="local">
    <condition field="destination_number" expression="^(10\\d\\d)$">
      <action application="bridge" data="user/$1@${domain_name}"/>
    </condition>
  </extension>
</context></include>"""


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any, no_leaked_switch_threads: None) -> Iterator[CtiStack]:
    with cti_stack(redis_server.url, database.dsn) as s:
        s.center.group("12345")
        s.switch.dialplan.load_text(LOCAL_EXTENSIONS)
        s.switch.add_user("1003", s.center.domain, password="1234")
        assert s.switch.register("1003", s.center.domain, password="1234",
                                 behaviour=Behaviour(answer_after_ms=30)).ok
        s.center.agent("1002", ["110"])
        yield s


def curl(stack: CtiStack, line: str, token: str = "") -> Any:
    line = line.replace("http://ip:8085", stack.server.url)
    line = line.replace("http://192.168.1.115:8085", stack.server.url)
    line = line.replace("Nway token", f"Nway {token}").replace("Nway Token", f"Nway {token}")
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ok(stack: CtiStack, name: str, token: str) -> Any:
    reply = curl(stack, SEED[name], token)
    assert isinstance(reply, list) or reply.get("result") == "ok", (name, reply)
    return reply


def agent(stack: CtiStack) -> Any:
    return Agents(stack.ctx, stack.center.domain).get("1002")


def leg_of(stack: CtiStack, ext: str) -> Any:
    """The answered leg the switch rang for phone ``ext`` (not any channel with
    dialed_user=<ext>: as in FreeSWITCH, the caller bridging to user/<ext> has it too)."""
    return wait_until(lambda: next((c for c in stack.switch.channels.values()
                                    if c.name.startswith(f"sofia/internal/{ext}@")
                                    and c.answered), None),
                      5, f"{ext} answered")


def recorded(stack: CtiStack, ext: str) -> None:
    """Until the live state (cti_userinfo, which the commands act on) shows ``ext``'s call
    answered: a record of the call alone may still be the ringing one (the runtime writes the
    answer with its next batch of events)."""
    def answered() -> bool:
        try:
            live_call(stack.ctx, stack.center.domain, ext, "answered")
        except NoCall:
            return False
        return True
    wait_until(answered, 5, f"{ext}'s call recorded as answered")


def test_the_seed_curl_lines_work_verbatim(stack: CtiStack) -> None:
    token = curl(stack, LOGIN)["token"]
    # seed 001: 非正常返回值: "Not Authorized"
    assert curl(stack, LOGIN.replace('"password": "admin"', '"password": "x"')) == \
        "Not Authorized"
    ok(stack, "agent_up", token)
    assert agent(stack).groups == ("12345", "110")
    ok(stack, "agent_down", token)
    assert not agent(stack).logged_in
    ok(stack, "agent_busy", token)
    ok(stack, "agent_ready", token)
    ok(stack, "extension_callstate", token)
    assert ok(stack, "queues", token) == []
    assert "1002" in [r["Extension"] for r in ok(stack, "get_extensions", token)]
    assert curl(stack, SEED["extension_info"], token) == {
        "reg_state": "reged", "seat_status": "idle", "call_state": "ready"}

    # a queue call answered by 1002: hold, phone hold, eavesdrop, then transfer to 1003
    ok(stack, "agent_up", token)
    customer = stack.center.call(stack.switch, "13800000009", "7110")
    leg = leg_of(stack, "1002")
    recorded(stack, "1002")
    for name in ("hold", "unhold", "phone_hold", "phone_unhold"):
        ok(stack, name, token)
    assert not leg.held
    ok(stack, "eavesdrop", token)
    listener = leg_of(stack, "1003")
    wait_until(lambda: stack.switch.hears(listener.uuid) == {leg.uuid, customer.uuid}, 3,
               "1003 listens")
    stack.switch.hangup(listener, "NORMAL_CLEARING", side="remote")
    wait_until(lambda: listener.uuid not in stack.switch.channels, 3, "listener gone")
    ok(stack, "transfer", token)
    third = wait_until(lambda: customer.peer and stack.switch.channels.get(customer.peer)
                       and stack.switch.channels[customer.peer].get("dialed_user") == "1003"
                       and stack.switch.channels[customer.peer], 5, "customer with 1003")
    recorded(stack, "1003")
    wait_until(lambda: agent(stack).call_state == "ready", 5, "1002 free again")

    # three-way: 1002 is invited into 1003's call
    ok(stack, "threeway", token)
    invited = leg_of(stack, "1002")
    wait_until(lambda: stack.switch.hears(customer.uuid) == {third.uuid, invited.uuid}, 3,
               "three parties")
    recorded(stack, "1002")
    ok(stack, "hangup", token)
    wait_until(lambda: invited.uuid not in stack.switch.channels, 5, "1002 hung up")
    stack.switch.hangup(customer, "NORMAL_CLEARING", side="remote")

    # answer: 1002's phone rings until told to answer
    stack.switch.register("1002", stack.center.domain, password="1234",
                          behaviour=Behaviour(answer_after_ms=None))
    wait_until(lambda: not stack.switch.channels, 5, "calls over")
    wait_until(lambda: agent(stack).call_state == "ready", 5, "1002 ready")
    stack.center.call(stack.switch, "13800000010", "7110")
    wait_until(lambda: agent(stack).call_state == "ring", 5, "1002 ringing")
    wait_until(lambda: curl(stack, SEED["answer"], token).get(
        "result") == "ok", 5, "answered")
    wait_until(lambda: agent(stack).call_state == "talking", 5, "1002 talking")
    ok(stack, "hangup", token)
    wait_until(lambda: not stack.switch.channels, 5, "calls over")
