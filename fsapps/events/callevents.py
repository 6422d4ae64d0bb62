"""Switch events → seed 001 ``EVENT_*`` call events (pure mapping, no I/O)."""

from __future__ import annotations

from collections.abc import Callable

from fsapps.channelvars import DOMAIN_VAR, event_header
from fsapps.events.pubsub import EventName

_BY_EVENT = {
    "CHANNEL_PROGRESS": EventName.EVNET_ALERT,
    "CHANNEL_PROGRESS_MEDIA": EventName.EVENT_RING,
    "CHANNEL_ANSWER": EventName.EVENT_ANSWER,
    "CHANNEL_HANGUP_COMPLETE": EventName.EVENT_HANGUP,
    "DTMF": EventName.EVENT_DTMF,
    "PLAYBACK_START": EventName.EVENT_PLAYRING,
    "PLAYBACK_STOP": EventName.EVENT_PLAYSTOP,
    "CHANNEL_PARK": EventName.EVENT_PARK,
    "CHANNEL_UNPARK": EventName.EVENT_UNPARK,
    "CHANNEL_HOLD": EventName.EVENT_HOLD,
    "CHANNEL_UNHOLD": EventName.EVENT_UNHOLD,
    "CHANNEL_BRIDGE": EventName.EVENT_BRIDGED,
    "CHANNEL_DESTROY": EventName.EVENT_DESTORY,
}


def call_event(header: Callable[[str], str | None]) -> tuple[EventName, dict[str, str]] | None:
    """The seed's call event for a switch event read through ``header`` (``getHeader``), or
    None for events the seed does not report."""
    name = header("Event-Name") or ""
    direction = header("Call-Direction") or ""
    if name == "CHANNEL_CREATE":
        evt = EventName.EVENT_CALLIN if direction == "inbound" else EventName.EVENT_CALLOUT
    else:
        found = _BY_EVENT.get(name)
        if found is None:
            return None
        evt = found

    def h(key: str) -> str:
        return header(key) or ""

    dest = h("Caller-Destination-Number")
    return evt, {
        "callin_number": h("Caller-Caller-ID-Number"),
        "dest_number": dest,
        "domain": h("variable_domain_name") or h(event_header(DOMAIN_VAR)),
        "dtmf": h("DTMF-Digit"),
        "gateway": h("variable_sip_gateway_name"),
        "originate_number": h("Caller-Orig-Caller-ID-Number"),
        "direction": direction,
        "auuid": h("Unique-ID"),
        "buuid": h("Other-Leg-Unique-ID") or h("variable_signal_bond"),
        "origination_dest_number": h("variable_sip_req_user") or dest,
    }
