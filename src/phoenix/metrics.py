"""Prometheus metrics of one node, in the Prometheus text format at /metrics.

Figures the node keeps anyway (store stats, peer states, outbox depths) are
read when scraped, by a collector, so the request path pays nothing for them;
only per-request counts and latencies are recorded as requests pass, by
ASGI middleware. Each node has its own registry (no global state).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from phoenix import __version__, build
from phoenix.histogram import Histogram
from phoenix.limits import ASGIApp, Message, Receive, Scope, Send
from phoenix.node import Node
from phoenix.peers import PeerState
from phoenix.security import route_path

# Paths reported by name; any other path is counted as "other", so that
# scanners cannot blow up the number of time series.
KNOWN_ROUTES = frozenset(
    {
        "/set",
        "/setKeys",
        "/get",
        "/trygetwithexpire",
        "/getKeys",
        "/list",
        "/flush",
        "/remove",
        "/removeallkeys",
        "/ping",
        "/cluster",
        "/metrics",
        "/openapi.json",
        "/healthz",
        "/readyz",
        "/internal/ping",
        "/internal/apply",
        "/internal/digests",
        "/internal/bucket-digests",
        "/internal/reconcile",
    }
)


class NodeCollector(Collector):
    """Reads the node's own figures at scrape time."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node, store = self.node, self.node.store
        stats = store.stats
        counters = [
            ("hits", "Reads that found a live key", stats.hits),
            ("misses", "Reads that found no live key", stats.misses),
            ("sets", "Sets applied (local and from peers)", stats.sets),
            ("removes", "Live keys removed (by key or pattern)", stats.removes),
            ("expirations", "Keys dropped because their TTL passed", stats.expirations),
            ("evictions", "Keys evicted by the admission policy", store.evictions),
            ("admission_rejections", "New keys the policy refused", store.rejections),
            (
                "stale_writes",
                "Writes ignored because a newer version was known",
                stats.stale_writes,
            ),
            ("catch_up_runs", "Anti-entropy catch-ups completed", node.catch_up_runs),
            ("catch_up_bytes", "Bytes exchanged by catch-ups", node.catch_up_bytes),
        ]
        for name, text, value in counters:
            yield CounterMetricFamily(f"phoenix_{name}", text, value=value)
        yield GaugeMetricFamily("phoenix_items", "Live entries held", value=len(store))
        yield GaugeMetricFamily(
            "phoenix_tombstones",
            "Removes and expired writes remembered",
            value=store.tombstone_count,
        )
        yield GaugeMetricFamily(
            "phoenix_bytes_used", "Cost of the entries held", value=store.used_cost
        )
        yield GaugeMetricFamily(
            "phoenix_bytes_max", "The cost budget, max_cost", value=store.max_cost
        )
        yield GaugeMetricFamily(
            "phoenix_ready", "1 once start-up recovery is done", value=node.ready
        )
        info = GaugeMetricFamily(
            "phoenix_build_info",
            "1, labelled with the version and the build",
            labels=["version", "build"],
        )
        info.add_metric([__version__, build()], 1)
        yield info
        up = GaugeMetricFamily("phoenix_peer_up", "1 when the peer answers", labels=["peer"])
        depth = GaugeMetricFamily(
            "phoenix_outbox_depth", "Writes queued for a peer", labels=["peer"]
        )
        batches = CounterMetricFamily(
            "phoenix_replication_batches", "Batches a peer applied", labels=["peer"]
        )
        failures = CounterMetricFamily(
            "phoenix_replication_failures", "Failed pushes to a peer", labels=["peer"]
        )
        for peer in node.peers:
            if peer.state is PeerState.SELF:
                continue
            up.add_metric([peer.url], peer.state is PeerState.UP)
            depth.add_metric([peer.url], peer.outbox.depth)
            batches.add_metric([peer.url], peer.batches_sent)
            failures.add_metric([peer.url], peer.push_failures)
        yield from (up, depth, batches, failures)
        yield self._replication_lag()

    def _replication_lag(self) -> Metric:
        lag = self.node.replication_lag
        return HistogramMetricFamily(
            "phoenix_replication_lag_seconds",
            "Time from a pushed write's origin (its version's clock) to its apply here",
            buckets=lag.buckets(),
            sum_value=lag.sum_seconds,
        )


class RefusalCollector(Collector):
    """Requests the guard refused, by status (403 whitelist, 401/403 keys)."""

    def __init__(self, refused: Mapping[int, int]) -> None:
        self.refused = refused

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "phoenix_refused_requests",
            "Requests refused by the whitelist or the keys",
            labels=["status"],
        )
        for status, count in sorted(self.refused.items()):
            family.add_metric([str(status)], count)
        yield family


# Bounds of the request latency histogram's buckets, in seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class RequestMetrics(Collector):
    """ASGI middleware counting requests by route and status, and timing them.

    Also the collector of those figures: prometheus-client's Counter and
    Histogram take a lock and check their labels on every call, where a
    request here adds to plain counts, turned into metric families only
    when scraped.
    """

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.counts: dict[tuple[str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        registry.register(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        route = path if path in KNOWN_ROUTES else "other"
        status = 500
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            counts = self.counts
            counts[route, status] = counts.get((route, status), 0) + 1
            latency = self.latency.get(route)
            if latency is None:
                latency = self.latency[route] = Histogram(LATENCY_BUCKETS)
            latency.observe(time.perf_counter() - started)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "phoenix_requests", "HTTP requests answered", labels=["route", "status"]
        )
        for (route, status), count in sorted(self.counts.items()):
            requests.add_metric([route, str(status)], count)
        yield requests
        family = HistogramMetricFamily(
            "phoenix_request_duration_seconds", "Time to answer an HTTP request", labels=["route"]
        )
        for route, latency in sorted(self.latency.items()):
            family.add_metric([route], latency.buckets(), latency.sum_seconds)
        yield family


def node_registry(node: Node) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(NodeCollector(node))
    return registry
