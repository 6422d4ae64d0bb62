"""Api commands of the fake switch: ``cmd(switch, args, session_channel) -> reply``.

Replies follow FreeSWITCH's text: ``+OK ...``, ``-ERR ...``, trailing newline.
"""

from __future__ import annotations

import json
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from fakefs.calls import wake_originate
from fakefs.causes import canonical
from fakefs.channel import Channel, Interrupt
from fakefs.dialplan import Action, parse_inline
from fakefs.fsmodule import Session
from fakefs.modpython import run_fsapi, run_runtime

if TYPE_CHECKING:
    from fakefs.switch import Switch

Command = Callable[["Switch", str, "Channel | None"], str]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn
    return register


def _channel(switch: Switch, uuid: str) -> Channel | None:
    channel = switch.channels.get(uuid.strip())
    return channel if channel is not None and channel.up else None


NO_SUCH_CHANNEL = "-ERR No such channel!\n"


@command("python")
def python(switch: Switch, args: str, session: Channel | None) -> str:
    if not args:
        return "-ERR no module given\n"
    return run_fsapi(switch, Session._attach(session) if session is not None else "na", args)


@command("pyrun")
def pyrun(switch: Switch, args: str, session: Channel | None) -> str:
    if not args:
        return "-ERR no module given\n"
    switch.runtime_threads.append(run_runtime(switch, args))
    return "OK\n"


@command("alias")
def alias(switch: Switch, args: str, session: Channel | None) -> str:
    action, _, rest = args.partition(" ")
    if action in ("add", "stickyadd"):
        name, _, target = rest.strip().partition(" ")
        if not name or not target:
            return "-ERR Invalid syntax\n"
        switch.aliases[name] = target.strip()
        return "+OK\n"
    if action == "del":
        return "+OK\n" if switch.aliases.pop(rest.strip(), None) else "-ERR alias not found\n"
    return "-ERR USAGE: alias [add|stickyadd] <alias> <command> | del [<alias>|*]\n"


@command("uuid_kill")
def uuid_kill(switch: Switch, args: str, session: Channel | None) -> str:
    parts = args.split()
    if not parts:
        return "-USAGE: <uuid> [cause]\n"
    channel = _channel(switch, parts[0])
    if channel is None:
        return "-ERR No Such Channel!\n"  # mod_commands' kill_function spells it so
    switch.hangup(channel, canonical(parts[1]) if len(parts) > 1 else "NORMAL_CLEARING")
    return "+OK\n"


@command("uuid_exists")
def uuid_exists(switch: Switch, args: str, session: Channel | None) -> str:
    return "true" if _channel(switch, args) is not None else "false"


@command("uuid_getvar")
def uuid_getvar(switch: Switch, args: str, session: Channel | None) -> str:
    parts = args.split()
    if len(parts) < 2:
        return "-USAGE: <uuid> <var>\n"
    channel = _channel(switch, parts[0])
    if channel is None:
        return NO_SUCH_CHANNEL
    value = channel.get(parts[1])
    return "_undef_" if value is None else value


@command("uuid_setvar")
def uuid_setvar(switch: Switch, args: str, session: Channel | None) -> str:
    parts = args.split(None, 2)
    if len(parts) < 2:
        return "-USAGE: <uuid> <var> [value]\n"
    channel = _channel(switch, parts[0])
    if channel is None:
        return NO_SUCH_CHANNEL
    channel.set(parts[1], parts[2] if len(parts) > 2 else None)
    return "+OK\n"


@command("uuid_transfer")
def uuid_transfer(switch: Switch, args: str, session: Channel | None) -> str:
    # quoted like FreeSWITCH's switch_separate_string: 'python:app arg' inline
    parts = _split_quoted(args)
    if len(parts) < 2:
        return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
    channel = _channel(switch, parts[0])
    if channel is None:
        return NO_SUCH_CHANNEL
    rest = parts[1:]
    which = "aleg"
    if rest[0] in ("-bleg", "-both"):
        which = rest.pop(0)[1:]
    if not rest:
        return "-ERR missing destination\n"
    dest = rest[0]
    dialplan = rest[1] if len(rest) > 1 else "XML"
    context = rest[2] if len(rest) > 2 else ""
    peer = _channel(switch, channel.peer) if channel.peer else None
    targets = {"aleg": [channel], "bleg": [peer] if peer else [],
               "both": [channel] + ([peer] if peer else [])}[which]
    if not targets:
        return "-ERR No B-leg to transfer\n"
    for target in targets:
        switch.calls.transfer(target, dest, dialplan, context)
    return "+OK\n"


