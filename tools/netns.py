"""A network namespace holding nothing but a loopback interface, for tests whose traffic must
provably stay on 127.0.0.1: WebRTC media (issue 19), where Chromium gathers ICE host
candidates on every interface of the machine and may send from one of them (192.0.2.2 -> the
switch's 127.0.0.1 in 1 run of 4) although every target is loopback. Inside the namespace
there is no other interface to send from.

Linux keeps a network namespace per thread: :func:`loopback_only` moves the calling thread
(pytest's main thread) into a new namespace and back out when it ends. Sockets keep the
namespace they were made in, and processes and threads started meanwhile inherit it, so
what a module's fixtures start inside it (Redis, FreeSWITCH, SIPp, the CTI server,
Playwright's Chromium) and every connection the test makes stay in it. PostgreSQL (the
machine's server) is reached through its Unix socket, which is no network.

Needs CAP_SYS_ADMIN (root, as the real-switch tier's FreeSWITCH install already does);
:func:`unavailable` says why it cannot be had.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg2.extensions import make_dsn, parse_dsn

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = "16sH22x"  # struct ifreq: the name, then ifr_flags in the union (40 bytes)
POSTGRES_SOCKET_DIRS = ("/var/run/postgresql", "/tmp")

_libc = ctypes.CDLL(None, use_errno=True)


def _call(fn: str, *args: int) -> None:
    if getattr(_libc, fn)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{fn}: {os.strerror(err)}")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack(IFREQ, b"lo", 0)
        flags = struct.unpack(IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


@contextmanager
def loopback_only() -> Iterator[None]:
    """The calling thread in a new network namespace whose only interface is ``lo`` (up),
    until the block ends; then back in the namespace it was in."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _call("unshare", CLONE_NEWNET)
        try:
            _loopback_up()
            yield
        finally:
            _call("setns", home, CLONE_NEWNET)
    finally:
        os.close(home)


def interfaces() -> list[str]:
    """The calling thread's network interfaces, by name."""
    return [name for _, name in socket.if_nameindex()]


def socket_url(url: str) -> str | None:
    """``url`` (a PostgreSQL URL) through the server's Unix socket when it names a server on
    this machine's loopback and that socket exists; None otherwise."""
    params = parse_dsn(url)
    if params.get("host", "localhost") not in ("localhost", "127.0.0.1", "::1"):
        return None
    port = params.get("port", "5432")
    for folder in POSTGRES_SOCKET_DIRS:
        if (Path(folder) / f".s.PGSQL.{port}").exists():
            params.pop("hostaddr", None)
            return make_dsn(**{**params, "host": folder, "port": port})
    return None


def unavailable(database_url: str) -> str | None:
    """Why :func:`loopback_only` cannot serve a test needing ``database_url``, or None."""
    if socket_url(database_url) is None:
        return f"no Unix socket of the PostgreSQL server of {database_url!r} on this machine"
    try:
        with loopback_only():
            pass
    except OSError as exc:
        return f"no network namespace ({exc}: needs root or CAP_SYS_ADMIN)"
    return None
