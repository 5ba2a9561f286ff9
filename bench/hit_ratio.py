"""Hit ratios of phoenix.policy against LRU, the online bound and Belady's optimum.

Every key costs 1, so a cache's capacity is a number of entries. An access is
a hit when the cache holds the key; a miss otherwise, after which the key is
offered to the cache (the policy may refuse it). Belady's optimum (MIN, with
bypass: a missed key whose next use is farther than every held key's is not
kept) is computed from next-use indices and a heap; no policy can do better,
but MIN reads the future.

The online bound (A0), for the Zipf streams only: a Zipf stream is a sequence
of independent draws from fixed key probabilities (the independent reference
model). An online policy decides what it holds before the next key is drawn,
so that access hits with the summed probability of the held keys, at most the
sum of the `capacity` largest; the policy that holds the most probable keys
(A0, a perfect LFU that knows the probabilities) reaches that sum, and no
online policy has a higher expected hit ratio: A. V. Aho, P. J. Denning and
J. D. Ullman, "Principles of Optimal Page Replacement", J. ACM 18(1), 1971,
pp. 80-93. "A0" is that policy run on the same stream from an empty cache,
like the others (it holds the most probable keys among those seen so far,
which is the best an online policy can hold at every step, first accesses
included); "A0 exp." is its long-run expectation, the sum of the `capacity`
largest probabilities (no cold start). The scan+hot stream and the traces are
not independent draws, so they have no such bound.

The exact LFU ("LFU exact"), for the Zipf streams too: where A0 knows the
probabilities, it knows what an online policy can learn of them from the
stream, every key's exact count so far (no sketch, no aging, no memory
limit), and keeps a missed key when it is counted more often than the least
counted key held. It is not a bound, but it shows how much of the way from
the optimum to A0 is the cost of learning the frequencies.

Streams:
  zipf-S      seeded Zipf(s=S) over --keys keys
  scan+hot    a loop over 4x the capacity, each step followed by a hot access
              (Zipf 1.0 over a hot set half the capacity)
  trace       an ARC ".lis" trace (gzip or plain): each line
              `start_block num_blocks ignored request_no` stands for num_blocks
              consecutive keys starting at start_block.

The OLTP trace (../shared/traces/OLTP.lis.gz beside the checkout, used by
default when it exists) is from N. Megiddo and D. S. Modha, "ARC: A
Self-Tuning, Low Overhead Replacement Cache", USENIX FAST 2003; cite that
paper wherever results on it are published.

The policy runs with num_counters = 8 x capacity (--counters-per-entry), so
for 2,000 entries the sketch is halved every 163,840 accesses (10 x 16,384)
and has 4 x 16,384 counters; with 10 x it would be halved twice as rarely,
which cost about half a point on OLTP. The "policy" column adapts the window (the
default); "static1%" keeps it at 1%. The policy's sketch hashes with Python's
salted str hash: set PYTHONHASHSEED to repeat a run exactly (figures move by
a few tenths of a point from one seed to another).

Usage: python bench/hit_ratio.py [--trace PATH] [--trace-capacities 1000,2000]

From Python (bench/run.py does this), `run(...)` returns the rows instead.
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import itertools
import json
import math
import random
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from phoenix.policy import Policy

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRACE = REPO_ROOT.parent / "shared" / "traces" / "OLTP.lis.gz"


# -- streams ------------------------------------------------------------------


class ZipfModel(NamedTuple):
    """A Zipf stream and the law it was drawn from, most probable key first."""

    keys_by_rank: list[str]
    probabilities: list[float]  # of keys_by_rank, descending
    stream: list[str]


def zipf_model(s: float, n_keys: int, length: int, seed: int) -> ZipfModel:
    """`length` accesses to keys "k0".."k{n_keys-1}", key of rank r with weight 1/r**s."""
    rng = random.Random(seed)
    keys = [f"k{i}" for i in range(n_keys)]
    rng.shuffle(keys)
    weights = [1.0 / (rank**s) for rank in range(1, n_keys + 1)]
    cum_weights = list(itertools.accumulate(weights))
    stream = rng.choices(keys, cum_weights=cum_weights, k=length)
    total = cum_weights[-1]
    return ZipfModel(keys, [w / total for w in weights], stream)


def zipf_stream(s: float, n_keys: int, length: int, seed: int) -> list[str]:
    """The accesses of `zipf_model` alone."""
    return zipf_model(s, n_keys, length, seed).stream


def scan_hot_stream(capacity: int, length: int, seed: int) -> list[str]:
    """A loop over 4 * capacity keys interleaved with Zipf(1.0) hits on capacity/2 hot keys."""
    hot = zipf_stream(1.0, max(1, capacity // 2), length // 2, seed)
    loop = itertools.cycle([f"scan{i}" for i in range(4 * capacity)])
    out: list[str] = []
    for hot_key in hot:
        out.append(next(loop))
        out.append(f"hot-{hot_key}")
    return out


def read_lis_trace(path: Path, limit: int | None = None) -> list[str]:
    """The keys of an ARC .lis trace (gzip when the name ends in .gz)."""
    opener = gzip.open if path.suffix == ".gz" else open
    names: dict[int, str] = {}
    out: list[str] = []
    with opener(path, "rt") as lines:
        for line in lines:
            fields = line.split()
            if len(fields) < 2:
                continue
            start, count = int(fields[0]), int(fields[1])
            for block in range(start, start + count):
                name = names.get(block)
                if name is None:
                    name = names[block] = str(block)
                out.append(name)
            if limit is not None and len(out) >= limit:
                return out[:limit]
    return out


# -- caches ---------------------------------------------------------------------


def policy_hit_ratio(
    stream: Sequence[str],
    capacity: int,
    *,
    counters_per_entry: int = 8,
    buffer_items: int = 64,
    seed: int = 0,
    adaptive: bool = True,
) -> float:
    policy = Policy(
        capacity, counters_per_entry * capacity, buffer_items, seed=seed, adaptive=adaptive
    )
    hits = 0
    contains = policy.__contains__
    read = policy.record_read
    add = policy.add
    for key in stream:
        if contains(key):
            hits += 1
            read(key)
        else:
            add(key, 1)
    return hits / max(1, len(stream))


def lru_hit_ratio(stream: Sequence[str], capacity: int) -> float:
    cache: OrderedDict[str, None] = OrderedDict()
    hits = 0
    for key in stream:
        if key in cache:
            hits += 1
            cache.move_to_end(key)
        else:
            cache[key] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits / max(1, len(stream))


def belady_hit_ratio(stream: Sequence[str], capacity: int) -> float:
    """Belady's MIN with bypass: evict (or do not keep) the key used farthest ahead."""
    never = len(stream)
    next_use = [never] * len(stream)
    seen: dict[str, int] = {}
    for i in range(len(stream) - 1, -1, -1):
        key = stream[i]
        next_use[i] = seen.get(key, never)
        seen[key] = i
    held: dict[str, int] = {}  # key -> its next use
    heap: list[tuple[int, str]] = []  # (-next use, key); stale entries skipped lazily
    hits = 0
    for i, key in enumerate(stream):
        upcoming = next_use[i]
        if key in held:
            hits += 1
        elif len(held) >= capacity:
            while -heap[0][0] != held.get(heap[0][1]):
                heapq.heappop(heap)
            farthest = -heap[0][0]
            if upcoming >= farthest:
                continue  # bypass: keeping this key cannot beat keeping the others
            del held[heapq.heappop(heap)[1]]
        if upcoming == never:
            held.pop(key, None)
            continue
        held[key] = upcoming
        heapq.heappush(heap, (-upcoming, key))
    return hits / max(1, len(stream))


