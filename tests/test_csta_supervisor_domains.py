"""A supervisor oversees its own domains in wellClient's event stream (issue 16): with
``users[].domains`` it may subscribe to the agents' and the wallboard's topics of those domains
only (empty: every domain, as before); an agent only to its own topics, in any domain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from csta_support import StompClient
from cti_support import CtiStack, cti_stack, cti_users

from fsapps import config
from fsapps.config import Secret, UserSettings
from fsapps.errors import ConfigError
from fsapps.server.auth import Principal
from fsapps.server.passwords import hash_password

D, OTHER = "cc.test", "other.test"


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    local = UserSettings("localsup", Secret(hash_password("localsup", iterations=1000)),
                         "supervisor", "", (OTHER,))
    with cti_stack(redis_server.url, database.dsn, switches=0, group=None,
                   sections={"domains": (D, OTHER), "users": (*cti_users(), local)}) as s:
        yield s


def subscribed(stack: CtiStack, user: str, destination: str) -> bool:
    client = StompClient(stack.server.url, stack.server.login(user))
    try:
        client.open()
        client.subscribe(destination)
        return True
    except AssertionError:
        return False
    finally:
        client.close()


@pytest.mark.parametrize(("user", "destination", "allowed"), [
    ("localsup", f"/topic/csta/domain/{OTHER}", True),
    ("localsup", f"/topic/csta/agent/agent@{OTHER}", True),
    ("localsup", f"/topic/csta/device/1001@{OTHER}", True),
    ("localsup", f"/topic/csta/domain/{D}", False),
    ("localsup", f"/topic/csta/agent/agent@{D}", False),
    ("localsup", f"/topic/csta/device/1001@{D}", False),
    ("supervisor", f"/topic/csta/domain/{D}", True),       # no domains: every one
    ("supervisor", f"/topic/csta/agent/agent@{OTHER}", True),
    ("agent", f"/topic/csta/agent/agent@{OTHER}", True),   # its own, any domain
    ("agent", f"/topic/csta/agent/agent2@{D}", False),
])
def test_who_may_subscribe_where(stack: CtiStack, user: str, destination: str,
                                 allowed: bool) -> None:
    assert subscribed(stack, user, destination) is allowed


def test_oversees() -> None:
    assert Principal("s", "supervisor", domains=("a",)).oversees("a")
    assert not Principal("s", "supervisor", domains=("a",)).oversees("b")
    assert Principal("s", "supervisor").oversees("b")
    assert Principal("x", "admin", domains=("a",)).oversees("b")
    assert not Principal("g", "agent").oversees("a")


def test_a_users_domain_must_be_served(tmp_path: Path) -> None:
    hashed = hash_password("x", iterations=1000)
    path = tmp_path / "f.yaml"
    path.write_text(f"domains: [a]\ndefault_domain: a\nusers:\n  - username: s\n"
                    f"    password_hash: '{hashed}'\n    role: supervisor\n"
                    f"    domains: [b]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be one of domains"):
        config.load_settings(str(path), environ={})


def test_rest_calls_of_a_supervisor_stay_in_its_domains(stack: CtiStack) -> None:
    http = stack.server.anonymous()
    http.headers["sessionId"] = stack.server.login("localsup")
    assert http.get("/api/csta/wallboard", params={"domain": OTHER}).status_code == 200
    assert http.get("/api/csta/wallboard", params={"domain": D}).status_code == 403
    for domain, status in ((D, 403), (OTHER, 409)):  # 409: not logged in, but allowed
        reply = http.post("/api/csta/agent/state", json={
            "func": "SetState", "loginId": f"agent@{domain}", "device": f"1001@{domain}",
            "agentMode": "NotReady"})
        assert reply.status_code == status, (domain, reply.text)
    reply = http.post("/api/csta/supervise/drop", json={
        "callId": "00000000-0000-4000-8000-000000000000", "domain": D})
    assert reply.status_code == 403
