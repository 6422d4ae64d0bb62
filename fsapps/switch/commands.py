"""The switch commands of seed 001 part IV (ESL操作配置): ``python fsapps.api <command> [args]``
from fs_cli, ESL (``api`` / ``bgapi``) and the dialplan, and the aliases ``fsapps.runtime``
installs at start-up so that fs_cli takes the seed's own lines (``nway_login 1000 120``).

Every command is a function of an :class:`Invocation` returning the reply: ``+OK <what
happened>`` or ``-ERR <reason>``; a bad or missing argument answers ``-ERR usage: <usage line>
(<what was wrong>)``; the list commands print an aligned table, or JSON (``{"row_count": n,
"rows": [...]}``, as ``show ... as json``) when the last argument is ``json``. No exception
leaves :func:`run`: an internal failure is logged and answers ``-ERR internal error: ...``.

Arguments never reach SQL (parameterised), a Redis key or a dial string unchecked: extensions,
job numbers and groups are ``[A-Za-z0-9_.-]{1,50}``, modes 0-5, files without whitespace,
quotes or backslashes, uuids canonical, phone numbers digits with an optional ``+``.

- Record changes (extensions, groups, memberships) go to PostgreSQL and Redis together
  (:func:`fsapps.domain.groups.written_together`): when either fails neither is changed, and the
  reply says ``nothing changed``.
- Live state (ready, busy, registration) is Redis only; every node reads it on the next call.
- Channel commands (transfer, hold, unhold, three-way) run where the channel lives: on this
  switch through its api, otherwise on the node whose runtime recorded the channel, through a
  node command whose answer is the reply (:meth:`fsapps.domain.nodes.Nodes.request`). The CTI
  server (:mod:`fsapps.server`) sends the same node commands, plus ``eavesdrop`` (listen /
  whisper), ``kill`` (one leg or both), ``phone_event`` (the phone answers / holds) and
  ``cli`` (an allow-listed api command, checked again here against this node's settings).
"""

from __future__ import annotations

import json
import re
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2

from fsapps import __version__
from fsapps.context import Context, get_context, now_ms
from fsapps.domain.agents import Agent, Agents
from fsapps.domain.callqueue import CallQueue
from fsapps.domain.extensions import Extensions
from fsapps.domain.groups import Group, Groups
from fsapps.domain.nodes import REPLY_TIMEOUT_S, Nodes
from fsapps.domain.numbers import valid_extension, valid_gateway, valid_number
from fsapps.errors import BadInput, Conflict, DatabaseError, FsappsError, StoreUnavailable
from fsapps.fslog import log
from fsapps.services import agents as agent_service
from fsapps.switch import acd, hold

Execute = Callable[[str, str], str]

MODES = {0: "sequence", 1: "random", 2: "cycle", 3: "remember+0", 4: "remember+1",
         5: "remember+2"}
THREEWAY_RING_SECONDS = 30
# Channel commands a node runs for another (fsapps.runtime serves them).
CHANNEL_COMMANDS = ("transfer", "hold", "unhold", "threeway", "eavesdrop", "kill",
                    "phone_event", "cli")

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PATH = re.compile(r"[^\s'\"\\\x00-\x1f\x7f]{1,255}")
# A domain as written after ``@``: only its shape, so that a bad one is named in the refusal
# (a configured domain is a Redis key part: no braces, no whitespace).
_DOMAIN = re.compile(r"[A-Za-z0-9_.:-]{1,253}")
_GROUP_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,100}")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class UsageError(BadInput):
    """A bad or missing argument: the reply is the command's usage line and ``detail``."""

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(detail)


class Refused(Conflict):
    """The command cannot be done as asked; the message is the reply's reason."""


