"""``runtime(args)`` — the per-node startup script named in python.conf.xml.

It runs in its own thread for the life of the switch. For now it announces the node and
drains the switch's events so the consumer queue never fills; later issues add the event
publishers, the node command queue and the agent-state reconciler.
"""

from __future__ import annotations

from fsapps.fslog import log


def runtime(args: str = "") -> None:
    import freeswitch

    node = freeswitch.getGlobalVariable("switchname") or "?"
    log("NOTICE", f"runtime started on node {node}")
    consumer = freeswitch.EventConsumer("all")
    try:
        while freeswitch.running():
            consumer.pop(1, 500)
    except SystemExit:
        log("NOTICE", f"runtime stopping on node {node}")
        raise