@command("uuid_bridge")
def uuid_bridge(switch: Switch, args: str, session: Channel | None) -> str:
    parts = args.split()
    if len(parts) != 2:
        return "-USAGE: <uuid> <other_uuid>\n"
    a, b = _channel(switch, parts[0]), _channel(switch, parts[1])
    if a is None or b is None:
        return f"-ERR Invalid uuid {parts[0] if a is None else parts[1]}\n"
    # A's thread runs the bridge; B waits in exchange-media until it ends.
    if a.session_thread is None:
        a, b = b, a
    if a.session_thread is None:
        return "-ERR neither leg has a session thread\n"

    def start() -> None:
        b.wake(Interrupt("bridge_to", a.uuid)) if b.session_thread else None
        a.wake(Interrupt("bridge_to_run", b.uuid))
    a.variables["_bridge_to"] = b.uuid
    start()
    return f"+OK {b.uuid}\n"


@command("uuid_hold")
def uuid_hold(switch: Switch, args: str, session: Channel | None) -> str:
    parts = args.split()
    mode = "on"
    if parts and parts[0] in ("off", "toggle"):
        mode = parts.pop(0)
    if not parts:
        return "-USAGE: [off|toggle] <uuid>\n"
    channel = _channel(switch, parts[0])
    if channel is None:
        return "-ERR Operation Failed\n"  # switch_ivr_hold_uuid failed: no such channel
    hold = {"on": True, "off": False, "toggle": not channel.held}[mode]
    switch.media.set_hold(channel, hold, suspend=True)
    return "+OK Success\n"


@command("uuid_dump")
def uuid_dump(switch: Switch, args: str, session: Channel | None) -> str:
    """mod_commands' ``uuid_dump <uuid> [format]``: the channel's event headers (profile
    times, ``variable_*``), one ``Name: value`` line each (values URL-encoded), or ``json``."""
    parts = args.split()
    if not parts:
        return "-USAGE: <uuid> [format]\n"
    channel = _channel(switch, parts[0])
    if channel is None:
        return NO_SUCH_CHANNEL
    headers = channel.event_headers()
    if len(parts) > 1 and parts[1] == "json":
        return json.dumps(headers)
    return "".join(f"{name}: {quote(str(value), safe='')}\n" for name, value in headers.items())


@command("uuid_phone_event")
def uuid_phone_event(switch: Switch, args: str, session: Channel | None) -> str:
    """mod_sofia's ``uuid_phone_event <uuid> talk|hold``: a NOTIFY asking the phone to press
    its own key. A ringing phone that honours ``talk`` answers; ``hold`` puts the call on hold
    from the phone (re-INVITE sendonly: CHANNEL_HOLD, the peer hears hold music); ``talk`` on
    a held call takes it back."""
    parts = args.split()
    if len(parts) != 2 or parts[1] not in ("talk", "hold"):
        return "-USAGE: <uuid> talk|hold\n"
    channel = _channel(switch, parts[0])
    if channel is None:
        return NO_SUCH_CHANNEL
    if parts[1] == "hold":
        switch.media.set_hold(channel, True)
    elif channel.held:
        switch.media.set_hold(channel, False)
    elif not channel.answered:
        switch.answer(channel)
        wake_originate(channel)
    return "+OK\n"


@command("uuid_break")
def uuid_break(switch: Switch, args: str, session: Channel | None) -> str:
    parts = args.split()
    if not parts:
        return "-USAGE: <uuid> [all]\n"
    channel = _channel(switch, parts[0])
    if channel is None:
        return NO_SUCH_CHANNEL
    if channel.playing:
        channel.wake(Interrupt("break"))
    return "+OK\n"


@command("uuid_broadcast")
def uuid_broadcast(switch: Switch, args: str, session: Channel | None) -> str:
    parts = args.split()
    if len(parts) < 2:
        return "-USAGE: <uuid> <path> [aleg|bleg|both]\n"
    channel = _channel(switch, parts[0])
    if channel is None:
        return NO_SUCH_CHANNEL
    legs = parts[2] if len(parts) > 2 else "aleg"
    peer = _channel(switch, channel.peer) if channel.peer else None
    by_legs: dict[str, list[Channel | None]] = {"aleg": [channel], "bleg": [peer],
                                                "both": [channel, peer]}
    targets = by_legs.get(legs, [channel])
    path = parts[1]
    for target in [t for t in targets if t is not None]:
        previous = target.playing
        target.playing = path
        switch.fire("PLAYBACK_START", target, headers={"Playback-File-Path": path})

        def stop(t: Channel = target, p: str | None = previous) -> None:
            if t.playing == path:
                t.playing = p
            if t.up:
                switch.fire("PLAYBACK_STOP", t, headers={"Playback-File-Path": path})
        duration = switch.media.duration_ms(path)
        if duration is not None:
            switch.scheduler.call_later(switch.scaled(duration), stop)
    return "+OK Message sent\n"


