"""Real servers for tests, the demo and the benchmarks: a private redis-server on a free
loopback port (stoppable and restartable, to test faults) and a fresh PostgreSQL database.

Nothing here touches the machine's own Redis on 6379: every instance is ours, on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import make_dsn, parse_dsn

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
