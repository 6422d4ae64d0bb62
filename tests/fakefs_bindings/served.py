"""A directory binding answering from :data:`fakefs_bindings.state.USERS`; records every call
(how many positional arguments, the request headers, ``args``)."""

from __future__ import annotations

from typing import Any

import freeswitch

from fakefs_bindings import state


def xml_fetch(*call_args: Any) -> Any:
    params = call_args[0]
    state.CALLS.append({"nargs": len(call_args), "headers": dict(params.headers),
                        "args": call_args[1] if len(call_args) > 1 else None,
                        "switchname": freeswitch.API().executeString("switchname")})
    return state.serve(params)
