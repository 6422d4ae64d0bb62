"""The durable CDR spool: every CDR is appended to a Redis stream first and written to
PostgreSQL from there, so a CDR survives PostgreSQL being down (and this node dying).

How a CDR is kept (:mod:`fsapps.events.cdr` is the CDR itself; this module keeps it):
:func:`record_own` leaves an app's draft on the caller's channel for the runtime to complete;
:func:`record` publishes a finished CDR and appends it here (Redis down: writes it to PostgreSQL
directly; both down: logs its JSON at ERR, the last resort).

Keys (one stream per domain, listed in :mod:`fsapps.store.keys`):

``p:{d}:cdr:spool``  stream  entries ``{cdr: <Cdr JSON>}``; consumer group :data:`GROUP`, one
                     consumer per node (its name)

:func:`append` is one XADD. :class:`SpoolWriter` (one per node, run by the runtime every
:data:`INTERVAL_S`) reads entries through the consumer group, so two nodes never take the
same entry: first the entries delivered to this node and not yet acknowledged (a failed
write, a restart), then new ones; every :data:`CLAIM_EVERY_S` it also takes (XAUTOCLAIM) the
entries another consumer has held for :data:`CLAIM_IDLE_MS` (a node that died mid-write).
Each CDR is written with its attempts in one transaction with ON CONFLICT DO NOTHING, then
XACK + XDEL: an entry delivered twice (claimed from a node that had written it but died before
the XACK) is written once.

PostgreSQL unreachable: the entries stay in the stream, the writer logs one line when the
outage starts and one when it ends, and retries every :data:`INTERVAL_S` at most
:data:`BACKOFF_MAX_S` apart. An entry PostgreSQL rejects (bad data) or that does not parse is
logged at ERR with its JSON and removed, so it cannot block the spool.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import Any

import psycopg2
import redis

from fsapps.context import Context
from fsapps.db.connection import DatabaseUnavailableError
from fsapps.errors import DatabaseError, FsappsError, Unavailable
from fsapps.events.cdr import (
    DRAFT_VAR,
    NO_GROUP_CHANNEL,
    OWN_CDR_VAR,
    Cdr,
    Draft,
    drafts_from_json,
    drafts_to_json,
    write,
)
from fsapps.fslog import log

__all__ = ["GROUP", "SpoolWriter", "append", "record", "record_own"]

GROUP = "cdr-writers"
INTERVAL_S = 0.5
BACKOFF_MAX_S = 2.0
BATCH = 200
CLAIM_EVERY_S = 10.0
CLAIM_IDLE_MS = 60_000


def append(ctx: Context, cdr: Cdr) -> str:
    """XADD the CDR to its domain's spool; the entry id. Raises when Redis cannot take it."""
    entry_id = ctx.redis.xadd(ctx.keys(cdr.domain or None).cdr_spool(), {"cdr": cdr.to_json()})
    return str(entry_id)


def record(ctx: Context, cdr: Cdr) -> bool:
    """Publish the CDR message (once), then append the CDR to the domain's spool, from which a
    runtime writes it to PostgreSQL (:class:`SpoolWriter`). Never raises. Redis down: write to
    PostgreSQL directly; both down: the CDR's JSON is logged at ERR (nothing else keeps it).
    True when the CDR is kept (spooled or written), False when only the log line has it."""
    cdr = cdr if cdr.cti_ip else replace(cdr, cti_ip=ctx.publisher.cti_ip)
    ctx.publisher.cdr(cdr.message_fields(), group=cdr.group_number or NO_GROUP_CHANNEL)
    try:
        append(ctx, cdr)
        return True
    except (FsappsError, redis.RedisError) as exc:
        spool_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    try:
        write(ctx, cdr)
        log("WARNING", f"cdr: call {cdr.uuid} written to PostgreSQL directly (spool: "
                       f"{spool_error})")
        return True
    except (FsappsError, psycopg2.Error) as exc:
        log("ERR", f"cdr: call {cdr.uuid} ({cdr.a_caller_id_number} -> "
                   f"{cdr.destination_number or cdr.a_destination_number}) not kept: spool "
                   f"{spool_error}; PostgreSQL {type(exc).__name__}: "
                   f"{' '.join(str(exc).split())}; CDR {cdr.to_json()}")
        return False


