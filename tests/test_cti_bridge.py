"""fsapps.cti_bridge end to end: a real HTTP router on a free 127.0.0.1 port (programmed per
test, recording what it receives and how many connections it accepted), one fake node running
the project's dialplan and fsapps.runtime (which sends ring / progress / answer), against the
test Redis and PostgreSQL. Real time, short timings; every wait is on a condition.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fakefs import Behaviour, Channel, Switch
from fakefs.scenario import wait_until
from fsapps.config import CtiBridgeSettings
from fsapps.switch import httproute
from tests.acd_support import DOMAIN, CallCenter, center

TEST_CONTEXT = """
<include><context name="cti_test">
  <extension name="route">
    <condition field="destination_number" expression="^route$">
      <action application="python" data="fsapps.cti_bridge ${fsapps_test_args}"/>
      <action application="set" data="fsapps_test_continued=true"/>
      <action application="hangup" data="NORMAL_CLEARING"/>
    </condition>
  </extension>
</context></include>
"""
TALK_MS = 300
BUSY = "18600000486"


# ------------------------------------------------------------------------ the router ---------
Answer = tuple[int, bytes, float]  # status, body, delay in seconds


@dataclass
class Router:
    """A real HTTP/1.1 keep-alive server: ``answer(payload)`` decides the reply to a
    ``request``; notifications get 200 after ``notify_delay``."""

    server: ThreadingHTTPServer
    answer: Callable[[dict[str, Any]], Answer | None] = lambda payload: (200, b"{}", 0.0)
    notify_delay: float = 0.0
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/route?tenant=t1"

    def reply(self, body: dict[str, Any], status: int = 200, delay: float = 0.0) -> None:
        self.answer = lambda payload: (status, json.dumps(body).encode(), delay)

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

        def setup(self) -> None:
            super().setup()
            with router.lock:
                router.connections += 1

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"{}")
            with router.lock:
                router.received.append((self.path, payload))
            if payload.get("action") != "request":
                time.sleep(router.notify_delay)
                self.send(200, b"{}")
                return
            decided = router.answer(payload)
            if decided is None:  # close without answering
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            status, body, delay = decided
            time.sleep(delay)
            self.send(status, body)

        def send(self, status: int, body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (timeout)
                self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    router = Router(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return router


# ------------------------------------------------------------------------ fixtures ----------
def far_end(number: str) -> Behaviour:
    if number == BUSY:
        return Behaviour(fail_with="USER_BUSY", fail_after_ms=50)
    if number.startswith("183"):
        return Behaviour(ring_after_ms=20, early_media=True, answer_after_ms=150,
                         hangup_after_ms=TALK_MS)
    return Behaviour(ring_after_ms=20, answer_after_ms=100, hangup_after_ms=TALK_MS)


@dataclass
class Bed:
    cc: CallCenter
    switch: Switch
    router: Router

    def configure(self, **changes: Any) -> None:
        settings = self.cc.ctx.settings
        self.cc.ctx.settings = replace(settings, cti_bridge=CtiBridgeSettings(**changes))

    def call(self, args: str = "", *, url: str | None = None) -> Channel:
        return self.switch.place_call(
            "1000", "route", caller_name="Alice", domain=DOMAIN, context="cti_test",
            variables={"fsapps_test_args": f"{url or self.router.url} {args or '1000 1000 1'}"},
            behaviour=Behaviour(answer_after_ms=None))

    def done(self, channel: Channel, timeout: float = 5.0) -> Channel:
        wait_until(channel.done.is_set, timeout, f"call {channel.uuid[:8]} over")
        return channel

    def legs(self, channel: Channel) -> list[Channel]:
        return [c for c in self.switch.all_channels.values() if c.originator == channel.uuid]

    def logged(self, text: str) -> bool:
        return any(text in message for _, message in self.switch.log)


@pytest.fixture(scope="module")
def no_leaked_switch_threads() -> Iterator[None]:
    """The switch's threads end with it; the notifier pool (one per process, by design) and
    the router's connection threads may stay."""
    before = set(threading.enumerate())
    yield

    def leaked() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before
                and not t.name.startswith("fsapps-cti-notify")
                and "process_request_thread" not in t.name]

    wait_until(lambda: not leaked(), 5.0, "the fake switch's threads ended")


