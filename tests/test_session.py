"""fsapps.switch.session (the one "the caller has gone" guard) and how the entry modules'
run_app ends an app that raised it: quietly, where any other exception is logged and the
caller hung up."""

from __future__ import annotations

import logging

import pytest

from fsapps.errors import CallerGone
from fsapps.switch.entry import run_app
from fsapps.switch.session import ensure_up, hang_up


class Channel:
    """Just what the guard reads and does: ready() and hangup()."""

    def __init__(self, up: bool) -> None:
        self.up = up
        self.hangups: list[str] = []

    def ready(self) -> bool:
        return self.up

    def hangup(self, cause: str) -> None:
        self.hangups.append(cause)
        self.up = False


def test_ensure_up_passes_while_the_caller_is_there_and_raises_once_gone() -> None:
    ensure_up(Channel(up=True))
    with pytest.raises(CallerGone):
        ensure_up(Channel(up=False))


def test_hang_up_only_a_channel_that_is_still_up() -> None:
    up, gone = Channel(up=True), Channel(up=False)
    hang_up(up, "NORMAL_CLEARING")
    hang_up(gone, "NORMAL_CLEARING")
    assert up.hangups == ["NORMAL_CLEARING"] and gone.hangups == []


def test_run_app_ends_quietly_when_the_caller_has_gone(caplog: pytest.LogCaptureFixture) -> None:
    channel = Channel(up=True)

    def app(session: Channel, args: str) -> None:
        session.up = False  # the caller hung up meanwhile
        ensure_up(session)

    with caplog.at_level(logging.DEBUG, logger="fsapps"):
        run_app("someapp", channel, "x", app)
    assert caplog.records == [] and channel.hangups == []


def test_run_app_logs_any_other_failure_and_hangs_up(caplog: pytest.LogCaptureFixture) -> None:
    channel = Channel(up=True)

    def app(session: Channel, args: str) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.DEBUG, logger="fsapps"):
        run_app("someapp", channel, "x", app)
    assert [r.getMessage() for r in caplog.records] == ["someapp 'x': RuntimeError: boom"]
    assert channel.hangups == ["NORMAL_TEMPORARY_FAILURE"]