def record_own(ctx: Context, session: Any, draft_cdr: Cdr, app: str, *, started: float,
               party_answered: bool = False, party_leg: str = "") -> bool:
    """Leave the app's CDR draft on the caller's channel, for the runtime to complete and
    record when the channel's CHANNEL_HANGUP_COMPLETE comes (after the handler returns); a
    draft already there (an app that ran before on this channel, which was transferred here)
    is kept before it. Also marks the channel (``OWN_CDR_VAR=<app>``). Call it once, at the
    end of the handler. Never raises. The channel cannot take the variable: the draft is
    recorded as it is (:func:`record`) — the switch's hangup fields are then missing."""
    draft = Draft(app=app, cdr=draft_cdr, started=started, party_answered=party_answered,
                  party_leg=party_leg)
    drafts: list[Draft] = []
    try:
        earlier = session.getVariable(DRAFT_VAR) or ""
        drafts = drafts_from_json(earlier) if earlier else []
    except Exception as exc:  # a garbled earlier draft must not cost this one
        log("WARNING", f"cdr: call {draft_cdr.uuid}: ignoring the channel's earlier CDR draft "
                       f"({type(exc).__name__}: {exc})")
    try:
        session.setVariable(DRAFT_VAR, drafts_to_json([*drafts, draft]))
    except Exception as exc:
        log("WARNING", f"cdr: call {draft_cdr.uuid}: could not leave the CDR draft on the "
                       f"channel ({type(exc).__name__}: {exc}); recording it as it is")
        try:
            session.setVariable(OWN_CDR_VAR, app)
        except Exception:  # the runtime may then add a generic CDR (two rows)
            log("WARNING", f"cdr: call {draft_cdr.uuid}: could not mark the channel either; "
                           f"the runtime may add a generic CDR")
        return record(ctx, draft_cdr)
    with contextlib.suppress(Exception):  # informational: the draft is what counts
        session.setVariable(OWN_CDR_VAR, app)
    return True


def _unavailable(exc: BaseException) -> bool:
    # DatabaseError: also a closed pool and the like, nothing this CDR could change
    return isinstance(exc, (DatabaseUnavailableError, DatabaseError, psycopg2.OperationalError,
                            psycopg2.InterfaceError))


