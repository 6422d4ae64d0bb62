"""The pure side of generic CDRs (fsapps.cdr.wants_generic_cdr / leg_from_event / generic_cdr)
and fsapps.cdrcalls.CallRecords following a call's events — switch events as header maps,
no switch, no I/O (CallRecords' api calls are collected)."""

from __future__ import annotations

from typing import Any

from fsapps import cdr
from fsapps.cdrcalls import CallRecords
from tests.acd_support import DOMAIN, settings_for

T0 = 1_700_000_000  # epoch seconds
A, B1, B2 = "a-uuid", "b1-uuid", "b2-uuid"


def us(seconds: float) -> str:
    return str(int((T0 + seconds) * 1_000_000))


class Event:
    def __init__(self, **headers: str) -> None:
        self.headers = headers

    def getHeader(self, name: str) -> str | None:  # noqa: N802 (mod_python's name)
        return self.headers.get(name)


def a_leg_complete(**extra: str) -> dict[str, str]:
    headers = {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": A,
               "Call-Direction": "inbound", "Caller-Caller-ID-Number": "13900000001",
               "Caller-Destination-Number": "51001", "Caller-Channel-Created-Time": us(0),
               "Caller-Channel-Answered-Time": us(3), "Caller-Channel-Hangup-Time": us(20),
               "variable_start_uepoch": us(0), "variable_answer_uepoch": us(3),
               "variable_end_uepoch": us(20), "variable_duration": "20",
               "variable_billsec": "17", "variable_sip_hangup_disposition": "recv_bye",
               "variable_hangup_cause": "NORMAL_CLEARING", "variable_domain_name": DOMAIN}
    headers.update(extra)
    return headers


def leg(uuid: str, dest: str, start: float, answer: float | None, end: float | None,
        event: str = "CHANNEL_HANGUP_COMPLETE") -> dict[str, str]:
    return {"Event-Name": event, "Unique-ID": uuid, "Call-Direction": "outbound",
            "variable_originator": A, "Caller-Destination-Number": dest,
            "Caller-Channel-Created-Time": us(start),
            "Caller-Channel-Answered-Time": us(answer) if answer is not None else "0",
            "Caller-Channel-Hangup-Time": us(end) if end is not None else "0"}


def test_which_hangups_get_a_generic_cdr() -> None:
    assert cdr.wants_generic_cdr(a_leg_complete().get)
    assert not cdr.wants_generic_cdr(leg(B1, "1001", 1, 3, 20).get)  # originated: b-leg
    assert not cdr.wants_generic_cdr(a_leg_complete(variable_fsapps_cdr_by="nwayacd").get)
    assert not cdr.wants_generic_cdr(a_leg_complete(
        variable_other_loopback_leg_uuid="x").get)  # loopback's inbound b side
    assert not cdr.wants_generic_cdr(a_leg_complete(
        **{"Caller-Destination-Number": "fsapps_agent_1001"}).get)  # another node's relay
    assert not cdr.wants_generic_cdr(a_leg_complete(**{"Event-Name": "CHANNEL_DESTROY"}).get)
    # the switch placed it (originate): still a call, a callout
    outbound = a_leg_complete(**{"Call-Direction": "outbound"})
    assert cdr.wants_generic_cdr(outbound.get)
    assert cdr.generic_cdr(outbound.get, node="n", domain=DOMAIN).is_callout


def test_generic_cdr_fields() -> None:
    missed = cdr.leg_from_event(leg(B1, "1001", 1, None, 5).get)
    answered = cdr.leg_from_event(leg(B2, "1002", 5, 8, 25).get)  # reported after the a-leg
    record = cdr.generic_cdr(a_leg_complete().get, node="node1", domain=DOMAIN,
                             legs=[missed, answered], record_file="/rec/a.wav")
    assert record.uuid == A and not record.is_callout
    assert (record.a_caller_id_number, record.a_destination_number) == ("13900000001", "51001")
    assert record.a_durations == (20, 17) and record.a_sip_hangup_disposition == "recv_bye"
    assert record.destination_number == "1002" and record.flag == cdr.FLAG_ANSWERED
    assert (record.start, record.answer, record.end) == (T0 + 5, T0 + 8, T0 + 20)
    assert record.durations == (15, 12)
    assert record.a_record_file == "/rec/a.wav" and record.hangup_cause == "NORMAL_CLEARING"
    assert record.group_number == "" and record.attempts == () and record.node == "node1"
    # the dialplan's own variable wins over the RECORD_START path
    named = cdr.generic_cdr(a_leg_complete(variable_fsapps_record_file="/rec/b.wav").get,
                            node="n", domain=DOMAIN, record_file="/rec/a.wav")
    assert named.a_record_file == "/rec/b.wav"


def test_generic_cdr_flags() -> None:
    nobody = cdr.generic_cdr(a_leg_complete().get, node="n", domain=DOMAIN)
    assert nobody.flag == "" and nobody.destination_number == "" and nobody.start is None
    missed = [cdr.leg_from_event(leg(B1, "1001", 1, None, 5).get),
              cdr.leg_from_event(leg(B2, "1002", 5, None, 9).get)]
    unanswered = cdr.generic_cdr(a_leg_complete().get, node="n", domain=DOMAIN, legs=missed)
    assert unanswered.flag == cdr.FLAG_NOT_CONNECTED
    assert unanswered.destination_number == "1002" and unanswered.answer is None
    assert unanswered.durations == (4, 0)
    message = unanswered.message_fields()
    assert message["flag"] == "未接通" and message["answer_stamp"] == ""


def feed(records: CallRecords, *events: dict[str, str]) -> None:
    for headers in events:
        records.on_event(Event(**headers))


def test_call_records_follow_a_call() -> None:
    """CallRecords: the legs of the call and its first recording (set as fsapps_record_file
    on the channel through uuid_setvar); one pending CDR when the a-leg's hangup completes;
    legs reported afterwards leave nothing behind."""
    ctx: Any = type("Ctx", (), {"settings": settings_for("redis://unused", "dbname=unused")})()
    api: list[tuple[str, str]] = []
    records = CallRecords(ctx, "node1", lambda cmd, args: api.append((cmd, args)) or "+OK")
    feed(records,
         {"Event-Name": "CHANNEL_CREATE", "Unique-ID": A},
         leg(B1, "1001", 1, None, None, "CHANNEL_CREATE"),
         {"Event-Name": "RECORD_START", "Unique-ID": A, "Record-File-Path": "/rec/a.wav"},
         {"Event-Name": "RECORD_START", "Unique-ID": A, "Record-File-Path": "/rec/a2.wav",
          "variable_fsapps_record_file": "/rec/a.wav"},
         leg(B1, "1001", 1, 3, None, "CHANNEL_ANSWER"),
         a_leg_complete(),
         leg(B1, "1001", 1, 3, 21))
    assert api == [("uuid_setvar", f"{A} fsapps_record_file /rec/a.wav")]
    record = records.pending.get_nowait()
    assert records.pending.empty()
    assert record.destination_number == "1001" and record.flag == cdr.FLAG_ANSWERED
    assert record.end == T0 + 20 and record.a_record_file == "/rec/a.wav"
    assert record.domain == DOMAIN
    assert records.legs == {} and records.recordings == {}
    # a call an app recorded itself: nothing pending
    feed(records, {"Event-Name": "CHANNEL_CREATE", "Unique-ID": A},
         a_leg_complete(variable_fsapps_cdr_by="nway_bridge"))
    assert records.pending.empty() and records.legs == {}
