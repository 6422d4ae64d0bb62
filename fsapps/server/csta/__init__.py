"""wellClient (seed 004) for fsapps: CSTA events, STOMP over SockJS, the /api/csta REST calls,
the agent page and the wallboard. Importing the package imports nothing else: the runtime on a
switch node uses :mod:`fsapps.server.csta.switchops` without aiohttp."""
