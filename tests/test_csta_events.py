"""CSTA event mapping (fsapps.server.csta.events, fsapps.events.cstafeed): pure functions over
plain data."""

from __future__ import annotations

from fsapps.events.cstafeed import CstaFeed, Leg, change, leg_of
from fsapps.server.csta import events as ev

D = "zhen04.cc"


def record(name: str, **extra: object) -> dict:
    base = {"id": "r1", "name": name, "domain": D, "callId": "c1", "uuid": "u2",
            "device": f"8002@{D}", "localState": "Alerting", "calling": f"8001@{D}",
            "called": f"8002@{D}", "parties": [f"8001@{D}", f"8002@{D}"], "time": 0}
    return {**base, **extra}


def test_delivered_goes_to_every_party_with_seed_fields_in_order() -> None:
    pairs = ev.expand(record("delivered"))
    assert [src for src, _ in pairs] == [f"8001@{D}", f"8002@{D}"]
    own = pairs[1][1]
    assert list(own)[:9] == ["eventName", "eventSrc", "eventTime", "eventType", "serial",
                             "_type", "topics", "namespace", "srcDeviceId"]
    assert own["_type"] == "component.cti.event.DeliveredEvent"
    assert own["topics"] == ["delivered", f"device:8002@{D}", "extension", "csta"]
    assert own["connectionId"] == f"8002@{D}|c1"
    assert own["alertingDevice"] == own["deviceId"] == f"8002@{D}"
    assert own["agentStatus"] == "Ringing" and "agentStatus" not in pairs[0][1]
    assert own["eventType"] == "csta" and own["namespace"] == D
    assert len(own["eventTime"]) == len("2017.03.18 14:13:33") and own["eventTime"][4] == "."


def test_service_initiated_and_originated_only_for_the_caller() -> None:
    for name in ("serviceInitiated", "originated"):
        pairs = ev.expand(record(name, device=f"8001@{D}", localState="Initiate"))
        assert [src for src, _ in pairs] == [f"8001@{D}"]
    event = ev.expand(record("originated", device=f"8001@{D}"))[0][1]
    assert (event["callingDevice"], event["calledDevice"]) == (f"8001@{D}", f"8002@{D}")


def test_transferred_and_conferenced_fields() -> None:
    t = ev.call_event(record("transferred", primaryOldCall="c0", secondaryOldCall="c1",
                             transferringDevice="a", transferredToDevice="b"), "a")
    assert (t["primaryOldCall"], t["secondaryOldCall"], t["transferringDevice"],
            t["transferredToDevice"], t["newCall"]) == ("c0", "c1", "a", "b", "c1")
    c = ev.call_event(record("conferenced", conferencingDevice="a", addedParty="b"), "a")
    assert (c["conferencingDevice"], c["addedParty"]) == ("a", "b")


def test_agent_events() -> None:
    rec = ev.agent_record("agentReady", domain=D, agent_id=f"5002@{D}", device=f"8002@{D}",
                          mode="Ready", ms=1)
    [(src, event)] = ev.expand(rec)
    assert src == f"8002@{D}" and event["eventType"] == "agent"
    assert event["devices"] == {"Voice": f"8002@{D}"} and event["agentMode"] == "Ready"
    assert event["_type"] == "component.cti.event.AgentReadyEvent"
    assert event["topics"] == [f"agent:5002@{D}", "agentReady", f"device:8002@{D}", "agent",
                               "csta"]
    assert ev.mode_event("NotReady") == "agentNotReady"
    assert ev.expand({"name": "somethingNew"}) == []


def test_connection_ids() -> None:
    assert ev.split_connection(f"8001@{D}%7Cc1") == (f"8001@{D}", "c1")
    assert ev.split_connection(f"8001@{D}|c1") == (f"8001@{D}", "c1")
    assert ev.split_connection("c1") == ("", "c1")


def headers(**h: str):
    return lambda name: h.get(name)


