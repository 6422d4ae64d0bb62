"""``pyrun fsapps_testapps.rt`` / startup-script: a runtime loop that only ends on SystemExit."""

import threading

import freeswitch

from fsapps_testapps import state


def runtime(args):
    state.record("runtime_start", args=args, thread=threading.current_thread().name,
                 switchname=freeswitch.API().executeString("switchname"))
    consumer = freeswitch.EventConsumer("all")
    try:
        while True:
            event = consumer.pop(1, 50)
            if event is not None:
                state.record("runtime_event", name=event.getHeader("Event-Name"))
    except SystemExit:
        state.record("runtime_exit", args=args)
        raise