@dataclass
class Invocation:
    """One command: its arguments (``json`` taken off the end) and where it runs."""

    ctx: Context
    args: list[str]
    node: str
    execute: Execute
    json: bool = False
    named_domain: str | None = None  # the domain a value of the line named (``1000@cc.test``)

    @property
    def domain(self) -> str:
        """Where the command acts: the domain its values name, else the default domain.
        Read only after every argument is parsed (:meth:`in_domain` may still set it)."""
        return self.named_domain or self.ctx.settings.default_domain

    def label(self, name: str) -> str:
        """``name`` as replies show it: with its domain when the line named one."""
        return f"{name}@{self.named_domain}" if self.named_domain else name

    def in_domain(self, value: str, what: str) -> str:
        """The extension or group of ``value`` (``1000`` or ``1000@cc.test``, shape already
        checked by :func:`valid_qualified`). A named domain must be configured, and one line
        acts in one domain: values naming two domains are refused before anything is done
        (a login must not join one tenant's agent to another tenant's group). A plain value
        is in the domain the line's other values name, else the default domain."""
        name, at, domain = value.partition("@")
        if not at:
            return name
        domains = self.ctx.settings.domains
        if domain not in domains:
            raise Refused(f"unknown domain {domain!r} in {what} {value!r} "
                          f"(configured: {', '.join(domains)})")
        if self.named_domain is not None and domain != self.named_domain:
            raise Refused(f"{what} {value!r} is in domain {domain!r} but the command's other "
                          f"values are in {self.named_domain!r}; one command acts in one domain")
        self.named_domain = domain
        return name

    def qualified(self, index: int, what: str) -> str:
        """Argument ``index``: an extension or group, plain or ``<value>@<domain>``; the
        plain value (see :meth:`in_domain`)."""
        return self.in_domain(self.arg(index, what, valid_qualified), what)

    def arg(self, index: int, what: str, valid: Callable[[str], bool] | None = None,
            default: str | None = None) -> str:
        """Argument ``index``; UsageError naming ``what`` when it is missing (and has no
        ``default``) or fails ``valid``."""
        if index >= len(self.args):
            if default is not None:
                return default
            raise UsageError(f"missing {what}")
        value = self.args[index]
        if valid is not None and not valid(value):
            raise UsageError(f"invalid {what} {value!r}")
        return value

    def at_most(self, count: int) -> None:
        if len(self.args) > count:
            raise UsageError(f"unexpected argument {self.args[count]!r}")

    def no_json(self) -> None:
        if self.json:
            raise UsageError("unexpected argument 'json'")

    def agent(self, extension: str) -> Agent:
        """The agent of ``extension``; Refused when there is none."""
        agent = Agents(self.ctx, self.domain).get(extension)
        if agent is None:
            raise Refused(f"unknown extension {self.label(extension)!r} "
                          "(add it with nway_add_ext)")
        return agent


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    run: Callable[[Invocation], str]
    record: bool = False  # changes PostgreSQL and Redis together
    lists: bool = False  # takes a trailing ``json``


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str, *, record: bool = False,
            lists: bool = False) -> Callable[[Callable[[Invocation], str]],
                                             Callable[[Invocation], str]]:
    def register(fn: Callable[[Invocation], str]) -> Callable[[Invocation], str]:
        COMMANDS[name] = Command(name, f"{name} {usage}".strip(), fn, record, lists)
        return fn
    return register


def valid_name(text: str) -> bool:
    """An extension, job number or group number: ``[A-Za-z0-9_.-]``, 1 to 50 characters (what
    the ``varchar(50)`` columns hold and what may go into a key or a dial string)."""
    return valid_extension(text) and len(text) <= 50


def valid_qualified(text: str) -> bool:
    """An extension or group, optionally with its domain: ``1000`` or ``1000@cc.test``. Only
    the shape: whether the domain is configured is :meth:`Invocation.in_domain`'s refusal."""
    name, at, domain = text.partition("@")
    return valid_name(name) and (not at or _DOMAIN.fullmatch(domain) is not None)


def valid_uuid(text: str) -> bool:
    return _UUID.fullmatch(text) is not None


def valid_path(text: str) -> bool:
    """A sound file for playback: no whitespace, quotes, backslashes or control characters."""
    return _PATH.fullmatch(text) is not None


def _mode(text: str) -> bool:
    return text in ("0", "1", "2", "3", "4", "5")


def _boolean(text: str) -> bool:
    return text.lower() in _TRUE + _FALSE


# ------------------------------------------------------------------------ running ---------
def run(line: str, execute: Execute | None = None, ctx: Context | None = None) -> str:
    """The reply to one command line (``"<command> <args>"``), always ending in a newline."""
    words = (line or "").split()
    if not words:
        return f"-ERR usage: python fsapps.api <command> [args]; commands: {names()}\n"
    name, args = words[0], words[1:]
    cmd = COMMANDS.get(name)
    if cmd is None:
        return f"-ERR unknown command {name}; commands: {names()}\n"
    try:
        ctx = ctx or get_context()
        wants_json = bool(cmd.lists and args and args[-1].lower() == "json")
        inv = Invocation(ctx, args[:-1] if wants_json else args, acd.node_name(ctx),
                         execute or switch_api(), wants_json)
        reply = cmd.run(inv)
    except UsageError as exc:
        reply = f"-ERR usage: {cmd.usage}" + (f" ({exc.detail})" if exc.detail else "")
    except (StoreUnavailable, DatabaseError, psycopg2.Error) as exc:
        reason = _first_line(exc)
        if isinstance(exc, psycopg2.Error):
            reason = f"PostgreSQL refused the change: {reason}"
        log("ERR", f"api {name}: {reason}")
        reply = f"-ERR {reason}" + ("; nothing changed" if cmd.record else "")
    except FsappsError as exc:
        reply = f"-ERR {_first_line(exc)}"
    except Exception as exc:
        log("ERR", f"api {line!r}: {traceback.format_exc()}")
        reply = f"-ERR internal error: {type(exc).__name__}: {_first_line(exc)}"
    return reply if reply.endswith("\n") else reply + "\n"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def names() -> str:
    return ", ".join(COMMANDS)


