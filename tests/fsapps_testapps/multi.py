"""Which switch does ``import freeswitch`` talk to inside a handler?"""

import freeswitch

from fsapps_testapps import state


def handler(session, args):
    state.record("multi", switchname=freeswitch.API().executeString("switchname"),
                 uuid=session.get_uuid(), args=args)
