"""The Redis user directory of seed 003: extension records, their XML, and lookups.

Keys (seed-defined name kept verbatim; ``p`` = prefix, ``d`` = domain):

``cti_exten@<d>``                   hash  extension -> JSON ``{"param": {...}, "variable": {...},
                                          "attribute": {...}}`` (the seed's record)
``p:{cti_exten@<d>}:exten_alias``   hash  number-alias -> extension; kept in step with the
                                          records by :meth:`UserDirectory.set` / :meth:`remove`
                                          (one Lua script each); same cluster slot as the hash.

A lookup (:meth:`UserDirectory.lookup`) is one EVALSHA: the record by id, else by alias.
Records written by hand into ``cti_exten@<d>`` are served too; only their aliases are unknown
to the index until the record is set again through fsapps (``fsapps ext import`` does it).

When a record changes through fsapps, every live node is told to drop the switch's cached copy
(``xml_flush_cache id <name> <domain>`` for the id and its old and new aliases): the runtime
runs the ``directory_flush`` node command.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

from fsapps.context import Context
from fsapps.domain import webrtc
from fsapps.domain.nodes import Nodes
from fsapps.errors import BadInput, Conflict
from fsapps.fslog import log
from fsapps.store.keys import exten_alias_hash, seed_exten_hash
from fsapps.store.scripts import SCRIPTS, run_script

SECTIONS = ("param", "variable", "attribute")
# FreeSWITCH's default dial-string (conf/directory/default.xml): user/<ext> rings every
# registered contact of the user. A record's own "dial-string" param wins.
DIAL_STRING = ("{^^:sip_invite_domain=${dialed_domain}:presence_id=${dialed_user}@"
               "${dialed_domain}}${sofia_contact(*/${dialed_user}@${dialed_domain})}")
NOT_FOUND = ('<document type="freeswitch/xml"><section name="result">'
             '<result status="not found"/></section></document>')
# Above this many changed names one flush empties the switch's whole user cache.
FLUSH_ALL_OVER = 100
# Names (in any section; compared case-insensitively, as mod_sofia does) whose empty value
# means "not set" in a record but something else to FreeSWITCH if rendered: mod_sofia takes
# auth-acl="" as an ACL named "" and refuses every phone ("Rejected by user acl []"), feeds
# a1-hash="" into the digest (no password then matches) and number-alias="" as the alias;
# dial-string="" would replace the domain's dial-string with nothing; cacheable="" would stop
# directory.cacheable applying. The rest are listed so an empty value is never a value. A
# record with one of these empty is served without it (the stored record keeps it).
EMPTY_MEANS_UNSET = frozenset({
    "auth-acl", "a1-hash", "user-agent-filter", "sip-forbid-register",
    "max-registrations-per-extension", "allow-empty-password", "sip-force-contact",
    "sip-force-expires", "cacheable", "number-alias", "dial-string", "mwi-account",
})

# XML 1.0 has no way to carry these; a value holding one would make the whole answer unparsable.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NAME = re.compile(r"^[^\s{}\[\],|/@<>&\"']+$")


class BadExtension(BadInput, ValueError):
    """An extension record (or name) that the directory cannot serve."""


class AliasConflict(Conflict):
    """The record's number-alias is taken (or the extension is another's alias)."""


@dataclass(frozen=True)
class Extension:
    """One directory user: name, domain and its record (values as strings)."""

    user: str
    domain: str
    param: dict[str, str]
    variable: dict[str, str]
    attribute: dict[str, str]

    @property
    def alias(self) -> str:
        return self.attribute.get("number-alias", "")

    def record(self) -> dict[str, dict[str, str]]:
        return {"param": self.param, "variable": self.variable, "attribute": self.attribute}

    def to_json(self) -> str:
        return json.dumps(self.record(), ensure_ascii=False, separators=(",", ":"))


def check_user(user: Any) -> str:
    """``user`` if it can be a directory user id (and a dial-string target), else BadExtension."""
    if not isinstance(user, str) or not _NAME.match(user) or _CONTROL.search(user):
        raise BadExtension(f"invalid extension {user!r}: no spaces, quotes or any of "
                           "{}[],|/@<>&")
    return user


def _text(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise BadExtension(f"{where}: expected a string, number or boolean, got {value!r}")
    if _CONTROL.search(value):
        raise BadExtension(f"{where}: control characters cannot go into XML: {value!r}")
    return value


def parse_record(user: str, domain: str, record: Any) -> Extension:
    """The record (JSON text or already-parsed mapping) as an :class:`Extension`; raises
    BadExtension naming what is wrong. Booleans become "true"/"false", numbers text."""
    check_user(user)
    if isinstance(record, (str, bytes)):
        try:
            record = json.loads(record)
        except ValueError as exc:
            raise BadExtension(f"extension {user!r}: malformed JSON: {exc}") from None
    if not isinstance(record, Mapping):
        raise BadExtension(f"extension {user!r}: expected a JSON object, got {record!r}")
    unknown = sorted(set(record) - set(SECTIONS))
    if unknown:
        raise BadExtension(f"extension {user!r}: unknown section(s) {unknown!r}; expected "
                           f"{list(SECTIONS)!r}")
    parts: dict[str, dict[str, str]] = {}
    for section in SECTIONS:
        items = record.get(section) or {}
        if not isinstance(items, Mapping):
            raise BadExtension(f"extension {user!r}: {section} must be an object, got "
                               f"{items!r}")
        out: dict[str, str] = {}
        for name, value in items.items():
            if not isinstance(name, str) or not name or _CONTROL.search(name):
                raise BadExtension(f"extension {user!r}: invalid {section} name {name!r}")
            if value is None:
                continue
            out[name] = _text(value, f"extension {user!r} {section} {name!r}")
        parts[section] = out
    if "id" in parts["attribute"]:
        raise BadExtension(f"extension {user!r}: attribute 'id' is the extension itself")
    alias = parts["attribute"].get("number-alias", "")
    if alias:
        check_user(alias)
    return Extension(user, domain, parts["param"], parts["variable"], parts["attribute"])


def _pairs(tag: str, items: Mapping[str, str]) -> str:
    return "".join(f"<{tag} name={quoteattr(name)} value={quoteattr(value)}/>"
                   for name, value in items.items())


def _set_only(items: Mapping[str, str]) -> dict[str, str]:
    """``items`` without the EMPTY_MEANS_UNSET names whose value is empty (or blank)."""
    return {name: value for name, value in items.items()
            if value.strip() or name.lower() not in EMPTY_MEANS_UNSET}


def render(ext: Extension, cacheable: str = "") -> str:
    """The directory document FreeSWITCH expects for ``ext``: the domain (with the default
    dial-string param), the user with its attributes, params and variables. Every name and
    value is XML-escaped (quoteattr). A name of EMPTY_MEANS_UNSET with an empty value is left
    out (mod_sofia would read auth-acl="" as an ACL named "" and refuse the phone).
    ``cacheable`` applies when the record sets none."""
    attrs = _set_only(ext.attribute)
    params = _set_only(ext.param)
    if cacheable and "cacheable" not in attrs:
        attrs["cacheable"] = cacheable
    attr_text = "".join(f" {name}={quoteattr(value)}" for name, value in attrs.items()
                        if _ATTR_NAME.match(name))
    own_dial_string = any(name.lower() == "dial-string" for name in params)
    domain_params = {} if own_dial_string else {"dial-string": DIAL_STRING}
    return (f'<document type="freeswitch/xml"><section name="directory">'
            f'<domain name={quoteattr(ext.domain)}><params>{_pairs("param", domain_params)}'
            f'</params><users><user id={quoteattr(ext.user)}{attr_text}>'
            f'<params>{_pairs("param", params)}</params>'
            f'<variables>{_pairs("variable", _set_only(ext.variable))}</variables>'
            f'</user></users></domain></section></document>')


# An attribute name is markup, not a value: only XML name characters may go there.
_ATTR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class UserDirectory:
    """The extensions of one domain in Redis."""

    def __init__(self, ctx: Context, domain: str | None = None) -> None:
        self.ctx = ctx
        self.domain = domain or ctx.settings.default_domain
        self.hash = seed_exten_hash(self.domain)
        self.alias_hash = exten_alias_hash(ctx.settings.redis.key_prefix, self.domain)
        self.r = ctx.redis

    # ---------------------------------------------------------------- reads -------------
    def lookup_raw(self, name: str) -> tuple[str, str] | None:
        """(extension, JSON text) for an extension or number-alias, None when unknown: one
        EVALSHA, nothing parsed."""
        found = run_script(self.r, "exten_lookup", [self.hash, self.alias_hash], [name])
        if not found:
            return None
        return str(found[0]), str(found[1])

    def get(self, user: str) -> Extension | None:
        """The record of ``user`` (by id or alias), None when unknown. A malformed record
        raises BadExtension."""
        found = self.lookup_raw(user)
        return None if found is None else parse_record(found[0], self.domain, found[1])

    def all(self) -> Iterable[tuple[str, str]]:
        """(extension, JSON text) of every record, in extension order (HSCAN: no blocking)."""
        return sorted(self.r.hscan_iter(self.hash, count=1000))

    def count(self) -> int:
        return int(self.r.hlen(self.hash))

    # ---------------------------------------------------------------- writes ------------
    def set(self, ext: Extension, flush: bool = True) -> str:
        """Store ``ext`` (replacing its record) and re-point its alias, atomically; returns the
        previous alias ("" for none). Raises AliasConflict (nothing written) when the alias
        is taken. Every node then drops its cached copies."""
        status, detail = (str(x) for x in run_script(
            self.r, "exten_set", [self.hash, self.alias_hash],
            [ext.user, ext.to_json(), ext.alias]))
        if status != "ok":
            raise AliasConflict(f"extension {ext.user!r}@{self.domain}: {detail}")
        if flush:
            self.flush([ext.user, ext.alias, detail])
        return detail

    def remove(self, user: str, flush: bool = True) -> bool:
        """Delete ``user``'s record and its alias; False when there was none."""
        removed, alias = run_script(self.r, "exten_rm", [self.hash, self.alias_hash], [user])
        if int(removed) and flush:
            self.flush([user, str(alias)])
        return bool(int(removed))

    def set_many(self, exts: list[Extension], batch: int = 500,
                 progress: Any = None) -> list[tuple[int, str]]:
        """Store many records, pipelined in batches of ``batch`` EVALSHAs (one round trip per
        batch; one per record on Redis Cluster). Returns [(index, why)] for the records that
        were refused (alias conflicts); the rest are written. One cache flush at the end:
        the names changed, or the whole user cache when there are many."""
        refused: list[tuple[int, str]] = []
        names: list[str] = []
        script = SCRIPTS.get("exten_set")
        keys = [self.hash, self.alias_hash]
        cluster = self.ctx.settings.redis.cluster
        if not cluster:
            self.r.execute_command("SCRIPT LOAD", script.source)
        for start in range(0, len(exts), batch):
            chunk = exts[start:start + batch]
            if cluster:
                results = [run_script(self.r, "exten_set", keys, [e.user, e.to_json(), e.alias])
                           for e in chunk]
            else:
                pipe = self.r.pipeline(transaction=False)
                for e in chunk:
                    pipe.execute_command("EVALSHA", script.sha, 2, *keys, e.user, e.to_json(),
                                         e.alias)
                results = pipe.execute()
            for offset, (ext, (status, detail)) in enumerate(zip(chunk, results, strict=True)):
                if str(status) != "ok":
                    refused.append((start + offset, str(detail)))
                else:
                    names += [ext.user, ext.alias, str(detail)]
            if progress is not None:
                progress(min(start + batch, len(exts)))
        self.flush(names)
        return refused

    def flush(self, names: Iterable[str]) -> int:
        """Tell every live node to evict ``names`` of this domain from the switch's directory
        cache (many names: the whole cache). Returns the number of nodes told."""
        unique = sorted({n for n in names if n})
        if not unique:
            return 0
        nodes = Nodes(self.ctx)
        alive = sorted(nodes.alive())
        users = [] if len(unique) > FLUSH_ALL_OVER else unique
        for node in alive:
            nodes.send(node, "directory_flush", domain=self.domain, users=users)
        return len(alive)


