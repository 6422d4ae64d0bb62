"""Every ``fsapps_*`` channel variable, ``X-FSAPPS-*`` SIP header and relay destination that
fsapps sets on or reads from a FreeSWITCH channel: the names the switch apps, the runtime's
event consumers and the CTI server's node commands agree on, declared once.

The dialplan XML (``dialplan/*.xml``) spells them literally; ``tests/test_channelvars.py`` checks
that every ``fsapps_*`` name it sets or reads is declared here. In an event a channel variable
is the header ``variable_<name>`` (:func:`event_header`).
"""

from __future__ import annotations

# ---------------------------------------------------------------- every leg fsapps rings ---
# The call's domain, on every leg fsapps originates (queue offers, outbound and direct calls,
# CTI calls): the runtime and the CSTA feed read the agent's domain from it.
DOMAIN_VAR = "fsapps_domain"

# ---------------------------------------------- a queue offer's leg (and outbound / direct) ---
# The runtime turns the answer of a leg carrying these into the agent's ``talking`` and the
# agent-facing ``answered`` event (fsapps.switch.acd, fsapps.switch.outbound).
ACD_AGENT_VAR = "fsapps_acd_agent"      # the agent's extension
ACD_CALL_VAR = "fsapps_acd_call"        # the caller's uuid: the reservation's call
ACD_GROUP_VAR = "fsapps_acd_group"      # the group the call came through
ACD_LEVEL_VAR = "fsapps_acd_level"      # normal / vip
ACD_ARRIVED_VAR = "fsapps_acd_arrived"  # when the call arrived (epoch ms)
ACD_NUMBER_VAR = "fsapps_acd_number"    # the far party of an outbound / direct call
# On a waiting caller's channel: the agent that reserved itself for the call, set by the node's
# runtime as it breaks the hold music (the handler takes it and clears it; a PLAYBACK_START
# still carrying it is broken again: music that began after the break).
ACD_OFFER_VAR = "fsapps_acd_offer"
# On the agent's leg of a callback (fsapps.switch.callback): the callback's id; and "true" once
# the agent answered and the handler took over (a leg ending without it: the agent missed it).
CALLBACK_VAR = "fsapps_callback"
CALLBACK_ANSWERED_VAR = "fsapps_callback_answered"

# ------------------------------------------------------------------------------- the CDR ---
# Set on the a-leg by an app that writes the call's CDR itself (its name): the runtime then
# writes no generic CDR for it, so every call has exactly one.
OWN_CDR_VAR = "fsapps_cdr_by"
# The app's CDR drafts on the caller's channel (a JSON list of Draft, in the order the apps
# ran); the runtime completes them from the channel's CHANNEL_HANGUP_COMPLETE.
DRAFT_VAR = "fsapps_cdr_draft"
# A dial-string variable on every leg an app rings for its call (value: the app): the app's CDR
# has that leg as an attempt; a leg the caller reaches without it came after a transfer.
LEG_VAR = "fsapps_cdr_leg"
# The call's recording: set it in the dialplan, or the runtime sets it from RECORD_START.
RECORD_FILE_VAR = "fsapps_record_file"

# ----------------------------------------------------- set in the dialplan for an app ---
# nwayacd: the skills the call requires (``english:2,billing:3``, most important first;
# fsapps.domain.skills). Malformed: logged and ignored, the call routes without skills.
SKILLS_VAR = "fsapps_skills"
# nwaycallout: the outbound caller id instead of the group number.
CALLER_ID_VAR = "fsapps_callout_caller_id"
# nwaycallout / nway_bridge: seconds the far end / the agent may ring.
RING_TIMEOUT_VAR = "fsapps_ring_timeout"
# cti_bridge: more channel variables to send the router (comma-separated names).
CTI_REQUEST_VARS_VAR = "fsapps_cti_request_vars"
# The diag extension keeps the number dialled (shown in the call's events; fsapps reads it not).
DIALLED_VAR = "fsapps_dialled"

# -------------------------------------------------------------- cti_bridge's B legs ---
# A B leg of a cti_bridge call with notifications on: the runtime notifies the router of its
# progress (fsapps.switch.httproute.leg_event).
CTI_NOTIFY_URL_VAR = "fsapps_cti_notify_url"
CTI_UUID_VAR = "fsapps_cti_uuid"
CTI_CONNECT_MS_VAR = "fsapps_cti_connect_ms"
CTI_RESPONSE_MS_VAR = "fsapps_cti_response_ms"

# --------------------------------------------------------- legs the CTI server originates ---
CSTA_CALL_VAR = "fsapps_csta_call"      # the CSTA callId (the a-leg's uuid)
CSTA_ROLE_VAR = "fsapps_csta_role"      # "initiator" on the calling device's own leg
CSTA_DEVICE_VAR = "fsapps_csta_device"  # the extension whose device the leg is
CSTA_CALLED_VAR = "fsapps_csta_called"  # the number a MakeCall called
# Supervision legs: whom a three-way call / an eavesdrop joins.
THREEWAY_WITH_VAR = "fsapps_threeway_with"
EAVESDROP_VAR = "fsapps_eavesdrop"

# ------------------------------------------------------------------- the diag app ---
DIAG_VAR = "fsapps_diag"                # "ok": the self-test ran
DIAG_VERSION_VAR = "fsapps_diag_version"
DIAG_CHECKS_VAR = "fsapps_diag_checks"  # "ok" or "failed: <check>, ..."
DIAG_REPORT_VAR = "fsapps_diag_report"  # the check lines joined by " | "
DIAG_DIGITS_VAR = "fsapps_diag_digits"  # the keys the caller pressed

# ----------------------------------------------------------- between nodes (the relay) ---
# Another node rings one of this node's agents by calling fsapps_agent_<ext> on the relay
# profile (dialplan/10_fsapps_acd.xml); the headers travel as sip_h_ channel variables.
RELAY_PREFIX = "fsapps_agent_"
RELAY_DOMAIN_HEADER = "sip_h_X-FSAPPS-Domain"      # the agent's domain
RING_TIMEOUT_HEADER = "sip_h_X-FSAPPS-Ring-Timeout"  # the far node rings no longer than this
CALL_HEADER = "sip_h_X-FSAPPS-Call"                # the queue call's id, for the CSTA feed


def event_header(variable: str) -> str:
    """The header a channel variable is in an event: ``variable_<name>``."""
    return f"variable_{variable}"
