"""Hangup hooks and ``Session.hangupCause()``."""

from fsapps_testapps import state


def handler(session, args):
    def on_hangup(hooked, what):
        state.record("hook", what=what, cause=hooked.getVariable("hangup_cause"),
                     api_cause=hooked.hangupCause(), same=hooked is session)

    session.setHangupHook(on_hangup)
    session.answer()
    state.record("before", api_cause=session.hangupCause(),
                 cause=session.getVariable("hangup_cause"))
    while session.ready():
        session.sleep(100)
    state.record("after", api_cause=session.hangupCause())


def local(session, args):
    session.answer()
    session.hangup(args or "USER_BUSY")
    state.record("local", api_cause=session.hangupCause(), ready=session.ready())
