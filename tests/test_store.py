"""The Redis layer against real redis-server processes: a plain one (the session fixture), one
with a password, one on a Unix socket, a Sentinel watching the plain one, a one-node Cluster.

Nothing is mocked; outages are real stops and restarts of our own private servers.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from fsapps.config import RedisSettings, Secret
from fsapps.errors import ScriptError, StoreUnavailable
from fsapps.store import keys as keymod
from fsapps.store import scripts as scriptmod
from fsapps.store.connection import RETRY_BUDGET_SECONDS, close_clients
from fsapps.store.connection import redis_client as client_for
from fsapps.store.keys import KeyPartError, Keys, NodeKeys
from fsapps.store.scripts import SCRIPTS, Scripts, lint, run_script
from tools.servers import RedisClusterServer, RedisServer, free_port, wait_for_port

PASSWORD = "s3cr3t-Pa55"


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def _fresh_client_cache() -> Iterator[None]:
    # Clients are cached per settings for the life of a process; each test starts clean.
    close_clients()
    yield
    close_clients()


@pytest.fixture
def settings(redis_client: redis.Redis, redis_server: RedisServer) -> RedisSettings:
    """Settings for the session redis, emptied for this test by the redis_client fixture."""
    return RedisSettings(url=Secret(redis_server.url), socket_timeout=1.0)


@pytest.fixture(scope="module")
def secured_server() -> Iterator[RedisServer]:
    server = RedisServer(extra_args=("--requirepass", PASSWORD)).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def cluster_server() -> Iterator[RedisClusterServer]:
    """A one-node Redis Cluster owning all 16384 slots (tests/test_servers.py and the
    ``redis_cluster`` fixture cover three masters)."""
    server = RedisClusterServer(masters=1).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def sentinel_port(redis_client: redis.Redis, redis_server: RedisServer,
                  tmp_path: Path) -> Iterator[int]:
    """A real `redis-server --sentinel` monitoring the session redis as master `fsapps-test`."""
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {tmp_path}\n"
                    f"sentinel monitor fsapps-test 127.0.0.1 {redis_server.port} 1\n"
                    "sentinel down-after-milliseconds fsapps-test 60000\n")
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen([binary, str(conf), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        probe = redis.Redis(port=port, decode_responses=True)
        wait_until(lambda: probe.execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "fsapps-test") is not None)
        probe.close()
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def command_calls(client: redis.Redis, name: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


# --- connection -----------------------------------------------------------------------------


def test_url_client_decodes_and_is_cached_per_settings(settings: RedisSettings) -> None:
    client = client_for(settings)
    client.set("greeting", "你好")
    assert client.get("greeting") == "你好"
    assert client_for(settings) is client
    other = RedisSettings(url=settings.url, socket_timeout=0.5)
    assert client_for(other) is not client


def test_unix_socket_url(tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(extra_args=("--unixsocket", str(socket_path),
                                     "--unixsocketperm", "700")).start()
    try:
        wait_until(socket_path.exists)
        client = client_for(RedisSettings(url=Secret(f"unix://{socket_path}?db=0")))
        client.set("k", "v")
        assert client.get("k") == "v"
        assert client.info("server")["tcp_port"] == server.port
    finally:
        server.close()


def test_sentinel_client_reaches_the_monitored_master(
        sentinel_port: int, redis_client: redis.Redis) -> None:
    settings = RedisSettings(url=Secret("redis://127.0.0.1:1/0"),
                             sentinels=(("127.0.0.1", sentinel_port),),
                             sentinel_service="fsapps-test", socket_timeout=1.0)
    client = client_for(settings)
    client.set("via-sentinel", "yes")
    assert redis_client.get("via-sentinel") == b"yes"
    assert client.get("via-sentinel") == "yes"


def test_sentinel_with_unknown_service_is_unavailable(sentinel_port: int) -> None:
    settings = RedisSettings(sentinels=(("127.0.0.1", sentinel_port),),
                             sentinel_service="no-such-master", socket_timeout=0.5)
    with pytest.raises(StoreUnavailable, match="no-such-master"):
        client_for(settings).ping()


def test_client_survives_a_redis_restart(settings: RedisSettings,
                                         redis_server: RedisServer) -> None:
    client = client_for(settings)
    assert client.set("before", "1")
    redis_server.restart()
    # The pooled connection died with the old process; the retry reconnects transparently.
    assert client.ping() is True
    assert client.get("before") is None  # the test server keeps no data across restarts


def test_client_rides_out_a_brief_outage(settings: RedisSettings,
                                         redis_server: RedisServer) -> None:
    client = client_for(settings)
    client.ping()
    redis_server.stop()
    outage_seconds = min(0.3, RETRY_BUDGET_SECONDS / 4)

    def end_outage() -> None:
        time.sleep(outage_seconds)  # the outage itself: how long Redis stays down
        redis_server.start()

    restarter = threading.Thread(target=end_outage)
    restarter.start()
    try:
        assert client.set("during-outage", "kept") is True  # retried until Redis was back
    finally:
        restarter.join()
    assert client.get("during-outage") == "kept"


def test_down_redis_raises_store_unavailable_without_password(
        secured_server: RedisServer) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{secured_server.port}/0"
    client = client_for(RedisSettings(url=Secret(url), socket_timeout=0.5))
    assert client.ping() is True
    secured_server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            client.get("anything")
        assert time.monotonic() - started >= RETRY_BUDGET_SECONDS * 0.5  # it did retry
        message = str(caught.value)
        assert PASSWORD not in message and PASSWORD not in repr(caught.value)
        assert f"redis://:***@127.0.0.1:{secured_server.port}/0 is unavailable" in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__

        pipe = client.pipeline()
        pipe.set("a", "1")
        pipe.incr("b")
        with pytest.raises(StoreUnavailable) as piped:
            pipe.execute()
        assert PASSWORD not in str(piped.value)
    finally:
        secured_server.start()
    assert client.ping() is True


def test_cluster_client(cluster_server: RedisClusterServer) -> None:
    client = client_for(RedisSettings(url=Secret(cluster_server.url), cluster=True))
    assert isinstance(client, redis.cluster.RedisCluster)
    keys = Keys("fsapps", "example.com")
    client.set(keys.agent("1000"), "x")
    assert client.get(keys.agent("1000")) == "x"


def test_unreachable_cluster_is_unavailable() -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreUnavailable) as caught:
        client_for(RedisSettings(url=Secret(url), cluster=True, socket_timeout=0.2))
    assert PASSWORD not in str(caught.value)


# --- keys -----------------------------------------------------------------------------------


def all_domain_keys(keys: Keys) -> list[str]:
    return [keys.agent("1000"), keys.agents(), keys.group("110"), keys.groups(),
            keys.group_members("110"), keys.group_queue("110"),
            keys.group_blacklist("110"), keys.group_vip("110"), keys.memory("110", "13800000000"),
            keys.call("7ba750aa-c138-11eb-8bdf-fd851cbd5dad"), keys.cdr_spool()]


def test_keys_shape() -> None:
    keys = Keys("fsapps", "example.com")
    assert keys.agent("1000") == "fsapps:{example.com}:agent:1000"
    assert keys.group_queue("110") == "fsapps:{example.com}:group:110:queue"
    assert keys.call("abc") == "fsapps:{example.com}:call:abc"
    assert keys.cdr_spool() == "fsapps:{example.com}:cdr:spool"
    assert keys.tag == "{example.com}"
    names = all_domain_keys(keys)
    assert len(set(names)) == len(names)
    assert all(name.startswith("fsapps:{example.com}:") for name in names)
    nodes = NodeKeys("fsapps")
    assert nodes.heartbeat("fs1") == "fsapps:{nodes}:node:fs1:heartbeat"
    assert nodes.commands("fs1") == "fsapps:{nodes}:node:fs1:commands"
    assert nodes.nodes() == "fsapps:{nodes}:nodes"


@pytest.mark.parametrize("domain", ["default", "example.com", "10.0.0.1", "客服"])
def test_one_domain_shares_one_cluster_slot(domain: str) -> None:
    keys = Keys("fsapps", domain)
    slots = {key_slot(name.encode()) for name in all_domain_keys(keys)}
    assert slots == {key_slot(domain.encode())}
    nodes = NodeKeys("fsapps")
    node_names = [nodes.nodes(), nodes.heartbeat("a"), nodes.commands("b")]
    assert {key_slot(n.encode()) for n in node_names} == {key_slot(b"nodes")}


def test_seed_names_are_verbatim() -> None:
    assert keymod.seed_exten_hash("192.168.1.5") == "cti_exten@192.168.1.5"
    assert keymod.seed_userinfo_hash("example.com") == "cti_userinfo@example.com"
    assert keymod.REGISTRATIONS == "registrations"
    assert keymod.CALLS == "calls"
    assert keymod.event_channel("1000") == "event_1000"
    assert keymod.queue_channel("110") == "queue_110"
    assert keymod.agent_channel("1000") == "agent_1000"
    assert keymod.cdr_channel("110") == "cdr_110"
    assert keymod.SEED_CHANNEL_PATTERNS == ("event_*", "queue_*", "agent_*", "cdr_*")


@pytest.mark.parametrize("bad", ["{x}", "a}b", "a b", "tab\there", "new\nline", ""])
def test_invalid_parts_are_rejected_naming_the_value(bad: str) -> None:
    for build in (lambda: Keys("fsapps", bad), lambda: Keys(bad, "default"),
                  lambda: Keys("fsapps", "default").agent(bad),
                  lambda: keymod.seed_exten_hash(bad), lambda: NodeKeys("p").heartbeat(bad)):
        with pytest.raises(KeyPartError) as caught:
            build()
        assert repr(bad) in str(caught.value)
        assert isinstance(caught.value, ValueError)


# --- scripts --------------------------------------------------------------------------------


def test_packaged_scripts_pass_the_lint_and_load_once() -> None:
    assert {"exten_lookup", "exten_set", "hash_field_swap"} <= set(SCRIPTS.names())
    for name in SCRIPTS.names():
        source = SCRIPTS.get(name).source
        assert source.startswith("--") and "-- KEYS[1] = " in source
        assert lint(source) == []
        assert SCRIPTS.get(name) is SCRIPTS.get(name)


def test_script_file_is_read_once_per_registry(tmp_path: Path, redis_client: redis.Redis) -> None:
    path = tmp_path / "answer.lua"
    path.write_text("-- KEYS[1] = a string\nreturn redis.call('INCR', KEYS[1])\n")
    scripts = Scripts(tmp_path)
    assert scripts.run(redis_client, "answer", ["n"]) == 1
    path.write_text("-- KEYS[1] = a string\nreturn 42\n")
    assert scripts.run(redis_client, "answer", ["n"]) == 2  # still the first text


# The runner's own tests use a script of their own (each product script needs an agent, a
# group or a directory in Redis): take a string key for an owner unless another holds it.
TAKE_SCRIPT = """\
-- Take a key for an owner unless another owner holds it; it expires by itself.
-- KEYS[1] = the key (string holding the owner)
-- ARGV[1] = owner
-- ARGV[2] = time to live in milliseconds (a positive integer)
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl ~= math.floor(ttl) then
  return redis.error_reply('ttl must be a positive integer of milliseconds, got ' ..
    tostring(ARGV[2]))