@pytest.fixture(scope="module")
def bed_module(redis_server: Any, database: Any,
               no_leaked_switch_threads: None) -> Iterator[Bed]:
    router = start_router()
    for cc in center(redis_server.url, database.dsn):
        switch = cc.start_switch()
        switch.add_gateway("gw", far_end)
        switch.add_gateway("down", up=False)
        switch.sip_peers["127.0.0.1:5080"] = Behaviour(answer_after_ms=80,
                                                       hangup_after_ms=TALK_MS)
        switch.dialplan.load_text(TEST_CONTEXT)
        try:
            yield Bed(cc, switch, router)
        finally:
            router.server.shutdown()
            router.server.server_close()


@pytest.fixture
def bed(bed_module: Bed) -> Iterator[Bed]:
    settings = bed_module.cc.ctx.settings
    bed_module.configure()
    bed_module.router.notify_delay = 0.0
    yield bed_module
    bed_module.cc.ctx.settings = settings
    switch = bed_module.switch
    try:
        wait_until(lambda: not switch.channels, 5, "every call over")
    finally:
        for channel in list(switch.channels.values()):
            switch.hangup(channel, "NORMAL_CLEARING")


def gateway_answer(number: str = "123456", **variables: str) -> dict[str, Any]:
    return {"variables": variables, "dial": {"type": "gateway", "number": number,
                                             "gateway": "gw"}}


# ------------------------------------------------------------------------ pure parts --------
def test_parse_args_defaults_and_errors() -> None:
    assert httproute.parse_args("http://r/x?a=1") == httproute.Args("http://r/x?a=1", 3000,
                                                                     3000, True)
    assert httproute.parse_args("http://r/ 100 200 0") == httproute.Args("http://r/", 100,
                                                                         200, False)
    for bad in ("", "ftp://r/", "http://r/ 1x", "http://r/ 1 2 3", "http://r/{x}",
                "http://r/ 0 5"):
        with pytest.raises(httproute.BadAnswer):
            httproute.parse_args(bad)


def test_parse_answer_forms() -> None:
    def parse(data: Any, allow: bool = False) -> httproute.Route:
        return httproute.parse_answer(json.dumps(data), domain="d.test", allow_dialstring=allow)

    assert parse(gateway_answer()).dialstring == "sofia/gateway/gw/123456"
    assert parse({"dial": {"type": "ip", "number": "1", "ip": "10.0.0.1:5080"}}).dialstring \
        == "sofia/external/1@10.0.0.1:5080"
    assert parse({"dial": {"type": "user", "user": "1000"}}).dialstring == "user/1000@d.test"
    assert parse({"dial": {"type": "hangup", "cause": 16}}).hangup_cause == "NORMAL_CLEARING"
    assert parse({"dial": {"type": "hangup", "sipcode": 503}}).hangup_cause == \
        "NORMAL_TEMPORARY_FAILURE"
    route = parse(gateway_answer(absolute_codec_string="PCMA,PCMU", x="1"))
    assert httproute.with_variables(route.dialstring, route.variables) == \
        "{absolute_codec_string='PCMA,PCMU',x=1}sofia/gateway/gw/123456"
    assert httproute.with_variables("{a=1}user/1", {"b": "2"}) == "{b=2,a=1}user/1"


