"""One simulated FreeSWITCH node.

It owns channels, the event bus, registrations, gateways, the XML dialplan, the directory
bindings and python.conf.xml's startup scripts, and runs every inbound channel in a session
thread of its own, as the real switch does. Several ``Switch`` objects can live in one process
(multi-node tests); each binds itself to the threads it runs so ``import freeswitch`` inside
fsapps talks to the right node.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
import re
import socket
import threading
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from fakefs import api as api_module
from fakefs import apps as apps_module
from fakefs.causes import CONTINUE_ANYWAY, canonical, dialstatus, q850
from fakefs.channel import Behaviour, Channel, Interrupt, now_us
from fakefs.dialplan import Action, Dialplan
from fakefs.dialstring import DialStringError, Leg
from fakefs.dialstring import parse as parse_dialstring
from fakefs.directory import (
    DirectoryCache,
    DirectoryUser,
    NoDomainError,
    check_registration,
    is_not_found,
    parse_directory_result,
)
from fakefs.events import Event, EventBus
from fakefs.modpython import SwitchCrashed, bind, run_runtime, run_xml_fetch
from fakefs.scheduler import Scheduler

LOG_LEVELS = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERR", "CRIT", "ALERT", "CONSOLE")


@dataclass
class SipProfile:
    """A sofia profile: where it listens for SIP and the context its inbound calls run in
    (conf/freeswitch: "internal" for phones, context default; "external" for trunks and the
    other nodes, no authentication, context public)."""

    name: str
    ip: str
    port: int
    context: str

    @property
    def url(self) -> str:
        return f"sip:mod_sofia@{self.ip}:{self.port}"


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


@dataclass
class Gateway:
    name: str
    behaviour: Behaviour | Callable[[str], Behaviour] = field(default_factory=Behaviour)
    up: bool = True

    def behaviour_for(self, number: str) -> Behaviour:
        return self.behaviour(number) if callable(self.behaviour) else self.behaviour


class _Attempt:
    """The legs of one originate/bridge group, and a condition the originator waits on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.legs: list[Channel] = []

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()


