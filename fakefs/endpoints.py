"""Where a dialled leg goes, and what the far end does there: the endpoints of a dial string
(``user/``, ``sofia/<profile>/``, ``sofia/gateway/``, ``loopback/``, ``error/``), the node's
sofia profiles on the fake SIP network that joins the fake nodes of one process, its
gateways and SIP peers, and the far end's scripted behaviour (ring, answer or refuse, talk,
hang up, press keys).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from fakefs.calls import wake_originate
from fakefs.channel import Behaviour, Channel, now_us

if TYPE_CHECKING:
    from fakefs.switch import Switch


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
class Gateway:
    name: str
    behaviour: Behaviour | Callable[[str], Behaviour] = field(default_factory=Behaviour)
    up: bool = True

    def behaviour_for(self, number: str) -> Behaviour:
        return self.behaviour(number) if callable(self.behaviour) else self.behaviour


# The fake SIP network: "ip:port" -> the switch and its profile listening there, so
# ``sofia/<profile>/<user>@<ip>[:<port>]`` on one fake node reaches another (several nodes in
# one process).
SIP_NETWORK: dict[str, tuple[Switch, str]] = {}


def listen(switch: Switch, profile: SipProfile) -> SipProfile:
    """Bind ``profile`` on the fake network at its ip:port, or the next port no running
    switch holds."""
    while True:
        current = SIP_NETWORK.get(f"{profile.ip}:{profile.port}")
        if current is None or not current[0].running or current[0] is switch:
            SIP_NETWORK[f"{profile.ip}:{profile.port}"] = (switch, profile.name)
            return profile
        profile.port += 1


class Endpoints:
    """One node's endpoints: legs created for a dial string's entries, and the far ends that
    drive them. ``gateways`` and ``sip_peers`` (host or host:port -> behaviour) are what
    tests program."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        self.gateways: dict[str, Gateway] = {}
        self.sip_peers: dict[str, Behaviour] = {}

    def add_gateway(self, name: str, behaviour: Behaviour | Callable[[str], Behaviour]
                    | None = None, up: bool = True) -> Gateway:
        gateway = Gateway(name, behaviour or Behaviour(), up)
        self.gateways[name] = gateway
        return gateway

    def create_leg(self, endpoint: str, leg_vars: dict[str, str],
                   originator: Channel | None) -> Channel:
        """The outbound leg for one dial-string entry, its far end already scheduled; a leg
        refused before any session existed comes back hung up, with no events."""
        sw = self.switch
        cid_num = leg_vars.get("origination_caller_id_number") or (
            originator.get("effective_caller_id_number") or originator.caller_id_number
            if originator else "0000000000")
        cid_name = leg_vars.get("origination_caller_id_name") or (
            originator.get("effective_caller_id_name") or originator.caller_id_name
            if originator else "FreeSWITCH")
        tech, _, rest = endpoint.partition("/")
        dest_number = rest.rsplit("/", 1)[-1].split("@")[0]
        # origination_uuid names the leg (a uuid already in use is ignored, a fresh one taken)
        wanted = leg_vars.pop("origination_uuid", None)
        leg = sw.new_channel(name=endpoint, direction="outbound", caller_id_name=cid_name,
                             caller_id_number=cid_num, destination_number=dest_number,
                             context=originator.context if originator else "default",
                             uuid=wanted or None)
        leg.originator = originator.uuid if originator else None
        leg.variables.update({k: v for k, v in leg_vars.items()})
        leg.variables.update({"direction": "outbound", "originate_endpoint": endpoint})
        if originator is not None:
            leg.variables["originator"] = originator.uuid
        if tech == "loopback":  # its a-leg exists before the b-leg it starts
            sw.fire("CHANNEL_CREATE", leg)
        caller_gone = originator is not None and not originator.up and tech != "loopback"
        behaviour, failure, name = (None, None, None) if caller_gone else \
            self.resolve(tech, rest, leg)
        leg.name = name or leg.name
        if originator is not None and not originator.up and tech != "loopback":
            # The caller hung up while this leg was being set up (its thread descheduled on
            # a loaded machine): switch_ivr_originate checks its caller before it sends the
            # INVITE, so the far end never hears of it.
            failure = "ORIGINATOR_CANCEL"
        if failure == "ORIGINATOR_CANCEL" or failure is not None and (
                tech in ("error", "user") or failure in (
                    "INVALID_GATEWAY", "GATEWAY_DOWN", "INVALID_PROFILE",
                    "CHAN_NOT_IMPLEMENTED")):
            # The endpoint refused before any session existed (error/, an unknown or
            # unregistered user, a bad gateway): no channel, no events, just the cause.
            with leg.lock:
                leg.hangup_cause = failure
                leg.times["hangup"] = now_us()
                leg.state = "CS_DESTROY"
                leg.done.set()
            sw.forget_channel(leg)
            return leg
        if tech != "loopback":
            sw.fire("CHANNEL_CREATE", leg)
        if failure is not None:
            sw.scheduler.call_later(0.0, lambda: sw.hangup(leg, failure, side="remote"))
            return leg
        if behaviour is None:  # loopback: the b-side drives this leg
            return leg
        leg.behaviour = behaviour
        self.drive_leg(leg, behaviour)
        return leg

    def resolve(self, tech: str, rest: str, leg: Channel) \
            -> tuple[Behaviour | None, str | None, str | None]:
        """(behaviour, failure cause, channel name) for ``tech/rest``."""
        sw = self.switch
        if tech == "error":
            return None, rest or "NORMAL_UNSPECIFIED", None
        if tech == "user":
            user, _, domain = rest.partition("@")
            domain = domain or leg.get("domain_name") or sw.globals["domain"]
            entry = sw.registrar.directory_lookup(user, domain, "user_call",
                                                  {"as_channel": "true"})
            if entry is None:
                return None, "SUBSCRIBER_ABSENT", None
            leg.variables.update({"dialed_user": entry.id, "dialed_domain": domain,
                                  **entry.variables})
            # As mod_dptools' user endpoint does (it expands the user's dial-string on the
            # calling channel): the channel that bridges to user/<ext> gets dialed_user /
            # dialed_domain too (observed on 1.10.12: a trunk caller bridged to user/1001).
            origin = sw.channels.get(leg.originator) if leg.originator else None
            if origin is not None:
                origin.variables.update({"dialed_user": entry.id, "dialed_domain": domain})
            regs = sw.registrar.registered(entry.id, domain)
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
            phone = sw.registrar.contact_at(user, host_only)
            if phone is not None:
                return phone.behaviour, None, None
            peer = self.sip_peers.get(host) or self.sip_peers.get(host_only)
            if peer is not None:
                return peer, None, None
            if profile not in sw.profiles:
                return None, "INVALID_PROFILE", None  # observed: originate answers that
            # SIP goes to host:port, 5060 when the dial string names no port
            listener = SIP_NETWORK.get(f"{host_only}:{port or 5060}")
            if listener is not None and listener[0] is not sw and listener[0].running:
                # Another fake FreeSWITCH node: the INVITE lands there as an inbound call on
                # the profile listening at that address, in that profile's context.
                remote, remote_profile = listener
                self.peer_call(leg, remote, user, remote_profile, sw.profiles[profile])
                return None, None, f"sofia/{profile}/{user}@{host}"
            return None, "DESTINATION_OUT_OF_ORDER", None
        if tech == "loopback":
            parts = rest.split("/")
            dest = parts[0]
            context = parts[1] if len(parts) > 1 and parts[1] else leg.context
            self.loopback(leg, dest, context)
            return None, None, f"loopback/{dest}-a"
        return None, "CHAN_NOT_IMPLEMENTED", None

    def drive_leg(self, leg: Channel, b: Behaviour) -> None:
        """Schedule what the far end does: 180/183, then answer or refuse, then talk."""
        sw = self.switch

        def progress() -> None:
            if leg.up and not leg.answered:
                (sw.pre_answer if b.early_media else sw.ring_ready)(leg)
                wake_originate(leg)

        def answer() -> None:
            if leg.up and not leg.answered:
                sw.answer(leg)
                wake_originate(leg)
                if b.hangup_after_ms is not None:
                    sw.scheduler.call_later(sw.scaled(b.hangup_after_ms), lambda: sw.hangup(
                        leg, "NORMAL_CLEARING", side="remote"))
                for at_ms, digits in b.dtmf:
                    sw.scheduler.call_later(sw.scaled(at_ms),
                                            partial(sw.calls.send_dtmf, leg, digits))

        if b.fail_with:
            sw.scheduler.call_later(sw.scaled(b.ring_after_ms), progress)
            sw.scheduler.call_later(sw.scaled(b.fail_after_ms), lambda: sw.hangup(
                leg, b.fail_with or "CALL_REJECTED", side="remote"))
            return
        sw.scheduler.call_later(sw.scaled(b.ring_after_ms), progress)
        if (leg.get("sip_auto_answer") or "").lower() == "true":
            # the phone honours Call-Info answer-after=0: it answers once it has rung
            sw.scheduler.call_later(sw.scaled(b.ring_after_ms) + 0.001, answer)
        elif b.answer_after_ms is not None:
            sw.scheduler.call_later(sw.scaled(b.answer_after_ms), answer)
        if b.hangup_after_bridge_ms is not None:
            sw.calls.when(leg, "bridged", b.hangup_after_bridge_ms,
                          lambda: sw.hangup(leg, "NORMAL_CLEARING", side="remote"))

    def loopback(self, a_leg: Channel, dest: str, context: str) -> None:
        """loopback/<dest>: the returned a-leg mirrors a new inbound b-leg that runs the
        dialplan for ``dest``; answer and hangup cross over between them."""
        sw = self.switch
        b_leg = sw.new_channel(
            name=f"loopback/{dest}-b", direction="inbound", caller_id_name=a_leg.caller_id_name,
            caller_id_number=a_leg.caller_id_number, destination_number=dest, context=context,
            source="mod_loopback")
        a_leg.name = f"loopback/{dest}-a"
        a_leg.set("other_loopback_leg_uuid", b_leg.uuid)
        b_leg.set("other_loopback_leg_uuid", a_leg.uuid)
        b_leg.set("_loopback_b", "true")
        for name, value in a_leg.variables.items():
            if not name.startswith("_"):
                b_leg.variables.setdefault(name, value)
        b_leg.variables["direction"] = "inbound"

        def mirror() -> None:
            if b_leg.answered and not a_leg.answered and a_leg.up:
                sw.answer(a_leg)
                wake_originate(a_leg)
            if not b_leg.up and a_leg.up:
                sw.hangup(a_leg, b_leg.hangup_cause or "NORMAL_CLEARING", side="remote")
                return
            if not a_leg.up and b_leg.up:
                sw.hangup(b_leg, a_leg.hangup_cause or "NORMAL_CLEARING", side="remote")
                return
            if a_leg.up or b_leg.up:
                sw.scheduler.call_later(0.01, mirror)

        sw.fire("CHANNEL_CREATE", b_leg)
        sw.start_session(b_leg)
        sw.scheduler.call_later(0.01, mirror)

    def peer_call(self, out_leg: Channel, remote: Switch, dest: str,
                  remote_profile: str = "internal", local: SipProfile | None = None) -> None:
        """``sofia/<profile>/<dest>@<ip:port of another fake node>``: the INVITE arrives on
        ``remote``'s profile listening there as an inbound call to ``dest``, running that
        profile's context (external: "public"). It is not authenticated, so it has no
        ``domain_name`` (observed on 1.10.12 for a call on the external profile); the leg's
        ``sip_h_*`` variables arrive as SIP headers, i.e. the same variables. Its ringing,
        answer and hangup come back on ``out_leg``, and hanging ``out_leg`` up cancels or
        ends it."""
        sw = self.switch
        source = local.ip if local is not None else sw.ipv4
        inbound = remote.place_call(out_leg.caller_id_number, dest,
                                    caller_name=out_leg.caller_id_name, network_addr=source,
                                    behaviour=Behaviour(answer_after_ms=None),
                                    context=remote.profiles[remote_profile].context,
                                    profile=remote_profile, domain=source, authenticated=False,
                                    variables={"sip_from_host": source,
                                               "sip_network_ip": source,
                                               # custom SIP headers travel with the INVITE
                                               **{k: v for k, v in out_leg.variables.items()
                                                  if k.startswith("sip_h_")}})
        out_leg.set("sip_peer_uuid", inbound.uuid)

        def cancel_across() -> None:
            # Hanging out_leg up sends its CANCEL / BYE at once: the other node hears it now,
            # not on the next mirror tick of this node's (possibly busy) timer thread.
            if inbound.up:
                remote.hangup(inbound, out_leg.hangup_cause or "NORMAL_CLEARING", side="remote")

        out_leg.hangup_hooks.append(cancel_across)

        def mirror() -> None:
            if not out_leg.up:
                if inbound.up:
                    remote.hangup(inbound, out_leg.hangup_cause or "NORMAL_CLEARING",
                                  side="remote")
                return
            if not inbound.up:
                sw.hangup(out_leg, inbound.hangup_cause or "NORMAL_CLEARING", side="remote")
                wake_originate(out_leg)
                return
            if inbound.answered and not out_leg.answered:
                sw.answer(out_leg)
                wake_originate(out_leg)
            elif "progress_media" in inbound.times and "progress_media" not in out_leg.times:
                sw.pre_answer(out_leg)
                wake_originate(out_leg)
            elif "progress" in inbound.times and "progress" not in out_leg.times:
                sw.ring_ready(out_leg)
                wake_originate(out_leg)
            sw.scheduler.call_later(0.005, mirror)

        sw.scheduler.call_later(0.005, mirror)
