"""Seed-001 pub/sub messages: every builder against the seed's own examples, field by field and
key by key, then the Publisher against a real redis-server and a real PSUBSCRIBE subscriber
(shapes, channels, pipelines, separators in values, and a Redis outage)."""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.client import PubSub

from fsapps.config import EventSettings, RedisSettings, Secret
from fsapps.errors import ConfigError
from fsapps.events.pubsub import (
    AGENT_EVENTS_CHANNEL,
    CALL_EVENTS_CHANNEL,
    CDR_CALLOUT_CHANNEL,
    EventName,
    MessageError,
    Publisher,
    agent_call_event,
    agent_status,
    call_event,
    cdr_message,
    primary_ipv4,
    queue_event,
    stamp,
)
from fsapps.store.connection import close_clients
from fsapps.store.connection import redis_client as client_for
from fsapps.store.keys import SEED_CHANNEL_PATTERNS
from tools.servers import RedisServer

CTI_IP = "10.1.213.29"
UUID = "7ba750aa-c138-11eb-8bdf-fd851cbd5dad"

# ---- the seed's examples, verbatim (section 事件和消息的推送) ----------------------------------


def seed_agent_event(method: str) -> dict[str, str]:
    return {
        "type": "event",
        "method": method,
        "cti_ip": "10.1.213.29",
        "uuid": "7ba750aa-c138-11eb-8bdf-fd851cbd5dad",
        "number": "18638737767",
        "group": "120",
        "extension": "1018",
        "level": "normal",
        "callin_time": "2021-05-30 17:00:02",
    }


SEED_QUEUE_ADD = {
    "type": "queue",
    "method": "nway_queue_add",
    "cti_ip": "10.1.213.29",
    "uuid": "7ba750aa-c138-11eb-8bdf-fd851cbd5dad",
    "number": "130****8217",
    "group": "120",
    "level": "normal",
    "callin_time": "2021-05-30 17:00:01",
}
# The seed's remove example has no cti_ip; fsapps sends it on both, in the same place as add.
SEED_QUEUE_REMOVE = {
    "type": "queue",
    "method": "nway_queue_remove",
    "cti_ip": "10.1.213.29",
    "uuid": "7ba750aa-c138-11eb-8bdf-fd851cbd5dad",
    "number": "130****8217",
    "group": "120",
    "level": "normal",
    "callin_time": "2021-05-30 19:16:30",
}
SEED_CDR = {
    "type": "cdr",
    "cti_ip": "10.1.213.29",
    "uuid": "7ba750aa-c138-11eb-8bdf-fd851cbd5dad",
    "is_callout": "false",
    "a_caller_id_number": "130****8217",
    "a_destination_number": "120",
    "a_start_stamp": "2021-05-30 16:57:10",
    "a_answer_stamp": "2021-05-30 16:57:10",
    "a_end_stamp": "2021-05-30 16:57:29",
    "a_duration": "19",
    "a_billsec": "19",
    "a_sip_hangup_disposition": "recv_bye",
    "a_record_file": "2021/May/30/18939657757_04ee30b8-c125-11eb-bb04-9180ac6fa0de.wav",
    "str_no_answer_agents": "1011",
    "destination_number": "1011",
    "start_stamp": "2021-05-30 16:57:11",
    "answer_stamp": "",
    "end_stamp": "2021-05-30 16:57:29",
    "duration": "18",
    "flag": "单座席无应答",
    "billsec": "0",
}
SEED_EVENT_NAMES = [
    "EVENT_CALLIN", "EVENT_CALLOUT", "EVENT_RING", "EVNET_ALERT", "EVENT_ANSWER", "EVENT_HANGUP",
    "EVENT_DTMF", "EVENT_PLAYRING", "EVENT_PLAYSTOP", "EVENT_PARK", "EVENT_UNPARK",
    "EVENT_HOLD", "EVENT_UNHOLD", "EVENT_BRIDGED", "EVENT_DESTORY", "EVENT_TALKING", "EVENT_DA",
]

CALL: dict[str, Any] = {
    "callin_number": "18638737767", "dest_number": "120", "domain": "default", "dtmf": "",
    "gateway": "", "originate_number": "18638737767", "direction": "inbound", "auuid": UUID,
    "buuid": "8cb861bb-c138-11eb-8bdf-fd851cbd5dad", "origination_dest_number": "4008001234",
}


