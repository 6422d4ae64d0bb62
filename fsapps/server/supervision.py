"""Supervision (seed 003, 监听 / 秘语 / 强插 / 强拆) over the CTI server, supervisor-only:
listen, whisper to the agent or to the customer, barge (three-way), force hangup of both legs,
force an agent ready / busy / logged out; and mod_cti's ``/cli`` passthrough, admin-only and
limited to ``cti.cli_commands``.

The supervisor's phone is ``Phone`` (an extension, or a number with ``Gateway``), by default
the supervisor's own extension from the settings. While listening or whispering the supervisor
switches with DTMF: 1 talk to the customer, 2 talk to the agent, 3 three-way, 0 listen again.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fsapps.server import operations as ops
from fsapps.server.registry import ApiError, Call, Field, Route, ok, register

AGENT = Field("Extension", "extension", known=True, description="the agent supervised")
PHONE = Field("Phone", "phone", required=False,
              description="the supervisor's phone: an extension, or a number with Gateway; "
                          "default the supervisor's own extension")
GATEWAY = Field("Gateway", "gateway", required=False,
                description="gateway for an outside Phone number; empty for none")
TAG = "supervision (seed 003)"


def _phone(call: Call) -> str:
    phone = call.get("Phone") or (call.principal.extension if call.principal else "")
    if not phone:
        raise ApiError(422, "missing field 'Phone' (user "
                       f"{call.principal.username if call.principal else '?'!r} has no "
                       "extension of its own)", "Phone")
    return phone


def _eavesdrop(mode: str, name: str) -> Any:
    async def run(call: Call) -> Any:
        if mode == "whisper":
            wanted = call["To"]
        else:
            wanted = "listen"
        phone = _phone(call)
        return ok(await call.services.run(ops.eavesdrop, call.services, call["Extension"],
                                          phone, call.get("Gateway"), wanted,
                                          target_field="Extension", phone_field="Phone"))
    run.__name__ = name
    return run


async def barge(call: Call) -> Any:
    phone = _phone(call)
    return ok(await call.services.run(ops.threeway, call.services, call["Extension"], phone,
                                      call.get("Gateway"), in_call_field="Extension",
                                      phone_field="Phone"))


async def force_hangup(call: Call) -> Any:
    return ok(await call.services.run(ops.hangup, call.services, call["Extension"], both=True))


def _force(state: str) -> Any:
    async def run(call: Call) -> Any:
        s = call.services
        return ok(await s.run(ops.force_state, s.ctx, s.domain, call["Extension"], state))
    run.__name__ = f"force_{state}"
    return run


async def cli(call: Call) -> Any:
    reply = await call.services.run(ops.cli, call.services, call["cmd"], call.get("arg"),
                                    call.get("node") or None)
    return web.Response(text=reply, content_type="text/plain")


ROUTES = [
    Route("POST", "/api/supervise/listen", _eavesdrop("listen", "supervise_listen"),
          "listen to the agent's call (DTMF 1 customer, 2 agent, 3 three-way, 0 listen)",
          role="supervisor", fields=(AGENT, PHONE, GATEWAY), tag=TAG),
    Route("POST", "/api/supervise/whisper", _eavesdrop("whisper", "supervise_whisper"),
          "whisper to the agent (To=agent) or to the customer (To=customer)",
          role="supervisor", tag=TAG,
          fields=(AGENT, Field("To", "choice", choices=("agent", "customer"),
                               description="who hears the supervisor"), PHONE, GATEWAY)),
    Route("POST", "/api/supervise/barge", barge,
          "barge in: the supervisor joins the call, all three hear each other",
          role="supervisor", fields=(AGENT, PHONE, GATEWAY), tag=TAG),
    Route("POST", "/api/supervise/hangup", force_hangup,
          "force hangup of the agent's call, both legs", role="supervisor",
          fields=(AGENT,), tag=TAG),
    Route("POST", "/api/supervise/ready", _force("ready"), "force the agent ready",
          role="supervisor", fields=(AGENT,), tag=TAG),
    Route("POST", "/api/supervise/busy", _force("busy"), "force the agent busy",
          role="supervisor", fields=(AGENT,), tag=TAG),
    Route("POST", "/api/supervise/logout", _force("logout"),
          "force the agent logged out (leaves every group)", role="supervisor",
          fields=(AGENT,), tag=TAG),
    Route("GET", "/cli", cli, "mod_cti httpcli: run an allow-listed switch api command",
          role="admin", tag="admin",
          description="`key` is a token (or send `Authorization: Nway <token>`); `cmd` must "
                      "be in cti.cli_commands (for bgapi, the command it runs too). The "
                      "reply is the switch's text.",
          response={"type": "string"}, content_type="text/plain", errors=(401, 403, 404, 422),
          fields=(Field("key", "text", where="query", required=False,
                        description="the token (mod_cti's key)"),
                  Field("cmd", "extension", where="query", description="the api command"),
                  Field("arg", "text", where="query", required=False,
                        description="its arguments"),
                  Field("node", "node", where="query", required=False,
                        description="the node to run on (default: the one holding the "
                                    "channel named first in arg, else the first live node)"))),
]


def install(app: web.Application) -> None:
    for route in ROUTES:
        register(app, route)