def switch_api() -> Execute:
    """The api of the switch this code runs in (``freeswitch.API().execute``)."""
    import freeswitch

    api = freeswitch.API()
    return lambda cmd, args: str(api.execute(cmd, args) or "")


def install_aliases(execute: Execute) -> list[str]:
    """``alias add <cmd> python fsapps.api <cmd>`` for every command, so fs_cli takes the
    seed's lines as they are. Returns the commands whose alias the switch refused."""
    refused = []
    for name in COMMANDS:
        reply = execute("alias", f"add {name} python fsapps.api {name}")
        if not reply.startswith("+OK"):
            refused.append(name)
    return refused


# ------------------------------------------------------------------------ output ----------
def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An aligned table with a header line, then ``<n> total.`` as ``show`` prints it."""
    text = [[str(v) for v in row] for row in [columns, *rows]]
    widths = [max(len(row[i]) for row in text) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
             for row in text]
    return "\n".join(lines) + f"\n\n{len(rows)} total.\n"


def as_json(rows: list[dict[str, Any]]) -> str:
    data: dict[str, Any] = {"row_count": len(rows)}
    if rows:
        data["rows"] = rows
    return json.dumps(data, ensure_ascii=False) + "\n"


def listing(inv: Invocation, columns: Sequence[str], rows: list[dict[str, Any]]) -> str:
    """The rows as JSON when asked, else as a table of ``columns``."""
    if inv.json:
        return as_json(rows)
    return table(columns, [[_cell(r[c]) for c in columns] for r in rows])


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    return "-" if value in ("", None) else str(value)


# ------------------------------------------------------------------------ extensions ------
@command("nway_add_ext", "<extension> [<job number>]", record=True)
def nway_add_ext(inv: Invocation) -> str:
    """Add an extension (enabled); the second value is its job number. Adding an existing
    extension changes its job number (when given) and nothing else."""
    ext = inv.qualified(0, "extension")
    job = inv.arg(1, "job number", valid_name, default="") or None
    inv.at_most(2)
    done = Extensions(inv.ctx, inv.domain).add(ext, job)
    what = "added" if done.created else "updated"
    job_text = f"job number {done.job_number}" if done.job_number else "no job number"
    state = "enabled" if done.enabled else "disabled"
    return f"+OK extension {inv.label(ext)} {what} ({job_text}, {state})"


@command("nway_set_ext_jobnumber", "<extension> <job number> <true|false>", record=True)
def nway_set_ext_jobnumber(inv: Invocation) -> str:
    ext = inv.qualified(0, "extension")
    job = inv.arg(1, "job number", valid_name)
    enabled = inv.arg(2, "enabled flag (true or false)", _boolean).lower() in _TRUE
    inv.at_most(3)
    Extensions(inv.ctx, inv.domain).set_job_number(ext, job, enabled)
    if not enabled:
        # its call state says so too (and is published)
        agent_service.make_busy(inv.ctx, inv.domain, ext)
    state = "enabled" if enabled else "disabled"
    return f"+OK extension {inv.label(ext)} job number {job}, {state}"


@command("nway_rm_ext", "<extension>", record=True)
def nway_rm_ext(inv: Invocation) -> str:
    ext = inv.qualified(0, "extension")
    inv.at_most(1)
    if not Extensions(inv.ctx, inv.domain).remove(ext):
        raise Refused(f"unknown extension {inv.label(ext)!r}")
    return f"+OK extension {inv.label(ext)} removed"


@command("nway_set_reged_ext", "<extension>")
def nway_set_reged_ext(inv: Invocation) -> str:
    """Mark the extension registered (a phone the switch does not see register, or a manual
    repair); a waiting caller is offered to it at once if it is free."""
    ext = inv.qualified(0, "extension")
    inv.at_most(1)
    inv.agent(ext)
    Agents(inv.ctx, inv.domain).set_reg_state(ext, "reged")
    offered = acd.agent_available(inv.ctx, inv.domain, ext)
    return f"+OK extension {inv.label(ext)} registered" + \
        (f"; offered call {offered}" if offered else "")


@command("nway_set_unreg_ext", "<extension>")
def nway_set_unreg_ext(inv: Invocation) -> str:
    ext = inv.qualified(0, "extension")
    inv.at_most(1)
    inv.agent(ext)
    Agents(inv.ctx, inv.domain).set_reg_state(ext, "unreg")
    return f"+OK extension {inv.label(ext)} unregistered"


@command("nway_list_exts", "[json]", lists=True)
def nway_list_exts(inv: Invocation) -> str:
    inv.at_most(0)
    rows = [{"extension": a.extension, "job_number": a.job_number, "enabled": a.enabled,
             "logged_in": a.logged_in, "groups": list(a.groups), "reg_state": a.reg_state,
             "reg_node": a.reg_node, "seat_status": a.seat_status,
             "call_state": a.call_state, "call": a.offer_uuid}
            for a in Agents(inv.ctx, inv.domain).all()]
    return listing(inv, EXT_COLUMNS, rows)


EXT_COLUMNS = ("extension", "job_number", "enabled", "logged_in", "groups", "reg_state",
               "reg_node", "seat_status", "call_state", "call")


# ------------------------------------------------------------------------ groups ----------
@command("nway_add_group", "<group> <mode 0-5> [<name>]", record=True)
def nway_add_group(inv: Invocation) -> str:
    """Add a group in call mode 0-5 (the name defaults to the group number; the rest of the
    line is the name), or change an existing group's mode (and name, when given)."""
    number = inv.qualified(0, "group")
    mode = int(inv.arg(1, "mode (0-5)", _mode))
    name = " ".join(inv.args[2:])
    if name and not _GROUP_NAME.fullmatch(name):
        raise UsageError(f"invalid name {name!r}")
    changes: dict[str, object] = {"group_call_mode": mode}
    if name:
        changes["group_name"] = name
    defaults = inv.ctx.settings.group_defaults
    done = Groups(inv.ctx, inv.domain).change(
        number, changes, create={"group_name": number,
                                 "group_callout_timeout": defaults.callout_timeout})
    if done is None:
        raise Refused(f"group {number!r} belongs to another domain")
    group, created = done
    return (f"+OK group {inv.label(number)} {'added' if created else 'updated'} "
            f"(mode {mode} {MODES[mode]}, name {group.group_name})")