@pytest.mark.parametrize(("data", "why"), [
    ({"dial": {"type": "fax"}}, "unknown dial type 'fax'"),
    ({"dial": {"type": "gateway", "gateway": "gw"}}, "needs 'number'"),
    (gateway_answer("123,user/1000"), "invalid number '123,user/1000'"),
    ({"dial": {"type": "gateway", "gateway": "gw/x", "number": "1"}}, "invalid gateway"),
    ({"dial": {"type": "ip", "number": "1", "ip": "1.2.3.4,user/1"}}, "invalid ip"),
    ({"dial": {"type": "user", "user": "1000@x"}}, "invalid extension"),
    (gateway_answer(x="}user/1"), "variable x value"),
    ({"variables": {"a b": "1"}, "dial": {"type": "user", "user": "1"}}, "variable name"),
    (gateway_answer(x="${system(id)}"), "variable x value"),
    ({"dial": {"type": "dialstring", "dialstring": "user/1"}}, "not allowed"),
    ({"dial": {"type": "hangup", "cause": 4242}}, "not in the cause table"),
    ({"dial": {"type": "hangup", "sipcode": 99}}, "not a SIP failure code"),
    ([1], "must be a JSON object"),
    ({}, "no 'dial' object"),
])
def test_parse_answer_refuses(data: Any, why: str) -> None:
    with pytest.raises(httproute.BadAnswer, match=why.replace("$", r"\$").replace("{", r"\{")):
        httproute.parse_answer(json.dumps(data), domain="d", allow_dialstring=False)


# ------------------------------------------------------------------------ dial types --------
def test_gateway_with_variables_and_the_request_body(bed: Bed) -> None:
    bed.router.reply(gateway_answer(origination_caller_id_number="123",
                                    absolute_codec_string="PCMA,PCMU"))
    channel = bed.done(bed.call("1000 1000 0"))
    (leg,) = bed.legs(channel)
    assert leg.name == "sofia/gateway/gw/123456"
    assert leg.caller_id_number == "123"
    assert leg.get("absolute_codec_string") == "PCMA,PCMU"
    assert leg.answered and channel.hangup_cause == "NORMAL_CLEARING"
    path, body = bed.router.received[-1]
    assert path == "/route?tenant=t1"
    assert body == {"action": "request", "uuid": channel.uuid, "caller_id_number": "1000",
                    "caller_id_name": body["caller_id_name"], "destination_number": "route",
                    "domain": DOMAIN, "direction": "inbound", "context": body["context"],
                    "variables": body["variables"]}
    assert body["variables"]["sip_from_user"] == "1000"
    assert bed.router.actions(channel.uuid) == ["request"]


def test_user_dials_the_registered_extension(bed: Bed) -> None:
    bed.switch.add_user("1001", DOMAIN, password="1234")
    assert bed.switch.register("1001", DOMAIN, password="1234", behaviour=Behaviour(
        answer_after_ms=50, hangup_after_ms=TALK_MS)).ok
    bed.router.reply({"dial": {"type": "user", "number": "13800000000", "user": "1001"}})
    channel = bed.done(bed.call())
    (leg,) = bed.legs(channel)
    assert leg.name.startswith("sofia/internal/1001@") and leg.answered
    assert leg.get("sip_invite_to_uri") == f"<sip:13800000000@{DOMAIN}>"
    bed.switch.unregister("1001", DOMAIN)


def test_ip_dials_the_peer_on_the_profile(bed: Bed) -> None:
    bed.router.reply({"dial": {"type": "ip", "number": "123456", "ip": "127.0.0.1:5080"}})
    channel = bed.done(bed.call())
    (leg,) = bed.legs(channel)
    assert leg.name == "sofia/external/123456@127.0.0.1:5080" and leg.answered


def test_dialstring_with_fallback_when_allowed(bed: Bed) -> None:
    bed.configure(allow_dialstring=True)
    bed.router.reply({"variables": {"x_tag": "a b"}, "dial": {
        "type": "dialstring",
        "dialstring": "{ignore_early_media=true}sofia/gateway/down/1|sofia/gateway/gw/555"}})
    channel = bed.done(bed.call())
    legs = bed.legs(channel)
    assert [leg.name for leg in legs if leg.answered] == ["sofia/gateway/gw/555"]
    assert legs[-1].get("ignore_early_media") == "true" and legs[-1].get("x_tag") == "a b"


