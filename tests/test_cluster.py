"""The cluster in one trio run: push replication, heartbeat, recovery, convergence."""

from __future__ import annotations

import json
import logging

import pytest
import trio

import phoenix.store
from cluster_harness import Cluster, cluster, contents, settle, url
from phoenix import recovery, replication
from phoenix.clock import LOGICAL_BITS
from phoenix.peers import PeerState
from phoenix.store import bucket_of

NAMES = ["n1", "n2", "n3"]


async def put(harness: Cluster, name: str, key: str, value: bytes, ttl: int = 0) -> None:
    async with harness.client(name) as client:
        response = await client.post("/set", params={"key": key, "ttl": ttl}, content=value)
        assert response.status_code == 200, response.text


async def call(harness: Cluster, name: str, method: str, path: str, **kwargs: object) -> object:
    async with harness.client(name) as client:
        response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        return response.json()


def assert_converged(harness: Cluster) -> dict[str, tuple[bytes, object]]:
    states = [contents(node) for node in harness.nodes.values()]
    for state in states[1:]:
        assert state == states[0]
    return states[0]


async def test_every_write_kind_is_pushed_to_every_peer(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(NAMES) as harness:
        await settle(3)
        await put(harness, "n1", "user:1", b"one")
        await put(harness, "n2", "user:2", b"two")
        await put(harness, "n3", "other", b"three")
        await settle(1)
        assert {k for k in assert_converged(harness)} == {"user:1", "user:2", "other"}
        await call(harness, "n2", "DELETE", "/remove", params={"key": "other"})
        await settle(1)
        assert set(assert_converged(harness)) == {"user:1", "user:2"}
        await call(harness, "n3", "DELETE", "/removeallkeys", params={"key": "user:*"})
        await settle(1)
        assert assert_converged(harness) == {}
        await put(harness, "n1", "again", b"x")
        await settle(1)
        await call(harness, "n2", "POST", "/flush")
        await settle(1)
        assert assert_converged(harness) == {}


async def test_peer_is_disabled_after_exactly_max_retries_missed_heartbeats(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster(["n1", "n2"], max_retries_to_disabled_node=3) as harness:
        await settle(2)
        peer = harness.nodes["n1"].peers[1]
        assert peer.state is PeerState.UP
        harness.network.partition("n2")
        for missed in range(1, 3):
            await trio.sleep(1)
            assert peer.failures == missed
            assert peer.state is PeerState.UP
        await trio.sleep(1)
        assert peer.failures == 3
        assert peer.state is PeerState.DOWN
        await put(harness, "n1", "while-away", b"v")
        assert peer.outbox.depth == 0  # a disabled peer gets no pushes
        harness.network.heal("n2")
        await settle(3)
        assert peer.state is PeerState.UP
        assert contents(harness.nodes["n2"]).keys() == {"while-away"}


async def test_a_hung_peer_is_disabled_after_max_retries_heartbeats(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Each ping waits at most an interval; the next beat came an interval
    # after it, so each miss of a peer that never answers took two.
    async with cluster(["n1", "n2"], max_retries_to_disabled_node=3) as harness:
        await settle(2.5)  # between two beats
        peer = harness.nodes["n1"].peers[1]
        harness.network.hung.add("n2")
        await trio.sleep(3)  # three beats; two of their pings have been cut off
        assert (peer.failures, peer.state) == (2, PeerState.UP)
        await trio.sleep(1)
        assert peer.state is PeerState.DOWN


async def test_partition_heals_and_both_sides_converge(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(NAMES) as harness:
        await settle(2)
        for i in range(50):
            await put(harness, "n1", f"before{i}", b"v")
        await settle(1)
        harness.network.partition("n3")
        await settle(5)
        for i in range(20):
            await put(harness, "n1", f"majority{i}", b"v")
            await put(harness, "n3", f"minority{i}", b"v")
        await call(harness, "n2", "DELETE", "/remove", params={"key": "before0"})
        await call(harness, "n3", "DELETE", "/remove", params={"key": "before1"})
        harness.network.heal("n3")
        await settle(10)
        state = assert_converged(harness)
        assert len(state) == 50 - 2 + 40
        assert "before0" not in state and "before1" not in state


async def test_concurrent_writes_to_one_key_converge_to_the_same_winner(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster(NAMES) as harness:
        await settle(2)
        harness.network.partition("n1")
        harness.network.partition("n2")
        harness.network.partition("n3")
        written = {}
        for name in NAMES:
            await put(harness, name, "contested", name.encode())
            entry = harness.nodes[name].store.get("contested")
            assert entry is not None
            written[name] = entry.version
        assert len(set(written.values())) == 3
        for name in NAMES:
            harness.network.heal(name)
        await settle(10)
        value, version = assert_converged(harness)["contested"]
        # The greatest version wins everywhere, whatever the order of arrival.
        assert version == max(written.values())
        assert value == version[1].encode()


async def test_remove_while_peer_away_is_not_resurrected(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(NAMES) as harness:
        await settle(2)
        await put(harness, "n1", "doomed", b"v")
        await settle(1)
        harness.network.partition("n3")
        await settle(5)
        await call(harness, "n1", "DELETE", "/remove", params={"key": "doomed"})
        await call(harness, "n2", "DELETE", "/removeallkeys", params={"key": "doom"})
        harness.network.heal("n3")
        await settle(10)
        assert "doomed" not in assert_converged(harness)


async def test_late_older_write_does_not_resurrect_a_removed_key(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster(["n1", "n2"]) as harness:
        await settle(2)
        await put(harness, "n1", "k", b"old")
        await settle(1)
        old_op = {
            "op": "set",
            "key": "k",
            "value": "b2xk",
            "content_type": "t",
            "expires_at": 0,
            "version": list(harness.nodes["n1"].store.get("k").version),  # type: ignore[union-attr]
        }
        await call(harness, "n2", "DELETE", "/remove", params={"key": "k"})
        await settle(1)
        await call(harness, "n1", "POST", "/internal/apply", content=json.dumps({"ops": [old_op]}))
        await settle(1)
        assert "k" not in assert_converged(harness)


async def test_an_older_value_does_not_come_back_after_the_newer_write_expired(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Expiry forgot the key: n3, away while `k` was overwritten with a TTL,
    # brought "old" back to every node once the new value had expired.
    async with cluster(NAMES) as harness:
        await settle(2)
        await put(harness, "n1", "k", b"old")
        await settle(1)
        harness.network.partition("n3")
        await settle(5)
        await put(harness, "n1", "k", b"new", ttl=2)
        await settle(3)
        assert "k" not in contents(harness.nodes["n1"])
        harness.network.heal("n3")
        await settle(10)
        assert "k" not in assert_converged(harness)


async def test_a_returning_node_catches_up_on_values_too_large_to_send_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Catch-up sent up to 500 writes per call whatever their size: past the
    # peer's body limit (413), so the node never caught up, nor got pushes.
    size = 100_000  # with 10 keys per request, the body limit is then about 2.3 MB
    settings = {
        "max_value_size": size,
        "max_keys_per_request": 10,
        "anti_entropy_interval_in_seconds": 0,
    }
    async with cluster(["n1", "n2"], **settings) as harness:
        await settle(2)
        harness.network.partition("n2")
        await settle(5)
        for i in range(40):
            harness.nodes["n1"].set(f"big{i}", bytes([i]) * size, "t", 0)
        harness.network.catch_up_only_by("n1")  # which sends them (n2's would pull them)
        harness.network.heal("n2")
        await settle(10)
        assert len(assert_converged(harness)) == 40


async def test_flush_issued_while_a_node_was_away_is_applied_when_it_returns(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster(NAMES) as harness:
        await settle(2)
        for i in range(10):
            await put(harness, "n1", f"k{i}", b"v")
        await settle(1)
        harness.network.partition("n3")
        await settle(5)
        await call(harness, "n1", "POST", "/flush")
        await put(harness, "n2", "after-flush", b"v")
        harness.network.heal("n3")
        await settle(10)
        assert set(assert_converged(harness)) == {"after-flush"}


async def test_tombstones_are_dropped_after_the_grace_period(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster(["n1", "n2"], tombstone_grace_seconds=30) as harness:
        await settle(2)
        await put(harness, "n1", "k", b"v")
        await call(harness, "n1", "DELETE", "/remove", params={"key": "k"})
        await settle(1)
        assert all(node.store.tombstone_count == 1 for node in harness.nodes.values())
        await settle(31)
        assert all(node.store.tombstone_count == 0 for node in harness.nodes.values())


async def test_a_node_ignores_itself_in_peers(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(["n1", "n2"]) as harness:
        await settle(3)
        for name, node in harness.nodes.items():
            states = {peer.url: peer.state for peer in node.peers}
            assert states[url(name)] is PeerState.SELF
        await put(harness, "n1", "k", b"v")
        await settle(1)
        pushes = [(src, dst) for src, dst, path in harness.network.requests if "apply" in path]
        assert pushes
        assert all(src != dst for src, dst in pushes)


async def test_restarted_node_recovers_everything_at_start(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(NAMES) as harness:
        await settle(2)
        for i in range(100):
            await put(harness, "n1", f"k{i}", b"v")
        await settle(1)
        harness.kill("n1")  # listed first in everyone's peers
        await settle(5)
        await put(harness, "n2", "while-down", b"v")
        node = await harness.start("n1")
        await settle(5)
        assert node.ready
        assert "synced from" in node.recovery
        assert len(assert_converged(harness)) == 101


async def test_a_cluster_starting_whole_serves_at_once(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(NAMES) as harness:
        await settle(2)  # less than the patience (heart_beat 1 s x retries 3)
        nodes = harness.nodes
        assert all(node.ready for node in nodes.values())
        # Those that saw every other answer, all recovering, served at once (one
        # or two, as the tasks' order falls); any other synced from one of them.
        starting = "every peer is starting too"
        first = {name for name, node in nodes.items() if node.recovery == starting}
        synced = {f"synced from {url(name)}" for name in first}
        assert first
        assert all(node.recovery in synced for name, node in nodes.items() if name not in first)


async def test_a_restarted_node_syncs_only_from_a_peer_that_is_ready(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster(NAMES) as harness:
        await settle(2)
        for i in range(50):
            await put(harness, "n3", f"k{i}", b"v")
        await settle(1)
        harness.kill("n1")
        harness.kill("n2")
        harness.network.partition("n3")  # it holds every key, out of reach
        n1, n2 = await harness.start("n1"), await harness.start("n2")
        await settle(2)
        # Each reaches the other, which is recovering too and holds nothing:
        # neither may say it is ready, nor answer 404 for a key it lacks.
        assert not n1.ready and not n2.ready
        async with harness.client("n1") as client:
            assert (await client.get("/get", params={"key": "k1"})).status_code == 503
        await settle(5)  # past heart_beat (1 s) x retries (3): serve, saying how
        assert n1.ready and "without sync" in n1.recovery
        harness.network.heal("n3")
        await settle(10)
        assert len(assert_converged(harness)) == 50


async def test_reads_wait_for_start_up_recovery(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(["n1", "n2"]) as harness:
        await settle(2)
        harness.kill("n2")
        harness.network.partition("n2")
        node = await harness.start("n2")
        async with harness.client("n2") as client:
            response = await client.get("/get", params={"key": "k"})
            assert response.status_code == 503
            assert "recovering" in response.json()["error"]
        assert not node.ready
        await settle(5)  # no peer answers: a bounded wait, then serve
        assert node.ready
        assert "without sync" in node.recovery


async def test_write_concern_waits_for_peers_or_names_the_missing(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster(NAMES) as harness:
        await settle(2)
        async with harness.client("n1") as client:
            response = await client.post("/set", params={"key": "k", "ttl": 0, "sync": 2})
            assert response.status_code == 200
            assert response.headers["X-Acknowledged"] == "2"
            harness.network.cut.add(frozenset(("n1", "n3")))
            response = await client.post("/set", params={"key": "k2", "ttl": 0, "sync": 2})
            assert response.status_code == 504
            assert response.json()["missing"] == [url("n3")]
            for sync in ("3", "x", "9" * 5000):  # one answer for every sync out of range
                response = await client.post("/set", params={"key": "k3", "ttl": 0, "sync": sync})
                assert (response.status_code, response.json()) == (
                    400,
                    {"error": "sync must be between 0 and 2 (the other peers)"},
                )
            # An empty batch writes nothing, so there is nothing to wait for.
            response = await client.post("/setKeys", params={"ttl": 0, "sync": 2}, json={})
            assert (response.status_code, response.json()) == (200, {"stored": 0, "refused": []})


SET_OP = {"op": "set", "key": "b", "value": "dg==", "content_type": "t", "expires_at": 0}


@pytest.mark.parametrize(
    "bad",
    [
        {**SET_OP, "value": "not base64!"},
        # What the client routes could not send back: a key JSON writes with a
        # lone surrogate, a content type that is no header, a date past 9999.
        {**SET_OP, "key": "b\ud800"},
        {**SET_OP, "content_type": "t\r\nX-Injected: 1"},
        {**SET_OP, "content_type": "t\u20ac"},
        {**SET_OP, "expires_at": 10**30},
        # Timestamps far ahead would move the node's clock there for good.
        {**SET_OP, "version": [2**70, "x"]},
        {**SET_OP, "version": [2**63 - 1, "x"]},
    ],
)
async def test_malformed_batch_is_refused_whole(
    autojump_clock: trio.abc.Clock, bad: dict[str, object]
) -> None:
    async with cluster(["n1"]) as harness:
        version = [harness.nodes["n1"].hlc.now(), "x"]
        good = {**SET_OP, "key": "a", "version": version}
        bad = {"version": version, **bad}
        async with harness.client("n1") as client:
            body = json.dumps({"ops": [good, bad]})
            response = await client.post("/internal/apply", content=body)
            assert response.status_code == 400
        assert contents(harness.nodes["n1"]) == {}
        assert harness.nodes["n1"].hlc.now() < version[0] + (1 << 32)  # not moved far


async def test_a_version_up_to_a_day_ahead_is_taken_and_replicates_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster(["n1", "n2"]) as harness:
        await settle(2)
        n1 = harness.nodes["n1"]
        hour, days = 3600 * 1000 << LOGICAL_BITS, 2 * 24 * 3600 * 1000 << LOGICAL_BITS
        async with harness.client("n1") as client:
            for ahead, status in ((days, 400), (hour, 200)):
                op = {**SET_OP, "key": "ahead", "version": [n1.hlc.now() + ahead, "x"]}
                body = json.dumps({"ops": [op]})
                assert (await client.post("/internal/apply", content=body)).status_code == status
            # Its clock is an hour ahead now, and its peer still takes its writes.
            response = await client.post("/set", params={"key": "k", "ttl": 0, "sync": 1})
            assert response.status_code == 200
        assert "ahead" in contents(n1)
        assert "k" in contents(harness.nodes["n2"])


async def test_full_outbox_falls_back_to_catch_up(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(["n1", "n2"], outbox_size=5) as harness:
        await settle(2)
        harness.network.cut.add(frozenset(("n1", "n2")))
        for i in range(20):
            await put(harness, "n1", f"k{i}", b"v")
        peer = harness.nodes["n1"].peers[1]
        assert peer.needs_catch_up
        harness.network.cut.clear()
        await settle(5)
        assert len(assert_converged(harness)) == 20


async def test_a_node_pulls_large_values_in_answers_of_bounded_size(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One reconcile answer carried every write of 256 buckets: with large
    # values, gigabytes held at once on both nodes.
    monkeypatch.setattr(recovery, "ANSWER_BYTES", 300_000, raising=False)
    async with cluster(["n1", "n2"], max_value_size=100_000) as harness:
        await settle(2)
        harness.network.partition("n2")
        await settle(5)
        for i in range(20):
            harness.nodes["n1"].set(f"big{i}", bytes([i]) * 100_000, "t", 0)
        harness.network.catch_up_only_by("n2")  # which pulls them (n1's would send them)
        harness.network.requests.clear()
        harness.network.heal("n2")
        await settle(10)
        assert len(assert_converged(harness)) == 20
        pulls = [r for r in harness.network.requests if r[2].endswith("/reconcile")]
        assert len(pulls) >= 7  # 3 values of 133 KB (base64) per answer cut at 300 KB


async def test_a_catch_up_sends_its_newer_flush_before_it_asks_for_writes(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # n1 flushed while its outbox to n2 overflowed. Sent only after the
    # exchange, the flush let n2 answer with writes it removes, which n1
    # refused as stale; a client write to those buckets in between made n1
    # ask again, for good.
    monkeypatch.setattr(recovery, "ANSWER_BYTES", 20_000)
    async with cluster(["n1", "n2"], outbox_size=50) as harness:
        await settle(2)
        n1, n2 = harness.nodes["n1"], harness.nodes["n2"]
        for i in range(2000):
            n1.set(f"k{i}", b"v" * 50, "t", 0)
        await settle(3)
        first = min(bucket_of(f"k{i}") for i in range(2000))
        hot = next(f"h{i}" for i in range(10**6) if bucket_of(f"h{i}") == first)
        pushes_blocked = True
        asks = 0

        def refuse(source: str, target: str, path: str) -> bool:
            nonlocal asks
            if source == "n1" and path.endswith("/apply"):
                return pushes_blocked
            if source == "n1" and path.endswith("/reconcile"):
                asks += 1
                n1.set(hot, b"%d" % asks, "t", 0)  # a client write during each call
                return asks > 1000
            return source == "n2" and path.endswith("/reconcile")  # only n1 catches up

        harness.network.refuse = refuse
        n1.flush()
        for i in range(100):  # past the outbox: the flush goes with it
            n1.set(f"later{i}", b"x", "t", 0)
        await settle(2)
        pushes_blocked = False
        await settle(20)
        assert n2.store.flush_version == n1.store.flush_version
        assert asks < 50


async def test_a_restarted_node_that_can_hold_nothing_still_becomes_ready(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What it cannot hold it remembers as evicted, and past the memo's size
    # it forgot them and was sent them again: asking again after each cut
    # answer, its start-up catch-up never ended.
    monkeypatch.setattr(phoenix.store, "EVICTION_MEMO_SIZE", 50)
    monkeypatch.setattr(recovery, "ANSWER_BYTES", 2000)
    monkeypatch.setattr(recovery, "BUCKETS_PER_CALL", 16384)
    async with cluster(["n1", "n2"]) as harness:
        await settle(2)
        for i in range(300):
            harness.nodes["n1"].set(f"k{i}", b"v" * 50, "t", 0)
        await settle(2)
        harness.kill("n2")
        await settle(5)
        n2 = await harness.start("n2", max_cost=1000)
        await settle(5)
        assert n2.ready


async def test_a_restarted_node_gets_from_a_third_node_what_its_first_peer_evicted(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Sent to a node that knew nothing of them, the evicting node's memos
    # matched the third node's versions: the values were never fetched.
    async with cluster(NAMES) as harness:
        await settle(2)
        harness.kill("n1")
        n1 = await harness.start("n1", max_cost=40_000)  # holds about 70 of the 200
        await settle(5)
        n3 = harness.nodes["n3"]
        for i in range(200):
            n3.set(f"key{i:04}", b"v" * 200, "t", 0)
        await settle(3)
        assert n1.store.evictions + n1.store.rejections > 50
        harness.kill("n2")  # it will sync from n1 first, its first ready peer
        await settle(5)
        n2 = await harness.start("n2")
        await settle(30)
        assert contents(n2) == contents(n3)


async def test_an_outbox_full_of_bytes_falls_back_to_catch_up(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bounded by count only, an outbox of large values for a paused peer
    # took hundreds of MB before the peer was marked down.
    monkeypatch.setattr(replication, "OUTBOX_BYTES", 1_000_000)
    async with cluster(["n1", "n2"], max_value_size=100_000) as harness:
        await settle(2)
        harness.network.cut.add(frozenset(("n1", "n2")))
        peer = harness.nodes["n1"].peers[1]
        for i in range(20):
            harness.nodes["n1"].set(f"big{i}", b"v" * 100_000, "t", 0)
            assert peer.outbox.bytes <= 1_000_000
        assert peer.needs_catch_up
        harness.network.cut.clear()
        await settle(5)
        assert len(assert_converged(harness)) == 20


async def test_catch_up_transfers_only_the_difference(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(["n1", "n2"]) as harness:
        await settle(2)
        n1, n2 = harness.nodes["n1"], harness.nodes["n2"]
        for i in range(5000):
            n1.set(f"key{i:06}", b"v" * 100, "t", 0)
        await settle(5)
        assert len(contents(n2)) == 5000
        harness.network.partition("n2")
        await settle(5)
        for i in range(50):
            n1.set(f"key{i:06}", b"w" * 100, "t", 0)
        harness.network.catch_up_only_by("n1")
        harness.network.heal("n2")
        await settle(5)
        assert_converged(harness)
        report = n1.last_catch_up
        assert report is not None
        assert report.differing_buckets <= 50
        assert report.received + report.sent == 50
        # A full copy would carry 5000 values of 100 bytes (base64: 134 bytes).
        full_copy = 5000 * 134
        print(report)
        assert report.bytes < full_copy / 2, report


async def test_evicted_keys_are_not_fetched_again_by_catch_up(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Every node has room for about 40 of the 200 entries: each evicts locally.
    async with cluster(["n1", "n2"], max_cost=40 * 1000) as harness:
        await settle(2)
        n1, n2 = harness.nodes["n1"], harness.nodes["n2"]
        for i in range(200):
            n2.set(f"key{i:04}", b"v" * 500, "t", 0)
        await settle(2)
        assert n1.store.evictions + n1.store.rejections > 100
        # The eviction memo keeps the digests equal: nothing differs.
        assert n1.store.digests() == n2.store.digests()
        harness.network.partition("n2")
        await settle(5)
        harness.network.heal("n2")
        await settle(5)
        reports = [node.last_catch_up for node in (n1, n2) if node.last_catch_up is not None]
        assert reports
        assert all(r.differing_buckets == 0 and r.received == r.sent == 0 for r in reports)


async def test_a_value_overwritten_while_a_node_was_away_goes_though_the_new_one_was_let_go(
    autojump_clock: trio.abc.Clock,
) -> None:
    # n1 could not hold the new value (it costs more than the whole budget);
    # catch-up sent nothing for a key let go, so n2 served the old one for good.
    async with cluster(["n1", "n2"], max_cost=40_000) as harness:
        await settle(2)
        n1, n2 = harness.nodes["n1"], harness.nodes["n2"]
        await put(harness, "n1", "k", b"old")
        await settle(1)
        harness.network.partition("n2")
        await settle(5)
        await put(harness, "n1", "k", b"new" * 20_000)
        assert n1.store.get("k") is None and n1.store.known_version("k") is not None
        assert n2.store.get("k") is not None
        harness.network.heal("n2")
        await settle(10)
        assert n2.store.get("k") is None
        assert n2.store.digests() == n1.store.digests()


async def test_peer_state_changes_are_logged_once_not_on_every_beat(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="phoenix.peers")
    async with cluster(["n1", "n2"]) as harness:
        await settle(2)
        harness.network.partition("n2")
        await settle(20)
        harness.network.heal("n2")
        await settle(5)
    messages = [r.getMessage() for r in caplog.records if r.name == "phoenix.peers"]
    about_n2 = [m for m in messages if m.startswith("peer http://n2")]
    assert ["down" if " is down " in m else "up" for m in about_n2] == ["up", "down", "up"]


async def test_peers_replicate_with_the_cluster_key_and_strangers_are_refused(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster(["n1", "n2"], cluster_key="k" * 20) as harness:
        await settle(2)
        await put(harness, "n1", "k", b"v")
        await settle(1)
        assert set(contents(harness.nodes["n2"])) == {"k"}
        async with harness.client("n2") as stranger:
            response = await stranger.post("/internal/apply", content=b'{"ops": []}')
            assert response.status_code == 401


async def test_a_node_does_not_count_itself_towards_a_write_concern(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Heartbeats cannot tell n1 which entry is itself; its pushes reach it.
    def no_pings(source: str, target: str, path: str) -> bool:
        return path.endswith("/ping")

    async with cluster(["n1", "n2"], refuse=no_pings) as harness:
        harness.kill("n2")
        async with harness.client("n1") as client:
            response = await client.post("/set", params={"key": "k", "ttl": 0, "sync": 1})
        assert response.status_code == 504
        assert response.json()["missing"] == [url("n2")]
        # The push's answer told n1 that this entry is itself.
        assert harness.nodes["n1"].peers[0].state is PeerState.SELF


@pytest.mark.parametrize("restart", [False, True], ids=["stays-down", "restarts"])
async def test_survivors_exchange_what_a_dying_node_pushed_to_only_some(
    autojump_clock: trio.abc.Clock, restart: bool
) -> None:
    settings = {"heart_beat_interval_in_seconds": 0.5, "max_retries_to_disabled_node": 2}
    async with cluster(NAMES, anti_entropy_interval_in_seconds=0, **settings) as harness:
        await settle(3)
        harness.network.cut.add(frozenset(("n1", "n2")))  # n1's push to n2 is in flight...
        async with harness.client("n1") as client:
            response = await client.post("/set", params={"key": "k", "ttl": 0, "sync": 1})
        assert response.headers["X-Acknowledged"] == "1"  # n3 applied it
        harness.kill("n1")  # ...when n1 dies
        harness.network.cut.clear()
        if restart:
            await settle(2)
            await harness.start("n1")
        await settle(10)
        assert all("k" in contents(node) for node in harness.nodes.values())


async def test_periodic_anti_entropy_repairs_what_no_event_reported(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster(["n1", "n2"], anti_entropy_interval_in_seconds=5) as harness:
        await settle(2)
        # A write that reached n2 by no push at all (as if a push was lost).
        harness.nodes["n2"].store.set("stray", b"v", "t", 0, (harness.nodes["n2"].hlc.now(), "n2"))
        await settle(15)
        assert "stray" in contents(harness.nodes["n1"])


async def test_setkeys_is_replicated_and_waits_for_its_write_concern(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster(NAMES) as harness:
        await settle(2)
        body = {f"k{i}": f"v{i}" for i in range(100)}
        async with harness.client("n1") as client:
            response = await client.post("/setKeys", params={"ttl": 0, "sync": 2}, json=body)
        assert response.status_code == 200
        assert response.headers["X-Acknowledged"] == "2"
        # Acknowledged means applied: every key is on every node already.
        for node in harness.nodes.values():
            assert len(contents(node)) == 100


async def test_nodes_that_both_hold_many_keys_catch_up_in_listings_a_peer_takes(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reconcile call listed every key of 256 buckets, however many: past the
    # peer's body limit (413) once a node held a few million keys, so when
    # both sides differed in many buckets neither ever caught up. One call
    # listing every bucket stands in for 256 buckets of a larger keyspace.
    monkeypatch.setattr(recovery, "BUCKETS_PER_CALL", 16384)
    settings = {"max_keys_per_request": 10, "max_value_size": 10}  # a body limit of 2 MiB
    async with cluster(["n1", "n2"], **settings) as harness:
        await settle(2)
        n1, n2 = harness.nodes["n1"], harness.nodes["n2"]
        keys = [f"{i:05}" + "k" * 200 for i in range(10_000)]  # listed, about 2.4 MB
        harness.network.partition("n2")
        await settle(5)
        for node in (n1, n2):  # each side writes every key while apart
            for key in keys:
                node.set(key, node.id.encode(), "t", 0)
        harness.network.heal("n2")
        await settle(10)
        state = assert_converged(harness)
        assert len(state) == 10_000


async def test_drain_waits_for_queued_writes_and_lets_a_disabled_peer_go(
    autojump_clock: trio.abc.Clock,
) -> None:
    # What a stopping node (phoenix serve, on SIGINT or SIGTERM) waits for,
    # within write_timeout, before its replicators are cancelled.
    async with cluster(["n1", "n2"]) as harness:
        await settle(2)
        n1 = harness.nodes["n1"]
        harness.network.cut.add(frozenset(("n1", "n2")))
        n1.set("k", b"v", "t", 0)
        with trio.move_on_after(1) as scope:
            await n1.drain()
        assert scope.cancelled_caught  # the push keeps failing: still queued
        harness.network.cut.clear()
        with trio.fail_after(3):  # the retry's backoff, then the push
            await n1.drain()
        assert "k" in contents(harness.nodes["n2"])
        harness.network.partition("n2")
        n1.set("k2", b"v", "t", 0)
        with trio.fail_after(5):  # three missed beats: down, its outbox dropped
            await n1.drain()
        assert n1.peers[1].state is PeerState.DOWN
