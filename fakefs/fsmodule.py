"""The ``freeswitch`` module that mod_python3 gives Python, for the fake switch.

:func:`install` registers it as ``sys.modules["freeswitch"]`` so fsapps imports it exactly as
inside FreeSWITCH. Every call goes to the switch bound to the calling thread.

GIL fidelity: calls that HOLD the GIL in the real switch (``msleep``, ``API().execute``,
``Session("dialstring")``, ``waitForAnswer``) take the switch's lock that every other
``freeswitch`` call on that switch must pass, so a handler that sleeps in ``msleep`` visibly
delays the others, as in FreeSWITCH (FREESWITCH.md). One lock per switch: one per process.
"""

from __future__ import annotations

import contextlib
import queue
import re
import sys
import threading
import time
import traceback
import types
import weakref
from collections.abc import Callable
from typing import Any

from fakefs.binding import current_switch
from fakefs.causes import canonical
from fakefs.channel import Channel, Interrupt
from fakefs.events import EVENT_NAMES, Event

_GILS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_GILS_LOCK = threading.Lock()


def _gil(switch: Any = None) -> threading.RLock:
    """The interpreter lock of one switch: each FreeSWITCH process has its own Python, so an
    ``msleep`` on one node never delays another node of a multi-switch test."""
    switch = switch if switch is not None else current_switch()
    with _GILS_LOCK:
        lock = _GILS.get(switch)
        if lock is None:
            lock = _GILS[switch] = threading.RLock()
        return lock


def _pass_gil(switch: Any = None) -> None:
    with _gil(switch):
        pass


def consoleLog(level: str, message: str) -> None:  # noqa: N802 - mod_python3's name
    _pass_gil()
    current_switch().console_log(level, str(message))


def consoleCleanLog(message: str) -> None:  # noqa: N802
    _pass_gil()
    current_switch().console_log("CONSOLE", str(message))


def getGlobalVariable(name: str) -> str | None:  # noqa: N802
    _pass_gil()
    return current_switch().globals.get(name)


def setGlobalVariable(name: str, value: str) -> None:  # noqa: N802
    _pass_gil()
    current_switch().globals[name] = str(value)


def msleep(ms: int) -> None:
    """Holds the GIL while it sleeps: every other Python call of the switch waits. ``ms`` is
    switch time, scaled by ``time_scale`` like every other duration."""
    switch = current_switch()
    with _gil(switch):
        time.sleep(switch.scaled(ms))


def running() -> bool:
    return current_switch().running


def bridge(session_a: Session, session_b: Session) -> None:
    switch = current_switch()
    a, b = session_a._channel, session_b._channel
    if a is None or b is None or not a.up or not b.up:
        return
    switch.answer(a)
    try:
        switch.calls.run_bridge(a, b)
    except Interrupt as interrupt:
        switch.handle_interrupt(a, interrupt)


class API:
    def __init__(self, session: Session | None = None) -> None:
        self._session = session

    def execute(self, command: str, args: str = "") -> str:
        """Holds the GIL for the whole command (keep to fast ones; use bgapi for slow)."""
        with _gil():
            channel = self._session._channel if self._session is not None else None
            return current_switch().api(f"{command} {args}".strip(),
                                      session_channel=channel, raw=True)

    def executeString(self, line: str) -> str:  # noqa: N802
        command, _, args = line.partition(" ")
        return self.execute(command, args)

    def getTime(self) -> str:  # noqa: N802
        return str(int(time.time() * 1000))


class EventConsumer:
    """Bound queue of events; ``pop(block, timeout_ms)``. A full queue drops silently."""

    def __init__(self, event_name: str = "", subclass: str = "", len: int = 5000) -> None:
        self._switch = current_switch()
        self._sub = self._switch.bus.subscribe(len)
        if event_name:
            self.bind(event_name, subclass)

    def bind(self, event_name: str, subclass: str = "") -> int:
        name = event_name.upper()
        if name not in EVENT_NAMES:  # switch_name_event() fails: nothing is bound
            self._switch.console_log("ERR", f"Can't bind to {event_name}, event not found")
            return 0
        self._sub.bindings.append((name, subclass))
        return 1

    def pop(self, block: int = 0, timeout: int = 0) -> Event | None:
        try:
            if block:
                if timeout:
                    return self._sub.queue.get(timeout=timeout / 1000.0)
                return self._sub.queue.get()
            return self._sub.queue.get_nowait()
        except queue.Empty:
            return None

    @property
    def dropped(self) -> int:
        return self._sub.dropped

    def cleanup(self) -> None:
        self._switch.bus.unsubscribe(self._sub)

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.cleanup()
        except Exception:
            pass


class DTMF:
    def __init__(self, digit: str, duration: int = 800) -> None:
        self.digit = digit
        self.duration = duration


