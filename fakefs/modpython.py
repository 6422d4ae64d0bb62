"""How mod_python3 calls Python, reproduced: argument splitting, import-then-reload of the
top-level module on every call, the four call shapes (handler, fsapi, runtime, xml_fetch),
and exceptions logged into the console instead of reaching the switch.
"""

from __future__ import annotations

import importlib
import sys
import threading
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from fakefs.binding import bind
from fakefs.events import Event

if TYPE_CHECKING:
    from fakefs.switch import Switch

_import_lock = threading.RLock()


class SwitchCrashed(RuntimeError):
    """What would have crashed a real FreeSWITCH (e.g. xml_fetch returning None)."""


_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "s": " "}


def strip_args(args: str) -> str:
    """switch_utils.c ``cleanup_separated_string(s, 0)``, which mod_python3's argument split
    applies: leading and unquoted trailing blanks go, paired single quotes are removed (a lone
    one stays), ``\\'`` ``\\"`` ``\\\\`` and ``\\n \\r \\t \\s`` are unescaped, any other
    backslash is kept (``^\\d+$`` arrives intact)."""
    out: list[str] = []
    end = 0
    quoted = False
    i = len(args) - len(args.lstrip(" "))
    while i < len(args):
        ch = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if ch == "\\" and nxt and (nxt in "'\"\\" or nxt in _UNESCAPE):
            out.append(_UNESCAPE.get(nxt, nxt))
            end = len(out)
            i += 2
            continue
        if ch == "'" and (quoted or "'" in args[i + 1:]):
            quoted = not quoted
            if quoted:
                end = len(out)
        else:
            out.append(ch)
            if ch != " " or quoted:
                end = len(out)
        i += 1
    return "".join(out[:end])


def split_data(data: str) -> tuple[str, str, str | None]:
    """``"pkg.mod::func a b"`` → ("pkg.mod", "a b", "func"): ``switch_separate_string(data,
    ' ', argv, 2)`` splits at the FIRST unquoted, unescaped space only; the rest is ONE
    string."""
    i, n, quoted = 0, len(data), False
    while i < n and data[i] == " ":
        i += 1
    while i < n:
        ch = data[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "'":
            quoted = not quoted
        elif ch == " " and not quoted:
            break
        i += 1
    name, rest = strip_args(data[:i]), strip_args(data[i + 1:])
    func = None
    if "::" in name:
        name, func = name.split("::", 1)
    return name, rest, func


def load_module(name: str) -> ModuleType:
    """Import the top-level module and reload it, as mod_python3 does on every call (so its
    first call runs the module body twice). Modules it imports are NOT reloaded."""
    with _import_lock:
        module = sys.modules.get(name)
        if module is None:
            module = importlib.import_module(name)
        return importlib.reload(module)


def _log_exception(switch: Switch, where: str) -> None:
    switch.console_log("ERR", f"python: {where}:\n{traceback.format_exc()}")
    switch.python_errors.append(f"{where}: {traceback.format_exc()}")


def run_handler(switch: Switch, session: Any, data: str) -> None:
    name, args, func = split_data(data)
    try:
        module = load_module(name)
        target: Callable[..., Any] = getattr(module, func or "handler")
        target(session, args)
    except SystemExit:
        raise
    except BaseException:
        _log_exception(switch, f"{name}.{func or 'handler'}")


class Stream:
    """``stream`` given to fsapi: what is written comes back as the api reply."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(str(text))

    def raw_write(self, text: str) -> None:  # pragma: no cover - rarely used
        self.write(text)

    def get_data(self) -> str:
        return "".join(self.parts)


def run_fsapi(switch: Switch, session: Any, args_line: str) -> str:
    name, args, func = split_data(args_line)
    stream = Stream()
    env = Event("API")
    env.addHeader("API-Command", "python")
    env.addHeader("API-Command-Argument", args_line)
    try:
        module = load_module(name)
        getattr(module, func or "fsapi")(session if session is not None else "na", stream, env,
                                          args)
    except BaseException:
        _log_exception(switch, f"{name}.{func or 'fsapi'}")
    # What was written, possibly nothing: an empty reply becomes "-ERR no reply" only where
    # mod_event_socket answers (Switch.api); API().execute and bgapi bodies get it raw.
    return stream.get_data()


def run_runtime(switch: Switch, args_line: str) -> threading.Thread:
    name, args, func = split_data(args_line)

    def body() -> None:
        bind(switch)
        try:
            module = load_module(name)
            getattr(module, func or "runtime")(args)
        except SystemExit:
            switch.console_log("INFO", f"python: {name} runtime stopped (SystemExit)")
        except BaseException:
            _log_exception(switch, f"{name}.{func or 'runtime'}")

    thread = threading.Thread(target=body, name=f"{switch.name}:pyrun:{name}", daemon=True)
    thread.start()
    return thread


def run_xml_fetch(switch: Switch, module_name: str, params: Any) -> str:
    """Call ``xml_fetch(params, args)``; "" on an exception (the switch falls back to its static
    XML); a None or non-str return crashes the real switch, so it raises SwitchCrashed."""
    name, args, func = split_data(module_name)
    try:
        module = load_module(name)
        result = getattr(module, func or "xml_fetch")(params, args)
    except BaseException:
        _log_exception(switch, f"{name}.xml_fetch")
        return ""
    if not isinstance(result, str):
        switch.crash(f"xml_fetch in {name} returned {type(result).__name__}, not str: "
                     "a real FreeSWITCH would have crashed")
    return result
