"""``python fsapps_testapps.bridge <dialstring>``: bridges and records what the handler sees."""

import time

from fsapps_testapps import state

VARIABLES = ("originate_disposition", "bridge_hangup_cause", "last_bridge_hangup_cause",
             "DIALSTATUS", "hangup_cause", "bridge_uuid", "last_bridge_to", "signal_bond",
             "bridge_channel")


def handler(session, args):
    started = time.monotonic()
    session.execute("bridge", args)
    elapsed = time.monotonic() - started
    seen = {name: session.getVariable(name) for name in VARIABLES}
    state.record("bridge", elapsed=elapsed, api_cause=session.hangupCause(),
                 ready=session.ready(), uuid=session.get_uuid(), **seen)
