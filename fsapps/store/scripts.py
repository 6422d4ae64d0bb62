"""Lua scripts: read once per process, run by EVALSHA, reloaded after NOSCRIPT.

Each script is a file ``fsapps/store/lua/<name>.lua`` beginning with a header that documents every
key and argument it uses::

    -- What the script does, atomically.
    -- KEYS[1] = ...
    -- ARGV[1] = ...

A :class:`Scripts` registry reads and lints each file the first time it is asked for it and
keeps it (source and SHA1) for the life of the process. :meth:`Scripts.run` sends EVALSHA; when
Redis answers NOSCRIPT (after a restart, a failover or SCRIPT FLUSH) it sends SCRIPT LOAD and
retries once. Works with :class:`redis.Redis` and :class:`redis.cluster.RedisCluster` (where all
KEYS must share a hash tag, which :mod:`fsapps.store.keys` guarantees within a domain).

Every key a script touches must arrive through KEYS, never be built from ARGV or by string
concatenation: Redis Cluster routes a script by its KEYS and cannot see any other key. The lint
(:func:`lint`) enforces it simply: the key argument of each ``redis.call``/``redis.pcall``
must be ``KEYS[...]`` or a local bound once to ``KEYS[...]`` (or the loop variable of
``ipairs(KEYS)``), and the header must document each ``KEYS[n]`` and ``ARGV[n]`` used.

Rules several scripts share live once, in ``fsapps/store/lua/include/<name>.lua``: a line
``--#include <name>`` in a script's body is replaced by that file before the script is linted
and hashed (Redis runs one self-contained text; the lint sees what Redis runs). The agent
scripts include ``agent_rules`` this way: the call-state transition table and the one rule
for "may a queue call be offered to this agent".
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.exceptions

from fsapps.errors import ScriptError
from fsapps.store.connection import RedisClient, store_errors

__all__ = ["INCLUDE_DIR", "LUA_DIR", "SCRIPTS", "Script", "ScriptCall", "Scripts", "arun_script",
           "lint", "run_script", "run_scripts"]

LUA_DIR = Path(__file__).resolve().parent / "lua"
# Shared snippets (not scripts of their own): ``--#include <name>`` pulls one in.
INCLUDE_DIR = LUA_DIR / "include"
_INCLUDE = re.compile(r"^--#include[ \t]+(\S+)[ \t]*$", re.MULTILINE)

ScriptArg = str | int | float
# (script name, its KEYS, its ARGV): one script of a batch (Scripts.run_many)
ScriptCall = tuple[str, Sequence[str], Sequence[ScriptArg]]

# Commands whose first argument is not a key (PUBLISH takes a channel).
_KEYLESS = frozenset({"TIME", "PUBLISH", "ECHO", "PING", "DBSIZE"})
_NAME = re.compile(r"^[a-z0-9_]+$")
_LONG_COMMENT = re.compile(r"--\[(=*)\[")
_LONG_STRING = re.compile(r"\[(=*)\[")


@dataclass(frozen=True)
class Script:
    name: str
    path: Path
    source: str
    sha: str
    keys: int  # KEYS documented in the header
    variadic: bool  # iterates over KEYS, so takes any number >= keys


def _blank_comments(source: str, strings_too: bool = False) -> str:
    """The source with comments (and with ``strings_too`` the insides of string literals)
    replaced by spaces; offsets and line numbers are kept."""
    out: list[str] = []
    i, n = 0, len(source)

    def blank(text: str) -> str:
        return "".join(ch if ch == "\n" else " " for ch in text)

    while i < n:
        ch = source[i]
        if source.startswith("--", i):
            long = _LONG_COMMENT.match(source, i)
            if long:
                close = "]" + long.group(1) + "]"
                end = source.find(close, long.end())
                end = n if end < 0 else end + len(close)
            else:
                end = source.find("\n", i)
                end = n if end < 0 else end
            out.append(blank(source[i:end]))
            i = end
        elif ch in "'\"":
            j = i + 1
            while j < n and source[j] != ch and source[j] != "\n":
                j += 2 if source[j] == "\\" else 1
            literal = source[i:j + 1]
            out.append(ch + blank(literal[1:-1]) + literal[-1:] if strings_too else literal)
            i = j + 1
        elif (long_string := _LONG_STRING.match(source, i)) is not None:
            close = "]" + long_string.group(1) + "]"
            end = source.find(close, long_string.end())
            end = n if end < 0 else end + len(close)
            out.append(blank(source[i:end]) if strings_too else source[i:end])
            i = end
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _call_arguments(code: str, start: int) -> list[str]:
    """Top-level comma-separated arguments of the call whose '(' is at ``start``."""
    args: list[str] = []
    depth, i, current = 0, start + 1, []
    while i < len(code):
        ch = code[i]
        if ch in "'\"":
            j = i + 1
            while j < len(code) and code[j] != ch:
                j += 2 if code[j] == "\\" else 1
            current.append(code[i:j + 1])
            i = j + 1
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    last = "".join(current).strip()
    if last or args:
        args.append(last)
    return args


def _key_variables(code: str) -> set[str]:
    """Locals bound to a KEYS entry exactly once (a reassigned one may hold anything)."""
    bound = set(re.findall(r"\blocal\s+([A-Za-z_]\w*)\s*=\s*KEYS\s*\[[^\]]+\]\s*(?:\n|;|$)",
                           code))
    loop = r"\bfor\s+[A-Za-z_]\w*\s*,\s*([A-Za-z_]\w*)\s+in\s+ipairs\(\s*KEYS\s*\)"
    bound |= set(re.findall(loop, code))
    safe = set()
    for name in bound:
        # Assignments other than `==`, `<=`, `>=`, `~=`: one is the binding itself.
        assignments = re.findall(rf"(?<![\w.]){name}\s*=(?!=)", code)
        if len(assignments) <= 1:
            safe.add(name)
    return safe


def _line(code: str, index: int) -> int:
    return code.count("\n", 0, index) + 1


def _documented(source: str, kind: str) -> set[int]:
    """Indexes n with a ``-- KIND[n] = ...`` line in the leading comment block."""
    header = re.match(r"(?:[ \t]*--[^\n]*\n|[ \t]*\n)*", source)
    text = header.group(0) if header else ""
    return {int(n) for n in re.findall(rf"--\s*{kind}\[(\d+)\]\s*=", text)}


def lint(source: str) -> list[str]:
    """Problems that make a script unsafe for Redis Cluster or undocumented; [] when fine."""
    problems: list[str] = []
    code = _blank_comments(source)
    # Same offsets as `code`, string contents blanked: where to look for calls and KEYS uses.
    bare = _blank_comments(source, strings_too=True)
    documented = {kind: _documented(source, kind) for kind in ("KEYS", "ARGV")}
    for kind in ("KEYS", "ARGV"):
        for match in re.finditer(rf"\b{kind}\[(\d+)\]", bare):
            if int(match.group(1)) not in documented[kind]:
                problems.append(f"line {_line(code, match.start())}: {kind}[{match.group(1)}] "
                                f"is used but the header has no '-- {kind}[{match.group(1)}] = '")
    key_variables = _key_variables(bare)
    for match in re.finditer(r"\bredis\.p?call\s*\(", bare):
        where = f"line {_line(code, match.start())}"
        args = _call_arguments(code, match.end() - 1)
        if not args:
            problems.append(f"{where}: {match.group(0)}) has no command")
            continue
        command = re.fullmatch(r"(['\"])([A-Za-z|]+)\1", args[0])
        if command is None:
            problems.append(f"{where}: command {args[0]!r} is not a string literal, so its key "
                            "cannot be checked")
            continue
        name = command.group(2).upper()
        if name in _KEYLESS:
            continue
        if len(args) < 2:
            continue  # a command without arguments touches no key
        key = args[1]
        if re.fullmatch(r"KEYS\s*\[[^\[\]]+\]", key) or key in key_variables:
            continue
        problems.append(f"{where}: {name} key {key!r} does not come from KEYS (Redis Cluster "
                        "routes scripts by KEYS; pass every key name in KEYS)")
    return problems


class Scripts:
    """The scripts of one directory, each read, linted and hashed once, run by EVALSHA."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else LUA_DIR
        self._scripts: dict[str, Script] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Scripts({str(self.directory)!r})"

    def names(self) -> list[str]:
        return sorted(path.stem for path in self.directory.glob("*.lua"))

    def get(self, name: str) -> Script:
        """The script ``name`` (file ``<name>.lua``), loaded on first use.

        Raises :class:`ScriptError` for a missing file or one that fails :func:`lint`.
        """
        with self._lock:
            script = self._scripts.get(name)
            if script is None:
                script = self._scripts[name] = self._load(name)
            return script

    def _load(self, name: str) -> Script:
        if not _NAME.match(name):
            raise ScriptError(f"script name {name!r} is not lowercase letters, digits, '_'")
        path = self.directory / f"{name}.lua"
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScriptError(f"script {name!r}: cannot read {str(path)!r}: {exc.strerror}") \
                from None
        source = self._expand(name, source)
        problems = lint(source)
        if problems:
            raise ScriptError(f"script {name!r} ({path.name}) refused: " + "; ".join(problems))
        code = _blank_comments(source)
        keys = max(_documented(source, "KEYS"), default=0)
        variadic = re.search(r"#KEYS\b|ipairs\(\s*KEYS\s*\)|unpack\(\s*KEYS\s*\)", code)
        sha = hashlib.sha1(source.encode("utf-8")).hexdigest()
        return Script(name, path, source, sha, keys, variadic is not None)

    def _expand(self, name: str, source: str) -> str:
        """``source`` with each ``--#include <snippet>`` line replaced by the snippet (from
        this registry's ``include/`` folder, else the packaged one); snippets do not nest."""
        def snippet(match: re.Match[str]) -> str:
            wanted = match.group(1)
            if not _NAME.match(wanted):
                raise ScriptError(f"script {name!r} includes {wanted!r}: not lowercase "
                                  "letters, digits, '_'")
            for folder in (self.directory / "include", INCLUDE_DIR):
                path = folder / f"{wanted}.lua"
                if path.is_file():
                    return path.read_text(encoding="utf-8").rstrip("\n")
            raise ScriptError(f"script {name!r} includes {wanted!r}, which is not in "
                              f"{str(self.directory / 'include')!r} nor {str(INCLUDE_DIR)!r}")
        return _INCLUDE.sub(snippet, source)

    def run(self, client: RedisClient, name: str, keys: Sequence[str],
            args: Sequence[ScriptArg] = ()) -> Any:
        """Run script ``name`` atomically in Redis and return what it returns.

        Sends EVALSHA; on NOSCRIPT loads the source and retries once. A wrong number of keys
        or an error raised inside the script (or keys in different cluster slots) raises
        :class:`ScriptError` naming the script; Redis being down raises ``StoreUnavailable``.
        """
        script = self._checked(name, keys)
        where = getattr(client, "fsapps_where", "Redis")
        with store_errors(where):
            try:
                try:
                    return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                except redis.exceptions.NoScriptError:
                    # The server lost its script cache (restart, failover, SCRIPT FLUSH).
                    self.run_load(client, script)
                    return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            except (redis.exceptions.ClusterDownError, redis.exceptions.ConnectionError,
                    redis.exceptions.TimeoutError):
                raise
            except (redis.exceptions.ResponseError,
                    redis.exceptions.RedisClusterException) as exc:
                raise ScriptError(f"script {name!r} failed: {' '.join(str(exc).split())}") \
                    from exc

    def run_many(self, client: RedisClient, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run several scripts in one round trip (a pipeline; each script atomic on its own)
        and return their replies in order. A script that failed in Redis gets a
        :class:`ScriptError` in its place, so the others' replies are not lost; scripts Redis
        did not know (NOSCRIPT: nothing of them ran) are loaded and run again in a second
        round trip. Redis being down raises ``StoreUnavailable``."""
        scripts = [self._checked(name, keys) for name, keys, _ in calls]
        where = getattr(client, "fsapps_where", "Redis")
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        with store_errors(where):
            for attempt in (1, 2):
                pipe = client.pipeline(transaction=False)
                for i in todo:
                    _, keys, args = calls[i]
                    pipe.execute_command("EVALSHA", scripts[i].sha, len(keys), *keys, *args)
                results = pipe.execute(raise_on_error=False) if todo else []
                unknown = []
                for i, result in zip(todo, results, strict=True):
                    if isinstance(result, redis.exceptions.NoScriptError) and attempt == 1:
                        unknown.append(i)
                    elif isinstance(result, redis.exceptions.ConnectionError):
                        raise result
                    elif isinstance(result, Exception):
                        replies[i] = ScriptError(f"script {calls[i][0]!r} failed: "
                                                 f"{' '.join(str(result).split())}")
                    else:
                        replies[i] = result
                if not unknown:
                    break
                for name in sorted({calls[i][0] for i in unknown}):
                    self.run_load(client, self.get(name))
                todo = unknown
        return replies

    def run_load(self, client: RedisClient, script: Script) -> None:
        """SCRIPT LOAD ``script`` (after Redis lost its script cache)."""
        loaded = client.execute_command("SCRIPT LOAD", script.source)
        if loaded != script.sha:
            raise ScriptError(f"script {script.name!r}: Redis hashed it to {loaded!r}, "
                              f"expected {script.sha!r}")

    def _checked(self, name: str, keys: Sequence[str]) -> Script:
        """The script ``name``, refusing a wrong number of keys."""
        script = self.get(name)
        if len(keys) < script.keys or (len(keys) > script.keys and not script.variadic):
            raise ScriptError(f"script {name!r} takes {script.keys} key(s), got {len(keys)}: "
                              f"{list(keys)!r}")
        return script


# The process-wide registry of the packaged scripts (this module survives FreeSWITCH's reload
# of entry modules, so each file is read once per process).
SCRIPTS = Scripts()


def run_script(client: RedisClient, name: str, keys: Sequence[str],
               args: Sequence[ScriptArg] = ()) -> Any:
    """:meth:`Scripts.run` on the packaged scripts in ``fsapps/store/lua``."""
    return SCRIPTS.run(client, name, keys, args)


async def arun_script(client: Any, name: str, keys: Sequence[str],
                      args: Sequence[ScriptArg] = ()) -> Any:
    """:func:`run_script` on an asyncio client (``redis.asyncio``; the CTI server's event
    loop): EVALSHA, the source loaded once after NOSCRIPT; a script's error is ScriptError.
    Redis errors are the caller's to translate (``store_errors``)."""
    script = SCRIPTS.get(name)
    try:
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            await client.script_load(script.source)
            return await client.evalsha(script.sha, len(keys), *keys, *args)
    except redis.exceptions.ResponseError as exc:
        raise ScriptError(f"script {name!r} failed: {' '.join(str(exc).split())}") from exc


def run_scripts(client: RedisClient, calls: Sequence[ScriptCall]) -> list[Any]:
    """:meth:`Scripts.run_many` on the packaged scripts in ``fsapps/store/lua``."""
    return SCRIPTS.run_many(client, calls)
