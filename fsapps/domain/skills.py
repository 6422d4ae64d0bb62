"""Skills-based routing: agents have skills with levels, a queue call may require some.

An agent's skills (``english:3,billing:5``) are the table ``ext_skill`` (the record) and the
field ``skills`` of the agent hash (the working set, written through
:meth:`fsapps.domain.agents.Agents.set_skills`: the agent module stays the hash's only writer),
where the reserve and dispatch scripts read them with the fields they read anyway — no key and
no round trip more. A call's requirement comes from the channel variable ``fsapps_skills``
(:data:`fsapps.channelvars.SKILLS_VAR`, same syntax, most important skill first) and travels
in its waiting JSON (:class:`fsapps.domain.callqueue.WaitingCall`), so an agent freed on any
node applies it.

The rule (docs/acd.md "Skills"), the same here and in ``store/lua/include/skills.lua``:

- an agent **qualifies** for a call when it has every required skill at the required level
  or higher; only qualified agents are offered the call, in the group's strategy / tier order
  (a skill level above the requirement is no preference: experts are not used up first);
- the requirement **relaxes** with the caller's wait when the group sets
  ``skill_relax_seconds`` N > 0: after k x N seconds, k steps are applied — each step first
  lowers every required level by one (down to 1), and once every level is 1 each further step
  drops the last-named (least important) skill; with none left, every agent qualifies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from fsapps.context import Context
from fsapps.db.connection import transaction
from fsapps.domain.agents import Agents
from fsapps.domain.groups import written_together
from fsapps.errors import BadInput

MAX_SKILL_LEVEL = 9
MAX_CALL_SKILLS = 10     # a call's requirement: what a dialplan can sensibly ask
MAX_AGENT_SKILLS = 50
_NAME = re.compile(r"^[a-z0-9_.\-]{1,32}$")
_ITEM = re.compile(r"^([A-Za-z0-9_.\-]{1,32}):([0-9]{1,2})$")

Skill = tuple[str, int]


def parse_skills(text: str | None, *, limit: int = MAX_CALL_SKILLS) -> list[Skill]:
    """``"english:3,billing:5"`` -> [("english", 3), ("billing", 5)], in the given order
    (names lower-cased; a name without ``:level`` is level 1). Empty or ``-``: no skills.
    BadInput naming the bad item: a name not ``[A-Za-z0-9_.-]{1,32}``, a level not 1-9, a
    skill named twice, more than ``limit`` skills."""
    raw = (text or "").strip()
    if raw in ("", "-"):
        return []
    skills: list[Skill] = []
    for item in raw.split(","):
        item = item.strip()
        match = _ITEM.match(item if ":" in item else f"{item}:1")
        if match is None:
            raise BadInput(f"skill {item[:40]!r} is not <name>:<level> (name "
                           "[A-Za-z0-9_.-]{1,32}, level 1-9)")
        name, level = match.group(1).lower(), int(match.group(2))
        if not 1 <= level <= MAX_SKILL_LEVEL:
            raise BadInput(f"skill {item[:40]!r}: level {level} is not 1-{MAX_SKILL_LEVEL}")
        if any(name == known for known, _ in skills):
            raise BadInput(f"skill {name!r} is named twice")
        skills.append((name, level))
    if len(skills) > limit:
        raise BadInput(f"{len(skills)} skills given; at most {limit}")
    return skills


def format_skills(skills: Iterable[Skill]) -> str:
    """The ``name:level,...`` form (the agent hash's field, the commands' replies)."""
    return ",".join(f"{name}:{level}" for name, level in skills)


def relax_steps(waited_ms: int, relax_seconds: int | None) -> int:
    """How many relaxation steps a call that waited ``waited_ms`` has earned."""
    if not relax_seconds or relax_seconds <= 0 or waited_ms <= 0:
        return 0
    return waited_ms // (relax_seconds * 1000)


def relaxed(required: Sequence[Skill], steps: int) -> list[Skill]:
    """The requirement after ``steps`` relaxation steps: levels lowered first (each step every
    level one lower, down to 1), then the last-named skills dropped, one a step."""
    if steps <= 0 or not required:
        return list(required)
    lowering = min(steps, max(level for _, level in required) - 1)
    dropped = steps - lowering
    kept = required[:max(0, len(required) - dropped)]
    return [(name, max(1, level - lowering)) for name, level in kept]


def steps_to_relax_fully(required: Sequence[Skill]) -> int:
    """After this many steps nothing is required any more (every agent qualifies)."""
    if not required:
        return 0
    return max(level for _, level in required) - 1 + len(required)


def qualifies(have: Mapping[str, int], required: Iterable[Skill]) -> bool:
    """Has the agent every required skill at the required level or higher?"""
    return all(have.get(name, 0) >= level for name, level in required)


class Skills:
    """The agents' skills of one domain: PostgreSQL and the agent hashes, written together."""

    def __init__(self, ctx: Context, domain: str | None = None) -> None:
        self.ctx = ctx
        self.agents = Agents(ctx, domain)
        self.keys = self.agents.keys
        self.domain = self.keys.domain

    def set(self, extension: str, skills: Sequence[Skill]) -> None:
        """The agent's skills are exactly ``skills`` (none: it has no skill), whether or not
        it is logged in; its agent hash is created if missing."""
        for name, level in skills:
            if not _NAME.match(name) or not 1 <= level <= MAX_SKILL_LEVEL:
                raise BadInput(f"skill {name!r}:{level!r} is not valid")
        if len(skills) > MAX_AGENT_SKILLS:
            raise BadInput(f"{len(skills)} skills given; at most {MAX_AGENT_SKILLS}")
        with written_together(self.ctx) as (cur, undo):
            cur.execute("DELETE FROM ext_skill WHERE domain = %s AND ext = %s",
                        [self.domain, extension])
            for name, level in skills:
                cur.execute("INSERT INTO ext_skill (domain, ext, skill, level) "
                            "VALUES (%s, %s, %s, %s)", [self.domain, extension, name, level])
            undo.capture(new=[self.keys.agent(extension)],
                         fields={self.keys.agent(extension): ["skills"]})
            pipe = self.ctx.redis.pipeline(transaction=True)
            self.agents.ensure(extension, pipeline=pipe)
            self.agents.set_skills(extension, format_skills(skills), pipe)
            undo.write(pipe)

    def get(self, extension: str) -> list[Skill]:
        """The agent's skills as the ACD sees them (the agent hash)."""
        return parse_skills(self.agents.skills_of(extension), limit=MAX_AGENT_SKILLS)

    def load_into_redis(self) -> int:
        """Put every agent's skills of the record into its agent hash (the working-set
        rebuild). Returns the number of agents with skills."""
        with transaction(self.ctx.pool) as cur:
            cur.execute("SELECT ext, skill, level FROM ext_skill WHERE domain = %s "
                        "ORDER BY ext, skill", [self.domain])
            rows = cur.fetchall()
        by_agent: dict[str, list[Skill]] = {}
        for ext, name, level in rows:
            by_agent.setdefault(ext, []).append((name, int(level)))
        pipe = self.ctx.redis.pipeline(transaction=False)
        for ext, skills in by_agent.items():
            self.agents.ensure(ext, pipeline=pipe)
            self.agents.set_skills(ext, format_skills(skills), pipe)
        pipe.execute()
        return len(by_agent)
