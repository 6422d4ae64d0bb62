"""Agent groups (seed 001 ``ext_group`` / ``ext_group_map``): settings, members (agents
logged into the group), blacklist and VIP numbers.

PostgreSQL is the record; Redis the working set the ACD reads on every call. Every change is
made inside a PostgreSQL transaction that also writes Redis before it commits
(:func:`written_together`), so a Redis failure leaves PostgreSQL untouched, and a commit that
fails after the Redis write puts back what Redis held; :func:`load_into_redis` rebuilds the
working set from the record (at start-up, or after Redis lost its data).

Keys (``p`` prefix, ``d`` domain):

``p:{d}:group:<g>``            hash  no expiry: the ext_group row (name, call mode, timeouts,
                                     ring files, hold music, wrap-up, policies, current ext,
                                     strategy, tier wait, skill relax), and ``level:<ext>``
                                     = the agent's tier in the group (ext_group_level; absent
                                     = 1), where the reserve and dispatch scripts read it
                                     with the group.
``p:{d}:groups``               set   group numbers of the domain.
``p:{d}:group:<g>:members``    zset  logged-in member extensions, score = member position.
``p:{d}:group:<g>:blacklist``  set   caller numbers the group refuses.
``p:{d}:group:<g>:vip``        set   caller numbers queued as level vip.
``p:{d}:memory:<g>:<caller>``  string, EX memory TTL: the extension that last served caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

from fsapps.config import GroupDefaults
from fsapps.context import Context
from fsapps.db.connection import Cursor, transaction
from fsapps.domain.agents import Agents
from fsapps.domain.numbers import valid_gateway
from fsapps.domain.routing import CallMode, parse_level, parse_mode, parse_strategy
from fsapps.domain.waiting import EXIT_KEYS, parse_announce, parse_destination
from fsapps.errors import NotFound
from fsapps.fslog import log
from fsapps.store import hash_fields


@dataclass(frozen=True)
class Group:
    group_number: str
    group_name: str = ""
    group_call_mode: int = 5
    group_callout_timeout: int = 15
    welcome_ring: str = ""
    black_list_ring: str = ""
    busy_ring: str = ""
    transfer_ring: str = ""
    hold_music: str = ""
    wrapup_seconds: int | None = None
    max_no_answer: int | None = None
    busy_ring_repeats: int | None = None
    blacklist_action: str = "hangup"
    current_ext_number: str = ""
    domain: str = "default"
    agent_strategy: str = ""  # routing.STRATEGIES: "" = the call mode's order
    tier_wait_seconds: int | None = None  # tiers: see docs/acd.md (None/0: no wait)
    skill_relax_seconds: int | None = None  # skills relax a step every N s (None/0: never)
    service_level_seconds: int = 20  # statistics: answered before this wait is "in service"
    # waiting callers (docs/acd.md, fsapps.domain.waiting): 0 / "" = today's behaviour
    announce_seconds: int = 0  # announce place and estimated wait every N s
    announce: str = ""  # the announcement's steps ("": the English default)
    max_wait_seconds: int = 0  # then overflow_to (and at once while nobody is logged in)
    overflow_to: str = ""  # hangup, group:<g>, extension:<ext>, dialplan:<dest> [..]
    exit_key: str = ""  # a key the waiting caller presses to leave to exit_to
    exit_to: str = ""
    # callback instead of waiting (exit_to "callback", fsapps.domain.callbacks): no gateway =
    # no callbacks (today's behaviour)
    callback_gateway: str = ""  # sofia/gateway/<gw>/<the caller's number>
    callback_max_attempts: int = 3  # times the caller is called back before it is dropped
    callback_retry_seconds: int = 60  # between a callback not answered and the next
    callback_confirm: str = ""  # a file the caller hears once queued ("": mod_flite's English)

    @property
    def mode(self) -> CallMode:
        return parse_mode(self.group_call_mode)

    def wrapup(self, defaults: GroupDefaults) -> int:
        return defaults.wrapup_seconds if self.wrapup_seconds is None else self.wrapup_seconds

    def no_answer_limit(self, defaults: GroupDefaults) -> int:
        return defaults.max_no_answer if self.max_no_answer is None else self.max_no_answer

    def busy_repeats(self, defaults: GroupDefaults) -> int:
        return defaults.busy_ring_repeats if self.busy_ring_repeats is None \
            else self.busy_ring_repeats

    def music(self, defaults: GroupDefaults) -> str:
        return self.hold_music or defaults.hold_music

    def to_hash(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> Group:
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = data.get(f.name)
            if raw is None:
                continue
            if f.name in ("group_call_mode", "group_callout_timeout"):
                values[f.name] = int(raw)
            elif f.name == "service_level_seconds":
                values[f.name] = int(raw) if raw.isdigit() and int(raw) > 0 else 20
            elif f.name in ("announce_seconds", "max_wait_seconds", "callback_retry_seconds"):
                values[f.name] = int(raw) if raw.isdigit() else 0
            elif f.name == "callback_max_attempts":
                values[f.name] = int(raw) if raw.isdigit() and int(raw) > 0 else 3
            elif f.name in ("wrapup_seconds", "max_no_answer", "busy_ring_repeats",
                            "tier_wait_seconds", "skill_relax_seconds"):
                values[f.name] = int(raw) if raw != "" else None
            else:
                values[f.name] = raw
        return cls(**values)


@dataclass(frozen=True)
class RoutingFacts:
    """What the ACD needs to route one call, read in one round trip."""

    group: Group | None
    members: list[str]
    blacklisted: bool
    vip: bool
    remembered: str | None


_COLUMNS = [f.name for f in fields(Group)]


def check_waiting(values: Mapping[str, object]) -> None:
    """ValueError naming a waiting-caller setting that could not be used (an announcement
    step, a destination, an exit key): refused when set, not when a caller waits."""
    for column in ("overflow_to", "exit_to"):
        if column in values:
            parse_destination(str(values[column] or ""))
    if values.get("announce"):
        parse_announce(str(values["announce"]))
    gateway = str(values.get("callback_gateway") or "")
    if gateway and not valid_gateway(gateway):
        raise ValueError(f"not a gateway: {gateway!r} ([A-Za-z0-9_.-])")
    if "callback_max_attempts" in values and \
            not 1 <= int(values["callback_max_attempts"] or 0) <= 20:  # type: ignore[call-overload]
        raise ValueError("callback max attempts: 1-20")
    if "callback_retry_seconds" in values and \
            not 0 <= int(values["callback_retry_seconds"] or 0) <= 86400:  # type: ignore[call-overload]
        raise ValueError("callback retry seconds: 0-86400")
    key = str(values.get("exit_key") or "")
    if key and (len(key) != 1 or key not in EXIT_KEYS):
        raise ValueError(f"not an exit key: {key!r} (one of {EXIT_KEYS})")


class RedisUndo:
    """What a change is about to overwrite in Redis, read just before it writes, so that it can
    be put back when PostgreSQL then fails to commit. Only what the change touches is kept: the
    named fields of a hash, the named members of a set or zset, whole keys only where the
    change replaces them whole (a concurrent write to the same values in the moment between
    the write and a failed commit would be undone as well; nothing else is)."""

    def __init__(self, r: Any) -> None:
        self.r = r
        self.written = False
        self._reads: list[tuple[str, str, Sequence[str]]] = []
        self._values: list[Any] = []

    def capture(self, *, new: Sequence[str] = (), hashes: Sequence[str] = (),
                fields: Mapping[str, Sequence[str]] | None = None,
                sets: Sequence[str] = (), members: Mapping[str, Sequence[str]] | None = None,
                zsets: Sequence[str] = (),
                scores: Mapping[str, Sequence[str]] | None = None) -> None:
        """Read, in one round trip: keys that may not exist yet (``new``: deleted again on
        undo if absent now), whole hashes, hash ``fields``, whole ``sets``, set ``members``,
        whole ``zsets`` and zset members' ``scores``."""
        reads: list[tuple[str, str, Sequence[str]]] = [("new", k, ()) for k in new]
        reads += [("hash", k, ()) for k in hashes]
        reads += [("fields", k, list(v)) for k, v in (fields or {}).items() if v]
        reads += [("set", k, ()) for k in sets]
        reads += [("members", k, list(v)) for k, v in (members or {}).items() if v]
        reads += [("zset", k, ()) for k in zsets]
        reads += [("scores", k, list(v)) for k, v in (scores or {}).items() if v]
        pipe = self.r.pipeline(transaction=False)
        for kind, key, names in reads:
            if kind == "new":
                pipe.exists(key)
            elif kind == "hash":
                pipe.hgetall(key)
            elif kind == "fields":
                pipe.hmget(key, list(names))
            elif kind == "set":
                pipe.smembers(key)
            elif kind == "members":
                for name in names:
                    pipe.sismember(key, name)
            elif kind == "zset":
                pipe.zrange(key, 0, -1, withscores=True)
            else:
                for name in names:
                    pipe.zscore(key, name)
        results = iter(pipe.execute() if reads else [])
        for kind, key, names in reads:
            if kind in ("members", "scores"):
                value: Any = [next(results) for _ in names]
            else:
                value = next(results)
            self._reads.append((kind, key, names))
            self._values.append(value)

    def write(self, pipe: Any) -> list[Any]:
        """Execute the change's Redis pipeline (after :meth:`capture`); from now on a failed
        commit restores what was captured."""
        result: list[Any] = pipe.execute()
        self.written = True
        return result

    def restore(self) -> None:
        """Put back what :meth:`capture` read, in one MULTI/EXEC."""
        pipe = self.r.pipeline(transaction=True)
        absent = []
        for (kind, key, names), value in zip(self._reads, self._values, strict=True):
            if kind == "new":
                if not value:
                    absent.append(key)
            elif kind == "hash":
                pipe.delete(key)
                if value:
                    pipe.hset(key, mapping=value)
            elif kind == "fields":
                for name, old in zip(names, value, strict=True):
                    if old is None:
                        pipe.hdel(key, name)
                    else:
                        pipe.hset(key, name, old)
            elif kind == "set":
                pipe.delete(key)
                if value:
                    pipe.sadd(key, *value)
            elif kind == "members":
                for name, was in zip(names, value, strict=True):
                    if was:
                        pipe.sadd(key, name)
                    else:
                        pipe.srem(key, name)
            elif kind == "zset":
                pipe.delete(key)
                if value:
                    pipe.zadd(key, dict(value))
            else:
                for name, score in zip(names, value, strict=True):
                    if score is None:
                        pipe.zrem(key, name)
                    else:
                        pipe.zadd(key, {name: score})
        if absent:  # last: a key created by the change goes whole
            pipe.delete(*absent)
        pipe.execute()