class Switch:
    def __init__(self, name: str = "fs1", *, dialplan_dir: str | Path | None = None,
                 dialplan_context: str = "default", python_conf: str | Path | None = None,
                 domain: str = "127.0.0.1", ipv4: str = "127.0.0.1",
                 time_scale: float = 1.0, seed: int | None = None,
                 global_vars: dict[str, str] | None = None, sip_ip: str | None = None,
                 sip_ports: dict[str, int] | None = None,
                 public_dialplan: str | Path | Sequence[str | Path] | None = None) -> None:
        """``ipv4`` is the machine's address (events' FreeSWITCH-IPv4); SIP listens where the
        profiles say: ``sip_ip`` (default ``ipv4``) on ``sip_ports`` (default internal 5060,
        external 5080; a port a running fake switch holds on that address already becomes
        the next free one, so several nodes can share an address as on one host).
        ``dialplan_dir``'s files go into ``dialplan_context``; ``public_dialplan`` (a directory
        or files) into context "public", where calls on the external profile run."""
        self.name = name
        self.core_uuid = str(uuidlib.uuid4())
        self.ipv4 = ipv4
        self.domain = domain
        self.time_scale = time_scale
        self.random = random.Random(seed)
        self.globals: dict[str, str] = {
            # FreeSWITCH has no "switchname" global (only the `switchname` api and the
            # FreeSWITCH-Switchname header of events), unless vars.xml sets one; nor a
            # "domain_name" one with conf/freeswitch's vars.xml (observed: only channels
            # the switch authenticated have a domain_name; ${domain_name} is "" elsewhere).
            "hostname": name, "core_uuid": self.core_uuid,
            "domain": domain, "local_ip_v4": ipv4,
            "sound_prefix": "/usr/share/freeswitch/sounds/en/us/callie",
            "hold_music": "local_stream://moh",
        }
        self.globals.update(global_vars or {})
        self.channels: dict[str, Channel] = {}
        self.all_channels: dict[str, Channel] = {}
        self.bus = EventBus(self._core_headers)
        self.scheduler = Scheduler(name)
        self.log: list[tuple[str, str]] = []
        self.python_errors: list[str] = []
        self.crashed: str | None = None
        self.running = True
        self.registrations: dict[tuple[str, str], list[Registration]] = {}
        self.gateways: dict[str, Gateway] = {}
        self.sip_peers: dict[str, Behaviour] = {}
        self.static_directory: dict[tuple[str, str], DirectoryUser] = {}
        self.directory_cache = DirectoryCache()
        self.media_durations: dict[str, int] = {}
        self.default_file_ms = 1000
        self.xml_bindings: list[tuple[str, set[str]]] = []
        self.startup_scripts: list[str] = []
        self.runtime_threads: list[threading.Thread] = []
        self.aliases: dict[str, str] = {}
        self.conferences: dict[str, dict[str, Any]] = {}
        self.dialplan = Dialplan()
        self.profiles: dict[str, SipProfile] = {}
        ports = {"internal": 5060, "external": 5080, **(sip_ports or {})}
        for profile, port in ports.items():
            context = {"internal": dialplan_context, "external": "public"}.get(profile, "public")
            self.profiles[profile] = _listen(self, SipProfile(profile, sip_ip or ipv4, port,
                                                               context))
        self._lock = threading.RLock()
        try:
            if dialplan_dir is not None:
                self.dialplan.load_dir(dialplan_dir, dialplan_context)
            public = [] if public_dialplan is None else [public_dialplan] \
                if isinstance(public_dialplan, (str, Path)) else list(public_dialplan)
            for item in public:
                if Path(item).is_dir():
                    self.dialplan.load_dir(item, "public")
                else:
                    self.dialplan.load_text(Path(item).read_text(encoding="utf-8"), "public")
            if python_conf is not None:
                self.load_python_conf(python_conf)
        except Exception:
            self.scheduler.stop()  # a switch that never came up leaves no timer thread behind
            raise

    # ------------------------------------------------------------------ plumbing ---------
    def _core_headers(self) -> dict[str, str]:
        return {"Core-UUID": self.core_uuid, "FreeSWITCH-Hostname": self.name,
                "FreeSWITCH-Switchname": self.name, "FreeSWITCH-IPv4": self.ipv4,
                "FreeSWITCH-IPv6": "::1"}

    def scaled(self, ms: float) -> float:
        """Seconds for a simulated duration of ``ms`` milliseconds."""
        return ms * self.time_scale / 1000.0

    @contextlib.contextmanager
    def bound(self) -> Iterator[Switch]:
        """Bind this switch to the calling thread (``import freeswitch`` then talks to it)."""
        previous = bind(self)
        try:
            yield self
        finally:
            bind(previous)

    def console_log(self, level: str, message: str) -> None:
        level = level.upper() if level else "INFO"
        self.log.append((level, message.rstrip("\n")))

    def crash(self, reason: str) -> None:
        self.crashed = reason
        self.console_log("CRIT", f"fakefs: SWITCH CRASHED: {reason}")
        raise SwitchCrashed(reason)

    def fire(self, name: str, channel: Channel | None = None, subclass: str = "",
             headers: dict[str, str] | None = None, body: str = "",
             with_variables: bool = True) -> Event:
        event = Event(name, subclass)
        if channel is not None:
            event.headers.update(channel.event_headers(with_variables))
        if headers:
            event.headers.update(headers)
        if body:
            event.body = body
        return self.bus.fire(event)

    # ------------------------------------------------------------------ python.conf ------
    def load_python_conf(self, path: str | Path) -> None:
        """Read the three params mod_python3 knows (FREESWITCH.md)."""
        root = ET.parse(str(path)).getroot()
        script = None
        for param in root.iter("param"):
            name, value = param.get("name"), param.get("value", "")
            if name == "xml-handler-script":
                script = value
            elif name == "xml-handler-bindings":
                if script is None:
                    raise ValueError("xml-handler-bindings must come after xml-handler-script")
                self.xml_bindings.append((script, {s.strip() for s in value.split(",")}))
            elif name == "startup-script":
                self.startup_scripts.append(value)
            else:
                raise ValueError(f"python.conf.xml: unknown param {name!r}")

    def start(self) -> Switch:
        for script in self.startup_scripts:
            self.runtime_threads.append(run_runtime(self, script))
        self.fire("STARTUP")
        return self

    def shutdown(self, grace: float = 10.0) -> None:
        """A switch shutdown in FreeSWITCH 1.10.12's order (switch_core_destroy): ``running()``
        turns false, the SHUTDOWN event fires, hupall hangs every call up (SYSTEM_SHUTDOWN,
        their hangup events fire), and only then do the modules unload, mod_python3 with
        them: the runtime threads (startup-script / pyrun) get SystemExit and ``grace``
        seconds to end (mod_python3's unload gives about 10 s). A runtime that keeps reading
        events a while after ``running()`` turned false may read some of those hangups before
        the unload stops it, or none: a race, on a real switch as here, so what it recorded
        about the calls may outlive them until the node starts again (NodeRuntime.recover)."""
        self.running = False
        self.fire("SHUTDOWN")
        # hupall gives every channel SYSTEM_SHUTDOWN: legs without a session thread first, so
        # none of them is hung up as the bridged peer of another (NORMAL_CLEARING).
        for channel in sorted(list(self.channels.values()),
                              key=lambda c: c.session_thread is not None):
            self.hangup(channel, "SYSTEM_SHUTDOWN")
        for thread in self.runtime_threads:
            if thread.is_alive() and thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                           ctypes.py_object(SystemExit))
        deadline = time.monotonic() + grace
        for thread in self.runtime_threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.scheduler.stop()

    def kill(self, grace: float = 5.0) -> None:
        """An abrupt death (kill -9, power cut): no more events or timers, every Python thread
        of the node (runtime, its helper threads, call handlers) gets SystemExit, and the
        channels vanish without hangup events or hangup hooks. Other nodes can only notice
        the silence (no heartbeat). ``shutdown()`` afterwards is harmless."""
        self.running = False
        # Whatever the dying threads still fire lands on a bus nobody listens to; the old bus
        # keeps its history for tests to read.
        self.bus = EventBus(self._core_headers)
        self.scheduler.stop()
        with self._lock:
            channels = list(self.channels.values())
        for channel in channels:
            channel.hangup_hooks.clear()
        threads = {*self.runtime_threads,
                   *(c.session_thread for c in channels if c.session_thread is not None),
                   *(t for t in threading.enumerate()
                     if getattr(t, "_fakefs_switch", None) is self)}
        threads.discard(threading.current_thread())
        for thread in threads:
            if thread.is_alive() and thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                           ctypes.py_object(SystemExit))
        deadline = time.monotonic() + grace
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self.channels.clear()
        for channel in channels:
            with channel.lock:
                if channel.hangup_cause is None:
                    channel.hangup_cause = "CRASH"
            channel.done.set()
            channel.wake()

    # ------------------------------------------------------------------ directory --------
    def add_user(self, user: str, domain: str | None = None, *, password: str = "1234",
                 params: dict[str, str] | None = None, variables: dict[str, str] | None = None,
                 attributes: dict[str, str] | None = None) -> DirectoryUser:
        """Declare a user in the static directory (what FreeSWITCH's XML files would hold)."""
        domain = domain or self.domain
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
        for script, sections in self.xml_bindings:
            if "directory" not in sections:
                continue
            # Event-Name REQUEST_PARAMS, set directly so this does not depend on the names
            # events.EVENT_NAMES lets Python construct.
            params = Event("GENERAL")
            params.headers["Event-Name"] = "REQUEST_PARAMS"
            params.headers.update(self._core_headers())
            params.headers.update({"section": "directory", "tag_name": "domain",
                                   "key_name": "name", "key_value": domain})
            if action:
                params.headers["action"] = action
            params.headers.update(extra or {})
            params.headers.update({"key": "id", "user": user, "domain": domain})
            with self.bound():
                text = run_xml_fetch(self, script, params)
            if not text:
                continue
            try:
                found = parse_directory_result(text, user, domain)
            except ET.ParseError as exc:
                self.console_log("ERR", f"Error Parsing XML from {script}: {exc}")
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

    # ------------------------------------------------------------------ registration -----
    def register(self, user: str, domain: str | None = None, *, password: str = "1234",
                 behaviour: Behaviour | None = None, user_agent: str = "fakefs-phone",
                 network_ip: str = "127.0.0.1", network_port: int | None = None,
                 expires: int = 3600) -> RegisterResult:
        """A phone REGISTERs as mod_sofia sees it: the unauthenticated REGISTER
        (sofia::pre_register, 401 challenge), then the one with credentials: the directory
        lookup (xml_fetch, action=sip_auth), sofia::register_attempt with its auth-result, and
        sofia::register — or a 403 with sofia::register_failure (every refusal of
        ``sofia_reg_parse_auth``, unknown user included, is AUTH_FORBIDDEN)."""
        domain = domain or self.domain
        port = network_port or self.random.randint(10000, 60000)
        call_id = uuidlib.uuid4().hex
        contact = f'"" <sip:{user}@{network_ip}:{port};ob>'
        head = {"profile-name": "internal", "from-user": user, "from-host": domain,
                "contact": contact, "call-id": call_id, "rpid": "unknown",
                "status": "Registered(UDP)", "expires": str(expires), "to-user": user,
                "to-host": domain, "network-ip": network_ip, "network-port": str(port)}
        self.fire("CUSTOM", subclass="sofia::pre_register",
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
            current = [r for r in self.registrations.get((entry.id, domain), [])
                       if r.call_id != call_id]
            code, reason = check_registration(entry, user=user, realm=domain, password=password,
                                              network_ip=network_ip, user_agent=user_agent,
                                              current_registrations=len(current))
        self.fire("CUSTOM", subclass="sofia::register_attempt", headers={
            **head, "username": user, "realm": domain, "user-agent": user_agent,
            "auth-result": "SUCCESS" if code == 200 else "FORBIDDEN"})
        if code != 200:
            self.console_log("WARNING", f"SIP auth failure (REGISTER) on sofia profile "
                             f"'internal' for [{user}@{domain}] from ip {network_ip}: {reason}")
            self.fire("CUSTOM", subclass="sofia::register_failure", headers={
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
        with self._lock:
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
        self.fire("CUSTOM", subclass="sofia::register", headers={
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
        domain = domain or self.domain
        with self._lock:
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
            self.fire("CUSTOM", subclass="sofia::expire" if expired else "sofia::unregister",
                      headers=headers)
        return len(regs)

    def add_gateway(self, name: str, behaviour: Behaviour | Callable[[str], Behaviour]
                    | None = None, up: bool = True) -> Gateway:
        gateway = Gateway(name, behaviour or Behaviour(), up)
        self.gateways[name] = gateway
        return gateway

    # ------------------------------------------------------------------ calls ------------
    def new_channel(self, **kwargs: Any) -> Channel:
        channel = Channel(self, str(uuidlib.uuid4()), **kwargs)
        with self._lock:
            self.channels[channel.uuid] = channel
            self.all_channels[channel.uuid] = channel
        return channel

    def place_call(self, caller: str, destination: str, *, caller_name: str | None = None,
                   context: str = "default", behaviour: Behaviour | None = None,
                   variables: dict[str, str] | None = None, network_addr: str = "127.0.0.1",
                   profile: str = "internal", domain: str | None = None,
                   authenticated: bool | None = None) -> Channel:
        """An inbound call arrives (INVITE): a channel is created and runs the dialplan of
        ``context`` for ``destination`` in its own session thread.

        ``authenticated``: the INVITE passed mod_sofia's digest challenge as directory user
        ``caller`` — FreeSWITCH then sets ``sip_authorized=true`` and the user's ``user_name``
        / ``sip_auth_username``; an outside caller (a trunk, an unchallenged profile) has
        none of them, whatever caller ID it presents. Default: a phone registered here
        calling on the internal profile."""
        domain = domain or self.domain
        if authenticated is None:
            with self._lock:
                authenticated = profile == "internal" and bool(
                    self.registrations.get((caller, domain)))
        channel = self.new_channel(
            name=f"sofia/{profile}/{caller}@{domain}", direction="inbound",
            caller_id_name=caller_name or caller, caller_id_number=caller,
            destination_number=destination, context=context, network_addr=network_addr,
            username=caller, behaviour=behaviour or Behaviour(hangup_after_ms=None))
        if authenticated or profile != "external":
            # mod_sofia sets domain_name from the digest realm; a call on the external
            # profile (no authentication) has none (observed on 1.10.12)
            channel.variables["domain_name"] = domain
        channel.variables.update({"direction": "inbound",
                                  "sip_from_user": caller, "sip_to_user": destination,
                                  "sip_req_user": destination, "caller_id_number": caller,
                                  "destination_number": destination,
                                  "presence_id": f"{caller}@{domain}",
                                  "sip_call_id": uuidlib.uuid4().hex})
        if authenticated:
            channel.variables.update({"sip_authorized": "true", "user_name": caller,
                                      "sip_auth_username": caller, "sip_auth_realm": domain})
        channel.variables.update(variables or {})
        self.fire("CHANNEL_CREATE", channel)
        self._arm_caller(channel)
        self._start_session(channel)
        return channel

    def _arm_caller(self, channel: Channel) -> None:
        b = channel.behaviour
        if b.abandon_after_ms is not None:
            def abandon() -> None:
                if channel.up and not channel.peer:
                    self.hangup(channel, "NORMAL_CLEARING", side="remote")
            self.scheduler.call_later(self.scaled(b.abandon_after_ms), abandon)
        if b.hangup_after_ms is not None:
            self._when(channel, "answered", b.hangup_after_ms, lambda: self.hangup(
                channel, "NORMAL_CLEARING", side="remote"))
        if b.hangup_after_bridge_ms is not None:
            self._when(channel, "bridged", b.hangup_after_bridge_ms, lambda: self.hangup(
                channel, "NORMAL_CLEARING", side="remote"))
        for at_ms, digits in b.dtmf:
            self._when(channel, "answered", at_ms, partial(self.send_dtmf, channel, digits))

    def _when(self, channel: Channel, time_key: str, after_ms: int,
              fn: Callable[[], None]) -> None:
        """Run ``fn`` ``after_ms`` after ``channel.times[time_key]`` is set (polling the
        timestamp from the timer thread, so no thread waits per channel)."""
        def check() -> None:
            if not channel.up:
                return
            if time_key in channel.times:
                def fire_if_up() -> None:
                    if channel.up:
                        fn()
                self.scheduler.call_later(self.scaled(after_ms), fire_if_up)
            else:
                self.scheduler.call_later(0.01, check)
        self.scheduler.call_later(0.0, check)

    def _start_session(self, channel: Channel, first_apps: list[Action] | None = None) -> None:
        thread = threading.Thread(target=self._session_main, args=(channel, first_apps),
                                  name=f"{self.name}:session:{channel.uuid[:8]}", daemon=True)
        channel.session_thread = thread
        thread.start()

    def set_state(self, channel: Channel, state: str) -> None:
        if channel.state != state:
            channel.state = state
            self.fire("CHANNEL_STATE", channel, with_variables=False)

    def set_callstate(self, channel: Channel, callstate: str) -> None:
        if channel.callstate != callstate:
            original = channel.callstate
            channel.callstate = callstate
            self.fire("CHANNEL_CALLSTATE", channel, headers={
                "Original-Channel-Call-State": original,
                "Channel-Call-State-Number": str(_CALLSTATES.index(callstate))},
                with_variables=False)

    def _session_main(self, channel: Channel, first_apps: list[Action] | None) -> None:
        bind(self)
        try:
            self.set_state(channel, "CS_INIT")
            apps = first_apps
            while channel.up:
                if apps is None:
                    self.set_state(channel, "CS_ROUTING")
                    apps = self._hunt(channel)
                    if apps is None:
                        self.console_log("NOTICE", f"No route, Aborting call "
                                         f"{channel.destination_number} in {channel.context}")
                        self.hangup(channel, "NO_ROUTE_DESTINATION")
                        break
                self.set_state(channel, "CS_EXECUTE")
                for action in apps:
                    if not channel.up or channel.variables.get("_transfer_pending"):
                        break
                    self.execute_app(channel, action.application, action.data)
                transfer = channel.variables.pop("_transfer_pending", None)
                if transfer and channel.up:
                    apps = self._apply_transfer(channel, transfer)
                    continue
                if channel.up and channel.state != "CS_PARK":
                    self.hangup(channel, "NORMAL_CLEARING")
                break
        except BaseException as exc:
            self.console_log("CRIT", f"fakefs session thread died: {exc!r}")
            self.python_errors.append(f"fakefs session: {exc!r}")
            self.hangup(channel, "CRASH")
        finally:
            self.finish(channel)

    def _apply_transfer(self, channel: Channel, transfer: str) -> list[Action] | None:
        dest, dialplan, context = (transfer.split("\x1f") + ["", ""])[:3]
        if channel.variables.pop("_transfer_profiled", None) != transfer:
            self._transfer_profile(channel, transfer)
        return parse_inline(dest) if dialplan == "inline" else None

    def _transfer_profile(self, channel: Channel, transfer: str) -> None:
        """switch_ivr_session_transfer's new caller profile: the destination and context (an
        inline transfer keeps them here) and the transfer time."""
        dest, dialplan, context = (transfer.split("\x1f") + ["", ""])[:3]
        channel.times["transfer"] = now_us()
        if dialplan == "inline":
            return
        channel.destination_number = dest
        channel.variables["destination_number"] = dest
        if context:
            channel.context = context

    def _hunt(self, channel: Channel) -> list[Action] | None:
        channel.hit_dialplan = True

        def field_value(name: str) -> str | None:
            if name.startswith("${") or "$" in name:
                return self.expand(channel, name)
            # switch_caller_get_field_by_name: caller-profile fields only (any case); any
            # other plain name reads as "" (a variable needs field="${name}").
            profile = {"destination_number": channel.destination_number,
                       "caller_id_number": channel.caller_id_number,
                       "caller_id_name": channel.caller_id_name, "context": channel.context,
                       "network_addr": channel.network_addr, "ani": channel.caller_id_number,
                       "aniii": "", "username": channel.username, "uuid": channel.uuid,
                       "chan_name": channel.name, "source": channel.source,
                       "dialplan": channel.dialplan, "rdnis": channel.get("rdnis") or "",
                       "profile_index": "1", "transfer_source": ""}
            return profile.get(name.lower(), "")

        def run_inline(app: str, data: str) -> None:
            self.execute_app(channel, app, data, fire=False)

        return self.dialplan.hunt(channel.context, field_value, run_inline)

    def finish(self, channel: Channel) -> None:
        """CS_REPORTING then CS_DESTROY: CHANNEL_HANGUP_COMPLETE, CHANNEL_DESTROY."""
        with channel.lock:
            if channel.done.is_set():
                return
            channel.done.set()
        if channel.up:
            self.hangup(channel, "NORMAL_CLEARING")
        self.hangup_state(channel)
        for hook in list(channel.hangup_hooks):
            hook()
        if channel.variables.get("_recording"):
            apps_module.stop_recording(self, channel)
        channel.state = "CS_REPORTING"
        self.fire("CHANNEL_HANGUP_COMPLETE", channel)
        channel.state = "CS_DESTROY"
        self.fire("CHANNEL_DESTROY", channel)
        with self._lock:
            self.channels.pop(channel.uuid, None)

    def hangup_state(self, channel: Channel) -> None:
        """switch_core_session_hangup_state, run by the channel's own thread once its dialplan
        (a Python handler included) has returned: ``hangup_cause`` / ``hangup_cause_q850``,
        the timestamps and durations (switch_channel_set_timestamps: ``answer_uepoch``,
        ``billsec``, ...) and mod_sofia's ``sip_hangup_disposition`` become variables. Until
        then a handler reads None for every one of them, even after ``session.hangup()``."""
        with channel.lock:
            if channel.hangup_cause is not None and "end_uepoch" not in channel.variables:
                channel.hangup_variables(channel.hangup_cause)

    def hook_hangup_cause(self, channel: Channel) -> None:
        """What a Python hangup hook sees (FREESWITCH.md: read the cause from
        ``getVariable("hangup_cause")`` after the hook): the cause, not yet the timestamps."""
        with channel.lock:
            if channel.hangup_cause is not None and "hangup_cause" not in channel.variables:
                channel.variables["hangup_cause"] = channel.hangup_cause
                channel.variables["hangup_cause_q850"] = str(q850(channel.hangup_cause))

    # ------------------------------------------------------------------ media states -----
    def answer(self, channel: Channel) -> None:
        with channel.lock:
            if channel.answered or not channel.up:
                return
            channel.times["answered"] = now_us()
            channel.answer_state = "answered"
            channel.callstate = "ACTIVE"
        self.set_state(channel, channel.state)
        self.fire("CHANNEL_ANSWER", channel)
        channel.wake()

    def pre_answer(self, channel: Channel) -> None:
        with channel.lock:
            if channel.answered or "progress_media" in channel.times or not channel.up:
                return
            channel.times["progress_media"] = now_us()
            channel.answer_state = "early"
            channel.callstate = "EARLY"
        self.fire("CHANNEL_PROGRESS_MEDIA", channel)

    def ring_ready(self, channel: Channel) -> None:
        with channel.lock:
            if channel.answered or "progress" in channel.times or not channel.up:
                return
            channel.times["progress"] = now_us()
            channel.callstate = "RINGING"
        self.fire("CHANNEL_PROGRESS", channel)

    def hangup(self, channel: Channel, cause: str = "NORMAL_CLEARING",
               side: str = "local") -> None:
        """Hang the channel up (idempotent). A bridged peer without a session thread of its
        own (an originated leg) is hung up with it; one with a thread sees the bridge end."""
        cause = canonical(cause)  # "user_busy" or "17" hang up as USER_BUSY, as in FreeSWITCH
        with channel.lock:
            if not channel.up:
                return
            channel.hangup_side = side
            channel.times["hangup"] = now_us()
            channel.hangup_cause = cause
            channel.answer_state = "hangup"
            channel.callstate = "HANGUP"
            channel.state = "CS_HANGUP"
            # No hangup variables yet (hangup_cause, answer_uepoch, billsec, ...): the hangup
            # state sets them (hangup_state), after the channel's dialplan has returned.
        bridged = self.channels.get(channel.peer) if channel.peer else None
        if bridged is not None and bridged.up:
            # switch_channel_perform_hangup: the partner of the channel that hangs up gets
            # last_bridge_hangup_cause. A callee ending the bridge sets it on the caller; a
            # caller ending it sets it on the callee only, the caller's stays unset (its
            # bridged callee hangs up after it, when it is no longer up).
            bridged.set("last_bridge_hangup_cause", cause)
        self.fire("CHANNEL_HANGUP", channel)
        if side == "remote":
            # mod_sofia handling the far end's BYE / CANCEL / refusal sets the disposition
            # itself, just after the channel hung up (sofia_handle_sip_i_bye: CHANNEL_HANGUP
            # never carries it): a handler that reads it once ready() turned false usually
            # finds it, though it may be first. Our own hangups' send_bye / send_refuse, like
            # every other hangup-state variable, wait for the hangup state (hangup_state).
            channel.set("sip_hangup_disposition", channel.sip_hangup_disposition())
        channel.wake()
        attempt = channel.variables.get("_attempt_id")
        if attempt:
            _ATTEMPTS.get(attempt, _Attempt()).notify()
        peer = self.channels.get(channel.peer) if channel.peer else None
        if peer is not None:
            peer.wake()
            if peer.up and peer.session_thread is None:
                # audio_bridge_on_exchange_media: the bridged leg left behind hangs up with
                # NORMAL_CLEARING (ORIGINATOR_CANCEL if never answered), whatever the cause.
                self.hangup(peer, "NORMAL_CLEARING" if peer.answered else "ORIGINATOR_CANCEL")
        for other in list(self.channels.values()):
            if other.eavesdrop and other.eavesdrop.get("target") == channel.uuid:
                other.wake()
            if other.three_way_with == channel.uuid:
                other.wake()
        if channel.session_thread is None and not channel.variables.get("_loopback_b"):
            self.finish(channel)

    # ------------------------------------------------------------------ apps -------------
    def expand(self, channel: Channel | None, text: str) -> str:
        """``${var}``, ``$${global}`` and ``${api args}``/``${api(args)}`` expansion."""
        if "$" not in text:
            return text
        text = re.sub(r"\$\$\{([^}]+)\}", lambda m: self.globals.get(m.group(1), ""), text)
        pattern = re.compile(r"\$\{([^${}]+)\}")
        for _ in range(20):
            m = pattern.search(text)
            if m is None:
                break
            inner = m.group(1)
            call = re.fullmatch(r"(\w+)\((.*)\)", inner, re.S) or \
                re.fullmatch(r"(\w+) (.+)", inner, re.S)
            if call and call.group(1) in api_module.COMMANDS:
                value = self.api(f"{call.group(1)} {call.group(2)}",
                                 session_channel=channel, raw=True).rstrip("\n")
            elif channel is not None:
                value = channel.get(inner) or self.globals.get(inner, "")
            else:
                value = self.globals.get(inner, "")
            text = text[:m.start()] + value + text[m.end():]
        return text

    def execute_app(self, channel: Channel, app: str, data: str, fire: bool = True) -> str:
        """Run one dialplan application on the channel, in the calling (session) thread."""
        data = self.expand(channel, data)
        handler = apps_module.APPS.get(app)
        if handler is None:
            self.console_log("ERR", f"Invalid Application {app}")
            self.hangup(channel, "DESTINATION_OUT_OF_ORDER")
            return ""
        channel.application, channel.application_data = app, data
        app_uuid = str(uuidlib.uuid4())
        if fire:
            self.fire("CHANNEL_EXECUTE", channel, headers={
                "Application": app, "Application-Data": data, "Application-UUID": app_uuid})
        response = ""
        try:
            response = handler(self, channel, data) or ""
        except Interrupt as interrupt:
            self.handle_interrupt(channel, interrupt)
        if fire:
            self.fire("CHANNEL_EXECUTE_COMPLETE", channel, headers={
                "Application": app, "Application-Data": data, "Application-UUID": app_uuid,
                "Application-Response": response or "_none_"})
        return response

    def handle_interrupt(self, channel: Channel, interrupt: Interrupt) -> None:
        if interrupt.reason == "transfer":
            channel.variables["_transfer_pending"] = interrupt.detail
        elif interrupt.reason == "bridge_to":
            apps_module.exchange_media(self, channel, interrupt.detail)
        elif interrupt.reason == "bridge_to_run":
            # uuid_bridge takes both channels out of their dialplans for good.
            other = self.channels.get(interrupt.detail)
            if other is not None and other.up:
                self.answer(channel)
                self.run_bridge(channel, other)
            if channel.up and not channel.variables.get("_transfer_pending"):
                if (channel.get("park_after_bridge") or "").lower() == "true":
                    apps_module.park(self, channel, "")
                else:
                    self.hangup(channel, other.hangup_cause if other is not None
                                and other.hangup_cause else "NORMAL_CLEARING")

    def transfer(self, channel: Channel, dest: str, dialplan: str = "XML",
                 context: str = "") -> None:
        """uuid_transfer / transfer app: the channel leaves what it is doing (a bridge ends)
        and runs the dialplan again at ``dest``."""
        detail = "\x1f".join([dest, dialplan or "XML", context or channel.context])
        if channel.session_thread is None or channel.done.is_set():
            # An originated leg has no dialplan thread of its own: the transfer gives it one.
            peer = self.channels.get(channel.peer) if channel.peer else None
            channel.peer = None
            if peer is not None:
                peer.peer = None
                peer.wake()
            channel.variables["_transfer_pending"] = detail
            apps = self._apply_transfer(channel, channel.variables.pop("_transfer_pending"))
            self._start_session(channel, apps)
            return
        # switch_ivr_session_transfer gives the channel its new caller profile at once, in the
        # caller's thread: an app still running (a Python handler whose bridge the transfer
        # ends) reads the new destination_number; the dialplan runs there once it returns.
        with channel.lock:
            self._transfer_profile(channel, detail)
            channel.variables["_transfer_profiled"] = detail
        channel.wake(Interrupt("transfer", detail))

    # ------------------------------------------------------------------ originate/bridge -
    def originate(self, dialstring: str, originator: Channel | None = None,
                  extra_vars: dict[str, str] | None = None,
                  timeout_s: float | None = None) -> tuple[Channel | None, str]:
        """Ring the legs of a dial string (``,`` together, ``|`` one group after another)
        until one answers: (answered leg, "SUCCESS") or (None, failure cause)."""
        try:
            parsed = parse_dialstring(dialstring)
        except DialStringError as exc:
            self.console_log("ERR", f"originate: {exc}")
            return None, "INVALID_NUMBER_FORMAT"
        base_vars = dict(extra_vars or {})
        if originator is not None:
            for name in (originator.get("export_vars") or "").split(","):
                name = name.strip()
                if name and originator.get(name) is not None:
                    base_vars.setdefault(name.removeprefix("nolocal:"), originator.get(name) or "")
        base_vars.update(parsed.variables)
        cause = "NORMAL_UNSPECIFIED"
        for group in parsed.groups:
            leg, cause = self._originate_group(group, base_vars, originator, timeout_s)
            if leg is not None:
                return leg, "SUCCESS"
            if cause == "ORIGINATOR_CANCEL" or (originator is not None and not originator.up):
                return None, "ORIGINATOR_CANCEL"
        return None, cause

    def _originate_group(self, group: list[Leg], base_vars: dict[str, str],
                         originator: Channel | None, timeout_s: float | None) \
            -> tuple[Channel | None, str]:
        attempt = _Attempt()
        attempt_id = str(uuidlib.uuid4())
        _ATTEMPTS[attempt_id] = attempt

        def get(name: str) -> str | None:
            return base_vars.get(name) or (originator.get(name) if originator else None)

        timeout = timeout_s if timeout_s is not None else float(get("originate_timeout") or 60)
        ignore_early = (get("ignore_early_media") or "").lower() == "true"
        ringback = self._ringback(originator) if originator is not None else None
        try:
            for leg_spec in group:
                leg_vars = {**base_vars, **leg_spec.variables, "_attempt_id": attempt_id}
                leg = self._create_leg(leg_spec.endpoint, leg_vars, originator)
                attempt.legs.append(leg)
            # FreeSWITCH's originate checks its timeout on a whole-second timer: a 5 s timeout
            # fires after 4.0-4.6 s (FREESWITCH.md, observed).
            wall = self.scaled(1000 * max(0.0, timeout - 1 + self.random.uniform(0.0, 0.6)))
            deadline = time.monotonic() + wall
            with attempt.cond:
                while True:
                    # A leg that answered wins even if it hung up right after: FreeSWITCH
                    # bridges it, and the bridge ends at once.
                    winner = next((c for c in attempt.legs if c.answered), None)
                    if winner is not None:
                        break
                    if originator is not None and not originator.up:
                        winner = None
                        break
                    if all(not c.up for c in attempt.legs):
                        break
                    if originator is not None and originator.up:
                        self._relay_progress(originator, attempt.legs, ignore_early)
                        if ringback:
                            self._play_ringback(originator, attempt.legs, ignore_early,
                                                ringback)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    attempt.cond.wait(min(remaining, 0.05))
            if originator is not None and not originator.up:
                for leg in attempt.legs:
                    self.hangup(leg, "ORIGINATOR_CANCEL")
                return None, "ORIGINATOR_CANCEL"
            if winner is not None:
                for leg in attempt.legs:
                    if leg is not winner:
                        self.hangup(leg, "LOSE_RACE")
                winner.variables.pop("_attempt_id", None)
                return winner, "SUCCESS"
            live = [c for c in attempt.legs if c.up]
            for leg in live:
                self.hangup(leg, "NO_ANSWER")
            if live:
                return None, "NO_ANSWER"
            causes = [c.hangup_cause for c in attempt.legs if c.hangup_cause]
            return None, causes[-1] if causes else "NORMAL_UNSPECIFIED"
        finally:
            _ATTEMPTS.pop(attempt_id, None)
            if originator is not None:
                originator.ringback = None  # the ringback ends with the originate

    def _relay_progress(self, originator: Channel, legs: list[Channel],
                        ignore_early: bool) -> None:
        if originator.answered:
            return
        if not ignore_early and any("progress_media" in c.times for c in legs):
            self.pre_answer(originator)
        elif any("progress" in c.times for c in legs):
            self.ring_ready(originator)

    def _ringback(self, originator: Channel) -> str | None:
        """What the originator hears while the legs ring (switch_ivr_originate): an answered
        channel's ``transfer_ringback`` ("a bridge after an answer is a transfer"), else its
        ``ringback``; expanded. None: it hears nothing generated."""
        value = originator.get("transfer_ringback") if originator.answered else None
        value = value or originator.get("ringback")
        return self.expand(originator, value) if value else None

    def _play_ringback(self, originator: Channel, legs: list[Channel], ignore_early: bool,
                       ringback: str) -> None:
        """The ringback starts once a leg rings (180), or at once with ``instant_ringback``;
        a leg's early media (183), unless ignored, is heard instead. An unanswered
        originator is given media (183) for it."""
        instant = (originator.get("instant_ringback") or "").lower() == "true"
        if not ignore_early and any("progress_media" in c.times for c in legs):
            originator.ringback = None
            return
        if instant or any("progress" in c.times or "progress_media" in c.times
                          for c in legs if c.up):
            if not originator.answered:
                self.pre_answer(originator)
            originator.ringback = ringback

    def _create_leg(self, endpoint: str, leg_vars: dict[str, str],
                    originator: Channel | None) -> Channel:
        cid_num = leg_vars.get("origination_caller_id_number") or (
            originator.get("effective_caller_id_number") or originator.caller_id_number
            if originator else "0000000000")
        cid_name = leg_vars.get("origination_caller_id_name") or (
            originator.get("effective_caller_id_name") or originator.caller_id_name
            if originator else "FreeSWITCH")
        tech, _, rest = endpoint.partition("/")
        dest_number = rest.rsplit("/", 1)[-1].split("@")[0]
        leg = self.new_channel(name=endpoint, direction="outbound", caller_id_name=cid_name,
                               caller_id_number=cid_num, destination_number=dest_number,
                               context=originator.context if originator else "default")
        leg.originator = originator.uuid if originator else None
        leg.variables.update({k: v for k, v in leg_vars.items()})
        leg.variables.update({"direction": "outbound", "originate_endpoint": endpoint})
        if originator is not None:
            leg.variables["originator"] = originator.uuid
        if tech == "loopback":  # its a-leg exists before the b-leg it starts
            self.fire("CHANNEL_CREATE", leg)
        behaviour, failure, name = self._resolve_endpoint(tech, rest, leg)
        leg.name = name or leg.name
        if failure is not None and (tech in ("error", "user") or failure in (
                "INVALID_GATEWAY", "GATEWAY_DOWN", "INVALID_PROFILE", "CHAN_NOT_IMPLEMENTED")):
            # The endpoint refused before any session existed (error/, an unknown or
            # unregistered user, a bad gateway): no channel, no events, just the cause.
            with leg.lock:
                leg.hangup_cause = failure
                leg.times["hangup"] = now_us()
                leg.state = "CS_DESTROY"
                leg.done.set()
            with self._lock:
                self.channels.pop(leg.uuid, None)
                self.all_channels.pop(leg.uuid, None)
            return leg
        if tech != "loopback":
            self.fire("CHANNEL_CREATE", leg)
        if failure is not None:
            self.scheduler.call_later(0.0, lambda: self.hangup(leg, failure, side="remote"))
            return leg
        if behaviour is None:  # loopback: the b-side drives this leg
            return leg
        leg.behaviour = behaviour
        self._drive_leg(leg, behaviour)
        return leg

    def _resolve_endpoint(self, tech: str, rest: str, leg: Channel) \
            -> tuple[Behaviour | None, str | None, str | None]:
        """(behaviour, failure cause, channel name) for ``tech/rest``."""
        if tech == "error":
            return None, rest or "NORMAL_UNSPECIFIED", None
        if tech == "user":
            user, _, domain = rest.partition("@")
            domain = domain or leg.get("domain_name") or self.globals["domain"]
            entry = self.directory_lookup(user, domain, "user_call", {"as_channel": "true"})
            if entry is None:
                return None, "SUBSCRIBER_ABSENT", None
            leg.variables.update({"dialed_user": entry.id, "dialed_domain": domain,
                                  **entry.variables})
            # As mod_dptools' user endpoint does (it expands the user's dial-string on the
            # calling channel): the channel that bridges to user/<ext> gets dialed_user /
            # dialed_domain too (observed on 1.10.12: a trunk caller bridged to user/1001).
            origin = self.channels.get(leg.originator) if leg.originator else None
            if origin is not None:
                origin.variables.update({"dialed_user": entry.id, "dialed_domain": domain})
            regs = self.registrations.get((entry.id, domain))
            if not regs:
                return None, "USER_NOT_REGISTERED", f"sofia/internal/{entry.id}@{domain}"
            leg.destination_number = entry.id
            return regs[-1].behaviour, None, f"sofia/internal/{entry.id}@{regs[-1].network_ip}"
        if tech == "sofia":
            profile, _, target = rest.partition("/")
            if profile == "gateway":
                gw_name, _, number = target.partition("/")
                gateway = self.gateways.get(gw_name)
                if gateway is None:
                    return None, "INVALID_GATEWAY", None
                if not gateway.up:
                    return None, "GATEWAY_DOWN", None
                leg.variables["sip_gateway_name"] = gw_name
                return gateway.behaviour_for(number), None, f"sofia/gateway/{gw_name}/{number}"
            user, _, host = target.partition("@")
            host_only, _, port = host.partition(":")
            for (reg_user, _), regs in self.registrations.items():
                for reg in regs:
                    if reg_user == user and reg.network_ip == host_only:
                        return reg.behaviour, None, None
            peer = self.sip_peers.get(host) or self.sip_peers.get(host_only)
            if peer is not None:
                return peer, None, None
            if profile not in self.profiles:
                return None, "INVALID_PROFILE", None  # observed: originate answers that
            # SIP goes to host:port, 5060 when the dial string names no port
            listener = SIP_NETWORK.get(f"{host_only}:{port or 5060}")
            if listener is not None and listener[0] is not self and listener[0].running:
                # Another fake FreeSWITCH node: the INVITE lands there as an inbound call on
                # the profile listening at that address, in that profile's context.
                remote, remote_profile = listener
                apps_module.start_peer_call(self, leg, remote, user, remote_profile,
                                            self.profiles[profile])
                return None, None, f"sofia/{profile}/{user}@{host}"
            return None, "DESTINATION_OUT_OF_ORDER", None
        if tech == "loopback":
            parts = rest.split("/")
            dest = parts[0]
            context = parts[1] if len(parts) > 1 and parts[1] else leg.context
            apps_module.start_loopback(self, leg, dest, context)
            return None, None, f"loopback/{dest}-a"
        return None, "CHAN_NOT_IMPLEMENTED", None

    def _drive_leg(self, leg: Channel, b: Behaviour) -> None:
        """Schedule what the far end does: 180/183, then answer or refuse, then talk."""
        def attempt_notify() -> None:
            aid = leg.variables.get("_attempt_id")
            if aid and aid in _ATTEMPTS:
                _ATTEMPTS[aid].notify()

        def progress() -> None:
            if leg.up and not leg.answered:
                (self.pre_answer if b.early_media else self.ring_ready)(leg)
                attempt_notify()

        def answer() -> None:
            if leg.up and not leg.answered:
                self.answer(leg)
                attempt_notify()
                if b.hangup_after_ms is not None:
                    self.scheduler.call_later(self.scaled(b.hangup_after_ms), lambda: self.hangup(
                        leg, "NORMAL_CLEARING", side="remote"))
                for at_ms, digits in b.dtmf:
                    self.scheduler.call_later(self.scaled(at_ms),
                                              partial(self.send_dtmf, leg, digits))

        if b.fail_with:
            self.scheduler.call_later(self.scaled(b.ring_after_ms), progress)
            self.scheduler.call_later(self.scaled(b.fail_after_ms), lambda: self.hangup(
                leg, b.fail_with or "CALL_REJECTED", side="remote"))
            return
        self.scheduler.call_later(self.scaled(b.ring_after_ms), progress)
        if (leg.get("sip_auto_answer") or "").lower() == "true":
            # the phone honours Call-Info answer-after=0: it answers once it has rung
            self.scheduler.call_later(self.scaled(b.ring_after_ms) + 0.001, answer)
        elif b.answer_after_ms is not None:
            self.scheduler.call_later(self.scaled(b.answer_after_ms), answer)
        if b.hangup_after_bridge_ms is not None:
            self._when(leg, "bridged", b.hangup_after_bridge_ms,
                       lambda: self.hangup(leg, "NORMAL_CLEARING", side="remote"))

    def send_dtmf(self, channel: Channel, digits: str, duration_ms: int = 100) -> None:
        """The far end presses keys: DTMF events, and the digits queued for the channel's
        application (and for whoever eavesdrops on it with DTMF enabled)."""
        for digit in digits:
            if not channel.up:
                return
            with channel.cond:
                channel.dtmf.append(digit)
                channel.cond.notify_all()
            self.fire("DTMF", channel, headers={"DTMF-Digit": digit,
                                                "DTMF-Duration": str(duration_ms * 8),
                                                "DTMF-Source": "RTP"}, with_variables=False)

    def bridge(self, a: Channel, dialstring: str) -> None:
        """The ``bridge`` application (FREESWITCH.md's observed variables and hangups)."""
        for name in ("originate_disposition", "DIALSTATUS", "bridge_hangup_cause",
                     "last_bridge_hangup_cause"):
            a.variables.pop(name, None)
        leg, cause = self.originate(dialstring, originator=a)
        if leg is None:
            a.set("originate_disposition", cause)
            a.set("DIALSTATUS", dialstatus(cause))
            a.set("last_bridge_hangup_cause", cause)
            a.set("originate_failed_cause", cause)
            if a.up and cause not in CONTINUE_ANYWAY and not continue_on_fail(a, cause):
                self.hangup(a, cause)
            return
        a.set("originate_disposition", "SUCCESS")
        a.set("DIALSTATUS", "SUCCESS")
        if not a.up:
            self.hangup(leg, "ORIGINATOR_CANCEL")
            return
        self.answer(a)
        self.run_bridge(a, leg)

    def run_bridge(self, a: Channel, b: Channel) -> None:
        """A and B exchange media until either hangs up or leaves (transfer); A's thread."""
        stamp = now_us()
        with a.lock, b.lock:
            a.peer, b.peer = b.uuid, a.uuid
            a.times["bridged"] = b.times["bridged"] = stamp
            a.set("bridge_channel", b.name)
            a.set("bridge_uuid", b.uuid)
            a.set("signal_bond", b.uuid)
            a.set("last_bridge_to", b.uuid)
            b.set("bridge_channel", a.name)
            b.set("bridge_uuid", a.uuid)
            b.set("signal_bond", a.uuid)
            a.callstate = b.callstate = "ACTIVE"
        self.fire("CHANNEL_BRIDGE", a, headers={"Bridge-A-Unique-ID": a.uuid,
                                                "Bridge-B-Unique-ID": b.uuid})
        b.wake()
        interrupt: Interrupt | None = None
        while True:
            try:
                a.wait(None, until=lambda: not b.up or b.peer != a.uuid or a.peer != b.uuid)
                break
            except Interrupt as exc:
                # uuid_bridge takes a bridged channel out of its bridge too (bridge_to_run)
                if exc.reason in ("transfer", "bridge_to", "bridge_to_run"):
                    interrupt = exc
                    break
                # uuid_break stops playbacks, not bridges
        with a.lock, b.lock:
            if a.peer == b.uuid:
                a.peer = None
            if b.peer == a.uuid:
                b.peer = None
        self.fire("CHANNEL_UNBRIDGE", a, headers={"Bridge-A-Unique-ID": a.uuid,
                                                  "Bridge-B-Unique-ID": b.uuid,
                                                  "Other-Leg-Unique-ID": b.uuid})
        if not b.up:
            a.set("bridge_hangup_cause", b.hangup_cause)
        if interrupt is not None:
            if b.up and b.session_thread is None:
                self.hangup(b, "NORMAL_CLEARING")
            raise interrupt
        if a.up and b.up and b.session_thread is None and b.variables.get("_transfer_pending"):
            return
        if a.up and (a.get("hangup_after_bridge") or "").lower() == "true" and not b.up:
            self.hangup(a, b.hangup_cause or "NORMAL_CLEARING")  # the peer's cause, as FS

    # ------------------------------------------------------------------ api --------------
    def api(self, line: str, session_channel: Channel | None = None, *,
            raw: bool = False) -> str:
        """Run an api command line as ``fs_cli -x``'s underlying ``api`` does (no aliases).

        Like mod_event_socket, an empty reply comes back as ``-ERR no reply``; ``raw=True``
        gives the stream as written (Python's ``API().execute``, bgapi bodies, ``${...}``)."""
        cmd, _, args = line.strip().partition(" ")
        handler = api_module.COMMANDS.get(cmd)
        if handler is None:
            return f"-ERR {cmd} Command not found!\n"
        with self.bound():
            reply = handler(self, args.strip(), session_channel)
        return reply if reply or raw else "-ERR no reply\n"

    def console(self, line: str) -> str:
        """What fs_cli (and ``fs_cli -x``, via console_execute) runs: aliases expanded."""
        cmd, _, args = line.strip().partition(" ")
        if cmd in self.aliases:
            line = f"{self.aliases[cmd]} {args}".strip()
        return self.api(line)

    # ------------------------------------------------------------------ audio paths ------
    def hold_music(self, channel: Channel) -> str | None:
        """``switch_channel_get_hold_music``: temp_hold_music, else hold_music (a channel
        variable, else the global), expanded; None when there is none."""
        for name in ("temp_hold_music", "hold_music"):
            value = channel.get(name)
            if value:
                return self.expand(channel, value)
        return self.globals.get("hold_music") or None

    def hears(self, uuid: str, _depth: int = 0) -> set[str]:
        """Whose audio reaches channel ``uuid``: other channels' uuids, and ``media:<src>``
        for playbacks and hold music. The observable effect of bridge, hold, eavesdrop
        (with its modes), three_way and conference.

        Eavesdrop (switch_ivr_eavesdrop_session): the eavesdropper hears the target's read
        stream (its own voice) and write stream (everything the target hears); with
        ED_MUX_READ the target's bridged peer hears the eavesdropper, with ED_MUX_WRITE the
        target does. A held channel hears nothing from its peer; the peer hears the held
        channel's hold music."""
        me = self.channels.get(uuid)
        if me is None or not me.up:
            return set()
        heard: set[str] = set()
        if me.playing:
            heard.add(f"media:{me.playing}")
        if me.ringback:
            heard.add(f"media:{me.ringback}")
        peer = self.channels.get(me.peer) if me.peer else None
        if peer is not None and peer.up and not me.held:
            if peer.held:
                # a hold within the bridge's lead frames: the music is still queued
                music = None if peer.hold_music_queued else self.hold_music(peer)
                if music:
                    heard.add(f"media:{music}")
            else:
                heard.add(peer.uuid)
        spy = me.eavesdrop
        if spy and _depth < 3:
            target = self.channels.get(spy["target"])
            if target is not None and target.up:
                if spy.get("read", True):
                    heard.add(target.uuid)
                if spy.get("write", True):
                    heard |= self.hears(target.uuid, _depth + 1) - {me.uuid}
        if me.three_way_with:
            target = self.channels.get(me.three_way_with)
            if target is not None and target.up:
                heard.add(target.uuid)
                if target.peer:
                    heard.add(target.peer)
        for other in list(self.channels.values()):
            if other is me or not other.up:
                continue
            spy = other.eavesdrop
            if spy:
                target = self.channels.get(spy["target"])
                if target is not None and target.up:
                    if me.uuid == target.uuid and spy.get("mux_write"):
                        heard.add(other.uuid)
                    if target.peer and me.uuid == target.peer and spy.get("mux_read"):
                        heard.add(other.uuid)
            if other.three_way_with:
                target = self.channels.get(other.three_way_with)
                if target is not None and me.uuid in (target.uuid, target.peer):
                    heard.add(other.uuid)
            if me.conference and other.conference == me.conference:
                heard.add(other.uuid)
        return heard


# The fake SIP network: "ip:port" -> the switch and its profile listening there, so
# ``sofia/<profile>/<user>@<ip>[:<port>]`` on one fake node reaches another (several nodes in
# one process).
SIP_NETWORK: dict[str, tuple[Switch, str]] = {}


def _listen(switch: Switch, profile: SipProfile) -> SipProfile:
    """Bind ``profile`` on the fake network at its ip:port, or the next port no running
    switch holds."""
    while True:
        current = SIP_NETWORK.get(f"{profile.ip}:{profile.port}")
        if current is None or not current[0].running or current[0] is switch:
            SIP_NETWORK[f"{profile.ip}:{profile.port}"] = (switch, profile.name)
            return profile
        profile.port += 1


_CALLSTATES = ["DOWN", "DIALING", "RINGING", "EARLY", "ACTIVE", "HELD", "RING_WAIT", "HANGUP",
               "UNHELD"]
_ATTEMPTS: dict[str, _Attempt] = {}


def continue_on_fail(channel: Channel, cause: str) -> bool:
    """mod_dptools' bridge: ``continue_on_fail`` true (switch_true: also any non-zero number)
    continues on every failure; else a comma list of cause names (any case) or Q.850
    numbers."""
    value = (channel.get("continue_on_fail") or "").strip()
    lowered = value.lower()
    if lowered in ("yes", "on", "true", "t", "enabled", "active", "allow") or (
            lowered.isdigit() and int(lowered) != 0):
        return True
    wanted = {c.strip().upper() for c in value.split(",") if c.strip()}
    return cause.upper() in wanted or str(q850(cause)) in wanted


def parse_inline(text: str) -> list[Action]:
    """The ``inline`` dialplan: ``app:data,app:data``."""
    from fakefs.dialstring import split_top

    actions = []
    for item in split_top(text, ","):
        app, _, data = item.partition(":")
        actions.append(Action(app.strip(), data))
    return actions


def free_hostname() -> str:  # pragma: no cover - cosmetic
    return socket.gethostname()
