"""The real test servers of tools.servers: a private redis-server that stops and restarts on
its port, and a private multi-master Redis Cluster proving the ``{domain}`` hash-tag key design
(one domain = one slot = one node; two domains in one script are refused).
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.cluster
from redis.crc import key_slot

from fsapps.config import RedisSettings, Secret
from fsapps.errors import ScriptError
from fsapps.store import scripts as scriptmod
from fsapps.store.connection import close_clients
from fsapps.store.connection import redis_client as client_for
from fsapps.store.keys import Keys
from fsapps.store.scripts import LUA_DIR, Scripts, run_script
from tools import servers
from tools.servers import (
    CLUSTER_BUS_OFFSET,
    CLUSTER_SLOTS,
    RedisClusterServer,
    RedisServer,
    cluster_slot_ranges,
    free_cluster_ports,
)

# With the 3-master split of cluster_slot_ranges, these two domains' slots (8592 and 3292)
# belong to different masters; test_two_domains_live_on_different_masters checks it.
DOMAIN = "example.com"
OTHER_DOMAIN = "other.example.com"

MOVE_SCRIPT = """\
-- Move a member from one set to another, atomically.
-- KEYS[1] = source set
-- KEYS[2] = destination set
-- ARGV[1] = member
return redis.call('SMOVE', KEYS[1], KEYS[2], ARGV[1])
"""


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def domain_keys(keys: Keys) -> list[str]:
    return [keys.agent("1000"), keys.agents(), keys.group("110"), keys.groups(),
            keys.group_members("110"), keys.group_queue("110"),
            keys.group_blacklist("110"), keys.group_vip("110"), keys.memory("110", "13800000000"),
            keys.call("7ba750aa-c138-11eb-8bdf-fd851cbd5dad"), keys.cdr_spool()]


def slot_owners(cluster: RedisClusterServer) -> dict[int, int]:
    """Slot -> port of the master serving it, as the cluster itself reports (CLUSTER SLOTS)."""
    admin = redis.Redis(port=cluster.ports[0], decode_responses=True)
    try:
        reply = admin.execute_command("CLUSTER", "SLOTS")
    finally:
        admin.close()
    owners: dict[int, int] = {}
    for first, last, master, *replicas in reply:
        assert replicas == []
        for slot in range(int(first), int(last) + 1):
            assert slot not in owners
            owners[slot] = int(master[1])
    return owners


def holders(cluster: RedisClusterServer, key: str) -> list[int]:
    """Ports of the nodes that really store ``key`` (asked one by one, without redirection)."""
    found = []
    for port in cluster.ports:
        node = redis.Redis(port=port)
        try:
            # A node that does not serve the key's slot answers MOVED.
            if node.execute_command("EXISTS", key) == 1:
                found.append(port)
        except redis.exceptions.MovedError:
            pass
        finally:
            node.close()
    return found


@pytest.fixture
def cluster(redis_cluster: RedisClusterServer) -> Iterator[RedisClusterServer]:
    """The session cluster, emptied, with no cached clients before or after the test."""
    redis_cluster.flushall()
    close_clients()
    yield redis_cluster
    close_clients()


@pytest.fixture
def cluster_client(cluster: RedisClusterServer) -> redis.Redis:
    return client_for(RedisSettings(url=Secret(cluster.url), cluster=True))


# --- RedisServer ----------------------------------------------------------------------------


def test_redis_server_stop_and_restart_keep_the_port() -> None:
    server = RedisServer().start()
    try:
        port = server.port
        client = redis.Redis.from_url(server.url, decode_responses=True)
        client.set("k", "v")
        server.stop()
        assert not server.running and not accepts(port)
        server.start()
        assert server.running and server.port == port
        assert client.get("k") is None  # nothing persisted
        client.set("k", "again")
        server.restart()
        assert server.port == port and client.ping() is True
        client.close()
    finally:
        server.close()
    assert not accepts(port)


# --- the SIP/media port band ----------------------------------------------------------------


def test_a_held_port_is_never_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # a band of three ports: after the moment's memory has passed (here: at once), an unheld
    # port comes back, a held one never does - the trunk's port, bound by each test's trunk
    # SIPp in turn, once went to a caller's media ports between two of them
    first = servers.free_sip_port()
    monkeypatch.setattr(servers, "UDP_BAND", (first - 1, first + 3))
    monkeypatch.setattr(servers, "_HANDED_OUT_S", -1.0)
    held = servers.held_sip_port()
    try:
        handed = {servers.free_udp_ports(1) for _ in range(30)}
        assert held not in handed and handed
    finally:
        servers._HELD.discard(held)


# --- RedisClusterServer ---------------------------------------------------------------------


def test_slot_ranges_cover_every_slot_once() -> None:
    for masters in (1, 2, 3, 5):
        ranges = cluster_slot_ranges(masters)
        assert len(ranges) == masters
        assert ranges[0][0] == 0 and ranges[-1][1] == CLUSTER_SLOTS - 1
        assert all(prev[1] + 1 == nxt[0] for prev, nxt in zip(ranges, ranges[1:], strict=False))
    with pytest.raises(ValueError):
        cluster_slot_ranges(0)


def test_cluster_ports_leave_room_for_the_bus() -> None:
    ports = free_cluster_ports(4)
    buses = [port + CLUSTER_BUS_OFFSET for port in ports]
    assert len(set(ports + buses)) == 8
    assert max(buses) <= 65535


def test_cluster_has_three_masters_covering_all_slots(cluster: RedisClusterServer) -> None:
    assert cluster.running and len(cluster.ports) == 3
    assert cluster.url == f"redis://127.0.0.1:{cluster.ports[0]}/0"
    owners = slot_owners(cluster)
    assert sorted(owners) == list(range(CLUSTER_SLOTS))
    assert set(owners.values()) == set(cluster.ports)
    for port in cluster.ports:
        admin = redis.Redis(port=port, decode_responses=True)
        info = str(admin.execute_command("CLUSTER", "INFO"))
        nodes = str(admin.execute_command("CLUSTER", "NODES")).splitlines()
        admin.close()
        assert "cluster_state:ok" in info and "cluster_known_nodes:3" in info
        assert sorted(int(line.split()[1].split("@")[0].rsplit(":", 1)[1]) for line in nodes) \
            == sorted(cluster.ports)
        assert all("master" in line.split()[2].split(",") for line in nodes)


def test_fsapps_cluster_client_sees_every_master(cluster_client: redis.Redis) -> None:
    assert isinstance(cluster_client, redis.cluster.RedisCluster)
    assert len(cluster_client.get_primaries()) == 3
    assert cluster_client.get_replicas() == []
    for domain in (DOMAIN, OTHER_DOMAIN, "客服"):
        key = Keys("fsapps", domain).agent("1000")
        cluster_client.hset(key, "state", "ready")
        assert cluster_client.hget(key, "state") == "ready"


def test_one_domain_lands_on_one_slot_and_node(cluster: RedisClusterServer,
                                               cluster_client: redis.Redis) -> None:
    names = domain_keys(Keys("fsapps", DOMAIN))
    for name in names:
        cluster_client.set(name, "x")
    admin = redis.Redis(port=cluster.ports[0])
    server_slots = {int(admin.execute_command("CLUSTER", "KEYSLOT", name)) for name in names}
    admin.close()
    assert server_slots == {key_slot(DOMAIN.encode())}
    owner = slot_owners(cluster)[key_slot(DOMAIN.encode())]
    assert all(holders(cluster, name) == [owner] for name in names)


def test_two_domains_live_on_different_masters(cluster: RedisClusterServer,
                                               cluster_client: redis.Redis) -> None:
    owners = slot_owners(cluster)
    places = {}
    for domain in (DOMAIN, OTHER_DOMAIN):
        key = Keys("fsapps", domain).group_queue("110")
        cluster_client.zadd(key, {"call-1": 1})
        places[domain] = holders(cluster, key)
        assert places[domain] == [owners[key_slot(domain.encode())]]
    assert places[DOMAIN] != places[OTHER_DOMAIN]


@pytest.fixture
def scripts_with_move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scripts:
    """run_script's registry, holding the packaged scripts plus the two-key ``move``."""
    for path in LUA_DIR.glob("*.lua"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "move.lua").write_text(MOVE_SCRIPT)
    registry = Scripts(tmp_path)
    monkeypatch.setattr(scriptmod, "SCRIPTS", registry)
    return registry