end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
return 1
"""
TAKEN = "fsapps:{default}:taken:1000"


@pytest.fixture
def take(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """run_script's registry holds only the script ``take``; its name."""
    (tmp_path / "take.lua").write_text(TAKE_SCRIPT)
    monkeypatch.setattr(scriptmod, "SCRIPTS", Scripts(tmp_path))
    return "take"


def test_evalsha_is_used_and_noscript_reloads_after_flush(settings: RedisSettings,
                                                          take: str) -> None:
    client = client_for(settings)
    client.script_flush()
    client.config_resetstat()
    assert run_script(client, take, [TAKEN], ["owner", 10_000]) == 1
    assert run_script(client, take, [TAKEN], ["owner", 10_000]) == 1
    assert command_calls(client, "script|load") == 1  # first EVALSHA got NOSCRIPT
    assert command_calls(client, "evalsha") >= 3
    assert command_calls(client, "eval") == 0

    client.script_flush()
    assert run_script(client, take, [TAKEN], ["owner", 10_000]) == 1
    assert command_calls(client, "script|load") == 2


def test_noscript_reload_after_redis_restart(settings: RedisSettings,
                                             redis_server: RedisServer, take: str) -> None:
    client = client_for(settings)
    assert run_script(client, take, [TAKEN], ["a", 10_000]) == 1
    redis_server.restart()
    assert run_script(client, take, [TAKEN], ["b", 10_000]) == 1  # state was lost too
    assert command_calls(client, "script|load") == 1


