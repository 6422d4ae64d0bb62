"""Agent groups (seed 001 ``ext_group`` / ``ext_group_map``): settings, members (agents
logged into the group), blacklist and VIP numbers.

PostgreSQL is the record; Redis the working set the ACD reads on every call. Every change is
made inside a PostgreSQL transaction that also writes Redis before it commits, so a Redis
failure leaves PostgreSQL untouched; :func:`load_into_redis` rebuilds the working set from the
record (at start-up, or after Redis lost its data).

Keys (``p`` prefix, ``d`` domain):

``p:{d}:group:<g>``            hash  no expiry: the ext_group row (name, call mode, timeouts,
                                     ring files, hold music, wrap-up, policies, current ext).
``p:{d}:groups``               set   group numbers of the domain.
``p:{d}:group:<g>:members``    zset  logged-in member extensions, score = member position.
``p:{d}:group:<g>:blacklist``  set   caller numbers the group refuses.
``p:{d}:group:<g>:vip``        set   caller numbers queued as level vip.
``p:{d}:memory:<g>:<caller>``  string, EX memory TTL: the extension that last served caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

from fsapps.config import GroupDefaults
from fsapps.context import Context
from fsapps.db.connection import transaction
from fsapps.routing import CallMode, parse_mode
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
            elif f.name in ("wrapup_seconds", "max_no_answer", "busy_ring_repeats"):
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


class Groups:
    """The groups of one domain."""

    def __init__(self, ctx: Context, domain: str | None = None) -> None:
        self.ctx = ctx
        self.keys = ctx.keys(domain)
        self.domain = self.keys.domain
        self.r = ctx.redis

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
        group = Group(**{**asdict(group), "domain": self.domain})
        cols = ", ".join(_COLUMNS)
        marks = ", ".join(["%s"] * len(_COLUMNS))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c != "group_number")
        with transaction(self.ctx.pool) as cur:
            cur.execute(f"INSERT INTO ext_group ({cols}) VALUES ({marks}) "
                        f"ON CONFLICT (group_number) DO UPDATE SET {updates}",
                        [getattr(group, c) for c in _COLUMNS])
            pipe = self.r.pipeline(transaction=True)
            pipe.delete(self.keys.group(group.group_number))
            pipe.hset(self.keys.group(group.group_number), mapping=hash_fields(group.to_hash()))
            pipe.sadd(self.keys.groups(), group.group_number)
            pipe.execute()

    def remove(self, number: str) -> bool:
        """Delete a group, its members, blacklist and VIP list. False if it did not exist."""
        with transaction(self.ctx.pool) as cur:
            cur.execute("DELETE FROM ext_group WHERE group_number = %s", [number])
            existed = cur.rowcount > 0
            k = self.keys
            pipe = self.r.pipeline(transaction=True)
            pipe.delete(k.group(number), k.group_members(number), k.group_blacklist(number),
                        k.group_vip(number))
            pipe.srem(k.groups(), number)
            pipe.execute()
        return existed

    def set_numbers(self, number: str, kind: str, numbers: Iterable[str]) -> None:
        """Replace the group's blacklist (``kind="blacklist"``) or VIP list (``"vip"``)."""
        table, key = {"blacklist": ("group_blacklist", self.keys.group_blacklist(number)),
                      "vip": ("group_vip", self.keys.group_vip(number))}[kind]
        wanted = sorted(set(numbers))
        with transaction(self.ctx.pool) as cur:
            cur.execute(f"DELETE FROM {table} WHERE group_number = %s", [number])
            for caller in wanted:
                cur.execute(f"INSERT INTO {table} (group_number, number) "
                            "VALUES (%s, %s)", [number, caller])
            pipe = self.r.pipeline(transaction=True)
            pipe.delete(key)
            if wanted:
                pipe.sadd(key, *wanted)
            pipe.execute()

    def login(self, extension: str, numbers: list[str]) -> list[str]:
        """Make the agent a member of exactly these groups (seed agent_up / nway_login).
        Unknown groups are refused with FsappsError naming them. Returns the groups."""
        from fsapps.errors import FsappsError

        numbers = list(dict.fromkeys(n for n in numbers if n))
        known = set(self.numbers())
        unknown = [n for n in numbers if n not in known]
        if unknown:
            raise FsappsError(f"unknown group(s) {', '.join(unknown)!r} for agent {extension!r}")
        previous = self._groups_of(extension)
        with transaction(self.ctx.pool) as cur:
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
            pipe = self.r.pipeline(transaction=True)
            for number in previous:
                if number not in positions:
                    pipe.zrem(self.keys.group_members(number), extension)
            for number, position in positions.items():
                pipe.zadd(self.keys.group_members(number), {extension: position})
            pipe.hset(self.keys.agent(extension), mapping=hash_fields(
                {"groups": ",".join(numbers), "logged_in": "1" if numbers else "0"}))
            pipe.execute()
        return numbers

    def _groups_of(self, extension: str) -> list[str]:
        raw = self.r.hget(self.keys.agent(extension), "groups") or ""
        return [g for g in raw.split(",") if g]

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
        pipe.execute()
        return len(groups)
