"""Native events on NATS as XCC publishes them (seed 000), from the runtime of a fakefs switch,
against a real nats-server started here on a free 127.0.0.1 port."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from fakefs.channel import Behaviour
from fakefs.scenario import wait_until
from fakefs.switch import Switch
from fsapps.config import NatsSettings, Secret
from fsapps.domain.userdir import UserDirectory, parse_record
from fsapps.events import xcc
from tests.acd_support import DOMAIN, CallCenter, reset_database, settings_for
from tools.servers import FreshDatabase, RedisServer

pytestmark = [
    pytest.mark.usefixtures("no_leaked_switch_threads"),
    pytest.mark.skipif(shutil.which("nats-server") is None,
                       reason="nats-server is not installed (make system installs it)"),
]

CONFERENCE = "3000-cc.test"
CONFERENCE_DIALPLAN = f"""<include><context name="default">
  <extension name="xcc_conference">
    <condition field="destination_number" expression="^conf3000$">
      <action application="answer"/>
      <action application="conference" data="{CONFERENCE}"/>
    </condition>
  </extension>
</context></include>"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.answers, 5, f"nats-server on port {self.port}")

    def answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(5)
            self.process = None


class Subscriber:
    """A NATS subscriber in a thread of its own; ``messages`` collects (subject, JSON)."""

    def __init__(self, url: str, subject: str) -> None:
        self.messages: list[tuple[str, Any]] = []
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._done: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, args=(url, subject), daemon=True)
        self._thread.start()
        assert self._ready.wait(5), f"no subscription on {subject}"

    def _run(self, url: str, subject: str) -> None:
        import nats

        async def main() -> None:
            self._done = asyncio.Event()
            client = await nats.connect(url)

            async def got(msg: Any) -> None:
                self.messages.append((msg.subject, json.loads(msg.data)))

            await client.subscribe(subject, cb=got)
            await client.flush()
            self._ready.set()
            await self._done.wait()
            await client.close()

        self._loop.run_until_complete(main())
        self._loop.close()

    def subjects(self) -> list[str]:
        return [subject for subject, _ in list(self.messages)]

    def close(self) -> None:
        if self._done is not None:
            self._loop.call_soon_threadsafe(self._done.set)
        self._thread.join(5)


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cc(redis_server: RedisServer, database: FreshDatabase,
       nats_server: NatsServer) -> Iterator[CallCenter]:
    reset_database(database.dsn)
    settings = dataclasses.replace(
        settings_for(redis_server.url, database.dsn),
        nats=NatsSettings(enabled=True, url=Secret(nats_server.url),
                          cdr_subject="cn.xswitch.cdr"))
    center = CallCenter(settings)
    try:
        yield center
    finally:
        center.close()
        xcc.close_publisher()


@pytest.fixture
def subscribers(nats_server: NatsServer) -> Iterator[list[Subscriber]]:
    made: list[Subscriber] = []
    yield made
    for subscriber in made:
        subscriber.close()


def phones(cc: CallCenter) -> Switch:
    sw = cc.start_switch()
    sw.dialplan.load_text(CONFERENCE_DIALPLAN)
    for user in ("1001", "1002"):
        UserDirectory(cc.ctx, DOMAIN).set(parse_record(user, DOMAIN, {
            "param": {"password": "pw"},
            "variable": {"sip-force-contact": "NDLB-connectile-dysfunction-2.0"}}))
    assert sw.register("1002", DOMAIN, password="pw", behaviour=Behaviour(
        answer_after_ms=100, ring_after_ms=10, hangup_after_ms=300)).ok
    wait_until(lambda: xcc.get_publisher(cc.ctx.settings.nats).connected, 5, "NATS connected")
    return sw


def call(sw: Switch) -> Any:
    """1001 calls 1002, who answers and hangs up after 300 ms."""
    return sw.place_call("1001", "fsapps_agent_1002", domain=DOMAIN,
                         behaviour=Behaviour(hangup_after_ms=None),
                         variables={"sip_h_X-FSAPPS-Ring-Timeout": "10"})


def test_the_seed_subscriber_sees_add_member(cc: CallCenter, nats_server: NatsServer,
                                            subscribers: list[Subscriber]) -> None:
    sw = phones(cc)
    seed = Subscriber(nats_server.url, "cn.xswitch.ctrl.event.custom.conference::maintenance")
    subscribers.append(seed)

    caller = sw.place_call("1001", "conf3000", domain=DOMAIN,
                           behaviour=Behaviour(hangup_after_ms=300))

    def added() -> Any:
        return [m for _, m in list(seed.messages)
                if m["params"]["event"].get("Action") == "add-member"]
    message = wait_until(added, 10, "add-member on NATS")[0]
    assert message["jsonrpc"] == "2.0"
    assert message["method"] == "Event.NativeEvent"
    assert message["params"]["node_uuid"] == sw.core_uuid
    event = message["params"]["event"]
    assert event["Event-Subclass"] == "conference::maintenance"
    assert event["Conference-Name"] == CONFERENCE
    assert event["Unique-ID"] == caller.uuid
    assert event["Core-UUID"] == sw.core_uuid
    assert {"Member-ID", "Caller-Caller-ID-Number", "Event-Date-Timestamp"} <= set(event)
    assert set(seed.subjects()) == {"cn.xswitch.ctrl.event.custom.conference::maintenance"}
    wait_until(lambda: not caller.up, 10, "conference call over")


