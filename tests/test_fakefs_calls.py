"""Fidelity of fakefs' simulated switch: events, the XML dialplan, bridge/originate outcomes,
dial strings, applications and api commands (shared/FREESWITCH.md).

time_scale 0.05: 5 s of switch time take 250 ms. Tests wait on events and conditions.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # makes fsapps_testapps importable

from fsapps_testapps import state

from fakefs import Behaviour, Channel, Switch
from fakefs.events import Event
from fakefs.media import BRIDGE_LEAD_US
from fakefs.scenario import DIALPLAN_DIR, wait_until

SCALE = 0.05
TIMEOUT = 5.0
DOMAIN = "127.0.0.1"

# Header names of seed 000's full event example that every channel event carries.
CHANNEL_EVENT_HEADERS = (
    "Event-Name", "Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname",
    "FreeSWITCH-IPv4", "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT",
    "Event-Date-Timestamp", "Event-Calling-File", "Event-Calling-Function",
    "Event-Calling-Line-Number", "Event-Sequence", "Channel-State", "Channel-Call-State",
    "Channel-State-Number", "Channel-Name", "Unique-ID", "Call-Direction",
    "Presence-Call-Direction", "Channel-HIT-Dialplan", "Channel-Presence-ID",
    "Channel-Call-UUID", "Answer-State", "Channel-Read-Codec-Name", "Channel-Read-Codec-Rate",
    "Channel-Read-Codec-Bit-Rate", "Channel-Write-Codec-Name", "Channel-Write-Codec-Rate",
    "Channel-Write-Codec-Bit-Rate", "Caller-Direction", "Caller-Logical-Direction",
    "Caller-Username", "Caller-Dialplan", "Caller-Caller-ID-Name", "Caller-Caller-ID-Number",
    "Caller-Orig-Caller-ID-Name", "Caller-Orig-Caller-ID-Number", "Caller-Network-Addr",
    "Caller-ANI", "Caller-Destination-Number", "Caller-Unique-ID", "Caller-Source",
    "Caller-Context", "Caller-Channel-Name", "Caller-Profile-Index",
    "Caller-Profile-Created-Time", "Caller-Channel-Created-Time",
    "Caller-Channel-Answered-Time", "Caller-Channel-Progress-Time",
    "Caller-Channel-Progress-Media-Time", "Caller-Channel-Hangup-Time",
    "Caller-Channel-Transfer-Time", "Caller-Channel-Resurrect-Time",
    "Caller-Channel-Bridged-Time", "Caller-Channel-Last-Hold", "Caller-Channel-Hold-Accum",
    "Caller-Screen-Bit", "Caller-Privacy-Hide-Name", "Caller-Privacy-Hide-Number",
)


# ---------------------------------------------------------------- helpers --------------------

def act(app: str, data: str = "", inline: bool = False) -> str:
    data = data.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    extra = ' inline="true"' if inline else ""
    return f'<action application="{app}" data="{data}"{extra}/>'


def anti(app: str, data: str = "") -> str:
    return f'<anti-action application="{app}" data="{data}"/>'


def cond(field: str, expression: str, body: str = "", brk: str = "") -> str:
    extra = f' break="{brk}"' if brk else ""
    return f'<condition field="{field}" expression="{expression}"{extra}>{body}</condition>'


def ext(body: str, name: str = "x", cont: bool = False) -> str:
    extra = ' continue="true"' if cont else ""
    return f'<extension name="{name}"{extra}>{body}</extension>'


def dest(number: str, body: str, **kwargs: object) -> str:
    return ext(cond("destination_number", f"^{number}$", body), name=f"ext{number}", **kwargs)  # type: ignore[arg-type]


def load(switch: Switch, *extensions: str, context: str = "default") -> None:
    switch.dialplan.load_text("<include>" + "".join(extensions) + "</include>", context)


pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads", "clean_testapps_state")


def phone(switch: Switch, ext: str, behaviour: Behaviour | None = None) -> None:
    switch.add_user(ext, DOMAIN, password="pw")
    assert switch.register(ext, DOMAIN, password="pw", behaviour=behaviour).ok


def finished(channel: Channel, timeout: float = TIMEOUT) -> None:
    assert channel.done.wait(timeout), f"{channel} did not end"


def events_of(switch: Switch, uuid: str) -> list[Event]:
    return [e for e in list(switch.bus.history) if e.headers.get("Unique-ID") == uuid]


def names(events: list[Event]) -> list[str]:
    return [e.name for e in events]


def legs(switch: Switch, caller: Channel) -> list[Channel]:
    return [c for c in list(switch.all_channels.values()) if c.originator == caller.uuid]


def bridge_result() -> dict:
    wait_until(lambda: state.find("bridge"), TIMEOUT, "the bridge handler finished")
    return state.find("bridge")[-1]


_numbers = iter(range(5000, 6000))


def bridge_call(switch: Switch, dialstring: str, *, prefix: str = "",
                behaviour: Behaviour | None = None) -> Channel:
    """A call (to a new extension each time) whose dialplan runs ``prefix`` actions and then
    bridges from Python (fsapps_testapps.bridge records what the handler saw)."""
    number = str(next(_numbers))
    load(switch, dest(number, prefix + act("python", f"fsapps_testapps.bridge {dialstring}")))
    return switch.place_call("1000", number, behaviour=behaviour)


# ---------------------------------------------------------------- THE must-show test ---------

def test_call_into_fsapps_diag_through_the_project_dialplan(
        make_switch: Callable[..., Switch]) -> None:
    switch = make_switch("fsdiag", dialplan_dir=DIALPLAN_DIR)
    channel = switch.place_call("1000", "9196", behaviour=Behaviour(dtmf=((300, "42#"),)))
    finished(channel)

    mine = events_of(switch, channel.uuid)
    wanted = ["CHANNEL_CREATE", "CHANNEL_EXECUTE", "CHANNEL_ANSWER", "DTMF", "CHANNEL_HANGUP",
              "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"]
    order = [n for n in names(mine) if n in wanted]
    assert order[0] == "CHANNEL_CREATE" and order[-2:] == ["CHANNEL_HANGUP_COMPLETE",
                                                           "CHANNEL_DESTROY"]
    positions = [order.index(n) for n in wanted]
    assert positions == sorted(positions), order
    assert order.count("DTMF") == 3
    executes = [e for e in mine if e.name == "CHANNEL_EXECUTE"]
    assert [(e.headers["Application"], e.headers["Application-Data"]) for e in executes] == [
        ("set", "fsapps_dialled=9196"), ("python", "fsapps.diag 4")]
    python_exec = executes[1]
    answer = next(e for e in mine if e.name == "CHANNEL_ANSWER")
    assert mine.index(python_exec) < mine.index(answer)

    complete = next(e for e in mine if e.name == "CHANNEL_HANGUP_COMPLETE")
    h = complete.headers
    assert h["variable_fsapps_diag"] == "ok"
    assert h["variable_fsapps_diag_digits"] == "42"
    assert h["variable_fsapps_dialled"] == "9196"
    assert h["variable_hangup_cause"] == "NORMAL_CLEARING"
    assert int(h["variable_duration"]) >= 0 and int(h["variable_billsec"]) >= 0
    assert h["Hangup-Cause"] == "NORMAL_CLEARING"

    for event in mine:
        missing = [k for k in CHANNEL_EVENT_HEADERS if k not in event.headers]
        assert not missing, f"{event.name} lacks {missing}"
        h = event.headers
        assert h["Core-UUID"] == switch.core_uuid
        assert h["FreeSWITCH-Hostname"] == h["FreeSWITCH-Switchname"] == "fsdiag"
        assert h["FreeSWITCH-IPv4"] == switch.ipv4
        assert h["Unique-ID"] == h["Caller-Unique-ID"] == channel.uuid
        assert h["Caller-Caller-ID-Number"] == "1000"
        assert h["Caller-Destination-Number"] == "9196"
        assert h["Caller-Context"] == "default"
        assert h["Call-Direction"] == "inbound"
    sequences = [int(e.headers["Event-Sequence"]) for e in mine]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    stamps = [int(e.headers["Event-Date-Timestamp"]) for e in mine]
    assert stamps == sorted(stamps)
    by_name = {e.name: e.headers for e in mine}
    assert by_name["CHANNEL_CREATE"]["Answer-State"] == "ringing"
    assert by_name["CHANNEL_ANSWER"]["Answer-State"] == "answered"
    assert by_name["CHANNEL_HANGUP"]["Answer-State"] == "hangup"
    assert by_name["CHANNEL_HANGUP"]["Channel-State"] == "CS_HANGUP"
    assert by_name["CHANNEL_HANGUP_COMPLETE"]["Channel-State"] == "CS_REPORTING"
    assert by_name["CHANNEL_DESTROY"]["Channel-State"] == "CS_DESTROY"
    assert by_name["DTMF"]["DTMF-Digit"] in "42#"
    assert not switch.python_errors
    assert channel.uuid not in switch.channels


# ---------------------------------------------------------------- dialplan executor ----------

def test_dialplan_captures_anti_actions_and_and_ed_conditions(switch: Switch) -> None:
    load(switch,
         ext(cond("destination_number", "^(1)(\\d+)$", act("set", "first=$1") + act(
             "set", "rest=$2"))
             + cond("caller_id_number", "^1000$", act("set", "and_ok=yes"))
             + cond("destination_number", "^nope$", act("set", "never=1")
                    + anti("set", "anti=ran")), name="a"))
    channel = switch.place_call("1000", "1234")
    finished(channel)
    assert (channel.get("first"), channel.get("rest")) == ("1", "234")
    assert channel.get("and_ok") == "yes" and channel.get("anti") == "ran"
    assert channel.get("never") is None


def test_dialplan_break_modes_and_continue(switch: Switch) -> None:
    load(switch,
         # on-false (default): the failing condition stops this extension
         ext(cond("destination_number", "^2000$")
             + cond("caller_id_number", "^nobody$", act("set", "a=1"))
             + cond("destination_number", "^2000$", act("set", "b=1")), name="onfalse"),
         # on-true: a matching condition stops the extension
         ext(cond("destination_number", "^2000$", act("set", "c=1"), brk="on-true")
             + cond("destination_number", "^2000$", act("set", "d=1")), name="ontrue",
             cont=True),
         # never: a failing condition does not stop the next one
         ext(cond("caller_id_number", "^nobody$", act("set", "e=1"), brk="never")
             + cond("destination_number", "^2000$", act("set", "f=1")), name="never",
             cont=True),
         # always: stops after the first condition whatever it gave
         ext(cond("destination_number", "^2000$", act("set", "g=1"), brk="always")
             + cond("destination_number", "^2000$", act("set", "h=1")), name="always"),
         ext(cond("destination_number", "^2000$", act("set", "after_always=1")), name="last"))
    channel = switch.place_call("1000", "2000")
    finished(channel)
    got = {k: channel.get(k) for k in "abcdefgh"}
    assert got == {"a": None, "b": None, "c": "1", "d": None, "e": None, "f": "1", "g": "1",
                   "h": None}
    # "always" ended with a match, so the hunt stopped there
    assert channel.get("after_always") is None


def test_dialplan_inline_variables_and_fields(switch: Switch) -> None:
    load(switch,
         ext(cond("destination_number", "^3000$",
                  act("set", "flag=on", inline=True) + act("set", "late=1")), name="i",
             cont=True),
         ext(cond("${flag}", "^on$", act("set", "saw_inline=yes"))
             + cond("${late}", "^$", act("set", "late_not_yet=yes")), name="j", cont=True),
         # a field that is not a caller-profile field reads as "" (use ${var} for variables)
         ext(cond("flag", "^$", act("set", "plain_field_empty=yes")), name="k"))
    channel = switch.place_call("1000", "3000")
    finished(channel)
    assert channel.get("saw_inline") == "yes"
    assert channel.get("late_not_yet") == "yes"
    assert channel.get("plain_field_empty") == "yes"


def test_no_route_and_end_of_dialplan(switch: Switch) -> None:
    load(switch, dest("3100", act("answer") + act("set", "x=1")))
    nowhere = switch.place_call("1000", "9999")
    finished(nowhere)
    assert nowhere.hangup_cause == "NO_ROUTE_DESTINATION"
    done = switch.place_call("1000", "3100")
    finished(done)
    assert done.hangup_cause == "NORMAL_CLEARING"
    assert done.get("x") == "1"


def test_transfer_app_rehunts(switch: Switch) -> None:
    load(switch, dest("3200", act("set", "went=3200") + act("transfer", "3201")
                      + act("set", "not_here=1")),
         dest("3201", act("set", "arrived=yes")))
    load(switch, dest("3300", act("set", "other_context=yes")), context="other")
    load(switch, dest("3202", act("transfer", "3300 XML other")))
    channel = switch.place_call("1000", "3200")
    finished(channel)
    assert (channel.get("went"), channel.get("arrived"), channel.get("not_here")) == (
        "3200", "yes", None)
    assert channel.destination_number == "3201"
    other = switch.place_call("1000", "3202")
    finished(other)
    assert other.get("other_context") == "yes" and other.context == "other"


# ---------------------------------------------------------------- bridge outcomes -------------

def test_bridge_answered_then_hung_up(switch: Switch) -> None:
    phone(switch, "1001", Behaviour(answer_after_ms=100, hangup_after_ms=500))
    caller = bridge_call(switch, "user/1001")
    seen = bridge_result()
    assert seen["originate_disposition"] == "SUCCESS"
    assert seen["bridge_hangup_cause"] == "NORMAL_CLEARING"
    assert seen["last_bridge_hangup_cause"] == "NORMAL_CLEARING"
    assert seen["DIALSTATUS"] == "SUCCESS"
    assert seen["hangup_cause"] is None and seen["api_cause"] == "NONE"
    assert seen["ready"] is True
    finished(caller)
    [agent] = legs(switch, caller)
    assert agent.hangup_cause == "NORMAL_CLEARING"
    assert {"CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE"} <= set(names(events_of(switch, caller.uuid)))


def test_bridge_answered_then_the_caller_hangs_up(switch: Switch) -> None:
    """The caller ends the bridge: the callee's cause is bridge_hangup_cause, but the caller's
    last_bridge_hangup_cause stays unset (switch_channel_perform_hangup sets it on the partner
    of the channel hanging up: here the callee). As a real 1.10.12 showed
    (tests/switch/test_fidelity.py test_a_leg_variables_after_a_bridge)."""
    phone(switch, "1001", Behaviour(answer_after_ms=100))
    caller = bridge_call(switch, "user/1001",
                         behaviour=Behaviour(hangup_after_bridge_ms=500))
    seen = bridge_result()
    assert seen["originate_disposition"] == "SUCCESS" and seen["DIALSTATUS"] == "SUCCESS"
    assert seen["bridge_hangup_cause"] == "NORMAL_CLEARING"
    assert seen["last_bridge_hangup_cause"] is None
    assert seen["last_bridge_to"] == seen["bridge_uuid"]
    assert seen["hangup_cause"] is None and seen["ready"] is False
    finished(caller)
    [agent] = legs(switch, caller)
    assert agent.hangup_cause == "NORMAL_CLEARING"
    assert agent.get("last_bridge_hangup_cause") == "NORMAL_CLEARING"  # the caller's cause


def test_bridge_never_answered_times_out_on_a_whole_second_timer(switch: Switch) -> None:
    phone(switch, "1001", Behaviour(answer_after_ms=None))
    caller = bridge_call(switch, "{originate_timeout=5}user/1001")
    seen = bridge_result()
    assert seen["originate_disposition"] == "NO_ANSWER"
    assert seen["bridge_hangup_cause"] is None
    assert seen["last_bridge_hangup_cause"] == "NO_ANSWER"
    assert seen["DIALSTATUS"] == "NOANSWER"
    assert seen["hangup_cause"] is None and seen["api_cause"] == "NONE"
    assert seen["ready"] is True                      # NO_ANSWER never hangs the caller up
    assert 4.0 * SCALE - 0.01 <= seen["elapsed"] <= 4.6 * SCALE + 0.15
    finished(caller)
    [agent] = legs(switch, caller)
    assert agent.hangup_cause == "NO_ANSWER"


def test_bridge_busy_hangs_the_caller_up_unless_continue_on_fail(switch: Switch) -> None:
    phone(switch, "1001", Behaviour(fail_with="USER_BUSY"))
    caller = bridge_call(switch, "user/1001")
    seen = bridge_result()
    assert seen["originate_disposition"] == "USER_BUSY"
    assert seen["bridge_hangup_cause"] is None
    assert seen["last_bridge_hangup_cause"] == "USER_BUSY"
    assert seen["DIALSTATUS"] == "BUSY"
    assert seen["ready"] is False                     # bridge hung the caller up itself
    assert seen["hangup_cause"] is None and seen["api_cause"] == "NONE"
    finished(caller)
    assert caller.hangup_cause == "USER_BUSY"
    assert caller.get("hangup_cause") == "USER_BUSY"  # set by the hangup state, afterwards


@pytest.mark.parametrize("how", ["self", "caller"])
def test_hangup_state_variables_only_after_the_handler(switch: Switch, how: str) -> None:
    """FreeSWITCH sets hangup_cause, the timestamps (answer_uepoch, ...), duration, billsec
    and sip_hangup_disposition in the channel's hangup state, which runs after the handler
    returns: a handler reads None for them after session.hangup() or the caller's hangup;
    the channel and its CHANNEL_HANGUP_COMPLETE have them (CHANNEL_HANGUP does not). Except
    mod_sofia's recv_bye: it sets it itself just after the caller's BYE hung the channel up,
    so a handler reading it once ready() turned false usually has it (it may be first), and
    has it a moment later (tests/switch/test_fidelity.py, the same app)."""
    number = {"self": "5990", "caller": "5991"}[how]
    load(switch, dest(number, act("python", f"fsapps_testapps.hangupvars {how}")))
    caller = switch.place_call("1000", number, behaviour=Behaviour(
        hangup_after_ms=1500 if how == "caller" else None))
    finished(caller)
    seen = wait_until(lambda: state.find("hangupvars"), TIMEOUT, "the handler's record")[-1]
    assert seen["ready"] is False
    assert seen["sip_hangup_disposition"] in ((None, "recv_bye") if how == "caller" else (None,))
    assert seen["later"]["sip_hangup_disposition"] == ("recv_bye" if how == "caller" else None)
    for name in ("hangup_cause", "hangup_cause_q850", "start_uepoch", "answer_uepoch",
                 "answer_epoch", "end_uepoch", "duration", "billsec"):
        assert seen[name] is None, (name, seen[name])
        assert seen["later"][name] is None, (name, seen["later"][name])
    assert caller.get("hangup_cause") == "NORMAL_CLEARING"
    assert int(caller.get("answer_uepoch") or 0) > 0 and caller.get("billsec") is not None
    assert caller.get("sip_hangup_disposition") == ("send_bye" if how == "self" else "recv_bye")
    events = {e.name: e.headers for e in events_of(switch, caller.uuid)}
    complete = events["CHANNEL_HANGUP_COMPLETE"]
    assert complete["variable_answer_uepoch"] == caller.get("answer_uepoch")
    assert complete["variable_billsec"] == caller.get("billsec")
    assert complete["variable_hangup_cause"] == "NORMAL_CLEARING"
    assert complete["variable_sip_hangup_disposition"] == caller.get("sip_hangup_disposition")
    assert "variable_billsec" not in events["CHANNEL_HANGUP"]
    assert "variable_hangup_cause" not in events["CHANNEL_HANGUP"]
    assert "variable_sip_hangup_disposition" not in events["CHANNEL_HANGUP"]
    assert events["CHANNEL_HANGUP"]["Hangup-Cause"] == "NORMAL_CLEARING"


@pytest.mark.parametrize("setting", ["true", "NO_ANSWER,USER_BUSY", "user_busy", "NO_ANSWER,17"])
def test_bridge_busy_with_continue_on_fail(switch: Switch, setting: str) -> None:
    phone(switch, "1001", Behaviour(fail_with="USER_BUSY"))
    bridge_call(switch, "user/1001", prefix=act("set", f"continue_on_fail={setting}"))
    seen = bridge_result()
    assert seen["originate_disposition"] == "USER_BUSY" and seen["ready"] is True


def test_continue_on_fail_list_without_the_cause(switch: Switch) -> None:
    phone(switch, "1001", Behaviour(fail_with="CALL_REJECTED"))
    bridge_call(switch, "user/1001", prefix=act("set", "continue_on_fail=USER_BUSY"))
    seen = bridge_result()
    assert seen["originate_disposition"] == "CALL_REJECTED"
    assert seen["DIALSTATUS"] == "CHANUNAVAIL"
    assert seen["ready"] is False


@pytest.mark.parametrize(("registered", "dialled", "cause"), [
    (False, "user/1001", "USER_NOT_REGISTERED"),
    (True, "user/7777", "SUBSCRIBER_ABSENT"),
])
def test_bridge_to_unreachable_users(switch: Switch, registered: bool, dialled: str,
                                     cause: str) -> None:
    switch.add_user("1001", DOMAIN, password="pw")
    if registered:
        phone(switch, "1002")
    caller = bridge_call(switch, dialled, prefix=act("set", "continue_on_fail=true"))
    seen = bridge_result()
    assert seen["originate_disposition"] == cause
    assert seen["last_bridge_hangup_cause"] == cause
    assert seen["ready"] is True
    # no channel is created for a user that cannot be reached
    assert legs(switch, caller) == []
    creates = [e for e in switch.bus.events("CHANNEL_CREATE")
               if e.headers["Unique-ID"] != caller.uuid]
    assert creates == []


def test_caller_hangs_up_while_the_agent_rings(switch: Switch) -> None:
    phone(switch, "1001", Behaviour(answer_after_ms=None))
    caller = bridge_call(switch, "user/1001", behaviour=Behaviour(abandon_after_ms=500))
    seen = bridge_result()
    assert seen["originate_disposition"] == "ORIGINATOR_CANCEL"
    assert seen["ready"] is False
    finished(caller)
    [agent] = legs(switch, caller)
    finished(agent)
    assert agent.hangup_cause == "ORIGINATOR_CANCEL"
    assert caller.hangup_cause == "NORMAL_CLEARING"


# ---------------------------------------------------------------- dial strings ----------------

def test_global_and_per_leg_variables_and_lose_race(switch: Switch) -> None:
    phone(switch, "1001", Behaviour(answer_after_ms=400))
    phone(switch, "1002", Behaviour(answer_after_ms=100, hangup_after_ms=200))
    caller = bridge_call(switch, "{team=blue,origination_caller_id_number=555}"
                                 "[leg=a]user/1001,[leg=b]user/1002")
    seen = bridge_result()
    assert seen["originate_disposition"] == "SUCCESS"
    finished(caller)
    by_user = {c.get("dialed_user"): c for c in legs(switch, caller)}
    assert set(by_user) == {"1001", "1002"}
    assert {c.get("team") for c in by_user.values()} == {"blue"}
    assert by_user["1001"].get("leg") == "a" and by_user["1002"].get("leg") == "b"
    assert by_user["1001"].hangup_cause == "LOSE_RACE"
    assert by_user["1002"].caller_id_number == "555"


def test_sequential_failover(switch: Switch) -> None:
    phone(switch, "1001", Behaviour(fail_with="USER_BUSY"))
    phone(switch, "1002", Behaviour(answer_after_ms=100, hangup_after_ms=100))
    caller = bridge_call(switch, "user/1001|user/1002")
    seen = bridge_result()
    assert seen["originate_disposition"] == "SUCCESS"
    finished(caller)
    results = sorted((c.get("dialed_user"), c.hangup_cause) for c in legs(switch, caller))
    assert results == [("1001", "USER_BUSY"), ("1002", "NORMAL_CLEARING")]


@pytest.mark.parametrize("ignore", [False, True])
def test_early_media_relayed_unless_ignored(switch: Switch, ignore: bool) -> None:
    phone(switch, "1001", Behaviour(early_media=True, ring_after_ms=50, answer_after_ms=600,
                                    hangup_after_ms=100))
    prefix = act("set", "ignore_early_media=true") if ignore else ""
    caller = bridge_call(switch, "user/1001", prefix=prefix)
    bridge_result()
    finished(caller)
    got = names(events_of(switch, caller.uuid))
    assert ("CHANNEL_PROGRESS_MEDIA" in got) is not ignore


def ringing(switch: Switch, caller: Channel) -> Channel:
    def leg() -> Channel | None:
        found = [c for c in legs(switch, caller) if "progress" in c.times and not c.answered]
        return found[0] if found else None
    found: Channel = wait_until(leg, TIMEOUT, "the leg ringing")
    return found


@pytest.mark.parametrize("answered", [False, True])
def test_ringback_while_the_leg_rings(switch: Switch, answered: bool) -> None:
    """switch_ivr_originate: once a leg rings, the caller hears ``ringback`` (an unanswered
    caller is given early media for it), or ``transfer_ringback`` when it is answered ("a
    bridge after an answer is a transfer"); it ends when the bridge does."""
    phone(switch, "1001", Behaviour(answer_after_ms=None))
    number = str(next(_numbers))
    load(switch, dest(number, (act("answer") if answered else "")
                      + act("set", "ringback=/r/ring.wav")
                      + act("set", "transfer_ringback=/r/transfer.wav")
                      + act("bridge", "user/1001")))
    caller = switch.place_call("1000", number)
    leg = ringing(switch, caller)
    want = "media:/r/transfer.wav" if answered else "media:/r/ring.wav"
    wait_until(lambda: want in switch.hears(caller.uuid), TIMEOUT, "the caller hearing ringback")
    assert switch.hears(caller.uuid) == {want}
    assert "progress_media" in caller.times or answered
    switch.answer(leg)
    wait_until(lambda: leg.uuid in switch.hears(caller.uuid), TIMEOUT, "the bridge")
    assert switch.hears(caller.uuid) == {leg.uuid}
    switch.hangup(caller)
    finished(caller)


def test_ringback_falls_back_and_is_silent_without_either_variable(switch: Switch) -> None:
    phone(switch, "1001", Behaviour(answer_after_ms=None))
    number = str(next(_numbers))
    load(switch, dest(number, act("answer") + act("set", "ringback=/r/ring.wav")
                      + act("bridge", "user/1001")))
    caller = switch.place_call("1000", number)
    ringing(switch, caller)
    # answered, no transfer_ringback: ringback is the fallback (switch_ivr_originate)
    wait_until(lambda: "media:/r/ring.wav" in switch.hears(caller.uuid), TIMEOUT, "ringback")
    switch.hangup(caller)
    finished(caller)
    number = str(next(_numbers))
    load(switch, dest(number, act("answer") + act("bridge", "user/1001")))
    caller = switch.place_call("1000", number)
    ringing(switch, caller)
    assert switch.hears(caller.uuid) == set()
    switch.hangup(caller)
    finished(caller)


def test_malformed_dial_string(switch: Switch) -> None:
    phone(switch, "1001")
    caller = bridge_call(switch, "{a=1user/1001", prefix=act("set", "continue_on_fail=true"))
    seen = bridge_result()
    assert seen["originate_disposition"] not in (None, "SUCCESS")
    assert legs(switch, caller) == []
    assert switch.api("originate {a=1user/1001 &park()").startswith("-ERR")


def test_gateways(switch: Switch) -> None:
    switch.add_gateway("gw1", Behaviour(answer_after_ms=100, hangup_after_ms=100))
    switch.add_gateway("gwdown", up=False)
    caller = bridge_call(switch, "sofia/gateway/gw1/5551234")
    assert bridge_result()["originate_disposition"] == "SUCCESS"
    finished(caller)
    [leg] = legs(switch, caller)
    assert leg.name == "sofia/gateway/gw1/5551234"
    assert leg.destination_number == "5551234" and leg.get("sip_gateway_name") == "gw1"
    for gateway, cause in (("nosuchgw", "INVALID_GATEWAY"), ("gwdown", "GATEWAY_DOWN")):
        state.reset()
        caller = bridge_call(switch, f"sofia/gateway/{gateway}/5551234",
                             prefix=act("set", "continue_on_fail=true"))
        assert bridge_result()["originate_disposition"] == cause
        assert legs(switch, caller) == []


def test_loopback_runs_the_dialplan(switch: Switch) -> None:
    load(switch, dest("7000", act("answer") + act("set", "in_loopback=yes")
                      + act("sleep", "2000")))
    caller = bridge_call(switch, "loopback/7000")
    seen = bridge_result()
    assert seen["originate_disposition"] == "SUCCESS"
    finished(caller)
    b_legs = [c for c in switch.all_channels.values() if c.name == "loopback/7000-b"]
    assert len(b_legs) == 1 and b_legs[0].get("in_loopback") == "yes"


def test_error_endpoint(switch: Switch) -> None:
    caller = bridge_call(switch, "error/USER_BUSY")
    assert bridge_result()["originate_disposition"] == "USER_BUSY"
    finished(caller)
    assert caller.hangup_cause == "USER_BUSY"
    assert legs(switch, caller) == []


# ---------------------------------------------------------------- applications ---------------

def test_answer_pre_answer_playback_tone_and_hangup_cause(switch: Switch) -> None:
    switch.media_durations["/sounds/welcome.wav"] = 2000
    load(switch, dest("8000", act("pre_answer") + act("answer")
                      + act("playback", "/sounds/welcome.wav")
                      + act("playback", "tone_stream://%(100,0,440)")
                      + act("sleep", "1000") + act("hangup", "USER_BUSY")))
    started = time.monotonic()
    channel = switch.place_call("1000", "8000")
    finished(channel)
    assert time.monotonic() - started >= (2000 + 1000) / 1000 * SCALE * 0.9
    got = names(events_of(switch, channel.uuid))
    assert got.index("CHANNEL_PROGRESS_MEDIA") < got.index("CHANNEL_ANSWER")
    plays = [e.headers["Playback-File-Path"] for e in switch.bus.events("PLAYBACK_START")]
    assert plays == ["/sounds/welcome.wav", "tone_stream://%(100,0,440)"]
    assert channel.hangup_cause == "USER_BUSY"
    complete = switch.bus.events("CHANNEL_HANGUP_COMPLETE")[-1]
    assert complete.headers["variable_hangup_cause"] == "USER_BUSY"


def test_playback_before_answer_is_early_media(switch: Switch) -> None:
    load(switch, dest("8005", act("playback", "tone_stream://%(100,0,440)")
                      + act("hangup", "17")))
    channel = switch.place_call("1000", "8005")
    finished(channel)
    got = names(events_of(switch, channel.uuid))
    assert got.index("CHANNEL_PROGRESS_MEDIA") < got.index("PLAYBACK_START")
    assert "CHANNEL_ANSWER" not in got
    assert channel.hangup_cause == "USER_BUSY"        # a Q.850 number names its cause


@pytest.mark.parametrize(("given", "reported"), [
    ("user_busy", "USER_BUSY"), ("21", "CALL_REJECTED"), ("NO_SUCH_CAUSE", "NONE")])
def test_hangup_cause_names(switch: Switch, given: str, reported: str) -> None:
    load(switch, dest("8006", act("answer") + act("hangup", given)))
    channel = switch.place_call("1000", "8006")
    finished(channel)
    assert channel.hangup_cause == reported
    complete = switch.bus.events("CHANNEL_HANGUP_COMPLETE")[-1].headers
    assert complete["variable_hangup_cause"] == complete["Hangup-Cause"] == reported


def test_local_stream_plays_until_uuid_break(switch: Switch) -> None:
    load(switch, dest("8001", act("answer") + act("playback", "local_stream://moh")
                      + act("set", "after_moh=yes") + act("park")))
    channel = switch.place_call("1000", "8001")
    switch.bus.wait_for(lambda e: e.name == "PLAYBACK_START", TIMEOUT)
    assert switch.hears(channel.uuid) == {"media:local_stream://moh"}
    assert channel.get("after_moh") is None
    assert switch.api(f"uuid_break {channel.uuid}") == "+OK\n"
    wait_until(lambda: channel.get("after_moh") == "yes", TIMEOUT, "playback broken")
    assert switch.hears(channel.uuid) == set()
    assert switch.api(f"uuid_kill {channel.uuid}") == "+OK\n"
    finished(channel)


@pytest.mark.parametrize("limit, stops", [("1", False), ("2", True)])
def test_playback_timeout_sec_counts_from_two_seconds(switch: Switch, limit: str,
                                                      stops: bool) -> None:
    """switch_ivr_play_file tests atoi(playback_timeout_sec) > 1: a 1 s limit is no limit
    (observed on 1.10.12: a 1 s segment of hold music played until uuid_break)."""
    load(switch, dest("8001", act("answer") + act("set", f"playback_timeout_sec={limit}")
                      + act("playback", "local_stream://moh") + act("set", "after_moh=yes")
                      + act("park")))
    channel = switch.place_call("1000", "8001")
    switch.bus.wait_for(lambda e: e.name == "PLAYBACK_START", TIMEOUT)
    if stops:
        wait_until(lambda: channel.get("after_moh") == "yes", TIMEOUT, "playback timed out")
    else:
        time.sleep(switch.scaled(1500))  # past the 1 s a limit would have stopped it at
        assert channel.get("after_moh") is None
        assert switch.api(f"uuid_break {channel.uuid}") == "+OK\n"
        wait_until(lambda: channel.get("after_moh") == "yes", TIMEOUT, "playback broken")
    assert switch.api(f"uuid_kill {channel.uuid}") == "+OK\n"
    finished(channel)


def test_export_reaches_the_bridged_leg_and_set_does_not(switch: Switch) -> None:
    phone(switch, "1001", Behaviour(answer_after_ms=50, hangup_after_ms=100))
    caller = bridge_call(switch, "user/1001",
                         prefix=act("export", "shared=yes") + act("set", "private=yes")
                         + act("export", "nolocal:only_there=yes"))
    bridge_result()
    finished(caller)
    [agent] = legs(switch, caller)
    assert agent.get("shared") == "yes" and agent.get("private") is None
    assert agent.get("only_there") == "yes"
    assert caller.get("shared") == "yes" and caller.get("only_there") is None


def test_park_then_uuid_transfer(switch: Switch) -> None:
    load(switch, dest("8002", act("answer") + act("park") + act("set", "not_after_park=1")),
         dest("8003", act("set", "transferred=yes") + act("hangup", "NORMAL_CLEARING")))
    channel = switch.place_call("1000", "8002")
    wait_until(lambda: channel.state == "CS_PARK", TIMEOUT, "parked")
    assert switch.api(f"uuid_transfer {channel.uuid} 8003") == "+OK\n"
    finished(channel)
    assert channel.get("transferred") == "yes" and channel.get("not_after_park") is None
    assert "CHANNEL_UNPARK" in names(events_of(switch, channel.uuid))


def test_record_session(switch: Switch) -> None:
    load(switch, dest("8004", act("answer") + act("record_session", "/tmp/rec/${uuid}.wav")
                      + act("sleep", "500")))
    channel = switch.place_call("1000", "8004")
    finished(channel)
    path = f"/tmp/rec/{channel.uuid}.wav"
    start, stop = switch.bus.events("RECORD_START"), switch.bus.events("RECORD_STOP")
    assert [e.headers["Record-File-Path"] for e in start] == [path]
    assert [e.headers["Record-File-Path"] for e in stop] == [path]
    got = names(events_of(switch, channel.uuid))
    assert got.index("RECORD_STOP") < got.index("CHANNEL_HANGUP_COMPLETE")


# ---------------------------------------------------------------- api commands ---------------

def test_originate_park_extension_and_failure(switch: Switch) -> None:
    phone(switch, "1001", Behaviour(answer_after_ms=50))
    phone(switch, "1002", Behaviour(fail_with="USER_BUSY"))
    load(switch, dest("8100", act("set", "ran_8100=yes") + act("park")))
    reply = switch.api("originate user/1001 &park()")
    assert reply.startswith("+OK ")
    parked = switch.channels[reply.split()[1]]
    wait_until(lambda: parked.state == "CS_PARK", TIMEOUT, "originated leg parked")
    assert parked.direction == "outbound" and parked.answered
    reply = switch.api("originate user/1001 8100 XML default")
    leg = switch.channels[reply.split()[1]]
    wait_until(lambda: leg.get("ran_8100") == "yes", TIMEOUT, "dialplan ran on the leg")
    assert switch.api("originate user/1002 &park()") == "-ERR USER_BUSY\n"
    for channel in (parked, leg):
        switch.api(f"uuid_kill {channel.uuid}")
        finished(channel)


def test_bgapi_answers_at_once_and_fires_background_job(switch: Switch) -> None:
    phone(switch, "1001", Behaviour(answer_after_ms=200))
    reply = switch.api("bgapi originate user/1001 &park()")
    assert reply.startswith("+OK Job-UUID: ")
    job = reply.split(": ", 1)[1].strip()
    event = switch.bus.wait_for(lambda e: e.name == "BACKGROUND_JOB"
                                and e.headers.get("Job-UUID") == job, TIMEOUT)
    assert event.headers["Job-Command"] == "originate"
    assert event.headers["Job-Command-Arg"] == "user/1001 &park()"
    assert event.body.startswith("+OK ")
    uuid = event.body.split()[1]
    switch.api(f"uuid_kill {uuid}")
    # an empty reply stays empty in the job body (no "-ERR no reply" there)
    reply = switch.api("bgapi global_getvar no_such_global")
    job = reply.split(": ", 1)[1].strip()
    event = switch.bus.wait_for(lambda e: e.name == "BACKGROUND_JOB"
                                and e.headers.get("Job-UUID") == job, TIMEOUT)
    assert event.body == ""
    assert switch.api("global_getvar no_such_global") == "-ERR no reply\n"


def test_uuid_kill_getvar_setvar(switch: Switch) -> None:
    load(switch, dest("8200", act("answer") + act("set", "color=red") + act("park")))
    channel = switch.place_call("1000", "8200")
    wait_until(lambda: channel.state == "CS_PARK", TIMEOUT, "parked")
    assert switch.api(f"uuid_getvar {channel.uuid} color") == "red"
    assert switch.api(f"uuid_getvar {channel.uuid} nothing") == "_undef_"
    assert switch.api(f"uuid_setvar {channel.uuid} shape round") == "+OK\n"
    assert channel.get("shape") == "round"
    assert switch.api(f"uuid_kill {channel.uuid} CALL_REJECTED") == "+OK\n"
    finished(channel)
    assert channel.hangup_cause == "CALL_REJECTED"
    assert switch.api(f"uuid_kill {channel.uuid}").lower() == "-err no such channel!\n"


def test_uuid_transfer_of_a_bridged_leg(switch: Switch) -> None:
    phone(switch, "1001", Behaviour(answer_after_ms=50))
    load(switch, dest("8300", act("bridge", "user/1001") + act("set", "bridge_returned=yes")
                      + act("park")),
         dest("8301", act("set", "agent_moved=yes") + act("park")))
    caller = switch.place_call("1000", "8300")
    switch.bus.wait_for(lambda e: e.name == "CHANNEL_BRIDGE", TIMEOUT)
    [agent] = legs(switch, caller)
    assert switch.hears(caller.uuid) == {agent.uuid}
    assert switch.api(f"uuid_transfer {agent.uuid} 8301") == "+OK\n"
    wait_until(lambda: agent.get("agent_moved") == "yes", TIMEOUT, "agent transferred")
    wait_until(lambda: caller.get("bridge_returned") == "yes", TIMEOUT, "caller went on")
    assert caller.up and agent.up
    for channel in (caller, agent):
        switch.api(f"uuid_kill {channel.uuid}")
        finished(channel)


def test_uuid_bridge_hold_broadcast(switch: Switch) -> None:
    phone(switch, "1001", Behaviour(answer_after_ms=50))
    phone(switch, "1002", Behaviour(answer_after_ms=50))
    a = switch.channels[switch.api("originate user/1001 &park()").split()[1]]
    b = switch.channels[switch.api("originate user/1002 &park()").split()[1]]
    wait_until(lambda: a.state == b.state == "CS_PARK", TIMEOUT, "both parked")
    assert switch.api(f"uuid_bridge {a.uuid} {b.uuid}").startswith("+OK")
    wait_until(lambda: switch.hears(a.uuid) == {b.uuid} and switch.hears(b.uuid) == {a.uuid},
               TIMEOUT, "bridged audio")
    time.sleep(BRIDGE_LEAD_US / 1e6)  # past the bridge's lead frames: the music plays at once

    assert switch.api(f"uuid_hold {a.uuid}") == "+OK Success\n"
    assert a.callstate == "HELD"
    moh = f"media:{switch.globals['hold_music']}"
    assert switch.hears(b.uuid) == {moh}
    assert switch.api(f"uuid_hold off {a.uuid}") == "+OK Success\n"
    assert switch.hears(b.uuid) == {a.uuid} and a.callstate == "ACTIVE"
    switch.api(f"uuid_hold toggle {a.uuid}")
    assert a.held
    switch.api(f"uuid_hold toggle {a.uuid}")
    assert not a.held
    assert [e.name for e in switch.bus.history if e.name in ("CHANNEL_HOLD", "CHANNEL_UNHOLD")
            and e.headers["Unique-ID"] == a.uuid] == ["CHANNEL_HOLD", "CHANNEL_UNHOLD"] * 2

    switch.media_durations["/sounds/notice.wav"] = 1000
    assert switch.api(f"uuid_broadcast {a.uuid} /sounds/notice.wav both") == \
        "+OK Message sent\n"
    assert "media:/sounds/notice.wav" in switch.hears(a.uuid)
    assert "media:/sounds/notice.wav" in switch.hears(b.uuid)
    wait_until(lambda: "media:/sounds/notice.wav" not in switch.hears(a.uuid), TIMEOUT,
               "broadcast over")
    switch.api(f"uuid_kill {a.uuid}")
    finished(a)
    finished(b)


def test_show_channels(switch: Switch) -> None:
    assert switch.api("show channels").endswith("\n0 total.\n")
    assert json.loads(switch.api("show channels as json")) == {"row_count": 0}
    load(switch, dest("8400", act("answer") + act("park")))
    channel = switch.place_call("1000", "8400")
    wait_until(lambda: channel.state == "CS_PARK", TIMEOUT, "parked")
    text = switch.api("show channels")
    header, row = text.splitlines()[:2]
    assert header.startswith("uuid,direction,created,created_epoch,name,state,cid_name,cid_num")
    assert row.startswith(f"{channel.uuid},inbound,") and text.endswith("\n1 total.\n")
    data = json.loads(switch.api("show channels as json"))
    assert data["row_count"] == 1
    assert data["rows"][0]["uuid"] == channel.uuid
    assert data["rows"][0]["dest"] == "8400" and data["rows"][0]["application"] == "park"
    switch.api(f"uuid_kill {channel.uuid}")
    finished(channel)


def test_aliases_expand_on_the_console_only(switch: Switch) -> None:
    assert switch.api("alias add nway_x python fsapps_testapps.api nway_x") == "+OK\n"
    assert switch.console("nway_x 1000 120") == "+OK nway_x 1000 120"
    assert switch.api("nway_x 1000 120") == "-ERR nway_x Command not found!\n"
    assert switch.api("python fsapps_testapps.api nway_x 1000 120") == "+OK nway_x 1000 120"
    assert switch.api("no_such_command arg") == "-ERR no_such_command Command not found!\n"


# ---------------------------------------------------------------- two switches ---------------

def test_two_switches_keep_their_own_calls_and_events(
        make_switch: Callable[..., Switch]) -> None:
    first, second = make_switch("fsA"), make_switch("fsB")
    for node in (first, second):
        load(node, dest("9000", act("answer") + act("python", "fsapps_testapps.multi")
                        + act("sleep", "1000")))
    calls = {first: first.place_call("1000", "9000"), second: second.place_call("2000", "9000")}
    for channel in calls.values():
        wait_until(lambda c=channel: c.answered, TIMEOUT, "both calls up at once")
    assert all(c.up for c in calls.values())
    for channel in calls.values():
        finished(channel)
    for node, channel in calls.items():
        other = calls[second if node is first else first]
        uuids = {e.headers.get("Unique-ID") for e in node.bus.history}
        assert channel.uuid in uuids and other.uuid not in uuids
        assert {e.headers["FreeSWITCH-Switchname"] for e in node.bus.history} == {node.name}
        assert {e.headers["Core-UUID"] for e in node.bus.history} == {node.core_uuid}
    assert first.core_uuid != second.core_uuid
    assert {r["uuid"]: r["switchname"] for r in state.find("multi")} == {
        calls[first].uuid: "fsA", calls[second].uuid: "fsB"}
