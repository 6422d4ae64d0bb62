"""A cti_bridge routed call gets the runtime's generic CDR (issue 7): one row for the caller's
channel naming the number the router sent it to, none for that leg. Uses test_cti_bridge's
router and test bed."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extras

from fakefs.scenario import wait_until
from fsapps.events import cdr
from tests.acd_support import DOMAIN
from tests.test_cti_bridge import (  # noqa: F401 (fixtures)
    Bed,
    bed,
    bed_module,
    gateway_answer,
    no_leaked_switch_threads,
)


def cdr_rows(database: Any, *uuids: str) -> list[dict[str, Any]]:
    conn = psycopg2.connect(database.dsn)
    try:
        with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute("SELECT * FROM cdr WHERE uuid = ANY(%s)", (list(uuids),))
            return [dict(r) for r in cur.fetchall()]
    finally:
        conn.close()


def test_cti_bridge_routed_call_gets_a_generic_cdr(bed: Bed, database: Any) -> None:  # noqa: F811
    bed.router.reply(gateway_answer("18612345678"))
    channel = bed.done(bed.call())
    legs = bed.legs(channel)
    assert len(legs) == 1 and legs[0].answered
    rows = wait_until(lambda: cdr_rows(database, channel.uuid), 5, "the call's CDR")
    row = rows[0]
    assert row["flag"] == cdr.FLAG_ANSWERED and row["destination_number"] == "18612345678"
    assert row["a_caller_id_number"] == "1000" and row["a_destination_number"] == "route"
    assert row["answer_stamp"] is not None and row["group_number"] is None
    assert row["domain"] == DOMAIN and row["is_callout"] is False
    assert cdr_rows(database, legs[0].uuid) == []
