"""wellClient (seed 004) for fsapps: CSTA events, STOMP over SockJS, the /api/csta REST calls,
the agent page and the wallboard. What a switch node runs for these calls (the ``csta`` node
command) is :mod:`fsapps.switch.nodecommands`: nothing here runs inside the switch."""
