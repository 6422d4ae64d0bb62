"""F7: the runtime (python.conf.xml's startup-script) keeps trying while its configuration is
bad — loud at CRIT on every try — and comes up once the file is fixed, with no switch restart.
It read the settings once, before its retry loop, so a bad fsapps.yaml at start stopped it for
good (no heartbeat, no events, no aliases) while the switch ran on. An ``FSAPPS_*`` variable
that names no setting stops nothing. The real-switch test is tests/switch/test_lifecycle.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from fakefs.scenario import DIALPLAN_DIR, PYTHON_CONF, wait_until
from fakefs.switch import Switch
from fsapps import __version__, context
from fsapps.db.migrations import migrate
from tools.servers import FreshDatabase, RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads")

DOMAIN = "start.fsapps"
BAD_PORT = "cti.port = 70000: expected a port number 1..65535"


@pytest.fixture
def config_file(tmp_path: Path, redis_server: RedisServer, database: FreshDatabase,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The process settings come from this file (as in a switch), the context made afresh."""
    migrate(database.dsn)
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    path = tmp_path / "fsapps.yaml"
    monkeypatch.setenv("FSAPPS_CONFIG", str(path))
    monkeypatch.setattr(context, "_context", None)
    yield path


def settings(redis_server: RedisServer, database: FreshDatabase, **extra: object) -> str:
    return yaml.safe_dump({"redis": {"url": redis_server.url, "key_prefix": "rs"},
                           "postgres": {"dsn": database.dsn}, "domains": [DOMAIN],
                           "default_domain": DOMAIN, "node_name": "start1", **extra})


def crit_tries(sw: Switch) -> list[str]:
    return [m for level, m in list(sw.log) if level == "CRIT" and "runtime cannot start" in m]


def test_a_bad_config_at_start_is_retried_loudly_until_it_is_fixed(
        config_file: Path, redis_server: RedisServer, database: FreshDatabase,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSAPPS_HOME", "/opt/fsapps")  # unrelated: must stop nothing
    config_file.write_text(settings(redis_server, database, cti={"port": 70000}))
    sw = Switch("start1", dialplan_dir=DIALPLAN_DIR, python_conf=PYTHON_CONF, domain=DOMAIN,
                time_scale=0.05, seed=1).start()
    try:
        # every try is logged, naming the bad key, value and why
        tries = wait_until(lambda: len(crit_tries(sw)) >= 2 and crit_tries(sw), 10,
                           "two logged tries")
        assert all(f"ConfigError: config: {BAD_PORT}" in line for line in tries), tries
        assert [t.is_alive() for t in sw.runtime_threads] == [True]
        reply = sw.api("python fsapps.diag")
        assert reply.startswith(f"-ERR fsapps {__version__}: failed: config\n"), reply
        assert f"config: failed: {BAD_PORT}" in reply

        config_file.write_text(settings(redis_server, database))
        with redis.Redis.from_url(redis_server.url) as client:
            wait_until(lambda: client.zscore("rs:{nodes}:nodes", "start1") is not None, 10,
                       "the runtime's heartbeat once the config is fixed")
        wait_until(lambda: any("runtime started on node start1" in m for _, m in sw.log), 5,
                   "the runtime started")
        reply = sw.api("python fsapps.diag")
        assert reply.startswith(f"+OK fsapps {__version__} node start1: "), reply
        assert "warning: config: $FSAPPS_HOME names no setting and is ignored" in reply
        # the aliases come with the runtime
        assert sw.aliases.get("nway_login") == "python fsapps.api nway_login"
    finally:
        sw.shutdown(grace=3.0)
    assert not [t for t in sw.runtime_threads if t.is_alive()]


def test_a_shutdown_while_the_runtime_waits_to_retry_ends_it_at_once(
        config_file: Path, redis_server: RedisServer, database: FreshDatabase) -> None:
    config_file.write_text(settings(redis_server, database, cti={"port": 70000}))
    sw = Switch("start2", dialplan_dir=DIALPLAN_DIR, python_conf=PYTHON_CONF, domain=DOMAIN,
                time_scale=0.05, seed=1).start()
    wait_until(lambda: len(crit_tries(sw)) >= 3, 15, "three tries (a 2 s wait next)")
    sw.running = False  # the runtime is between tries; no SystemExit is needed to end it
    [thread] = sw.runtime_threads
    thread.join(1.0)
    assert not thread.is_alive()
    sw.shutdown(grace=1.0)


def own_thread_names() -> set[str]:
    names = set()
    for comm in Path("/proc/self/task").glob("*/comm"):
        try:
            names.add(comm.read_text().strip())
        except OSError:  # the thread ended meanwhile
            continue
    return names


def test_the_runtimes_threads_carry_their_names_for_top_and_ps(
        config_file: Path, redis_server: RedisServer, database: FreshDatabase) -> None:
    """`top -H -p $(pidof freeswitch)` tells the runtime's threads from the switch's own."""
    config_file.write_text(settings(redis_server, database))
    sw = Switch("start3", dialplan_dir=DIALPLAN_DIR, python_conf=PYTHON_CONF, domain=DOMAIN,
                time_scale=0.05, seed=1).start()
    try:
        wait_until(lambda: any("runtime started on node start1" in m for _, m in sw.log), 10,
                   "the runtime started")
        wanted = {"fsapps-events", "fsapps-cmd", "fsapps-cdr", "fsapps-legs", "fsapps-reconcil"}
        wait_until(lambda: wanted <= own_thread_names(), 5, "the runtime's threads named")
    finally:
        sw.shutdown(grace=3.0)
