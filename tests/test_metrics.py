"""/metrics in Prometheus text format, /healthz and /readyz."""

from __future__ import annotations

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

import phoenix
from cluster_harness import cluster, contents, settle
from phoenix.app import create_app
from phoenix.clock import FakeClock
from phoenix.config import Config
from phoenix.node import Node


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


async def test_metrics_count_what_the_node_did(client: httpx.AsyncClient) -> None:
    await client.post("/set", params={"key": "a", "ttl": 0}, content=b"12345")
    await client.get("/get", params={"key": "a"})
    await client.get("/get", params={"key": "missing"})
    await client.delete("/remove", params={"key": "a"})
    await client.get("/no/such/path")
    metrics = await scrape(client)
    assert metrics[("phoenix_sets_total", ())] == 1
    assert metrics[("phoenix_hits_total", ())] == 1
    assert metrics[("phoenix_misses_total", ())] == 1
    assert metrics[("phoenix_removes_total", ())] == 1
    assert metrics[("phoenix_items", ())] == 0
    assert metrics[("phoenix_bytes_max", ())] > 0
    build = (("build", phoenix.build()), ("version", phoenix.__version__))
    assert metrics[("phoenix_build_info", build)] == 1
    assert metrics[("phoenix_requests_total", (("route", "/get"), ("status", "200")))] == 1
    assert metrics[("phoenix_requests_total", (("route", "/get"), ("status", "404")))] == 1
    # Unknown paths share one label value, whatever they are.
    assert metrics[("phoenix_requests_total", (("route", "other"), ("status", "404")))] == 1
    count = ("phoenix_request_duration_seconds_count", (("route", "/set"),))
    assert metrics[count] == 1


async def test_health_endpoints_are_cheap_and_open_only_when_configured() -> None:
    key = "w" * 20
    for public in (False, True):
        config = Config(num_counters=1000, read_write_keys=(key,), public_health_checks=public)
        app = create_app(Node(config, clock=FakeClock()))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            expected = 200 if public else 401
            assert (await client.get("/healthz")).status_code == expected
            assert (await client.get("/readyz")).status_code == expected
            assert (await client.get("/metrics")).status_code == 401
            authorized = {"Authorization": f"Bearer {key}"}
            metrics = samples((await client.get("/metrics", headers=authorized)).text)
            refused = metrics[("phoenix_refused_requests_total", (("status", "401"),))]
            assert refused == (1 if public else 3)


async def test_cluster_metrics_show_peers_and_replication(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(["n1", "n2"]) as harness:
        await settle(2)
        async with harness.client("n1") as client:
            await client.post("/set", params={"key": "k", "ttl": 0}, content=b"v")
            await settle(1)
            metrics = await scrape(client)
            assert (await client.get("/readyz")).json()["status"] == "ready"
        peer = (("peer", "http://n2"),)
        assert metrics[("phoenix_peer_up", peer)] == 1
        assert metrics[("phoenix_replication_batches_total", peer)] >= 1
        assert metrics[("phoenix_outbox_depth", peer)] == 0
        # The node's own entry in peers is not reported.
        assert ("phoenix_peer_up", (("peer", "http://n1"),)) not in metrics
        harness.network.partition("n2")
        await settle(5)
        async with harness.client("n1") as client:
            metrics = await scrape(client)
        assert metrics[("phoenix_peer_up", peer)] == 0


class _Slow(httpx.AsyncBaseTransport):
    """Delays every request by `delay` seconds (trio time) before handing it on."""

    def __init__(self, inner: httpx.AsyncBaseTransport, delay: float) -> None:
        self.inner, self.delay = inner, delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await trio.sleep(self.delay)
        return await self.inner.handle_async_request(request)


async def test_replication_lag_histogram_times_pushed_writes_from_their_version(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster(["n1", "n2"]) as harness:
        await settle(2)
        # Every request to n2 now takes 30 ms (virtual time, which the wall clock follows).
        harness.network.apps["n2"] = _Slow(harness.network.apps["n2"], 0.03)  # type: ignore[assignment]
        async with harness.client("n1") as client:
            await client.post("/set", params={"key": "k", "ttl": 0}, content=b"v")
            await settle(1)
            await client.delete("/remove", params={"key": "gone"})
        await settle(1)
        async with harness.client("n2") as client:
            metrics = await scrape(client)
    lag = "phoenix_replication_lag_seconds"
    assert metrics[(f"{lag}_count", ())] == 2  # pushes only: heartbeats and catch-ups are not timed
    assert metrics[(f"{lag}_bucket", (("le", "0.02"),))] == 0
    assert metrics[(f"{lag}_bucket", (("le", "0.03"),))] == 2  # 30 ms, to the millisecond
    assert metrics[(f"{lag}_bucket", (("le", "+Inf"),))] == 2
    assert 0.059 <= metrics[(f"{lag}_sum", ())] <= 0.061


async def test_writes_a_catch_up_sends_are_not_timed_as_pushed(
    autojump_clock: trio.abc.Clock,
) -> None:
    # A node that caught a returning peer up sent it its old writes through
    # /internal/apply, as pushes go: they counted as minutes of replication lag.
    async with cluster(["n1", "n2"], anti_entropy_interval_in_seconds=0) as harness:
        await settle(2)
        harness.network.partition("n2")
        await settle(5)
        for i in range(10):
            harness.nodes["n1"].set(f"k{i}", b"v", "t", 0)
        await settle(60)
        harness.network.catch_up_only_by("n1")  # which sends them
        harness.network.heal("n2")
        await settle(10)
        n2 = harness.nodes["n2"]
        assert len(contents(n2)) == 10
        assert n2.replication_lag.counts == [0] * len(n2.replication_lag.counts)
