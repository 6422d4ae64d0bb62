"""Queue statistics over HTTP: ``GET /api/stats`` (JSON per group: live, last 15 and 60
minutes, totals; :mod:`fsapps.domain.stats`) and ``GET /metrics`` (Prometheus text format:
the same per group, and each switch node's runtime counters from its heartbeat,
:meth:`fsapps.domain.nodes.Nodes.stats`).

``/metrics`` is never open: it takes ``Authorization: Bearer <cti.metrics_token>`` (a scraper's
token, compared in constant time, never logged) or any valid user / api_tokens token; anything
else answers 401. The exposition format is prometheus_client's (a well-kept library: the text
format's escaping and ``_total`` naming are its business, not ours).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from fsapps import metrics
from fsapps.domain.nodes import Nodes
from fsapps.domain.stats import WINDOWS, QueueStats
from fsapps.server.auth import Forbidden, NotAuthorized, request_token
from fsapps.server.registry import ApiError, Call, Field, Route, register
from fsapps.server.services import CtiServices

TAG = "statistics"
GROUP = Field("group", "extension", required=False, where="query",
              description="one group (default: every group of the domain)")
DOMAIN = Field("domain", "extension", required=False, where="query",
               description="the domain (default: the server's default domain; another needs "
                           "a supervisor overseeing it)")
# node counter (fsapps.metrics name) -> metric name, help, labels
NODE_COUNTERS = {
    "calls_routed": ("fsapps_node_calls_routed", "queue calls the node's ACD routed", {}),
    "route_decision": ("fsapps_node_decisions", "agents chosen for calls",
                       {"kind": "route"}),
    "dispatch_decision": ("fsapps_node_decisions", "agents chosen for calls",
                          {"kind": "dispatch"}),
    "redis_errors": ("fsapps_node_redis_errors", "runtime steps failed on Redis", {}),
    "events_lost": ("fsapps_node_events_lost",
                    "channel ends the switch never delivered (found by the channel audit)", {}),
    "bus_messages_dropped": ("fsapps_node_bus_messages_dropped",
                             "events NATS / AMQP publishers dropped", {}),
}


def domain_of(call: Call) -> str:
    """The domain asked for: known, and overseen by the user unless it is the default."""
    settings = call.services.settings
    domain = call.get("domain") or settings.default_domain
    if domain not in settings.domains:
        raise ApiError(404, f"unknown domain {domain!r}", "domain")
    principal = call.principal
    if domain != settings.default_domain and principal is not None and \
            not principal.oversees(domain):
        raise Forbidden(f"user {principal.username!r} does not oversee domain {domain!r}",
                        "domain")
    return domain


async def stats_view(call: Call) -> Any:
    domain = domain_of(call)
    group = call.get("group")
    ctx = call.services.ctx
    rows = await call.services.run(QueueStats(ctx, domain).groups,
                                   [group] if group else None, int(time.time() * 1000))
    if group and not rows:
        raise ApiError(404, f"unknown group {group!r} in domain {domain!r}", "group")
    return {"domain": domain, "time": int(time.time() * 1000), "groups": rows}


def metrics_allowed(services: CtiServices, token: str) -> bool:
    """The scraper's configured bearer token, or a valid user / api_tokens token."""
    configured = services.settings.cti.metrics_token.reveal()
    if configured and token and hmac.compare_digest(configured.encode(), token.encode()):
        return True
    try:
        services.auth.check(token)
    except NotAuthorized:
        return False
    return True


