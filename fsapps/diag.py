"""``python fsapps.diag [max_digits]`` — the self-test extension (dialplan 9196).

As an application: answers, plays a tone, reads up to ``max_digits`` keys (ending with #),
sets ``fsapps_diag=ok``, ``fsapps_diag_version`` and ``fsapps_diag_digits``, then hangs up.
As an api (``python fsapps.diag``): answers ``+OK fsapps <version>``.
"""

from __future__ import annotations

from typing import Any

from fsapps import __version__
from fsapps.fslog import log

TONE = "tone_stream://%(200,0,800)"


def handler(session: Any, args: str) -> None:
    try:
        max_digits = int(args.strip() or 4)
    except ValueError:
        log("WARNING", f"diag: max_digits {args!r} is not a number; using 4")
        max_digits = 4
    try:
        session.answer()
        session.setVariable("fsapps_diag", "ok")
        session.setVariable("fsapps_diag_version", __version__)
        session.streamFile(TONE)
        digits = session.getDigits(max_digits, "#", 3000)
        session.setVariable("fsapps_diag_digits", digits)
        log("INFO", f"diag: call {session.get_uuid()} ok, digits {digits!r}")
        session.hangup("NORMAL_CLEARING")
    except Exception as exc:
        log("ERR", f"diag: {exc!r}")


def fsapi(session: Any, stream: Any, env: Any, args: str) -> None:
    stream.write(f"+OK fsapps {__version__}\n")
