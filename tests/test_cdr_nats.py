"""Recording hooks on the event bus (issue 7): RECORD_START / RECORD_STOP go out on NATS as seed
000's cn.xswitch.ctrl.event.record_start / record_stop (Record-File-Path carried through), and
the call's Event.CDR names the file in ``abs_path``. Uses test_xcc's nats-server fixtures."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from fakefs import Behaviour
from fakefs.scenario import wait_until
from fsapps.events import xcc
from tests.acd_support import DOMAIN, CallCenter
from tests.test_xcc import NatsServer, Subscriber, cc, nats_server, subscribers  # noqa: F401

pytestmark = [
    pytest.mark.usefixtures("no_leaked_switch_threads"),
    pytest.mark.skipif(shutil.which("nats-server") is None,
                       reason="nats-server is not installed (make system installs it)"),
]

RECORDED = """<include><context name="default">
  <extension name="test_recorded">
    <condition field="destination_number" expression="^rec42$">
      <action application="answer"/>
      <action application="record_session" data="/tmp/fsapps-rec/${uuid}.wav"/>
      <action application="sleep" data="300"/>
      <action application="hangup"/>
    </condition>
  </extension>
</context></include>"""


def test_record_start_stop_and_abs_path_on_nats(cc: CallCenter,  # noqa: F811
                                                nats_server: NatsServer,  # noqa: F811
                                                subscribers: list[Any]) -> None:  # noqa: F811
    sw = cc.start_switch()
    sw.dialplan.load_text(RECORDED)
    wait_until(lambda: xcc.get_publisher(cc.ctx.settings.nats).connected, 5, "NATS connected")
    every = Subscriber(nats_server.url, "cn.xswitch.ctrl.event.*")
    cdrs = Subscriber(nats_server.url, "cn.xswitch.cdr")
    subscribers += [every, cdrs]
    channel = sw.place_call("1001", "rec42", domain=DOMAIN, behaviour=Behaviour())
    wait_until(lambda: channel.done.is_set(), 5, "the call over")
    path = f"/tmp/fsapps-rec/{channel.uuid}.wav"

    def recordings() -> list[tuple[str, Any]]:
        return [(s, m) for s, m in list(every.messages) if ".record_" in s]
    wait_until(lambda: len(recordings()) >= 2, 5, "record_start and record_stop")
    got = {subject: message["params"]["event"] for subject, message in recordings()}
    assert set(got) == {"cn.xswitch.ctrl.event.record_start",
                        "cn.xswitch.ctrl.event.record_stop"}
    for event in got.values():
        assert event["Record-File-Path"] == path and event["Unique-ID"] == channel.uuid
    assert all(m["method"] == "Event.NativeEvent" for _, m in recordings())
    wait_until(lambda: cdrs.messages, 5, "the Event.CDR")
    assert cdrs.messages[0][1]["params"]["cdr"]["abs_path"] == path
