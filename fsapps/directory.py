"""``xml_fetch(params, args)`` — the directory binding named in python.conf.xml.

Answers REGISTER/INVITE authentication and ``user/<ext>`` dialling from the Redis hash
``cti_exten@<domain>`` (seed 003, :mod:`fsapps.domain.userdir`): the user's directory document, or
FreeSWITCH's "not found" result for an unknown user or domain, a malformed record (logged) or
a failure (logged). Other sections get "" (nothing from this binding). It always returns a
``str``: None would crash the switch.

This module is reloaded by mod_python3 on every call: it keeps nothing; the connection pool
lives in :mod:`fsapps.context`.
"""

from __future__ import annotations

from typing import Any


def xml_fetch(params: Any, args: str = "") -> str:
    try:
        from fsapps.domain import userdir
    except Exception:  # an unimportable install: fall back to the switch's static XML
        return ""
    try:
        if params.getHeader("section") != "directory":
            return ""
        from fsapps.context import get_context
        from fsapps.switch import priority

        ctx = get_context()
        # (a ring's lookup runs on the caller's thread, at the switch's priority for its
        # media: its Python goes ahead, as a handler's does)
        before = priority.run_python_first(ctx.settings.python_priority)
        try:
            user = params.getHeader("user")
            domain = params.getHeader("domain") or params.getHeader("key_value")
            # ws/wss: a browser (the agent console's phone), authenticated apart
            # (docs/webrtc.md)
            transport = params.getHeader("sip_via_protocol") or ""
            return str(userdir.answer(ctx, user, domain, transport))
        finally:
            priority.give_back(before)
    except Exception as exc:
        try:
            from fsapps.fslog import log

            log("ERR", f"directory: lookup failed: {type(exc).__name__}: {exc}")
        except Exception:
            pass
        return userdir.NOT_FOUND