def test_scripts_work_with_a_plain_redis_client(redis_client: redis.Redis, take: str) -> None:
    assert run_script(redis_client, take, [TAKEN], ["a", 1000]) == 1
    assert redis_client.get(TAKEN) == b"a"


@pytest.mark.parametrize("ttl", [0, -5, "soon", 1.5])
def test_lua_error_is_a_script_error_naming_the_script(settings: RedisSettings, take: str,
                                                      ttl: object) -> None:
    client = client_for(settings)
    with pytest.raises(ScriptError, match="'take'.*positive integer"):
        run_script(client, take, [TAKEN], ["a", ttl])  # type: ignore[list-item]
    assert client.exists(TAKEN) == 0


def test_run_scripts_is_one_round_trip_and_keeps_each_reply(settings: RedisSettings,
                                                           take: str) -> None:
    """A batch of scripts: one pipeline; a script failing in Redis gets a ScriptError in its
    place while the others' replies (and effects) stand; after NOSCRIPT only the scripts Redis
    did not run are sent again (each ran once: the second key is still held by "b")."""
    client = client_for(settings)
    other = "fsapps:{default}:taken:1001"
    client.script_flush()
    client.config_resetstat()
    replies = scriptmod.run_scripts(client, [(take, [TAKEN], ["a", 10_000]),
                                             (take, [other], ["b", "soon"]),
                                             (take, [other], ["b", 10_000]),
                                             (take, [TAKEN], ["c", 10_000])])
    assert replies[0] == 1 and replies[2] == 1 and replies[3] == 0
    assert isinstance(replies[1], ScriptError) and "'take'" in str(replies[1])
    assert client.get(TAKEN) == "a" and client.get(other) == "b"
    assert command_calls(client, "script|load") == 1
    assert command_calls(client, "evalsha") == 8  # 4 refused NOSCRIPT, 4 run
    assert scriptmod.run_scripts(client, []) == []


