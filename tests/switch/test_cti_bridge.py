"""cti_bridge in a real FreeSWITCH: a phone (SIPp) dials 6<number>, dialplan
30_fsapps_cti_bridge.xml asks a tiny HTTP router (http.server in a thread on a free 127.0.0.1
port) where the call goes, and the call goes there: a registered user, the trunk behind
gateway "test", a dial string (refused: cti_bridge.allow_dialstring is off), a hangup with
the router's SIP code, and the failures — a router that answers too late, and garbage. Each
case is checked on the caller's SIP outcome, the router's requests and notifications, the log
line and the CDR the README promises.

The router URL is the example's, pointed at the test's router the way an administrator points
it at theirs: the host and port in the copied 30_fsapps_cti_bridge.xml, then ``reloadxml``
(the ``?node=${switchname()}`` part stays as shipped).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from switch.conftest import DOMAIN, Stack, wait_for
from tools import sipp
from tools.realswitch import RealSwitch

SHIPPED_ROUTER = "http://127.0.0.1:8090/route"
_exts = itertools.count(5101)
_numbers = itertools.count(100200301)


# ------------------------------------------------------------------------ the router --------
Answer = tuple[int, bytes, float]  # status, body, delay in seconds


@dataclass
class Router:
    server: ThreadingHTTPServer
    answer: Callable[[dict[str, Any]], Answer] = lambda payload: (200, b"{}", 0.0)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def reply(self, body: dict[str, Any] | bytes, status: int = 200, delay: float = 0.0
              ) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answer = lambda payload: (status, raw, delay)

    def request_for(self, caller: str) -> tuple[str, dict[str, Any]]:
        def found() -> tuple[str, dict[str, Any]] | None:
            with self.lock:
                return next(((path, p) for path, p in self.received
                             if p.get("action") == "request"
                             and p.get("caller_id_number") == caller), None)
        return wait_for(found, 15, f"the router's request for {caller}")  # type: ignore[return-value]

    def actions(self, uuid: str) -> list[str]:
        with self.lock:
            return [p["action"] for _, p in self.received if p.get("uuid") == uuid]

    def payload(self, uuid: str, action: str) -> dict[str, Any]:
        with self.lock:
            return next(p for _, p in self.received
                        if p.get("uuid") == uuid and p.get("action") == action)


def start_router() -> Router:
    router: Router

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"{}")
            with router.lock:
                router.received.append((self.path, payload))
            status, body, delay = (router.answer(payload) if payload.get("action") == "request"
                                   else (200, b"{}", 0.0))
            time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the switch gave up waiting (router timeout)
                self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    router = Router(server)
    threading.Thread(target=server.serve_forever, daemon=True, name="router").start()
    return router


@pytest.fixture(scope="module")
def router(fs1: RealSwitch) -> Iterator[Router]:
    server = start_router()
    path = fs1.conf / "dialplan" / "default" / "30_fsapps_cti_bridge.xml"
    shipped = path.read_text()
    assert SHIPPED_ROUTER + "?node=${switchname()}" in shipped
    path.write_text(shipped.replace(SHIPPED_ROUTER, f"http://127.0.0.1:{server.port}/route"))
    assert "+OK" in fs1.api("reloadxml")
    try:
        yield server
    finally:
        path.write_text(shipped)
        fs1.api("reloadxml")
        server.server.shutdown()
        server.server.server_close()


# ------------------------------------------------------------------------ helpers -----------
def caller_ext(st: Stack) -> str:
    ext = str(next(_exts))
    st.extension(ext)
    return ext


def dial(sw: RealSwitch, st: Stack, caller: str, talk_ms: int = 1500) -> tuple[sipp.Sipp, str]:
    number = f"6{next(_numbers)}"
    return st.phone_call(sw, caller, number, talk_ms=talk_ms), number


def final_response(call: sipp.Sipp) -> int:
    """The final answer the caller got to its (authenticated) INVITE."""
    codes = [int(line.split()[1]) for line in call.messages().splitlines()
             if line.startswith("SIP/2.0 ") and line.split()[1].isdigit()]
    finals = [c for c in codes if c >= 200 and c not in (401, 407)]
    assert finals, call.messages()[-2000:]
    return finals[0]


def cdr_row(st: Stack, uuid: str) -> dict[str, Any]:
    return st.cdr("uuid = %s", uuid)


def log_line(sw: RealSwitch, uuid: str, text: str) -> str:
    """The line of the switch's log (log/freeswitch.log) about ``uuid`` that says ``text``."""
    path = sw.dir / "log" / "freeswitch.log"

    def found() -> str | None:
        return next((line for line in path.read_text(errors="replace").splitlines()
                     if f"cti_bridge {uuid}" in line and text in line), None)
    return wait_for(found, 10, f"the log line of {uuid} naming {text!r}")  # type: ignore[return-value]


