"""``python fsapps_testapps.hangupvars self|caller``: answers, then hangs up itself (``self``)
or waits for the caller to (``caller``), and records the hangup-state variables it can read
then (FreeSWITCH sets them only after the handler returns)."""

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
    state.record("hangupvars", how=args, ready=session.ready(),
                 **{name: session.getVariable(name) for name in VARIABLES})
