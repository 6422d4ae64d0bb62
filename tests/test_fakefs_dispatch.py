"""Fidelity of fakefs' mod_python3: how Python is called (shared/FREESWITCH.md, first half).

Every test runs a fake switch at time_scale 0.05 (5 s of switch time = 250 ms) and waits on
conditions, never on bare sleeps. The apps called live in tests/fsapps_testapps/.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # makes fsapps_testapps importable

from fsapps_testapps import state

from fakefs import Behaviour, Switch, SwitchCrashed
from fakefs import (
    fsmodule as freeswitch,  # what `import freeswitch` gives inside the switch
)
from fakefs.modpython import split_data
from fakefs.scenario import wait_until

SCALE = 0.05
TIMEOUT = 5.0


def extensions(*bodies: str) -> str:
    return "<include>" + "".join(bodies) + "</include>"


def ext(dest: str, actions: str, name: str = "") -> str:
    return (f'<extension name="{name or dest}"><condition field="destination_number" '
            f'expression="^{dest}$">{actions}</condition></extension>')


def act(app: str, data: str = "") -> str:
    data = data.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return f'<action application="{app}" data="{data}"/>'


pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads", "clean_testapps_state")


def call(switch: Switch, dest: str, **kwargs: object):
    channel = switch.place_call("1000", dest, **kwargs)  # type: ignore[arg-type]
    return channel


def finished(channel, timeout: float = TIMEOUT) -> None:
    assert channel.done.wait(timeout), f"{channel} did not end"


def conf_file(tmp_path: Path, *params: tuple[str, str]) -> Path:
    body = "".join(f'<param name="{n}" value="{v}"/>' for n, v in params)
    path = tmp_path / "python.conf.xml"
    path.write_text(f'<configuration name="python.conf"><settings>{body}</settings>'
                    "</configuration>", encoding="utf-8")
    return path


# ---------------------------------------------------------------- dialplan `python` app -----

def test_freeswitch_module_is_installed() -> None:
    assert sys.modules["freeswitch"] is freeswitch


def test_python_app_splits_at_first_space_and_passes_a_session(switch: Switch) -> None:
    switch.dialplan.load_text(extensions(
        ext("100", act("python", "fsapps_testapps.echo  one two   three ")
            + act("set", "after_python=yes"))))
    channel = call(switch, "100")
    finished(channel)
    [seen] = state.find("echo")
    # first space splits the module name; the rest is ONE string (trailing blanks trimmed,
    # inner runs kept, as switch_separate_string + cleanup_separated_string do)
    assert seen["args"] == "one two   three"
    assert isinstance(seen["session"], freeswitch.Session)
    assert seen["uuid"] == channel.uuid
    assert channel.get("after_python") == "yes"


@pytest.mark.parametrize(("data", "expected"), [
    ("fsapps_testapps.echo 'a b' c\\'d", "a b c'd"),
    ("fsapps_testapps.echo it\\'s", "it's"),
    ("fsapps_testapps.echo back\\\\slash", "back\\slash"),
    ("fsapps_testapps.echo '  padded  '", "  padded  "),
    ("fsapps_testapps.echo ^\\d+$", "^\\d+$"),   # an unknown escape keeps its backslash
    ("fsapps_testapps.echo", ""),
])
def test_python_app_argument_quoting(data: str, expected: str) -> None:
    name, args, func = split_data(data)
    assert (name, func) == ("fsapps_testapps.echo", None)
    assert args == expected


def test_python_app_module_func_form(switch: Switch) -> None:
    switch.dialplan.load_text(extensions(ext("101", act("python",
                                                        "fsapps_testapps.echo::other x y"))))
    finished(call(switch, "101"))
    assert [r["args"] for r in state.find("other")] == ["x y"]
    assert state.find("echo") == []


def test_handler_exception_is_logged_and_the_call_continues(switch: Switch) -> None:
    switch.dialplan.load_text(extensions(ext("102", act("python", "fsapps_testapps.boom")
                                             + act("set", "continued=yes"))))
    channel = call(switch, "102")
    finished(channel)
    assert channel.get("boom_before") == "yes"
    assert channel.get("continued") == "yes"
    assert any("boom in handler" in err for err in switch.python_errors)
    assert any(level == "ERR" and "boom in handler" in text for level, text in switch.log)
    assert switch.crashed is None
    assert channel.hangup_cause == "NORMAL_CLEARING"


def test_missing_module_or_function_is_logged(switch: Switch) -> None:
    switch.dialplan.load_text(extensions(
        ext("103", act("python", "fsapps_testapps.no_such_module")
            + act("python", "fsapps_testapps.echo::no_such_func") + act("set", "went_on=1"))))
    channel = call(switch, "103")
    finished(channel)
    assert channel.get("went_on") == "1"
    assert len(switch.python_errors) == 2


def test_entry_module_reloaded_every_call_helper_module_kept(switch: Switch) -> None:
    sys.modules.pop("fsapps_testapps.counter", None)
    helper = sys.modules["fsapps_testapps.state"]
    switch.dialplan.load_text(extensions(ext("104", act("python", "fsapps_testapps.counter"))))
    finished(call(switch, "104"))
    assert state.counters["counter_body"] == 2      # import, then reload
    assert state.counters["counter_calls"] == 1
    finished(call(switch, "104"))
    finished(call(switch, "104"))
    assert state.counters["counter_body"] == 4      # once more per call
    assert state.counters["counter_calls"] == 3     # the helper's state survived
    assert sys.modules["fsapps_testapps.state"] is helper
    assert switch.api("python fsapps_testapps.counter") == "body=5"


# ---------------------------------------------------------------- api `python` (fsapi) -------

def test_fsapi_called_with_four_args_and_na_session(switch: Switch) -> None:
    reply = switch.api("python fsapps_testapps.api a b")
    assert reply == "+OK a b"
    [seen] = state.find("fsapi")
    assert seen["argc"] == 4
    assert seen["session"] == "na"
    assert seen["args"] == "a b"
    assert seen["command"] == "python"
    assert seen["argument"] == "fsapps_testapps.api a b"
    # fs_cli -x goes through the console: same call shape
    assert switch.console("python fsapps_testapps.api c") == "+OK c"
    assert state.find("fsapi")[-1]["session"] == "na"


def test_fsapi_errors_and_empty_replies(switch: Switch) -> None:
    assert switch.api("python fsapps_testapps.boom") == "-ERR no reply\n"
    assert any("boom before write" in e for e in switch.python_errors)
    # after a write: the partial output, no error marker
    assert switch.api("python fsapps_testapps.boom::partial") == "+OK partial"
    # nothing written: mod_event_socket answers "-ERR no reply"; the return value is ignored
    assert switch.api("python fsapps_testapps.boom::silent") == "-ERR no reply\n"
    # ... but Python's own API().execute gets the raw, empty stream
    with switch.bound():
        assert freeswitch.API().execute("python", "fsapps_testapps.boom::silent") == ""
        assert freeswitch.API().executeString("python fsapps_testapps.api z") == "+OK z"
    assert switch.crashed is None


def test_fsapi_via_variable_expansion_gets_a_real_session(switch: Switch) -> None:
    switch.dialplan.load_text(extensions(ext(
        "105", act("set", "reply=${python(fsapps_testapps.api inside)}"))))
    channel = call(switch, "105")
    finished(channel)
    [seen] = state.find("fsapi")
    assert isinstance(seen["session"], freeswitch.Session)
    assert seen["session"].get_uuid() == channel.uuid
    assert channel.get("reply") == "+OK inside"


# ---------------------------------------------------------------- pyrun / startup-script -----

def test_pyrun_answers_ok_at_once_and_runtime_ends_on_shutdown(
        make_switch: Callable[..., Switch]) -> None:
    switch = make_switch()
    started = time.monotonic()
    assert switch.api("pyrun fsapps_testapps.rt hello world") == "OK\n"
    assert time.monotonic() - started < 0.5      # the runtime loop keeps running elsewhere
    wait_until(lambda: state.find("runtime_start"), TIMEOUT, "runtime started")
    [start] = state.find("runtime_start")
    assert start["args"] == "hello world"
    assert start["thread"] != threading.current_thread().name
    assert start["switchname"] == "fs1"
    threads = list(switch.runtime_threads)
    assert threads and all(t.is_alive() for t in threads)
    switch.shutdown(grace=2.0)
    assert all(not t.is_alive() for t in threads)
    assert state.find("runtime_exit") == [{"args": "hello world"}]
    assert switch.api("pyrun") != "OK\n"


def test_shutdown_hangs_the_calls_up_before_the_runtime_is_stopped(
        make_switch: Callable[..., Switch]) -> None:
    """switch_core_destroy's order on a real 1.10.12: running() false, SHUTDOWN, hupall (the
    calls' hangup events fire), and only then does mod_python3 unload (SystemExit to the
    runtime threads). Whether a runtime still reads those hangups is its own race."""
    switch = make_switch()
    switch.dialplan.load_text(extensions(ext("150", act("answer") + act("park"))))
    assert switch.api("pyrun fsapps_testapps.rt order") == "OK\n"
    wait_until(lambda: state.find("runtime_start"), TIMEOUT, "runtime started")
    [runtime] = switch.runtime_threads
    channel = call(switch, "150")
    wait_until(lambda: channel.answered, TIMEOUT, "the call answered")
    seen: list[tuple[str, bool, bool]] = []
    switch.bus.listen(lambda e: seen.append((e.name, switch.running, runtime.is_alive()))
                      if e.name in ("SHUTDOWN", "CHANNEL_HANGUP") else None)
    switch.shutdown(grace=2.0)
    finished(channel)
    assert channel.hangup_cause == "SYSTEM_SHUTDOWN"
    assert seen == [("SHUTDOWN", False, True), ("CHANNEL_HANGUP", False, True)]
    assert not runtime.is_alive()
    assert state.find("runtime_exit") == [{"args": "order"}]


def test_startup_script_runs_at_start(make_switch: Callable[..., Switch], tmp_path: Path) -> None:
    conf = conf_file(tmp_path, ("startup-script", "fsapps_testapps.rt first"),
                     ("startup-script", "fsapps_testapps.rt second"))
    switch = Switch("fs1", python_conf=conf, time_scale=SCALE)
    assert state.find("runtime_start") == []     # nothing before start()
    switch.start()
    try:
        wait_until(lambda: len(state.find("runtime_start")) == 2, TIMEOUT, "both runtimes")
        assert sorted(r["args"] for r in state.find("runtime_start")) == ["first", "second"]
        # the runtime sees the switch's events
        finished(call(switch, "nowhere"))
        wait_until(lambda: {"CHANNEL_DESTROY"} <= {r["name"] for r in state.find(
            "runtime_event")}, TIMEOUT, "runtime saw the call")
    finally:
        switch.shutdown(grace=2.0)
    assert all(not t.is_alive() for t in switch.runtime_threads)
    assert len(state.find("runtime_exit")) == 2


def test_python_conf_knows_exactly_three_params(tmp_path: Path) -> None:
    # mod_python3 itself ignores an unknown or misplaced param silently (do_config); fakefs
    # refuses loudly so such a mistake is caught by the tests, not in production.
    with pytest.raises(ValueError, match="unknown param"):
        Switch("fs1", python_conf=conf_file(tmp_path, ("script-directory", "/tmp")))
    with pytest.raises(ValueError, match="after"):
        Switch("fs1", python_conf=conf_file(tmp_path, ("xml-handler-bindings", "directory"),
                                            ("xml-handler-script", "fsapps_testapps.xmlh")))
    switch = Switch("fs1", python_conf=conf_file(
        tmp_path, ("xml-handler-script", "fsapps_testapps.xmlh"),
        ("xml-handler-bindings", "directory"), ("startup-script", "fsapps_testapps.rt")))
    try:
        assert switch.xml_bindings == [("fsapps_testapps.xmlh", {"directory"})]
        assert switch.startup_scripts == ["fsapps_testapps.rt"]
    finally:
        switch.shutdown(grace=1.0)


# ---------------------------------------------------------------- xml_fetch -------------------

@pytest.fixture
def xml_switch(make_switch: Callable[..., Switch], tmp_path: Path) -> Switch:
    conf = conf_file(tmp_path, ("xml-handler-script", "fsapps_testapps.xmlh"),
                     ("xml-handler-bindings", "directory"))
    switch = make_switch(python_conf=conf)
    switch.add_user("1001", password="secret")
    return switch


def test_xml_fetch_gets_two_args_and_empty_falls_back(xml_switch: Switch) -> None:
    state.config["xml_mode"] = "empty"
    found = xml_switch.directory_lookup("1001", xml_switch.domain, "user_call")
    assert found is not None and found.params["password"] == "secret"   # the static XML
    [seen] = state.find("xml_fetch")
    assert seen["argc"] == 2 and seen["args"] == ("",)
    assert (seen["section"], seen["user"], seen["action"]) == ("directory", "1001", "user_call")
    assert xml_switch.crashed is None


def test_xml_fetch_exception_is_logged_and_falls_back(xml_switch: Switch) -> None:
    state.config["xml_mode"] = "raise"
    found = xml_switch.directory_lookup("1001", xml_switch.domain)
    assert found is not None and found.id == "1001"
    assert any("xml_fetch boom" in e for e in xml_switch.python_errors)
    assert xml_switch.crashed is None


@pytest.mark.parametrize("mode", ["none", "bytes"])
def test_xml_fetch_returning_not_a_str_crashes_the_switch(xml_switch: Switch, mode: str) -> None:
    state.config["xml_mode"] = mode
    with pytest.raises(SwitchCrashed):
        xml_switch.directory_lookup("1001", xml_switch.domain)
    assert xml_switch.crashed
    xml_switch.crashed = None  # seen; the fixture's no-crash check is for unexpected ones


# ---------------------------------------------------------------- EventConsumer --------------

def test_event_consumer_all_sees_channel_and_custom_events(switch: Switch) -> None:
    with switch.bound():
        everything = freeswitch.EventConsumer("all")
        answers = freeswitch.EventConsumer("CHANNEL_ANSWER")
        custom = freeswitch.EventConsumer()
        assert custom.bind("CUSTOM", "fsapps::test") == 1
        assert custom.bind("NO_SUCH_EVENT") == 0
        switch.dialplan.load_text(extensions(ext("106", act("answer") + act("hangup"))))
        finished(call(switch, "106"))
        event = freeswitch.Event("CUSTOM", "fsapps::test")
        event.addHeader("X-Test", "1")
        event.fire()
        freeswitch.Event("CUSTOM", "fsapps::other").fire()

        names: list[str] = []
        while (e := everything.pop(1, 200)) is not None:
            names.append(e.getHeader("Event-Name") + ":" + (e.getHeader("Event-Subclass") or ""))
            if e.getHeader("Event-Name") == "CHANNEL_HANGUP_COMPLETE":
                assert e.getHeader("variable_hangup_cause") == "NORMAL_CLEARING"
                assert e.getHeader("variable_duration") is not None
        for wanted in ("CHANNEL_CREATE:", "CHANNEL_ANSWER:", "CHANNEL_HANGUP:",
                       "CHANNEL_HANGUP_COMPLETE:", "CHANNEL_DESTROY:", "CUSTOM:fsapps::test",
                       "CUSTOM:fsapps::other"):
            assert wanted in names
        only_answer = answers.pop(1, 200)
        assert only_answer is not None and only_answer.getHeader("Event-Name") == "CHANNEL_ANSWER"
        assert answers.pop(0) is None
        mine = custom.pop(1, 200)
        assert mine is not None and mine.getHeader("X-Test") == "1"
        assert mine.getHeader("Core-UUID") == switch.core_uuid
        assert custom.pop(1, 50) is None


def test_event_consumer_subclass_and_full_queue_drops(switch: Switch) -> None:
    class Consumer(freeswitch.EventConsumer):
        pass

    with switch.bound():
        small = Consumer("CUSTOM", "fsapps::burst", len=5)
        for i in range(12):
            burst = freeswitch.Event("CUSTOM", "fsapps::burst")
            burst.addHeader("N", str(i))
            burst.fire()
        got = []
        while (e := small.pop()) is not None:
            got.append(e.getHeader("N"))
        assert got == ["0", "1", "2", "3", "4"]       # the oldest kept, the rest dropped
        assert small.dropped == 7
        started = time.monotonic()
        assert small.pop(1, 100) is None
        assert time.monotonic() - started >= 0.08


# ---------------------------------------------------------------- the GIL ---------------------

def _log_while_blocked(switch: Switch, app: str) -> tuple[float, float]:
    """Start a call whose handler blocks in ``app`` for 4 s of switch time (200 ms), log from
    another thread meanwhile; return (when our consoleLog returned, when the handler woke)."""
    data = f"fsapps_testapps.gil::{app} 4000"
    switch.dialplan.load_text(extensions(ext("107", act("python", data))))
    channel = call(switch, "107")
    assert state.flag("blocking").wait(TIMEOUT)
    with switch.bound():
        freeswitch.consoleLog("INFO", "from another thread\n")
    logged = time.monotonic()
    finished(channel)
    return logged, state.config["t_end"]


def test_msleep_holds_the_gil(switch: Switch) -> None:
    logged, woke = _log_while_blocked(switch, "msleep")
    # the other thread's consoleLog could only run once msleep gave the GIL back
    assert logged >= state.config["t_start"] + 0.15
    assert logged >= woke - 0.02


def test_session_sleep_releases_the_gil(switch: Switch) -> None:
    logged, woke = _log_while_blocked(switch, "ssleep")
    assert logged < woke
    assert woke - state.config["t_start"] >= 0.15   # and the sleep itself did last


def test_gil_is_per_switch(make_switch: Callable[..., Switch]) -> None:
    """Each FreeSWITCH process has its own interpreter: msleep on one node never delays
    Python on another node."""
    first, second = make_switch("fsA"), make_switch("fsB")
    data = "fsapps_testapps.gil::msleep 8000"
    first.dialplan.load_text(extensions(ext("107", act("python", data))))
    channel = call(first, "107")
    assert state.flag("blocking").wait(TIMEOUT)
    with second.bound():
        freeswitch.consoleLog("INFO", "other node\n")
    assert time.monotonic() < state.config["t_start"] + 0.3
    finished(channel)


# ---------------------------------------------------------------- Session details ------------

def test_hangup_cause_and_hangup_hook(switch: Switch) -> None:
    switch.dialplan.load_text(extensions(ext("108", act("python", "fsapps_testapps.hook"))))
    channel = call(switch, "108", behaviour=Behaviour(hangup_after_ms=200))
    finished(channel)
    [before] = state.find("before")
    assert before == {"api_cause": "NONE", "cause": None}
    [hook] = state.find("hook")
    assert hook["what"] == "hangup"
    assert hook["cause"] == "NORMAL_CLEARING"     # read it from the variable ...
    assert hook["api_cause"] == "NONE"            # ... hangupCause() knows nothing of it
    assert hook["same"] is True
    [after] = state.find("after")
    assert after["api_cause"] == "NONE"


def test_hangup_cause_set_through_the_session(switch: Switch) -> None:
    data = "fsapps_testapps.hook::local call_rejected"
    switch.dialplan.load_text(extensions(ext("109", act("python", data))))
    channel = call(switch, "109")
    finished(channel)
    [seen] = state.find("local")
    assert seen == {"api_cause": "CALL_REJECTED", "ready": False}
    assert channel.hangup_cause == "CALL_REJECTED"


def test_hook_reports_a_transfer(switch: Switch) -> None:
    switch.dialplan.load_text(extensions(
        ext("112", act("python", "fsapps_testapps.hook")),
        ext("113", act("set", "moved=yes") + act("hangup"))))
    channel = call(switch, "112")
    wait_until(lambda: state.find("before"), TIMEOUT, "handler running")
    assert switch.api(f"uuid_transfer {channel.uuid} 113") == "+OK\n"
    finished(channel)
    assert [(h["what"], h["cause"]) for h in state.find("hook")] == [("transfer", None)]
    assert channel.get("moved") == "yes"
    assert state.find("after")                      # ready() went False: the handler ended


def test_session_originate_from_python(switch: Switch) -> None:
    for ext_, behaviour in (("1001", Behaviour(answer_after_ms=100)),
                            ("1002", Behaviour(fail_with="USER_BUSY"))):
        switch.add_user(ext_, password="pw")
        assert switch.register(ext_, password="pw", behaviour=behaviour).ok
    with switch.bound():
        busy = freeswitch.Session("user/1002")
        assert not busy.ready()
        assert busy.hangupCause() == "USER_BUSY"
        leg = freeswitch.Session("user/1001")
        assert leg.ready() and leg.answered()
        assert switch.channels[leg.get_uuid()].direction == "outbound"
        leg.hangup()
        assert leg.hangupCause() == "NORMAL_CLEARING" and not leg.ready()

        # ~CoreSession: an originated session hangs its leg up when Python drops it ...
        dropped = freeswitch.Session("user/1001")
        uuid = dropped.get_uuid()
        del dropped
        channel = switch.all_channels[uuid]
        finished(channel)
        assert channel.hangup_cause == "NORMAL_CLEARING"
        # ... unless told otherwise; an attached session never does
        kept = freeswitch.Session("user/1001")
        kept.setAutoHangup(False)
        uuid = kept.get_uuid()
        del kept
        attached = freeswitch.Session(uuid)
        del attached
        assert switch.channels[uuid].up
        assert switch.api(f"uuid_kill {uuid}") == "+OK\n"


def test_session_attach_by_uuid_and_getvariable_none(switch: Switch) -> None:
    switch.dialplan.load_text(extensions(ext("110", act("answer") + act("park"))))
    channel = call(switch, "110")
    wait_until(lambda: channel.state == "CS_PARK", TIMEOUT, "parked")
    with switch.bound():
        session = freeswitch.Session(channel.uuid)
        assert session.ready() and session.answered()
        assert session.getVariable("no_such_variable") is None
        session.setVariable("from_python", "1")
        assert channel.get("from_python") == "1"
        session.hangup("NORMAL_CLEARING")
    finished(channel)


# ---------------------------------------------------------------- several switches -----------

def test_each_switch_sees_its_own_freeswitch_module(make_switch: Callable[..., Switch]) -> None:
    first, second = make_switch("fsA"), make_switch("fsB")
    for node in (first, second):
        node.dialplan.load_text(extensions(ext("111", act("python", "fsapps_testapps.multi"))))
    calls = [call(first, "111"), call(second, "111"), call(first, "111")]
    for channel in calls:
        finished(channel)
    seen = {r["uuid"]: r["switchname"] for r in state.find("multi")}
    assert seen == {calls[0].uuid: "fsA", calls[1].uuid: "fsB", calls[2].uuid: "fsA"}
    with first.bound():
        assert freeswitch.API().executeString("switchname") == "fsA"
        # as in FreeSWITCH 1.10.12: no switchname global unless vars.xml sets one
        assert freeswitch.getGlobalVariable("switchname") is None
    with second.bound():
        assert freeswitch.API().executeString("switchname") == "fsB"