@command("nway_rm_group", "<group>", record=True)
def nway_rm_group(inv: Invocation) -> str:
    number = inv.qualified(0, "group")
    inv.at_most(1)
    waiting = CallQueue(inv.ctx, inv.domain).waiting(number)
    if waiting:
        raise Refused(f"group {inv.label(number)} has {len(waiting)} caller(s) waiting; "
                      "remove it when they are served")
    if not Groups(inv.ctx, inv.domain).remove(number):
        raise Refused(f"unknown group {inv.label(number)!r}")
    return f"+OK group {inv.label(number)} removed"


RINGS = (("welcome", "welcome_ring"), ("blacklist", "black_list_ring"), ("busy", "busy_ring"),
         ("transfer", "transfer_ring"))


@command("nway_set_ring_group", "<group> <welcome> <blacklist> <busy> <transfer>",
         record=True)
def nway_set_ring_group(inv: Invocation) -> str:
    number = inv.qualified(0, "group")
    changes = {}
    for index, (what, column) in enumerate(RINGS, start=1):
        value = inv.arg(index, f"{what} ring", lambda v: v == "-" or valid_path(v))
        if value != "-":
            changes[column] = value
    inv.at_most(5)
    done = Groups(inv.ctx, inv.domain).change(number, changes)
    if done is None:
        raise Refused(f"unknown group {inv.label(number)!r}")
    group = done[0]
    now = ", ".join(f"{what} {getattr(group, column) or '-'}" for what, column in RINGS)
    return f"+OK group {inv.label(number)} rings: {now}"


@command("nway_list_groups", "[json]", lists=True)
def nway_list_groups(inv: Invocation) -> str:
    inv.at_most(0)
    return listing(inv, GROUP_COLUMNS, group_rows(inv))


GROUP_COLUMNS = ("group", "name", "mode", "timeout", "members", "free", "waiting", "welcome",
                 "blacklist", "busy", "transfer")


