"""Handlers that block: ``freeswitch.msleep`` (holds the GIL) or ``session.sleep`` (releases it)."""

import time

import freeswitch

from fsapps_testapps import state


def msleep(session, args):
    state.config["t_start"] = time.monotonic()
    state.flag("blocking").set()
    freeswitch.msleep(int(args))
    state.config["t_end"] = time.monotonic()


def ssleep(session, args):
    session.answer()
    state.config["t_start"] = time.monotonic()
    state.flag("blocking").set()
    session.sleep(int(args))
    state.config["t_end"] = time.monotonic()
