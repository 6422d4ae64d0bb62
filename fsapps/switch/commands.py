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
  node command whose answer is the reply — the one engine the CTI server uses too
  (:mod:`fsapps.switch.nodecommands`).
- Agent changes (login, logout, ready, busy) are :mod:`fsapps.services.agents`, shared with
  the REST and wellClient APIs; this module parses the line and words the reply.
"""

from __future__ import annotations

import json
import re
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2

from fsapps import __version__
from fsapps.context import Context, get_context, now_ms
from fsapps.domain.agents import Agents
from fsapps.domain.callqueue import CallQueue
from fsapps.domain.extensions import Extensions
from fsapps.domain.groups import Group, Groups
from fsapps.domain.nodes import REPLY_TIMEOUT_S
from fsapps.domain.numbers import valid_gateway, valid_number
from fsapps.domain.routing import MAX_LEVEL, STRATEGIES, parse_strategy
from fsapps.domain.skills import MAX_AGENT_SKILLS, Skills, format_skills, parse_skills
from fsapps.domain.waiting import EXIT_KEYS, parse_announce, parse_destination
from fsapps.errors import BadInput, Conflict, DatabaseError, FsappsError, StoreUnavailable
from fsapps.fslog import log
from fsapps.services import agents as agent_service
from fsapps.switch import acd
from fsapps.switch.nodecommands import (
    Hold,
    NodeCommand,
    SwitchCommands,
    Threeway,
    Transfer,
    Unhold,
    valid_name,
    valid_path,
    valid_uuid,
)

Execute = Callable[[str, str], str]

MODES = {0: "sequence", 1: "random", 2: "cycle", 3: "remember+0", 4: "remember+1",
         5: "remember+2"}
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


def valid_qualified(text: str) -> bool:
    """An extension or group, optionally with its domain: ``1000`` or ``1000@cc.test``. Only
    the shape: whether the domain is configured is :meth:`Invocation.in_domain`'s refusal."""
    name, at, domain = text.partition("@")
    return valid_name(name) and (not at or _DOMAIN.fullmatch(domain) is not None)


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
    # optional: the module exists only inside FreeSWITCH (mod_python3); the CLI and the tests
    # pass their own execute
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
    with agent_refusals(inv, ext):
        offered = agent_service.set_registered(inv.ctx, inv.domain, ext, True)
    return f"+OK extension {inv.label(ext)} registered" + \
        (f"; offered call {offered}" if offered else "")


@command("nway_set_unreg_ext", "<extension>")
def nway_set_unreg_ext(inv: Invocation) -> str:
    ext = inv.qualified(0, "extension")
    inv.at_most(1)
    with agent_refusals(inv, ext):
        agent_service.set_registered(inv.ctx, inv.domain, ext, False)
    return f"+OK extension {inv.label(ext)} unregistered"


@command("nway_list_exts", "[json]", lists=True)
def nway_list_exts(inv: Invocation) -> str:
    inv.at_most(0)
    rows = [{"extension": a.extension, "job_number": a.job_number, "enabled": a.enabled,
             "logged_in": a.logged_in, "groups": list(a.groups), "reg_state": a.reg_state,
             "reg_node": a.reg_node, "seat_status": a.seat_status,
             "call_state": a.call_state, "call": a.offer_uuid, "skills": a.skills}
            for a in agent_service.all_agents(inv.ctx, inv.domain)]
    return listing(inv, EXT_COLUMNS, rows)


EXT_COLUMNS = ("extension", "job_number", "enabled", "logged_in", "groups", "reg_state",
               "reg_node", "seat_status", "call_state", "call", "skills")


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


@command("nway_set_group_strategy", "<group> <strategy> [<tier wait seconds>]", record=True)
def nway_set_group_strategy(inv: Invocation) -> str:
    """Which free agent gets a call (docs/acd.md): ``mode`` (the call mode's order, the
    default), longest_idle, fewest_calls, least_talk_time or ring_all; with a tier wait,
    how long a caller waits for a lower tier before the next one may take it (0 = none)."""
    number = inv.qualified(0, "group")
    strategy = inv.arg(1, "strategy (mode, " + ", ".join(s for s in STRATEGIES if s) + ")",
                       lambda v: v in ("mode", "-") or v in STRATEGIES)
    changes: dict[str, object] = {"agent_strategy": parse_strategy(strategy)}
    wait = inv.arg(2, "tier wait seconds", lambda v: v.isdigit() and int(v) <= 86400,
                   default="")
    if wait:
        changes["tier_wait_seconds"] = int(wait)
    inv.at_most(3)
    done = Groups(inv.ctx, inv.domain).change(number, changes)
    if done is None:
        raise Refused(f"unknown group {inv.label(number)!r}")
    group = done[0]
    return (f"+OK group {inv.label(number)} strategy {group.agent_strategy or 'mode'}, "
            f"tier wait {group.tier_wait_seconds or 0} s")


