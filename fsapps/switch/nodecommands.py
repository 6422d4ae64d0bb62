"""The one switch-command engine: what to run on which node, and running it there.

Every action on a live channel — from fs_cli (:mod:`fsapps.switch.commands`), the seed REST
API (:mod:`fsapps.server.operations`) or wellClient (:mod:`fsapps.server.csta.rest`) — is a
typed :class:`NodeCommand` handed to :class:`SwitchCommands`, which runs it

- here, through the switch's api, when the caller runs inside a switch that holds the channel;
- else on the node whose runtime recorded the channel (or, for a command that names no
  channel, a given or the first live node), as a node command through Redis
  (:meth:`fsapps.domain.nodes.Nodes.request`) answered by that node's runtime, which runs it
  with :func:`serve`.

Either way the answer is a :class:`NodeReply`. Between processes the command travels as JSON
``{"cmd": <op>, <field>: <text>, ..., "reply": <id>}`` and the answer as the text line fs_cli
shows (``+OK ...`` / ``-ERR ...``), so nodes of any version understand each other; between
Python layers they are these dataclasses, and only fs_cli users see the text.

Every argument is checked again where the command runs: a node command is only as trustworthy
as whoever can write to Redis. Uuids are canonical, extensions and numbers pass
:mod:`fsapps.domain.numbers`, the domain is one of the settings' domains; nothing else reaches a
command line. Each FreeSWITCH primitive (``uuid_hold``, ``uuid_transfer``, ``uuid_kill``,
``uuid_phone_event``, ``originate``) is written once, below, for both families of commands:

- the channel commands of seed 001/003 (:class:`Transfer`, :class:`Hold`, :class:`Unhold`,
  :class:`Threeway`, :class:`Eavesdrop`, :class:`Kill`, :class:`PhoneEvent`, :class:`Cli`);
- wellClient's call control, one :class:`Csta` command whose ``action`` is

  =============  ========================================================================
  answer         ``uuid_phone_event <uuid> talk`` — the ringing phone answers
  drop           ``uuid_kill <uuid>``
  hold/unhold    ``uuid_hold [off] <uuid>`` on the device's own leg: the far party hears music
  call           ``originate`` (bgapi) the device's phone with auto-answer, then ``bridge`` the
                 target extension (:func:`ring_extension`) or run the dialplan for a number;
                 the first leg carries the CSTA callId (``fsapps_csta_call``)
  transfer       ``uuid_transfer <uuid> bridge:<ring_extension> inline`` (or the dialplan
                 at a number): the leg leaves its call for the target
  bridge         ``uuid_bridge <uuid> <other>``: two legs of two calls talk to each other
  join           ``uuid_transfer <uuid> three_way:<target> inline``: a leg joins another's call
  invite         ``originate`` (bgapi) an extension (:func:`ring_extension`) running
                 ``three_way`` / ``eavesdrop`` on a leg, on the leg's node: single-step
                 conference (Active: three-way, Silent: listen), and the supervisor's listen /
                 whisper / barge
  =============  ========================================================================

"Ring this extension" has one path, :func:`ring_extension` (the ACD's
:func:`fsapps.switch.acd.agent_endpoint`): from the node running the command, ``user/`` when the
phone is registered there, else through the relay profile to the node it is registered on. The
ACD, makeCall, consult, single-step transfer and conference, threeway, eavesdrop and the seed
REST transfer to an extension all dial through it; the seed transfer to a group runs the ACD
for that group inline (:func:`direct_destination`), without the user's dialplan routes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fsapps.channelvars import (
    ACD_GROUP_VAR,
    CALL_HEADER,
    CSTA_CALL_VAR,
    CSTA_CALLED_VAR,
    CSTA_DEVICE_VAR,
    CSTA_ROLE_VAR,
    DOMAIN_VAR,
    EAVESDROP_VAR,
    RING_TIMEOUT_HEADER,
    THREEWAY_WITH_VAR,
)
from fsapps.context import Context
from fsapps.domain.groups import Groups
from fsapps.domain.nodes import REPLY_TIMEOUT_S, Nodes
from fsapps.domain.numbers import valid_extension, valid_gateway, valid_number
from fsapps.errors import BadInput, NotFound, Unavailable
from fsapps.store.keys import seed_exten_hash
from fsapps.switch import acd, hold

Execute = Callable[[str, str], str]

THREEWAY_RING_SECONDS = 30
CSTA_RING_SECONDS = 30
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PATH = re.compile(r"[^\s'\"\\\x00-\x1f\x7f]{1,255}")
_CAUSE = re.compile(r"[A-Z][A-Z_]{2,40}")
# Listener modes of eavesdrop (FreeSWITCH's mod_dptools: eavesdrop_whisper_aleg mixes the
# listener into what the target's PEER hears, eavesdrop_whisper_bleg into what the TARGET
# hears; see tests/test_fakefs_supervision.py).
EAVESDROP_MODES = {"listen": "", "agent": "eavesdrop_whisper_bleg=true",
                   "customer": "eavesdrop_whisper_aleg=true"}
# how a phone invited by wellClient joins a leg: its app and the variables that set the paths
INVITE_MODES: dict[str, tuple[str, tuple[str, ...]]] = {
    "barge": ("three_way", ()),
    "listen": ("eavesdrop", ("eavesdrop_enable_dtmf=false",)),
    # the target leg (the agent's) hears the supervisor; its peer (the caller) does not
    "whisper": ("eavesdrop", ("eavesdrop_enable_dtmf=false", "eavesdrop_whisper_bleg=true")),
}


def valid_uuid(text: str) -> bool:
    return _UUID.fullmatch(text) is not None


def valid_name(text: str) -> bool:
    """An extension, job number or group number: ``[A-Za-z0-9_.-]``, 1 to 50 characters (what
    the ``varchar(50)`` columns hold and what may go into a key or a dial string)."""
    return valid_extension(text) and len(text) <= 50


def valid_path(text: str) -> bool:
    """A sound file for playback: no whitespace, quotes, backslashes or control characters."""
    return _PATH.fullmatch(text) is not None


# ------------------------------------------------------------------------ commands --------
@dataclass(frozen=True)
class NodeCommand:
    """A command for a switch node. Every field is text, as it travels; a field left at its
    default is not sent, and a field missing from a message takes its default."""

    op: ClassVar[str] = ""

    def wire(self) -> dict[str, str]:
        """The command's arguments as sent (fields at their default left out)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}

    @property
    def channel(self) -> str:
        """The channel it acts on ("" when it names none)."""
        return str(getattr(self, "uuid", ""))


