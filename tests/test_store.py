from __future__ import annotations

import gc
import hashlib
import itertools
import sys
import tracemalloc

import pytest

from phoenix.clock import LOGICAL_BITS, FakeClock, Version
from phoenix.store import (
    BUCKET_COUNT,
    ENTRY_OVERHEAD,
    MAX_SHARED_TYPE_LENGTH,
    MAX_SHARED_TYPES,
    NO_EXPIRY,
    Store,
    fingerprint,
    key_cost,
)

_counter = itertools.count(1)


def v() -> Version:
    """A fresh version, greater than every one before, at FakeClock's start time."""
    return ((FakeClock().now << LOGICAL_BITS) + next(_counter), "n1")


def make_store(max_cost: int = 10_000_000, clock: FakeClock | None = None) -> Store:
    return Store(max_cost=max_cost, num_counters=10_000, buffer_items=8, clock=clock or FakeClock())


def test_set_then_get_returns_value_and_content_type() -> None:
    store = make_store()
    assert store.set("k", b"v", "text/plain", NO_EXPIRY, v())
    entry = store.get("k")
    assert entry is not None
    assert (entry.value, entry.content_type) == (b"v", "text/plain")


def test_content_types_beyond_the_shared_ones_count_in_the_cost() -> None:
    store = make_store()
    # A write with a new type each time, as a hostile client might send.
    for number in range(3 * MAX_SHARED_TYPES):
        store.set("k", b"v", f"text/x-{number}", NO_EXPIRY, v())
    assert len(store._interned_types) == MAX_SHARED_TYPES  # the table stops growing
    kept = f"text/x-{3 * MAX_SHARED_TYPES - 1}"
    assert store.get("k").content_type == kept  # type: ignore[union-attr]
    assert store.used_cost == key_cost("k", b"v") + len(kept)
    store.set("k", b"v", "text/x-0", NO_EXPIRY, v())  # shared: costs nothing more
    assert store.used_cost == key_cost("k", b"v")
    long_type = "text/" + "x" * MAX_SHARED_TYPE_LENGTH
    store.set("long", b"v", long_type, NO_EXPIRY, v())
    assert store.used_cost == key_cost("k", b"v") + key_cost("long", b"v") + len(long_type)


def test_expired_entry_is_never_returned_even_before_a_drain() -> None:
    clock = FakeClock()
    store = make_store(clock=clock)
    store.set("k", b"v", "t", clock.now_ms() + 1500, v())
    clock.advance(1.499)
    assert store.get("k") is not None
    clock.advance(0.001)
    assert store.get("k") is None
    assert len(store) == 0


def test_drain_removes_only_due_keys() -> None:
    clock = FakeClock(now=1_000_000)
    store = make_store(clock=clock)
    store.set("soon", b"v", "t", clock.now_ms() + 2_000, v())
    store.set("later", b"v", "t", clock.now_ms() + 60_000, v())
    store.set("never", b"v", "t", NO_EXPIRY, v())
    clock.advance(3)
    assert store.expire_due() == 1
    assert len(store) == 2
    assert store.stats.expirations == 1
    clock.advance(60)
    assert store.expire_due() == 1
    assert [key for key, _ in store.items()] == ["never"]


def test_drain_examines_only_the_keys_that_expire() -> None:
    clock = FakeClock(now=1_000_000)
    store = make_store(clock=clock)
    for i in range(1000):
        store.set(f"forever{i}", b"v", "t", NO_EXPIRY, v())
        store.set(f"hour{i}", b"v", "t", clock.now_ms() + 3_600_000, v())
    store.set("due", b"v", "t", clock.now_ms() + 1000, v())
    clock.advance(5)
    # Only one expiry bucket is due, holding one key.
    assert store._expiry_heap[0] == (1_000_000 + 1000) // 1000
    assert store.expire_due() == 1
    assert len(store._expiring) == 1


def test_overwrite_moves_the_deadline() -> None:
    clock = FakeClock(now=1_000_000)
    store = make_store(clock=clock)
    store.set("k", b"v", "t", clock.now_ms() + 1000, v())
    store.set("k", b"w", "t", NO_EXPIRY, v())
    clock.advance(10)
    assert store.expire_due() == 0
    entry = store.get("k")
    assert entry is not None and entry.value == b"w"


def test_remove_and_flush() -> None:
    store = make_store()
    store.set("a", b"1", "t", NO_EXPIRY, v())
    store.set("b", b"2", "t", NO_EXPIRY, v())
    assert store.remove("a", v())
    assert not store.remove("a", v())
    assert store.get("a") is None
    store.flush(v())
    assert len(store) == 0
    assert store.used_cost == 0
    assert list(store.items()) == []


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("user", ["user:1", "user:2", "xuser"]),
        ("user:*", ["user:1", "user:2"]),
        ("user:?", ["user:1", "user:2"]),
        ("[ux]*", ["user:1", "user:2", "xuser"]),
        ("nothing", []),
    ],
)
def test_remove_matching_uses_substring_or_glob(pattern: str, expected: list[str]) -> None:
    store = make_store()
    for key in ["user:1", "user:2", "xuser", "order:1"]:
        store.set(key, b"v", "t", NO_EXPIRY, v())
    assert sorted(store.remove_matching(pattern, v())) == expected
    assert all(store.get(key) is None for key in expected)
    assert len(store) == 4 - len(expected)