def test_leg_of_reads_device_call_and_role() -> None:
    agent = leg_of(headers(**{"Unique-ID": "b", "Call-Direction": "outbound",
                              "variable_fsapps_acd_agent": "1001",
                              "variable_fsapps_acd_call": "a", "variable_domain_name": D}),
                   (D,), "x")
    assert agent == Leg("b", D, f"1001@{D}", "a", True, False, "")
    caller = leg_of(headers(**{"Unique-ID": "a", "Call-Direction": "inbound",
                               "Caller-Caller-ID-Number": "138"}), (D,), D)
    assert caller is not None and caller.device == "138" and caller.call_hint == ""
    # a caller ID naming an extension is still an outside caller unless sofia authenticated it
    posing = leg_of(headers(**{"Unique-ID": "p", "Call-Direction": "inbound",
                               "Caller-Caller-ID-Number": "1002"}), (D,), D)
    assert posing is not None and posing.device == "1002"
    phone = leg_of(headers(**{"Unique-ID": "q", "Call-Direction": "inbound",
                              "Caller-Caller-ID-Number": "Boss", "variable_user_name": "1002",
                              "variable_sip_authorized": "true"}), (D,), D)
    assert phone is not None and phone.device == f"1002@{D}"
    assert leg_of(headers(), (D,), D) is None


def test_a_channel_that_bridged_to_a_user_is_not_that_users_device() -> None:
    """FreeSWITCH sets dialed_user / dialed_domain on the channel that bridges to user/<ext>
    (observed on 1.10.12, tests/switch/test_cti.py): on the caller's channel, or a phone's
    own leg calling another extension, they name whom it called, not its device."""
    caller = leg_of(headers(**{"Unique-ID": "a", "Call-Direction": "inbound",
                               "Caller-Caller-ID-Number": "138",
                               "variable_dialed_user": "1001",
                               "variable_dialed_domain": D}), (D,), D)
    assert caller is not None and caller.device == "138"
    phone = leg_of(headers(**{"Unique-ID": "q", "Call-Direction": "inbound",
                              "Caller-Caller-ID-Number": "1002", "variable_user_name": "1002",
                              "variable_sip_authorized": "true",
                              "variable_dialed_user": "1003"}), (D,), D)
    assert phone is not None and phone.device == f"1002@{D}"
    rung = leg_of(headers(**{"Unique-ID": "b", "Call-Direction": "outbound",
                             "variable_dialed_user": "1003", "variable_originator": "q"}),
                  (D,), D)
    assert rung is not None and rung.device == f"1003@{D}"


def test_state_changes() -> None:
    out = Leg("b", D, "x", "a", True, False, "")
    init = Leg("i", D, "x", "", True, True, "y")
    inbound = Leg("a", D, "c", "", False, False, "")
    assert change("CHANNEL_PROGRESS", out, "") == ("delivered", "Alerting")
    assert change("CHANNEL_PROGRESS_MEDIA", out, "Alerting") is None
    assert change("CHANNEL_ANSWER", out, "Alerting") == ("established", "Connect")
    assert change("CHANNEL_CREATE", init, "") == ("serviceInitiated", "Initiate")
    assert change("CHANNEL_ANSWER", init, "Initiate") == ("originated", "Connect")
    assert change("CHANNEL_ANSWER", inbound, "") is None
    assert change("CHANNEL_HOLD", out, "Connect") == ("held", "Hold")
    assert change("CHANNEL_UNHOLD", out, "Connect") is None
    assert change("CHANNEL_HANGUP_COMPLETE", out, "Connect") == ("connectionCleared", "None")


def test_step_keeps_the_call_hash_and_lists_parties() -> None:
    call: dict[str, str] = {}
    caller = Leg("a", D, f"138@{D}", "", False, False, "")
    agent = Leg("b", D, f"1001@{D}", "a", True, False, "")
    h = headers(**{"Caller-Destination-Number": "7110"})
    assert CstaFeed.step("CHANNEL_CREATE", caller, "a", call, h) is None
    assert call["calling"] == f"138@{D}" and call["called"] == f"7110@{D}"
    CstaFeed.step("CHANNEL_CREATE", agent, "a", call, h)
    rec = CstaFeed.step("CHANNEL_PROGRESS", agent, "a", call, h)
    assert rec is not None and rec["name"] == "delivered"
    assert rec["parties"] == [f"138@{D}", f"1001@{D}"]
    rec = CstaFeed.step("CHANNEL_HANGUP_COMPLETE", agent, "a", call, h)
    assert rec is not None and rec["parties"] == [f"138@{D}", f"1001@{D}"]
    assert "p:b" not in call