def group_rows(inv: Invocation) -> list[dict[str, Any]]:
    groups = Groups(inv.ctx, inv.domain)
    agents = {a.extension: a for a in Agents(inv.ctx, inv.domain).all()}
    queue = CallQueue(inv.ctx, inv.domain)
    now = now_ms()
    waiting = Counter(w.group for w in queue.waiting())
    rows = []
    for number in groups.numbers():
        group = groups.get(number) or Group(number)
        members = groups.members(number)
        free = [m for m in members if m in agents and agents[m].available(now)]
        rows.append({"group": number, "name": group.group_name, "mode": group.group_call_mode,
                     "timeout": group.group_callout_timeout, "members": members,
                     "free": len(free), "waiting": waiting.get(number, 0),
                     "welcome": group.welcome_ring, "blacklist": group.black_list_ring,
                     "busy": group.busy_ring, "transfer": group.transfer_ring})
    return rows


# ------------------------------------------------------------------------ agents ----------
@contextmanager
def agent_refusals(inv: Invocation, extension: str) -> Iterator[None]:
    """The agent services' refusals as fs_cli words them."""
    label = inv.label(extension)
    try:
        yield
    except agent_service.NotAnAgent:
        raise Refused(f"unknown extension {label!r} (add it with nway_add_ext)") from None
    except agent_service.AgentDisabled:
        raise Refused(f"extension {label!r} is disabled "
                      f"(nway_set_ext_jobnumber {label} <job> true)") from None
    except agent_service.UnknownGroups as exc:
        raise Refused(f"unknown group(s) {', '.join(exc.groups)!r} for agent "
                      f"{label!r}") from None


@command("nway_login", "<extension> <group>[,<group>...]", record=True)
def nway_login(inv: Invocation) -> str:
    """The agent joins exactly these groups, idle and ready (seed 上线)."""
    ext = inv.qualified(0, "extension")
    listed = inv.arg(1, "group list", lambda v: all(valid_qualified(g) for g in v.split(",")))
    inv.at_most(2)
    wanted = [inv.in_domain(g, "group") for g in listed.split(",")]
    with agent_refusals(inv, ext):
        joined = agent_service.login(inv.ctx, inv.domain, ext, wanted)
    return f"+OK agent {inv.label(ext)} logged into {','.join(joined)}"


@command("nway_logout", "<extension>", record=True)
def nway_logout(inv: Invocation) -> str:
    ext = inv.qualified(0, "extension")
    inv.at_most(1)
    with agent_refusals(inv, ext):
        agent = agent_service.logout(inv.ctx, inv.domain, ext)
    was = ",".join(agent.groups) or "no group"
    return f"+OK agent {inv.label(ext)} logged out (was in {was})"


@command("nway_busy", "<extension>")
def nway_busy(inv: Invocation) -> str:
    ext = inv.qualified(0, "extension")
    inv.at_most(1)
    with agent_refusals(inv, ext):
        agent_service.busy(inv.ctx, inv.domain, ext)
    return f"+OK agent {inv.label(ext)} busy"


@command("nway_ready", "<extension>")
def nway_ready(inv: Invocation) -> str:
    ext = inv.qualified(0, "extension")
    inv.at_most(1)
    with agent_refusals(inv, ext):
        readiness = agent_service.ready(inv.ctx, inv.domain, ext)
    label = inv.label(ext)
    if readiness.now:
        return f"+OK agent {label} ready"
    state = readiness.before if readiness.call_state is None else readiness.call_state
    return f"+OK agent {label} ready when its call ends ({state})"


# ------------------------------------------------------------------------ channels --------
@command("nwayacd_transfer", "<uuid> <extension>")
def nwayacd_transfer(inv: Invocation) -> str:
    """The channel leaves its call and runs the dialplan at ``extension`` (in its context);
    ``extension@domain`` makes ``domain`` its ``domain_name`` first (the dialplan's
    ``user/$1@${domain_name}``). The caller hears its group's transfer ring meanwhile."""
    uuid = inv.arg(0, "uuid", valid_uuid)
    ext = inv.qualified(1, "extension")
    inv.at_most(2)
    domain = {"domain": inv.named_domain} if inv.named_domain else {}
    return on_channel(inv, "transfer", uuid=uuid, extension=ext, **domain)


@command("nway_uuid_hold", "<uuid>")
def nway_uuid_hold(inv: Invocation) -> str:
    uuid = inv.arg(0, "uuid", valid_uuid)
    inv.at_most(1)
    return on_channel(inv, "hold", uuid=uuid)


@command("nway_uuid_unhold", "<uuid>")
def nway_uuid_unhold(inv: Invocation) -> str:
    uuid = inv.arg(0, "uuid", valid_uuid)
    inv.at_most(1)
    return on_channel(inv, "unhold", uuid=uuid)