@dataclass(frozen=True)
class Transfer(NodeCommand):
    """The channel (``leg`` "bleg": the party it talks to, the channel itself hung up) runs
    the dialplan at ``extension`` (in ``domain`` when given), or calls the number
    ``extension`` through ``gateway``. With ``direct`` ("1") an extension or group of the
    domain is reached by itself instead (:func:`direct_destination`: relayed to the node the
    phone is registered on; the group's ACD), without the dialplan's routes."""

    op: ClassVar[str] = "transfer"
    uuid: str = ""
    extension: str = ""
    gateway: str = ""
    leg: str = ""
    domain: str = ""
    direct: str = ""


@dataclass(frozen=True)
class Hold(NodeCommand):
    op: ClassVar[str] = "hold"
    uuid: str = ""


@dataclass(frozen=True)
class Unhold(NodeCommand):
    op: ClassVar[str] = "unhold"
    uuid: str = ""


@dataclass(frozen=True)
class Threeway(NodeCommand):
    """Ring ``phone`` (an extension, or a number through ``gateway``) into the channel's call."""

    op: ClassVar[str] = "threeway"
    uuid: str = ""
    phone: str = ""
    gateway: str = ""
    domain: str = ""


@dataclass(frozen=True)
class Eavesdrop(NodeCommand):
    """Ring ``phone`` to listen to the channel, or whisper to the agent / the customer."""

    op: ClassVar[str] = "eavesdrop"
    uuid: str = ""
    phone: str = ""
    gateway: str = ""
    mode: str = "listen"
    dtmf: str = "true"
    ring_seconds: str = str(THREEWAY_RING_SECONDS)