def test_wrong_key_count_is_refused_before_redis(settings: RedisSettings, take: str) -> None:
    with pytest.raises(ScriptError, match="'take' takes 1 key"):
        run_script(client_for(settings), take, ["a", "b"], ["x"])
    with pytest.raises(ScriptError, match="'no_such_script'"):
        run_script(client_for(settings), "no_such_script", ["a"])


MOVE_SCRIPT = """\
-- Move a member from one set to another, atomically.
-- KEYS[1] = source set
-- KEYS[2] = destination set
-- ARGV[1] = member
return redis.call('SMOVE', KEYS[1], KEYS[2], ARGV[1])
"""


def test_scripts_on_redis_cluster(cluster_server: RedisClusterServer, tmp_path: Path) -> None:
    client = client_for(RedisSettings(url=Secret(cluster_server.url), cluster=True))
    (tmp_path / "move.lua").write_text(MOVE_SCRIPT)
    (tmp_path / "take.lua").write_text(TAKE_SCRIPT)
    scripts = Scripts(tmp_path)
    keys = Keys("fsapps", "example.com")
    ready, busy = keys.group_vip("110"), keys.group_members("110")
    client.sadd(ready, "1000")
    client.script_flush()
    # Two keys of one domain: same slot, so one script may touch both.
    assert scripts.run(client, "move", [ready, busy], ["1000"]) == 1
    assert client.smembers(busy) == {"1000"}

    taken = "fsapps:{example.com}:taken:1000"
    assert scripts.run(client, "take", [taken], ["a", 10_000]) == 1
    client.script_flush()
    assert scripts.run(client, "take", [taken], ["a", 10_000]) == 1

    other = Keys("fsapps", "other.example.com").group_members("110")
    with pytest.raises(ScriptError, match="'move'"):
        scripts.run(client, "move", [ready, other], ["1000"])

    # a batch spanning two domains' slots, after the cache was lost
    client.script_flush()
    elsewhere = "fsapps:{other.example.com}:taken:1000"
    assert scripts.run_many(client, [("take", [taken], ["a", 10_000]),
                                     ("take", [elsewhere], ["b", 10_000])]) == [1, 1]