def refused(sw: RealSwitch, st: Stack, router: Router, code: int, cause: str) -> str:
    """Place a call the router's current answer refuses; check the caller got ``code`` and the
    CDR says ``cause``, nobody called; return the call's uuid."""
    ext = caller_ext(st)
    call, number = dial(sw, st, ext)
    path, request = router.request_for(ext)
    assert call.wait(20) == 0, call.errors()
    assert final_response(call) == code, call.messages()[-3000:]
    uuid = request["uuid"]
    row = cdr_row(st, uuid)
    assert (row["a_caller_id_number"], row["a_destination_number"]) == (ext, number), row
    assert row["hangup_cause"] == cause, row
    assert row["a_answer_stamp"] is None and row["a_billsec"] == 0, row
    assert row["flag"] in ("", None) and row["destination_number"] in ("", None), row
    return str(uuid)


# ------------------------------------------------------------------------ tests -------------
def test_user(fs1: RealSwitch, phones: Stack, router: Router) -> None:
    """dial.type user: the registered phone rings and answers; the router gets the request
    (with the node's name from ${switchname()}), ring, answer and hangup."""
    agent = caller_ext(phones)
    phones.phone(fs1, agent, ring_ms=400)
    router.reply({"dial": {"type": "user", "user": agent}})
    ext = caller_ext(phones)
    call, number = dial(fs1, phones, ext)
    path, request = router.request_for(ext)
    assert path == "/route?node=fs1"
    assert (request["destination_number"], request["domain"]) == (number, DOMAIN)
    assert request["variables"]["sip_from_user"] == ext
    assert call.wait(30) == 0, call.errors()
    assert final_response(call) == 200
    uuid = request["uuid"]
    wait_for(lambda: "hangup" in router.actions(uuid), 10, "the hangup notification")
    assert router.actions(uuid) == ["request", "ring", "answer", "hangup"]
    hangup = router.payload(uuid, "hangup")
    assert (hangup["cause"], hangup["disposition"]) == ("NORMAL_CLEARING", "SUCCESS")
    assert hangup["talk_ms"] >= 1000 and hangup["billsec"] >= 1
    row = cdr_row(phones, uuid)
    assert (row["a_caller_id_number"], row["a_destination_number"]) == (ext, number)
    assert (row["destination_number"], row["flag"]) == (agent, "接通")
    assert row["a_answer_stamp"] is not None and row["answer_stamp"] is not None
    assert row["billsec"] >= 1 and row["a_billsec"] >= 1
    assert row["hangup_cause"] == "NORMAL_CLEARING"
    assert row["a_sip_hangup_disposition"] == "recv_bye"
    assert row["node"] == "fs1" and row["is_callout"] is False


def test_gateway(fs1: RealSwitch, phones: Stack, router: Router) -> None:
    """dial.type gateway: sofia/gateway/test/<number> reaches the carrier (SIPp UAS)."""
    trunk = phones.trunk(ring_ms=300)
    router.reply({"dial": {"type": "gateway", "gateway": "test", "number": "13911110001"},
                  "variables": {"origination_caller_id_number": "02100000001"}})
    ext = caller_ext(phones)
    call, _ = dial(fs1, phones, ext)
    _, request = router.request_for(ext)
    assert call.wait(30) == 0, call.errors()
    assert final_response(call) == 200
    invite = next(block for block in trunk.messages().split("\n\n")
                  if "INVITE sip:13911110001@" in block)
    assert "From: " in invite and "02100000001" in invite.split("From: ", 1)[1].split("\n")[0]
    uuid = request["uuid"]
    row = cdr_row(phones, uuid)
    assert (row["destination_number"], row["flag"]) == ("13911110001", "接通")
    assert row["billsec"] >= 1 and row["hangup_cause"] == "NORMAL_CLEARING"
    wait_for(lambda: "hangup" in router.actions(uuid), 10, "the hangup notification")
    assert router.payload(uuid, "hangup")["disposition"] == "SUCCESS"


