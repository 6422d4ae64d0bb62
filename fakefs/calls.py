"""Calls on one fake node: inbound calls arriving (INVITE), originate (a dial string's legs
rung together or group after group, with the ringback the originator hears), the bridge
(two channels exchanging media until one hangs up or leaves), uuid_bridge's side of it, and
transfer. Where a leg goes and what its far end does is :mod:`fakefs.endpoints`.
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from fakefs.causes import CONTINUE_ANYWAY, dialstatus, q850
from fakefs.channel import Behaviour, Channel, Interrupt, now_us
from fakefs.dialplan import Action, parse_inline
from fakefs.dialstring import DialStringError, Leg
from fakefs.dialstring import parse as parse_dialstring

if TYPE_CHECKING:
    from fakefs.switch import Switch


class Attempt:
    """The legs of one originate/bridge group, and a condition the originator waits on."""

    def __init__(self, originator: Channel | None = None) -> None:
        self.cond = threading.Condition()
        self.legs: list[Channel] = []
        self.originator = originator

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()


# Originates under way, by the id their legs carry in ``_attempt_id``; process-wide, as a
# leg's far end may be a channel of another fake node.
_ATTEMPTS: dict[str, Attempt] = {}


def wake_originate(leg: Channel) -> None:
    """Wake the originate waiting on ``leg`` (it rang, answered or hung up), if any."""
    attempt = _ATTEMPTS.get(leg.variables.get("_attempt_id") or "")
    if attempt is not None:
        attempt.notify()


def cancel_originates(originator: Channel) -> None:
    """``originator`` hung up while legs it originates still ring: they are cancelled now
    (switch_ivr_originate checks its caller every few ms and hangs its legs up with
    ORIGINATOR_CANCEL), not when its thread next looks (50 ms, or much later on a loaded
    machine: a phone kept ringing seconds after the call it rang for was gone)."""
    for attempt in list(_ATTEMPTS.values()):
        if attempt.originator is originator:
            for leg in list(attempt.legs):
                if leg.up and not leg.answered:
                    leg.switch.hangup(leg, "ORIGINATOR_CANCEL")
            attempt.notify()


class Calls:
    """Call control of one node: what the dialplan's bridge/transfer, the api's originate /
    uuid_bridge / uuid_transfer and the tests' ``place_call`` do to channels."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch

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
        sw = self.switch
        domain = domain or sw.domain
        if authenticated is None:
            authenticated = profile == "internal" and bool(
                sw.registrar.registered(caller, domain))
        channel = sw.new_channel(
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
        sw.fire("CHANNEL_CREATE", channel)
        self.arm_caller(channel)
        sw.start_session(channel)
        return channel

    def arm_caller(self, channel: Channel) -> None:
        sw = self.switch
        b = channel.behaviour
        if b.abandon_after_ms is not None:
            def abandon() -> None:
                if channel.up and not channel.peer:
                    sw.hangup(channel, "NORMAL_CLEARING", side="remote")
            sw.scheduler.call_later(sw.scaled(b.abandon_after_ms), abandon)
        if b.hangup_after_ms is not None:
            self.when(channel, "answered", b.hangup_after_ms, lambda: sw.hangup(
                channel, "NORMAL_CLEARING", side="remote"))
        if b.hangup_after_bridge_ms is not None:
            self.when(channel, "bridged", b.hangup_after_bridge_ms, lambda: sw.hangup(
                channel, "NORMAL_CLEARING", side="remote"))
        for at_ms, digits in b.dtmf:
            self.when(channel, "answered", at_ms, partial(self.send_dtmf, channel, digits))

    def when(self, channel: Channel, time_key: str, after_ms: int,
             fn: Callable[[], None]) -> None:
        """Run ``fn`` ``after_ms`` after ``channel.times[time_key]`` is set (polling the
        timestamp from the timer thread, so no thread waits per channel)."""
        sw = self.switch
        def check() -> None:
            if not channel.up:
                return
            if time_key in channel.times:
                def fire_if_up() -> None:
                    if channel.up:
                        fn()
                sw.scheduler.call_later(sw.scaled(after_ms), fire_if_up)
            else:
                sw.scheduler.call_later(0.01, check)
        sw.scheduler.call_later(0.0, check)

    def send_dtmf(self, channel: Channel, digits: str, duration_ms: int = 100) -> None:
        """The far end presses keys: DTMF events, and the digits queued for the channel's
        application (and for whoever eavesdrops on it with DTMF enabled)."""
        for digit in digits:
            if not channel.up:
                return
            with channel.cond:
                channel.dtmf.append(digit)
                channel.cond.notify_all()
            self.switch.fire("DTMF", channel, headers={"DTMF-Digit": digit,
                                                       "DTMF-Duration": str(duration_ms * 8),
                                                       "DTMF-Source": "RTP"},
                             with_variables=False)

    def originate(self, dialstring: str, originator: Channel | None = None,
                  extra_vars: dict[str, str] | None = None,
                  timeout_s: float | None = None) -> tuple[Channel | None, str]:
        """Ring the legs of a dial string (``,`` together, ``|`` one group after another)
        until one answers: (answered leg, "SUCCESS") or (None, failure cause)."""
        try:
            parsed = parse_dialstring(dialstring)
        except DialStringError as exc:
            self.switch.console_log("ERR", f"originate: {exc}")
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
            leg, cause = self.originate_group(group, base_vars, originator, timeout_s)
            if leg is not None:
                return leg, "SUCCESS"
            if cause == "ORIGINATOR_CANCEL" or (originator is not None and not originator.up):
                return None, "ORIGINATOR_CANCEL"
        return None, cause

    def originate_group(self, group: list[Leg], base_vars: dict[str, str],
                        originator: Channel | None, timeout_s: float | None) \
            -> tuple[Channel | None, str]:
        sw = self.switch
        attempt = Attempt(originator)
        attempt_id = str(uuidlib.uuid4())
        _ATTEMPTS[attempt_id] = attempt

        def get(name: str) -> str | None:
            return base_vars.get(name) or (originator.get(name) if originator else None)

        timeout = timeout_s if timeout_s is not None else float(get("originate_timeout") or 60)
        ignore_early = (get("ignore_early_media") or "").lower() == "true"
        ringback = self.ringback(originator) if originator is not None else None
        try:
            for leg_spec in group:
                leg_vars = {**base_vars, **leg_spec.variables, "_attempt_id": attempt_id}
                leg = sw.endpoints.create_leg(leg_spec.endpoint, leg_vars, originator)
                attempt.legs.append(leg)
                # switch_ivr_originate gives origination_uuid to the first leg it creates only
                base_vars.pop("origination_uuid", None)
            # FreeSWITCH's originate checks its timeout on a whole-second timer: a 5 s timeout
            # fires after 4.0-4.6 s (FREESWITCH.md, observed).
            wall = sw.scaled(1000 * max(0.0, timeout - 1 + sw.random.uniform(0.0, 0.6)))
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
                        self.relay_progress(originator, attempt.legs, ignore_early)
                        if ringback:
                            self.play_ringback(originator, attempt.legs, ignore_early,
                                               ringback)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    attempt.cond.wait(min(remaining, 0.05))
            if originator is not None and not originator.up:
                for leg in attempt.legs:
                    sw.hangup(leg, "ORIGINATOR_CANCEL")
                return None, "ORIGINATOR_CANCEL"
            if winner is not None:
                for leg in attempt.legs:
                    if leg is not winner:
                        sw.hangup(leg, "LOSE_RACE")
                winner.variables.pop("_attempt_id", None)
                return winner, "SUCCESS"
            live = [c for c in attempt.legs if c.up]
            for leg in live:
                sw.hangup(leg, "NO_ANSWER")
            if live:
                return None, "NO_ANSWER"
            causes = [c.hangup_cause for c in attempt.legs if c.hangup_cause]
            return None, causes[-1] if causes else "NORMAL_UNSPECIFIED"
        finally:
            _ATTEMPTS.pop(attempt_id, None)
            if originator is not None:
                originator.ringback = None  # the ringback ends with the originate

    def relay_progress(self, originator: Channel, legs: list[Channel],
                       ignore_early: bool) -> None:
        sw = self.switch
        if originator.answered:
            return
        if not ignore_early and any("progress_media" in c.times for c in legs):
            sw.pre_answer(originator)
        elif any("progress" in c.times for c in legs):
            sw.ring_ready(originator)

    def ringback(self, originator: Channel) -> str | None:
        """What the originator hears while the legs ring (switch_ivr_originate): an answered
        channel's ``transfer_ringback`` ("a bridge after an answer is a transfer"), else its
        ``ringback``; expanded. None: it hears nothing generated."""
        value = originator.get("transfer_ringback") if originator.answered else None
        value = value or originator.get("ringback")
        return self.switch.expand(originator, value) if value else None

    def play_ringback(self, originator: Channel, legs: list[Channel], ignore_early: bool,
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
                self.switch.pre_answer(originator)
            originator.ringback = ringback

    def bridge(self, a: Channel, dialstring: str) -> None:
        """The ``bridge`` application (FREESWITCH.md's observed variables and hangups)."""
        sw = self.switch
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
                sw.hangup(a, cause)
            return
        a.set("originate_disposition", "SUCCESS")
        a.set("DIALSTATUS", "SUCCESS")
        if not a.up:
            sw.hangup(leg, "ORIGINATOR_CANCEL")
            return
        sw.answer(a)
        self.run_bridge(a, leg)

    def run_bridge(self, a: Channel, b: Channel) -> None:
        """A and B exchange media until either hangs up or leaves (transfer); A's thread."""
        sw = self.switch
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
        sw.fire("CHANNEL_BRIDGE", a, headers={"Bridge-A-Unique-ID": a.uuid,
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
        sw.fire("CHANNEL_UNBRIDGE", a, headers={"Bridge-A-Unique-ID": a.uuid,
                                                "Bridge-B-Unique-ID": b.uuid,
                                                "Other-Leg-Unique-ID": b.uuid})
        if not b.up:
            a.set("bridge_hangup_cause", b.hangup_cause)
        elif not a.up and b.session_thread is None:
            # A hung up as the bridge began (before the two were peers, so its hangup could
            # not take B with it): the bridge ends B, as FreeSWITCH's does
            sw.hangup(b, "NORMAL_CLEARING" if b.answered else "ORIGINATOR_CANCEL")
        if interrupt is not None:
            if b.up and b.session_thread is None:
                sw.hangup(b, "NORMAL_CLEARING")
            raise interrupt
        if a.up and b.up and b.session_thread is None and b.variables.get("_transfer_pending"):
            return
        if a.up and (a.get("hangup_after_bridge") or "").lower() == "true" and not b.up:
            sw.hangup(a, b.hangup_cause or "NORMAL_CLEARING")  # the peer's cause, as FS

    def exchange_media(self, channel: Channel, other_uuid: str) -> None:
        """uuid_bridge put this channel in a bridge it did not start: wait while it lasts, then
        hang up like FreeSWITCH does (unless park_after_bridge)."""
        sw = self.switch
        other = sw.channels.get(other_uuid)
        if other is None:
            return
        sw.set_state(channel, "CS_EXCHANGE_MEDIA")
        # The other side's thread starts the bridge: first wait for it (or for its end) ...
        channel.wait(None, until=lambda: channel.peer == other_uuid or not other.up
                     or other.peer not in (None, channel.uuid))
        # ... then while it lasts.
        channel.wait(None, until=lambda: channel.peer != other_uuid)
        if channel.up and (channel.get("park_after_bridge") or "").lower() != "true" \
                and not channel.variables.get("_transfer_pending"):
            sw.hangup(channel, other.hangup_cause or "NORMAL_CLEARING")

    def transfer(self, channel: Channel, dest: str, dialplan: str = "XML",
                 context: str = "") -> None:
        """uuid_transfer / transfer app: the channel leaves what it is doing (a bridge ends)
        and runs the dialplan again at ``dest``."""
        sw = self.switch
        detail = "\x1f".join([dest, dialplan or "XML", context or channel.context])
        if channel.session_thread is None or channel.done.is_set():
            # An originated leg has no dialplan thread of its own: the transfer gives it one.
            peer = sw.channels.get(channel.peer) if channel.peer else None
            channel.peer = None
            if peer is not None:
                peer.peer = None
                peer.wake()
            channel.variables["_transfer_pending"] = detail
            apps = self.apply_transfer(channel, channel.variables.pop("_transfer_pending"))
            sw.start_session(channel, apps)
            return
        # switch_ivr_session_transfer gives the channel its new caller profile at once, in the
        # caller's thread: an app still running (a Python handler whose bridge the transfer
        # ends) reads the new destination_number; the dialplan runs there once it returns.
        with channel.lock:
            self.transfer_profile(channel, detail)
            channel.variables["_transfer_profiled"] = detail
        channel.wake(Interrupt("transfer", detail))

    def apply_transfer(self, channel: Channel, transfer: str) -> list[Action] | None:
        dest, dialplan, context = (transfer.split("\x1f") + ["", ""])[:3]
        if channel.variables.pop("_transfer_profiled", None) != transfer:
            self.transfer_profile(channel, transfer)
        return parse_inline(dest) if dialplan == "inline" else None

    def transfer_profile(self, channel: Channel, transfer: str) -> None:
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