def flush_commands(domain: str, users: list[str]) -> list[str]:
    """The ``xml_flush_cache`` arguments a node runs for a ``directory_flush`` command: one per
    name, or "" (the whole user cache) when no names are given."""
    if not users:
        return [""]
    return [f"id {user} {domain}" for user in users if _NAME.match(user) and _NAME.match(domain)]


def _shown(value: str | None) -> str:
    """A name from a SIP request as a log shows it: quoted, control characters escaped, cut
    short (a scanner's REGISTER may carry anything)."""
    if value is None:
        return "none"
    return repr(value[:64] + "..." if len(value) > 64 else value)


def _not_found(user: str | None, domain: str | None, reason: str) -> str:
    """NOT_FOUND, with the one INFO line an administrator whose phones get 403 goes on."""
    log("INFO", f"directory: user {_shown(user)} in domain {_shown(domain)} not found: "
                f"{reason}")
    return NOT_FOUND


def answer(ctx: Context, user: str | None, domain: str | None, transport: str = "") -> str:
    """The XML answer for a directory request: the user's document, or NOT_FOUND (unknown
    domain or user: one INFO line saying why; a malformed record: an ERR line with its key).
    ``transport`` is the request's ``sip_via_protocol``: over ws/wss (a browser) the document
    carries the browser-phone password of a console login (:mod:`fsapps.domain.webrtc`), never
    the record's. Raises only when Redis fails."""
    if not user:  # a domain-level fetch (gateways, ACLs), not a user lookup: not logged
        return NOT_FOUND
    if not domain:
        return _not_found(user, domain, "the request names no domain")
    if domain not in ctx.settings.domains:
        return _not_found(user, domain,
                          f"domain not served (domains: {', '.join(ctx.settings.domains)})")
    try:
        check_user(user)
    except BadExtension:
        return _not_found(user, domain, "not a valid extension name")
    directory = UserDirectory(ctx, domain)
    found = directory.lookup_raw(user)
    if found is None:
        return _not_found(user, domain,
                          f"neither an extension nor a number-alias in {directory.hash}")
    try:
        ext = parse_record(found[0], domain, found[1])
    except BadExtension as exc:
        log("ERR", f"directory: {directory.hash} field {found[0]!r} is not served: {exc}")
        return NOT_FOUND
    if not webrtc.is_webrtc(ext.param):
        if transport.lower() in webrtc.WS_TRANSPORTS:
            return _not_found(user, domain, "registers over WebSocket but its record has no "
                                            "param webrtc=true")
        return render(ext, ctx.settings.directory.cacheable)
    if transport.lower() in webrtc.WS_TRANSPORTS:
        password = webrtc.BrowserPhones(ctx, domain).password(ext.user)
        if password is None:
            return _not_found(user, domain, "WebSocket registration without a console login "
                                            "(no live browser-phone password)")
        params = {name: value for name, value in ext.param.items()
                  if name.lower() not in ("password", "a1-hash")}
        ext = Extension(ext.user, ext.domain, {**params, "password": password}, ext.variable,
                        ext.attribute)
    # never cached: the switch would answer a browser's REGISTER with the desk phone's
    # document (or the reverse)
    return render(ext, "")
