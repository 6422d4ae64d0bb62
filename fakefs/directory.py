"""The user directory as FreeSWITCH's core consults it: XML bindings first (fsapps'
``xml_fetch``), then the static users a test declared; results cached per ``cacheable``;
registration checks that mod_sofia applies from the user's params.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


@dataclass
class DirectoryUser:
    """A ``<user>`` element, flattened: attributes, params and variables."""

    id: str
    domain: str
    attributes: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    source: str = "static"

    def to_xml(self) -> str:
        user = ET.Element("user", {"id": self.id, **self.attributes})
        params = ET.SubElement(user, "params")
        for name, value in self.params.items():
            ET.SubElement(params, "param", {"name": name, "value": value})
        variables = ET.SubElement(user, "variables")
        for name, value in self.variables.items():
            ET.SubElement(variables, "variable", {"name": name, "value": value})
        return ET.tostring(user, encoding="unicode")


def parse_directory_result(text: str, user: str, domain: str) -> DirectoryUser | None:
    """Find ``user`` (by id or number-alias) in a directory XML document; None if absent.
    Raises ET.ParseError on XML that does not parse (the switch logs it)."""
    root = ET.fromstring(text)
    if root.tag == "result" or root.find(".//result[@status='not found']") is not None:
        return None
    for dom in root.iter("domain"):
        if dom.get("name") not in (domain, None):
            continue
        dom_params = {p.get("name", ""): p.get("value", "") for p in dom.findall("./params/param")}
        dom_vars = {v.get("name", ""): v.get("value", "")
                    for v in dom.findall("./variables/variable")}
        for el in dom.iter("user"):
            if el.get("id") == user or el.get("number-alias") == user:
                params = dict(dom_params)
                params.update({p.get("name", ""): p.get("value", "")
                               for p in el.findall("./params/param")})
                variables = dict(dom_vars)
                variables.update({v.get("name", ""): v.get("value", "")
                                  for v in el.findall("./variables/variable")})
                attrs = {k: v for k, v in el.attrib.items() if k != "id"}
                return DirectoryUser(el.get("id", user), domain, attrs, params, variables,
                                     source="binding")
    return None


class DirectoryCache:
    """``cacheable="<ms>"`` (or "true": forever) keeps a user for that long; flushed by
    ``xml_flush_cache id <user> <domain>``."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[float, DirectoryUser]] = {}

    def get(self, user: str, domain: str) -> DirectoryUser | None:
        hit = self._entries.get((user, domain))
        if hit is None:
            return None
        expires, entry = hit
        if expires and expires < time.monotonic():
            del self._entries[(user, domain)]
            return None
        return entry

    def put(self, user: str, domain: str, entry: DirectoryUser) -> None:
        cacheable = entry.attributes.get("cacheable", "")
        if not cacheable or cacheable.lower() == "false":
            return
        if cacheable.lower() == "true":
            expires = 0.0
        else:
            try:
                expires = time.monotonic() + int(cacheable) / 1000.0
            except ValueError:
                return
        self._entries[(user, domain)] = (expires, entry)
        if entry.id != user:
            self._entries[(entry.id, domain)] = (expires, entry)

    def flush(self, user: str | None = None, domain: str | None = None) -> int:
        if user is None:
            count = len(self._entries)
            self._entries.clear()
            return count
        keys = [k for k, (_, e) in self._entries.items()
                if (k[0] == user or e.id == user) and (domain is None or k[1] == domain)]
        for key in keys:
            del self._entries[key]
        return len({id(self._entries.get(k)) for k in keys}) if keys else 0


def a1_hash(user: str, realm: str, password: str) -> str:
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()


def check_registration(entry: DirectoryUser, *, user: str, realm: str, password: str,
                       network_ip: str, user_agent: str, current_registrations: int) \
        -> tuple[int, str]:
    """The SIP answer mod_sofia would give a REGISTER for ``entry``: (200, "OK") or the
    refusal with its reason."""
    p = entry.params
    if p.get("sip-forbid-register", "false").lower() == "true":
        return 403, "sip-forbid-register"
    acl = p.get("auth-acl", "").strip()
    if acl:
        allowed = False
        for item in acl.split(","):
            item = item.strip()
            if not item:
                continue
            try:
                if ipaddress.ip_address(network_ip) in ipaddress.ip_network(item, strict=False):
                    allowed = True
            except ValueError:
                continue
        if not allowed:
            return 403, f"auth-acl {acl!r} refuses {network_ip}"
    ua_filter = p.get("user-agent-filter", "")
    if ua_filter and not re.search(ua_filter, user_agent or ""):
        return 603, f"user-agent-filter {ua_filter!r} refuses {user_agent!r}"
    max_regs = p.get("max-registrations-per-extension", "")
    if max_regs.isdigit() and current_registrations >= int(max_regs):
        return 403, f"max-registrations-per-extension {max_regs} reached"
    expected_a1 = p.get("a1-hash")
    stored_password = p.get("password")
    if expected_a1:
        if a1_hash(user, realm, password) != expected_a1.lower():
            return 401, "a1-hash mismatch"
    elif stored_password is not None and stored_password != "":
        if password != stored_password:
            return 401, "wrong password"
    elif p.get("allow-empty-password", "true").lower() == "false":
        return 401, "empty password not allowed"
    return 200, "OK"
