"""``python fsapps.api <command> [args]`` — the switch commands of seed 001 part IV
(``nway_add_ext``, ``nway_login``, ``nwayacd_transfer``, ``nwayacd`` ...), from fs_cli, ESL
``api`` / ``bgapi`` and the dialplan; fs_cli also takes ``nway_login 1000 120`` through the
aliases fsapps.runtime installs.

Thin: FreeSWITCH reloads this module on every call; the commands are in
:mod:`fsapps.switch.commands`. The reply is written last, in one write, and no exception ever
leaves: an internal failure answers ``-ERR <reason>``.
"""

from __future__ import annotations

from typing import Any

from fsapps.fslog import log


def fsapi(session: Any, stream: Any, env: Any, args: str) -> None:
    try:
        from fsapps.switch import commands

        reply = commands.run(args)
    except Exception as exc:  # commands.run answers every failure itself; this is the last net
        log("ERR", f"api {args!r}: {type(exc).__name__}: {exc}")
        reply = f"-ERR internal error: {type(exc).__name__}: {exc}\n"
    stream.write(reply)