@command("nway_threeway", "<uuid> <phone> [<gateway>|-]")
def nway_threeway(inv: Invocation) -> str:
    """Invite ``phone`` into the call of ``uuid`` as a third party: an external number through
    ``gateway``, or an extension when the gateway is missing or ``-``. Answers at once (the
    phone is rung in the background)."""
    uuid = inv.arg(0, "uuid", valid_uuid)
    gateway = inv.arg(2, "gateway", lambda v: v == "-" or valid_gateway(v), default="-")
    if gateway != "-":
        phone = inv.arg(1, "phone", valid_number)
    else:
        phone = inv.qualified(1, "extension")
    inv.at_most(3)
    domain = {"domain": inv.named_domain} if inv.named_domain else {}
    return on_channel(inv, "threeway", uuid=uuid, phone=phone,
                      gateway="" if gateway == "-" else gateway, **domain)


def on_channel(inv: Invocation, op: str, **args: str) -> str:
    """Run a channel command where the channel lives: here, or on its node (waiting for that
    node's answer)."""
    uuid = args["uuid"]
    if inv.execute("uuid_exists", uuid).strip() == "true":
        return channel_command(inv.ctx, inv.execute, inv.node, op, args)
    nodes = Nodes(inv.ctx)
    owner = nodes.owner(uuid)
    if owner is None or owner == inv.node:
        raise Refused(f"no such channel {uuid}")
    reply = nodes.request(owner, op, REPLY_TIMEOUT_S, **args)
    if reply is None:
        raise Refused(f"node {owner} holding {uuid} did not answer within "
                      f"{REPLY_TIMEOUT_S:g} s (the command may still run there)")
    return reply


def channel_command(ctx: Context, execute: Execute, node: str, op: str,
                    args: Mapping[str, Any]) -> str:
    """Run channel command ``op`` on this switch (the api for a channel here; the runtime for a
    node command from another node): the reply. Arguments are checked again — a node command
    is only as trustworthy as whoever can write to Redis."""
    if op == "cli":
        return cli_command(ctx, execute, node, args)
    uuid = str(args.get("uuid", ""))
    if not valid_uuid(uuid):
        return f"-ERR invalid uuid {uuid!r}\n"
    where = f" (node {node})"
    domain = str(args.get("domain", "") or "")
    if domain and domain not in ctx.settings.domains:
        return f"-ERR unknown domain {domain!r}\n"
    if op == "transfer":
        ext = str(args.get("extension", ""))
        gateway = str(args.get("gateway", ""))
        if gateway and not (valid_gateway(gateway) and valid_number(ext)):
            return f"-ERR invalid number {ext!r} or gateway {gateway!r}\n"
        if not gateway and not valid_name(ext):
            return f"-ERR invalid extension {ext!r}\n"
        # "bleg": the party the channel talks to moves, the channel itself is hung up
        leg = "-bleg " if args.get("leg") == "bleg" else ""
        moved = _peer(execute, uuid) if leg else uuid
        if moved:
            _set_transfer_ring(ctx, execute, uuid, moved)
        if gateway:
            reply = execute("uuid_transfer",
                            f"{uuid} {leg}bridge:sofia/gateway/{gateway}/{ext} inline")
            what = f"transferred {uuid}{' peer' if leg else ''} to {ext} via {gateway}"
        else:
            was = _getvar(execute, moved, "domain_name") if domain and moved else ""
            if domain and moved:
                # the dialplan rings user/<ext>@${domain_name}: the extension of that domain
                execute("uuid_setvar", f"{moved} domain_name {domain}")
            reply = execute("uuid_transfer", f"{uuid} {leg}{ext}")
            if domain and moved and not reply.startswith("+OK"):
                # not transferred: the channel stays in the domain it was in
                execute("uuid_setvar", f"{moved} domain_name {was}".rstrip())
            target = f"{ext}@{domain}" if domain else ext
            what = f"transferred {uuid}{' peer' if leg else ''} to {target}"
    elif op == "hold":
        reply, what = hold.hold(execute, uuid), f"{uuid} on hold"
    elif op == "unhold":
        reply, what = execute("uuid_hold", f"off {uuid}"), f"{uuid} off hold"
    elif op == "threeway":
        phone, gateway = str(args.get("phone", "")), str(args.get("gateway", ""))
        if gateway and not (valid_gateway(gateway) and valid_number(phone)):
            return f"-ERR invalid number {phone!r} or gateway {gateway!r}\n"
        if not gateway and not valid_name(phone):
            return f"-ERR invalid extension {phone!r}\n"
        endpoint = f"sofia/gateway/{gateway}/{phone}" if gateway else \
            acd.agent_endpoint(ctx, domain or ctx.settings.default_domain, phone, node)
        if domain and not gateway:
            phone = f"{phone}@{domain}"
        variables = ",".join([f"originate_timeout={THREEWAY_RING_SECONDS}",
                              f"sip_h_X-FSAPPS-Ring-Timeout={THREEWAY_RING_SECONDS}",
                              f"fsapps_threeway_with={uuid}"])
        reply = execute("bgapi", f"originate {{{variables}}}{endpoint} &three_way({uuid})")
        job = reply.strip().removeprefix("+OK").strip()
        via = f" via {gateway}" if gateway else ""
        what = f"inviting {phone}{via} into {uuid} ({job})"
    elif op == "eavesdrop":
        return _eavesdrop(ctx, execute, node, uuid, args)
    elif op == "kill":
        return _kill(execute, node, uuid, args)
    elif op == "phone_event":
        event = str(args.get("event", ""))
        if event not in ("talk", "hold"):
            return f"-ERR invalid phone event {event!r} (talk or hold)\n"
        # mod_sofia sends the phone a NOTIFY (Event: talk / hold): the phone itself answers,
        # or puts the call on hold, as if its user had pressed the key.
        reply, what = execute("uuid_phone_event", f"{uuid} {event}"), f"{uuid} phone {event}"
        if not reply.strip():
            reply = "+OK"
    else:
        return f"-ERR unknown channel command {op!r}\n"
    if reply.startswith("+OK"):
        return f"+OK {what}{where}\n"
    reason = reply.strip().removeprefix("-ERR").strip() or "no reply"
    return f"-ERR {op} {uuid}: {reason}{where}\n"


