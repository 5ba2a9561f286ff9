"""Admission and eviction: Caffeine's W-TinyLFU, with costs as weights.

A new key enters a small LRU admission *window* (about 1% of `max_cost`).
Keys pushed out of the window become *candidates* for the *main* area, a
segmented LRU: *probation* (new arrivals, first to be evicted) and *protected*
(keys hit again while in probation, about 80% of the main area). When the
cache is full, a candidate competes with the main area's *victims* (the LRU end
of probation, then of protected): it is admitted only if the TinyLFU sketch
estimates it more frequent than every victim that must go to make room for it,
and is otherwise rejected. Recency is what the window and the SLRU track;
frequency is what admission asks, which is what resists scans.

Reads are recorded in a list and applied in batches (sketch count plus
reordering), so that a read costs one list append.

Plain synchronous code, standard library only, no I/O. Not thread-safe: the
store calls it from one trio thread.

References: G. Einziger, R. Friedman and B. Manes, "TinyLFU: A Highly
Efficient Cache Admission Policy", ACM Transactions on Storage, 2017; Ben
Manes's Caffeine (BoundedLocalCache, FrequencySketch).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterator

__all__ = ["FrequencySketch", "Policy"]

# bytearray.translate table halving every byte (every 4-bit counter lives in
# its own byte).
_HALVE = bytes(b >> 1 for b in range(256))
# Fibonacci hashing: multiplying by 2**64 / golden ratio spreads even poorly
# mixed hashes (small ints hash to themselves) over the high bits.
_MIX = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1
_COUNTER_MAX = 15
# A candidate at least this frequent is admitted against a more frequent victim
# with probability 1/128, as in Caffeine, so that an attacker who floods the
# sketch with collisions cannot make the victim unbeatable.
_HASHDOS_THRESHOLD = 6
_HASHDOS_CHANCE = 1.0 / 128
_PROTECTED_FRACTION = 0.8


class FrequencySketch:
    """Count-min sketch of 4-bit counters with a doorkeeper, aged by halving.

    `width` counters (the next power of two at least `num_counters`), one byte
    each, saturating at 15. A key maps to 4 counters by double hashing of
    `hash(key)`; its estimate is the smallest of the 4, plus 1 when the
    doorkeeper (a Bloom filter of 8 * width bits, 2 per key) holds it. The
    first increment of a key in a sample only sets its doorkeeper bits, so keys
    seen once never reach the counters. After `sample_size` (10 * width)
    increments every counter is halved and the doorkeeper cleared.

    `hash` of a str is salted per process (PYTHONHASHSEED), so estimates, and
    so the choices of the policy, may differ slightly from one run to the next.
    """

    __slots__ = ("_additions", "_door", "_door_mask", "_mask", "_table", "sample_size", "width")

    def __init__(self, num_counters: int) -> None:
        if num_counters < 1:
            raise ValueError("num_counters must be positive")
        width = max(8, 1 << (num_counters - 1).bit_length())
        self.width = width
        self.sample_size = 10 * width
        self._mask = width - 1
        self._door_mask = 8 * width - 1
        self._table = bytearray(width)
        self._door = bytearray(width)
        self._additions = 0

    def increment(self, key: object) -> None:
        """Count one occurrence of `key`."""
        h = (hash(key) * _MIX) & _MASK64
        a = h >> 32
        b = (h & _MASK32) | 1
        door = self._door
        dm = self._door_mask
        d1 = a & dm
        d2 = (a + 4 * b) & dm
        byte1, bit1 = d1 >> 3, 1 << (d1 & 7)
        byte2, bit2 = d2 >> 3, 1 << (d2 & 7)
        if door[byte1] & bit1 and door[byte2] & bit2:
            table = self._table
            m = self._mask
            for i in (a & m, (a + b) & m, (a + 2 * b) & m, (a + 3 * b) & m):
                if table[i] < _COUNTER_MAX:
                    table[i] += 1
        else:
            door[byte1] |= bit1
            door[byte2] |= bit2
        self._additions += 1
        if self._additions >= self.sample_size:
            self.halve()

    def estimate(self, key: object) -> int:
        """How often `key` was seen recently: at most 16, never an underestimate."""
        h = (hash(key) * _MIX) & _MASK64
        a = h >> 32
        b = (h & _MASK32) | 1
        table = self._table
        m = self._mask
        count = min(
            table[a & m], table[(a + b) & m], table[(a + 2 * b) & m], table[(a + 3 * b) & m]
        )
        door = self._door
        dm = self._door_mask
        d1 = a & dm
        d2 = (a + 4 * b) & dm
        if door[d1 >> 3] & (1 << (d1 & 7)) and door[d2 >> 3] & (1 << (d2 & 7)):
            count += 1
        return count

    def halve(self) -> None:
        """Age the sketch: halve every counter and the sample, clear the doorkeeper."""
        self._table = self._table.translate(_HALVE)
        self._door = bytearray(len(self._door))
        self._additions //= 2


class Policy:
    """W-TinyLFU over keys with costs; decides which keys the store keeps.

    The caller tells the policy about every key it stores (`add`), overwrites
    (`update`), reads (`record_read`) and deletes (`remove`); `add` and
    `update` return the keys the caller must delete to stay within `max_cost`.
    Invariants after every call: `used_cost <= max_cost`, every held key is in
    exactly one segment, and each segment's cost is the sum of its keys' costs.
    """

    __slots__ = (
        "_buffer_items",
        "_probation",
        "_probation_cost",
        "_protected",
        "_protected_cost",
        "_protected_max",
        "_reads",
        "_rng",
        "_sketch",
        "_window",
        "_window_cost",
        "_window_max",
        "evictions",
        "max_cost",
        "rejections",
    )

    def __init__(
        self,
        max_cost: int,
        num_counters: int,
        buffer_items: int,
        *,
        window_fraction: float = 0.01,
        seed: int | None = None,
    ) -> None:
        for name, value in (
            ("max_cost", max_cost),
            ("num_counters", num_counters),
            ("buffer_items", buffer_items),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        if not 0.0 <= window_fraction < 1.0:
            raise ValueError(f"window_fraction must be in [0, 1), not {window_fraction!r}")
        self.max_cost = max_cost
        # As Caffeine sizes it: the main area gets floor(99%), the window the rest,
        # so a cache of fewer than 100 units still has a window of 1.
        main_max = int(max_cost * (1.0 - window_fraction))
        self._window_max = max_cost - main_max
        self._protected_max = int(main_max * _PROTECTED_FRACTION)
        self._window: OrderedDict[str, int] = OrderedDict()
        self._probation: OrderedDict[str, int] = OrderedDict()
        self._protected: OrderedDict[str, int] = OrderedDict()
        self._window_cost = 0
        self._probation_cost = 0
        self._protected_cost = 0
        self._sketch = FrequencySketch(num_counters)
        self._reads: list[str] = []
        self._buffer_items = buffer_items
        self._rng = random.Random(seed)
        self.evictions = 0
        self.rejections = 0

    # -- queries ---------------------------------------------------------------

    def __contains__(self, key: str) -> bool:
        return key in self._protected or key in self._probation or key in self._window

    def __len__(self) -> int:
        return len(self._window) + len(self._probation) + len(self._protected)

    @property
    def used_cost(self) -> int:
        return self._window_cost + self._probation_cost + self._protected_cost

    # -- events from the store -------------------------------------------------

    def record_read(self, key: str) -> None:
        """A hit on `key`; buffered, applied when `buffer_items` reads are pending."""
        reads = self._reads
        reads.append(key)
        if len(reads) >= self._buffer_items:
            self._drain_reads()

    def add(self, key: str, cost: int) -> list[str]:
        """A new key of `cost`; return the keys to delete, possibly `key` itself."""
        if cost < 0:
            raise ValueError(f"cost must not be negative, not {cost!r}")
        if key in self:
            return self.update(key, cost)
        if self._reads:
            self._drain_reads()
        self._sketch.increment(key)
        if cost > self.max_cost:
            self.rejections += 1
            return [key]
        self._window[key] = cost
        self._window_cost += cost
        evicted: list[str] = []
        self._make_room(evicted, None)
        return evicted

    def update(self, key: str, cost: int) -> list[str]:
        """`key`'s cost changed (an overwrite, which counts as an access).

        Return the keys to delete: never `key` itself unless `cost > max_cost`.
        """
        if cost < 0:
            raise ValueError(f"cost must not be negative, not {cost!r}")
        if key not in self:
            return self.add(key, cost)
        if self._reads:
            self._drain_reads()
        self._sketch.increment(key)
        if cost > self.max_cost:
            self.remove(key)
            self.rejections += 1
            return [key]
        if key in self._window:
            self._window_cost += cost - self._window[key]
            self._window[key] = cost
            self._window.move_to_end(key)
        elif key in self._protected:
            self._protected_cost += cost - self._protected[key]
            self._protected[key] = cost
            self._protected.move_to_end(key)
        else:
            self._probation_cost -= self._probation.pop(key)
            self._protected[key] = cost
            self._protected_cost += cost
        self._demote_protected_overflow()
        evicted: list[str] = []
        self._make_room(evicted, key)
        return evicted

    def remove(self, key: str) -> None:
        """The caller deleted `key`; nothing happens if the policy does not hold it."""
        cost = self._probation.pop(key, None)
        if cost is not None:
            self._probation_cost -= cost
            return
        cost = self._protected.pop(key, None)
        if cost is not None:
            self._protected_cost -= cost
            return
        cost = self._window.pop(key, None)
        if cost is not None:
            self._window_cost -= cost

    def clear(self) -> None:
        """Forget every key.

        The frequency sketch is kept (pending reads are counted into it first):
        it describes the workload, not the contents, so after a flush the keys
        that were popular still win admission, as in Caffeine's invalidateAll.
        """
        if self._reads:
            self._drain_reads()
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self._window_cost = self._probation_cost = self._protected_cost = 0

    # -- internals ---------------------------------------------------------------

    def _drain_reads(self) -> None:
        """Apply the buffered reads: count each, reorder the keys still held."""
        reads = self._reads
        self._reads = []
        increment = self._sketch.increment
        window, probation, protected = self._window, self._probation, self._protected
        promoted = 0
        for key in reads:
            increment(key)
            if key in protected:
                protected.move_to_end(key)
            elif key in probation:
                cost = probation.pop(key)
                protected[key] = cost
                promoted += cost
            elif key in window:
                window.move_to_end(key)
        if promoted:
            self._probation_cost -= promoted
            self._protected_cost += promoted
            self._demote_protected_overflow()

    def _demote_protected_overflow(self) -> None:
        protected, probation = self._protected, self._probation
        while self._protected_cost > self._protected_max and protected:
            key, cost = protected.popitem(last=False)
            self._protected_cost -= cost
            probation[key] = cost
            self._probation_cost += cost

    def _make_room(self, evicted: list[str], pinned: str | None) -> None:
        """Move the window's overflow into the main area, then fit `max_cost`.

        `pinned` (the key being updated) is never evicted nor rejected.
        """
        window = self._window
        while self._window_cost > self._window_max and window:
            candidate, cost = window.popitem(last=False)
            self._window_cost -= cost
            self._admit(candidate, cost, evicted, candidate == pinned)
        # Only an update that grew a key can leave an excess here.
        excess = self.used_cost - self.max_cost
        if excess > 0:
            victims: list[str] = []
            for victim, cost in self._victims(pinned):
                victims.append(victim)
                excess -= cost
                if excess <= 0:
                    break
            for victim in victims:
                self._evict(victim, evicted)

    def _admit(self, candidate: str, cost: int, evicted: list[str], forced: bool) -> None:
        """Put a candidate leaving the window into probation, or reject it.

        When the cache lacks room, the victims that would make room are taken
        in eviction order; the candidate is admitted (and they are evicted) only
        if it is estimated more frequent than each of them. A `forced` candidate
        (the key being updated) is admitted whatever the estimates.
        """
        need = self.used_cost + cost - self.max_cost
        if need > 0:
            victims: list[str] = []
            estimate = self._sketch.estimate
            candidate_freq = estimate(candidate)
            for victim, victim_cost in self._victims(None):
                if (
                    not forced
                    and candidate_freq <= estimate(victim)
                    and (
                        candidate_freq < _HASHDOS_THRESHOLD or self._rng.random() >= _HASHDOS_CHANCE
                    )
                ):
                    self.rejections += 1
                    evicted.append(candidate)
                    return
                victims.append(victim)
                need -= victim_cost
                if need <= 0:
                    break
            for victim in victims:
                self._evict(victim, evicted)
        self._probation[candidate] = cost
        self._probation_cost += cost

    def _victims(self, pinned: str | None) -> Iterator[tuple[str, int]]:
        """Held keys and costs in eviction order: probation, protected, window, LRU first.

        Lazy; the callers stop iterating before they evict anything.
        """
        for segment in (self._probation, self._protected, self._window):
            for key, cost in segment.items():
                if key != pinned:
                    yield key, cost

    def _evict(self, victim: str, evicted: list[str]) -> None:
        self.remove(victim)
        self.evictions += 1
        evicted.append(victim)
