"""A real CTI server for tests: :func:`start_server` runs ``fsapps.server.app`` on a free
127.0.0.1 port in a background thread with its own event loop; :func:`cti_stack` wires it to
a simulated call center (fake switches running fsapps.runtime, real Redis and PostgreSQL).

Reusable by every CTI test module (issue 8's REST API, issue 9's CSTA / SockJS routes)::

    @pytest.fixture(scope="module")
    def stack(redis_server, database):
        with cti_stack(redis_server.url, database.dsn) as s:
            yield s

    def test_x(stack):
        agent = stack.server.client("agent")          # logged in as agent/agent (ext 1001)
        assert agent.post("/api/agent_ready", json={"Extension": "1001"}).status_code == 200

Users (cheap password hashes, so logins stay fast): admin/admin (admin), supervisor/supervisor
(supervisor, extension 1900), agent/agent (agent, extension 1001), agent2/agent2 (agent,
extension 1002); API token :data:`API_TOKEN` (admin).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from acd_support import settings_for

from fakefs.switch import Switch
from fsapps.config import Secret, Settings, UserSettings
from fsapps.server.app import BackgroundServer
from fsapps.server.passwords import hash_password
from fsapps.server.services import CtiServices
from tools.callcenter import SimulatedCallCenter, reset_database

# Few iterations: a test login costs microseconds; the format is the production one.
_ITERATIONS = 1000
USERS = {"admin": ("admin", ""), "supervisor": ("supervisor", "1900"),
         "agent": ("agent", "1001"), "agent2": ("agent", "1002")}
API_TOKEN = "test-api-token-0123456789abcdef"
GROUP = "110"


def cti_users() -> tuple[UserSettings, ...]:
    return tuple(UserSettings(name, Secret(hash_password(name, iterations=_ITERATIONS)), role,
                              ext) for name, (role, ext) in USERS.items())


def with_cti(settings: Settings, **cti: Any) -> Settings:
    """``settings`` with the test users, the API token and ``cti`` overrides."""
    return dataclasses.replace(settings, users=cti_users(), api_tokens=(Secret(API_TOKEN),),
                               cti=dataclasses.replace(settings.cti, **cti))


class Client(requests.Session):
    """HTTP to the server: paths are relative to its base URL; ``token`` goes into
    ``Authorization: Nway <token>``."""

    def __init__(self, base: str, token: str | None = None) -> None:
        super().__init__()
        self.base = base
        self.token = token
        if token:
            self.headers["Authorization"] = f"Nway {token}"

    def request(self, method: str | bytes, url: str | bytes, *args: Any,  # type: ignore[override]
                **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        text = url.decode() if isinstance(url, bytes) else url
        return super().request(method, self.base + text if text.startswith("/") else text,
                               *args, **kwargs)


class CtiServer(BackgroundServer):
    """The server in a background thread, with logged-in HTTP clients for the tests."""

    def __init__(self, services: CtiServices, host: str) -> None:
        super().__init__(services, host)
        self.clients: list[Client] = []

    def anonymous(self) -> Client:
        client = Client(self.url)
        self.clients.append(client)
        return client

    def login(self, username: str, password: str | None = None) -> str:
        reply = self.anonymous().post("/api/login", json={
            "username": username, "password": username if password is None else password})
        assert reply.status_code == 200, reply.text
        return str(reply.json()["token"])

    def client(self, username: str | None = None, token: str | None = None) -> Client:
        """A client logged in as ``username`` (password = user name), or using ``token``."""
        client = Client(self.url, token or (self.login(username) if username else None))
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        super().close()


def start_server(settings: Settings, host: str = "127.0.0.1") -> CtiServer:
    """The CTI server for ``settings`` on a free port of ``host``, serving in a background
    thread until :meth:`CtiServer.close`."""
    return CtiServer(CtiServices(settings, workers=8), host)


@dataclass
class CtiStack:
    """A call center (fake switches, real Redis / PostgreSQL) and a CTI server on it."""

    center: SimulatedCallCenter
    server: CtiServer
    switches: list[Switch]

    @property
    def switch(self) -> Switch:
        return self.switches[0]

    @property
    def ctx(self) -> Any:
        return self.center.ctx


@contextmanager
def cti_stack(redis_url: str, dsn: str, *, switches: int = 1, group: str | None = GROUP,
              sections: dict[str, Any] | None = None, **cti: Any) -> Iterator[CtiStack]:
    """Fresh database and Redis, ``switches`` fake nodes (0: none) running the dialplan and
    fsapps.runtime, ``group`` created, and a CTI server (``cti`` overrides its settings,
    ``sections`` whole settings sections such as ``{"amqp": AmqpSettings(...)}``)."""
    reset_database(dsn)
    settings = dataclasses.replace(with_cti(settings_for(redis_url, dsn), **cti),
                                   **(sections or {}))
    center = SimulatedCallCenter(settings)
    server = None
    try:
        nodes = [center.start_switch() for _ in range(switches)]
        if group:
            center.group(group)
        server = start_server(settings)
        yield CtiStack(center, server, nodes)
    finally:
        if server is not None:
            server.close()
        center.close()
