"""The pure side of generic CDRs (fsapps.events.cdr.wants_generic_cdr / leg_from_event /
generic_cdr) and fsapps.events.cdrcalls.CallRecords following a call's events — switch events
as header maps, no switch, no I/O (CallRecords' api calls are collected)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fsapps.events import cdr
from fsapps.events.cdrcalls import CallRecords
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


# ------------------------------------------------------------------------ app drafts --------
def draft(**extra: Any) -> cdr.Draft:
    """nwayacd's draft of a call answered by agent 1001 on leg B1: the handler's own clock
    for the caller (T0+0.2 .. T0+21, no durations, no cause: the switch had not set them)."""
    attempt = cdr.Attempt(1, "1001", T0 + 1, T0 + 2.5, T0 + 21, "answered",
                          "NORMAL_CLEARING", B1)
    record = cdr.Cdr(uuid=A, is_callout=False, a_caller_id_number="13900000001",
                     a_destination_number="7110", a_start=T0 + 0.2, a_answer=T0 + 0.3,
                     a_end=T0 + 21, destination_number="1001", start=T0 + 1,
                     answer=T0 + 2.5, end=T0 + 21, flag=cdr.FLAG_ANSWERED,
                     group_number="110", domain=DOMAIN, attempts=(attempt,), node="node1")
    fields = {"app": "nwayacd", "cdr": record, "started": T0 + 0.2, "party_answered": True,
              "party_leg": B1}
    fields.update(extra)
    return cdr.Draft(**fields)


def own_leg(uuid: str, dest: str, start: float, answer: float | None, end: float | None,
            event: str = "CHANNEL_HANGUP_COMPLETE") -> dict[str, str]:
    return {**leg(uuid, dest, start, answer, end, event), "variable_fsapps_cdr_leg": "nwayacd"}


def test_complete_takes_the_switchs_hangup_fields() -> None:
    """The a-leg fields a handler cannot read (set in the hangup state) come from the
    HANGUP_COMPLETE; the agent's answer from its leg's event; the rest is the draft's."""
    agent = cdr.leg_from_event(own_leg(B1, "1001", 1, 3, 20).get)
    assert agent.own
    record = cdr.complete([draft()], a_leg_complete().get, [agent])
    assert (record.a_start, record.a_answer, record.a_end) == (T0, T0 + 3, T0 + 20)
    assert record.a_durations == (20, 17) and record.a_sip_hangup_disposition == "recv_bye"
    assert record.hangup_cause == "NORMAL_CLEARING"
    assert (record.start, record.answer, record.end) == (T0 + 1, T0 + 3, T0 + 20)
    assert record.flag == cdr.FLAG_ANSWERED and record.group_number == "110"
    [attempt] = record.attempts
    assert (attempt.answer, attempt.end, attempt.transferred) == (T0 + 3, T0 + 20, False)
    # the draft survives its trip through the channel variable
    assert cdr.drafts_from_json(cdr.drafts_to_json([draft()])) == [draft()]
    # no switch fields at all (not a HANGUP_COMPLETE): the draft's own clock
    bare = cdr.complete([draft()], {"Unique-ID": A}.get, [])
    assert (bare.a_start, bare.a_end, bare.a_duration) == (T0 + 0.2, T0 + 21, None)