class SpoolWriter:
    """Writes the spooled CDRs of every domain of this node's settings to PostgreSQL."""

    def __init__(self, ctx: Context, consumer: str, *, claim_idle_ms: int = CLAIM_IDLE_MS) -> None:
        self.ctx = ctx
        self.consumer = consumer
        # how long another consumer must have held an entry untouched before this one takes
        # it: longer than any write takes, so a live node's entries are never taken
        self.claim_idle_ms = claim_idle_ms
        self._groups: set[str] = set()
        self._next_try = 0.0
        self._backoff = INTERVAL_S
        self._down_since: float | None = None
        self._next_claim = 0.0
        self.written = 0  # CDRs this writer inserted (not counting replays found written)

    def due(self) -> bool:
        return time.monotonic() >= self._next_try

    def run_once(self) -> int:
        """One pass over every domain's spool; the number of entries taken off the spools.
        Raises Redis errors (the runtime logs them)."""
        if not self.due():
            return 0
        self._next_try = time.monotonic() + INTERVAL_S  # Redis down: once per interval
        done = 0
        claim = time.monotonic() >= self._next_claim
        if claim:
            self._next_claim = time.monotonic() + CLAIM_EVERY_S
        try:
            for domain in self.ctx.settings.domains:
                done += self.drain(self.ctx.keys(domain).cdr_spool(), claim)
        except _PostgresDown as down:
            self._went_down(down.key, down.entry_uuid, str(down.error))
            return done
        if self._down_since is not None:
            log("NOTICE", f"cdr spool: PostgreSQL reachable again after "
                          f"{time.monotonic() - self._down_since:.1f}s; writing spooled CDRs")
            self._down_since = None
        self._backoff = INTERVAL_S
        self._next_try = time.monotonic() + INTERVAL_S
        return done

    def _went_down(self, key: str, entry_uuid: str, error: str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            try:
                kept = int(self.ctx.redis.xlen(key))
            except redis.RedisError:
                kept = -1
            log("ERR", f"cdr: call {entry_uuid} and the rest of the spool ({kept} CDRs in "
                       f"{key}) not written: PostgreSQL unreachable: {' '.join(error.split())}; "
                       f"kept in the spool, retrying (logged once per outage)")
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
        self._next_try = time.monotonic() + self._backoff

    def _ensure_group(self, key: str) -> None:
        if key in self._groups:
            return
        try:
            self.ctx.redis.xgroup_create(key, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # BUSYGROUP: another node created it first
                raise
        self._groups.add(key)

    def drain(self, key: str, claim: bool) -> int:
        """Write what this node may take from ``key`` now: its own unacknowledged entries,
        entries claimed from idle consumers, then new ones (up to :data:`BATCH` each)."""
        self._ensure_group(key)
        r = self.ctx.redis
        done = 0
        try:
            # Entries delivered to us before and not acknowledged (a failed write, a restart).
            done += self.write_entries(key, self._read(key, "0"))
            if claim:
                claimed = r.xautoclaim(key, GROUP, self.consumer, self.claim_idle_ms, "0-0",
                                       count=BATCH)
                done += self.write_entries(key, claimed[1])
            while True:
                entries = self._read(key, ">")
                if not entries:
                    return done
                done += self.write_entries(key, entries)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted (FLUSHALL): create it again
                self._groups.discard(key)
                return done
            raise

    def _read(self, key: str, start: str) -> list[tuple[str, dict[str, str]]]:
        reply = self.ctx.redis.xreadgroup(GROUP, self.consumer, {key: start}, count=BATCH)
        return list(reply[0][1]) if reply else []

    def write_entries(self, key: str, entries: list[Any]) -> int:
        """Write each entry, XACK + XDEL the ones done; raise _PostgresDown on the first
        entry PostgreSQL cannot be reached for (it and the rest stay pending)."""
        done: list[str] = []
        try:
            for entry_id, fields in entries:
                if fields is None:  # deleted while pending
                    done.append(entry_id)
                    continue
                text = fields.get("cdr", "")
                try:
                    cdr = Cdr.from_json(text)
                except (ValueError, TypeError, KeyError) as exc:
                    log("ERR", f"cdr spool: dropping malformed entry {entry_id} of {key} "
                               f"({type(exc).__name__}: {exc}): {text!r}")
                    done.append(entry_id)
                    continue
                try:
                    if write(self.ctx, cdr):
                        self.written += 1
                except Exception as exc:
                    if _unavailable(exc):
                        raise _PostgresDown(key, cdr.uuid, exc) from None
                    if not isinstance(exc, psycopg2.Error):
                        raise
                    # PostgreSQL refused this CDR itself: keeping it would block the spool.
                    log("ERR", f"cdr: call {cdr.uuid} refused by PostgreSQL "
                               f"({type(exc).__name__}: {' '.join(str(exc).split())}); "
                               f"dropped from the spool; CDR {text}")
                done.append(entry_id)
        finally:
            if done:
                pipe = self.ctx.redis.pipeline(transaction=False)
                pipe.xack(key, GROUP, *done)
                pipe.xdel(key, *done)
                pipe.execute()
        return len(done)


class _PostgresDown(Unavailable):
    def __init__(self, key: str, entry_uuid: str, error: BaseException) -> None:
        super().__init__(str(error))
        self.key = key
        self.entry_uuid = entry_uuid
        self.error = error