def test_pattern_removals_keep_older_writes_to_their_keys_out_for_the_grace() -> None:
    clock = FakeClock()
    store = Store(max_cost=10**6, num_counters=1000, buffer_items=8, clock=clock)
    before_users, before_orders = v(), v()
    store.remove_matching("user:*", v())
    between = v()
    store.remove_matching("order:*", v())
    assert not store.set("user:1", b"late", "t", NO_EXPIRY, before_users)
    assert store.set("user:2", b"newer", "t", NO_EXPIRY, between)
    assert not store.set("order:1", b"late", "t", NO_EXPIRY, before_orders)
    assert not store.set("order:2", b"late", "t", NO_EXPIRY, between)
    assert store.set("order:3", b"new", "t", NO_EXPIRY, v())
    clock.advance(store.tombstone_grace_ms / 1000 + 1)
    store.expire_due()
    assert store.pattern_removals == {}
    assert store.set("order:2", b"late", "t", NO_EXPIRY, between)


def test_cost_budget_is_never_exceeded() -> None:
    store = make_store(max_cost=50 * (ENTRY_OVERHEAD + 110))
    for i in range(1000):
        store.set(f"key{i:05}", b"x" * 100, "t", NO_EXPIRY, v())
        assert store.used_cost <= store.max_cost
    assert 0 < len(store) <= 50
    assert store.evictions + store.rejections == 1000 - len(store)


def test_value_larger_than_the_budget_is_not_admitted() -> None:
    store = make_store(max_cost=1000)
    assert not store.set("big", b"x" * 2000, "t", NO_EXPIRY, v())
    assert store.get("big") is None
    assert store.used_cost == 0


def test_scan_pages_return_every_key_once() -> None:
    store = make_store()
    keys = {f"k{i}" for i in range(5000)}
    for key in keys:
        store.set(key, b"v", "t", NO_EXPIRY, v())
    seen: list[str] = []
    cursor, pages = 0, 0
    while True:
        page, cursor = store.scan(cursor, 100)
        seen.extend(key for key, _ in page)
        pages += 1
        if cursor == 0:
            break
    assert sorted(seen) == sorted(keys)
    assert pages <= BUCKET_COUNT


def test_scan_survives_writes_between_pages() -> None:
    store = make_store()
    for i in range(1000):
        store.set(f"stable{i}", b"v", "t", NO_EXPIRY, v())
    seen: set[str] = set()
    cursor, step = 0, 0
    while True:
        page, cursor = store.scan(cursor, 50)
        seen.update(key for key, _ in page)
        store.set(f"new{step}", b"v", "t", NO_EXPIRY, v())
        store.remove(f"new{step - 1}", v())
        step += 1
        if cursor == 0:
            break
    assert {f"stable{i}" for i in range(1000)} <= seen


def test_fingerprint_is_blake2b_of_key_and_version() -> None:
    # Replicas compare digests built from it: it must not change between releases.
    data = "ké\x00123\x00n1".encode()
    expected = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
    assert fingerprint("ké", (123, "n1")) == expected
    assert fingerprint("ké", (123, "n1")) == expected  # the shared hasher is not consumed


def test_key_cost_counts_utf8_bytes() -> None:
    assert key_cost("ab", b"xyz") == 5 + ENTRY_OVERHEAD
    assert key_cost("é", b"") == 2 + ENTRY_OVERHEAD


def test_entry_overhead_is_measured() -> None:
    """ENTRY_OVERHEAD must stay close to what an entry really costs in memory."""
    count = 20_000
    keys = [f"key-{i:020}" for i in range(count)]
    values = [b"v" * 100 for _ in range(count)]
    store = make_store(max_cost=10**12)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for key, value in zip(keys, values, strict=True):
        store.set(key, value, "application/octet-stream", NO_EXPIRY, v())
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    # Keys and values already existed: what the store added, plus the object
    # headers of a key and a value that their lengths do not count.
    headers = sys.getsizeof(keys[0]) - len(keys[0]) + sys.getsizeof(values[0]) - len(values[0])
    measured = (after - before) / count + headers
    assert ENTRY_OVERHEAD * 0.6 <= measured <= ENTRY_OVERHEAD * 1.4, measured


def test_entries_let_go_are_freed_without_the_garbage_collector() -> None:
    # A cycle left behind (an entry pointing at itself) would be freed only by
    # the collector's passes over the whole heap, long after its cost was let go.
    gc.collect()
    gc.disable()
    try:
        store = Store(
            max_cost=4 * ENTRY_OVERHEAD, num_counters=100, buffer_items=4, clock=FakeClock()
        )
        for i in range(50):  # evictions and refusals
            store.set(f"k{i}", b"v", "t", NO_EXPIRY, (10 + i, "n1"))
        for i in range(50):
            store.remove(f"k{i}", (100 + i, "n1"))
        store.flush((1000, "n1"))
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_hits_count_reads_only() -> None:
    store = make_store()
    for stamp in range(1, 6):  # a write and four overwrites, as a replica applies them
        store.set("k", b"v", "t", NO_EXPIRY, (stamp, "n1"))
    assert store.stats.hits == 0
    store.get("k")
    store.get("missing")
    assert (store.stats.hits, store.stats.misses, store.stats.sets) == (1, 1, 5)


def test_a_key_that_expires_again_and_again_holds_one_tombstone_and_little_else() -> None:
    # An expired write leaves a tombstone; writing the key again dropped it
    # but left its place in the purge heap: one more per expiry, for the grace.
    clock = FakeClock()
    store = make_store(clock=clock)
    for _ in range(5000):
        store.set("lock", b"held", "t", clock.now + 500, ((clock.now << LOGICAL_BITS), "n1"))
        clock.advance(1)
        store.expire_due()
    assert store.tombstone_count == 1
    assert len(store._tombstone_heap) <= 1024 + 2
