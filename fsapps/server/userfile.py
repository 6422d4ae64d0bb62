"""The ``users:`` list of a settings file, edited in place (``fsapps users add``).

Only the ``users:`` block is rewritten; every other line of the file, comments included, is
kept as the administrator wrote it (a YAML round trip through PyYAML would drop the comments
that document each setting). The new text is loaded with the settings loader before it
replaces the file, so a change that would not load is never written.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from fsapps import config
from fsapps.errors import BadInput

# A top-level key (column 0), e.g. "users:" or "api_tokens: []"
_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")


def merge_user(users: Sequence[Mapping[str, Any]], username: str, password_hash: str,
               role: str, extension: str | None, domains: Sequence[str] | None,
               ) -> tuple[list[dict[str, Any]], bool]:
    """``users`` with ``username`` added, or updated in place (its place in the list kept;
    an extension or domains left out keep their value). Returns the list and whether the user
    was new."""
    merged = [dict(user) for user in users]
    for user in merged:
        if user.get("username") == username:
            user.update(password_hash=password_hash, role=role)
            if extension is not None:
                user["extension"] = extension
            if domains is not None:
                user["domains"] = list(domains)
            return merged, False
    entry: dict[str, Any] = {"username": username, "password_hash": password_hash,
                             "role": role, "extension": extension or ""}
    if domains:
        entry["domains"] = list(domains)
    merged.append(entry)
    return merged, True


def users_block(users: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``users:`` key and its list as lines, in the sample's layout."""
    if not users:
        return ["users: []\n"]
    body = yaml.safe_dump(list(users), sort_keys=False, default_flow_style=False,
                          allow_unicode=True, width=1000)
    return ["users:\n", *(f"  {line}\n" for line in body.splitlines())]


def replace_users(text: str, users: Sequence[Mapping[str, Any]]) -> str:
    """``text`` with its top-level ``users:`` block replaced by ``users`` (appended when the
    file has none). The block runs to the next top-level key; the comment lines just before
    that key stay, as they belong to it."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"users\s*:", line)), None)
    if start is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        return "".join([*lines, *users_block(users)])
    end = next((i for i in range(start + 1, len(lines)) if _TOP_KEY.match(lines[i])),
               len(lines))
    while end > start + 1 and _is_comment_or_blank(lines[end - 1]) and \
            not lines[end - 1].startswith((" ", "\t")):
        end -= 1
    return "".join([*lines[:start], *users_block(users), *lines[end:]])


def _is_comment_or_blank(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def read_users(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    users = (data or {}).get("users") if isinstance(data, dict) else None
    if users is None:
        return []
    if not isinstance(users, list) or not all(isinstance(user, dict) for user in users):
        raise BadInput(f"{path}: users must be a list of mappings")
    return users


def write_checked(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` once the settings loader accepts it (ConfigError
    otherwise, the file untouched); the file's permissions are kept (it may be 0600)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        config.load_settings(temporary)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