@dataclass(frozen=True)
class Kill(NodeCommand):
    """Hang up the channel with ``cause``; with ``both`` its bridged peer too."""

    op: ClassVar[str] = "kill"
    uuid: str = ""
    cause: str = ""
    both: str = ""


@dataclass(frozen=True)
class PhoneEvent(NodeCommand):
    """Ask the channel's phone to answer (``talk``) or hold (``hold``), as its keys would."""

    op: ClassVar[str] = "phone_event"
    uuid: str = ""
    event: str = ""


@dataclass(frozen=True)
class Cli(NodeCommand):
    """mod_cti's ``/cli``: an allow-listed api command (checked again on the node)."""

    op: ClassVar[str] = "cli"
    api: str = ""
    arg: str = ""


@dataclass(frozen=True)
class Csta(NodeCommand):
    """wellClient call control (the actions are in the module's table)."""

    op: ClassVar[str] = "csta"
    action: str = ""
    domain: str = ""
    uuid: str = ""
    other: str = ""
    target: str = ""
    device: str = ""
    call_id: str = ""
    to: str = ""
    kind: str = ""
    mode: str = "barge"


COMMANDS: dict[str, type[NodeCommand]] = {
    cls.op: cls for cls in (Transfer, Hold, Unhold, Threeway, Eavesdrop, Kill, PhoneEvent, Cli,
                            Csta)}


def from_wire(message: Mapping[str, Any]) -> NodeCommand:
    """The command of a message taken off a node's queue (its ``cmd`` one of
    :data:`COMMANDS`); every field as text, missing ones at their default."""
    cls = COMMANDS[str(message.get("cmd", ""))]
    return cls(**{f.name: str(message[f.name]) for f in dataclasses.fields(cls)
                  if f.name in message})


@dataclass(frozen=True)
class NodeReply:
    """What a node answered: done (``ok``) or refused, and the line fs_cli shows."""

    ok: bool
    text: str

    @classmethod
    def parse(cls, text: str) -> NodeReply:
        """The reply a node sent as text (:meth:`Nodes.request`)."""
        return cls(text.startswith("+OK"), text)

    @classmethod
    def done(cls, what: str) -> NodeReply:
        return cls(True, f"+OK {what}\n")

    @classmethod
    def refused(cls, reason: str) -> NodeReply:
        return cls(False, f"-ERR {reason}\n")

    @property
    def detail(self) -> str:
        """The text after ``+OK`` / ``-ERR`` (what was done, or why not)."""
        return self.text.strip().removeprefix("+OK" if self.ok else "-ERR").strip()


# ------------------------------------------------------------------------ where -----------
class NoSuchChannel(NotFound):
    """No live node holds the channel."""

    def __init__(self, uuid: str) -> None:
        self.uuid = uuid
        super().__init__(f"no such channel {uuid}")


class NodeNotAlive(NotFound):
    def __init__(self, node: str) -> None:
        self.node = node
        super().__init__(f"node {node!r} is not alive")


class NoLiveNode(Unavailable):
    status = 503

    def __init__(self) -> None:
        super().__init__("no live FreeSWITCH node")


class NodeDidNotAnswer(Unavailable):
    """The node took no answer back in time; the command may still run there."""

    status = 504

    def __init__(self, node: str, timeout_s: float, uuid: str = "") -> None:
        self.node, self.timeout_s, self.uuid = node, timeout_s, uuid
        holding = f" holding {uuid}" if uuid else ""
        super().__init__(f"node {node}{holding} did not answer within {timeout_s:g} s "
                         "(the command may still run there)")