def test_dialstring_refused_unless_allowed(bed: Bed) -> None:
    bed.router.reply({"dial": {"type": "dialstring", "dialstring": "sofia/gateway/gw/555"}})
    channel = bed.done(bed.call())
    assert not bed.legs(channel)
    assert channel.hangup_cause == "NORMAL_TEMPORARY_FAILURE"
    assert bed.logged("dial type 'dialstring' is not allowed")


@pytest.mark.parametrize(("dial", "cause"), [
    ({"cause": 17}, "USER_BUSY"), ({"cause": 21, "sipcode": 500}, "CALL_REJECTED"),
    ({"sipcode": 486}, "USER_BUSY"), ({"sipcode": 404}, "UNALLOCATED_NUMBER")])
def test_hangup_by_cause_or_sipcode(bed: Bed, dial: dict[str, Any], cause: str) -> None:
    bed.router.reply({"dial": {"type": "hangup", **dial}})
    channel = bed.done(bed.call())
    assert channel.hangup_cause == cause and not bed.legs(channel)


# ------------------------------------------------------------------------ notifications -----
def test_ring_answer_hangup_notifications(bed: Bed) -> None:
    bed.router.reply(gateway_answer())
    channel = bed.done(bed.call())
    uuid = channel.uuid
    wait_until(lambda: "hangup" in bed.router.actions(uuid), 3, "hangup notification")
    assert bed.router.actions(uuid) == ["request", "ring", "answer", "hangup"]
    (leg,) = bed.legs(channel)
    assert bed.router.payload(uuid, "ring")["leg_uuid"] == leg.uuid
    hangup = bed.router.payload(uuid, "hangup")
    assert hangup["cause"] == "NORMAL_CLEARING" and hangup["disposition"] == "SUCCESS"
    assert TALK_MS - 50 <= hangup["talk_ms"] <= TALK_MS + 400, hangup
    assert hangup["duration_ms"] >= hangup["talk_ms"] and hangup["billsec"] == 0


def test_progress_notification_and_a_failed_bridge(bed: Bed) -> None:
    bed.router.reply(gateway_answer("18312345"))
    channel = bed.done(bed.call())
    wait_until(lambda: "hangup" in bed.router.actions(channel.uuid), 3, "hangup notification")
    assert bed.router.actions(channel.uuid) == ["request", "progress", "answer", "hangup"]
    bed.router.reply(gateway_answer(BUSY))
    busy = bed.done(bed.call())
    wait_until(lambda: "hangup" in bed.router.actions(busy.uuid), 3, "hangup notification")
    hangup = bed.router.payload(busy.uuid, "hangup")
    assert (hangup["cause"], hangup["disposition"], hangup["talk_ms"]) == \
        ("USER_BUSY", "USER_BUSY", 0)
    assert busy.hangup_cause == "USER_BUSY"  # on_failure hangup passes the bridge's cause on


def test_notify_type_0_sends_none(bed: Bed) -> None:
    bed.router.reply(gateway_answer())
    channel = bed.done(bed.call("1000 1000 0"))
    time.sleep(0.3)  # nothing is expected: give stray notifications a chance to show up
    assert bed.router.actions(channel.uuid) == ["request"]


def test_a_slow_notification_endpoint_never_delays_the_call(bed: Bed) -> None:
    bed.router.notify_delay = 2.0
    bed.router.reply(gateway_answer())
    started = time.monotonic()
    channel = bed.done(bed.call("1000 300 1"))
    assert time.monotonic() - started < 1.5
    assert channel.hangup_cause == "NORMAL_CLEARING"


# ------------------------------------------------------------------------ failures ----------
FAILURES: list[tuple[str, Answer | None, str]] = [
    ("status", (500, b"oops", 0.0), "HTTP status 500"),
    ("not json", (200, b"<html>", 0.0), "answer is not JSON"),
    ("unknown type", (200, b'{"dial": {"type": "fax"}}', 0.0), "unknown dial type 'fax'"),
    ("missing", (200, b'{"dial": {"type": "gateway", "number": "1"}}', 0.0),
     "needs 'gateway'"),
    ("injection", (200, json.dumps(gateway_answer("1,user/1000")).encode(), 0.0),
     "invalid number '1,user/1000'"),
    ("closed", None, "request to"),
]