class Session:
    """``freeswitch.Session``: attach to a live channel by uuid, or originate a dial string
    (which holds the GIL for the whole originate, like the real one)."""

    def __init__(self, uuid_or_dialstring: str | None = None, a_leg: Session | None = None)\
            -> None:
        self._switch = current_switch()
        self._channel: Channel | None = None
        self._hook: Callable[..., Any] | None = None
        self._hook_arg: Any = None
        self._hook_called = False
        self._input_cb: Callable[..., Any] | None = None
        self._cause = "NONE"
        self._auto_hangup = False
        self.uuid = ""
        if uuid_or_dialstring is None:
            return
        existing = self._switch.channels.get(uuid_or_dialstring)
        if existing is not None:
            self._bind(existing)
            return
        with _gil(self._switch):
            originator = a_leg._channel if a_leg is not None else None
            leg, cause = self._switch.originate(uuid_or_dialstring, originator)
        if leg is not None:
            self._bind(leg)
            self._auto_hangup = True  # switch_cpp sets S_HUP on a session it originated
        else:
            self._cause = cause

    @classmethod
    def _attach(cls, channel: Channel) -> Session:
        session = cls.__new__(cls)
        session._switch = channel.switch
        session._channel = None
        session._hook = None
        session._hook_arg = None
        session._hook_called = False
        session._input_cb = None
        session._cause = "NONE"
        session._auto_hangup = False
        session.uuid = ""
        session._bind(channel)
        return session

    def _bind(self, channel: Channel) -> None:
        self._channel = channel
        self.uuid = channel.uuid
        # A weak reference: the channel must not keep the Python object alive (a dropped
        # Session no longer runs its hook, and an originated one hangs its leg up).
        ref = weakref.ref(self)

        def on_channel_done() -> None:
            session = ref()
            if session is not None:
                session._on_channel_done()
        channel.hangup_hooks.append(on_channel_done)

    def __del__(self) -> None:
        """~CoreSession: a session that originated its channel hangs it up when dropped,
        unless ``setAutoHangup(False)``."""
        try:
            channel = getattr(self, "_channel", None)
            if getattr(self, "_auto_hangup", False) and channel is not None and channel.up:
                self._switch.hangup(channel, "NORMAL_CLEARING")
        except Exception:
            pass

    def setAutoHangup(self, value: bool) -> bool:  # noqa: N802
        self._auto_hangup = bool(value)
        return True

    def _on_channel_done(self) -> None:
        self._check_hook()

    def _check_hook(self) -> None:
        """Like mod_python3's Session: the hook runs on the next session call after the
        channel hung up ("hangup") or was transferred away ("transfer"), or when the session
        object is done with — once only, whichever comes first."""
        channel = self._channel
        if not self._hook or self._hook_called or channel is None:
            return
        what = "hangup" if not channel.up else (
            "transfer" if channel.variables.get("_transfer_pending") else "")
        if what:
            self._hook_called = True
            if what == "hangup":
                self._switch.hook_hangup_cause(channel)  # the hook reads hangup_cause
            try:
                if self._hook_arg is not None:
                    self._hook(self, what, self._hook_arg)
                else:
                    self._hook(self, what)
            except Exception:
                self._switch.console_log("ERR", traceback.format_exc())

    def _destroy(self) -> None:
        self._check_hook()

    def _ch(self) -> Channel | None:
        _pass_gil(self._switch)
        self._check_hook()
        return self._channel

    # state -----------------------------------------------------------------------------
    def ready(self) -> bool:
        ch = self._ch()
        return bool(ch is not None and ch.up and not ch.variables.get("_transfer_pending"))

    def answered(self) -> bool:
        ch = self._ch()
        return bool(ch is not None and ch.answered)

    def bridged(self) -> bool:
        ch = self._ch()
        return bool(ch is not None and ch.peer)

    def mediaReady(self) -> bool:  # noqa: N802
        ch = self._ch()
        return bool(ch is not None and ch.up and (ch.answered or "progress_media" in ch.times))

    def get_uuid(self) -> str:
        return self.uuid

    def getState(self) -> str:  # noqa: N802
        ch = self._ch()
        return ch.state if ch is not None else "CS_DESTROY"

    def hangupCause(self) -> str:  # noqa: N802
        """switch_cpp only knows a cause set through this object's hangup(); else "NONE"."""
        return self._cause

    def getVariable(self, name: str) -> str | None:  # noqa: N802
        ch = self._ch()
        return ch.get(name) if ch is not None else None

    def setVariable(self, name: str, value: Any) -> None:  # noqa: N802
        ch = self._ch()
        if ch is not None:
            ch.set(name, value)

    # actions ---------------------------------------------------------------------------
    def answer(self) -> int:
        ch = self._ch()
        if ch is not None:
            self._switch.answer(ch)
        return 0

    def preAnswer(self) -> None:  # noqa: N802
        ch = self._ch()
        if ch is not None:
            self._switch.pre_answer(ch)

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        ch = self._ch()
        if ch is not None and ch.up:
            self._cause = canonical(cause)
            self._switch.hangup(ch, cause)
        self._check_hook()

    def execute(self, app: str, data: str = "") -> None:
        ch = self._ch()
        if ch is None or not ch.up or ch.variables.get("_transfer_pending"):
            return
        self._switch.execute_app(ch, app, data or "")
        self._check_hook()

    def _play(self, path: str) -> str:
        ch = self._ch()
        if ch is None or not ch.up:
            return "hangup"

        def on_dtmf(digit: str) -> bool:
            if self._input_cb is None:
                return False
            result = self._input_cb(self, "dtmf", DTMF(digit))
            return isinstance(result, str) and result.lower() in ("break", "stop")
        try:
            return self._switch.media.play(ch, path, on_dtmf if self._input_cb else None)
        except Interrupt as interrupt:
            self._switch.handle_interrupt(ch, interrupt)
            return "interrupted"

    def streamFile(self, path: str, sample_count: int = 0) -> int:  # noqa: N802
        self._play(path)
        self._check_hook()
        return 0

    def sleep(self, ms: int, sync: int = 0) -> int:
        ch = self._ch()
        if ch is None:
            return 0
        deadline = time.monotonic() + self._switch.scaled(ms)
        while ch.up:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                reason = ch.wait(left, dtmf=self._input_cb is not None)
            except Interrupt as interrupt:
                if interrupt.reason == "break":
                    continue
                self._switch.handle_interrupt(ch, interrupt)
                break
            if reason == "dtmf" and self._input_cb is not None:
                result = self._input_cb(self, "dtmf", DTMF(ch.dtmf.popleft()))
                if isinstance(result, str) and result.lower() in ("break", "stop"):
                    break
            elif reason != "dtmf":
                break
        self._check_hook()
        return 0

    def flushDigits(self) -> None:  # noqa: N802
        ch = self._ch()
        if ch is not None:
            ch.dtmf.clear()

    def flushEvents(self) -> None:  # noqa: N802
        return None

    def getDigits(self, maxdigits: int, terminators: str = "", timeout: int = 5000,  # noqa: N802
                  interdigit: int = 0, abstimeout: int = 0) -> str:
        ch = self._ch()
        if ch is None:
            return ""
        digits = ""
        deadline = time.monotonic() + self._switch.scaled(timeout)
        while ch.up and len(digits) < maxdigits:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                reason = ch.wait(left, dtmf=True)
            except Interrupt:
                break
            if reason != "dtmf":
                break
            digit = ch.dtmf.popleft()
            if terminators and digit in terminators:
                ch.set("read_terminator_used", digit)
                break
            digits += digit
            if interdigit:
                deadline = time.monotonic() + self._switch.scaled(interdigit)
        return digits

    def playAndGetDigits(self, min_digits: int, max_digits: int, max_tries: int,  # noqa: N802
                         timeout: int, terminators: str, audio_files: str,
                         bad_input_audio_files: str = "", digits_regex: str = "",
                         var_name: str = "", digit_timeout: int = 0,
                         transfer_on_failure: str = "") -> str:
        for _ in range(max(1, max_tries)):
            ch = self._ch()
            if ch is None or not ch.up:
                return ""
            ch.dtmf.clear()

            def keep_digit(digit: str, channel: Channel = ch) -> bool:
                channel.dtmf.appendleft(digit)  # a key pressed during the prompt starts input
                return True

            self._switch.media.play(ch, audio_files, on_dtmf=keep_digit)
            digits = self.getDigits(max_digits, terminators, timeout, digit_timeout)
            if len(digits) >= min_digits and (not digits_regex or re.fullmatch(digits_regex,
                                                                              digits)):
                if var_name:
                    ch.set(var_name, digits)
                return digits
            if bad_input_audio_files:
                self._switch.media.play(ch, bad_input_audio_files)
        return ""

    def transfer(self, extension: str, dialplan: str = "XML", context: str = "") -> None:
        ch = self._ch()
        if ch is not None and ch.up:
            ch.variables["_transfer_pending"] = "\x1f".join(
                [extension, dialplan or "XML", context or ch.context])

    def setHangupHook(self, func: Callable[..., Any], arg: Any = None) -> None:  # noqa: N802
        self._hook, self._hook_arg = func, arg

    def setInputCallback(self, func: Callable[..., Any], arg: Any = None) -> None:  # noqa: N802
        self._input_cb = func

    def unsetInputCallback(self) -> None:  # noqa: N802
        self._input_cb = None

    def originate(self, a_leg: Session | None, dest: str, timeout: int = 60) -> int:
        """Releases the GIL only when given an A-leg session (FREESWITCH.md)."""
        ch = a_leg._channel if a_leg is not None else None
        with contextlib.nullcontext() if a_leg is not None else _gil(self._switch):
            leg, cause = self._switch.originate(dest, ch, timeout_s=timeout)
        if leg is None:
            self._cause = cause
            return 0
        self._bind(leg)
        self._auto_hangup = True
        return 1

    def waitForAnswer(self, calling: Session) -> None:  # noqa: N802
        with _gil(self._switch):
            ch = self._channel
            if ch is not None:
                ch.wait(None, until=lambda: ch.answered)

    def destroy(self) -> None:
        self._destroy()


def install() -> types.ModuleType:
    """Make ``import freeswitch`` give this module (idempotent)."""
    module = sys.modules[__name__]
    sys.modules["freeswitch"] = module
    return module
