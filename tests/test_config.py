"""Settings: defaults, the sample file, where the file is found, FSAPPS_* overrides, validation,
secrets that never show, `fsapps config check`, and the password hashes users log in with."""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from fsapps import cli, config
from fsapps.config import (
    AmqpSettings,
    GroupDefaults,
    NatsSettings,
    RedisSettings,
    Secret,
    Settings,
    UserSettings,
)
from fsapps.errors import ConfigError
from fsapps.server.passwords import hash_password, is_password_hash, verify_password

# Cheap hashes for tests that only need the right shape; the default cost is tested once.
FAST = 1_000
HASH = hash_password("pw", iterations=FAST)


@pytest.fixture
def nowhere(tmp_path: Path) -> Path:
    return tmp_path / "absent.yaml"


def load(
    tmp_path: Path, text: str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from ``text`` (or no file at all) with nothing else on the machine consulted."""
    missing = tmp_path / "absent.yaml"
    path = None
    if text is not None:
        file = tmp_path / "fsapps.yaml"
        file.write_text(textwrap.dedent(text), encoding="utf-8")
        path = str(file)
    return config.load_settings(path, environ or {}, system_path=missing, bundled_path=missing)


def load_error(tmp_path: Path, text: str | None = None,
               environ: Mapping[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, environ)
    return caught.value


# ---- defaults and the sample ------------------------------------------------------------------


def test_no_file_and_no_environment_give_the_defaults(tmp_path: Path) -> None:
    assert load(tmp_path) == Settings()


def test_an_empty_file_and_empty_sections_give_the_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "# nothing yet\n") == Settings()
    assert load(tmp_path, "redis:\ncti:\nusers:\n") == Settings()


SEED_EVENTS = (
    "CHANNEL_CREATE", "CHANNEL_STATE", "CHANNEL_ANSWER", "CHANNEL_BRIDGE",
    "CHANNEL_HANGUP_COMPLETE", "RECORD_START", "RECORD_STOP", "CUSTOM sofia::register",
    "CUSTOM sofia::unregister", "CUSTOM conference::maintenance", "CUSTOM callcenter::info",
    "DTMF", "DETECTED_SPEECH",
)


def test_the_sample_file_is_the_defaults_plus_seed_events(nowhere: Path) -> None:
    settings = config.load_settings(str(config.BUNDLED_PATH), {}, system_path=nowhere)

    assert settings == dataclasses.replace(Settings(), nats=NatsSettings(events=SEED_EVENTS))


def test_the_sample_ships_no_user_and_no_password_hash() -> None:
    """An administrator starts from the sample: nobody may log in until `fsapps users add`
    (the demo brings its own users)."""
    text = config.BUNDLED_PATH.read_text(encoding="utf-8")

    assert yaml.safe_load(text)["users"] == []
    assert "pbkdf2_sha256$600000$" not in text.replace("pbkdf2_sha256$600000$...", "")


def test_the_sample_mentions_every_setting() -> None:
    text = config.BUNDLED_PATH.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    defaults = config.masked_dict(Settings())
    for section, value in defaults.items():
        assert section in data
        if isinstance(value, dict):
            assert set(data[section]) == set(value), section


# ---- where the file is found ------------------------------------------------------------------


@pytest.fixture
def four_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for name, port in (("explicit", 1001), ("variable", 1002), ("system", 1003),
                       ("bundled", 1004)):
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_text(f"cti:\n  port: {port}\n", encoding="utf-8")
    return files


def test_path_order_argument_variable_system_bundled(four_files: dict[str, Path]) -> None:
    def port(path: str | None, environ: dict[str, str], system: Path, bundled: Path) -> int:
        settings = config.load_settings(path, environ, system_path=system, bundled_path=bundled)
        return settings.cti.port

    gone = four_files["explicit"].with_name("gone.yaml")
    variable = {"FSAPPS_CONFIG": str(four_files["variable"])}
    system, bundled = four_files["system"], four_files["bundled"]

    assert port(str(four_files["explicit"]), variable, system, bundled) == 1001
    assert port(None, variable, system, bundled) == 1002
    assert port(None, {}, system, bundled) == 1003
    assert port(None, {}, gone, bundled) == 1004
    assert port(None, {}, gone, gone) == 8085  # no file: built-in defaults
    assert config.config_path(None, {}, system_path=gone, bundled_path=gone) is None
    assert config.config_path(None, variable, system_path=gone) == four_files["variable"]


@pytest.mark.parametrize("path, environ, key", [
    ("{missing}", {}, "--config"),
    (None, {"FSAPPS_CONFIG": "{missing}"}, "FSAPPS_CONFIG"),
])
def test_a_named_file_that_does_not_exist_is_an_error(
    tmp_path: Path, path: str | None, environ: dict[str, str], key: str
) -> None:
    missing = str(tmp_path / "missing.yaml")
    path = path and path.format(missing=missing)
    environ = {name: value.format(missing=missing) for name, value in environ.items()}

    with pytest.raises(ConfigError) as caught:
        config.load_settings(path, environ, system_path=tmp_path / "etc.yaml")

    assert (caught.value.key, caught.value.value) == (key, missing)


def test_the_bundled_path_is_the_repository_sample() -> None:
    assert config.BUNDLED_PATH == Path(config.__file__).resolve().parent.parent / "conf" / \
        "fsapps.yaml"
    assert config.BUNDLED_PATH.is_file()


# ---- environment overrides --------------------------------------------------------------------


@pytest.mark.parametrize("variable, text, read, expected", [
    ("FSAPPS_REDIS_URL", "rediss://:pw@redis.example:6380/2",
     lambda s: s.redis.url.reveal(), "rediss://:pw@redis.example:6380/2"),
    ("FSAPPS_REDIS_KEY_PREFIX", "acd", lambda s: s.redis.key_prefix, "acd"),
    ("FSAPPS_REDIS_SOCKET_TIMEOUT", "0.5", lambda s: s.redis.socket_timeout, 0.5),
    ("FSAPPS_REDIS_SOCKET_TIMEOUT", "3", lambda s: s.redis.socket_timeout, 3.0),
    ("FSAPPS_REDIS_CLUSTER", "yes", lambda s: s.redis.cluster, True),
    ("FSAPPS_REDIS_SENTINELS", "10.0.0.1:26379, s2:26380,[::1]:26381",
     lambda s: s.redis.sentinels, (("10.0.0.1", 26379), ("s2", 26380), ("::1", 26381))),
    ("FSAPPS_POSTGRES_DSN", "host=db dbname=fsapps", lambda s: s.postgres.dsn,
     Secret("host=db dbname=fsapps")),
    ("FSAPPS_POSTGRES_CONNECT_TIMEOUT", "9", lambda s: s.postgres.connect_timeout, 9),
    ("FSAPPS_NATS_ENABLED", "TRUE", lambda s: s.nats.enabled, True),
    ("FSAPPS_NATS_ENABLED", "0", lambda s: s.nats.enabled, False),
    ("FSAPPS_NATS_EVENTS", "CHANNEL_ANSWER,CUSTOM sofia::register", lambda s: s.nats.events,
     ("CHANNEL_ANSWER", "CUSTOM sofia::register")),
    ("FSAPPS_AMQP_ENABLED", "no", lambda s: s.amqp.enabled, False),
    ("FSAPPS_CTI_PORT", "9085", lambda s: s.cti.port, 9085),
    ("FSAPPS_GROUP_DEFAULTS_CALL_MODE", "2", lambda s: s.group_defaults.call_mode, 2),
    ("FSAPPS_EVENTS_PUBSUB_FORMAT", "comma", lambda s: s.events.pubsub_format, "comma"),
    ("FSAPPS_API_TOKENS", "a" * 16 + "," + "b" * 16, lambda s: len(s.api_tokens), 2),
    ("FSAPPS_NODE_NAME", "fs-2", lambda s: s.node_name, "fs-2"),
    ("FSAPPS_RELAY_PROFILE", "internal", lambda s: s.relay_profile, "internal"),
])
def test_an_environment_variable_overrides_one_value(
    tmp_path: Path, variable: str, text: str, read: Any, expected: Any
) -> None:
    assert read(load(tmp_path, environ={variable: text})) == expected


def test_the_environment_wins_over_the_file_and_keeps_its_other_values(tmp_path: Path) -> None:
    settings = load(tmp_path, "cti:\n  port: 9000\n  listen: 127.0.0.1\n",
                    {"FSAPPS_CTI_PORT": "9001", "HOME": "/root"})

    assert (settings.cti.port, settings.cti.listen) == (9001, "127.0.0.1")


def test_domains_from_the_environment(tmp_path: Path) -> None:
    settings = load(tmp_path, environ={"FSAPPS_DOMAINS": "a.example, b.example",
                                       "FSAPPS_DEFAULT_DOMAIN": "b.example"})

    assert (settings.domains, settings.default_domain) == (("a.example", "b.example"), "b.example")


@pytest.mark.parametrize("environ, key, value, reason", [
    ({"FSAPPS_CTI_PORT": "80a"}, "cti.port", "80a", "expected an integer (from $FSAPPS_CTI_PORT)"),
    ({"FSAPPS_CTI_PORT": "70000"}, "cti.port", 70000, "from $FSAPPS_CTI_PORT"),
    ({"FSAPPS_NATS_ENABLED": "maybe"}, "nats.enabled", "maybe", "true/false"),
    ({"FSAPPS_REDIS_SOCKET_TIMEOUT": "soon"}, "redis.socket_timeout", "soon", "a number"),
    ({"FSAPPS_REDIS_SENTINELS": "s1:26379,s2"}, "redis.sentinels[1]", "s2", "host:port"),
])
def test_a_bad_environment_value_names_the_setting_and_the_variable(
    tmp_path: Path, environ: dict[str, str], key: str, value: object, reason: str
) -> None:
    error = load_error(tmp_path, environ=environ)

    assert (error.key, error.value) == (key, value)
    assert reason in error.reason


def test_other_environment_variables_are_ignored(tmp_path: Path) -> None:
    assert load(tmp_path, environ={"PATH": "/bin", "DATABASE_URL": "postgresql://x@y/z",
                                   "FSAPPSX": "1"}) == Settings()


@pytest.fixture
def warnings_logged(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """What config logs through fsapps.fslog.log, with this process's 'already warned' memory
    emptied for the test."""
    logged: list[tuple[str, str]] = []
    monkeypatch.setattr(config, "_warned", set())
    monkeypatch.setattr("fsapps.fslog.log", lambda level, message: logged.append((level,
                                                                                  message)))
    return logged


def test_an_unknown_fsapps_variable_is_a_warning_once_not_an_error(
    tmp_path: Path, warnings_logged: list[tuple[str, str]]
) -> None:
    """F7a: FSAPPS_HOME in the switch's environment stopped every entry point (ConfigError at
    the first get_context); now it is ignored, and logged once per process."""
    environ = {"FSAPPS_HOME": "/opt/fsapps", "FSAPPS_CTI_PORT": "9001"}

    assert load(tmp_path, environ=environ) == dataclasses.replace(
        Settings(), cti=dataclasses.replace(Settings().cti, port=9001))
    assert warnings_logged == [("WARNING", "config: $FSAPPS_HOME names no setting and is "
                                "ignored; the closest setting is $FSAPPS_NODE_NAME (node_name)")]
    load(tmp_path, environ=environ)
    load(tmp_path, environ={**environ, "FSAPPS_RELAY_PROFLE": "internal"})
    assert len(warnings_logged) == 2
    assert "$FSAPPS_RELAY_PROFLE" in warnings_logged[1][1]
    assert "the closest setting is $FSAPPS_RELAY_PROFILE (relay_profile)" in warnings_logged[1][1]


@pytest.mark.parametrize("environ, says", [
    ({"FSAPPS_RELAY_PROFLE": "internal"},
     "closest setting is $FSAPPS_RELAY_PROFILE (relay_profile)"),
    ({"FSAPPS_CONFG": "/etc/x.yaml"}, "closest setting is $FSAPPS_CONFIG"),
    ({"FSAPPS_USERS": "admin"}, "users cannot be set from the environment"),
    ({"FSAPPS_REDIS_PASSWORD": "pw-in-env"}, "redis.sentinel_password"),
])
def test_an_ignored_variable_is_named_with_the_closest_setting_never_its_value(
    tmp_path: Path, environ: dict[str, str], says: str
) -> None:
    assert load(tmp_path, environ=environ) == Settings()
    [line] = config.environment_warnings(environ)
    [variable] = environ
    assert f"${variable}" in line and says in line
    assert environ[variable] not in line


def test_config_check_shows_the_ignored_variables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent.yaml"
    environ = {"FSAPPS_HOME": "/opt/fsapps", "FSAPPS_CTI_PORT": "9999"}
    assert config.check_command(None, environ=environ, system_path=missing,
                                bundled_path=missing) == 0
    out, err = capsys.readouterr()
    assert err == ("fsapps: warning: config: $FSAPPS_HOME names no setting and is ignored; "
                   "the closest setting is $FSAPPS_NODE_NAME (node_name)\n")
    assert yaml.safe_load(out)["cti"]["port"] == 9999

    environ["FSAPPS_CTI_PORT"] = "0"
    assert config.check_command(None, environ=environ, system_path=missing,
                                bundled_path=missing) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("fsapps: warning: config: $FSAPPS_HOME")
    assert err[1].startswith("fsapps: config: cti.port = 0")


def test_an_entry_point_starts_with_an_unknown_variable_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warnings_logged: list[tuple[str, str]]
) -> None:
    """What the switch's entry points do first (fsapps.context.get_context) works with
    FSAPPS_HOME in the process environment."""
    from fsapps import context

    file = tmp_path / "fsapps.yaml"
    file.write_text("node_name: fs-env\n", encoding="utf-8")
    monkeypatch.setenv("FSAPPS_CONFIG", str(file))
    monkeypatch.setenv("FSAPPS_HOME", "/opt/fsapps")
    monkeypatch.setattr(context, "_context", None)

    assert context.get_context().settings.node_name == "fs-env"
    assert [m for _, m in warnings_logged if "$FSAPPS_HOME" in m]


# ---- validation: one error naming the key and the value ---------------------------------------


def users_yaml(*extras: str) -> str:
    """A users list with one user named "a" per extra field text ("" for none)."""
    lines = [f"  - {{username: a, password_hash: '{HASH}'{', ' + extra if extra else ''}}}\n"
             for extra in extras]
    return "users:\n" + "".join(lines)



@pytest.mark.parametrize("text, key, value", [
    ("cti:\n  port: 0\n", "cti.port", 0),
    ("cti:\n  port: 65536\n", "cti.port", 65536),
    ("cti:\n  port: '8085'\n", "cti.port", "8085"),
    ("cti:\n  port: true\n", "cti.port", True),
    ("cti:\n  listen: ''\n", "cti.listen", ""),
    ("cti:\n  token_ttl_seconds: 0\n", "cti.token_ttl_seconds", 0),
    ("cti: 8085\n", "cti", 8085),
    ("group_defaults:\n  call_mode: 6\n", "group_defaults.call_mode", 6),
    ("group_defaults:\n  call_mode: -1\n", "group_defaults.call_mode", -1),
    ("group_defaults:\n  callout_timeout: 0\n", "group_defaults.callout_timeout", 0),
    ("group_defaults:\n  wrapup_seconds: -5\n", "group_defaults.wrapup_seconds", -5),
    ("group_defaults:\n  busy_ring_repeats: -1\n", "group_defaults.busy_ring_repeats", -1),
    ("group_defaults:\n  hold_music: 5\n", "group_defaults.hold_music", 5),
    ("relay_profile: 'a b'\n", "relay_profile", "a b"),
    ("events:\n  pubsub_format: xml\n", "events.pubsub_format", "xml"),
    ("redis:\n  key_prefix: ''\n", "redis.key_prefix", ""),
    ("redis:\n  key_prefix: 'fs{x}'\n", "redis.key_prefix", "fs{x}"),
    ("redis:\n  key_prefix: 'fs apps'\n", "redis.key_prefix", "fs apps"),
    ("redis:\n  url: http://127.0.0.1:6379/0\n", "redis.url", "http://127.0.0.1:6379/0"),
    ("redis:\n  url: redis://127.0.0.1:0/0\n", "redis.url", "redis://127.0.0.1:0/0"),
    ("redis:\n  url: redis:///0\n", "redis.url", "redis:///0"),
    ("redis:\n  socket_timeout: 0\n", "redis.socket_timeout", 0.0),
    ("redis:\n  sentinels: [s1:26379, 's2:99999']\n", "redis.sentinels[1]", 99999),
    ("redis:\n  sentinels: [s1:26379, s2]\n", "redis.sentinels[1]", "s2"),
    ("redis:\n  sentinels: s1:26379\n", "redis.sentinels", "s1:26379"),
    ("redis:\n  sentinels: [s1:26379]\n  cluster: true\n", "redis.cluster", True),
    ("postgres:\n  dsn: not a dsn\n", "postgres.dsn", "**********"),
    ("postgres:\n  dsn: mysql://root@db/x\n", "postgres.dsn", "mysql://root@db/x"),
    ("postgres:\n  dsn: postgresql://u@db:70000/x\n", "postgres.dsn", "postgresql://u@db:70000/x"),
    ("nats:\n  url: http://n:4222\n", "nats.url", "http://n:4222"),
    ("nats:\n  subject_prefix: 'cn.*'\n", "nats.subject_prefix", "cn.*"),
    ("nats:\n  events: [channel_answer]\n", "nats.events[0]", "channel_answer"),
    ("nats:\n  enabled: 'yes please'\n", "nats.enabled", "yes please"),
    ("amqp:\n  url: redis://h\n", "amqp.url", "redis://h"),
    (users_yaml("role: boss"), "users[0].role", "boss"),
    (users_yaml("extension: 1000"), "users[0].extension", 1000),
    ("users:\n  - {username: a}\n", "users[0].password_hash", None),
    (f"users:\n  - {{password_hash: '{HASH}'}}\n", "users[0].username", None),
    (users_yaml("", ""), "users[1].username", "a"),
    ("users:\n  - {username: a, password_hash: md5$abc}\n", "users[0].password_hash",
     "**********"),
    ("users: {username: a}\n", "users", {"username": "a"}),
    ("api_tokens: [short]\n", "api_tokens[0]", "**********"),
    ("domains: [a.example]\n", "default_domain", "default"),
    ("domains: ['{a}']\ndefault_domain: '{a}'\n", "domains[0]", "{a}"),
    ("domains: [a, a]\ndefault_domain: a\n", "domains[1]", "a"),
    ("node_name: 'node 1'\n", "node_name", "node 1"),
])
def test_an_invalid_value_is_one_error_naming_key_and_value(
    tmp_path: Path, text: str, key: str, value: object
) -> None:
    error = load_error(tmp_path, text)

    assert (error.key, error.value) == (key, value)
    assert str(error).startswith(f"config: {key} = {value!r}: ")


def test_a_plain_password_is_refused_without_echoing_it(tmp_path: Path) -> None:
    error = load_error(tmp_path, "users:\n  - {username: admin, password: hunter2hunter2}\n")

    assert error.key == "users[0].password"
    assert "fsapps.server.passwords" in error.reason
    assert "hunter2" not in str(error)


def test_the_error_for_a_bad_secret_url_masks_its_password(tmp_path: Path) -> None:
    error = load_error(tmp_path, "redis:\n  url: http://:topsecret@h:6379/0\n")

    assert error.value == "http://:*****@h:6379/0"
    assert "topsecret" not in str(error)


@pytest.mark.parametrize("text, key, hint", [
    ("redis:\n  ulr: redis://h\n", "redis.ulr", "did you mean 'url'?"),
    ("relay_profil: internal\n", "relay_profil", "did you mean 'relay_profile'?"),
    ("group_defaults:\n  call_mod: 3\n", "group_defaults.call_mod", "did you mean 'call_mode'?"),
    (users_yaml("rol: agent"), "users[0].rol", "did you mean 'role'?"),
    ("cti:\n  zzz: 1\n", "cti.zzz",
     "known: agent_presence_timeout_seconds, cli_commands, cors_origins, listen"),
])
def test_an_unknown_key_is_named_with_the_close_match(
    tmp_path: Path, text: str, key: str, hint: str
) -> None:
    error = load_error(tmp_path, text)

    assert error.key == key
    assert error.reason.startswith("unknown setting")
    assert hint in error.reason


def test_a_retired_setting_is_ignored_with_a_warning_once(
    tmp_path: Path, warnings_logged: list[tuple[str, str]]
) -> None:
    """log_level was a setting nothing read; a file that still sets it loads (an upgrade must
    not stop the switch's entry points over it) and says once that it is ignored."""
    assert load(tmp_path, "log_level: DEBUG\nnode_name: fs1\n") == \
        dataclasses.replace(Settings(), node_name="fs1")
    load(tmp_path, "log_level: INFO\n")
    assert warnings_logged == [("WARNING", "config: log_level is ignored: no longer used (inside "
                                "the switch fsapps logs at FreeSWITCH's own console levels; the "
                                "fsapps command sets its own); delete the line")]


def test_an_unknown_key_that_looks_secret_is_not_echoed(tmp_path: Path) -> None:
    error = load_error(tmp_path, "postgres:\n  dns: postgresql://u:pgsecret@db/x\n")

    assert error.key == "postgres.dns"
    assert "did you mean 'dsn'?" in error.reason
    assert "pgsecret" not in str(error)


def test_a_yaml_syntax_error_names_the_file_and_the_position(tmp_path: Path) -> None:
    error = load_error(tmp_path, "cti:\n  port: 8085\n listen: [\n")

    assert error.key == str(tmp_path / "fsapps.yaml")
    assert error.value == "line 3, column 2"
    assert error.reason.startswith("YAML syntax error: ")


def test_a_key_given_twice_is_a_yaml_error(tmp_path: Path) -> None:
    error = load_error(tmp_path, "cti:\n  port: 1\n  port: 2\n")

    assert error.value == "line 3, column 3"
    assert "duplicate key 'port'" in error.reason


def test_a_file_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    error = load_error(tmp_path, "- redis\n- cti\n")

    assert (error.key, error.value) == (str(tmp_path / "fsapps.yaml"), "list")


# ---- secrets never show -----------------------------------------------------------------------

SECRET_WORDS = ("redispw1", "sentinelpw2", "pgpw3", "natspw4", "amqppw5", "apitoken6")
SECRET_FILE = f"""\
redis:
  url: redis://:redispw1@cache.example:6379/0
  sentinel_password: sentinelpw2
postgres:
  dsn: postgresql://postgres:pgpw3@127.0.0.1/fsapps
nats:
  url: nats://user:natspw4@nats.example:4222
amqp:
  url: amqp://guest:amqppw5@mq.example:5672/%2F
users:
  - username: admin
    password_hash: '{HASH}'
    role: admin
api_tokens:
  - apitoken6-0123456789
"""


def assert_no_secret(text: str) -> None:
    for word in (*SECRET_WORDS, HASH, HASH.split("$")[3]):
        assert word not in text


def test_secrets_are_absent_from_repr_str_and_masked_dict(tmp_path: Path) -> None:
    settings = load(tmp_path, SECRET_FILE)
    assert settings.redis.url.reveal() == "redis://:redispw1@cache.example:6379/0"

    assert_no_secret(repr(settings))
    assert_no_secret(str(settings))
    assert_no_secret(repr(settings.users))
    masked = config.masked_dict(settings)
    assert_no_secret(yaml.safe_dump(masked))
    assert masked["redis"]["url"] == "redis://:*****@cache.example:6379/0"
    assert masked["postgres"]["dsn"] == "postgresql://postgres:*****@127.0.0.1/fsapps"
    assert masked["redis"]["sentinel_password"] == "**********"
    assert masked["users"][0]["password_hash"] == "**********"
    assert masked["api_tokens"] == ["**********"]


@pytest.mark.parametrize("url, masked", [
    ("redis://:pw@host:6379/0", "redis://:*****@host:6379/0"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://pw@host", "redis://*****@host"),
    ("postgresql://postgres:pw@127.0.0.1/fsapps", "postgresql://postgres:*****@127.0.0.1/fsapps"),
    ("postgresql://postgres@127.0.0.1/fsapps", "postgresql://postgres@127.0.0.1/fsapps"),
    ("postgresql://u@db/x?sslmode=require&password=pw",
     "postgresql://u@db/x?sslmode=require&password=*****"),
    ("host=db password='p w' dbname=x", "host=db password=***** dbname=x"),
    ("host=db password=pw", "host=db password=*****"),
    ("nats://token@a:4222,nats://u:pw@b:4222", "nats://*****@a:4222,nats://u:*****@b:4222"),
    ("unix:///run/redis.sock?password=pw&db=1", "unix:///run/redis.sock?password=*****&db=1"),
    ("redis://:p/w@host/0", "**********"),
    ("pw", "**********"),
])
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert config.mask_url(url) == masked


def test_masked_dict_of_password_free_settings_loads_back_unchanged(tmp_path: Path) -> None:
    settings = dataclasses.replace(
        Settings(), redis=RedisSettings(sentinels=(("s1", 26379), ("::1", 26380))),
        amqp=AmqpSettings(url=Secret("amqp://mq.example:5672/%2F")),
        group_defaults=GroupDefaults(call_mode=1),
    )
    file = tmp_path / "again.yaml"
    file.write_text(yaml.safe_dump(config.masked_dict(settings)), encoding="utf-8")

    assert config.load_settings(str(file), {}) == settings


# ---- fsapps config check ----------------------------------------------------------------------


def test_config_check_prints_the_masked_settings_and_their_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "fsapps.yaml"
    file.write_text(SECRET_FILE, encoding="utf-8")

    assert cli.main(["--config", str(file), "config", "check"]) == 0

    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"# settings file: {file}\n")
    assert "url: redis://:*****@cache.example:6379/0" in out
    assert_no_secret(out)
    assert yaml.safe_load(out)["cti"]["port"] == 8085


def test_config_check_on_a_bad_file_prints_one_line_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "fsapps.yaml"
    file.write_text("redis:\n  url: ftp://:pw9@h/0\ncti:\n  port: 0\n", encoding="utf-8")

    assert cli.main(["--config", str(file), "config", "check"]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err == "fsapps: config: redis.url = 'ftp://:*****@h/0': the scheme must be one of " \
        "redis, rediss, unix\n"


def test_config_check_with_no_file_shows_the_defaults_and_the_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent.yaml"
    code = config.check_command(None, environ={"FSAPPS_CTI_PORT": "9999"},
                                system_path=missing, bundled_path=missing)

    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("# settings file: (none: built-in defaults)\n"
                          "# cti.port from $FSAPPS_CTI_PORT\n")
    assert yaml.safe_load(out)["cti"]["port"] == 9999


def test_config_check_reports_a_missing_named_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert config.check_command(str(tmp_path / "nope.yaml"), environ={}) == 1
    assert "--config" in capsys.readouterr().err


# ---- password hashes --------------------------------------------------------------------------


def test_a_password_hash_verifies_its_password_and_refuses_others() -> None:
    hashed = hash_password("correct horse")

    assert hashed.startswith("pbkdf2_sha256$600000$")
    assert is_password_hash(hashed)
    assert verify_password("correct horse", hashed)
    assert not verify_password("correct horse ", hashed)
    assert not verify_password("", hashed)


def test_each_hash_has_its_own_salt() -> None:
    first, second = hash_password("same", iterations=FAST), hash_password("same", iterations=FAST)

    assert first != second
    assert verify_password("same", first) and verify_password("same", second)


@pytest.mark.parametrize("hashed", [
    "", "pw", "md5$1$abc$def", "pbkdf2_sha256$x$AAAA$AAAA", "pbkdf2_sha256$0$AAAA$AAAA",
    "pbkdf2_sha256$1000$not base64!$AAAA", "pbkdf2_sha256$1000$$AAAA", HASH + "$extra",
])
def test_a_malformed_hash_matches_nothing(hashed: str) -> None:
    assert not is_password_hash(hashed)
    assert not verify_password("pw", hashed)


def test_user_settings_repr_hides_the_hash() -> None:
    user = UserSettings("admin", Secret(HASH), role="admin")

    assert HASH not in repr(user)
    assert user.password_hash.reveal() == HASH