@pytest.mark.parametrize(("name", "answer", "why"), FAILURES, ids=[f[0] for f in FAILURES])
@pytest.mark.parametrize("on_failure", ["hangup", "continue"])
def test_bad_answers_fall_back(bed: Bed, name: str, answer: Answer | None, why: str,
                               on_failure: str) -> None:
    bed.configure(on_failure=on_failure, failure_cause="SERVICE_UNAVAILABLE")
    bed.router.answer = lambda payload: answer
    channel = bed.done(bed.call())
    assert not bed.legs(channel)
    lines = [m for _, m in bed.switch.log if channel.uuid in m and "cti_bridge" in m]
    assert len(lines) == 1 and why in lines[0], lines
    if on_failure == "hangup":
        assert channel.hangup_cause == "SERVICE_UNAVAILABLE"
        assert channel.get("fsapps_test_continued") is None
    else:
        assert channel.get("fsapps_test_continued") == "true"


def test_response_timeout_is_honoured(bed: Bed) -> None:
    bed.router.reply(gateway_answer(), delay=3.0)
    started = time.monotonic()
    channel = bed.done(bed.call("1000 300 0"))
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed <= 1.5, elapsed
    assert channel.hangup_cause == "NORMAL_TEMPORARY_FAILURE"
    assert bed.logged("response timeout (300 ms)")


def test_connect_timeout_is_honoured(bed: Bed) -> None:
    # A listener that never accepts, its backlog filled: further SYNs are dropped.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        started = time.monotonic()
        channel = bed.done(bed.call("300 3000 0", url=f"http://127.0.0.1:{port}/r"))
        elapsed = time.monotonic() - started
        assert 0.3 <= elapsed <= 1.5, elapsed
        assert channel.hangup_cause == "NORMAL_TEMPORARY_FAILURE"
        assert bed.logged("connect timeout (300 ms)")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_calls_notifications_reach_its_router_in_the_order_they_happened() -> None:
    """A call's notifications go out one after another on one worker: its answer waits for
    its ring's POST to be answered (from a shared pool the answer overtook the ring, seen in
    the real switch); another call's go out meanwhile on another worker."""
    router = start_router()
    router.notify_delay = 0.5
    settings = CtiBridgeSettings()
    try:
        first = "call-a"
        worker = httproute._worker_for(settings, first)
        other = next(f"call-b{i}" for i in range(1000)
                     if httproute._worker_for(settings, f"call-b{i}") is not worker)
        timeouts = (1.0, 2.0)
        assert httproute.notify(settings, router.url, {"action": "ring", "uuid": first},
                                timeouts)
        assert httproute.notify(settings, router.url, {"action": "answer", "uuid": first},
                                timeouts)
        assert httproute.notify(settings, router.url, {"action": "ring", "uuid": other},
                                timeouts)
        wait_until(lambda: len(router.received) == 3, 5, "three notifications")
        with router.lock:
            order = [(p["uuid"], p["action"]) for _, p in router.received]
        assert order[-1] == (first, "answer"), order
        assert sorted(order[:2]) == [(first, "ring"), (other, "ring")], order
    finally:
        router.server.shutdown()
        router.server.server_close()


def test_connections_are_reused_across_calls() -> None:
    router = start_router()
    try:
        router.reply({"dial": {"type": "hangup", "cause": 16}})
        payload = {"action": "request", "uuid": "x"}
        for _ in range(5):
            assert json.loads(httproute.post(router.url, payload, (1.0, 1.0)))["dial"]
        assert router.connections == 1
    finally:
        router.server.shutdown()
        router.server.server_close()


def test_calls_reuse_the_router_connection(bed: Bed) -> None:
    bed.router.reply({"dial": {"type": "hangup", "cause": 16}})
    bed.done(bed.call("1000 1000 0"))
    before = bed.router.connections
    for _ in range(4):
        bed.done(bed.call("1000 1000 0"))
    assert bed.router.connections == before