@contextmanager
def written_together(ctx: Context) -> Iterator[tuple[Cursor, RedisUndo]]:
    """One change of the record and the working set. The block writes PostgreSQL through the
    cursor, reads into the undo log what it is about to overwrite in Redis
    (:meth:`RedisUndo.capture`), then writes Redis in one MULTI/EXEC (:meth:`RedisUndo.write`);
    the transaction commits when the block ends. Redis failing (or anything raising in the
    block): the transaction is rolled back, PostgreSQL unchanged, Redis unchanged (MULTI/EXEC
    applies all or nothing). The commit failing after the Redis write: Redis is put back from
    the undo log. Either way the error propagates."""
    undo = RedisUndo(ctx.redis)
    try:
        with transaction(ctx.pool) as cur:
            yield cur, undo
    except BaseException as exc:
        if undo.written:
            try:
                undo.restore()
            except Exception as again:
                log("CRIT", f"could not put Redis back after a failed change ({exc}): {again}; "
                            "rebuild the working set from PostgreSQL")
        raise


class Groups:
    """The groups of one domain."""

    def __init__(self, ctx: Context, domain: str | None = None) -> None:
        self.ctx = ctx
        self.keys = ctx.keys(domain)
        self.domain = self.keys.domain
        self.r = ctx.redis
        # the agents' side of a login (their groups field) is the agent module's to write
        self.agents = Agents(ctx, domain)

    # ---------------------------------------------------------------- reading (Redis) ----
    def get(self, number: str) -> Group | None:
        data = self.r.hgetall(self.keys.group(number))
        return Group.from_hash(data) if data else None

    def numbers(self) -> list[str]:
        return sorted(self.r.smembers(self.keys.groups()))

    def members(self, number: str) -> list[str]:
        return list(self.r.zrange(self.keys.group_members(number), 0, -1))

    def routing_facts(self, number: str, caller: str) -> RoutingFacts:
        """Group settings, members in order, blacklist and VIP membership of the caller and
        the remembered agent: one pipelined round trip."""
        k = self.keys
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(k.group(number))
        pipe.zrange(k.group_members(number), 0, -1)
        pipe.sismember(k.group_blacklist(number), caller)
        pipe.sismember(k.group_vip(number), caller)
        pipe.get(k.memory(number, caller))
        data, members, black, vip, remembered = pipe.execute()
        return RoutingFacts(Group.from_hash(data) if data else None, list(members), bool(black),
                            bool(vip), remembered or None)

    def remember(self, number: str, caller: str, extension: str, pipeline: Any = None) -> None:
        """Record who served this caller (memory-first call modes)."""
        target = pipeline if pipeline is not None else self.r
        target.set(self.keys.memory(number, caller), extension,
                   ex=self.ctx.settings.group_defaults.memory_ttl_seconds)

    # ---------------------------------------------------------------- writing (PG+Redis) -
    def save(self, group: Group) -> None:
        """Create or replace a group's settings (record and working set)."""
        parse_mode(group.group_call_mode)
        parse_strategy(group.agent_strategy)
        check_waiting(asdict(group))
        group = Group(**{**asdict(group), "domain": self.domain})
        cols = ", ".join(_COLUMNS)
        marks = ", ".join(["%s"] * len(_COLUMNS))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c != "group_number")
        with written_together(self.ctx) as (cur, undo):
            cur.execute(f"INSERT INTO ext_group ({cols}) VALUES ({marks}) "
                        f"ON CONFLICT (group_number) DO UPDATE SET {updates}",
                        [getattr(group, c) for c in _COLUMNS])
            self._write_group(group, undo)

    def _write_group(self, group: Group, undo: RedisUndo) -> None:
        key = self.keys.group(group.group_number)
        undo.capture(hashes=[key], members={self.keys.groups(): [group.group_number]})
        pipe = self.r.pipeline(transaction=True)
        # every column is written (None as ""): no delete first, which would drop the
        # members' tier levels (level:<ext>) kept in the same hash
        pipe.hset(key, mapping=hash_fields(group.to_hash()))
        pipe.sadd(self.keys.groups(), group.group_number)
        undo.write(pipe)

    def change(self, number: str, changes: Mapping[str, object], *,
               create: Mapping[str, object] | None = None) -> tuple[Group, bool] | None:
        """Set the columns in ``changes`` on the group's record and working set, keeping its
        other settings. With ``create`` (columns for a new group only, may be empty) a missing
        group is created, its other columns at their defaults. Returns (the group as it is now,
        created), or None when the group does not exist in this domain (a group of another
        domain with this number is left alone)."""
        new = dict(create or {})
        unknown = [c for c in [*changes, *new]
                   if c not in _COLUMNS or c in ("group_number", "domain")]
        if unknown:
            raise ValueError(f"not a group setting: {unknown!r}")
        for values in (changes, new):
            if "group_call_mode" in values:
                parse_mode(values["group_call_mode"])
            if "agent_strategy" in values:
                parse_strategy(values["agent_strategy"])
            check_waiting(values)
        names = list(changes)
        returning = ", ".join(f"ext_group.{c}" for c in _COLUMNS)
        with written_together(self.ctx) as (cur, undo):
            if create is not None:
                new.update(changes)
                columns = ["group_number", "domain", *new]
                sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in names) or "domain = EXCLUDED.domain"
                cur.execute(
                    f"INSERT INTO ext_group ({', '.join(columns)}) "
                    f"VALUES ({', '.join(['%s'] * len(columns))}) "
                    f"ON CONFLICT (group_number) DO UPDATE SET {sets} "
                    f"WHERE ext_group.domain = %s RETURNING {returning}, (xmax = 0)",
                    [number, self.domain, *new.values(), self.domain])
            else:
                sets = ", ".join(f"{c} = %s" for c in names) or "domain = domain"
                cur.execute(f"UPDATE ext_group SET {sets} WHERE group_number = %s AND "
                            f"domain = %s RETURNING {returning}, false",
                            [*changes.values(), number, self.domain])
            row = cur.fetchone()
            if row is None:
                return None
            group = Group(**dict(zip(_COLUMNS, row[:-1], strict=True)))
            self._write_group(group, undo)
        return group, bool(row[-1])

    def remove(self, number: str) -> bool:
        """Delete a group of this domain, its members, blacklist and VIP list; its members'
        agents no longer list it. False if it did not exist."""
        k = self.keys
        with written_together(self.ctx) as (cur, undo):
            cur.execute("DELETE FROM ext_group WHERE group_number = %s AND domain = %s",
                        [number, self.domain])
            existed = cur.rowcount > 0
            members = self.members(number)
            undo.capture(hashes=[k.group(number)], zsets=[k.group_members(number)],
                         sets=[k.group_blacklist(number), k.group_vip(number)],
                         members={k.groups(): [number]},
                         fields={k.agent(ext): ["groups", "logged_in"] for ext in members})
            pipe = self.r.pipeline(transaction=True)
            pipe.delete(k.group(number), k.group_members(number), k.group_blacklist(number),
                        k.group_vip(number))
            pipe.srem(k.groups(), number)
            for ext in members:
                left = [g for g in self.agents.groups_of(ext) if g != number]
                self.agents.set_groups(ext, left, pipe)
            undo.write(pipe)
        return existed

    def set_numbers(self, number: str, kind: str, numbers: Iterable[str]) -> None:
        """Replace the group's blacklist (``kind="blacklist"``) or VIP list (``"vip"``)."""
        table, key = {"blacklist": ("group_blacklist", self.keys.group_blacklist(number)),
                      "vip": ("group_vip", self.keys.group_vip(number))}[kind]
        wanted = sorted(set(numbers))
        with written_together(self.ctx) as (cur, undo):
            cur.execute(f"DELETE FROM {table} WHERE group_number = %s", [number])
            for caller in wanted:
                cur.execute(f"INSERT INTO {table} (group_number, number) "
                            "VALUES (%s, %s)", [number, caller])
            undo.capture(sets=[key])
            pipe = self.r.pipeline(transaction=True)
            pipe.delete(key)
            if wanted:
                pipe.sadd(key, *wanted)
            undo.write(pipe)

    def login(self, extension: str, numbers: list[str]) -> list[str]:
        """Make the agent a member of exactly these groups (seed agent_up / nway_login).
        Unknown groups are refused with NotFound naming them. Returns the groups."""

        numbers = list(dict.fromkeys(n for n in numbers if n))
        known = set(self.numbers())
        unknown = [n for n in numbers if n not in known]
        if unknown:
            raise NotFound(f"unknown group(s) {', '.join(unknown)!r} for agent {extension!r}")
        previous = self.agents.groups_of(extension)
        with written_together(self.ctx) as (cur, undo):
            cur.execute("DELETE FROM ext_group_map WHERE ext = %s AND ext_group_number IN "
                        "(SELECT group_number FROM ext_group WHERE domain = %s)",
                        [extension, self.domain])
            positions = {}
            for number in numbers:
                cur.execute(
                    "INSERT INTO ext_group_map (ext_group_id, ext_group_number, ext, position) "
                    "SELECT id, group_number, %s, COALESCE((SELECT max(position) + 1 FROM "
                    "ext_group_map WHERE ext_group_number = %s), 1) FROM ext_group "
                    "WHERE group_number = %s RETURNING position", [extension, number, number])
                row = cur.fetchone()
                positions[number] = row[0] if row else 1
            undo.capture(fields={self.keys.agent(extension): ["groups", "logged_in"]},
                         scores={self.keys.group_members(n): [extension]
                                 for n in {*previous, *positions}})
            pipe = self.r.pipeline(transaction=True)
            for number in previous:
                if number not in positions:
                    pipe.zrem(self.keys.group_members(number), extension)
            for number, position in positions.items():
                pipe.zadd(self.keys.group_members(number), {extension: position})
            self.agents.set_groups(extension, numbers, pipe)
            undo.write(pipe)
        return numbers

    def set_level(self, number: str, extension: str, level: int) -> bool:
        """The agent's tier in the group (1 = rung first; ext_group_level), whether or not it
        is logged in now. False when the group is not this domain's."""
        level = parse_level(level)
        key = self.keys.group(number)
        with written_together(self.ctx) as (cur, undo):
            cur.execute("SELECT 1 FROM ext_group WHERE group_number = %s AND domain = %s",
                        [number, self.domain])
            if cur.fetchone() is None:
                return False
            cur.execute("INSERT INTO ext_group_level (group_number, ext, level) "
                        "VALUES (%s, %s, %s) ON CONFLICT (group_number, ext) "
                        "DO UPDATE SET level = EXCLUDED.level", [number, extension, level])
            undo.capture(fields={key: [f"level:{extension}"]})
            pipe = self.r.pipeline(transaction=True)
            pipe.hset(key, f"level:{extension}", level)
            undo.write(pipe)
        return True

    def levels(self, number: str) -> dict[str, int]:
        """Every agent given a tier in the group (others are level 1)."""
        data = self.r.hgetall(self.keys.group(number))
        return {k.removeprefix("level:"): int(v) for k, v in data.items()
                if k.startswith("level:") and v}

    def load_into_redis(self) -> int:
        """Rebuild this domain's groups, members, blacklists and VIP lists in Redis from
        PostgreSQL. Returns the number of groups."""
        with transaction(self.ctx.pool) as cur:
            cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM ext_group "
                        "WHERE domain = %s", [self.domain])
            groups = [Group(**dict(zip(_COLUMNS, row, strict=True))) for row in cur.fetchall()]
            cur.execute("SELECT m.ext_group_number, m.ext, m.position FROM ext_group_map m "
                        "JOIN ext_group g ON g.group_number = m.ext_group_number "
                        "WHERE g.domain = %s ORDER BY m.position NULLS LAST, m.id",
                        [self.domain])
            members = cur.fetchall()
            cur.execute("SELECT 'blacklist', b.group_number, b.number FROM group_blacklist b "
                        "JOIN ext_group g USING (group_number) WHERE g.domain = %s UNION ALL "
                        "SELECT 'vip', v.group_number, v.number FROM group_vip v "
                        "JOIN ext_group g USING (group_number) WHERE g.domain = %s",
                        [self.domain, self.domain])
            lists = cur.fetchall()
            cur.execute("SELECT l.group_number, l.ext, l.level FROM ext_group_level l "
                        "JOIN ext_group g USING (group_number) WHERE g.domain = %s",
                        [self.domain])
            levels = cur.fetchall()
        k = self.keys
        pipe = self.r.pipeline(transaction=True)
        for group in groups:
            n = group.group_number
            pipe.delete(k.group(n), k.group_members(n), k.group_blacklist(n), k.group_vip(n))
            pipe.hset(k.group(n), mapping=hash_fields(group.to_hash()))
            pipe.sadd(k.groups(), n)
        for index, (number, ext, position) in enumerate(members):
            pipe.zadd(k.group_members(number), {ext: position if position is not None
                                                else 1_000_000 + index})
        for kind, number, caller in lists:
            pipe.sadd(k.group_blacklist(number) if kind == "blacklist" else k.group_vip(number),
                      caller)
        for number, ext, level in levels:
            pipe.hset(k.group(number), f"level:{ext}", level)
        pipe.execute()
        return len(groups)
