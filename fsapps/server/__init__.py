"""The fsapps CTI server (``fsapps cti serve``): seed 001's REST API and seed 003's
supervision over HTTP, stateless — all state in Redis and PostgreSQL, every switch action sent
to the node that owns the channel.

``app.build_app(services)`` builds the aiohttp application; ``services.CtiServices`` holds
what handlers use; ``auth`` the users, tokens and roles; ``registry`` the route declarations
(validation, errors, OpenAPI); ``access`` the route guard; ``http_errors`` an error's HTTP
answer by its type; ``cti_api`` / ``supervision`` the routes; ``operations`` the blocking calls
behind them, which call :mod:`fsapps.services` and word its answers; ``rows`` the pure mapping
of Redis state to the seed's JSON rows.
"""
