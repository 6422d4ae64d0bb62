"""The operations every front end offers, written once: :mod:`fsapps.services.agents` (log
in and out, ready, busy, call state, what an agent's state is) and
:mod:`fsapps.services.calls` (the extension's live call and the switch commands acting on
it, sent where the channel lives).

Three front ends call them and only parse arguments and format replies: the switch commands
of fs_cli and ESL (:mod:`fsapps.switch.commands`, ``+OK``/``-ERR`` text), the seed REST API
(:mod:`fsapps.server.operations` behind :mod:`fsapps.server.cti_api`) and wellClient's
``/api/csta`` (:mod:`fsapps.server.csta.rest`). A service refuses with an exception from
:mod:`fsapps.errors`'s tree carrying the facts (which extension, which groups, which states);
each front end words the refusal as its users have always read it.

The layer sits above the domain (:mod:`fsapps.domain`) and the ACD (:mod:`fsapps.switch.acd`),
which it calls, and below the front ends; it knows neither HTTP nor fs_cli. (Not to be
confused with :mod:`fsapps.server.services`, the CTI server's process-wide holder of
settings, clients and worker threads.)
"""
