"""wellClient call control on a switch node: the ``csta`` node command.

A CTI server sends ``{"cmd": "csta", "action": ..., ...}`` to the node that holds the channel
(or, to originate, the node the phone is registered on); the node's runtime runs it here and
the reply (``+OK ...`` / ``-ERR ...``) goes back. Every argument is checked again: a node
command is only as trustworthy as whoever can write to Redis. Uuids are canonical, extensions
and numbers pass :mod:`fsapps.domain.numbers`, the domain is one of the settings' domains; nothing
else reaches a command line.

Actions (FreeSWITCH primitives):

=============  ==============================================================================
answer         ``uuid_phone_event <uuid> talk`` — the ringing phone answers (SIP NOTIFY talk)
drop           ``uuid_kill <uuid>``
hold/unhold    ``uuid_hold [off] <uuid>`` on the device's own leg: the far party hears music
call           ``originate`` (bgapi) the device's phone with auto-answer, then ``bridge`` the
               target extension (``user/``) or run the dialplan for a number; the first leg
               carries the CSTA callId (``fsapps_csta_call``)
transfer       ``uuid_transfer <uuid> bridge:user/<ext>@<domain> inline`` (or the dialplan at a
               number): the leg leaves its call for the target
bridge         ``uuid_bridge <uuid> <other>``: two legs of two calls talk to each other
join           ``uuid_transfer <uuid> three_way:<target> inline``: a leg joins another's call
invite         ``originate`` (bgapi) an extension running ``three_way`` / ``eavesdrop`` on a leg:
               single-step conference (Active: three-way, Silent: listen), and the
               supervisor's listen / whisper / barge
=============  ==============================================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from fsapps.domain.numbers import valid_extension, valid_number
from fsapps.errors import BadInput
from fsapps.switch import hold

COMMAND = "csta"
RING_SECONDS = 30
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# how the invited phone joins a leg: its app and the variables that set the audio paths
INVITE_MODES: dict[str, tuple[str, tuple[str, ...]]] = {
    "barge": ("three_way", ()),
    "listen": ("eavesdrop", ("eavesdrop_enable_dtmf=false",)),
    # the target leg (the agent's) hears the supervisor; its peer (the caller) does not
    "whisper": ("eavesdrop", ("eavesdrop_enable_dtmf=false", "eavesdrop_whisper_bleg=true")),
}

Execute = Callable[[str, str], str]


class BadArgument(BadInput, ValueError):
    """A csta node command's argument that cannot be used; answered ``-ERR``."""


def _uuid(args: Mapping[str, Any], name: str) -> str:
    value = str(args.get(name, ""))
    if not _UUID.fullmatch(value):
        raise BadArgument(f"invalid {name} {value!r}")
    return value


def _ext(args: Mapping[str, Any], name: str) -> str:
    value = str(args.get(name, ""))
    if not valid_extension(value):
        raise BadArgument(f"invalid {name} {value!r}")
    return value


def _target(args: Mapping[str, Any], domain: str, context: str) -> tuple[str, str]:
    """(endpoint-or-dialplan form, what) of the ``to`` argument: an extension (``user/``) when
    ``kind`` says so, else a number run through the dialplan."""
    to = str(args.get("to", ""))
    if args.get("kind") == "extension":
        if not valid_extension(to):
            raise BadArgument(f"invalid extension {to!r}")
        return f"user/{to}@{domain}", to
    if not valid_number(to):
        raise BadArgument(f"invalid number {to!r}")
    return f"{to} XML {context}", to


def run(settings: Any, execute: Execute, node: str, args: Mapping[str, Any]) -> str:
    """Run one ``csta`` node command; never raises (a bad argument answers ``-ERR``)."""
    try:
        return _run(settings, execute, node, args)
    except BadArgument as exc:
        return f"-ERR {exc}\n"


def _run(settings: Any, execute: Execute, node: str, args: Mapping[str, Any]) -> str:
    action = str(args.get("action", ""))
    domain = str(args.get("domain") or settings.default_domain)
    if domain not in settings.domains:
        raise BadArgument(f"unknown domain {domain!r}")
    context = "default"
    where = f" (node {node})"
    if action == "answer":
        uuid = _uuid(args, "uuid")
        reply = execute("uuid_phone_event", f"{uuid} talk")
    elif action == "drop":
        reply = execute("uuid_kill", f"{_uuid(args, 'uuid')} NORMAL_CLEARING")
    elif action == "hold":
        reply = hold.hold(execute, _uuid(args, "uuid"))  # a fresh bridge settles first
    elif action == "unhold":
        reply = execute("uuid_hold", f"off {_uuid(args, 'uuid')}")
    elif action == "call":
        call_id = _uuid(args, "call_id")
        ext = _ext(args, "device")
        target, to = _target(args, domain, context)
        variables = ",".join([
            f"fsapps_csta_call={call_id}", "fsapps_csta_role=initiator",
            f"fsapps_csta_device={ext}", f"fsapps_csta_called={to}", f"fsapps_domain={domain}",
            "sip_auto_answer=true", f"origination_caller_id_number={to}",
            f"originate_timeout={RING_SECONDS}"])
        if target.startswith("user/"):
            dest = f"&bridge({{fsapps_csta_call={call_id},fsapps_domain={domain}}}{target})"
        else:
            dest = target
        reply = execute("bgapi", f"originate {{{variables}}}user/{ext}@{domain} {dest}")
    elif action == "transfer":
        uuid = _uuid(args, "uuid")
        target, _ = _target(args, domain, context)
        if target.startswith("user/"):
            reply = execute("uuid_transfer", f"{uuid} bridge:{target} inline")
        else:
            reply = execute("uuid_transfer", f"{uuid} {target}")
    elif action == "bridge":
        reply = execute("uuid_bridge", f"{_uuid(args, 'uuid')} {_uuid(args, 'other')}")
    elif action == "join":
        reply = execute("uuid_transfer",
                        f"{_uuid(args, 'uuid')} three_way:{_uuid(args, 'target')} inline")
    elif action == "invite":
        uuid = _uuid(args, "uuid")
        ext = _ext(args, "device")
        mode = str(args.get("mode", "barge"))
        if mode not in INVITE_MODES:
            raise BadArgument(f"invalid mode {mode!r}")
        app, extra = INVITE_MODES[mode]
        call_id = _uuid(args, "call_id")
        variables = ",".join([f"fsapps_csta_call={call_id}", f"fsapps_domain={domain}",
                              f"originate_timeout={RING_SECONDS}", *extra])
        reply = execute("bgapi", f"originate {{{variables}}}user/{ext}@{domain} &{app}({uuid})")
    else:
        raise BadArgument(f"unknown action {action!r}")
    if reply.startswith("+OK"):
        return f"+OK {action} {reply.strip().removeprefix('+OK').strip()}{where}\n"
    reason = reply.strip().removeprefix("-ERR").strip() or "no reply"
    return f"-ERR {action}: {reason}{where}\n"