def collect(services: CtiServices, now_ms: int) -> list[Metric]:
    """Every metric family, from Redis (blocking: a worker thread runs it)."""
    labels = ["domain", "group"]
    window_labels = [*labels, "window"]
    gauges = {
        "waiting": GaugeMetricFamily("fsapps_queue_waiting_calls", "callers waiting now",
                                     labels=labels),
        "longestWaitSeconds": GaugeMetricFamily(
            "fsapps_queue_longest_wait_seconds", "the oldest waiting caller's wait now",
            labels=labels),
        "agentsLoggedIn": GaugeMetricFamily("fsapps_queue_agents_logged_in",
                                            "agents logged into the group", labels=labels),
        "agentsReady": GaugeMetricFamily("fsapps_queue_agents_ready",
                                         "logged-in agents free for a call", labels=labels),
        "agentsTalking": GaugeMetricFamily("fsapps_queue_agents_talking",
                                           "logged-in agents on a call", labels=labels),
    }
    counters = {
        "offered": CounterMetricFamily("fsapps_queue_calls_offered",
                                       "calls that entered the group", labels=labels),
        "answered": CounterMetricFamily("fsapps_queue_calls_answered",
                                        "calls an agent answered", labels=labels),
        "abandoned": CounterMetricFamily("fsapps_queue_calls_abandoned",
                                         "callers who hung up before an agent answered",
                                         labels=labels),
        "timedOut": CounterMetricFamily("fsapps_queue_calls_timed_out",
                                        "calls the long-wait policy ended", labels=labels),
    }
    windowed = {
        "serviceLevel": GaugeMetricFamily(
            "fsapps_queue_service_level_ratio", "calls answered within the group's service "
            "level seconds / calls that ended their wait, over the window",
            labels=window_labels),
        "asaSeconds": GaugeMetricFamily("fsapps_queue_answer_speed_seconds",
                                        "average wait of the answered calls over the window",
                                        labels=window_labels),
        "occupancy": GaugeMetricFamily("fsapps_queue_occupancy_ratio",
                                       "talking time / logged-in time of the group's agents",
                                       labels=window_labels),
    }
    for domain in services.settings.domains:
        for row in QueueStats(services.ctx, domain).groups(None, now_ms):
            values = [domain, row["group"]]
            for name, family in gauges.items():
                family.add_metric(values, row["live"][name])
            for name, total in counters.items():
                total.add_metric(values, row["total"][name])
            for window, block in [("live", row["live"]), *((w, row[w]) for w, _ in WINDOWS)]:
                for name, family in windowed.items():
                    if block.get(name) is not None:
                        family.add_metric([*values, window], block[name])
    nodes: dict[str, Any] = {}
    decisions = HistogramMetricFamily(
        "fsapps_node_decision_seconds", "a queue call answered (or arrived) to its first agent "
        "rung, in the node's ACD handlers (waiting in the queue included)", labels=["node"])
    for node, counts in Nodes(services.ctx).stats().items():
        for counter, (name, text, extra) in NODE_COUNTERS.items():
            family = nodes.setdefault(name, CounterMetricFamily(
                name, text, labels=["node", *extra]))
            family.add_metric([node, *extra.values()], counts.get(counter, 0))
        buckets, seen = [], 0
        for bound, n in metrics.histogram(counts, "decision_ms"):
            seen += n
            buckets.append(("+Inf" if bound == float("inf") else f"{bound / 1000:g}", seen))
        decisions.add_metric([node], buckets, counts.get("decision_ms_sum_us", 0) / 1e6)
    return [*gauges.values(), *counters.values(), *windowed.values(), *nodes.values(),
            decisions]


class _Collected:
    """A registry's collector for metrics read once (per scrape)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


async def metrics_view(call: Call) -> web.StreamResponse:
    services = call.services
    if not await services.run(metrics_allowed, services, request_token(call.request)):
        raise NotAuthorized("Not Authorized: /metrics takes Authorization: Bearer "
                            "<cti.metrics_token> or a user's token")
    families = await services.run(collect, services, int(time.time() * 1000))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(families))
    return web.Response(body=generate_latest(registry),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


STATS_DOC = {"type": "object", "description": "{domain, time, groups: [{group, name, domain, "
             "serviceLevelSeconds, live, 15m, 60m, total}]} (docs/stats.md)"}
ROUTES = [
    Route("GET", "/api/stats", stats_view, "queue statistics per group: live, last 15 and "
          "60 minutes", fields=(GROUP, DOMAIN), response=STATS_DOC, tag=TAG,
          errors=(401, 403, 404, 422)),
    # its own check (a scraper's bearer token, or a user's token): role None here
    Route("GET", "/metrics", metrics_view, "Prometheus metrics (Authorization: Bearer "
          "<cti.metrics_token> or a user's token)", role=None, tag=TAG,
          response={"type": "string"}, errors=(401,), content_type="text/plain"),
]


def install(app: web.Application) -> None:
    for route in ROUTES:
        register(app, route)
