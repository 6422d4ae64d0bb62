"""CTI server security over real HTTP: logins, tokens (expiry, revocation, sharing between
servers, only a hash in Redis), roles, the own-extension rule for agents, and the brute-force
throttle of /api/login (per user, per address, atomic under parallel guesses)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cti_support import API_TOKEN, CtiStack, cti_stack, start_server

from fakefs.scenario import wait_until
from fsapps.config import Secret
from fsapps.server.auth import Auth, Principal
from fsapps.server.registry import ROUTES
from fsapps.switch import acd
from tools.servers import RedisServer


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with cti_stack(redis_server.url, database.dsn, switches=0, login_max_failures=3,
                   login_max_failures_per_address=8) as s:
        for ext in ("1001", "1002"):
            acd.login(s.ctx, s.center.domain, ext, ["110"])
        yield s


@pytest.fixture
def fresh(stack: CtiStack) -> CtiStack:
    """No login failures counted from an earlier test."""
    r = stack.ctx.redis
    for key in r.scan_iter(match="t:{cti}:login:*"):
        r.delete(key)
    return stack


def login(stack: CtiStack, username: str, password: str) -> Any:
    return stack.server.anonymous().post("/api/login", json={"username": username,
                                                             "password": password})


# ------------------------------------------------------------------------ login -----------
def test_login_and_not_authorized(fresh: CtiStack) -> None:
    good = login(fresh, "admin", "admin")
    assert good.status_code == 200 and set(good.json()) == {"token"}
    assert len(good.json()["token"]) >= 40
    for name, password in (("admin", "wrong"), ("nobody", "admin"), ("admin", "")):
        reply = login(fresh, name, password)
        assert reply.status_code == 401
        # seed 001's answer, the JSON string "Not Authorized": the same for both causes
        assert reply.text == '"Not Authorized"' and reply.json() == "Not Authorized"
    me = fresh.server.client("agent").get("/api/me").json()
    assert me == {"username": "agent", "role": "agent", "extension": "1001"}


def test_login_body_is_validated(fresh: CtiStack) -> None:
    anon = fresh.server.anonymous()
    assert anon.post("/api/login", json={"username": "admin"}).json()["field"] == "password"
    assert anon.post("/api/login", json={"username": 1, "password": "x"}).status_code == 422
    assert anon.post("/api/login", data=b"username=admin").status_code == 400


def test_only_a_hash_of_the_token_is_in_redis(fresh: CtiStack) -> None:
    token = fresh.server.login("admin")
    r = fresh.ctx.redis
    dump = []
    for key in r.scan_iter(match="t:{cti}:*"):
        dump.append(key)
        kind = r.type(key)
        if kind == "hash":
            dump += [f"{k}={v}" for k, v in r.hgetall(key).items()]
        elif kind == "zset":
            dump += r.zrange(key, 0, -1)
    assert dump and not any(token in item for item in dump)
    key = f"t:{{cti}}:token:{hashlib.sha256(token.encode()).hexdigest()}"
    assert 0 < r.ttl(key) <= fresh.server.services.settings.cti.token_ttl_seconds


# ------------------------------------------------------------------------ tokens ----------
def protected_routes(stack: CtiStack) -> list[tuple[str, str]]:
    routes = stack.server.runner.app[ROUTES]
    return [(r.method, r.path.replace("{ext}", "1001")) for r in routes if r.role]


def test_no_token_and_bad_tokens_are_refused_everywhere(fresh: CtiStack) -> None:
    routes = protected_routes(fresh)
    assert len(routes) >= 27
    anon = fresh.server.anonymous()
    for method, path in routes:
        for headers in ({}, {"Authorization": "Nway not-a-token"}, {"Authorization": "Nway "},
                        {"Authorization": "Basic YWRtaW46YWRtaW4="},
                        {"Authorization": "Nway " + "x" * 5000}):
            reply = anon.request(method, path, headers=headers, json={"Extension": "1001"})
            assert reply.status_code == 401, (method, path, headers, reply.text)
            assert reply.json()["error"].startswith("Not Authorized")
            assert reply.headers["WWW-Authenticate"].startswith("Nway")


def test_a_token_expires(stack: CtiStack) -> None:
    settings = stack.server.services.settings
    server = start_server(dataclasses.replace(
        settings, cti=dataclasses.replace(settings.cti, token_ttl_seconds=1)))
    try:
        client = server.client("admin")
        assert client.get("/api/queues").status_code == 200
        wait_until(lambda: client.get("/api/queues").status_code == 401, 5, "token expired")
        assert "expired" in client.get("/api/queues").json()["error"]
    finally:
        server.close()


def test_logout_revokes_that_session_only(fresh: CtiStack) -> None:
    first, second = fresh.server.client("supervisor"), fresh.server.client("supervisor")
    assert first.post("/api/logout").json()["result"] == "ok"
    assert first.get("/api/queues").status_code == 401
    assert second.get("/api/queues").status_code == 200


def test_servers_share_tokens_and_read_roles_from_their_settings(stack: CtiStack) -> None:
    token = stack.server.login("agent2")
    settings = stack.server.services.settings
    other = start_server(settings)
    try:
        assert other.client(token=token).get("/api/me").json()["username"] == "agent2"
    finally:
        other.close()
    # a server whose settings no longer list the user refuses its tokens
    without = start_server(dataclasses.replace(
        settings, users=tuple(u for u in settings.users if u.username != "agent2")))
    try:
        reply = without.client(token=token).get("/api/me")
        assert reply.status_code == 401 and "no longer configured" in reply.json()["error"]
    finally:
        without.close()


def test_api_token_is_admin(fresh: CtiStack) -> None:
    client = fresh.server.client(token=API_TOKEN)
    assert client.get("/api/me").json()["role"] == "admin"
    assert client.post("/api/agent_busy", json={"Extension": "1002"}).status_code == 200
    # seed 001's header spelling: no space after the colon, a trailing space
    reply = fresh.server.anonymous().get("/api/queues",
                                         headers={"Authorization": f"Nway {API_TOKEN} "})
    assert reply.status_code == 200


# ------------------------------------------------------------------------ roles -----------
@pytest.mark.parametrize(("user", "method", "path", "body"), [
    ("agent", "POST", "/api/eavesdrop", {"EvdedPhone": "1002", "EvdPhone": "1001"}),
    ("agent", "POST", "/api/supervise/listen", {"Extension": "1002"}),
    ("agent", "POST", "/api/supervise/whisper", {"Extension": "1002", "To": "agent"}),
    ("agent", "POST", "/api/supervise/barge", {"Extension": "1002"}),
    ("agent", "POST", "/api/supervise/hangup", {"Extension": "1002"}),
    ("agent", "POST", "/api/supervise/ready", {"Extension": "1001"}),
    ("agent", "POST", "/api/supervise/busy", {"Extension": "1001"}),
    ("agent", "POST", "/api/supervise/logout", {"Extension": "1001"}),
    ("agent", "GET", "/cli?cmd=status", None),
    ("supervisor", "GET", "/cli?cmd=status", None),
])
def test_wrong_role(fresh: CtiStack, user: str, method: str, path: str,
                    body: dict[str, str] | None) -> None:
    reply = fresh.server.client(user).request(method, path, json=body)
    assert reply.status_code == 403, reply.text
    assert "role" in reply.json()["error"]


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "/api/agent_ready", {"Extension": "1002"}, "Extension"),
    ("POST", "/api/agent_busy", {"Extension": "1002"}, "Extension"),
    ("POST", "/api/agent_up", {"Extension": "1002", "Groups": "110"}, "Extension"),
    ("POST", "/api/agent_down", {"Extension": "1002"}, "Extension"),
    ("POST", "/api/extension_callstate", {"Extension": "1002", "Value": "rest"}, "Extension"),
    ("POST", "/api/transfer", {"EvdedPhone": "1002", "EvdPhone": "1001"}, "EvdedPhone"),
    ("POST", "/api/threeway", {"EvdedPhone": "1003", "EvdPhone": "1002"}, "EvdPhone"),
    ("GET", "/api/hold/1002", None, "ext"),
    ("GET", "/api/unhold/1002", None, "ext"),
    ("GET", "/api/phone_hold/1002", None, "ext"),
    ("GET", "/api/phone_unhold/1002", None, "ext"),
    ("GET", "/api/answer/1002", None, "ext"),
    ("GET", "/api/hangup/1002", None, "ext"),
])
def test_an_agent_acts_only_on_its_own_extension(fresh: CtiStack, method: str, path: str,
                                                 body: dict[str, str] | None,
                                                 field: str) -> None:
    before = fresh.ctx.redis.hgetall("t:{cc.test}:agent:1002")
    reply = fresh.server.client("agent").request(method, path, json=body)
    assert reply.status_code == 403, reply.text
    assert reply.json()["field"] == field
    assert "own extension '1001'" in reply.json()["error"]
    assert fresh.ctx.redis.hgetall("t:{cc.test}:agent:1002") == before


def test_own_extension_and_supervisors_are_allowed(fresh: CtiStack) -> None:
    agent = fresh.server.client("agent")
    assert agent.post("/api/agent_busy", json={"Extension": "1001"}).status_code == 200
    assert agent.post("/api/agent_ready", json={"Extension": "1001"}).status_code == 200
    assert agent.get("/api/extension_info/1002").status_code == 200  # reading is allowed
    sup = fresh.server.client("supervisor")
    assert sup.post("/api/agent_busy", json={"Extension": "1002"}).status_code == 200
    assert sup.post("/api/supervise/ready", json={"Extension": "1002"}).status_code == 200


# ------------------------------------------------------------------------ throttling ------
def test_brute_force_is_throttled_per_user(fresh: CtiStack) -> None:
    for _ in range(3):
        assert login(fresh, "agent", "guess").status_code == 401
    blocked = login(fresh, "agent", "agent")  # even the right password now
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 300
    assert "too many failed logins" in blocked.json()["error"]
    assert login(fresh, "agent2", "agent2").status_code == 200  # other users are not locked


def test_a_success_starts_the_user_afresh(fresh: CtiStack) -> None:
    for _ in range(2):
        assert login(fresh, "agent", "guess").status_code == 401
    assert login(fresh, "agent", "agent").status_code == 200
    for _ in range(3):
        assert login(fresh, "agent", "guess").status_code == 401


def test_brute_force_is_throttled_per_address(fresh: CtiStack) -> None:
    for index in range(8):
        assert login(fresh, f"user{index}", "guess").status_code == 401
    assert login(fresh, "admin", "admin").status_code == 429


def test_parallel_guesses_cannot_pass_the_limit(fresh: CtiStack) -> None:
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: login(fresh, "admin", "guess").status_code,
                                 range(12)))
    assert sorted(statuses) == [401] * 3 + [429] * 9


def test_principal_rules() -> None:
    agent = Principal("a", "agent", "1001")
    assert agent.may_act_on("1001") and not agent.may_act_on("1002")
    assert not Principal("b", "agent", "").may_act_on("")
    assert Principal("s", "supervisor").may_act_on("1002")
    assert Principal("s", "supervisor").at_least("agent")
    assert not Principal("s", "supervisor").at_least("admin")
    assert Principal("x", "admin").at_least("supervisor")


def test_check_and_revoke_refuse_junk(stack: CtiStack) -> None:
    auth: Auth = stack.server.services.auth
    assert not auth.revoke("")
    assert not auth.revoke("nope")
    with pytest.raises(Exception, match="Not Authorized"):
        auth.check("\x00" * 10)


def test_a_token_in_the_url_is_only_for_cli(fresh: CtiStack) -> None:
    token = fresh.server.login("admin")
    anon = fresh.server.anonymous()
    assert anon.get("/api/queues", params={"key": token}).status_code == 401
    assert anon.get("/cli", params={"key": token, "cmd": "bogus"}).status_code == 403


def test_redis_down_answers_503(stack: CtiStack) -> None:
    private = RedisServer().start()
    settings = stack.server.services.settings
    server = start_server(dataclasses.replace(settings, redis=dataclasses.replace(
        settings.redis, url=Secret(private.url))))
    try:
        client = server.client(token=API_TOKEN)  # checked without Redis
        assert client.get("/api/queues").status_code == 200
        private.close()
        reply = client.get("/api/queues")
        assert reply.status_code == 503, reply.text
        assert "unavailable" in reply.json()["error"]
        assert server.anonymous().post("/api/login", json={
            "username": "admin", "password": "admin"}).status_code == 503
    finally:
        server.close()
        private.close()