class SwitchCommands:
    """Runs node commands where they belong. ``node`` and ``execute``: the switch this code
    runs in (fs_cli, ESL), which runs a command itself when it holds the channel; without
    them (the CTI server) every command goes to a node through Redis, waiting ``timeout_s``
    for its answer. Blocking."""

    def __init__(self, ctx: Context, *, node: str = "", execute: Execute | None = None,
                 timeout_s: float = REPLY_TIMEOUT_S) -> None:
        self.ctx, self.node, self.execute, self.timeout_s = ctx, node, execute, timeout_s

    def on_channel(self, command: NodeCommand) -> NodeReply:
        """Run ``command`` where its channel lives. Raises NoSuchChannel when no live node
        holds it, NodeDidNotAnswer when its node did not answer in time."""
        uuid = command.channel
        if self.execute is not None and self.execute("uuid_exists", uuid).strip() == "true":
            return serve(self.ctx, self.execute, self.node, command)
        owner = Nodes(self.ctx).owner(uuid)
        if owner is None or (self.execute is not None and owner == self.node):
            raise NoSuchChannel(uuid)
        return self._request(owner, command, uuid)

    def owner(self, uuid: str) -> str | None:
        """The live node that holds channel ``uuid`` (None when none does)."""
        return Nodes(self.ctx).owner(uuid)

    def on_node(self, command: NodeCommand, node: str | None = None) -> NodeReply:
        """Run ``command`` on ``node`` (default: the first live node by name). Raises
        NoLiveNode, NodeNotAlive, NodeDidNotAnswer."""
        alive = sorted(Nodes(self.ctx).alive())
        if node is None:
            if not alive:
                raise NoLiveNode()
            node = alive[0]
        elif node not in alive:
            raise NodeNotAlive(node)
        return self._request(node, command)

    def _request(self, node: str, command: NodeCommand, uuid: str = "") -> NodeReply:
        text = Nodes(self.ctx).request(node, command.op, self.timeout_s, **command.wire())
        if text is None:
            raise NodeDidNotAnswer(node, self.timeout_s, uuid)
        return NodeReply.parse(text)


# ------------------------------------------------------------------------ running here ----
def serve(ctx: Context, execute: Execute, node: str,
          command: NodeCommand | Mapping[str, Any]) -> NodeReply:
    """Run ``command`` (or the message off the node's queue that carries it) on this switch;
    never raises for bad arguments (they are refused: ``-ERR``)."""
    if not isinstance(command, NodeCommand):
        command = from_wire(command)
    if isinstance(command, Csta):
        try:
            return _csta(ctx, execute, node, command)
        except BadInput as exc:
            return NodeReply.refused(str(exc))
    if isinstance(command, Cli):
        return _cli(ctx, execute, command)
    return _channel(ctx, execute, node, command)


# The FreeSWITCH primitives, each written once.
def _unhold(execute: Execute, uuid: str) -> str:
    return execute("uuid_hold", f"off {uuid}")


def _kill(execute: Execute, uuid: str, cause: str) -> str:
    return execute("uuid_kill", f"{uuid} {cause}")


def ring_extension(ctx: Context, domain: str, extension: str, node: str) -> str:
    """The dial string that rings ``extension`` of ``domain`` from ``node`` (this one):
    ``user/<ext>@<domain>`` when its phone is registered here, else relayed to the node it is
    registered on — the ACD's own path (:func:`fsapps.switch.acd.agent_endpoint`), used by
    every command that rings an extension."""
    return acd.agent_endpoint(ctx, domain, extension, node)


def is_extension(ctx: Context, domain: str, number: str) -> bool:
    """Is ``number`` an extension of ``domain`` (an agent, or an entry of the seed's Redis
    directory)? One round trip."""
    if not valid_extension(number):
        return False
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.exists(ctx.keys(domain).agent(number))
    pipe.hexists(seed_exten_hash(domain), number)
    return any(pipe.execute())


def _with_call(call_id: str) -> str:
    """``{sip_h_X-FSAPPS-Call=<callId>}``: the CSTA call a bridged leg joins, carried as a SIP
    header to the phone's leg on another node (the relay legs are in no call), as the
    ACD's offer does; "" without one."""
    return f"{{{CALL_HEADER}={call_id}}}" if call_id else ""


def csta_call_of(ctx: Context, domain: str, uuid: str) -> str:
    """The CSTA call a channel is in (the feed's legs hash), else the channel's own uuid."""
    return str(ctx.redis.hget(ctx.keys(domain).csta_legs(), uuid) or uuid)