def keep_most_valued(stream: Sequence[str], capacity: int, value_of: Callable[[str], int]) -> float:
    """The hit ratio of a cache that, on demand from empty, holds the most valued keys seen.

    `value_of(key)` is asked at each access of the key. A missed key is kept
    when the cache has room or it is valued more than the least valued key
    held (which is evicted); otherwise it is not kept.
    """
    held: dict[str, int] = {}  # key -> its value when last asked
    heap: list[tuple[int, str]] = []  # (value, key): least valued first; stale ones skipped
    hits = 0
    for key in stream:
        value = value_of(key)
        if key in held:
            hits += 1
            if held[key] == value:
                continue
        elif len(held) >= capacity:
            while held.get(heap[0][1]) != heap[0][0]:
                heapq.heappop(heap)
            if value <= heap[0][0]:
                continue
            del held[heapq.heappop(heap)[1]]
        held[key] = value
        heapq.heappush(heap, (value, key))
    return hits / max(1, len(stream))


def a0_hit_ratio(stream: Sequence[str], keys_by_rank: Sequence[str], capacity: int) -> float:
    """A0 on demand, from an empty cache: hold the most probable keys seen so far.

    The cache thus holds the `capacity` most probable keys among those seen,
    which maximizes the chance that each next access hits.
    """
    rank = {key: index for index, key in enumerate(keys_by_rank)}
    return keep_most_valued(stream, capacity, lambda key: -rank[key])


