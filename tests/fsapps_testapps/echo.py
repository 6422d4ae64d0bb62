"""``python fsapps_testapps.echo <args>``: records what mod_python3 handed to the handler."""

from fsapps_testapps import state


def handler(session, args):
    state.record("echo", session=session, args=args, uuid=session.get_uuid())


def other(session, args):
    state.record("other", session=session, args=args)