def test_complete_adds_what_came_after_a_transfer() -> None:
    """Legs no app rang (the transfer's dialplan bridge, a uuid_bridge'd party) and a later
    app's draft on the same channel become transferred attempts, in the order they began; a
    leg the caller called before the app took it is not the transfer's."""
    before = cdr.leg_from_event(leg(B2, "1999", -5, None, -1).get)
    agent = cdr.leg_from_event(own_leg(B1, "1001", 1, 3, 8).get)
    phone = cdr.leg_from_event(leg("c-uuid", "1507", 9, 11, 15).get)
    bridged = cdr.leg_from_bridge({"Event-Name": "CHANNEL_BRIDGE", "Unique-ID": A,
                                   "Other-Leg-Unique-ID": "d-uuid",
                                   "Other-Leg-Destination-Number": "1508",
                                   "Other-Leg-Channel-Created-Time": us(14),
                                   "Other-Leg-Channel-Answered-Time": us(14.5)}.get)
    second = cdr.Attempt(1, "1002", T0 + 16, None, T0 + 19, "answered", "", "e-uuid")
    later = draft(app="nway_bridge", started=T0 + 15.5, party_leg="e-uuid", cdr=replace(
        draft().cdr, destination_number="1002", start=T0 + 16, answer=None,
        attempts=(second,), group_number=""))
    direct = cdr.leg_from_event({**leg("e-uuid", "1002", 16, 17, 19),
                                 "variable_fsapps_cdr_leg": "nway_bridge"}.get)
    record = cdr.complete([draft(), later], a_leg_complete().get,
                          [before, agent, phone, bridged, direct])
    assert record.destination_number == "1001" and record.group_number == "110"
    assert record.end == T0 + 8  # the agent's leg ended at the transfer
    assert [(a.attempt_no, a.extension, a.result, a.transferred, a.answer, a.end)
            for a in record.attempts] == [
        (1, "1001", "answered", False, T0 + 3, T0 + 20),
        (2, "1507", "answered", True, T0 + 11, T0 + 15),
        (3, "1508", "answered", True, T0 + 14.5, T0 + 20),
        (4, "1002", "answered", True, T0 + 17, T0 + 19)]
    assert record.a_durations == (20, 17)


def test_complete_a_waiting_caller_transferred_to_another_queue() -> None:
    """Nobody in the first queue answered; the second queue's agent did: that agent is the
    call's party and the flag says answered; both queues' missed agents are listed."""
    waited = draft(party_answered=False, party_leg="", cdr=replace(
        draft().cdr, destination_number="1001", answer=None, flag=cdr.FLAG_ONE_NO_ANSWER,
        no_answer_agents=("1001",), attempts=(cdr.Attempt(1, "1001", T0 + 1, None, T0 + 5,
                                                          "no_answer", "NO_ANSWER"),)))
    taken = draft(started=T0 + 6, party_leg=B2, cdr=replace(
        draft().cdr, destination_number="2001", start=T0 + 7, answer=None, group_number="120",
        no_answer_agents=("2002",), attempts=(cdr.Attempt(1, "2001", T0 + 7, None, T0 + 21,
                                                          "answered", "", B2),)))
    record = cdr.complete([waited, taken], a_leg_complete().get,
                          [cdr.leg_from_event(own_leg(B2, "2001", 7, 9, 20).get)])
    assert (record.flag, record.destination_number, record.answer) == (
        cdr.FLAG_ANSWERED, "2001", T0 + 9)
    assert record.group_number == "110" and record.no_answer_agents == ("1001", "2002")
    assert [(a.extension, a.transferred) for a in record.attempts] == [
        ("1001", False), ("2001", True)]


def test_call_records_complete_an_apps_draft() -> None:
    """A HANGUP_COMPLETE carrying drafts gets them completed (one pending CDR), never a
    generic one; unreadable drafts are logged and the call gets a generic CDR."""
    ctx: Any = type("Ctx", (), {"settings": settings_for("redis://unused", "dbname=unused")})()
    records = CallRecords(ctx, "node1", lambda cmd, args: "+OK")
    marked = {"variable_fsapps_cdr_by": "nwayacd",
              "variable_fsapps_cdr_draft": cdr.drafts_to_json([draft()])}
    feed(records, {"Event-Name": "CHANNEL_CREATE", "Unique-ID": A},
         own_leg(B1, "1001", 1, None, None, "CHANNEL_CREATE"),
         {"Event-Name": "CHANNEL_BRIDGE", "Unique-ID": A, "Other-Leg-Unique-ID": B1},
         leg(B1, "1001", 1, 3, None, "CHANNEL_ANSWER"),  # (an event without the variable)
         leg("c-uuid", "1507", 9, None, None, "CHANNEL_CREATE"),
         leg("c-uuid", "1507", 9, 11, 15),
         a_leg_complete(**marked))
    record = records.pending.get_nowait()
    assert records.pending.empty() and records.legs == {}
    assert record.group_number == "110" and record.a_durations == (20, 17)
    assert [(a.extension, a.transferred) for a in record.attempts] == [
        ("1001", False), ("1507", True)]
    feed(records, {"Event-Name": "CHANNEL_CREATE", "Unique-ID": A},
         a_leg_complete(**{**marked, "variable_fsapps_cdr_draft": "[{not json"}))
    generic = records.pending.get_nowait()
    assert generic.group_number == "" and generic.a_durations == (20, 17)