def exact_lfu_hit_ratio(stream: Sequence[str], capacity: int) -> float:
    """An LFU that counts every access since the start exactly, without a memory limit.

    Where A0 knows the true probabilities, this knows what an online policy can
    learn of them, each key's count so far, without a sketch's errors or aging.
    """
    counts: dict[str, int] = {}

    def counted(key: str) -> int:
        counts[key] = count = counts.get(key, 0) + 1
        return count

    return keep_most_valued(stream, capacity, counted)


def online_bound(model: ZipfModel, capacity: int) -> tuple[float, float]:
    """A0 on the model's stream, and its long-run expectation (the top `capacity` probabilities).

    Under the independent reference model no online policy's expected hit
    ratio exceeds A0's (Aho, Denning and Ullman, J. ACM 1971).
    """
    measured = a0_hit_ratio(model.stream, model.keys_by_rank, capacity)
    return measured, math.fsum(model.probabilities[:capacity])


# -- the table ------------------------------------------------------------------


class HitRow(NamedTuple):
    """Hit ratios (0..1) of one stream at one capacity; seconds is the policy's run.

    `online` and `online_expected` are the A0 bound measured on the stream and
    its expectation, and `exact_lfu` that LFU's hit ratio, for the Zipf
    streams (None for the others).
    """

    stream: str
    accesses: int
    capacity: int
    policy: float
    static: float
    lru: float
    optimal: float
    seconds: float
    online: float | None = None
    online_expected: float | None = None
    exact_lfu: float | None = None


HEADER = (
    f"{'stream':<10} {'accesses':>9} {'capacity':>8} {'policy':>9} {'static1%':>9} "
    f"{'LRU':>9} {'LFU exact':>9} {'A0':>9} {'A0 exp.':>9} {'optimal':>9} {'time':>8}"
)


def _percent(ratio: float | None) -> str:
    return f"{'-':>9}" if ratio is None else f"{100 * ratio:>8.2f}%"


def print_row(row: HitRow) -> None:
    print(
        f"{row.stream:<10} {row.accesses:>9,} {row.capacity:>8,} {_percent(row.policy)} "
        f"{_percent(row.static)} {_percent(row.lru)} {_percent(row.exact_lfu)} "
        f"{_percent(row.online)} "
        f"{_percent(row.online_expected)} {_percent(row.optimal)} {row.seconds:>7.1f}s",
        flush=True,
    )


