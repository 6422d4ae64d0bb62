"""The user directory as FreeSWITCH's core consults it: XML bindings first (fsapps'
``xml_fetch``), then the static users a test declared; results cached per ``cacheable``;
registration checks that mod_sofia applies from the user's params.

Binding semantics follow ``switch_xml_locate`` (FreeSWITCH 1.10): a binding that answers
nothing ("", None from mod_python3 after an exception, unparsable XML, or the
``<section name="result"><result status="not found"/>`` document) passes to the next binding;
the first binding that answers a valid document ends the search. That document is used if it
has ``<section name="directory">`` with ``<domain name="<domain>">``; then the user is looked
for in that domain only (no fallback to the static XML). A document without the domain falls
back to the static directory.

A param or attribute that is present counts even when its value is empty, as in mod_sofia:
``auth-acl=""`` refuses every phone, ``a1-hash=""`` next to a password makes every digest
fail, ``number-alias=""`` is an empty alias in the sofia::register event.

Known gaps: ``allow-empty-password`` is honoured when present (default: allowed) as the seed's
template expects, which mod_sofia 1.10 may not do for REGISTER; users of ``type="pointer"``,
group-only ``<users>`` pointers and the profile-level user-agent-filter / max-registrations
defaults are not modelled.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


def switch_true(value: str | None) -> bool:
    """FreeSWITCH's ``switch_true``: yes/on/true/t/enabled/active/allow or a non-zero number."""
    if value is None:
        return False
    v = value.strip().lower()
    if v in ("yes", "on", "true", "t", "enabled", "active", "allow"):
        return True
    return v.lstrip("-").isdigit() and int(v) != 0


@dataclass
class DirectoryUser:
    """A ``<user>`` element, flattened: attributes, params and variables (the user's own win
    over its group's, which win over its domain's, as ``switch_xml_merge_user``)."""

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


class NoDomainError(Exception):
    """The binding's document has no ``<section name="directory"><domain name=...>``."""


def is_not_found(root: ET.Element) -> bool:
    """``<section name="result"><result status="not found"/></section>`` under the root."""
    for section in root.findall("section"):
        if section.get("name") == "result":
            result = section.find("result")
            if result is not None and (result.get("status") or "").lower() == "not found":
                return True
    return False


def _pairs(el: ET.Element | None, container: str, item: str) -> dict[str, str]:
    if el is None:
        return {}
    box = el.find(container)
    if box is None:
        return {}
    return {p.get("name", ""): p.get("value", "") for p in box.findall(item)}


def _match(el: ET.Element, user: str) -> bool:
    # find_user_in_tag("id", ...): id OR number-alias, compared case-insensitively.
    return any((el.get(attr) or "").lower() == user.lower() for attr in ("id", "number-alias"))


def find_user(root: ET.Element, user: str, domain: str) -> DirectoryUser | None:
    """Look ``user`` up in a directory document the way ``switch_xml_locate_user`` does:
    ``document/section[@name=directory]/domain[@name=<domain>]``, then the user in
    ``groups/group/users``, in ``users``, or directly under the domain (only when the domain
    has no ``users``). Raises NoDomainError when the document lacks the domain."""
    dom = None
    for section in root.findall("section"):
        if section.get("name") != "directory":
            continue
        dom = next((d for d in section.findall("domain")
                    if (d.get("name") or "").lower() == domain.lower()), None)
        if dom is not None:
            break
    if dom is None:
        raise NoDomainError(domain)
    found: ET.Element | None = None
    group: ET.Element | None = None
    groups = dom.find("groups")
    if groups is not None:
        for g in groups.findall("group"):
            users = g.find("users")
            hit = next((u for u in users.findall("user") if _match(u, user)), None) \
                if users is not None else None
            if hit is not None:
                found, group = hit, g
                break
    if found is None:
        users = dom.find("users")
        container = users if users is not None else dom
        found = next((u for u in container.findall("user") if _match(u, user)), None)
    if found is None:
        return None
    params = {**_pairs(dom, "params", "param"), **_pairs(group, "params", "param"),
              **_pairs(found, "params", "param")}
    variables = {**_pairs(dom, "variables", "variable"),
                 **_pairs(group, "variables", "variable"),
                 **_pairs(found, "variables", "variable")}
    attrs = {k: v for k, v in found.attrib.items() if k != "id"}
    return DirectoryUser(found.get("id", user), domain, attrs, params, variables,
                         source="binding")


def parse_directory_result(text: str, user: str, domain: str) -> DirectoryUser | None:
    """Find ``user`` (by id or number-alias) in a binding's directory document; None if the
    domain is there but the user is not. Raises ET.ParseError on XML that does not parse and
    NoDomainError when the document does not serve the domain (the switch then uses its static
    XML)."""
    root = ET.fromstring(text)
    if is_not_found(root):
        raise NoDomainError(domain)
    return find_user(root, user, domain)