@command("uuid_send_dtmf")
def uuid_send_dtmf(switch: Switch, args: str, session: Channel | None) -> str:
    parts = args.split()
    if len(parts) < 2:
        return "-USAGE: <uuid> <dtmf_data>\n"
    channel = _channel(switch, parts[0])
    if channel is None:
        return NO_SUCH_CHANNEL
    switch.send_dtmf(channel, parts[1])
    return "+OK Success\n"


def _split_quoted(text: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == "'":
            quoted = not quoted
            continue
        if ch == " " and not quoted:
            if current:
                out.append("".join(current))
                current = []
            continue
        current.append(ch)
    if current:
        out.append("".join(current))
    return out


@command("originate")
def originate(switch: Switch, args: str, session: Channel | None) -> str:
    """originate <dialstring> <&app(args)|exten> [dialplan] [context] [cid_name] [cid_num]
    [timeout]"""
    parts = _split_quoted(args)
    if len(parts) < 2:
        return "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] " \
               "[<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n"
    dialstring, dest = parts[0], parts[1]
    dialplan = parts[2] if len(parts) > 2 else "XML"
    context = parts[3] if len(parts) > 3 else "default"
    extra: dict[str, str] = {}
    if len(parts) > 4:
        extra["origination_caller_id_name"] = parts[4]
    if len(parts) > 5:
        extra["origination_caller_id_number"] = parts[5]
    timeout = float(parts[6]) if len(parts) > 6 else None
    leg, cause = switch.originate(dialstring, None, extra, timeout)
    if leg is None:
        return f"-ERR {cause}\n"
    leg.dialplan = dialplan
    if dest.startswith("&"):
        app, _, rest = dest[1:].partition("(")
        apps = [Action(app, rest[:-1] if rest.endswith(")") else rest)]
    elif dialplan == "inline":
        apps = parse_inline(dest)
    else:
        leg.context = context
        leg.destination_number = dest
        apps = None
    switch.start_session(leg, apps)
    return f"+OK {leg.uuid}\n"


@command("bgapi")
def bgapi(switch: Switch, args: str, session: Channel | None) -> str:
    job = str(uuidlib.uuid4())
    cmd, _, cmd_args = args.partition(" ")

    def run() -> None:
        result = switch.api(args, raw=True)  # an empty body stays empty
        switch.fire("BACKGROUND_JOB", headers={"Job-UUID": job, "Job-Command": cmd,
                                                "Job-Command-Arg": cmd_args}, body=result)
    threading.Thread(target=run, name=f"{switch.name}:bgapi", daemon=True).start()
    return f"+OK Job-UUID: {job}\n"


_SHOW_FIELDS = ["uuid", "direction", "created", "created_epoch", "name", "state", "cid_name",
                "cid_num", "ip_addr", "dest", "application", "application_data", "dialplan",
                "context", "read_codec", "read_rate", "read_bit_rate", "write_codec",
                "write_rate", "write_bit_rate", "secure", "hostname", "presence_id",
                "presence_data", "accountcode", "callstate", "callee_name", "callee_num",
                "callee_direction", "call_uuid", "sent_callee_name", "sent_callee_num",
                "initial_cid_name", "initial_cid_num", "initial_ip_addr", "initial_dest",
                "initial_dialplan", "initial_context"]


def _channel_row(switch: Switch, c: Channel) -> dict[str, str]:
    created = c.times["created"] / 1e6
    return {
        "uuid": c.uuid, "direction": c.direction,
        "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)),
        "created_epoch": str(int(created)), "name": c.name, "state": c.state,
        "cid_name": c.caller_id_name, "cid_num": c.caller_id_number,
        "ip_addr": c.network_addr, "dest": c.destination_number,
        "application": c.application, "application_data": c.application_data,
        "dialplan": c.dialplan, "context": c.context, "read_codec": "PCMA",
        "read_rate": "8000", "read_bit_rate": "64000", "write_codec": "PCMA",
        "write_rate": "8000", "write_bit_rate": "64000", "secure": "",
        "hostname": switch.name, "presence_id": c.get("presence_id") or "",
        "presence_data": "", "accountcode": "", "callstate": c.callstate,
        "callee_name": "", "callee_num": "", "callee_direction": "",
        "call_uuid": c.peer or "", "sent_callee_name": "", "sent_callee_num": "",
        "initial_cid_name": c.caller_id_name, "initial_cid_num": c.caller_id_number,
        "initial_ip_addr": c.network_addr, "initial_dest": c.destination_number,
        "initial_dialplan": c.dialplan, "initial_context": c.context,
    }


@command("show")
def show(switch: Switch, args: str, session: Channel | None) -> str:
    parts = args.split()
    if not parts or parts[0] not in ("channels", "calls"):
        return "-USAGE: channels|calls [as json]\n"
    rows = [_channel_row(switch, c) for c in list(switch.channels.values()) if c.up]
    if parts[-2:] == ["as", "json"]:
        if not rows:
            return json.dumps({"row_count": 0}) + "\n"
        return json.dumps({"row_count": len(rows), "rows": rows}) + "\n"
    lines = [",".join(_SHOW_FIELDS)]
    lines += [",".join(row[f] for f in _SHOW_FIELDS) for row in rows]
    return "\n".join(lines) + f"\n\n{len(rows)} total.\n"


@command("xml_flush_cache")
def xml_flush_cache(switch: Switch, args: str, session: Channel | None) -> str:
    # mod_commands: exactly "<key> <user> <domain>" evicts that one cache entry (key "id" is
    # what REGISTER and user/ dialling use); anything else empties the whole user cache.
    parts = args.split()
    if len(parts) == 3:
        count = switch.directory_cache.flush(parts[0], parts[1], parts[2])
    else:
        count = switch.directory_cache.flush()
    return f"+OK cleared {count} entr{'y' if count == 1 else 'ies'}\n"


@command("switchname")
def switchname(switch: Switch, args: str, session: Channel | None) -> str:
    # switch.conf's switchname param, else the host name; no newline, as FreeSWITCH answers
    return switch.name


@command("hostname")
def hostname(switch: Switch, args: str, session: Channel | None) -> str:
    return switch.globals.get("hostname", switch.name)


@command("global_getvar")
def global_getvar(switch: Switch, args: str, session: Channel | None) -> str:
    return switch.globals.get(args.strip(), "")


@command("global_setvar")
def global_setvar(switch: Switch, args: str, session: Channel | None) -> str:
    name, _, value = args.partition("=")
    switch.globals[name.strip()] = value
    return "+OK\n"


@command("status")
def status(switch: Switch, args: str, session: Channel | None) -> str:
    up = sum(1 for c in switch.channels.values() if c.up)
    return f"UP 0 years, 0 days\nFreeSWITCH ({switch.name}) is ready\n{up} session(s)\n"


@command("eval")
def eval_(switch: Switch, args: str, session: Channel | None) -> str:
    return switch.expand(session, args)


@command("sofia")
def sofia(switch: Switch, args: str, session: Channel | None) -> str:
    """``sofia xmlstatus profile <name>``: the profile's status as mod_sofia 1.10.12 writes it
    (the fields fsapps reads: name, context, sip-ip, url, bind-url; observed); an unknown
    profile answers ``Invalid Profile!``. Other sub-commands are not modelled."""
    words = args.split()
    if words[:2] != ["xmlstatus", "profile"] or len(words) != 3:
        return f"-ERR fakefs models only 'sofia xmlstatus profile <name>', not {args!r}\n"
    profile = switch.profiles.get(words[2])
    if profile is None:
        return "Invalid Profile!\n"
    return ('<?xml version="1.0" encoding="ISO-8859-1"?>\n<profile>\n  <profile-info>\n'
            f"    <name>{profile.name}</name>\n    <domain-name>N/A</domain-name>\n"
            f"    <dialplan>XML</dialplan>\n    <context>{profile.context}</context>\n"
            f"    <rtp-ip>{profile.ip}</rtp-ip>\n    <sip-ip>{profile.ip}</sip-ip>\n"
            f"    <url>{profile.url}</url>\n"
            f"    <bind-url>{profile.url};transport=udp,tcp</bind-url>\n"
            "  </profile-info>\n</profile>\n")
