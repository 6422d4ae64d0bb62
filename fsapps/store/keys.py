"""Every Redis key and pub/sub channel name fsapps uses, in one place.

fsapps-owned keys are ``<prefix>:{<domain>}:<name>...``: the domain is the Redis Cluster hash
tag, so all keys of one domain live in one slot and one Lua script may touch any of them.
Node keys have no domain and share the tag ``{nodes}``. Names defined by the seeds are kept
verbatim, without prefix or tag, because outside tools (FSGUI, mod_cti clients, dashboards)
read them by those names.

fsapps-owned, from :class:`Keys` (``p`` = prefix, ``d`` = domain) — name, type, expiry:

=================================  ======  =====================================================
``p:{d}:agent:<ext>``              hash    none; one agent's state (login, groups, state, call,
                                           registration: node and expiry); written only by
                                           :mod:`fsapps.domain.agents` and its scripts
``p:{d}:agents``                   set     none; extensions with an agent hash in the domain
``p:{d}:webrtc:<ext>``             hash    PX credential TTL; the SIP password of the browser
                                           phone of one CTI login: password, owner (token
                                           digest) (:mod:`fsapps.domain.webrtc`)
``p:{d}:group:<g>``                hash    none; group settings loaded from PostgreSQL
``p:{d}:groups``                   set     none; group numbers of the domain
``p:{d}:group:<g>:members``        zset    none; member extensions, score = position
``p:{d}:group:<g>:queue``          zset    none; waiting call uuids, score = priority order
``p:{d}:group:<g>:blacklist``      set     none; caller numbers refused by the group
``p:{d}:group:<g>:vip``            set     none; caller numbers queued as level vip
``p:{d}:memory:<g>:<caller>``      string  EX memory TTL; extension that last served caller
``p:{d}:call:<uuid>``              hash    set EX after hangup; one call's live state
``p:{d}:cdr:spool``                stream  none (trimmed once written); CDRs not yet in PostgreSQL
``p:{d}:waiting``                  hash    none; queued call uuid -> JSON (node, group, level,
                                           number, arrival, agents who failed it)
``p:{d}:offers``                   hash    none; call uuid -> extension reserved for it
``p:{d}:callbacks``                hash    none; callback id -> JSON (the caller's number, group,
                                           place, attempts) until answered or dropped
                                           (:mod:`fsapps.domain.callbacks`)
``p:{d}:callbacks:due``            zset    none; callback id, score = when its retry may queue (ms)
``p:{d}:wrapups``                  zset    none; extensions in wrap-up, score = end (ms)
``p:{d}:csta:legs``                hash    none (fields removed at hangup); channel uuid ->
                                           CSTA callId (:mod:`fsapps.events.cstafeed`)
``p:{d}:csta:call:<callId>``       hash    EX 1 h after its last change; calling, called and
                                           one field per leg ``p:<uuid>`` -> JSON device/state
``p:{d}:csta:userdata:<callId>``   hash    EX 1 h; CSTA call data (user-data key -> value)
``p:{d}:csta:agent:<job>``         hash    none (deleted at logout); a wellClient agent's
                                           device, mode and since
                                           (:mod:`fsapps.server.csta.callcontrol`)
``p:{d}:csta:agents``              hash    none; job number -> device of each csta:agent record
                                           (its index, written with it, for the wallboard)
``p:{d}:csta:seen``                 zset    none; job number of each csta:agent record ->
                                           when its page was last heard from (ms: login,
                                           heart-beat, an open event session)
                                           (:mod:`fsapps.server.csta.presence`)
``p:{d}:csta:pending:<job>``       list    EX 30 s; agent events published before the
                                           agent's STOMP subscription arrived
``p:{d}:csta``                     pubsub  channel; the CSTA feed (JSON records) of the domain
``p:{d}:stats:<g>:<minute>``       hash    PX 2 h; one group's queue figures of one minute
                                           (epoch minute): offered, answered, abandoned, waits
                                           (:mod:`fsapps.domain.stats`)
``p:{d}:stats:<g>:total``          hash    none; the same counts since the group began
                                           (Prometheus counters)
``p:{d}:stats_sample:<slot>``      string  PX 2 min; the node that took the occupancy sample of
                                           a 10 s slot (one sample per slot, any node)
=================================  ======  =====================================================

fsapps-owned, from :class:`NodeKeys`:

=================================  ======  =====================================================
``p:{nodes}:nodes``                zset    none; node names, score = last heartbeat (ms)
``p:{nodes}:node:<n>:heartbeat``   hash    PX a few heartbeats; node facts: last (ms), relay
                                           (host:port of its relay sofia profile: other nodes
                                           ring its agents' phones there)
``p:{nodes}:node:<n>:commands``    list    PX 60 s after the last push; commands for node n
                                           (RPUSH by anyone, BLPOP by the node's runtime)
``p:{nodes}:node:<n>:channels``    set     PX 60 s renewed by each heartbeat; uuids of node n's
                                           live channels (CHANNEL_CREATE adds, CHANNEL_DESTROY
                                           removes): the node owning a channel, for commands
                                           such as nwayacd_transfer issued on another node
``p:{nodes}:node:<n>:recorded``    hash    none; uuid -> JSON [domain, extension] whose live
                                           state (cti_userinfo, calls) holds the channel, or
                                           "": every channel node n's runtime recorded state
                                           for, until its CHANNEL_DESTROY or, for one the
                                           switch ended unseen (shutdown, crash), until the
                                           node's next start, which removes that state
``p:{nodes}:node:<n>:stats``      hash    PX 60 s, renewed by each heartbeat; node n's runtime
                                           counters (calls routed, decisions, Redis errors,
                                           events dropped) since its process started
``p:{nodes}:reply:<id>``           list    PX 30 s; the answer to one node command request
=================================  ======  =====================================================

fsapps-owned, from :class:`CtiKeys` (the CTI server's sessions; hash tag ``{cti}``; ``<h>`` is
the SHA-256 hex of the token, user name or client address, so no request text reaches a key):

=================================  ======  =====================================================
``p:{cti}:token:<h>``              hash    EX cti.token_ttl_seconds; one login token: username,
                                           created (ms). Only the hash of the token is stored
``p:{cti}:login:user:<h>``         string  EX cti.login_window_seconds; failed logins of a user
``p:{cti}:login:addr:<h>``         string  EX cti.login_window_seconds; failed logins of an
                                           address
=================================  ======  =====================================================

Seed-defined, verbatim (seed 003 mod_cti directory, seed 001 events):

=================================  ======  =====================================================
``cti_exten@<domain>``             hash    none; field extension -> JSON param/variable/attribute
``p:{cti_exten@<domain>}:exten_alias``  hash  none; number-alias -> extension (fsapps-owned index
                                        of cti_exten@<domain>, tagged to share its cluster slot;
                                        :func:`exten_alias_hash`, kept by
                                        :mod:`fsapps.domain.userdir`)
``cti_userinfo@<domain>``          hash    none; field extension -> JSON register + calls
``registrations``                  hash    none; field extension -> JSON sofia::register event
``calls``                          hash    none; field extension -> JSON call fields
``event_<x>``                      pubsub  channel; seed 001 call events (psubscribe event_*)
``queue_<x>``                      pubsub  channel; queue add/remove (psubscribe queue_*)
``agent_<x>``                      pubsub  channel; agent state changes (psubscribe agent_*)
``cdr_<x>``                        pubsub  channel; CDRs (psubscribe cdr_*)
=================================  ======  =====================================================

Every name part is checked: a ``{``, ``}`` or whitespace would move a key out of its slot
(or split a command line), so such a part raises :class:`KeyPartError` naming it.
"""