def compact(seed: dict[str, str]) -> str:
    """The example as the seed's Go string concatenation writes it: no spaces, same order."""
    return "{" + ",".join(f'"{k}":"{v}"' for k, v in seed.items()) + "}"


def items(text: str) -> list[tuple[str, Any]]:
    return list(json.loads(text).items())


# ---- pure builders ---------------------------------------------------------------------------


def test_event_names_are_the_seeds_spelling_numbered_from_one() -> None:
    assert [e.name for e in EventName] == SEED_EVENT_NAMES
    assert [e.value for e in EventName] == list(range(1, 18))
    assert EventName.EVNET_ALERT == 4 and EventName.EVENT_DESTORY == 15


def test_call_event_comma_form_in_the_seeds_field_order() -> None:
    message = call_event(EventName.EVENT_CALLIN, **CALL)
    assert message.comma() == (
        f"EVENT_CALLIN,18638737767,120,default,,,18638737767,inbound,{UUID},"
        "8cb861bb-c138-11eb-8bdf-fd851cbd5dad,4008001234")
    assert message.render("comma") == message.comma()


def test_call_event_json_form_in_the_seeds_pushstr_order() -> None:
    text = call_event("EVNET_ALERT", **CALL).json()
    assert items(text) == [
        ("type", "event"), ("event_name", "EVNET_ALERT"), ("aleg_uuid", UUID),
        ("bleg_uuid", "8cb861bb-c138-11eb-8bdf-fd851cbd5dad"),
        ("callin_number", "18638737767"), ("dest_number", "120"), ("domain", "default"),
        ("dtmf", ""), ("gateway", ""), ("originate_number", "18638737767"),
        ("direction", "inbound"), ("origination_dest_number", "4008001234"),
    ]
    assert text == compact(dict(json.loads(text)))  # compact, like the Go concatenation


def test_call_event_optional_fields_default_to_empty() -> None:
    message = call_event(EventName.EVENT_DTMF, callin_number="1001", dest_number="9",
                         domain="d", dtmf="5")
    assert message.comma() == "EVENT_DTMF,1001,9,d,5,,,,,,"


def test_call_event_refuses_unknown_names_naming_them() -> None:
    with pytest.raises(MessageError, match="'EVENT_ALERT'"):
        call_event("EVENT_ALERT", **CALL)


@pytest.mark.parametrize("method", ["callout", "noanswer", "answered", "hangup"])
def test_agent_call_events_equal_the_seeds_examples(method: str) -> None:
    message = agent_call_event(method, cti_ip=CTI_IP, uuid=UUID, number="18638737767",
                               group="120", extension="1018", level="normal",
                               callin_time="2021-05-30 17:00:02")
    seed = seed_agent_event(method)
    assert items(message.json()) == list(seed.items())
    assert message.json() == compact(seed)
    # The seed shows the agent-facing events only as JSON: the comma setting does not change it.
    assert message.comma() == message.render("comma") == compact(seed)


def test_agent_call_event_refuses_other_methods() -> None:
    with pytest.raises(MessageError, match="'ringing'"):
        agent_call_event("ringing", cti_ip=CTI_IP, uuid=UUID, number="1", group="120",
                         extension="1018", level="normal", callin_time="")


@pytest.mark.parametrize("seed", [SEED_QUEUE_ADD, SEED_QUEUE_REMOVE],
                         ids=["nway_queue_add", "nway_queue_remove"])
def test_queue_events_equal_the_seeds_examples(seed: dict[str, str]) -> None:
    message = queue_event(seed["method"], cti_ip=CTI_IP, uuid=UUID, number="130****8217",
                          group="120", level="normal", callin_time=seed["callin_time"])
    assert items(message.json()) == list(seed.items())
    assert message.json() == compact(seed)
    assert message.comma() == (
        f"{seed['method']},{UUID},130****8217,120,normal,{seed['callin_time']}")


def test_queue_event_refuses_other_methods() -> None:
    with pytest.raises(MessageError, match="'nway_queue_pop'"):
        queue_event("nway_queue_pop", cti_ip="", uuid=UUID, number="1", group="1",
                    level="normal", callin_time="")