def test_multi_key_script_within_one_domain(cluster_client: redis.Redis,
                                            scripts_with_move: Scripts) -> None:
    keys = Keys("fsapps", DOMAIN)
    ready, members = keys.group_vip("110"), keys.group_members("110")
    cluster_client.sadd(ready, "1000")
    assert run_script(cluster_client, "move", [ready, members], ["1000"]) == 1
    assert cluster_client.smembers(members) == {"1000"}
    # After every node lost its script cache, EVALSHA is reloaded on the node of the slot.
    cluster_client.script_flush()
    assert run_script(cluster_client, "move", [members, ready], ["1000"]) == 1
    for domain in (DOMAIN, OTHER_DOMAIN):  # each domain's slot, on whichever node serves it
        there = Keys("fsapps", domain)
        cluster_client.sadd(there.group_vip("111"), "1001")
        assert run_script(cluster_client, "move",
                          [there.group_vip("111"), there.group_members("111")], ["1001"]) == 1


def test_script_across_two_domains_is_refused(cluster: RedisClusterServer,
                                              cluster_client: redis.Redis,
                                              scripts_with_move: Scripts) -> None:
    ready = Keys("fsapps", DOMAIN).group_vip("110")
    elsewhere = Keys("fsapps", OTHER_DOMAIN).group_vip("110")
    cluster_client.sadd(ready, "1000")
    # The cluster client refuses before sending ...
    with pytest.raises(ScriptError, match="'move'.*same key slot"):
        run_script(cluster_client, "move", [ready, elsewhere], ["1000"])
    # ... and a node asked directly answers CROSSSLOT.
    owner = slot_owners(cluster)[key_slot(DOMAIN.encode())]
    node = redis.Redis(port=owner, decode_responses=True)
    try:
        with pytest.raises(ScriptError, match="'move'.*same slot") as refused:
            run_script(node, "move", [ready, elsewhere], ["1000"])
        assert isinstance(refused.value.__cause__, redis.exceptions.ClusterCrossSlotError)
        assert node.smembers(ready) == {"1000"}
    finally:
        node.close()


