"""Real servers for tests, the demo and the benchmarks: a private redis-server on a free
loopback port (stoppable and restartable, to test faults), a private multi-master Redis
Cluster (to prove the ``{domain}`` hash-tag key design) and a fresh PostgreSQL database.

Nothing here touches the machine's own Redis on 6379: every instance is ours, on 127.0.0.1.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import redis
import redis.exceptions
from psycopg2 import sql
from psycopg2.extensions import make_dsn, parse_dsn
from redis.backoff import NoBackoff
from redis.retry import Retry

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# SIP and media ports of SIPp and of the switches' SIP profiles come from this band: above
# the kernel's ephemeral ports (free_port, outgoing sockets) and every switch's RTP block
# (tools/realswitch.py: at most 60000 + 3,999 in make bench-switch), so nothing else takes
# one between the check here and the bind. A port handed out is not handed out again for a
# moment (SIPp binds within one; two picks of one moment must not overlap), unless the band
# has nothing else (make bench-switch registers 500 phones, a SIPp each, in seconds). A port
# that is bound again and again for as long as the process lives (the trunk's, whose SIPp
# each test starts anew; a switch's profiles across its restarts) is held: never handed out
# again. Unheld, the trunk's port went to a caller's media ports 19 minutes into a test run,
# between one trunk SIPp and the next, and that trunk exited "Unable to bind main socket".
UDP_BAND = (64000, 65536)
_HANDED_OUT: dict[int, float] = {}
_HANDED_OUT_S = 2.0
_HELD: set[int] = set()
_band_lock = threading.Lock()


def free_udp_ports(count: int, tcp: bool = False, hold: bool = False) -> int:
    """The first of ``count`` consecutive UDP ports on 127.0.0.1 that nothing has bound right
    now (with ``tcp``, free for TCP too: a SIP profile binds both). SIPp's ``-mp`` binds audio
    RTP and RTCP at mp, mp + 1 and video at mp + 2, mp + 3, and exits when one is taken: a
    phone whose video port a switch's RTP held never answered (``Unable to bind video RTP
    socket ... errno = 98`` in its error file); its SIP port (``-p``) likewise. With ``hold``
    the ports are never handed out again by this process."""
    kinds = [socket.SOCK_DGRAM, socket.SOCK_STREAM] if tcp else [socket.SOCK_DGRAM]
    with _band_lock:
        now = time.monotonic()
        for port, since in list(_HANDED_OUT.items()):
            if now - since > _HANDED_OUT_S:
                del _HANDED_OUT[port]
        for attempt in range(600):
            first = random.randrange(UDP_BAND[0], UDP_BAND[1] - count)
            ports = range(first, first + count)
            if any(p in _HELD for p in ports):
                continue
            if attempt < 400 and any(p in _HANDED_OUT for p in ports):
                continue
            sockets: list[socket.socket] = []
            try:
                for port in ports:
                    for kind in kinds:
                        sock = socket.socket(socket.AF_INET, kind)
                        sockets.append(sock)
                        sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            finally:
                for sock in sockets:
                    sock.close()
            _HANDED_OUT.update({p: now for p in ports})
            if hold:
                _HELD.update(ports)
            return first
    raise RuntimeError(f"no {count} consecutive free UDP ports on 127.0.0.1 in {UDP_BAND}")


def free_sip_port(hold: bool = False) -> int:
    """A SIP port (UDP and TCP) from the band of :func:`free_udp_ports`."""
    return free_udp_ports(1, tcp=True, hold=hold)


def held_sip_port() -> int:
    """A SIP port bound again and again while the process lives: never handed out again."""
    return free_sip_port(hold=True)


def wait_for_port(port: int, timeout: float = 10.0, up: bool = True) -> None:
    """Wait until 127.0.0.1:port accepts connections (or, with up=False, refuses them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.02)
    raise TimeoutError(f"port {port} still {'closed' if up else 'open'} after {timeout}s")


@dataclass
class RedisServer:
    """A private redis-server process bound to 127.0.0.1 on a free port.

    ``stop()`` and ``start()`` keep the port, so clients holding the URL see a real outage and
    a real recovery. Nothing is persisted (``--save ""``): a restart comes back empty unless
    ``keep_data`` asked for an append-only file.
    """

    port: int = field(default_factory=free_port)
    keep_data: bool = False
    extra_args: tuple[str, ...] = ()
    _proc: subprocess.Popen[bytes] | None = None
    _dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="fsapps-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        args = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--dir", self._dir, "--appendonly", "yes" if self.keep_data else "no",
                "--protected-mode", "no", *self.extra_args]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
            wait_for_port(self.port, up=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def database_url() -> str:
    return os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)


