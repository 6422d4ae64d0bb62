"""mod_sofia's registrar and FreeSWITCH's user directory, for one fake node: the static users
(what the XML files would hold), the directory bindings' answers and their cache, and the
phones registered on the internal profile.

The registrar finds users through the node's directory bindings (python.conf.xml's
xml-handler-script, run as mod_python3 runs it) and reports what it does with the sofia::
events mod_sofia fires; registrations are filed under the user's directory id and domain.
"""

from __future__ import annotations

import threading
import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fakefs.channel import Behaviour, now_us
from fakefs.directory import (
    DirectoryCache,
    DirectoryUser,
    NoDomainError,
    check_registration,
    is_not_found,
    parse_directory_result,
)
from fakefs.events import Event
from fakefs.modpython import run_xml_fetch

if TYPE_CHECKING:
    from fakefs.switch import Switch


@dataclass
class Registration:
    user: str
    domain: str
    behaviour: Behaviour
    contact: str
    call_id: str
    network_ip: str
    network_port: int
    user_agent: str
    expires: int
    registered_at: int = field(default_factory=now_us)


@dataclass
class RegisterResult:
    code: int
    reason: str
    registration: Registration | None = None

    @property
    def ok(self) -> bool:
        return self.code == 200


class Registrar:
    """The node's users and registrations. ``lock`` guards ``registrations`` (a phone can
    register from a test thread while a session thread dials it)."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        self.lock = threading.RLock()
        self.registrations: dict[tuple[str, str], list[Registration]] = {}
        self.static_directory: dict[tuple[str, str], DirectoryUser] = {}
        self.directory_cache = DirectoryCache()

    def registered(self, user: str, domain: str) -> list[Registration]:
        """The user's current registrations (its directory id), newest last."""
        with self.lock:
            return list(self.registrations.get((user, domain), []))

    def contact_at(self, user: str, ip: str) -> Registration | None:
        """The registration of SIP user ``user`` whose phone is at ``ip`` (a dial string
        ``sofia/<profile>/<user>@<ip>`` reaches that phone), any domain."""
        with self.lock:
            for (reg_user, _), regs in self.registrations.items():
                for reg in regs:
                    if reg_user == user and reg.network_ip == ip:
                        return reg
        return None

    def add_user(self, user: str, domain: str | None = None, *, password: str = "1234",
                 params: dict[str, str] | None = None, variables: dict[str, str] | None = None,
                 attributes: dict[str, str] | None = None) -> DirectoryUser:
        """Declare a user in the static directory (what FreeSWITCH's XML files would hold)."""
        domain = domain or self.switch.domain
        entry = DirectoryUser(user, domain, dict(attributes or {}),
                              {"password": password, **(params or {})}, dict(variables or {}))
        self.static_directory[(user, domain)] = entry
        return entry

    def directory_lookup(self, user: str, domain: str, action: str = "",
                         extra: dict[str, str] | None = None) -> DirectoryUser | None:
        """``switch_xml_locate_user_merged("id", ...)``: the cache, then the directory
        bindings (see fakefs.directory for when a binding's answer is final), then the static
        users. What is found with ``cacheable`` is cached under the name asked for."""
        cached = self.directory_cache.get(user, domain)
        if cached is not None:
            return cached
        found: DirectoryUser | None = None
        answered = False
        for script, sections in self.switch.xml_bindings:
            if "directory" not in sections:
                continue
            # Event-Name REQUEST_PARAMS, set directly so this does not depend on the names
            # events.EVENT_NAMES lets Python construct.
            params = Event("GENERAL")
            params.headers["Event-Name"] = "REQUEST_PARAMS"
            params.headers.update(self.switch.core_headers())
            params.headers.update({"section": "directory", "tag_name": "domain",
                                   "key_name": "name", "key_value": domain})
            if action:
                params.headers["action"] = action
            params.headers.update(extra or {})
            params.headers.update({"key": "id", "user": user, "domain": domain})
            with self.switch.bound():
                text = run_xml_fetch(self.switch, script, params)
            if not text:
                continue
            try:
                found = parse_directory_result(text, user, domain)
            except ET.ParseError as exc:
                self.switch.console_log("ERR", f"Error Parsing XML from {script}: {exc}")
                continue
            except NoDomainError:
                # "not found" document: next binding; a document without the domain: the
                # bindings are done and the static XML is searched.
                if is_not_found(ET.fromstring(text)):
                    continue
                break
            answered = True
            break
        if not answered:
            found = self.static_directory.get((user, domain))
            if found is None:
                found = next((u for (_, d), u in self.static_directory.items()
                              if d == domain and u.attributes.get("number-alias") == user), None)
        if found is not None:
            self.directory_cache.put(user, domain, found)
        return found

    def register(self, user: str, domain: str | None = None, *, password: str = "1234",
                 behaviour: Behaviour | None = None, user_agent: str = "fakefs-phone",
                 network_ip: str = "127.0.0.1", network_port: int | None = None,
                 expires: int = 3600) -> RegisterResult:
        """A phone REGISTERs as mod_sofia sees it: the unauthenticated REGISTER
        (sofia::pre_register, 401 challenge), then the one with credentials: the directory
        lookup (xml_fetch, action=sip_auth), sofia::register_attempt with its auth-result, and
        sofia::register — or a 403 with sofia::register_failure (every refusal of
        ``sofia_reg_parse_auth``, unknown user included, is AUTH_FORBIDDEN)."""
        domain = domain or self.switch.domain
        port = network_port or self.switch.random.randint(10000, 60000)
        call_id = uuidlib.uuid4().hex
        contact = f'"" <sip:{user}@{network_ip}:{port};ob>'
        head = {"profile-name": "internal", "from-user": user, "from-host": domain,
                "contact": contact, "call-id": call_id, "rpid": "unknown",
                "status": "Registered(UDP)", "expires": str(expires), "to-user": user,
                "to-host": domain, "network-ip": network_ip, "network-port": str(port)}
        self.switch.fire("CUSTOM", subclass="sofia::pre_register",
                         headers={**head, "user-agent": user_agent})
        nonce = str(uuidlib.uuid4())
        entry = self.directory_lookup(user, domain, "sip_auth", {
            "sip_profile": "internal", "sip_user_agent": user_agent,
            "sip_auth_username": user, "sip_auth_realm": domain, "sip_auth_nonce": nonce,
            "sip_auth_uri": f"sip:{domain}", "sip_contact_user": user,
            "sip_contact_host": network_ip, "sip_to_user": user, "sip_to_host": domain,
            "sip_from_user": user, "sip_from_host": domain, "sip_request_host": domain,
            "sip_auth_qop": "auth", "sip_auth_cnonce": uuidlib.uuid4().hex[:16],
            "sip_auth_nc": "00000001", "sip_auth_response": uuidlib.uuid4().hex,
            "sip_auth_method": "REGISTER", "ip": network_ip, "sip_call_id": call_id})
        if entry is None:
            code, reason = 403, f"user {user}@{domain} not found"
        else:
            current = [r for r in self.registered(entry.id, domain) if r.call_id != call_id]
            code, reason = check_registration(entry, user=user, realm=domain, password=password,
                                              network_ip=network_ip, user_agent=user_agent,
                                              current_registrations=len(current))
        self.switch.fire("CUSTOM", subclass="sofia::register_attempt", headers={
            **head, "username": user, "realm": domain, "user-agent": user_agent,
            "auth-result": "SUCCESS" if code == 200 else "FORBIDDEN"})
        if code != 200:
            self.switch.console_log(
                "WARNING", f"SIP auth failure (REGISTER) on sofia profile 'internal' for "
                f"[{user}@{domain}] from ip {network_ip}: {reason}")
            self.switch.fire("CUSTOM", subclass="sofia::register_failure", headers={
                "profile-name": "internal", "to-user": user, "to-host": domain,
                "network-ip": network_ip, "user-agent": user_agent,
                "network-port": str(port), "registration-type": "REGISTER"})
            return RegisterResult(code, reason)
        assert entry is not None
        # Not modelled: a refresh REGISTER (same Call-ID) — every call here is a new contact;
        # and mod_sofia stores the SIP user as sent (an alias stays the alias), where fakefs
        # files the registration under the directory id.
        status, exptime = "Registered(UDP)", expires
        force_contact = entry.variables.get("sip-force-contact", "")
        if force_contact.lower() == "ndlb-connectile-dysfunction-2.0":
            # mod_sofia rewrites the contact for NAT and shortens the expiry to 30 s.
            contact = (f'"" <sip:{user}@{network_ip}:{port};ob;fs_nat=yes;fs_path='
                       f'sip%3A{user}%40{network_ip}%3A{port}>')
            status, exptime = "Registered(AUTO-NAT-2.0)", 30
        force_expires = entry.variables.get("sip-force-expires", "")
        if force_expires.isdigit() and int(force_expires) > 0:
            exptime = int(force_expires)
        reg = Registration(entry.id, domain, behaviour or Behaviour(), contact, call_id,
                           network_ip, port, user_agent, exptime)
        with self.lock:
            self.registrations.setdefault((entry.id, domain), []).append(reg)
        # switch_xml_attr: a number-alias attribute that is present wins, even when empty.
        alias = entry.attributes.get("number-alias", user)
        # What sofia_reg_parse_auth puts in its v_event (seed 003's example shows them in
        # sofia::register): the aliases, the user's "sip-" params and all its variables.
        extra = {"sip_number_alias": alias, "sip_auth_username": user,
                 "sip_auth_realm": domain, "number_alias": alias, "user_name": user,
                 "domain_name": domain}
        for name, value in entry.params.items():
            if value and (name.lower().startswith("sip-") or name == "register-gateway"):
                extra.setdefault(name, value)
        for name, value in entry.variables.items():
            if value:
                extra.setdefault(name, value)
        self.switch.fire("CUSTOM", subclass="sofia::register", headers={
            "profile-name": "internal", "from-user": user, "from-host": domain,
            "presence-hosts": "n/a", "contact": contact, "call-id": call_id,
            "rpid": "unknown", "status": status, "expires": str(exptime), "to-user": user,
            "to-host": domain, "network-ip": network_ip, "network-port": str(port),
            "username": user, "realm": domain, "user-agent": user_agent, **extra})
        return RegisterResult(200, "OK", reg)

    def unregister(self, user: str, domain: str | None = None, *, expired: bool = False) -> int:
        """Drop every registration of the user: the phone's REGISTER with Expires: 0
        (sofia::unregister) or, with ``expired``, the registration running out
        (sofia::expire, with mod_sofia's own header names)."""
        domain = domain or self.switch.domain
        with self.lock:
            regs = self.registrations.pop((user, domain), [])
        for reg in regs:
            if expired:
                headers = {"profile-name": "internal", "call-id": reg.call_id, "user": user,
                           "host": domain, "contact": reg.contact,
                           "expires": str(reg.registered_at // 1_000_000 + reg.expires),
                           "user-agent": reg.user_agent}
            else:
                headers = {"profile-name": "internal", "username": user, "from-user": user,
                           "from-host": domain, "contact": reg.contact, "call-id": reg.call_id,
                           "rpid": "unknown", "realm": domain, "expires": "0"}
            self.switch.fire("CUSTOM", subclass="sofia::expire" if expired else "sofia::unregister",
                             headers=headers)
        return len(regs)
