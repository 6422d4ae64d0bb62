"""``fsapps users add / list``: the user and its password hash land in the settings file's
``users:`` list (the rest of the file, comments included, untouched), the file still loads,
weak passwords and unknown roles are refused, hashes are never printed."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import yaml

from fsapps import cli, config
from fsapps.server.passwords import verify_password


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A copy of the shipped sample (every setting, many comments, ``users: []``), two
    domains."""
    path = tmp_path / "fsapps.yaml"
    shutil.copy(config.BUNDLED_PATH, path)
    text = path.read_text(encoding="utf-8").replace("domains:\n  - default\n",
                                                    "domains:\n  - default\n  - sales.test\n")
    path.write_text(text, encoding="utf-8")
    return path


def add(conf: Path, monkeypatch: pytest.MonkeyPatch, *args: str,
        password: str = "correct horse") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return cli.main(["users", "add", *args, "--password-stdin", "--config", str(conf)])


def users(conf: Path) -> dict[str, config.UserSettings]:
    return {u.username: u for u in config.load_settings(str(conf), {}).users}


def test_add_writes_a_hashed_user_that_loads_and_verifies(
        conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    before = conf.read_text(encoding="utf-8")

    assert add(conf, monkeypatch, "alice", "--role", "supervisor", "--extension", "1001",
               "--domains", "default,sales.test") == 0

    assert "'alice' (supervisor) added to" in capsys.readouterr().err
    alice = users(conf)["alice"]
    assert (alice.role, alice.extension, alice.domains) == (
        "supervisor", "1001", ("default", "sales.test"))
    assert verify_password("correct horse", alice.password_hash.reveal())
    after = conf.read_text(encoding="utf-8")
    assert "correct horse" not in after
    # only the users block changed: every comment and setting line is still there
    kept = [line for line in before.splitlines() if line != "users: []"]
    assert [line for line in after.splitlines() if line in kept] == kept
    assert config.load_settings(str(conf), {}).cti == config.load_settings(str(conf), {}).cti


def test_add_again_updates_the_user_in_place(
        conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert add(conf, monkeypatch, "alice", "--role", "agent", "--extension", "1001") == 0
    assert add(conf, monkeypatch, "bob", "--role", "agent", "--extension", "1002") == 0
    assert add(conf, monkeypatch, "alice", "--role", "supervisor",
               password="another good one") == 0

    found = users(conf)
    assert list(found) == ["alice", "bob"]
    assert (found["alice"].role, found["alice"].extension) == ("supervisor", "1001")
    assert verify_password("another good one", found["alice"].password_hash.reveal())
    assert not verify_password("correct horse", found["alice"].password_hash.reveal())
    assert verify_password("correct horse", found["bob"].password_hash.reveal())


def test_list_shows_names_roles_extensions_never_hashes(
        conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    add(conf, monkeypatch, "alice", "--role", "admin")
    add(conf, monkeypatch, "bob", "--role", "agent", "--extension", "1002")
    capsys.readouterr()

    assert cli.main(["users", "list", "--config", str(conf)]) == 0

    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()]
    assert lines == [["USER", "ROLE", "EXTENSION", "DOMAINS"], ["alice", "admin", "-", "-"],
                     ["bob", "agent", "1002", "-"]]
    assert "pbkdf2" not in out


@pytest.mark.parametrize("username, password, reason", [
    ("alice", "short", "shorter than 8 characters"),
    ("supervisor", "supervisor", "the same as the user name"),
    ("alice-smith", "ALICE-SMITH", "the same as the user name"),
    ("bob", "", "shorter than 8 characters"),
])
def test_weak_passwords_are_refused_and_nothing_is_written(
        conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        username: str, password: str, reason: str) -> None:
    before = conf.read_bytes()

    assert add(conf, monkeypatch, username, "--role", "agent", password=password) == 1

    assert f"password refused for {username!r}: {reason}" in capsys.readouterr().err
    assert conf.read_bytes() == before


def test_an_unknown_role_is_refused(conf: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    before = conf.read_bytes()
    with pytest.raises(SystemExit) as caught:
        add(conf, monkeypatch, "alice", "--role", "root")
    assert caught.value.code == 2
    assert "invalid choice: 'root'" in capsys.readouterr().err
    assert conf.read_bytes() == before


def test_a_user_the_loader_refuses_is_not_written(
        conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    before = conf.read_bytes()

    assert add(conf, monkeypatch, "alice", "--role", "supervisor", "--domains", "nowhere") == 1

    assert "users[0].domains[0]" in capsys.readouterr().err
    assert conf.read_bytes() == before
    assert not [p for p in conf.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_new_file_gets_just_the_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "new.yaml"

    assert add(path, monkeypatch, "alice", "--role", "admin") == 0

    assert yaml.safe_load(path.read_text(encoding="utf-8"))["users"][0]["username"] == "alice"
    assert users(path)["alice"].role == "admin"


def test_the_repository_sample_is_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("FSAPPS_CONFIG", raising=False)
    monkeypatch.setattr(config, "SYSTEM_PATH", tmp_path / "absent.yaml")
    before = config.BUNDLED_PATH.read_bytes()
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))

    assert cli.main(["users", "add", "alice", "--role", "admin", "--password-stdin"]) == 1

    assert "copy it to" in capsys.readouterr().err
    assert config.BUNDLED_PATH.read_bytes() == before