@command("nway_set_agent_level", "<group> <extension> <level 1-9>", record=True)
def nway_set_agent_level(inv: Invocation) -> str:
    """The agent's tier in the group: level 1 is rung first, level 2 only when no level-1
    agent is free (or after the group's tier wait); kept whether or not it is logged in."""
    number = inv.qualified(0, "group")
    ext = inv.qualified(1, "extension")
    level = int(inv.arg(2, f"level (1-{MAX_LEVEL})",
                        lambda v: v.isdigit() and 1 <= int(v) <= MAX_LEVEL))
    inv.at_most(3)
    if not Groups(inv.ctx, inv.domain).set_level(number, ext, level):
        raise Refused(f"unknown group {inv.label(number)!r}")
    return f"+OK agent {inv.label(ext)} level {level} in group {inv.label(number)}"


@command("nway_set_agent_skills", "<extension> <skill:level>[,<skill:level>...]|-", record=True)
def nway_set_agent_skills(inv: Invocation) -> str:
    """The agent's skills (docs/acd.md "Skills"), replacing the ones it had; ``-`` removes
    them all. A call requiring skills goes only to agents that have them at its levels."""
    ext = inv.qualified(0, "extension")
    text = inv.arg(1, "skills (<skill:level>[,...] with levels 1-9, or - for none)")
    inv.at_most(2)
    try:
        wanted = parse_skills(text, limit=MAX_AGENT_SKILLS)
    except BadInput as exc:
        raise UsageError(str(exc)) from None
    Skills(inv.ctx, inv.domain).set(ext, wanted)
    return f"+OK agent {inv.label(ext)} skills {format_skills(wanted) or '(none)'}"


@command("nway_set_group_skill_relax", "<group> <seconds>", record=True)
def nway_set_group_skill_relax(inv: Invocation) -> str:
    """Every this many seconds of waiting, a call's required skills relax one step (every
    level one lower, then the last-named skill dropped); 0 = never."""
    number = inv.qualified(0, "group")
    seconds = int(inv.arg(1, "seconds (0-86400)", lambda v: v.isdigit() and int(v) <= 86400))
    inv.at_most(2)
    done = Groups(inv.ctx, inv.domain).change(number, {"skill_relax_seconds": seconds})
    if done is None:
        raise Refused(f"unknown group {inv.label(number)!r}")
    return f"+OK group {inv.label(number)} skills relax every {seconds} s" if seconds else \
        f"+OK group {inv.label(number)} skills never relax"


@command("nway_set_group_waiting",
         "<group> <max wait seconds> <overflow to> [<exit key> <exit to>]", record=True)
def nway_set_group_waiting(inv: Invocation) -> str:
    """How a caller leaves the group's queue on its own terms (docs/acd.md): after the max
    wait (0 = no limit; with a limit, at once while nobody is logged in) and after the
    long-wait policy's busy rings it goes to ``overflow to`` (hangup, group:<g>,
    extension:<ext>, dialplan:<destination>[,<dialplan>[,<context>]]); pressing the exit
    key (``-`` = none) takes it to ``exit to``."""
    number = inv.qualified(0, "group")
    wait = inv.arg(1, "max wait seconds", lambda v: v.isdigit() and int(v) <= 86400)
    changes: dict[str, object] = {"max_wait_seconds": int(wait),
                                  "overflow_to": inv.arg(2, "overflow to", _destination)}
    key = inv.arg(3, "exit key", lambda v: v == "-" or (len(v) == 1 and v in EXIT_KEYS),
                  default="")
    if key:
        changes["exit_key"] = "" if key == "-" else key
        changes["exit_to"] = inv.arg(4, "exit to", _destination,
                                     default="" if key == "-" else None)
    inv.at_most(5)
    group = _changed_group(inv, number, changes)
    exit_key = f"exit key {group.exit_key} to {parse_destination(group.exit_to)}" \
        if group.exit_key else "no exit key"
    return (f"+OK group {inv.label(number)} max wait {group.max_wait_seconds or 0} s, "
            f"overflow to {parse_destination(group.overflow_to)}, {exit_key}")


@command("nway_set_group_announce", "<group> <every seconds> [<steps>]", record=True)
def nway_set_group_announce(inv: Invocation) -> str:
    """Every N s (0 = never) a waiting caller hears its place and estimated wait: the steps
    (the rest of the line; none = the English default spoken by mod_flite) are switch
    applications separated by ``;`` (sentences by ``;;``): ``playback <file>``, ``say
    <args>``, ``speak <engine>|<voice>|<text>``, with {position}, {minutes}, {seconds}
    (docs/acd.md)."""
    number = inv.qualified(0, "group")
    every = inv.arg(1, "every seconds", lambda v: v.isdigit() and int(v) <= 3600)
    steps = " ".join(inv.args[2:])
    try:
        parse_announce(steps)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    group = _changed_group(inv, number, {"announce_seconds": int(every), "announce": steps})
    return (f"+OK group {inv.label(number)} announces every {group.announce_seconds} s: "
            f"{group.announce or 'the default announcement'}")


