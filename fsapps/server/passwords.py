"""Password hashes for CTI users: PBKDF2-HMAC-SHA256, stored as one self-describing string.

Format: ``pbkdf2_sha256$<iterations>$<salt, base64>$<hash, base64>`` (standard base64 with
padding). The settings file holds only such hashes; ``python -m fsapps.server.passwords``
prints one.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import hmac
import os
import sys
from collections.abc import Sequence

ALGORITHM = "pbkdf2_sha256"
# OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
DEFAULT_ITERATIONS = 600_000
SALT_BYTES = 16
# What `fsapps users add` accepts: at least this long and not the user's own name.
MIN_LENGTH = 8

# The demo's users log in with their own name as password (admin/admin, supervisor/supervisor,
# agent/agent: the seed's login example). They are published, so a server other machines reach
# must not accept them (fsapps.server.app refuses to start).
KNOWN_DEMO_PASSWORDS = ("admin", "supervisor", "agent")
# The hashes of those passwords that conf/fsapps.yaml shipped until issue 17: a line copied from
# an old sample is recognised by its text, whatever the user is called, at no hashing cost.
SHIPPED_DEMO_HASHES = frozenset({
    "pbkdf2_sha256$600000$t/PKUbLOS0oEhUYa2Tp0cQ==$RL90UfpuHGQU8yNPuPDwrf2F3HAMUvthDCI1eKiNpUs=",
    "pbkdf2_sha256$600000$x0/0wxu6gT3LP2SWyuEblg==$s4+zcveGgI1wjCbItpDM6Bi+CrSDr8CL8yj1YWUleRs=",
    "pbkdf2_sha256$600000$3JQ+bf1PkZF/3ZfWV1dSJQ==$s9kU41b8Ym6wiZ/9rxIDEAu9OAOi4PvlB6KAvsV02V0=",
})


def hash_password(plain: str, *, iterations: int = DEFAULT_ITERATIONS) -> str:
    """Return a new hash of ``plain`` with a fresh random salt; two calls never give the same."""
    if iterations < 1:
        raise ValueError(f"iterations must be positive, got {iterations!r}")
    salt = os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha256", plain.encode("utf-8"), salt, iterations)
    return "$".join((ALGORITHM, str(iterations), _b64(salt), _b64(digest)))


def verify_password(plain: str, hashed: str) -> bool:
    """True when ``plain`` is the password ``hashed`` was made from.

    A malformed or foreign hash is simply not a match (False), never an exception, so a login
    handler has one outcome to deal with. The comparison takes constant time.
    """
    parts = _split(hashed)
    if parts is None:
        return False
    iterations, salt, expected = parts
    digest = hashlib.pbkdf2_hmac("sha256", plain.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


def has_known_demo_password(username: str, hashed: str) -> bool:
    """True when the user logs in with a published demo password.

    Caught: a hash copied from an old sample (by its text), and a user named like a demo user
    whose password is one of :data:`KNOWN_DEMO_PASSWORDS` (verified, constant time). Other
    users are not hashed against the list: each verification costs ~0.3 s, and a server with
    hundreds of agents would take minutes to start; `fsapps users add` refuses such passwords
    for them instead.
    """
    if hashed in SHIPPED_DEMO_HASHES:
        return True
    if username not in KNOWN_DEMO_PASSWORDS:
        return False
    # every candidate is tried (no early exit), so the time taken tells nothing
    matches = [verify_password(candidate, hashed) for candidate in KNOWN_DEMO_PASSWORDS]
    return any(matches)


def weakness(username: str, plain: str) -> str | None:
    """Why ``plain`` is too weak a password for ``username``, or None when it will do."""
    if len(plain) < MIN_LENGTH:
        return f"shorter than {MIN_LENGTH} characters"
    if plain.casefold() == username.casefold():
        return "the same as the user name"
    if plain in KNOWN_DEMO_PASSWORDS:
        return "a published demo password"
    return None


def is_password_hash(value: str) -> bool:
    """True when ``value`` has the shape :func:`hash_password` produces (nothing is verified)."""
    return _split(value) is not None


def _split(hashed: str) -> tuple[int, bytes, bytes] | None:
    fields = hashed.split("$")
    if len(fields) != 4 or fields[0] != ALGORITHM or not fields[1].isdigit():
        return None
    iterations = int(fields[1])
    try:
        salt = base64.b64decode(fields[2], validate=True)
        digest = base64.b64decode(fields[3], validate=True)
    except (binascii.Error, ValueError):
        return None
    if iterations < 1 or not salt or not digest:
        return None
    return iterations, salt, digest


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def main(argv: Sequence[str] | None = None) -> int:
    """Prompt for a password (twice, not echoed) and print its hash for ``password_hash``.

    With stdin not a terminal, the first line of stdin is the password (for scripts).
    """
    del argv  # no options yet; the password is never taken from the command line (ps, history)
    if sys.stdin.isatty():
        plain = getpass.getpass("password: ")
        if getpass.getpass("again: ") != plain:
            print("fsapps: the two passwords differ", file=sys.stderr)
            return 1
    else:
        plain = sys.stdin.readline().rstrip("\r\n")
    if not plain:
        print("fsapps: refusing an empty password", file=sys.stderr)
        return 1
    print(hash_password(plain))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
