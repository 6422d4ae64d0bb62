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