@command("nway_set_group_callback",
         "<group> <gateway>|- [<max attempts> [<retry seconds> [<confirm file>]]]", record=True)
def nway_set_group_callback(inv: Invocation) -> str:
    """Callbacks instead of waiting (docs/acd.md): a caller pressing the exit key of a group
    whose ``exit to`` is ``callback`` keeps its place and hangs up; when its turn comes an
    agent is rung, then the caller is called back through ``sofia/gateway/<gateway>/`` (``-``
    = no callbacks), up to ``max attempts`` times (1-20, default 3) ``retry seconds`` apart
    (default 60); the caller hears ``confirm file`` (default: mod_flite's English)."""
    number = inv.qualified(0, "group")
    gateway = inv.arg(1, "gateway ([A-Za-z0-9_.-], - for none)",
                      lambda v: v == "-" or valid_gateway(v))
    attempts = inv.arg(2, "max attempts (1-20)", lambda v: v.isdigit() and 1 <= int(v) <= 20,
                       default="3")
    retry = inv.arg(3, "retry seconds (0-86400)", lambda v: v.isdigit() and int(v) <= 86400,
                    default="60")
    confirm = inv.arg(4, "confirm file", lambda v: "{" not in v and "'" not in v, default="")
    inv.at_most(5)
    group = _changed_group(inv, number, {
        "callback_gateway": "" if gateway == "-" else gateway,
        "callback_max_attempts": int(attempts), "callback_retry_seconds": int(retry),
        "callback_confirm": confirm})
    if not group.callback_gateway:
        return f"+OK group {inv.label(number)} no callbacks"
    return (f"+OK group {inv.label(number)} calls back through gateway "
            f"{group.callback_gateway}, {group.callback_max_attempts} attempts "
            f"{group.callback_retry_seconds} s apart")


def _destination(text: str) -> bool:
    try:
        parse_destination(text)
    except ValueError:
        return False
    return True


def _changed_group(inv: Invocation, number: str, changes: dict[str, object]) -> Group:
    try:
        done = Groups(inv.ctx, inv.domain).change(number, changes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if done is None:
        raise Refused(f"unknown group {inv.label(number)!r}")
    return done[0]


@command("nway_list_groups", "[json]", lists=True)
def nway_list_groups(inv: Invocation) -> str:
    inv.at_most(0)
    return listing(inv, GROUP_COLUMNS, group_rows(inv))


GROUP_COLUMNS = ("group", "name", "mode", "strategy", "tier_wait", "timeout", "members", "free",
                 "waiting", "welcome", "blacklist", "busy", "transfer", "max_wait", "overflow_to",
                 "exit_key", "exit_to", "announce_every", "callback_gateway")


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
                     "strategy": group.agent_strategy or "mode",
                     "tier_wait": group.tier_wait_seconds or 0,
                     "timeout": group.group_callout_timeout, "members": members,
                     "free": len(free), "waiting": waiting.get(number, 0),
                     "welcome": group.welcome_ring, "blacklist": group.black_list_ring,
                     "busy": group.busy_ring, "transfer": group.transfer_ring,
                     "max_wait": group.max_wait_seconds, "overflow_to": group.overflow_to,
                     "exit_key": group.exit_key, "exit_to": group.exit_to,
                     "announce_every": group.announce_seconds,
                     "callback_gateway": group.callback_gateway})
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
    return on_channel(inv, Transfer(uuid=uuid, extension=ext, domain=inv.named_domain or ""))


@command("nway_uuid_hold", "<uuid>")
def nway_uuid_hold(inv: Invocation) -> str:
    uuid = inv.arg(0, "uuid", valid_uuid)
    inv.at_most(1)
    return on_channel(inv, Hold(uuid=uuid))


@command("nway_uuid_unhold", "<uuid>")
def nway_uuid_unhold(inv: Invocation) -> str:
    uuid = inv.arg(0, "uuid", valid_uuid)
    inv.at_most(1)
    return on_channel(inv, Unhold(uuid=uuid))


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
    return on_channel(inv, Threeway(uuid=uuid, phone=phone,
                                    gateway="" if gateway == "-" else gateway,
                                    domain=inv.named_domain or ""))


def on_channel(inv: Invocation, command: NodeCommand) -> str:
    """Run a channel command where the channel lives: here, or on its node (waiting for that
    node's answer, :class:`fsapps.switch.nodecommands.SwitchCommands`); the reply as fs_cli
    shows it."""
    switch = SwitchCommands(inv.ctx, node=inv.node, execute=inv.execute,
                            timeout_s=REPLY_TIMEOUT_S)
    return switch.on_channel(command).text


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