def direct_destination(ctx: Context, domain: str, number: str, node: str,
                       moved: str = "") -> str:
    """The ``uuid_transfer`` destination that reaches ``number`` by itself: an extension rung
    with :func:`ring_extension` (``bridge:<dial string> inline``; the leg joins ``moved``'s
    CSTA call), a group's ACD (``'python:fsapps.nwayacd <group>' inline``); "" for any other
    number (the dialplan)."""
    if is_extension(ctx, domain, number):
        call = csta_call_of(ctx, domain, moved) if valid_uuid(moved) else ""
        return f"bridge:{_with_call(call)}{ring_extension(ctx, domain, number, node)} inline"
    if valid_name(number) and Groups(ctx, domain).get(number) is not None:
        return f"'python:fsapps.nwayacd {number}' inline"
    return ""


def _transfer(execute: Execute, uuid: str, destination: str, leg: str = "") -> str:
    """``uuid_transfer``: the channel (``leg`` ``-bleg ``: its peer) runs ``destination``, a
    dialplan extension or ``app:arg inline``."""
    return execute("uuid_transfer", f"{uuid} {leg}{destination}")


def _phone_event(execute: Execute, uuid: str, event: str) -> str:
    # mod_sofia sends the phone a NOTIFY (Event: talk / hold): the phone itself answers,
    # or puts the call on hold, as if its user had pressed the key.
    return execute("uuid_phone_event", f"{uuid} {event}")


def _originate(execute: Execute, variables: Sequence[str], endpoint: str, then: str) -> str:
    """``bgapi originate``: ring ``endpoint`` in the background; ``then`` runs when it answers."""
    return execute("bgapi", f"originate {{{','.join(variables)}}}{endpoint} {then}")


def _peer(execute: Execute, uuid: str) -> str:
    """The channel ``uuid`` is bridged to ("" when none)."""
    peer = execute("uuid_getvar", f"{uuid} signal_bond").strip()
    return peer if valid_uuid(peer) else ""


def _getvar(execute: Execute, uuid: str, name: str) -> str:
    value = execute("uuid_getvar", f"{uuid} {name}").strip()
    return "" if value in ("_undef_", "") or value.startswith("-ERR") else value


def _reason(reply: str) -> str:
    return reply.strip().removeprefix("-ERR").strip() or "no reply"


def _channel(ctx: Context, execute: Execute, node: str, command: NodeCommand) -> NodeReply:
    """A channel command of seed 001/003 on this switch."""
    uuid = command.channel
    if not valid_uuid(uuid):
        return NodeReply.refused(f"invalid uuid {uuid!r}")
    where = f" (node {node})"
    domain = str(getattr(command, "domain", "") or "")
    if domain and domain not in ctx.settings.domains:
        return NodeReply.refused(f"unknown domain {domain!r}")
    if isinstance(command, Transfer):
        ext, gateway = command.extension, command.gateway
        if gateway and not (valid_gateway(gateway) and valid_number(ext)):
            return NodeReply.refused(f"invalid number {ext!r} or gateway {gateway!r}")
        if not gateway and not valid_name(ext):
            return NodeReply.refused(f"invalid extension {ext!r}")
        # "bleg": the party the channel talks to moves, the channel itself is hung up
        leg = "-bleg " if command.leg == "bleg" else ""
        moved = _peer(execute, uuid) if leg else uuid
        if moved:
            _set_transfer_ring(ctx, execute, uuid, moved)
        if gateway:
            reply = _transfer(execute, uuid, f"bridge:sofia/gateway/{gateway}/{ext} inline", leg)
            what = f"transferred {uuid}{' peer' if leg else ''} to {ext} via {gateway}"
        else:
            was = _getvar(execute, moved, "domain_name") if domain and moved else ""
            if domain and moved:
                # the group's ACD (and a dialplan) work in ${domain_name}: that domain's
                execute("uuid_setvar", f"{moved} domain_name {domain}")
            # direct: an extension or group is reached by itself (relayed to the node an
            # extension is registered on), not through routes the user's dialplan may not
            # have; any other number runs the dialplan
            direct = direct_destination(ctx, domain or ctx.settings.default_domain, ext,
                                        node, moved) if command.direct == "1" else ""
            reply = _transfer(execute, uuid, direct or ext, leg)
            if domain and moved and not reply.startswith("+OK"):
                # not transferred: the channel stays in the domain it was in
                execute("uuid_setvar", f"{moved} domain_name {was}".rstrip())
            target = f"{ext}@{domain}" if domain else ext
            what = f"transferred {uuid}{' peer' if leg else ''} to {target}"
    elif isinstance(command, Hold):
        reply, what = hold.hold(execute, uuid), f"{uuid} on hold"
    elif isinstance(command, Unhold):
        reply, what = _unhold(execute, uuid), f"{uuid} off hold"
    elif isinstance(command, Threeway):
        phone, gateway = command.phone, command.gateway
        if gateway and not (valid_gateway(gateway) and valid_number(phone)):
            return NodeReply.refused(f"invalid number {phone!r} or gateway {gateway!r}")
        if not gateway and not valid_name(phone):
            return NodeReply.refused(f"invalid extension {phone!r}")
        endpoint = f"sofia/gateway/{gateway}/{phone}" if gateway else \
            ring_extension(ctx, domain or ctx.settings.default_domain, phone, node)
        if domain and not gateway:
            phone = f"{phone}@{domain}"
        reply = _originate(execute, [f"originate_timeout={THREEWAY_RING_SECONDS}",
                                     f"{RING_TIMEOUT_HEADER}={THREEWAY_RING_SECONDS}",
                                     f"{THREEWAY_WITH_VAR}={uuid}"],
                           endpoint, f"&three_way({uuid})")
        job = reply.strip().removeprefix("+OK").strip()
        via = f" via {gateway}" if gateway else ""
        what = f"inviting {phone}{via} into {uuid} ({job})"
    elif isinstance(command, Eavesdrop):
        return _eavesdrop(ctx, execute, node, command)
    elif isinstance(command, Kill):
        return _hang_up(execute, node, command)
    elif isinstance(command, PhoneEvent):
        event = command.event
        if event not in ("talk", "hold"):
            return NodeReply.refused(f"invalid phone event {event!r} (talk or hold)")
        reply, what = _phone_event(execute, uuid, event), f"{uuid} phone {event}"
        if not reply.strip():
            reply = "+OK"
    else:
        return NodeReply.refused(f"unknown channel command {command.op!r}")
    if reply.startswith("+OK"):
        return NodeReply.done(f"{what}{where}")
    return NodeReply.refused(f"{command.op} {uuid}: {_reason(reply)}{where}")