def _peer(execute: Execute, uuid: str) -> str:
    """The channel ``uuid`` is bridged to ("" when none)."""
    peer = execute("uuid_getvar", f"{uuid} signal_bond").strip()
    return peer if valid_uuid(peer) else ""


def _getvar(execute: Execute, uuid: str, name: str) -> str:
    value = execute("uuid_getvar", f"{uuid} {name}").strip()
    return "" if value in ("_undef_", "") or value.startswith("-ERR") else value


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
        group = _getvar(execute, leg, "fsapps_acd_group")
        if not group:
            continue
        domain = _getvar(execute, leg, "fsapps_domain") or ctx.settings.default_domain
        if not valid_name(group) or domain not in ctx.settings.domains:
            return ""
        found = Groups(ctx, domain).get(group)
        ring = found.transfer_ring if found is not None else ""
        if ring and valid_path(ring):
            execute("uuid_setvar", f"{moved} transfer_ringback {ring}")
            return ring
        return ""
    return ""


# Listener modes of eavesdrop (FreeSWITCH's mod_dptools: eavesdrop_whisper_aleg mixes the
# listener into what the target's PEER hears, eavesdrop_whisper_bleg into what the TARGET
# hears; see tests/test_fakefs_supervision.py).
EAVESDROP_MODES = {"listen": "", "agent": "eavesdrop_whisper_bleg=true",
                   "customer": "eavesdrop_whisper_aleg=true"}
_CAUSE = re.compile(r"[A-Z][A-Z_]{2,40}")


def _eavesdrop(ctx: Context, execute: Execute, node: str, uuid: str,
               args: Mapping[str, Any]) -> str:
    """Ring a listener (an extension, or a number through a gateway) and, when it answers,
    let it listen to channel ``uuid`` (``mode`` listen), or whisper to the agent or to the
    customer. With ``dtmf`` the listener switches modes with 1/2/3/0 (seed 003)."""
    phone, gateway = str(args.get("phone", "")), str(args.get("gateway", ""))
    mode = str(args.get("mode", "listen"))
    if mode not in EAVESDROP_MODES:
        return f"-ERR invalid eavesdrop mode {mode!r} ({', '.join(EAVESDROP_MODES)})\n"
    if gateway and not (valid_gateway(gateway) and valid_number(phone)):
        return f"-ERR invalid number {phone!r} or gateway {gateway!r}\n"
    if not gateway and not valid_name(phone):
        return f"-ERR invalid extension {phone!r}\n"
    try:
        ring = max(1, min(int(args.get("ring_seconds", THREEWAY_RING_SECONDS)), 600))
    except (TypeError, ValueError):
        ring = THREEWAY_RING_SECONDS
    endpoint = f"sofia/gateway/{gateway}/{phone}" if gateway else \
        acd.agent_endpoint(ctx, ctx.settings.default_domain, phone, node)
    dtmf = "false" if str(args.get("dtmf", "true")) in ("false", "0") else "true"
    variables = [f"originate_timeout={ring}", f"sip_h_X-FSAPPS-Ring-Timeout={ring}",
                 f"eavesdrop_enable_dtmf={dtmf}", f"fsapps_eavesdrop={uuid}"]
    if EAVESDROP_MODES[mode]:
        variables.append(EAVESDROP_MODES[mode])
    reply = execute("bgapi", f"originate {{{','.join(variables)}}}{endpoint} &eavesdrop({uuid})")
    if not reply.startswith("+OK"):
        reason = reply.strip().removeprefix("-ERR").strip() or "no reply"
        return f"-ERR eavesdrop {uuid}: {reason} (node {node})\n"
    job = reply.strip().removeprefix("+OK").strip()
    via = f" via {gateway}" if gateway else ""
    return f"+OK {phone}{via} rung to {mode} on {uuid} ({job}) (node {node})\n"