BAD_SCRIPTS = {
    "argv_key": "-- KEYS[1] = a\n-- ARGV[1] = b\nreturn redis.call('GET', ARGV[1])\n",
    "built_key": "-- KEYS[1] = agent hash\nreturn redis.call('HGET', KEYS[1] .. ':x', 'f')\n",
    "literal_key": "-- KEYS[1] = a\nredis.call('SET', 'fsapps:{default}:x', 1)\n",
    "reassigned": "-- KEYS[1] = a\nlocal k = KEYS[1]\nk = k .. ':other'\n"
                  "return redis.call('GET', k)\n",
    "undocumented": "-- KEYS[1] = a\nreturn redis.call('SMOVE', KEYS[1], KEYS[2], 'm')\n",
    "dynamic_cmd": "-- KEYS[1] = a\n-- ARGV[1] = cmd\nreturn redis.call(ARGV[1], KEYS[1])\n",
}


@pytest.mark.parametrize("name", sorted(BAD_SCRIPTS))
def test_lint_flags_bad_scripts_and_registry_refuses_them(name: str, tmp_path: Path) -> None:
    assert lint(BAD_SCRIPTS[name]) != []
    (tmp_path / f"{name}.lua").write_text(BAD_SCRIPTS[name])
    with pytest.raises(ScriptError, match=f"'{name}'.*line "):
        Scripts(tmp_path).get(name)


def test_include_pulls_a_shared_snippet_in_before_lint_and_hash(
        tmp_path: Path, redis_client: redis.Redis) -> None:
    """``--#include <name>`` is replaced by ``include/<name>.lua`` (this registry's, else the
    packaged one): Redis runs, and the lint checks, the whole text."""
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "twice.lua").write_text(
        "local function twice(n)\n  return n * 2\nend")
    (tmp_path / "doubled.lua").write_text(
        "-- KEYS[1] = a counter\n--#include twice\n"
        "return twice(redis.call('INCR', KEYS[1]))\n")
    (tmp_path / "packaged.lua").write_text(
        "-- KEYS[1] = an agent hash\n--#include agent_rules\n"
        "return agent_may_move(redis.call('HGET', KEYS[1], 'call_state'), 'ring') and 1 or 0\n")
    scripts = Scripts(tmp_path)
    assert "local function twice" in scripts.get("doubled").source
    assert scripts.run(redis_client, "doubled", ["n"]) == 2
    redis_client.hset("a", "call_state", "ready")
    assert scripts.run(redis_client, "packaged", ["a"]) == 1
    (tmp_path / "missing.lua").write_text("-- KEYS[1] = x\n--#include nothing_here\nreturn 1\n")
    with pytest.raises(ScriptError, match="'missing' includes 'nothing_here'"):
        scripts.get("missing")
    # an included snippet is linted as part of the script: a key it builds is refused
    (tmp_path / "include" / "bad.lua").write_text("local v = redis.call('GET', 'built' .. 1)")
    (tmp_path / "usesbad.lua").write_text("-- KEYS[1] = x\n--#include bad\nreturn 1\n")
    with pytest.raises(ScriptError, match="does not come from KEYS"):
        scripts.get("usesbad")


def test_lint_accepts_keys_through_locals_loops_and_keyless_commands() -> None:
    source = """\
-- KEYS[1] = agent hash
-- KEYS[2] = ready zset
-- ARGV[1] = channel
local agent = KEYS[1]
local t = redis.call('TIME')
for _, key in ipairs(KEYS) do
  redis.call('EXISTS', key)
end
-- redis.call('GET', ARGV[1]) is only a comment
local s = "redis.call('GET', ARGV[1]) inside a string"
redis.call('PUBLISH', ARGV[1], redis.call('HGET', agent, 'state'))
return redis.call('ZCARD', KEYS[2])
"""
    assert lint(source) == []
