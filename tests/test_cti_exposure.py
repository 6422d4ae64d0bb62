"""The CTI server refuses to start on an address other machines reach while a user has a
published demo password (admin/admin, supervisor/supervisor, agent/agent); on 127.0.0.1 the
demo users are fine, and strong passwords are fine anywhere."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from fsapps import cli
from fsapps.config import RedisSettings, Secret, Settings, UserSettings
from fsapps.errors import ConfigError
from fsapps.server.app import BackgroundServer, is_loopback, refuse_demo_passwords
from fsapps.server.passwords import SHIPPED_DEMO_HASHES, hash_password
from fsapps.server.services import CtiServices

FAST = 1_000  # cheap hashes: the check verifies whatever iteration count a hash names


def user(name: str, password: str, role: str = "agent") -> UserSettings:
    return UserSettings(name, Secret(hash_password(password, iterations=FAST)), role)


def test_fsapps_cti_serve_refuses_a_demo_password_on_every_interface(
        tmp_path: Path, redis_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "fsapps.yaml"
    config.write_text(yaml.safe_dump({
        "redis": {"url": redis_server.url, "key_prefix": "exposure"},
        "cti": {"listen": "0.0.0.0", "port": 1},  # never bound: refused first
        "users": [
            {"username": "admin", "role": "admin",
             "password_hash": hash_password("admin", iterations=FAST)},
            {"username": "alice", "role": "supervisor",
             "password_hash": hash_password("a strong one", iterations=FAST)},
        ]}), encoding="utf-8")

    assert cli.main(["--config", str(config), "cti", "serve"]) == 1

    error = capsys.readouterr().err
    assert "['admin']" in error and "alice" not in error
    assert "0.0.0.0" in error and "fsapps users add" in error and "127.0.0.1" in error


@pytest.mark.parametrize("users, exposed", [
    ([user("admin", "admin", "admin")], ["admin"]),
    ([user("supervisor", "agent", "supervisor")], ["supervisor"]),  # another demo password
    ([UserSettings("alice", Secret(next(iter(SHIPPED_DEMO_HASHES))))], ["alice"]),  # copied line
    ([user("agent", "agent"), user("bob", "s3cret pass")], ["agent"]),
])
@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "10.0.0.5", "cti.example.com"])
def test_demo_passwords_are_refused_where_other_machines_reach(
        users: list[UserSettings], exposed: list[str], host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        refuse_demo_passwords(users, host)

    assert (caught.value.key, caught.value.value) == ("users", exposed)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_demo_passwords_are_fine_on_loopback(host: str) -> None:
    assert is_loopback(host)
    refuse_demo_passwords([user("admin", "admin", "admin")], host)


def own_redis(redis_server: Any) -> RedisSettings:
    """The test's own Redis (the defaults name the machine's 127.0.0.1:6379, which a test must
    not depend on: with it down these servers failed to start)."""
    return RedisSettings(url=Secret(redis_server.url), key_prefix="exposure")


def test_a_server_with_demo_passwords_starts_on_127_0_0_1(redis_server: Any) -> None:
    settings = dataclasses.replace(Settings(), users=(user("admin", "admin", "admin"),),
                                   redis=own_redis(redis_server))
    server = BackgroundServer(CtiServices(settings, workers=1), "127.0.0.1", 0)
    try:
        assert requests.get(f"{server.url}/api/openapi.json", timeout=5).status_code == 200
    finally:
        server.close()


def test_a_server_with_strong_passwords_starts_on_every_interface(redis_server: Any) -> None:
    settings = dataclasses.replace(Settings(), users=(
        user("admin", "Tr0ub4dor&3", "admin"), user("carol", "correct horse battery")),
        redis=own_redis(redis_server))
    server = BackgroundServer(CtiServices(settings, workers=1), "0.0.0.0", 0)
    try:
        reply = requests.get(f"http://127.0.0.1:{server.port}/api/openapi.json", timeout=5)
        assert reply.status_code == 200
    finally:
        server.close()


def test_a_server_with_a_demo_password_does_not_start_on_every_interface(
        redis_server: Any) -> None:
    settings = dataclasses.replace(Settings(), users=(user("agent", "agent"),),
                                   redis=own_redis(redis_server))
    services = CtiServices(settings, workers=1)
    try:
        with pytest.raises(ConfigError):
            BackgroundServer(services, "0.0.0.0", 0)
    finally:
        services.close()
