"""``python fsapps_testapps.hangupvars self|caller``: answers, then hangs up itself (``self``)
or waits for the caller to (``caller``), and records the hangup-state variables it can read
then, and again 0.3 s later (FreeSWITCH sets them only after the handler returns; mod_sofia
sets sip_hangup_disposition itself just after the far end's BYE hung the channel up)."""

import time

from fsapps_testapps import state

VARIABLES = ("hangup_cause", "hangup_cause_q850", "start_uepoch", "answer_uepoch",
             "answer_epoch", "end_uepoch", "duration", "billsec", "sip_hangup_disposition")


def handler(session, args):
    session.answer()
    if args == "self":
        session.sleep(200)
        session.hangup("NORMAL_CLEARING")
    else:
        while session.ready():
            session.sleep(50)
    seen = {name: session.getVariable(name) for name in VARIABLES}
    ready = session.ready()
    # a moment later, still in the handler: what mod_sofia sets itself as the far end's BYE
    # hangs the channel up (sip_hangup_disposition=recv_bye) is there by now, not the rest
    time.sleep(0.3)
    later = {name: session.getVariable(name) for name in VARIABLES}
    state.record("hangupvars", how=args, ready=ready, later=later, **seen)
