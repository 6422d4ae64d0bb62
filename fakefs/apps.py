"""Dialplan applications of the fake switch, each ``app(switch, channel, data) -> response``.

They run in the channel's session thread and block the way the real ones do: playback for
the file's simulated duration, park until something moves the channel, bridge until a side
hangs up, eavesdrop while its target lives.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from fakefs.channel import Behaviour, Channel, Interrupt, now_us
from fakefs.directory import switch_true
from fakefs.modpython import run_handler

if TYPE_CHECKING:
    from fakefs.switch import SipProfile, Switch

App = Callable[["Switch", Channel, str], "str | None"]
APPS: dict[str, App] = {}


def app(name: str) -> Callable[[App], App]:
    def register(fn: App) -> App:
        APPS[name] = fn
        return fn
    return register


def media_duration_ms(switch: Switch, path: str) -> float | None:
    """How long a playback lasts; None for endless sources (music on hold)."""
    if path in switch.media_durations:
        return switch.media_durations[path]
    if path.startswith("local_stream://"):
        return None
    if path.startswith("silence_stream://"):
        ms = int(path.split("//", 1)[1].split(",")[0] or 0)
        return None if ms < 0 else ms
    if path.startswith("tone_stream://"):
        loops = re.search(r"loops=(-?\d+)", path)
        if loops and int(loops.group(1)) < 0:
            return None
        return 500
    return switch.default_file_ms


def play(switch: Switch, channel: Channel, path: str,
         on_dtmf: Callable[[str], bool] | None = None, terminators: str = "") -> str:
    """Play ``path`` to the channel. Returns "done", "hangup", "break" or "terminated"
    (a terminator or the DTMF callback stopped it)."""
    duration = media_duration_ms(switch, path)
    # switch_ivr_play_file honours playback_timeout_sec: the playback stops after that long —
    # but only from 2 s up (its test is atoi(var) > 1; 1 means no limit).
    limit = channel.get("playback_timeout_sec") or ""
    if limit.isdigit() and int(limit) > 1:
        duration = int(limit) * 1000 if duration is None else min(duration, int(limit) * 1000)
    switch.pre_answer(channel)  # switch_ivr_play_file: media first (183 if not answered)
    channel.playing = path
    switch.fire("PLAYBACK_START", channel, headers={"Playback-File-Path": path})
    result = "done"
    try:
        remaining = None if duration is None else switch.scaled(duration)
        start = now_us()
        while True:
            left = None if remaining is None else remaining - (now_us() - start) / 1e6
            if left is not None and left <= 0:
                break
            try:
                reason = channel.wait(left, dtmf=bool(on_dtmf or terminators))
            except Interrupt as interrupt:
                if interrupt.reason == "break":
                    result = "break"
                    break
                raise
            if reason == "hangup":
                result = "hangup"
                break
            if reason == "timeout":
                break
            if reason == "dtmf":
                digit = channel.dtmf.popleft()
                if digit in terminators:
                    channel.set("playback_terminator_used", digit)
                    result = "terminated"
                    break
                if on_dtmf is not None and on_dtmf(digit):
                    result = "terminated"
                    break
    finally:
        channel.playing = None
        switch.fire("PLAYBACK_STOP", channel, headers={"Playback-File-Path": path,
                                                      "Playback-Status": result})
    return result


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
    result = play(switch, channel, data.strip(), terminators=terminators)
    channel.set("playback_last_result", result)
    return "FILE PLAYED" if result in ("done", "terminated", "break") else "FILE NOT FOUND"


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
    switch.bridge(channel, data)


@app("python")
def python(switch: Switch, channel: Channel, data: str) -> None:
    from fakefs.fsmodule import Session

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
    with switch._lock:
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
        with switch._lock:
            conf["members"].pop(channel.uuid, None)
            empty = not conf["members"]
            if empty:
                switch.conferences.pop(name, None)
        _conference_event(switch, channel, conf, "del-member", member_id)
        if empty:
            _conference_event(switch, None, conf, "conference-destroy")


def exchange_media(switch: Switch, channel: Channel, other_uuid: str) -> None:
    """uuid_bridge put this channel in a bridge it did not start: wait while it lasts, then
    hang up like FreeSWITCH does (unless park_after_bridge)."""
    other = switch.channels.get(other_uuid)
    if other is None:
        return
    switch.set_state(channel, "CS_EXCHANGE_MEDIA")
    # The other side's thread starts the bridge: first wait for it (or for its end) ...
    channel.wait(None, until=lambda: channel.peer == other_uuid or not other.up
                 or other.peer not in (None, channel.uuid))
    # ... then while it lasts.
    channel.wait(None, until=lambda: channel.peer != other_uuid)
    if channel.up and (channel.get("park_after_bridge") or "").lower() != "true" \
            and not channel.variables.get("_transfer_pending"):
        switch.hangup(channel, other.hangup_cause or "NORMAL_CLEARING")


def start_loopback(switch: Switch, a_leg: Channel, dest: str, context: str) -> None:
    """loopback/<dest>: the returned a-leg mirrors a new inbound b-leg that runs the
    dialplan for ``dest``; answer and hangup cross over between them."""
    b_leg = switch.new_channel(
        name=f"loopback/{dest}-b", direction="inbound", caller_id_name=a_leg.caller_id_name,
        caller_id_number=a_leg.caller_id_number, destination_number=dest, context=context,
        source="mod_loopback")
    a_leg.name = f"loopback/{dest}-a"
    a_leg.set("other_loopback_leg_uuid", b_leg.uuid)
    b_leg.set("other_loopback_leg_uuid", a_leg.uuid)
    b_leg.set("_loopback_b", "true")
    for name, value in a_leg.variables.items():
        if not name.startswith("_"):
            b_leg.variables.setdefault(name, value)
    b_leg.variables["direction"] = "inbound"

    def mirror() -> None:
        if b_leg.answered and not a_leg.answered and a_leg.up:
            switch.answer(a_leg)
            aid = a_leg.variables.get("_attempt_id")
            if aid:
                from fakefs.switch import _ATTEMPTS
                if aid in _ATTEMPTS:
                    _ATTEMPTS[aid].notify()
        if not b_leg.up and a_leg.up:
            switch.hangup(a_leg, b_leg.hangup_cause or "NORMAL_CLEARING", side="remote")
            return
        if not a_leg.up and b_leg.up:
            switch.hangup(b_leg, a_leg.hangup_cause or "NORMAL_CLEARING", side="remote")
            return
        if a_leg.up or b_leg.up:
            switch.scheduler.call_later(0.01, mirror)

    switch.fire("CHANNEL_CREATE", b_leg)
    switch._start_session(b_leg)
    switch.scheduler.call_later(0.01, mirror)


def start_peer_call(switch: Switch, out_leg: Channel, remote: Switch, dest: str,
                    remote_profile: str = "internal", local: SipProfile | None = None) -> None:
    """``sofia/<profile>/<dest>@<ip:port of another fake node>``: the INVITE arrives on
    ``remote``'s profile listening there as an inbound call to ``dest``, running that
    profile's context (external: "public"). It is not authenticated, so it has no
    ``domain_name`` (observed on 1.10.12 for a call on the external profile); the leg's
    ``sip_h_*`` variables arrive as SIP headers, i.e. the same variables. Its ringing, answer
    and hangup come back on ``out_leg``, and hanging ``out_leg`` up cancels or ends it."""
    source = local.ip if local is not None else switch.ipv4
    inbound = remote.place_call(out_leg.caller_id_number, dest,
                                caller_name=out_leg.caller_id_name, network_addr=source,
                                behaviour=Behaviour(answer_after_ms=None),
                                context=remote.profiles[remote_profile].context,
                                profile=remote_profile, domain=source, authenticated=False,
                                variables={"sip_from_host": source,
                                           "sip_network_ip": source,
                                           # custom SIP headers travel with the INVITE
                                           **{k: v for k, v in out_leg.variables.items()
                                              if k.startswith("sip_h_")}})
    out_leg.set("sip_peer_uuid", inbound.uuid)

    def notify() -> None:
        aid = out_leg.variables.get("_attempt_id")
        if aid:
            from fakefs.switch import _ATTEMPTS
            if aid in _ATTEMPTS:
                _ATTEMPTS[aid].notify()

    def mirror() -> None:
        if not out_leg.up:
            if inbound.up:
                remote.hangup(inbound, out_leg.hangup_cause or "NORMAL_CLEARING", side="remote")
            return
        if not inbound.up:
            switch.hangup(out_leg, inbound.hangup_cause or "NORMAL_CLEARING", side="remote")
            notify()
            return
        if inbound.answered and not out_leg.answered:
            switch.answer(out_leg)
            notify()
        elif "progress_media" in inbound.times and "progress_media" not in out_leg.times:
            switch.pre_answer(out_leg)
            notify()
        elif "progress" in inbound.times and "progress" not in out_leg.times:
            switch.ring_ready(out_leg)
            notify()
        switch.scheduler.call_later(0.005, mirror)

    switch.scheduler.call_later(0.005, mirror)
