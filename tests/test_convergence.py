"""Replicas that apply the same versioned writes in any order end up identical."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import phoenix.store
from phoenix.clock import LOGICAL_BITS, FakeClock
from phoenix.ops import EvictedOp, FlushOp, Op, RemoveMatchingOp, RemoveOp, SetOp
from phoenix.store import BUCKET_COUNT, ENTRY_OVERHEAD, Store, bucket_of, fingerprint

START = FakeClock().now

KEYS = st.sampled_from(["a", "b", "ab", "user:1", "user:2"])
VERSIONS = st.tuples(
    st.integers(1, 50).map(lambda t: (START + t) << LOGICAL_BITS),
    st.sampled_from(["n1", "n2", "n3"]),
)
OPS: st.SearchStrategy[Op] = st.one_of(
    st.builds(SetOp, KEYS, st.binary(max_size=3), st.just("t"), st.just(0), VERSIONS),
    st.builds(RemoveOp, KEYS, VERSIONS),
    st.builds(RemoveMatchingOp, st.sampled_from(["a", "user:*", "?"]), VERSIONS),
    st.builds(FlushOp, VERSIONS),
    st.builds(EvictedOp, KEYS, st.just(0), VERSIONS),
)


def replay(ops: list[Op]) -> Store:
    store = Store(max_cost=10**9, num_counters=1000, buffer_items=4, clock=FakeClock())
    for op in ops:
        apply(store, op)
    return store


def apply(store: Store, op: Op) -> None:
    if isinstance(op, SetOp):
        store.set(op.key, op.value, op.content_type, op.expires_at, op.version)
    elif isinstance(op, RemoveOp):
        store.remove(op.key, op.version)
    elif isinstance(op, RemoveMatchingOp):
        store.remove_matching(op.pattern, op.version)
    elif isinstance(op, EvictedOp):
        store.evicted(op.key, op.expires_at, op.version)
    else:
        store.flush(op.version)


def state(store: Store) -> dict[str, tuple[bytes, object]]:
    return {key: (entry.value, entry.version) for key, entry in store.items()}


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(OPS, max_size=25, unique_by=lambda op: op.version),
    data=st.data(),
)
def test_any_order_and_any_replay_gives_the_same_state(ops: list[Op], data: st.DataObject) -> None:
    reference = replay(ops)
    shuffled = data.draw(st.permutations(ops))
    replayed = data.draw(st.lists(st.sampled_from(ops), max_size=10)) if ops else []
    other = replay(shuffled + replayed)
    assert state(other) == state(reference)
    assert other.digests() == reference.digests()


def recomputed_digests(store: Store) -> list[int]:
    """The digests from scratch: every key the store knows, at the version it knows."""
    digests = [0] * BUCKET_COUNT
    for key in {*store._entries, *store._tombstones, *store._evicted}:
        version = store.known_version(key)
        assert version is not None
        digests[bucket_of(key)] ^= fingerprint(key, version)
    return digests


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.one_of(OPS, st.integers(0, 3), st.just("purge")), max_size=40),
    max_cost=st.sampled_from([3 * ENTRY_OVERHEAD, 10**9]),
)
def test_digests_settled_in_any_batches_match_the_store(
    steps: list[Op | int | str], max_cost: int
) -> None:
    # A small budget makes the policy evict and refuse: memos enter the digests too.
    clock = FakeClock()
    store = Store(
        max_cost=max_cost, num_counters=1000, buffer_items=4, clock=clock, tombstone_grace_ms=20
    )
    for step in steps:
        if step == "purge":  # the tombstones' grace is over
            clock.advance(0.04)
            store.expire_due()
        elif isinstance(step, int):
            store.settle_digests(step)  # a batch of the node's background settling
        else:
            assert isinstance(step, Op)
            apply(store, step)
    assert store.digests() == recomputed_digests(store)


def test_digests_drop_purged_tombstones_and_forgotten_memos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(phoenix.store, "EVICTION_MEMO_SIZE", 2)
    clock = FakeClock()
    store = Store(
        max_cost=2 * ENTRY_OVERHEAD,
        num_counters=1000,
        buffer_items=4,
        clock=clock,
        tombstone_grace_ms=1000,
    )
    version = (clock.now << LOGICAL_BITS, "n1")
    store.remove("gone", version)
    for index in range(6):  # most are let go; the memo keeps the last two
        store.set(f"k{index}", b"", "t", 0, ((clock.now + 1 + index) << LOGICAL_BITS, "n1"))
        store.settle_digests()
    assert store.digests() == recomputed_digests(store)
    clock.advance(2)
    store.expire_due()
    assert store.tombstone("gone") is None
    assert store.digests() == recomputed_digests(store)


SECOND = 1000
TIMED_OPS: st.SearchStrategy[Op] = st.one_of(
    st.builds(
        SetOp,
        KEYS,
        st.binary(max_size=3),
        st.just("t"),
        st.one_of(st.just(0), st.integers(1, 60).map(lambda s: START + s * SECOND)),
        st.tuples(
            st.integers(1, 50).map(lambda s: (START + s * SECOND) << LOGICAL_BITS),
            st.sampled_from(["n1", "n2", "n3"]),
        ),
    ),
    st.builds(
        EvictedOp,
        KEYS,
        st.integers(1, 60).map(lambda s: START + s * SECOND),
        st.tuples(
            st.integers(1, 50).map(lambda s: (START + s * SECOND) << LOGICAL_BITS),
            st.sampled_from(["n1", "n2", "n3"]),
        ),
    ),
    OPS,
)
# What happens on a node between two arrivals: time passes, its upkeep expires
# what is due, and reads expire what they meet.
BETWEEN = st.lists(st.sampled_from(["second", "ten seconds", "upkeep", "read"]), max_size=3)


def arrive(ops: list[Op], between: list[list[str]]) -> Store:
    clock = FakeClock()
    store = Store(max_cost=10**9, num_counters=1000, buffer_items=4, clock=clock)
    for op, events in zip(ops, between, strict=True):
        for event in events:
            if event == "second":
                clock.now += SECOND
            elif event == "ten seconds":
                clock.now += 10 * SECOND
            elif event == "upkeep":
                store.expire_due()
            else:
                for key in ["a", "b", "ab", "user:1", "user:2"]:
                    store.get(key)
        apply(store, op)
    clock.now = START + 1000 * SECOND  # every deadline is past; no grace is over
    store.expire_due()
    return store


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(TIMED_OPS, max_size=20, unique_by=lambda op: op.version), data=st.data())
def test_time_passing_between_arrivals_changes_nothing(ops: list[Op], data: st.DataObject) -> None:
    # An expired set is the greatest write of its key until a newer one: an
    # older set arriving after the expiry must not bring the key back.
    in_time = arrive(ops, [[]] * len(ops))
    shuffled = data.draw(st.permutations(ops))
    late = arrive(shuffled, data.draw(st.lists(BETWEEN, min_size=len(ops), max_size=len(ops))))
    assert state(late) == state(in_time)
    assert late.digests() == in_time.digests()


def test_a_store_that_evicted_keys_with_a_ttl_agrees_with_one_that_kept_them() -> None:
    # The memo of an evicted key had no deadline: once the peer that kept it
    # had expired it, their digests differed for good.
    clocks = FakeClock(), FakeClock()
    small, large = (
        Store(max_cost=cost, num_counters=1000, buffer_items=4, clock=clock)
        for cost, clock in zip([3 * ENTRY_OVERHEAD, 10**9], clocks, strict=True)
    )
    for index in range(20):
        op = SetOp(
            f"k{index}", b"v", "t", START + 5 * SECOND, ((START + index) << LOGICAL_BITS, "n1")
        )
        apply(small, op)
        apply(large, op)
    assert small.evictions + small.rejections > 10
    assert small.digests() == large.digests()
    for clock in clocks:
        clock.advance(10)
    for store in small, large:
        store.expire_due()
        assert len(store) == 0
    assert small.digests() == large.digests()
