"""The fsapps CTI server (``fsapps cti serve``): seed 001's REST API and seed 003's
supervision over HTTP, stateless — all state in Redis and PostgreSQL, every switch action sent
to the node that owns the channel.

``app.build_app(services)`` builds the aiohttp application; ``services.CtiServices`` holds
what handlers use; ``auth`` the users, tokens and roles; ``registry`` the route declarations
(validation, errors, OpenAPI); ``api`` / ``supervision`` the routes; ``operations`` the
blocking service calls behind them; ``rows`` the pure mapping of Redis state to the seed's
JSON rows.
"""
