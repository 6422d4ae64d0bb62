"""One simulated FreeSWITCH node.

It owns channels and their states, the event bus, the XML dialplan, python.conf.xml's
directory bindings and startup scripts, and runs every inbound channel in a session thread of
its own, as the real switch does. The rest is done by the collaborators it owns, one per
concern: ``registrar`` (users, the directory, REGISTER: :mod:`fakefs.registrar`), ``calls``
(inbound calls, originate, bridge, transfer: :mod:`fakefs.calls`), ``endpoints`` (where a
dialled leg goes and what its far end does: :mod:`fakefs.endpoints`) and ``media`` (playback,
hold music, who hears whom: :mod:`fakefs.media`); the methods tests use are on the Switch.
Several ``Switch`` objects can live in one process (multi-node tests); each binds itself to
the threads it runs so ``import freeswitch`` inside fsapps talks to the right node.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
import re
import threading
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from fakefs import api as api_module
from fakefs import apps as apps_module
from fakefs.binding import bind
from fakefs.calls import Calls, cancel_originates, wake_originate
from fakefs.causes import canonical, q850
from fakefs.channel import Behaviour, Channel, Interrupt, now_us
from fakefs.dialplan import Action, Dialplan
from fakefs.directory import DirectoryCache, DirectoryUser
from fakefs.endpoints import Endpoints, Gateway, SipProfile, listen
from fakefs.events import Event, EventBus
from fakefs.media import Media
from fakefs.modpython import SwitchCrashed, run_runtime
from fakefs.registrar import RegisterResult, Registrar, Registration
from fakefs.scheduler import Scheduler

_CALLSTATES = ["DOWN", "DIALING", "RINGING", "EARLY", "ACTIVE", "HELD", "RING_WAIT", "HANGUP",
               "UNHELD"]


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
        self.bus = EventBus(self.core_headers, later=self._later)
        self.scheduler = Scheduler(name)
        self.log: list[tuple[str, str]] = []
        self.python_errors: list[str] = []
        self.crashed: str | None = None
        self.running = True
        self.registrar = Registrar(self)
        self.calls = Calls(self)
        self.endpoints = Endpoints(self)
        self.media = Media(self)
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
            self.profiles[profile] = listen(self, SipProfile(profile, sip_ip or ipv4, port,
                                                             context))
        # guards channels, all_channels and conferences
        self.lock = threading.RLock()
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
    def _later(self, seconds: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the switch's timer thread after ``seconds`` (delayed events)."""
        self.scheduler.call_later(seconds, fn)

    def core_headers(self) -> dict[str, str]:
        """The headers every event of this node carries."""
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

    def join_threads(self, timeout: float = 10.0) -> list[str]:
        """After :meth:`shutdown`: wait up to ``timeout`` s in all for every session thread
        this switch started, and the threads its runtime started (named ``fsapps:<node>:``),
        to end. A stopped real switch takes its threads with it; here a call handler or the
        runtime's CDR thread still writing would race the next test's set-up. Returns the
        names of those still running."""
        deadline = time.monotonic() + timeout
        with self.lock:
            threads = [c.session_thread for c in self.all_channels.values()
                       if c.session_thread is not None]
        threads += [t for t in threading.enumerate()
                    if t.name.startswith(f"fsapps:{self.name}:")]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in threads if t.is_alive()]

    def kill(self, grace: float = 5.0) -> None:
        """An abrupt death (kill -9, power cut): no more events or timers, every Python thread
        of the node (runtime, its helper threads, call handlers) gets SystemExit, and the
        channels vanish without hangup events or hangup hooks. Other nodes can only notice
        the silence (no heartbeat). ``shutdown()`` afterwards is harmless."""
        self.running = False
        # Whatever the dying threads still fire lands on a bus nobody listens to; the old bus
        # keeps its history for tests to read.
        self.bus = EventBus(self.core_headers, later=self._later)
        self.scheduler.stop()
        with self.lock:
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
        with self.lock:
            self.channels.clear()
        for channel in channels:
            with channel.lock:
                if channel.hangup_cause is None:
                    channel.hangup_cause = "CRASH"
            channel.done.set()
            channel.wake()

    # ------------------------------------------------------------------ what tests use ---
    # Users, phones and gateways (the registrar and the endpoints), calls and what they hear.
    def add_user(self, user: str, domain: str | None = None, *, password: str = "1234",
                 params: dict[str, str] | None = None, variables: dict[str, str] | None = None,
                 attributes: dict[str, str] | None = None) -> DirectoryUser:
        """Declare a user in the static directory (:meth:`Registrar.add_user`)."""
        return self.registrar.add_user(user, domain, password=password, params=params,
                                       variables=variables, attributes=attributes)

    def directory_lookup(self, user: str, domain: str, action: str = "",
                         extra: dict[str, str] | None = None) -> DirectoryUser | None:
        """The user as FreeSWITCH's core finds it (:meth:`Registrar.directory_lookup`)."""
        return self.registrar.directory_lookup(user, domain, action, extra)

    def register(self, user: str, domain: str | None = None, *, password: str = "1234",
                 behaviour: Behaviour | None = None, user_agent: str = "fakefs-phone",
                 network_ip: str = "127.0.0.1", network_port: int | None = None,
                 expires: int = 3600) -> RegisterResult:
        """A phone REGISTERs (:meth:`Registrar.register`)."""
        return self.registrar.register(user, domain, password=password, behaviour=behaviour,
                                       user_agent=user_agent, network_ip=network_ip,
                                       network_port=network_port, expires=expires)

    def unregister(self, user: str, domain: str | None = None, *, expired: bool = False) -> int:
        """Every registration of the user ends (:meth:`Registrar.unregister`)."""
        return self.registrar.unregister(user, domain, expired=expired)

    @property
    def registrations(self) -> dict[tuple[str, str], list[Registration]]:
        return self.registrar.registrations

    @property
    def static_directory(self) -> dict[tuple[str, str], DirectoryUser]:
        return self.registrar.static_directory

    @property
    def directory_cache(self) -> DirectoryCache:
        return self.registrar.directory_cache

    def add_gateway(self, name: str, behaviour: Behaviour | Callable[[str], Behaviour]
                    | None = None, up: bool = True) -> Gateway:
        return self.endpoints.add_gateway(name, behaviour, up)

    @property
    def gateways(self) -> dict[str, Gateway]:
        return self.endpoints.gateways

    @property
    def sip_peers(self) -> dict[str, Behaviour]:
        return self.endpoints.sip_peers

    def place_call(self, caller: str, destination: str, *, caller_name: str | None = None,
                   context: str = "default", behaviour: Behaviour | None = None,
                   variables: dict[str, str] | None = None, network_addr: str = "127.0.0.1",
                   profile: str = "internal", domain: str | None = None,
                   authenticated: bool | None = None) -> Channel:
        """An inbound call arrives (:meth:`Calls.place_call`)."""
        return self.calls.place_call(caller, destination, caller_name=caller_name,
                                     context=context, behaviour=behaviour, variables=variables,
                                     network_addr=network_addr, profile=profile, domain=domain,
                                     authenticated=authenticated)

    def originate(self, dialstring: str, originator: Channel | None = None,
                  extra_vars: dict[str, str] | None = None,
                  timeout_s: float | None = None) -> tuple[Channel | None, str]:
        """Ring a dial string's legs until one answers (:meth:`Calls.originate`)."""
        return self.calls.originate(dialstring, originator, extra_vars, timeout_s)

    def send_dtmf(self, channel: Channel, digits: str, duration_ms: int = 100) -> None:
        """The far end presses keys (:meth:`Calls.send_dtmf`)."""
        self.calls.send_dtmf(channel, digits, duration_ms)

    def hears(self, uuid: str) -> set[str]:
        """Whose audio reaches channel ``uuid`` (:meth:`Media.hears`)."""
        return self.media.hears(uuid)

    @property
    def media_durations(self) -> dict[str, int]:
        """How long a file plays, by path (ms); others play ``media.default_file_ms``."""
        return self.media.durations

    # ------------------------------------------------------------------ channels ---------
    def new_channel(self, uuid: str | None = None, **kwargs: Any) -> Channel:
        """A channel, named ``uuid`` when given and free (``origination_uuid``)."""
        with self.lock:
            if not uuid or uuid in self.all_channels:
                uuid = str(uuidlib.uuid4())
            channel = Channel(self, uuid, **kwargs)
            self.channels[channel.uuid] = channel
            self.all_channels[channel.uuid] = channel
        return channel

    def forget_channel(self, channel: Channel) -> None:
        """A leg refused before it had a session: as if it had never existed."""
        with self.lock:
            self.channels.pop(channel.uuid, None)
            self.all_channels.pop(channel.uuid, None)

    def start_session(self, channel: Channel, first_apps: list[Action] | None = None) -> None:
        """Run the channel's dialplan (or ``first_apps``) in a session thread of its own."""
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
                    apps = self.calls.apply_transfer(channel, transfer)
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
        with self.lock:
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
        if channel.behaviour.hangup_event_delay_ms:
            time.sleep(self.scaled(channel.behaviour.hangup_event_delay_ms))
        self.fire("CHANNEL_HANGUP", channel)
        if side == "remote":
            # mod_sofia handling the far end's BYE / CANCEL / refusal sets the disposition
            # itself, just after the channel hung up (sofia_handle_sip_i_bye: CHANNEL_HANGUP
            # never carries it): a handler that reads it once ready() turned false usually
            # finds it, though it may be first. Our own hangups' send_bye / send_refuse, like
            # every other hangup-state variable, wait for the hangup state (hangup_state).
            channel.set("sip_hangup_disposition", channel.sip_hangup_disposition())
        channel.wake()
        wake_originate(channel)
        cancel_originates(channel)
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
            self.calls.exchange_media(channel, interrupt.detail)
        elif interrupt.reason == "bridge_to_run":
            # uuid_bridge takes both channels out of their dialplans for good.
            other = self.channels.get(interrupt.detail)
            if other is not None and other.up:
                self.answer(channel)
                self.calls.run_bridge(channel, other)
            if channel.up and not channel.variables.get("_transfer_pending"):
                if (channel.get("park_after_bridge") or "").lower() == "true":
                    apps_module.park(self, channel, "")
                else:
                    self.hangup(channel, other.hangup_cause if other is not None
                                and other.hangup_cause else "NORMAL_CLEARING")

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