def test_agent_status_both_shapes() -> None:
    message = agent_status("1018", "talking", "2021-05-30 17:00:05")
    assert message.comma() == "1018,talking,2021-05-30 17:00:05"
    assert items(message.json()) == [("type", "agent"), ("number", "1018"),
                                     ("status", "talking"), ("time", "2021-05-30 17:00:05")]


def test_stamp_is_local_time_in_the_seeds_format() -> None:
    epoch = time.mktime((2021, 5, 30, 17, 0, 2, 0, 0, -1))
    assert stamp(epoch) == "2021-05-30 17:00:02"
    # Epoch seconds given for a time field are formatted the same way.
    assert agent_status("1018", "ready", epoch).comma() == "1018,ready,2021-05-30 17:00:02"
    message = queue_event("nway_queue_add", cti_ip=CTI_IP, uuid=UUID, number="1", group="120",
                          level="vip", callin_time=epoch)
    assert json.loads(message.json())["callin_time"] == "2021-05-30 17:00:02"


def seed_cdr_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {k: v for k, v in SEED_CDR.items() if k != "type"}
    fields.update(changes)
    return fields


def test_cdr_json_equals_the_seeds_example_with_readable_chinese() -> None:
    text = cdr_message(seed_cdr_fields()).json()
    assert items(text) == list(SEED_CDR.items())
    assert text == compact(SEED_CDR)
    assert '"flag":"单座席无应答"' in text  # not \u-escaped


def test_cdr_comma_form_in_the_seeds_arr_order_with_the_no_answer_agents() -> None:
    fields = seed_cdr_fields(no_answer_agents=["1011", " 1012 "],
                             str_no_answer_agents="1011 1012")
    assert cdr_message(fields).comma().split(",", 17) == [
        UUID, "130****8217", "120", "2021-05-30 16:57:10", "2021-05-30 16:57:10",
        "2021-05-30 16:57:29", "19", "19", "recv_bye",
        "2021/May/30/18939657757_04ee30b8-c125-11eb-bb04-9180ac6fa0de.wav", "1011 1012", "1011",
        "2021-05-30 16:57:11", "", "2021-05-30 16:57:29", "18", "0", "{1011,1012}",
    ]
    # No agent missed the call: the trailing element is empty, as in the seed's else branch.
    assert cdr_message(seed_cdr_fields()).comma().endswith(",18,0,")
    assert cdr_message(seed_cdr_fields()).comma().count(",") == 17


def test_cdr_missing_fields_are_empty_and_booleans_read_as_go_writes_them() -> None:
    message = cdr_message({"uuid": UUID, "is_callout": True, "a_duration": 19})
    data = json.loads(message.json())
    assert data["is_callout"] == "true" and data["a_duration"] == "19"
    assert data["flag"] == "" and data["billsec"] == ""
    assert all(isinstance(value, str) for value in data.values())


def test_cdr_refuses_unknown_keys_naming_them() -> None:
    with pytest.raises(MessageError, match="'a_billsecs'"):
        cdr_message({"uuid": UUID, "a_billsecs": "3"})


def test_values_are_trimmed_like_the_seeds_strings_trim() -> None:
    message = call_event(EventName.EVENT_RING, callin_number="  1001 ", dest_number="1002\n",
                         domain=" d ")
    assert message.comma().startswith("EVENT_RING,1001,1002,d,")
    assert json.loads(message.json())["callin_number"] == "1001"