def _kill(execute: Execute, node: str, uuid: str, args: Mapping[str, Any]) -> str:
    """Hang up channel ``uuid`` (``uuid_kill``) with ``cause``; with ``both`` its bridged peer
    too (its ``signal_bond``, read before the kill), as seed 003 advises for a forced hangup."""
    cause = str(args.get("cause", "") or "MANAGER_REQUEST")
    if not _CAUSE.fullmatch(cause):
        return f"-ERR invalid hangup cause {cause!r}\n"
    peer = ""
    if args.get("both"):
        peer = execute("uuid_getvar", f"{uuid} signal_bond").strip()
        if not valid_uuid(peer):
            peer = ""
    reply = execute("uuid_kill", f"{uuid} {cause}")
    if not reply.startswith("+OK"):
        reason = reply.strip().removeprefix("-ERR").strip() or "no reply"
        return f"-ERR kill {uuid}: {reason} (node {node})\n"
    killed = [uuid]
    if peer:
        # The peer may already be gone (hangup_after_bridge), or live on another node.
        if execute("uuid_kill", f"{peer} {cause}").startswith("+OK"):
            killed.append(peer)
    return f"+OK hung up {' and '.join(killed)} ({cause}) (node {node})\n"


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


def cli_command(ctx: Context, execute: Execute, node: str, args: Mapping[str, Any]) -> str:
    """mod_cti's ``/cli`` passthrough on this node: the switch's own reply. The allow-list is
    checked again here, against this node's settings."""
    command, arg = str(args.get("api", "")), str(args.get("arg", ""))
    if any(ch in arg for ch in "\r\n\x00"):
        return "-ERR invalid argument: line breaks are not allowed\n"
    refused = cli_allowed(ctx.settings.cti.cli_commands, command, arg)
    if refused:
        return f"-ERR {refused}\n"
    reply = execute(command, arg)
    return reply if reply.endswith("\n") else reply + "\n"


# ------------------------------------------------------------------------ status ----------
@command("nwayacd_version", "")
def nwayacd_version(inv: Invocation) -> str:
    inv.at_most(0)
    return f"+OK fsapps {__version__}"


@command("nwayacd", "[json]", lists=True)
def nwayacd(inv: Invocation) -> str:
    """Status summary: groups, agents by state, callers waiting."""
    inv.at_most(0)
    agents = Agents(inv.ctx, inv.domain).all()
    now = now_ms()
    waiting = CallQueue(inv.ctx, inv.domain).waiting()
    groups = group_rows(inv)
    by_state = dict(sorted(Counter(a.call_state for a in agents).items()))
    summary: dict[str, Any] = {
        "version": __version__, "node": inv.node, "domain": inv.domain,
        "groups": len(groups), "agents": len(agents),
        "logged_in": sum(a.logged_in for a in agents),
        "registered": sum(a.reg_state == "reged" for a in agents),
        "free": sum(a.available(now) for a in agents),
        "by_state": by_state,
        "waiting": len(waiting),
    }
    if inv.json:
        calls = [{"uuid": w.uuid, "group": w.group, "number": w.number, "level": w.level,
                  "node": w.node, "callin_time": w.callin_time} for w in waiting]
        return json.dumps({**summary, "group_list": groups, "waiting_calls": calls},
                          ensure_ascii=False) + "\n"
    states = ", ".join(f"{k} {v}" for k, v in by_state.items()) or "none"
    lines = [f"fsapps {__version__} ACD on node {inv.node}, domain {inv.domain}",
             f"groups: {len(groups)}",
             f"agents: {len(agents)} (logged in {summary['logged_in']}, registered "
             f"{summary['registered']}, free {summary['free']})",
             f"agents by state: {states}",
             f"callers waiting: {len(waiting)}"]
    if groups:
        rows = [[g["group"], g["name"] or "-", g["mode"], len(g["members"]), g["free"],
                 g["waiting"]] for g in groups]
        return "\n".join(lines) + "\n\n" + table(
            ["group", "name", "mode", "members", "free", "waiting"], rows)
    return "\n".join(lines) + "\n"
