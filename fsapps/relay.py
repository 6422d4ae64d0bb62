"""``${python(fsapps.relay <ext>)}`` — the endpoint the ``fsapps_agent_relay`` extension
(dialplan/10_fsapps_acd.xml) bridges an agent call relayed from another node to:
``user/<ext>@<domain>`` with the domain of the leg's X-FSAPPS-Domain header (else its
``domain_name``) when both are valid here, else ``error/NO_ROUTE_DESTINATION``
(:func:`fsapps.acd.relay_endpoint`).

Thin: FreeSWITCH reloads this module on every call. Called as an api expansion, ``session`` is
the relayed channel. The reply is written once, with no newline (it is spliced into the
bridge's dial string), and no exception ever leaves.
"""

from __future__ import annotations

from typing import Any

from fsapps.fslog import log

REFUSED = "error/NO_ROUTE_DESTINATION"


def fsapi(session: Any, stream: Any, env: Any, args: str) -> None:
    try:
        from fsapps import acd
        from fsapps.context import get_context

        domain = None
        if session is not None and not isinstance(session, str):  # "na": not from a call
            domain = session.getVariable(acd.RELAY_DOMAIN_HEADER) or \
                session.getVariable("domain_name")
        reply = acd.relay_endpoint(get_context().settings, args.strip(), domain)
    except Exception as exc:
        log("ERR", f"fsapps.relay {args!r}: {type(exc).__name__}: {exc}")
        reply = REFUSED
    stream.write(reply)