class DirectoryCache:
    """``switch_xml_user_cache``: a user found with ``cacheable="<ms>"`` (or "true": forever) is
    kept under (key, user name as asked, domain) — key "id" for both REGISTER and user/
    dialling; ``xml_flush_cache <key> <user> <domain>`` evicts exactly that entry and any
    other form of the command empties the whole cache."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], tuple[float, DirectoryUser]] = {}

    def get(self, user: str, domain: str, key: str = "id") -> DirectoryUser | None:
        hit = self._entries.get((key, user, domain))
        if hit is None:
            return None
        expires, entry = hit
        if expires and expires < time.monotonic():
            del self._entries[(key, user, domain)]
            return None
        return entry

    def put(self, user: str, domain: str, entry: DirectoryUser, key: str = "id") -> None:
        cacheable = entry.attributes.get("cacheable", "")
        if not cacheable:
            return
        if cacheable.strip().isdigit():
            expires = time.monotonic() + int(cacheable) / 1000.0
        else:
            expires = 0.0  # any non-number (e.g. "true") caches until flushed
        self._entries[(key, user, domain)] = (expires, entry)

    def flush(self, key: str | None = None, user: str | None = None,
              domain: str | None = None) -> int:
        if key is None or user is None or domain is None:
            count = len(self._entries)
            self._entries.clear()
            return count
        return 1 if self._entries.pop((key, user, domain), None) is not None else 0


# The lists FreeSWITCH builds itself (switch_load_network_lists) that fakefs can know without
# looking at the machine; nat.auto, localnet.auto, wan*.auto and acl.conf.xml's lists are not
# modelled (an auth-acl naming one refuses every phone here).
AUTO_NETWORK_LISTS: dict[str, tuple[str, ...]] = {
    "rfc1918.auto": ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
    "rfc6598.auto": ("100.64.0.0/10",),
    "loopback.auto": ("127.0.0.0/8",),
    "any_v4.auto": ("0.0.0.0/0",),
    "any_v6.auto": ("::/0",),
}


def check_network_list_ip(ip: str, list_name: str) -> bool:
    """``switch_check_network_list_ip(ip, list_name)``: a named list (see AUTO_NETWORK_LISTS)
    if there is one of that name; else, when the text has a '/', a comma-separated list of
    CIDRs; else False — so "" (an empty auth-acl) and a bare address like "10.0.0.5" match
    nothing."""
    cidrs = AUTO_NETWORK_LISTS.get(list_name)
    if cidrs is None:
        if "/" not in list_name:
            return False
        cidrs = tuple(list_name.split(","))
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for cidr in cidrs:
        try:
            if address in ipaddress.ip_network(cidr.strip(), strict=False):
                return True
        except ValueError:
            continue
    return False


def a1_hash(user: str, realm: str, password: str) -> str:
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()


def check_registration(entry: DirectoryUser, *, user: str, realm: str, password: str,
                       network_ip: str, user_agent: str, current_registrations: int) \
        -> tuple[int, str]:
    """The SIP answer mod_sofia (``sofia_reg_parse_auth``) gives an authenticated REGISTER for
    ``entry``: (200, "OK") or (403, why). Every refusal is AUTH_FORBIDDEN, answered 403.
    Checks run in mod_sofia's order: sip-forbid-register, auth-acl, then an empty password
    (with no a1-hash) is accepted outright — before user-agent-filter and
    max-registrations-per-extension are looked at — then those two, then the digest."""
    p = entry.params
    if switch_true(p.get("sip-forbid-register")):
        return 403, "sip-forbid-register"
    # A param that is present counts, even with an empty value (switch_xml_attr_soft gives
    # "" and the C code tests the pointer): auth-acl="" is an ACL named "", which exists
    # nowhere, so every phone is refused.
    if "auth-acl" in p:
        acl = p["auth-acl"]
        if not check_network_list_ip(network_ip, acl):
            return 403, (f"auth-acl {acl!r} refuses {network_ip} (IP {network_ip} Rejected by "
                         f"user acl [{acl}] and no proxy acl present)")
    expected_a1 = p.get("a1-hash")
    stored_password = p.get("password", "")
    if not stored_password and not expected_a1:
        if "allow-empty-password" in p and not switch_true(p["allow-empty-password"]):
            return 403, "empty password not allowed"
        return 200, "OK"
    ua_filter = p.get("user-agent-filter", "")
    if ua_filter and not re.search(ua_filter, user_agent or ""):
        return 403, f"user-agent-filter {ua_filter!r} refuses {user_agent!r}"
    max_regs = p.get("max-registrations-per-extension", "").strip()
    if max_regs.isdigit() and int(max_regs) > 0 and current_registrations + 1 > int(max_regs):
        return 403, f"max-registrations-per-extension {max_regs} reached"
    # The phone hashes user:realm:password; FreeSWITCH compares digests built from the stored
    # a1-hash as written (an upper-case a1-hash never matches, nor does a1-hash="" next to a
    # password: the empty string is used as the hash) or from the password.
    if expected_a1 is not None:
        if a1_hash(user, realm, password) != expected_a1:
            return 403, "a1-hash mismatch"
    elif password != stored_password:
        return 403, "wrong password"
    return 200, "OK"
