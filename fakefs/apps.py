"""Dialplan applications of the fake switch, each ``app(switch, channel, data) -> response``.

They run in the channel's session thread and block the way the real ones do: playback for
the file's simulated duration, park until something moves the channel, bridge until a side
hangs up, eavesdrop while its target lives.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from fakefs.channel import Channel, Interrupt, now_us
from fakefs.directory import switch_true
from fakefs.fsmodule import Session
from fakefs.modpython import run_handler

if TYPE_CHECKING:
    from fakefs.switch import Switch

App = Callable[["Switch", Channel, str], "str | None"]
APPS: dict[str, App] = {}


def app(name: str) -> Callable[[App], App]:
    def register(fn: App) -> App:
        APPS[name] = fn
        return fn
    return register


@app("answer")
def answer(switch: Switch, channel: Channel, data: str) -> None:
    switch.answer(channel)


@app("pre_answer")
def pre_answer(switch: Switch, channel: Channel, data: str) -> None:
    switch.pre_answer(channel)


@app("ring_ready")
def ring_ready(switch: Switch, channel: Channel, data: str) -> None:
    switch.ring_ready(channel)


@app("hangup")
def hangup(switch: Switch, channel: Channel, data: str) -> None:
    switch.hangup(channel, data.strip() or "NORMAL_CLEARING")


@app("set")
def set_var(switch: Switch, channel: Channel, data: str) -> None:
    name, _, value = data.partition("=")
    channel.set(name.strip(), value if value != "" else None)


@app("unset")
def unset_var(switch: Switch, channel: Channel, data: str) -> None:
    channel.set(data.strip(), None)


@app("export")
def export(switch: Switch, channel: Channel, data: str) -> None:
    # switch_channel_export_variable: "nolocal:x=v" keeps the value under "nolocal:x" only
    # (x itself stays unset here) and exports "nolocal:x"; the B-leg gets x either way.
    name, _, value = data.partition("=")
    name = name.strip()
    channel.set(name, value)
    exported = [v for v in (channel.get("export_vars") or "").split(",") if v]
    if name not in exported:
        exported.append(name)
    channel.set("export_vars", ",".join(exported))


@app("log")
def log(switch: Switch, channel: Channel, data: str) -> None:
    level, _, message = data.partition(" ")
    if level.upper() not in ("DEBUG", "INFO", "NOTICE", "WARNING", "ERR", "CRIT", "ALERT"):
        level, message = "INFO", data
    switch.console_log(level.upper(), message)


@app("sleep")
def sleep(switch: Switch, channel: Channel, data: str) -> None:
    try:
        channel.wait(switch.scaled(int(data or 0)))
    except Interrupt as interrupt:
        if interrupt.reason != "break":
            raise


@app("playback")
def playback(switch: Switch, channel: Channel, data: str) -> str:
    terminators = channel.get("playback_terminators") or ""
    if terminators == "none":
        terminators = ""
    result = switch.media.play(channel, data.strip(), terminators=terminators)
    channel.set("playback_last_result", result)
    return "FILE PLAYED" if result in ("done", "terminated", "break") else "FILE NOT FOUND"


def _terminators(channel: Channel) -> str:
    # mod_dptools on_dtmf: playback_terminators ("none": no key; "any": every key)
    terminators = channel.get("playback_terminators") or ""
    if terminators == "none":
        return ""
    return "0123456789*#" if terminators == "any" else terminators


@app("say")
def say(switch: Switch, channel: Channel, data: str) -> str:
    """mod_dptools ``say <module> <type> <method> [<gender>] <text>`` (``say en number
    pronounced 3``): the language module's files played as one playback (its path here is
    ``say://<data>``, lasting what ``durations`` says, else the default file length), stopped
    by uuid_break and by a key of ``playback_terminators`` as ``playback`` is."""
    if len(data.split()) < 4:
        switch.console_log("ERR", "Usage: say <module_name>[:<lang>] <say_type> "
                                  "<say_method> [<say_gender>] <text>")
        return ""
    result = switch.media.play(channel, f"say://{data.strip()}",
                               terminators=_terminators(channel))
    channel.set("playback_last_result", result)
    return ""


@app("speak")
def speak(switch: Switch, channel: Channel, data: str) -> str:
    """mod_dptools ``speak <engine>|<voice>|<text>`` (switch_ivr_speak_text, mod_flite): the
    text spoken (``speak://<data>``: 60 ms a character unless ``durations`` says otherwise),
    with no PLAYBACK_START / STOP events; stopped by uuid_break and by a key of
    ``playback_terminators``. Without engine and voice: ``tts_engine`` / ``tts_voice``."""
    parts = data.split("|", 2)
    if len(parts) < 3 and not (channel.get("tts_engine") and channel.get("tts_voice")):
        switch.console_log("ERR", "Invalid Params!")
        return ""
    result = switch.media.play(channel, f"speak://{data.strip()}",
                               terminators=_terminators(channel), events=False)
    channel.set("playback_last_result", result)
    return ""


@app("park")
def park(switch: Switch, channel: Channel, data: str) -> None:
    switch.set_state(channel, "CS_PARK")
    switch.fire("CHANNEL_PARK", channel)
    try:
        while channel.up:
            try:
                channel.wait(None)
            except Interrupt as interrupt:
                if interrupt.reason != "break":
                    raise
    finally:
        if channel.up:
            switch.fire("CHANNEL_UNPARK", channel)
            switch.set_state(channel, "CS_EXECUTE")


@app("transfer")
def transfer(switch: Switch, channel: Channel, data: str) -> None:
    parts = data.split()
    if not parts:
        return
    dest = parts[0]
    dialplan = parts[1] if len(parts) > 1 else "XML"
    context = parts[2] if len(parts) > 2 else channel.context
    if dest in ("-bleg", "-both"):
        return
    raise Interrupt("transfer", "\x1f".join([dest, dialplan, context]))


@app("bridge")
def bridge(switch: Switch, channel: Channel, data: str) -> None:
    switch.calls.bridge(channel, data)


@app("python")
def python(switch: Switch, channel: Channel, data: str) -> None:
    session = Session._attach(channel)
    try:
        run_handler(switch, session, data)
    finally:
        session._destroy()


@app("record_session")
def record_session(switch: Switch, channel: Channel, data: str) -> None:
    path = data.split()[0] if data.strip() else ""
    if not path:
        return
    # As switch_ivr_record_session: RECORD_START names the file; no channel variable is set
    # (a dialplan that wants one sets it itself).
    channel.set("_recording", path)
    switch.fire("RECORD_START", channel, headers={"Record-File-Path": path})


@app("stop_record_session")
def stop_record_session(switch: Switch, channel: Channel, data: str) -> None:
    stop_recording(switch, channel)


def stop_recording(switch: Switch, channel: Channel) -> None:
    path = channel.variables.pop("_recording", None)
    if path:
        channel.set("record_seconds", (now_us() - channel.times["created"]) // 1_000_000)
        switch.fire("RECORD_STOP", channel, headers={"Record-File-Path": path,
                                                    "Record-Completion-Cause": "success"})


@app("eavesdrop")
def eavesdrop(switch: Switch, channel: Channel, data: str) -> None:
    """mod_dptools ``eavesdrop <uuid>`` (switch_ivr_eavesdrop_session): listen to the target
    and what it hears. DTMF is on unless ``eavesdrop_enable_dtmf`` is set false: 1 mixes the
    eavesdropper into the target's read stream (the target's PEER hears it), 2 into its write
    stream (the TARGET hears it), 3 both, 0 back to listening, * ends. At the start
    ``eavesdrop_whisper_aleg=true`` is mode 1 and ``eavesdrop_whisper_bleg=true`` mode 2 (both:
    3); ``eavesdrop_bridge_aleg`` / ``_bleg`` restrict what is heard to the target's own
    voice / what is sent to it (neither set: both). Returns when either side hangs up.
    Not modelled: ``eavesdrop all``, eavesdrop_require_group, the announce/indicate sounds,
    and second-order audio (a whisper heard by another eavesdropper of the same target)."""
    target = switch.channels.get(data.strip())
    if target is None or not target.up or not data.strip():
        return
    switch.pre_answer(channel)
    dtmf_var = channel.get("eavesdrop_enable_dtmf")
    dtmf_enabled = dtmf_var is None or switch_true(dtmf_var)
    hear_read = switch_true(channel.get("eavesdrop_bridge_aleg"))
    hear_write = switch_true(channel.get("eavesdrop_bridge_bleg"))
    if not (hear_read or hear_write):
        hear_read = hear_write = True
    spy = {"target": target.uuid, "read": hear_read, "write": hear_write,
           "mux_read": switch_true(channel.get("eavesdrop_whisper_aleg")),
           "mux_write": switch_true(channel.get("eavesdrop_whisper_bleg"))}
    modes = {"1": (True, False), "2": (False, True), "3": (True, True), "0": (False, False)}
    channel.eavesdrop = spy
    try:
        while channel.up and target.up:
            try:
                reason = channel.wait(None, dtmf=dtmf_enabled, until=lambda: not target.up)
            except Interrupt as interrupt:
                if interrupt.reason == "break":
                    continue  # uuid_break does not stop an eavesdrop
                raise
            if reason != "dtmf":
                break
            digit = channel.dtmf.popleft()
            if digit == "*":
                break
            if digit in modes:
                spy = {**spy, "mux_read": modes[digit][0], "mux_write": modes[digit][1]}
                channel.eavesdrop = spy
    finally:
        channel.eavesdrop = None


@app("three_way")
def three_way(switch: Switch, channel: Channel, data: str) -> None:
    """``three_way <uuid>``: an eavesdrop with both mux flags and no DTMF — the caller hears
    the target and its peer, and both hear the caller."""
    target = switch.channels.get(data.strip())
    if target is None or not target.up or not data.strip():
        return
    switch.pre_answer(channel)
    channel.eavesdrop = {"target": target.uuid, "read": True, "write": True,
                         "mux_read": True, "mux_write": True}
    try:
        while channel.up and target.up:
            try:
                channel.wait(None, until=lambda: not target.up)
            except Interrupt as interrupt:
                if interrupt.reason != "break":
                    raise
    finally:
        channel.eavesdrop = None


def _conference_event(switch: Switch, channel: Channel | None, conf: dict, action: str,
                      member_id: int | None = None) -> None:
    """conference::maintenance in mod_conference's header order (seed 000): the conference's
    data, then — for member events only — the channel's (no variables) and the member's.
    conference-create / conference-destroy carry no channel data."""
    headers = {"Conference-Name": conf["name"], "Conference-Domain": conf["domain"],
               "Conference-Size": str(len(conf["members"])), "Conference-Ghosts": "0",
               "Conference-Profile-Name": conf["profile"],
               "Conference-Unique-ID": conf["uuid"], "Conference-Rate": "8000",
               "Conference-Interval": "20"}
    if channel is not None and member_id is not None:
        headers["Floor"] = "false"
        headers.update(channel.event_headers(with_variables=False))
        headers.update({"Video": "false", "Hear": "true", "See": "true", "Speak": "true",
                        "Talking": "false", "Mute-Detect": "false", "Hold": "false",
                        "Member-ID": str(member_id), "Member-Type": "member",
                        "Member-Ghost": "false", "Energy-Level": "100", "Current-Energy": "0"})
    headers["Action"] = action
    switch.fire("CUSTOM", subclass="conference::maintenance", headers=headers)


@app("conference")
def conference(switch: Switch, channel: Channel, data: str) -> None:
    spec = data.split("+", 1)[0].strip()
    name, _, profile = spec.partition("@")
    domain = channel.get("domain_name") or switch.domain
    switch.answer(channel)
    with switch.lock:
        conf = switch.conferences.get(name)
        created = conf is None
        if conf is None:
            conf = {"name": name, "domain": domain, "profile": profile or "default",
                    "uuid": str(uuidlib.uuid4()), "members": {}, "next_id": 1}
            switch.conferences[name] = conf
        member_id = conf["next_id"]
        conf["next_id"] += 1
        conf["members"][channel.uuid] = member_id
    if created:
        _conference_event(switch, None, conf, "conference-create")
    channel.conference = name
    _conference_event(switch, channel, conf, "add-member", member_id)
    try:
        while channel.up and channel.conference == name:
            try:
                channel.wait(None, until=lambda: channel.conference != name)
            except Interrupt as interrupt:
                if interrupt.reason != "break":  # uuid_break does not leave a conference
                    raise
    finally:
        channel.conference = None
        with switch.lock:
            conf["members"].pop(channel.uuid, None)
            empty = not conf["members"]
            if empty:
                switch.conferences.pop(name, None)
        _conference_event(switch, channel, conf, "del-member", member_id)
        if empty:
            _conference_event(switch, None, conf, "conference-destroy")
