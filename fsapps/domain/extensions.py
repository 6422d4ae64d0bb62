"""Extensions (seed 001 ``nway_add_ext`` / ``nway_set_ext_jobnumber`` / ``nway_rm_ext``): the
phones agents use, each with an optional job number (工号) and an enabled flag.

PostgreSQL's ``extensions`` table is the record; the working set is the agent hash
(:mod:`fsapps.domain.agents`: fields job_number and enabled), which the ACD reads on every call.
Both are written together (:func:`fsapps.domain.groups.written_together`): a Redis failure leaves
PostgreSQL unchanged, a failed commit puts Redis back.

Keys (``p`` prefix, ``d`` domain), owned by :mod:`fsapps.domain.agents`:

``p:{d}:agent:<ext>``  hash  created by :meth:`Extensions.add`, deleted by :meth:`remove`.
``p:{d}:agents``       set   the extension is added and removed with its hash.
``p:{d}:wrapups``      zset  a removed extension leaves it.
``p:{d}:group:<g>:members``  zset  (owned by :mod:`fsapps.domain.groups`) a removed extension leaves
                                   every group of its domain (and ``ext_group_map``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fsapps.context import Context
from fsapps.db.connection import transaction
from fsapps.domain.agents import Agents
from fsapps.domain.groups import Groups, RedisUndo, written_together
from fsapps.errors import Conflict


class ExtensionBusy(Conflict):
    """The extension is on a call; it cannot be removed now."""

    def __init__(self, extension: str, state: str) -> None:
        self.extension, self.state = extension, state
        super().__init__(f"extension {extension!r} is on a call ({state}); remove it when the "
                         "call is over")


@dataclass(frozen=True)
class Extension:
    number: str
    job_number: str
    enabled: bool
    created: bool = False  # by the call that returned it


class Extensions:
    """The extensions of one domain."""

    def __init__(self, ctx: Context, domain: str | None = None) -> None:
        self.ctx = ctx
        self.agents = Agents(ctx, domain)
        self.keys = self.agents.keys
        self.domain = self.keys.domain
        self.r = ctx.redis

    def add(self, number: str, job_number: str | None = None) -> Extension:
        """Create the extension (enabled), or give an existing one ``job_number`` (None keeps
        the one it has). Its agent hash is created if missing (logged out, unregistered,
        busy)."""
        with written_together(self.ctx) as (cur, undo):
            cur.execute(
                "INSERT INTO extensions (domain, number, job_number) VALUES (%s, %s, %s) "
                "ON CONFLICT (domain, number) DO UPDATE SET job_number = "
                "COALESCE(EXCLUDED.job_number, extensions.job_number), updated_at = now() "
                "RETURNING job_number, enabled, (xmax = 0)", [self.domain, number, job_number])
            row = cur.fetchone()
            assert row is not None  # an upsert returns its row
            ext = Extension(number, row[0] or "", bool(row[1]), bool(row[2]))
            self._write(ext, undo)
        return ext

    def set_job_number(self, number: str, job_number: str, enabled: bool) -> Extension:
        """Set the job number and the enabled flag (creating the extension if needed). A
        disabled extension's seat is made busy in the same step, so it is offered no queue call
        from then on; it cannot be made ready while disabled."""
        with written_together(self.ctx) as (cur, undo):
            cur.execute(
                "INSERT INTO extensions (domain, number, job_number, enabled) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (domain, number) DO UPDATE SET "
                "job_number = EXCLUDED.job_number, enabled = EXCLUDED.enabled, "
                "updated_at = now() RETURNING (xmax = 0)",
                [self.domain, number, job_number, enabled])
            row = cur.fetchone()
            ext = Extension(number, job_number, enabled, bool(row and row[0]))
            self._write(ext, undo)
        return ext

    def _write(self, ext: Extension, undo: RedisUndo) -> None:
        key = self.keys.agent(ext.number)
        changed = ["job_number", "enabled"] + ([] if ext.enabled else ["seat_status"])
        undo.capture(new=[key], fields={key: changed},
                     members={self.keys.agents(): [ext.number]})
        pipe = self.r.pipeline(transaction=True)
        self.agents.ensure(ext.number, ext.job_number, pipeline=pipe)
        self.agents.set_enabled(ext.number, ext.enabled, pipe)
        undo.write(pipe)

    def remove(self, number: str) -> bool:
        """Delete the extension: its record, its group memberships (``ext_group_map`` and the
        member zsets), its skills (``ext_skill``) and its agent hash. Refused with
        :class:`ExtensionBusy` while the agent rings or talks (nothing changes). False when
        there was nothing to remove."""
        groups = Groups(self.ctx, self.domain)
        member_keys = [self.keys.group_members(g) for g in groups.numbers()]
        key = self.keys.agent(number)
        with written_together(self.ctx) as (cur, undo):
            cur.execute("DELETE FROM extensions WHERE domain = %s AND number = %s",
                        [self.domain, number])
            recorded = cur.rowcount > 0
            cur.execute("DELETE FROM ext_group_map WHERE ext = %s AND ext_group_number IN "
                        "(SELECT group_number FROM ext_group WHERE domain = %s)",
                        [number, self.domain])
            # its skills go with its agent hash (an extension added again starts without)
            cur.execute("DELETE FROM ext_skill WHERE domain = %s AND ext = %s",
                        [self.domain, number])
            undo.capture(hashes=[key], members={self.keys.agents(): [number]},
                         scores={k: [number] for k in [self.keys.wrapups(), *member_keys]})
            outcome, state = self.agents.remove(number, member_keys)
            if outcome == "busy":
                raise ExtensionBusy(number, state)
            undo.written = True  # the script was the Redis write: a failed commit undoes it
        return recorded or outcome == "removed"

    def get(self, number: str) -> Extension | None:
        """The extension's record (None when it has none)."""
        with transaction(self.ctx.pool) as cur:
            cur.execute("SELECT job_number, enabled FROM extensions WHERE domain = %s AND "
                        "number = %s", [self.domain, number])
            row = cur.fetchone()
        return None if row is None else Extension(number, row[0] or "", bool(row[1]))