def _set_transfer_ring(ctx: Context, execute: Execute, uuid: str, moved: str) -> str:
    """Seed 001's transfer ring (转接时放的音, ``nway_set_ring_group``'s fourth file) of the
    call's group: set as ``transfer_ringback`` on the channel that is transferred, which
    FreeSWITCH plays to an answered channel while the bridge its transfer leads to rings.
    The call's group is on the agent's leg (``fsapps_acd_group`` / ``fsapps_domain``, set by
    the ACD's bridge): ``uuid`` itself or the leg it talks to. Nothing is set when the call
    came through no group, or its group has no transfer ring. Returns the file set."""
    for leg in (uuid, _peer(execute, uuid)):
        if not leg:
            continue
        group = _getvar(execute, leg, ACD_GROUP_VAR)
        if not group:
            continue
        domain = _getvar(execute, leg, DOMAIN_VAR) or ctx.settings.default_domain
        if not valid_name(group) or domain not in ctx.settings.domains:
            return ""
        found = Groups(ctx, domain).get(group)
        ring = found.transfer_ring if found is not None else ""
        if ring and valid_path(ring):
            execute("uuid_setvar", f"{moved} transfer_ringback {ring}")
            return ring
        return ""
    return ""


def _eavesdrop(ctx: Context, execute: Execute, node: str, command: Eavesdrop) -> NodeReply:
    """Ring a listener (an extension, or a number through a gateway) and, when it answers,
    let it listen to the channel (``mode`` listen), or whisper to the agent or to the
    customer. With ``dtmf`` the listener switches modes with 1/2/3/0 (seed 003)."""
    uuid, phone, gateway, mode = command.uuid, command.phone, command.gateway, command.mode
    if mode not in EAVESDROP_MODES:
        return NodeReply.refused(f"invalid eavesdrop mode {mode!r} "
                                 f"({', '.join(EAVESDROP_MODES)})")
    if gateway and not (valid_gateway(gateway) and valid_number(phone)):
        return NodeReply.refused(f"invalid number {phone!r} or gateway {gateway!r}")
    if not gateway and not valid_name(phone):
        return NodeReply.refused(f"invalid extension {phone!r}")
    try:
        ring = max(1, min(int(command.ring_seconds), 600))
    except ValueError:
        ring = THREEWAY_RING_SECONDS
    endpoint = f"sofia/gateway/{gateway}/{phone}" if gateway else \
        ring_extension(ctx, ctx.settings.default_domain, phone, node)
    dtmf = "false" if command.dtmf in ("false", "0") else "true"
    variables = [f"originate_timeout={ring}", f"{RING_TIMEOUT_HEADER}={ring}",
                 f"eavesdrop_enable_dtmf={dtmf}", f"{EAVESDROP_VAR}={uuid}"]
    if EAVESDROP_MODES[mode]:
        variables.append(EAVESDROP_MODES[mode])
    reply = _originate(execute, variables, endpoint, f"&eavesdrop({uuid})")
    if not reply.startswith("+OK"):
        return NodeReply.refused(f"eavesdrop {uuid}: {_reason(reply)} (node {node})")
    job = reply.strip().removeprefix("+OK").strip()
    via = f" via {gateway}" if gateway else ""
    return NodeReply.done(f"{phone}{via} rung to {mode} on {uuid} ({job}) (node {node})")