def test_separators_inside_comma_values_become_spaces_with_one_warning_per_field(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fsapps")
    message = call_event(EventName.EVENT_CALLIN, callin_number="10,01", dest_number="12\n0",
                         domain="d", gateway="gw,a,b")
    assert message.comma().split(",") == [
        "EVENT_CALLIN", "10 01", "12 0", "d", "", "gw a b", "", "", "", "", ""]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert ["'callin_number'" in w for w in warnings] == [True, False, False]
    assert any("'dest_number'" in w for w in warnings)
    assert any("'gateway'" in w for w in warnings)
    # JSON escapes them itself: the values reach JSON subscribers unchanged.
    assert json.loads(message.json())["gateway"] == "gw,a,b"


def test_an_agent_with_separators_cannot_break_the_cdr_braces(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fsapps")
    text = cdr_message({"uuid": UUID, "no_answer_agents": ["10,11", "1}2", ""]}).comma()
    assert text.endswith(",{10 11,1 2}")
    assert any("'no_answer_agents'" in r.getMessage() for r in caplog.records)


def test_render_refuses_an_unknown_shape() -> None:
    with pytest.raises(MessageError, match="'xml'"):
        agent_status("1", "ready", "").render("xml")


# ---- Publisher against a real Redis ------------------------------------------------------------


@pytest.fixture
def subscriber(redis_client: redis.Redis) -> Iterator[PubSub]:
    """A PSUBSCRIBE on the seed's four patterns, confirmed before the test publishes."""
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe(*SEED_CHANNEL_PATTERNS)
    deadline = time.monotonic() + 5
    while int(redis_client.execute_command("PUBSUB", "NUMPAT")) < len(SEED_CHANNEL_PATTERNS):
        assert time.monotonic() < deadline, "the PSUBSCRIBE was not confirmed"
        pubsub.get_message(timeout=0.05)  # reads (and drops) the confirmations
    try:
        yield pubsub
    finally:
        pubsub.close()


def receive(pubsub: PubSub, timeout: float = 5.0) -> tuple[str, str, str]:
    """(pattern, channel, data) of the next published message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=deadline - time.monotonic())
        if message is not None and message["type"] == "pmessage":
            return (message["pattern"].decode(), message["channel"].decode(),
                    message["data"].decode("utf-8"))
    raise AssertionError(f"no message within {timeout}s")


def publisher(client: Any, shape: str = "json") -> Publisher:
    return Publisher(client, EventSettings(pubsub_format=shape, cti_ip=CTI_IP))


def test_every_message_arrives_on_its_documented_channel_as_json(
        redis_client: redis.Redis, subscriber: PubSub) -> None:
    pub = publisher(redis_client)
    assert pub.call_event(EventName.EVENT_CALLIN, **CALL)
    assert receive(subscriber) == ("event_*", "event_call",
                                   call_event(EventName.EVENT_CALLIN, **CALL).json())

    assert pub.agent_call_event("callout", uuid=UUID, number="18638737767", group="120",
                                extension="1018", level="normal",
                                callin_time="2021-05-30 17:00:02")
    assert receive(subscriber) == ("event_*", "event_agent", compact(seed_agent_event("callout")))

    assert pub.queue_event("nway_queue_add", uuid=UUID, number="130****8217", group="120",
                           level="normal", callin_time="2021-05-30 17:00:01")
    assert receive(subscriber) == ("queue_*", "queue_120", compact(SEED_QUEUE_ADD))

    assert pub.agent_status("1018", "talking", "2021-05-30 17:00:05")
    pattern, channel, data = receive(subscriber)
    assert (pattern, channel) == ("agent_*", "agent_1018")
    assert json.loads(data) == {"type": "agent", "number": "1018", "status": "talking",
                                "time": "2021-05-30 17:00:05"}

    cdr = seed_cdr_fields()
    del cdr["cti_ip"]  # the publisher fills in its own
    assert pub.cdr(cdr, group="120")
    assert receive(subscriber) == ("cdr_*", "cdr_120", compact(SEED_CDR))

    assert pub.cdr(seed_cdr_fields(is_callout="true"), group="120")
    pattern, channel, data = receive(subscriber)
    assert (pattern, channel) == ("cdr_*", CDR_CALLOUT_CHANNEL) == ("cdr_*", "cdr_callout")
    assert json.loads(data)["is_callout"] == "true"
    assert pub.failed == 0
    assert (CALL_EVENTS_CHANNEL, AGENT_EVENTS_CHANNEL) == ("event_call", "event_agent")


def test_the_comma_setting_switches_every_message_but_the_agent_facing_ones(
        redis_client: redis.Redis, subscriber: PubSub) -> None:
    pub = publisher(redis_client, "comma")
    pub.call_event("EVENT_HANGUP", **CALL)
    assert receive(subscriber)[1:] == ("event_call",
                                       call_event("EVENT_HANGUP", **CALL).comma())
    pub.agent_call_event("hangup", uuid=UUID, number="18638737767", group="120",
                         extension="1018", level="normal", callin_time="2021-05-30 17:00:02")
    assert receive(subscriber)[1:] == ("event_agent", compact(seed_agent_event("hangup")))
    pub.queue_event("nway_queue_remove", uuid=UUID, number="130****8217", group="120",
                    level="normal", callin_time="2021-05-30 19:16:30")
    assert receive(subscriber)[1:] == (
        "queue_120", f"nway_queue_remove,{UUID},130****8217,120,normal,2021-05-30 19:16:30")
    pub.agent_status("1018", "ready", "2021-05-30 19:16:31")
    assert receive(subscriber)[1:] == ("agent_1018", "1018,ready,2021-05-30 19:16:31")
    pub.cdr(seed_cdr_fields(no_answer_agents=["1011"]), group="120")
    channel, data = receive(subscriber)[1:]
    assert channel == "cdr_120"
    assert data.startswith(f"{UUID},130****8217,120,") and data.endswith(",18,0,{1011}")


def test_cti_ip_defaults_to_the_settings_then_to_this_machine(redis_client: redis.Redis) -> None:
    assert publisher(redis_client).cti_ip == CTI_IP
    own = Publisher(redis_client, EventSettings(cti_ip="")).cti_ip
    assert own == primary_ipv4()
    assert ipaddress.ip_address(own).version == 4
    message = agent_call_event("answered", cti_ip=own, uuid=UUID, number="1", group="120",
                               extension="1018", level="normal", callin_time="")
    assert json.loads(message.json())["cti_ip"] == own


def test_an_unknown_format_is_a_config_error_at_construction(redis_client: redis.Redis) -> None:
    with pytest.raises(ConfigError, match="'xml'"):
        Publisher(redis_client, EventSettings(pubsub_format="xml"))


def test_a_pipeline_queues_the_publish_until_the_caller_executes(
        redis_client: redis.Redis, subscriber: PubSub) -> None:
    pub = publisher(redis_client)
    with redis_client.pipeline() as pipe:
        assert pub.agent_status("1018", "ring", "2021-05-30 17:00:02", pipeline=pipe)
        assert pub.queue_event("nway_queue_add", uuid=UUID, number="130****8217", group="120",
                               level="normal", callin_time="2021-05-30 17:00:01",
                               pipeline=pipe)
        assert len(pipe) == 2
        # A marker published now arrives first: nothing of the pipeline has been sent yet.
        redis_client.publish("agent_marker", "marker")
        assert receive(subscriber)[1:] == ("agent_marker", "marker")
        assert pipe.execute() == [1, 1]  # one subscriber received each
    assert receive(subscriber)[1] == "agent_1018"
    assert receive(subscriber)[1:] == ("queue_120", compact(SEED_QUEUE_ADD))
    assert pub.failed == 0


def test_a_message_that_cannot_be_built_is_counted_not_raised(
        redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="fsapps")
    pub = publisher(redis_client)
    assert pub.cdr(seed_cdr_fields()) is False  # inbound without a group: no channel
    assert pub.call_event("EVENT_NOPE", **CALL) is False
    assert pub.failed == 2
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


def test_redis_down_neither_raises_nor_blocks_calls_and_is_counted(
        redis_client: redis.Redis, redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="fsapps")
    plain = publisher(redis_client)
    fsapps_client = client_for(RedisSettings(url=Secret(redis_server.url), socket_timeout=0.5))
    wrapped = publisher(fsapps_client, "comma")
    redis_server.stop()
    try:
        assert plain.call_event(EventName.EVENT_HANGUP, **CALL) is False
        assert plain.agent_status("1018", "typing", "2021-05-30 17:00:09") is False
        assert plain.failed == 2
        # The fsapps client retries, then raises StoreUnavailable: also logged and counted.
        assert wrapped.queue_event("nway_queue_remove", uuid=UUID, number="1", group="120",
                                   level="normal", callin_time="") is False
        assert wrapped.failed == 1
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 3
        assert "event_call" in errors[0] and "queue_120" in errors[2]
    finally:
        redis_server.start()
        close_clients()
    assert plain.agent_status("1018", "ready", "2021-05-30 17:00:10") is True
    assert plain.failed == 2
