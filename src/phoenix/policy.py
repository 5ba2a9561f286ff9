"""Admission and eviction: Caffeine's W-TinyLFU, with costs as weights.

A new key enters a small LRU admission *window* (about 1% of `max_cost`).
Keys pushed out of the window become *candidates* for the *main* area, a
segmented LRU: *probation* (new arrivals, first to be evicted) and *protected*
(keys hit again while in probation, about 80% of the main area). When the
cache is full, a candidate competes with the main area's *victims* (the LRU end
of probation, then of protected): it is admitted only if the TinyLFU sketch
estimates it more frequent than every victim that must go to make room for it,
and is rejected otherwise. The window and the segments track recency; the
sketch tracks frequency, and asking it before admitting is what resists scans.

The window's share of `max_cost` adapts as in Caffeine: a hill climber
compares the hit ratio of consecutive samples and keeps moving budget in the
direction that helped (recency-heavy workloads get a larger window, frequency-
heavy ones a smaller). It starts at `window_fraction`.

Reads are recorded in a list and applied in batches (sketch count plus
reordering), so that a read costs one list append. The pending reads are also
applied before every write, so batching changes no decision.

Plain synchronous code, standard library only, no I/O; not thread-safe (the
store calls it from the trio thread).

References: G. Einziger, R. Friedman and B. Manes, "TinyLFU: A Highly
Efficient Cache Admission Policy", ACM Transactions on Storage 13(4), 2017;
G. Einziger, O. Eytan, R. Friedman and B. Manes, "Adaptive Software Cache
Management", Middleware 2018; Ben Manes's Caffeine (BoundedLocalCache,
FrequencySketch).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterator

__all__ = ["FrequencySketch", "Policy"]

# A bytearray.translate table that halves every byte (each 4-bit counter has a
# byte of its own).
_HALVE = bytes(b >> 1 for b in range(256))
_COUNTER_MAX = 15

_PROTECTED_FRACTION = 0.8
# A candidate at least this frequent beats a victim at least as frequent with
# probability 1/128, as in Caffeine, so that flooding the sketch with colliding
# keys cannot make the victims unbeatable.
_HASHDOS_THRESHOLD = 6
_HASHDOS_CHANCE = 1.0 / 128

# The hill climber, after Caffeine: a sample is 10 requests (reads of held keys
# plus adds) per held key, at least _MIN_SAMPLE. The first step moves 6.25% of
# max_cost, out of the window (it is already small, so a frequency-heavy
# workload loses nothing); each later step is 98% of the one before, and a
# change of 5 points or more in the hit ratio (the workload changed) restarts
# the full step. Unlike Caffeine, a change within _NOISE_SIGMAS standard
# errors of sampling noise moves nothing: on a steady workload the window then
# stays where it is instead of wandering.
_STEP_FRACTION = 0.0625
_STEP_DECAY = 0.98
_RESTART_THRESHOLD = 0.05
_NOISE_SIGMAS = 2.0
_SAMPLE_PER_KEY = 10
_MIN_SAMPLE = 1000
# At most this many keys change segment in one adjustment.
_TRANSFER_LIMIT = 1000


class FrequencySketch:
    """Count-min sketch of 4-bit counters with a doorkeeper, aged by halving.

    `width` counters (the next power of two at least `num_counters`, at least
    8), one byte each, saturating at 15. A key maps to 4 counters by double
    hashing of `hash(key)`; its estimate is the smallest of the 4, plus 1 when
    the doorkeeper (a Bloom filter of 8 * width bits, 2 per key) holds it. The
    first increment of a key in a sample only sets its doorkeeper bits, so keys
    seen once never reach the counters; later increments raise only the key's
    smallest counters (conservative update). After `sample_size` (10 * width)
    increments every counter is halved, as is the count of increments, and
    the doorkeeper is cleared.

    `hash` of a str is salted per process (PYTHONHASHSEED), so collisions, and
    so a few of the policy's choices, differ from one process to the next.
    """

    __slots__ = ("_additions", "_door", "_door_mask", "_mask", "_table", "sample_size", "width")

    def __init__(self, num_counters: int) -> None:
        if num_counters < 1:
            raise ValueError(f"num_counters must be positive, not {num_counters!r}")
        width = max(8, 1 << (num_counters - 1).bit_length())
        self.width = width
        self.sample_size = 10 * width
        self._mask = width - 1
        self._door_mask = 8 * width - 1
        self._table = bytearray(width)
        self._door = bytearray(width)
        self._additions = 0

    def increment(self, key: str) -> None:
        """Count one occurrence of `key`."""
        h = hash(key)
        a = h >> 32
        b = h | 1  # odd: the 4 positions differ
        door = self._door
        d1 = a & self._door_mask
        d2 = (a + 4 * b) & self._door_mask
        byte1, bit1 = d1 >> 3, 1 << (d1 & 7)
        byte2, bit2 = d2 >> 3, 1 << (d2 & 7)
        if door[byte1] & bit1 and door[byte2] & bit2:
            # Conservative update: raise only the counters at the key's minimum
            # (the others already count some colliding key too).
            table = self._table
            m = self._mask
            i0, i1, i2, i3 = a & m, (a + b) & m, (a + 2 * b) & m, (a + 3 * b) & m
            c0, c1, c2, c3 = table[i0], table[i1], table[i2], table[i3]
            low = c0 if c0 < c1 else c1
            if c2 < low:
                low = c2
            if c3 < low:
                low = c3
            if low < _COUNTER_MAX:
                low += 1
                if c0 < low:
                    table[i0] = low
                if c1 < low:
                    table[i1] = low
                if c2 < low:
                    table[i2] = low
                if c3 < low:
                    table[i3] = low
        else:
            door[byte1] |= bit1
            door[byte2] |= bit2
        self._additions += 1
        if self._additions >= self.sample_size:
            self.halve()

    def estimate(self, key: str) -> int:
        """How often `key` was seen lately (0 to 16); collisions only overestimate."""
        h = hash(key)
        a = h >> 32
        b = h | 1
        table = self._table
        m = self._mask
        count = table[a & m]
        c = table[(a + b) & m]
        if c < count:
            count = c
        c = table[(a + 2 * b) & m]
        if c < count:
            count = c
        c = table[(a + 3 * b) & m]
        if c < count:
            count = c
        door = self._door
        d1 = a & self._door_mask
        d2 = (a + 4 * b) & self._door_mask
        if door[d1 >> 3] & (1 << (d1 & 7)) and door[d2 >> 3] & (1 << (d2 & 7)):
            count += 1
        return count

    def halve(self) -> None:
        """Age the sketch: halve every counter and the sample, clear the doorkeeper."""
        self._table = self._table.translate(_HALVE)
        self._door = bytearray(len(self._door))
        self._additions //= 2


class Policy:
    """W-TinyLFU over keys with costs: decides which keys the store keeps.

    The caller reports every key it stores (`add`), overwrites (`update`),
    reads (`record_read`) and deletes (`remove`); `add` and `update` return
    the keys the caller must delete. After every call: `used_cost <= max_cost`,
    every held key is in exactly one segment, and each segment's cost is the
    sum of its keys' costs.

    `num_counters` sizes the sketch, which is halved every 10 x (that rounded
    up to a power of two) increments: for hit ratio, about 4 to 8 counters per
    entry the cache holds did best on the traces we tried (bench/hit_ratio.py).
    `seed` seeds the random admissions against hash flooding; `adaptive=False`
    keeps the window at `window_fraction` for good.
    """

    __slots__ = (
        "_adaptive",
        "_buffer_items",
        "_full",
        "_previous_hit_rate",
        "_probation",
        "_probation_cost",
        "_protected",
        "_protected_cost",
        "_protected_max",
        "_reads",
        "_rng",
        "_sample_hits",
        "_sample_misses",
        "_sample_period",
        "_sketch",
        "_step",
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
        adaptive: bool = True,
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
        # As Caffeine splits it: the main area gets the floor of its share and
        # the window the rest, so even a cache of 1 has a window of 1.
        main_max = int(max_cost * (1.0 - window_fraction))
        self._window_max = max_cost - main_max
        self._protected_max = int(main_max * _PROTECTED_FRACTION)
        self._window: OrderedDict[str, int] = OrderedDict()  # key -> cost, LRU first
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
        # The hill climber; its samples start once the cache is full.
        self._adaptive = adaptive
        self._full = False
        self._sample_hits = 0
        self._sample_misses = 0
        self._sample_period = _MIN_SAMPLE
        self._previous_hit_rate = 0.0
        self._step = -_STEP_FRACTION * max_cost

    # -- queries -------------------------------------------------------------

    def __contains__(self, key: str) -> bool:
        return key in self._protected or key in self._probation or key in self._window

    def __len__(self) -> int:
        return len(self._window) + len(self._probation) + len(self._protected)

    @property
    def used_cost(self) -> int:
        return self._window_cost + self._probation_cost + self._protected_cost

    @property
    def window_max_cost(self) -> int:
        """The admission window's current budget (the hill climber moves it)."""
        return self._window_max

    # -- events from the store ------------------------------------------------

    def record_read(self, key: str) -> None:
        """A hit on `key`: buffered, applied once `buffer_items` reads are pending."""
        reads = self._reads
        reads.append(key)
        if len(reads) >= self._buffer_items:
            self._drain_reads()

    def add(self, key: str, cost: int) -> list[str]:
        """A new key of `cost`; return the keys to delete, which may include `key`."""
        if cost < 0:
            raise ValueError(f"cost must not be negative, not {cost!r}")
        if key in self:
            return self.update(key, cost)
        if self._reads:
            self._drain_reads()
        self._sketch.increment(key)
        self._sample_misses += 1
        evicted: list[str] = []
        if cost > self.max_cost:
            self.rejections += 1
            evicted.append(key)
        else:
            self._window[key] = cost
            self._window_cost += cost
            self._make_room(evicted, None)
        if self._adaptive and self._sample_hits + self._sample_misses >= self._sample_period:
            self._climb()
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
        # Reorder as a hit would, with the new cost.
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

        The frequency sketch is kept (pending reads are counted into it
        first): it describes the workload, not the contents, so after a flush
        the keys that were popular still win admission, as after Caffeine's
        invalidateAll. The window's learned size is kept too; the climber's
        current sample is dropped, since refilling is not a steady state.
        """
        if self._reads:
            self._drain_reads()
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self._window_cost = self._probation_cost = self._protected_cost = 0
        self._full = False
        self._sample_hits = self._sample_misses = 0

    # -- internals ---------------------------------------------------------------

    def _drain_reads(self) -> None:
        """Apply the buffered reads: count each, reorder the keys still held."""
        reads = self._reads
        self._reads = []
        self._sample_hits += len(reads)
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
        """Move protected's LRU keys to probation's MRU end until protected fits."""
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
        # The window's overflow leaves it first, so that each candidate is
        # judged by the room left once the window fits its budget.
        window = self._window
        candidates: list[tuple[str, int]] = []
        while self._window_cost > self._window_max and window:
            candidate, cost = window.popitem(last=False)
            self._window_cost -= cost
            candidates.append((candidate, cost))
        for candidate, cost in candidates:
            self._admit(candidate, cost, evicted, pinned)
        # Only an update that made a key dearer can leave an excess here.
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

    def _admit(self, candidate: str, cost: int, evicted: list[str], pinned: str | None) -> None:
        """Put a candidate leaving the window into probation, or reject it.

        When the cache lacks room, the victims that would make room are taken
        in eviction order; the candidate is admitted (and they are evicted)
        only if it is estimated more frequent than each of them. The `pinned`
        key (the one being updated) is never a victim, and as a candidate it
        is admitted whatever the estimates.
        """
        forced = candidate == pinned
        need = self.used_cost + cost - self.max_cost
        if need > 0:
            if not self._full:
                # The climber's first sample starts now: warming up says
                # nothing about the window's size.
                self._full = True
                self._sample_hits = self._sample_misses = 0
            victims: list[str] = []
            estimate = self._sketch.estimate
            candidate_freq = estimate(candidate)
            for victim, victim_cost in self._victims(pinned):
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
            else:
                # Only the pinned key could make room (a forced candidate never
                # gets here: it fits once every other key is gone).
                self.rejections += 1
                evicted.append(candidate)
                return
            for victim in victims:
                self._evict(victim, evicted)
        self._probation[candidate] = cost
        self._probation_cost += cost

    def _victims(self, pinned: str | None) -> Iterator[tuple[str, int]]:
        """Held keys and costs in eviction order: probation, protected, window, LRU first.

        Lazy; callers stop iterating before they evict anything.
        """
        for segment in (self._probation, self._protected, self._window):
            for key, cost in segment.items():
                if key != pinned:
                    yield key, cost

    def _evict(self, victim: str, evicted: list[str]) -> None:
        self.remove(victim)
        self.evictions += 1
        evicted.append(victim)

    # -- the adaptive window -------------------------------------------------------

    def _climb(self) -> None:
        """At the end of a sample, move budget between the window and the main area."""
        requests = self._sample_hits + self._sample_misses
        hit_rate = self._sample_hits / requests
        self._sample_hits = self._sample_misses = 0
        self._sample_period = max(_MIN_SAMPLE, _SAMPLE_PER_KEY * len(self))
        if not self._full:
            return
        change = hit_rate - self._previous_hit_rate
        self._previous_hit_rate = hit_rate
        noise = _NOISE_SIGMAS * (2.0 * hit_rate * (1.0 - hit_rate) / requests) ** 0.5
        if abs(change) < noise:
            return
        # Keep going the way that helped; turn back when the hit ratio fell.
        amount = self._step if change >= 0 else -self._step
        if abs(change) >= _RESTART_THRESHOLD:
            self._step = _STEP_FRACTION * self.max_cost * (1 if amount >= 0 else -1)
        else:
            self._step = _STEP_DECAY * amount
        self._demote_protected_overflow()
        if int(amount) > 0:
            self._grow_window(int(amount))
        elif int(amount) < 0:
            self._shrink_window(-int(amount))

    def _grow_window(self, quota: int) -> None:
        """Move up to `quota` of budget, and keys that fill it, from the main area to the window."""
        quota = min(quota, self._protected_max)
        self._protected_max -= quota
        self._window_max += quota
        self._demote_protected_overflow()
        window, probation, protected = self._window, self._probation, self._protected
        for _ in range(_TRANSFER_LIMIT):
            if probation and next(iter(probation.values())) <= quota:
                key, cost = probation.popitem(last=False)
                self._probation_cost -= cost
            elif protected and next(iter(protected.values())) <= quota:
                key, cost = protected.popitem(last=False)
                self._protected_cost -= cost
            else:
                break
            quota -= cost
            window[key] = cost
            self._window_cost += cost
        # Give back the budget that no key came with.
        self._protected_max += quota
        self._window_max -= quota

    def _shrink_window(self, quota: int) -> None:
        """Move up to `quota` of budget, and the keys in it, from the window to the main area."""
        quota = min(quota, self._window_max - 1)
        if quota <= 0:
            return
        self._protected_max += quota
        self._window_max -= quota
        window, probation = self._window, self._probation
        for _ in range(_TRANSFER_LIMIT):
            if not window or next(iter(window.values())) > quota:
                break
            key, cost = window.popitem(last=False)
            self._window_cost -= cost
            quota -= cost
            probation[key] = cost
            self._probation_cost += cost
        self._protected_max -= quota
        self._window_max += quota
