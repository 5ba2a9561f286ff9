"""Store micro-benchmarks: ns per get hit, get miss and set, against cachetools and a dict.

In process, no I/O. Every cache sees the same keys (24-byte keys, 100-byte
values) drawn from one seeded Zipf(1.0) stream over --keys keys:

  not full  every key fits (phoenix.store.Store with a max_cost twice what
            they cost; LRUCache/TTLCache with maxsize = --keys), and all are
            loaded first. get hit reads the stream; get miss reads the same
            stream with other keys of the same length; set overwrites.
  full      the caches hold a tenth of the keys and are warmed with a stream
            of sets. get hit / get miss read the stream's keys that the cache
            holds / does not hold at that moment (so the key mix follows each
            cache's own contents); set writes a fresh stream, so it includes
            admission and eviction.

The Store is called as the node calls it: `store.get(key)` (which records
the read for the policy) and `store.set(key, value, content_type, expires_at,
version)` with a new, greater version for every write; the set loop ends
with `store.settle_digests()`, the digest work the writes deferred (a node
does it in the background). cachetools is called as
`cache.get(key)` and `cache[key] = value`. A plain dict (unbounded: it has no
"full") is the floor. Each figure is one timed loop of --ops operations,
with the garbage collector off during the loop (as timeit does), repeated
--repeats times in rotation between the caches.

Usage: python bench/store_micro.py [--keys 100000] [--ops 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import itertools
import statistics
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any

import attrs

from hit_ratio import zipf_stream
from phoenix.clock import WallClock
from phoenix.store import Store, key_cost

cachetools: Any
try:  # a bench extra: without it only the Store and the dict run
    cachetools = importlib.import_module("cachetools")
except ImportError:
    cachetools = None

KEY_BYTES = 24
VALUE = b"v" * 100
CONTENT_TYPE = "application/octet-stream"
FULL_FRACTION = 10  # a full cache holds 1/10 of the keys
STORE = "phoenix Store"
LRU = "cachetools.LRUCache"
TTL = "cachetools.TTLCache"
DICT = "dict"
OPS = ("get hit", "get miss", "set")


@attrs.frozen
class MicroRow:
    """One cache, state and operation: ns per operation of each repeat."""

    cache: str
    state: str  # "not full" or "full"
    op: str
    ns_per_op: list[float]
    hit_fraction: list[float]  # of the get loops: 1.0 for get hit, 0.0 for get miss


def key_of(index: int, prefix: str = "key") -> str:
    key = f"{prefix}:{index:0{KEY_BYTES - len(prefix) - 1}d}"
    assert len(key) == KEY_BYTES
    return key


def cachetools_available() -> bool:
    return cachetools is not None


class Subject:
    """One cache under test, with its get and set in the loop shapes timed below."""

    def __init__(self, name: str, capacity: int | None, n_keys: int) -> None:
        self.name = name
        self.store: Store | None = None
        self.mapping: MutableMapping[str, bytes] | None = None
        self._next_version = itertools.count((WallClock().now_ms() - 60_000) << 16)
        if name == STORE:
            entries = capacity if capacity is not None else 2 * n_keys
            self.store = Store(
                max_cost=entries * key_cost(key_of(0), VALUE),
                num_counters=10 * (capacity or n_keys),
                buffer_items=64,
                clock=WallClock(),
            )
        elif name == LRU:
            self.mapping = cachetools.LRUCache(maxsize=capacity or n_keys)
        elif name == TTL:
            self.mapping = cachetools.TTLCache(maxsize=capacity or n_keys, ttl=3600)
        else:
            self.mapping = {}

    def holds(self, key: str) -> bool:
        if self.store is not None:
            return key in self.store
        assert self.mapping is not None
        return key in self.mapping

    def versions(self, count: int) -> list[tuple[int, str]]:
        return [(next(self._next_version), "bench") for _ in range(count)]

    def time_gets(self, keys: Sequence[str]) -> tuple[float, float]:
        """ns per get over `keys`, and the fraction that hit."""
        get: Callable[[str], Any]
        if self.store is not None:
            get = self.store.get
        else:
            assert self.mapping is not None
            get = self.mapping.get
        gc.disable()
        try:
            started = time.perf_counter_ns()
            for key in keys:
                get(key)
            elapsed = time.perf_counter_ns() - started
        finally:
            gc.enable()
        # Counted in a second pass, so that the timed loop is the bare call.
        found = sum(1 for key in keys if self.holds(key))
        return elapsed / len(keys), found / len(keys)

    def time_sets(self, keys: Sequence[str]) -> float:
        """ns per set over `keys` (each with a new version for the Store)."""
        pairs = list(zip(keys, self.versions(len(keys)), strict=True))
        value = VALUE
        gc.disable()
        try:
            if self.store is not None:
                store_set, content_type = self.store.set, CONTENT_TYPE
                started = time.perf_counter_ns()
                for key, version in pairs:
                    store_set(key, value, content_type, 0, version)
                self.store.settle_digests()  # the deferred part of the writes' work
                elapsed = time.perf_counter_ns() - started
            else:
                mapping = self.mapping
                assert mapping is not None
                started = time.perf_counter_ns()
                for key, _version in pairs:
                    mapping[key] = value
                elapsed = time.perf_counter_ns() - started
        finally:
            gc.enable()
        return elapsed / len(keys)


def take(keys: Iterator[str], count: int) -> list[str]:
    return list(itertools.islice(keys, count))


def run(
    *, n_keys: int = 100_000, ops: int = 200_000, repeats: int = 5, seed: int = 1
) -> list[MicroRow]:
    """Time every cache, state and operation; one row each, `repeats` samples per row."""
    names = [STORE, *([LRU, TTL] if cachetools is not None else []), DICT]
    keys = [key_of(i) for i in range(n_keys)]
    absent = {key: key_of(i, "mis") for i, key in enumerate(keys)}
    stream = [keys[int(k[1:])] for k in zipf_stream(1.0, n_keys, ops, seed)]
    miss_stream = [absent[key] for key in stream]
    samples: dict[tuple[str, str, str], tuple[list[float], list[float]]] = {}

    def record(name: str, state: str, op: str, ns: float, hit: float) -> None:
        times, hits = samples.setdefault((name, state, op), ([], []))
        times.append(ns)
        hits.append(hit)

    # not full: everything loaded, the same streams every repeat.
    subjects = {name: Subject(name, None, n_keys) for name in names}
    for subject in subjects.values():
        subject.time_sets(keys)
    for _ in range(repeats):
        for name, subject in subjects.items():
            record(name, "not full", "get hit", *subject.time_gets(stream))
            record(name, "not full", "get miss", *subject.time_gets(miss_stream))
            record(name, "not full", "set", subject.time_sets(stream), float("nan"))

    # full: a tenth of the keys held; the hit and miss keys follow each cache's contents.
    capacity = max(1, n_keys // FULL_FRACTION)
    subjects = {name: Subject(name, capacity, n_keys) for name in names if name != DICT}
    warm = [keys[int(k[1:])] for k in zipf_stream(1.0, n_keys, ops, seed + 1)]
    fresh = itertools.cycle([keys[int(k[1:])] for k in zipf_stream(1.0, n_keys, ops, seed + 2)])
    for subject in subjects.values():
        subject.time_sets(warm)
    for _ in range(repeats):
        writes = take(fresh, ops)
        for name, subject in subjects.items():
            held: list[str] = []
            missing: list[str] = []
            for key in stream:
                (held if subject.holds(key) else missing).append(key)
            for op, chosen in (("get hit", held), ("get miss", missing)):
                if chosen:
                    record(name, "full", op, *subject.time_gets(take(itertools.cycle(chosen), ops)))
            record(name, "full", "set", subject.time_sets(writes), float("nan"))

    return [
        MicroRow(name, state, op, times, hits)
        for (name, state, op), (times, hits) in samples.items()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--ops", type=int, default=200_000, help="operations per timed loop")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if cachetools is None:
        print("(cachetools is not installed: pip install -e '.[bench]')")
    rows = run(n_keys=args.keys, ops=args.ops, repeats=args.repeats, seed=args.seed)
    lru = {(r.state, r.op): statistics.median(r.ns_per_op) for r in rows if r.cache == LRU}
    print(f"{'cache':<22}{'state':<10}{'op':<10}{'ns/op':>9}{'min':>9}{'max':>9}{'/LRU':>7}")
    for row in rows:
        median = statistics.median(row.ns_per_op)
        base = lru.get((row.state, row.op))
        ratio = f"{median / base:>7.2f}" if base else f"{'':>7}"
        print(
            f"{row.cache:<22}{row.state:<10}{row.op:<10}{median:>9.0f}"
            f"{min(row.ns_per_op):>9.0f}{max(row.ns_per_op):>9.0f}{ratio}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