@dataclass
class FreshDatabase:
    """A new, empty PostgreSQL database on the server of ``DATABASE_URL``, dropped by ``drop()``."""

    server_url: str = field(default_factory=database_url)
    name: str = field(default_factory=lambda: f"fsapps_test_{uuid.uuid4().hex[:12]}")

    @property
    def dsn(self) -> str:
        params = parse_dsn(self.server_url)
        params["dbname"] = self.name
        return make_dsn(**params)

    def _admin(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(self.server_url, connect_timeout=5)
        conn.autocommit = True
        return conn

    def create(self) -> FreshDatabase:
        # No `with conn:` here: psycopg2 opens a transaction inside it even in autocommit
        # mode, and CREATE DATABASE refuses to run in one.
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        finally:
            conn.close()
        return self

    def drop(self) -> None:
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.name)))
        finally:
            conn.close()


def scratch_dir(prefix: str = "fsapps-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


CLUSTER_SLOTS = 16384
# Redis Cluster's bus listens on the client port + 10000 unless told otherwise.
CLUSTER_BUS_OFFSET = 10000
CLUSTER_NODE_TIMEOUT_MS = 2000


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1 whose cluster bus ports (port + 10000) are
    free too, none equal to another's bus port."""
    chosen: list[int] = []
    taken: set[int] = set()
    for attempt in range(count * 500):
        if len(chosen) == count:
            break
        # Mostly the kernel's picks; a few random ones in case its ephemeral range sits so
        # high that port + 10000 would pass 65535.
        port = free_port() if attempt % 4 else random.randint(20000, 55535 - 1)
        bus = port + CLUSTER_BUS_OFFSET
        if bus > 65535 or port in taken or bus in taken:
            continue
        if _port_is_free(port) and _port_is_free(bus):
            chosen.append(port)
            taken.update((port, bus))
    if len(chosen) < count:
        raise RuntimeError(f"found only {len(chosen)} of {count} free port pairs for a cluster")
    return chosen


def cluster_slot_ranges(masters: int) -> list[tuple[int, int]]:
    """The 16384 slots split into ``masters`` contiguous, inclusive (first, last) ranges of
    near-equal size, as redis-cli would."""
    if masters < 1:
        raise ValueError(f"a cluster needs at least one master, got {masters}")
    bounds = [CLUSTER_SLOTS * i // masters for i in range(masters + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


class _NodeExited(RuntimeError):
    """A node process ended while the cluster was starting (typically: its port was taken)."""


@dataclass
class RedisClusterServer:
    """A private Redis Cluster: ``masters`` redis-server processes on 127.0.0.1, no replicas.

    ``start()`` spawns the nodes, gives node i the i-th of :func:`cluster_slot_ranges`, joins
    each pair with CLUSTER MEET and returns once every node reports ``cluster_state:ok`` with all
    16384 slots assigned and knows every other node (no redis-cli needed). ``url`` points at
    the first node; a cluster client learns the rest from it. Nothing is persisted: ``stop()``
    then ``start()`` builds a new, empty cluster on the same ports. ``close()`` also removes
    the temporary directory holding the nodes' config files and logs.
    """

    masters: int = 3
    timeout: float = 10.0
    ports: list[int] = field(default_factory=list)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="fsapps-cluster-"))

    def __post_init__(self) -> None:
        cluster_slot_ranges(self.masters)  # validates masters
        if not self.ports:
            self.ports = free_cluster_ports(self.masters)
        elif len(self.ports) != self.masters:
            raise ValueError(f"{len(self.ports)} ports given for {self.masters} masters")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    @property
    def urls(self) -> list[str]:
        """One plain URL per node, in slot order."""
        return [f"redis://127.0.0.1:{port}/0" for port in self.ports]

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(proc.poll() is None for proc in self._procs)

    def start(self) -> RedisClusterServer:
        """Start the nodes and form the cluster; a no-op when it is already running.

        Raises TimeoutError (naming what was still missing) when the cluster is not up within
        ``timeout`` seconds. Should a port have been taken by another process since it was
        picked, fresh ports are picked and the start retried (at most twice; ``url`` changes).
        """
        if self.running:
            return self
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        for attempt in range(3):
            try:
                self._start_once(binary)
                return self
            except _NodeExited:
                self.stop()
                if attempt == 2:
                    raise
                self.ports = free_cluster_ports(self.masters)
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _start_once(self, binary: str) -> None:
        deadline = time.monotonic() + self.timeout
        for port in self.ports:
            # A fresh cluster every time: forget any previous run's node identities.
            Path(self._dir, f"nodes-{port}.conf").unlink(missing_ok=True)
        for port in self.ports:
            self._procs.append(subprocess.Popen(self._node_args(binary, port),
                                                stdout=subprocess.DEVNULL,
                                                stderr=subprocess.STDOUT))
        self._wait_listening(deadline)
        admins = [self._admin(port) for port in self.ports]
        try:
            for port, admin, proc in zip(self.ports, admins, self._procs, strict=True):
                # Whoever answers on the port must be our process, not a squatter.
                try:
                    pid: int | None = int(admin.info("server")["process_id"])
                except (redis.exceptions.RedisError, KeyError, ValueError):
                    pid = None
                if pid != proc.pid:
                    raise _NodeExited(f"port {port} is served by pid {pid}, not our {proc.pid}: "
                                      f"{self._log_tail(port)}")
            ranges = cluster_slot_ranges(self.masters)
            for epoch, (admin, (first, last)) in enumerate(zip(admins, ranges, strict=True), 1):
                # Distinct epochs up front, as redis-cli does, spare the nodes a collision round.
                admin.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
                try:
                    admin.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
                except redis.exceptions.ResponseError:  # Redis < 7 has no ADDSLOTSRANGE
                    admin.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
            # Every pair meets directly: left to gossip, a third node can take seconds to
            # learn of the others.
            for i, admin in enumerate(admins):
                for port in self.ports[i + 1:]:
                    admin.execute_command("CLUSTER", "MEET", "127.0.0.1", port)
            self._wait_formed(admins, deadline)
        finally:
            for admin in admins:
                admin.close()

    def _node_args(self, binary: str, port: int) -> list[str]:
        return [binary, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "no",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(Path(self._dir, f"nodes-{port}.conf")),
                "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
                "--save", "", "--appendonly", "no", "--dir", self._dir,
                "--logfile", str(Path(self._dir, f"redis-{port}.log"))]

    @staticmethod
    def _admin(port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True,
                           socket_timeout=2.0, socket_connect_timeout=2.0,
                           retry=Retry(NoBackoff(), 0))

    def _log_tail(self, port: int, lines: int = 5) -> str:
        try:
            text = Path(self._dir, f"redis-{port}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def _wait_listening(self, deadline: float) -> None:
        pending = dict(zip(self.ports, self._procs, strict=True))
        while pending:
            for port, proc in list(pending.items()):
                if proc.poll() is not None:
                    raise _NodeExited(f"cluster node on port {port} exited with "
                                      f"{proc.returncode}: {self._log_tail(port)}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        del pending[port]
                except OSError:
                    pass
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"cluster nodes on ports {sorted(pending)} not listening "
                                   f"after {self.timeout}s")
            if pending:
                time.sleep(0.01)

    def _missing(self, admins: Sequence[redis.Redis]) -> list[str]:
        """What keeps the cluster from being formed, per node; [] when it is."""
        missing: list[str] = []
        for port, admin in zip(self.ports, admins, strict=True):
            # "CLUSTER", "INFO" as two words: redis-py leaves the reply as the server's text.
            info = dict(line.split(":", 1) for line in
                        str(admin.execute_command("CLUSTER", "INFO")).split() if ":" in line)
            nodes = [line.split() for line in
                     str(admin.execute_command("CLUSTER", "NODES")).splitlines() if line.strip()]
            unsettled = [n[0][:8] for n in nodes
                         if n[7] != "connected" or {"handshake", "noaddr", "fail", "fail?"}
                         & set(n[2].split(","))]
            if info.get("cluster_state") != "ok":
                missing.append(f"{port}: cluster_state:{info.get('cluster_state')}")
            if info.get("cluster_slots_assigned") != str(CLUSTER_SLOTS):
                missing.append(f"{port}: {info.get('cluster_slots_assigned')} slots assigned")
            if len(nodes) != self.masters or info.get("cluster_known_nodes") != str(self.masters):
                missing.append(f"{port}: knows {len(nodes)} of {self.masters} nodes")
            if unsettled:
                missing.append(f"{port}: links to {unsettled} not settled")
        return missing

    def _wait_formed(self, admins: Sequence[redis.Redis], deadline: float) -> None:
        while True:
            for port, proc in zip(self.ports, self._procs, strict=True):
                if proc.poll() is not None:
                    raise _NodeExited(f"cluster node on port {port} exited with "
                                      f"{proc.returncode}: {self._log_tail(port)}")
            missing = self._missing(admins)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"Redis Cluster on ports {self.ports} not formed after "
                                   f"{self.timeout}s: " + "; ".join(missing))
            time.sleep(0.02)

    def flushall(self) -> None:
        """Empty every node (FLUSHALL on each master), e.g. between tests sharing a cluster."""
        for port in self.ports:
            admin = self._admin(port)
            try:
                admin.flushall()
            finally:
                admin.close()

    def stop(self) -> None:
        procs, self._procs = self._procs, []
        # Only ports our live nodes held are waited on: one that never bound may belong to
        # another process.
        held = [port for port, proc in zip(self.ports, procs, strict=False)
                if proc.poll() is None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for port in held:
            wait_for_port(port, up=False)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)



class TcpRelay:
    """A TCP relay 127.0.0.1:<port> -> ``host``:``port``, byte for byte, for tests that take a
    link away. ``down()`` cuts every connection and refuses new ones (accepted, then closed at
    once: the client sees the server go away), ``up()`` relays again; ``cut()`` is a network
    drop the client may recover from at once (down, then up)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.alive = True
        self.closed = False
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.alive:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                self.sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def down(self) -> None:
        self.alive = False
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def up(self) -> None:
        self.alive = True

    def cut(self) -> None:
        self.down()
        self.up()

    def close(self) -> None:
        self.closed = True
        self.down()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        self.listener.close()