def _hang_up(execute: Execute, node: str, command: Kill) -> NodeReply:
    """Hang up the channel (``uuid_kill``) with ``cause``; with ``both`` its bridged peer
    too (its ``signal_bond``, read before the kill), as seed 003 advises for a forced hangup."""
    uuid = command.uuid
    cause = command.cause or "MANAGER_REQUEST"
    if not _CAUSE.fullmatch(cause):
        return NodeReply.refused(f"invalid hangup cause {cause!r}")
    peer = _peer(execute, uuid) if command.both else ""
    reply = _kill(execute, uuid, cause)
    if not reply.startswith("+OK"):
        return NodeReply.refused(f"kill {uuid}: {_reason(reply)} (node {node})")
    killed = [uuid]
    # The peer may already be gone (hangup_after_bridge), or live on another node.
    if peer and _kill(execute, peer, cause).startswith("+OK"):
        killed.append(peer)
    return NodeReply.done(f"hung up {' and '.join(killed)} ({cause}) (node {node})")


def cli_allowed(allowed: Sequence[str], command: str, arg: str) -> str | None:
    """Why ``command arg`` may not run under the allow-list (None: it may). ``bgapi`` runs
    another command, which must be allowed as well."""
    if command not in allowed:
        return f"command {command!r} is not allowed (cti.cli_commands)"
    if command == "bgapi":
        inner = arg.split(" ", 1)[0]
        if not inner or inner == "bgapi" or inner not in allowed:
            return f"bgapi of {inner or '(nothing)'!r} is not allowed (cti.cli_commands)"
    return None


def _cli(ctx: Context, execute: Execute, command: Cli) -> NodeReply:
    """mod_cti's ``/cli`` passthrough on this node: the switch's own reply. The allow-list is
    checked again here, against this node's settings."""
    if any(ch in command.arg for ch in "\r\n\x00"):
        return NodeReply.refused("invalid argument: line breaks are not allowed")
    refused = cli_allowed(ctx.settings.cti.cli_commands, command.api, command.arg)
    if refused:
        return NodeReply.refused(refused)
    reply = execute(command.api, command.arg)
    return NodeReply.parse(reply if reply.endswith("\n") else reply + "\n")


# ------------------------------------------------------------------------ wellClient ------
class BadArgument(BadInput, ValueError):
    pass


def _csta_uuid(value: str, name: str) -> str:
    if not valid_uuid(value):
        raise BadArgument(f"invalid {name} {value!r}")
    return value


def _csta_ext(value: str, name: str) -> str:
    if not valid_extension(value):
        raise BadArgument(f"invalid {name} {value!r}")
    return value