def test_one_master_cluster_stops_restarts_and_closes() -> None:
    cluster = RedisClusterServer(masters=1).start()
    directory = Path(cluster._dir)
    try:
        port = cluster.ports[0]
        client = redis.cluster.RedisCluster.from_url(cluster.url, decode_responses=True)
        client.set("{d}:k", "v")
        client.close()
        assert set(slot_owners(cluster).values()) == {port}
        assert cluster.start() is cluster  # already running: no-op
        cluster.stop()
        assert not cluster.running and not accepts(port)
        cluster.start()
        assert cluster.running and cluster.ports == [port]
        client = redis.cluster.RedisCluster.from_url(cluster.url, decode_responses=True)
        assert client.get("{d}:k") is None  # a new, empty cluster
        client.close()
    finally:
        cluster.close()
    assert not cluster.running and not accepts(port) and not directory.exists()


def test_cluster_not_formed_in_time_raises_timeout_and_cleans_up() -> None:
    # Redis keeps a fresh cluster master failed for its first 2 s, so 0.5 s cannot suffice.
    cluster = RedisClusterServer(timeout=0.5)
    try:
        with pytest.raises(TimeoutError, match=r"not formed after 0.5s: .*cluster_state:fail"):
            cluster.start()
        assert not cluster.running
        assert not any(accepts(port) for port in cluster.ports)
    finally:
        cluster.close()