from __future__ import annotations

import re

from fsapps.errors import BadInput

__all__ = [
    "CALLS",
    "NODES_TAG",
    "REGISTRATIONS",
    "SEED_CHANNEL_PATTERNS",
    "KeyPartError",
    "Keys",
    "NodeKeys",
    "agent_channel",
    "cdr_channel",
    "event_channel",
    "exten_alias_hash",
    "queue_channel",
    "seed_exten_hash",
    "seed_userinfo_hash",
]

NODES_TAG = "nodes"
REGISTRATIONS = "registrations"
CALLS = "calls"
SEED_CHANNEL_PATTERNS = ("event_*", "queue_*", "agent_*", "cdr_*")

_FORBIDDEN = re.compile(r"[{}\s]")


class KeyPartError(BadInput, ValueError):
    """A domain, prefix or name part that cannot go into a Redis key."""

    def __init__(self, what: str, value: object) -> None:
        self.what = what
        self.value = value
        super().__init__(f"invalid {what} {value!r}: must be a non-empty string without "
                         "'{', '}' or whitespace")


def _part(what: str, value: str) -> str:
    if not isinstance(value, str) or not value or _FORBIDDEN.search(value):
        raise KeyPartError(what, value)
    return value


class Keys:
    """Names of the fsapps-owned keys of one domain (see the module docstring for types).

    Every method returns a name and touches nothing; all names share the hash tag ``{domain}``.
    """

    __slots__ = ("_base", "domain", "prefix")

    def __init__(self, prefix: str, domain: str) -> None:
        self.prefix = _part("key prefix", prefix)
        self.domain = _part("domain", domain)
        self._base = f"{prefix}:{{{domain}}}"

    def __repr__(self) -> str:
        return f"Keys({self.prefix!r}, {self.domain!r})"

    @property
    def tag(self) -> str:
        """``{domain}``: the hash tag every key of this domain carries."""
        return f"{{{self.domain}}}"

    def agent(self, extension: str) -> str:
        return f"{self._base}:agent:{_part('extension', extension)}"

    def agents(self) -> str:
        return f"{self._base}:agents"

    def webrtc(self, extension: str) -> str:
        return f"{self._base}:webrtc:{_part('extension', extension)}"

    def group(self, group: str) -> str:
        return f"{self._base}:group:{_part('group', group)}"

    def groups(self) -> str:
        return f"{self._base}:groups"

    def group_members(self, group: str) -> str:
        return f"{self.group(group)}:members"

    def group_queue(self, group: str) -> str:
        return f"{self.group(group)}:queue"

    def group_blacklist(self, group: str) -> str:
        return f"{self.group(group)}:blacklist"

    def group_vip(self, group: str) -> str:
        return f"{self.group(group)}:vip"

    def memory(self, group: str, caller: str) -> str:
        return f"{self._base}:memory:{_part('group', group)}:{_part('caller number', caller)}"

    def call(self, uuid: str) -> str:
        return f"{self._base}:call:{_part('call uuid', uuid)}"

    def cdr_spool(self) -> str:
        return f"{self._base}:cdr:spool"

    def waiting(self) -> str:
        return f"{self._base}:waiting"

    def offers(self) -> str:
        return f"{self._base}:offers"

    def callbacks(self) -> str:
        return f"{self._base}:callbacks"

    def callbacks_due(self) -> str:
        return f"{self._base}:callbacks:due"

    def wrapups(self) -> str:
        return f"{self._base}:wrapups"

    def csta_legs(self) -> str:
        return f"{self._base}:csta:legs"

    def csta_call(self, call_id: str) -> str:
        return f"{self._base}:csta:call:{_part('CSTA call id', call_id)}"

    def csta_userdata(self, call_id: str) -> str:
        return f"{self._base}:csta:userdata:{_part('CSTA call id', call_id)}"

    def csta_agent(self, job: str) -> str:
        return f"{self._base}:csta:agent:{_part('job number', job)}"

    def csta_agents(self) -> str:
        """The index of the csta:agent records: job number -> device (the wallboard reads it
        instead of scanning the keyspace)."""
        return f"{self._base}:csta:agents"

    def csta_seen(self) -> str:
        """When each wellClient agent's page was last heard from (job number -> ms)."""
        return f"{self._base}:csta:seen"

    def csta_pending(self, job: str) -> str:
        return f"{self._base}:csta:pending:{_part('job number', job)}"

    def csta_feed(self) -> str:
        """The domain's CSTA feed: a pub/sub channel (not a key), tagged like the keys."""
        return f"{self._base}:csta"

    def stats(self, group: str, minute: int) -> str:
        """One group's queue figures of one minute (``minute``: epoch ms // 60000)."""
        return f"{self._base}:stats:{_part('group', group)}:{int(minute)}"

    def stats_total(self, group: str) -> str:
        return f"{self._base}:stats:{_part('group', group)}:total"

    def stats_sample(self, slot: int) -> str:
        return f"{self._base}:stats_sample:{int(slot)}"