def _csta_target(ctx: Context, node: str, command: Csta, domain: str,
                 context: str) -> tuple[str, str]:
    """(endpoint-or-dialplan form, what) of the ``to`` argument: an extension
    (:func:`ring_extension` from ``node``) when ``kind`` says so, else a number run through
    the dialplan."""
    to = command.to
    if command.kind == "extension":
        if not valid_extension(to):
            raise BadArgument(f"invalid extension {to!r}")
        return ring_extension(ctx, domain, to, node), to
    if not valid_number(to):
        raise BadArgument(f"invalid number {to!r}")
    return f"{to} XML {context}", to


def _csta(ctx: Context, execute: Execute, node: str, command: Csta) -> NodeReply:
    action = command.action
    domain = command.domain or ctx.settings.default_domain
    if domain not in ctx.settings.domains:
        raise BadArgument(f"unknown domain {domain!r}")
    context = "default"
    where = f" (node {node})"
    if action == "answer":
        reply = _phone_event(execute, _csta_uuid(command.uuid, "uuid"), "talk")
    elif action == "drop":
        reply = _kill(execute, _csta_uuid(command.uuid, "uuid"), "NORMAL_CLEARING")
    elif action == "hold":
        reply = hold.hold(execute, _csta_uuid(command.uuid, "uuid"))  # a fresh bridge settles
    elif action == "unhold":
        reply = _unhold(execute, _csta_uuid(command.uuid, "uuid"))
    elif action == "call":
        call_id = _csta_uuid(command.call_id, "call_id")
        ext = _csta_ext(command.device, "device")
        target, to = _csta_target(ctx, node, command, domain, context)
        variables = [
            f"{CSTA_CALL_VAR}={call_id}", f"{CSTA_ROLE_VAR}=initiator",
            f"{CSTA_DEVICE_VAR}={ext}", f"{CSTA_CALLED_VAR}={to}", f"{DOMAIN_VAR}={domain}",
            "sip_auto_answer=true", f"origination_caller_id_number={to}",
            f"originate_timeout={CSTA_RING_SECONDS}"]
        if command.kind == "extension":
            # the call's id also travels as a SIP header: the target's leg on another node
            # (rung through the relay) joins the call in the CSTA feed there
            dest = (f"&bridge({{{CSTA_CALL_VAR}={call_id},{DOMAIN_VAR}={domain},"
                    f"{CALL_HEADER}={call_id}}}{target})")
        else:
            dest = target
        reply = _originate(execute, variables, f"user/{ext}@{domain}", dest)
    elif action == "transfer":
        uuid = _csta_uuid(command.uuid, "uuid")
        target, _ = _csta_target(ctx, node, command, domain, context)
        if command.kind == "extension":
            call = _csta_uuid(command.call_id, "call_id") if command.call_id else ""
            reply = _transfer(execute, uuid, f"bridge:{_with_call(call)}{target} inline")
        else:
            reply = _transfer(execute, uuid, target)
    elif action == "bridge":
        reply = execute("uuid_bridge", f"{_csta_uuid(command.uuid, 'uuid')} "
                                       f"{_csta_uuid(command.other, 'other')}")
    elif action == "join":
        reply = _transfer(execute, _csta_uuid(command.uuid, "uuid"),
                          f"three_way:{_csta_uuid(command.target, 'target')} inline")
    elif action == "invite":
        uuid = _csta_uuid(command.uuid, "uuid")
        ext = _csta_ext(command.device, "device")
        mode = command.mode
        if mode not in INVITE_MODES:
            raise BadArgument(f"invalid mode {mode!r}")
        app, extra = INVITE_MODES[mode]
        call_id = _csta_uuid(command.call_id, "call_id")
        reply = _originate(execute, [f"{CSTA_CALL_VAR}={call_id}", f"{DOMAIN_VAR}={domain}",
                                     f"originate_timeout={CSTA_RING_SECONDS}",
                                     f"{RING_TIMEOUT_HEADER}={CSTA_RING_SECONDS}",
                                     f"{CALL_HEADER}={call_id}", *extra],
                           ring_extension(ctx, domain, ext, node), f"&{app}({uuid})")
    else:
        raise BadArgument(f"unknown action {action!r}")
    if reply.startswith("+OK"):
        return NodeReply.done(f"{action} {reply.strip().removeprefix('+OK').strip()}{where}")
    return NodeReply.refused(f"{action}: {_reason(reply)}{where}")