def test_channel_events_of_a_call_carry_every_header(cc: CallCenter, nats_server: NatsServer,
                                                     subscribers: list[Subscriber]) -> None:
    sw = phones(cc)
    every = Subscriber(nats_server.url, "cn.xswitch.ctrl.event.>")
    subscribers.append(every)

    caller = call(sw)
    complete = "cn.xswitch.ctrl.event.channel_hangup_complete"
    wait_until(lambda: every.subjects().count(complete) >= 2, 10, "both legs' hangup_complete")

    mine = [(s, m["params"]["event"]) for s, m in list(every.messages)
            if caller.uuid in (m["params"]["event"].get("Unique-ID"),
                               m["params"]["event"].get("Other-Leg-Unique-ID"))]
    subjects = [s for s, _ in mine]
    for name in ("channel_create", "channel_answer", "channel_bridge", "channel_hangup_complete"):
        assert f"cn.xswitch.ctrl.event.{name}" in subjects, name
    # only the configured (seed) events: no CHANNEL_DESTROY, no registrations' sofia::expire
    assert "cn.xswitch.ctrl.event.channel_destroy" not in every.subjects()
    hangup = next(e for s, e in mine if s == complete and e["Unique-ID"] == caller.uuid)
    assert hangup["Event-Name"] == "CHANNEL_HANGUP_COMPLETE"
    assert hangup["Core-UUID"] == sw.core_uuid
    assert {"variable_duration", "variable_billsec", "Caller-Caller-ID-Number",
            "Caller-Destination-Number", "Hangup-Cause", "FreeSWITCH-IPv4"} <= set(hangup)


def test_nats_down_leaves_calls_alone_and_publishing_resumes(
        cc: CallCenter, nats_server: NatsServer, subscribers: list[Subscriber]) -> None:
    sw = phones(cc)
    publisher = xcc.get_publisher(cc.ctx.settings.nats)
    nats_server.stop()
    wait_until(lambda: not publisher.connected, 5, "NATS disconnected")
    dropped = publisher.dropped

    caller = call(sw)
    wait_until(lambda: not caller.up, 10, "the call ends while NATS is down")
    assert caller.hangup_cause == "NORMAL_CLEARING"
    wait_until(lambda: publisher.dropped >= dropped + 4, 5, "the call's events dropped")

    nats_server.start()
    wait_until(lambda: publisher.connected, 10, "NATS reconnected")
    every = Subscriber(nats_server.url, "cn.xswitch.ctrl.event.>")
    subscribers.append(every)
    again = call(sw)
    wait_until(lambda: any(m["params"]["event"].get("Unique-ID") == again.uuid
                           for s, m in list(every.messages)
                           if s.endswith(".channel_hangup_complete")), 10,
               "events published again")


def test_subjects_and_event_list() -> None:
    assert xcc.subject_for("cn.xswitch.ctrl.event", "CHANNEL_ANSWER") == \
        "cn.xswitch.ctrl.event.channel_answer"
    assert xcc.subject_for("cn.xswitch.ctrl.event", "CUSTOM", "sofia::register") == \
        "cn.xswitch.ctrl.event.custom.sofia::register"
    assert xcc.parse_events(["DTMF", "CUSTOM callcenter::info", "DTMF"]) == (
        ("DTMF", ""), ("CUSTOM", "callcenter::info"))


def test_event_cdr_for_each_leg_on_the_cdr_subject(cc: CallCenter, nats_server: NatsServer,
                                                   subscribers: list[Subscriber]) -> None:
    """Seed 000: one Event.CDR per channel (leg a and leg b) with the default field list, on
    cn.xswitch.cdr when cdr-subject is set."""
    sub = Subscriber(nats_server.url, "cn.xswitch.cdr")
    subscribers.append(sub)
    switch = phones(cc)
    caller = call(switch)
    wait_until(lambda: caller.done.is_set(), 10, "the call ended")
    wait_until(lambda: len(sub.messages) >= 2, 5, "two Event.CDR messages")
    cdrs = {m["params"]["cdr"]["leg"]: m for _, m in sub.messages}
    assert set(cdrs) == {"a", "b"}
    a = cdrs["a"]
    assert a["method"] == "Event.CDR" and a["params"]["uuid"] == caller.uuid
    assert a["params"]["node_uuid"] == switch.core_uuid
    fields = a["params"]["cdr"]
    assert set(xcc.CDR_FIELDS) <= set(fields)
    assert fields["uuid"] == caller.uuid and fields["direction"] == "inbound"
    assert fields["hangup_cause"] and fields["duration"] != ""
    assert fields["bleg_uuid"] == cdrs["b"]["params"]["uuid"]
