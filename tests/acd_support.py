"""Shared set-up for the ACD tests: :mod:`tools.callcenter` (the same simulated call center
``make demo`` and ``make bench`` run) in the test domain, on the test servers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from fsapps.config import Settings
from fsapps.domain.groups import Group
from tools.callcenter import SimulatedCallCenter, reset_database
from tools.callcenter import settings_for as _settings_for

DOMAIN = "cc.test"
CallCenter = SimulatedCallCenter


def settings_for(redis_url: str, dsn: str, *, cluster: bool = False,
                 **defaults: Any) -> Settings:
    """Settings for the test servers; ``cluster`` when ``redis_url`` is a Redis Cluster node."""
    settings: Settings = _settings_for(redis_url, dsn, DOMAIN, cluster=cluster, **defaults)
    return settings


def replace(group: Group, **changes: Any) -> Group:
    return dataclasses.replace(group, **changes)


def center(redis_url: str, dsn: str, *, cluster: bool = False,
           **defaults: Any) -> Iterator[SimulatedCallCenter]:
    reset_database(dsn)
    cc = SimulatedCallCenter(settings_for(redis_url, dsn, cluster=cluster, **defaults))
    try:
        yield cc
    finally:
        cc.close()


def sql(dsn: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Run one statement in its own connection; its rows ([] when it returns none)."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()
