"""Rebuilding Redis (the working set) from PostgreSQL (the record) when Redis has lost it —
a restart without persistence, a failover to an empty replica, a FLUSHALL.

Every node's runtime calls :func:`restore_if_empty` at start-up for each domain; the first
node to find the domain's group set missing rebuilds groups, members, blacklists, VIP lists,
extensions (job numbers, enabled), agents' group logins and skills. Live state (registrations,
calls, queues) is not in PostgreSQL: phones re-register and new calls queue again.
"""

from __future__ import annotations

from fsapps.context import Context
from fsapps.db.connection import transaction
from fsapps.domain.agents import Agents
from fsapps.domain.groups import Groups
from fsapps.domain.skills import Skills
from fsapps.fslog import log


def restore_if_empty(ctx: Context, domain: str) -> bool:
    """Rebuild the domain's working set when Redis has no group set for it but PostgreSQL
    has groups. Returns True when it rebuilt. Idempotent: rebuilding twice gives the same."""
    keys = ctx.keys(domain)
    if ctx.redis.exists(keys.groups()):
        return False
    with transaction(ctx.pool) as cur:
        cur.execute("SELECT count(*) FROM ext_group WHERE domain = %s", [domain])
        row = cur.fetchone()
        if not row or not row[0]:
            return False
        cur.execute("SELECT number, coalesce(job_number, ''), enabled FROM extensions "
                    "WHERE domain = %s", [domain])
        extensions = cur.fetchall()
        cur.execute("SELECT m.ext, string_agg(m.ext_group_number, ',' ORDER BY m.id) "
                    "FROM ext_group_map m JOIN ext_group g ON g.group_number = "
                    "m.ext_group_number WHERE g.domain = %s GROUP BY m.ext", [domain])
        logins = cur.fetchall()
    groups = Groups(ctx, domain).load_into_redis()
    agents = Agents(ctx, domain)
    pipe = ctx.redis.pipeline(transaction=False)
    for number, job_number, enabled in extensions:
        agents.ensure(number, job_number, pipeline=pipe)
        agents.set_enabled(number, bool(enabled), pipe)
    for extension, group_list in logins:
        agents.ensure(extension, pipeline=pipe)
        agents.set_groups(extension, group_list.split(","), pipe)
    pipe.execute()
    Skills(ctx, domain).load_into_redis()
    log("WARNING", f"Redis had no working set for domain {domain}: rebuilt {groups} groups, "
                   f"{len(extensions)} extensions and {len(logins)} agent logins from "
                   "PostgreSQL")
    return True