class NodeKeys:
    """Names of the domain-less node keys, all under the hash tag ``{nodes}``."""

    __slots__ = ("_base", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = _part("key prefix", prefix)
        self._base = f"{prefix}:{{{NODES_TAG}}}"

    def __repr__(self) -> str:
        return f"NodeKeys({self.prefix!r})"

    def nodes(self) -> str:
        return f"{self._base}:nodes"

    def heartbeat(self, node: str) -> str:
        return f"{self._base}:node:{_part('node name', node)}:heartbeat"

    def commands(self, node: str) -> str:
        return f"{self._base}:node:{_part('node name', node)}:commands"

    def channels(self, node: str) -> str:
        return f"{self._base}:node:{_part('node name', node)}:channels"

    def recorded(self, node: str) -> str:
        return f"{self._base}:node:{_part('node name', node)}:recorded"

    def stats(self, node: str) -> str:
        return f"{self._base}:node:{_part('node name', node)}:stats"

    def reply(self, reply_id: str) -> str:
        return f"{self._base}:reply:{_part('reply id', reply_id)}"


class CtiKeys:
    """Names of the CTI server's keys (sessions, login throttling), under the tag ``{cti}``.
    Arguments are hex digests (:func:`digest`), never request text."""

    __slots__ = ("_base", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = _part("key prefix", prefix)
        self._base = f"{prefix}:{{cti}}"

    def __repr__(self) -> str:
        return f"CtiKeys({self.prefix!r})"

    def token(self, token_hash: str) -> str:
        return f"{self._base}:token:{_part('token hash', token_hash)}"

    def login_failures_user(self, user_hash: str) -> str:
        return f"{self._base}:login:user:{_part('user hash', user_hash)}"

    def login_failures_address(self, address_hash: str) -> str:
        return f"{self._base}:login:addr:{_part('address hash', address_hash)}"


def seed_exten_hash(domain: str) -> str:
    """``cti_exten@<domain>``: the seed-003 directory hash of a domain."""
    return f"cti_exten@{_part('domain', domain)}"


def exten_alias_hash(prefix: str, domain: str) -> str:
    """``<prefix>:{cti_exten@<domain>}:exten_alias``: number-alias -> extension. Its hash tag is
    the whole name of ``cti_exten@<domain>`` (a key without braces hashes on its whole name), so
    both share one Redis Cluster slot and one Lua script may read both."""
    return f"{_part('key prefix', prefix)}:{{{seed_exten_hash(domain)}}}:exten_alias"


def seed_userinfo_hash(domain: str) -> str:
    """``cti_userinfo@<domain>``: the seed-003 registration and call state hash."""
    return f"cti_userinfo@{_part('domain', domain)}"


def event_channel(suffix: str) -> str:
    """``event_<suffix>``: seed-001 call events."""
    return f"event_{_part('channel suffix', suffix)}"


def queue_channel(suffix: str) -> str:
    """``queue_<suffix>``: seed-001 queue add/remove messages."""
    return f"queue_{_part('channel suffix', suffix)}"


def agent_channel(suffix: str) -> str:
    """``agent_<suffix>``: seed-001 agent state changes."""
    return f"agent_{_part('channel suffix', suffix)}"


def cdr_channel(suffix: str) -> str:
    """``cdr_<suffix>``: seed-001 CDR messages."""
    return f"cdr_{_part('channel suffix', suffix)}"