def measure(
    name: str,
    stream: Sequence[str],
    capacities: Sequence[int],
    policy_run: Callable[[Sequence[str], int, bool], float],
    show: Callable[[HitRow], None] | None = None,
    model: ZipfModel | None = None,
) -> list[HitRow]:
    """One row per capacity; with the stream's `model`, A0 and the exact LFU too."""
    rows = []
    for capacity in capacities:
        started = time.perf_counter()
        ours = policy_run(stream, capacity, True)
        elapsed = time.perf_counter() - started
        static = policy_run(stream, capacity, False)
        lru = lru_hit_ratio(stream, capacity)
        opt = belady_hit_ratio(stream, capacity)
        online, expected, lfu = None, None, None
        if model is not None:
            online, expected = online_bound(model, capacity)
            lfu = exact_lfu_hit_ratio(stream, capacity)
        row = HitRow(
            name, len(stream), capacity, ours, static, lru, opt, elapsed, online, expected, lfu
        )
        if show is not None:
            show(row)
        rows.append(row)
    return rows


def run(
    *,
    synthetic: bool = True,
    length: int = 200_000,
    keys: int = 10_000,
    capacities: Sequence[int] = (100, 1000),
    trace: Path | None = None,
    trace_capacities: Sequence[int] = (1000, 2000, 5000),
    trace_limit: int | None = None,
    counters_per_entry: int = 8,
    buffer_items: int = 64,
    seed: int = 1,
    show: Callable[[HitRow], None] | None = None,
) -> list[HitRow]:
    """The rows of the table: the synthetic streams (unless not), then `trace` if given.

    `show` is called with each row as soon as it is measured.
    """

    def policy_run(stream: Sequence[str], capacity: int, adaptive: bool) -> float:
        return policy_hit_ratio(
            stream,
            capacity,
            counters_per_entry=counters_per_entry,
            buffer_items=buffer_items,
            seed=seed,
            adaptive=adaptive,
        )

    rows: list[HitRow] = []
    if synthetic:
        for s in (0.8, 1.0, 1.2):
            model = zipf_model(s, keys, length, seed)
            rows += measure(f"zipf-{s}", model.stream, capacities, policy_run, show, model)
        for capacity in capacities:
            stream = scan_hot_stream(capacity, length, seed)
            rows += measure("scan+hot", stream, [capacity], policy_run, show)
    if trace is not None:
        stream = read_lis_trace(trace, trace_limit)
        rows += measure(trace.name.split(".")[0], stream, trace_capacities, policy_run, show)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trace",
        type=Path,
        default=None,
        help=f"ARC .lis trace (default {DEFAULT_TRACE} if present)",
    )
    parser.add_argument(
        "--trace-capacities", default="1000,2000,5000", help="comma-separated entry counts"
    )
    parser.add_argument(
        "--trace-limit", type=int, default=None, help="use only the first N accesses"
    )
    parser.add_argument("--no-synthetic", action="store_true", help="only the trace")
    parser.add_argument("--length", type=int, default=200_000, help="synthetic stream length")
    parser.add_argument("--keys", type=int, default=10_000, help="keys in the Zipf streams")
    parser.add_argument("--capacities", default="100,1000", help="capacities for the Zipf streams")
    parser.add_argument(
        "--counters-per-entry", type=int, default=8, help="num_counters = this x capacity"
    )
    parser.add_argument("--buffer-items", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args(argv)

    trace = args.trace
    if trace is None and DEFAULT_TRACE.exists():
        trace = DEFAULT_TRACE
    if not args.json:
        print(HEADER)
    run(
        synthetic=not args.no_synthetic,
        length=args.length,
        keys=args.keys,
        capacities=[int(c) for c in args.capacities.split(",")],
        trace=trace,
        trace_capacities=[int(c) for c in args.trace_capacities.split(",")],
        trace_limit=args.trace_limit,
        counters_per_entry=args.counters_per_entry,
        buffer_items=args.buffer_items,
        seed=args.seed,
        show=(lambda row: print(json.dumps(row._asdict()))) if args.json else print_row,
    )
    if trace is None:
        print("(no trace: pass --trace PATH)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
