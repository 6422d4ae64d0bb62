"""Counts how often its module body runs (import + reload) and how often it is called."""

from fsapps_testapps import state

state.count("counter_body")


def handler(session, args):
    state.count("counter_calls")


def fsapi(session, stream, env, args):
    state.count("counter_calls")
    stream.write(f"body={state.counters['counter_body']}")