def test_dialstring_is_refused_unless_allowed(fs1: RealSwitch, phones: Stack, router: Router
                                             ) -> None:
    """cti_bridge.allow_dialstring is false (the default): the router's dial string is not
    dialled; the caller is refused with the failure cause (NORMAL_TEMPORARY_FAILURE: 503)."""
    target = caller_ext(phones)
    phones.phone(fs1, target)
    router.reply({"dial": {"type": "dialstring", "dialstring": f"user/{target}@{DOMAIN}"}})
    uuid = refused(fs1, phones, router, 503, "NORMAL_TEMPORARY_FAILURE")
    assert "allow_dialstring" in log_line(fs1, uuid, "hanging up with NORMAL_TEMPORARY_FAILURE")
    assert phones.sql("SELECT count(*) FROM cdr WHERE destination_number = %s", target) == [(0,)]


def test_hangup_with_the_routers_sip_code(fs1: RealSwitch, phones: Stack, router: Router
                                          ) -> None:
    """dial.type hangup, sipcode 486: USER_BUSY, which the caller receives as 486."""
    router.reply({"dial": {"type": "hangup", "sipcode": 486}})
    refused(fs1, phones, router, 486, "USER_BUSY")


def test_hangup_with_the_routers_cause(fs1: RealSwitch, phones: Stack, router: Router) -> None:
    """dial.type hangup, cause 21 (the seed's table): CALL_REJECTED, a 603 to the caller."""
    router.reply({"dial": {"type": "hangup", "cause": 21}})
    refused(fs1, phones, router, 603, "CALL_REJECTED")


SWITCH_CLOCK_STEP_S = 0.02


def test_router_timeout(fs1: RealSwitch, phones: Stack, router: Router) -> None:
    """The router answers after the 3000 ms response timeout of the shipped dialplan line:
    the call is refused with NORMAL_TEMPORARY_FAILURE (503, not the late answer's 486), not
    before the timeout; one log line says why."""
    router.reply({"dial": {"type": "hangup", "sipcode": 486}}, delay=4.5)
    uuid = refused(fs1, phones, router, 503, "NORMAL_TEMPORARY_FAILURE")
    row = cdr_row(phones, uuid)
    took = (datetime.fromisoformat(row["a_end_stamp"])
            - datetime.fromisoformat(row["a_start_stamp"])).total_seconds()
    # the switch's own stamps: not refused before the timeout. FreeSWITCH stamps from its core
    # clock, which its timer advances in 20 ms steps (the log's times end alike: .991144,
    # .011145): a refusal 3.01 s after the start was stamped 2.999987 s. One step of slack.
    assert took >= 3.0 - SWITCH_CLOCK_STEP_S, row
    assert "timeout" in log_line(fs1, uuid, "hanging up with NORMAL_TEMPORARY_FAILURE").lower()


@pytest.mark.parametrize(("body", "named"), [
    (b"this is not json {", "JSON"),
    (b'{"dial": {"type": "user", "user": "1,user/1000"}}', "1,user/1000"),
    (b'{"dial": {"type": "teleport", "number": "1"}}', "teleport"),
    (b'{"dial": {"type": "gateway", "gateway": "test"}}', "number"),
    (b'{"dial": {"type": "user", "user": "5101"}, "variables": {"x": "a}b"}}', "x"),
], ids=["not-json", "unsafe-user", "unknown-type", "missing-number", "unsafe-variable"])
def test_garbage(fs1: RealSwitch, phones: Stack, router: Router, body: bytes, named: str
                 ) -> None:
    """An unusable answer: nothing is dialled, the caller gets 503, one log line names what
    was wrong."""
    router.reply(body)
    uuid = refused(fs1, phones, router, 503, "NORMAL_TEMPORARY_FAILURE")
    assert named in log_line(fs1, uuid, "hanging up with NORMAL_TEMPORARY_FAILURE")


def test_http_error(fs1: RealSwitch, phones: Stack, router: Router) -> None:
    router.reply({"error": "down"}, status=500)
    uuid = refused(fs1, phones, router, 503, "NORMAL_TEMPORARY_FAILURE")
    assert "500" in log_line(fs1, uuid, "hanging up with NORMAL_TEMPORARY_FAILURE")
