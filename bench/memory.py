"""Bytes per entry: how much the process's resident memory grows per entry held.

Run in a fresh process (bench/run.py starts one per measurement): build the
empty container, read the resident set size from /proc/self/statm, insert
--entries entries of 24-byte keys and 100-byte values (distinct objects, made
in the loop), collect garbage, read it again. Growth / entries is the figure;
it includes the key and value objects themselves, so a plain dict holding the
same keys and values is the floor to compare with.

  store  phoenix.store.Store with max_cost large enough to hold every entry
         (nothing evicted), each set with its own version, as a node stores
         a write. The policy's sketch (num_counters) is allocated with the
         empty store, before the first reading: it is a fixed cost, not a
         per-entry one.
  dict   {key: value}.

Linux only (/proc). Prints one JSON object.

Usage: python bench/memory.py store --entries 1000000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from phoenix.clock import WallClock
from phoenix.store import ENTRY_OVERHEAD, Store, key_cost

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
KEY_BYTES = 24
VALUE_BYTES = 100
CONTENT_TYPE = "application/octet-stream"
KINDS = ("store", "dict")


def rss_bytes() -> int:
    """The resident set size of this process (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


def measure(kind: str, entries: int, num_counters: int = 1_000_000) -> dict[str, Any]:
    """RSS growth per entry for `entries` entries in a `kind` container."""
    sample_key = f"key:{0:020d}"
    sample_value = b"%0100d" % 0
    assert len(sample_key) == KEY_BYTES and len(sample_value) == VALUE_BYTES
    node_id = "bench"
    base = (WallClock().now_ms() - 60_000) << 16
    store: Store | None = None
    mapping: dict[str, bytes] | None = None
    if kind == "store":
        store = Store(
            max_cost=2 * entries * key_cost(sample_key, sample_value),
            num_counters=num_counters,
            buffer_items=64,
            clock=WallClock(),
        )
    else:
        mapping = {}
    gc.collect()
    before = rss_bytes()
    if store is not None:
        store_set = store.set
        for i in range(entries):
            store_set(f"key:{i:020d}", b"%0100d" % i, CONTENT_TYPE, 0, (base + i, node_id))
        assert len(store) == entries, "the store evicted entries: raise max_cost"
        store.settle_digests()  # as a node does within a second
    else:
        assert mapping is not None
        for i in range(entries):
            mapping[f"key:{i:020d}"] = b"%0100d" % i
    gc.collect()
    after = rss_bytes()
    return {
        "kind": kind,
        "entries": entries,
        "key_bytes": KEY_BYTES,
        "value_bytes": VALUE_BYTES,
        "rss_before": before,
        "rss_after": after,
        "bytes_per_entry": (after - before) / entries,
        "charged_per_entry": key_cost(sample_key, sample_value) if kind == "store" else None,
        "entry_overhead_constant": ENTRY_OVERHEAD,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--num-counters", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    json.dump(measure(args.kind, args.entries, args.num_counters), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
