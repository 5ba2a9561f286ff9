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
heavy ones a smaller). It starts at `window_fraction`, and never goes below.

A read costs the caller two counter increments (the node's `hits` and the
policy's `reads`) and nothing else, and so does an overwrite that does not
make its key dearer: the segments are intrusive lists threaded
through the nodes (phoenix.segment), and reads reorder them lazily, as CLOCK
does. A key read since it was last placed is moved when it reaches the LRU
end of its segment, instead of on every read: from probation it is promoted
to protected; in the window or protected it gets a second chance at the MRU
end. Its reads are counted into the sketch then (or when it leaves), before
any decision could ask for its frequency; the sketch's aging counts every read
when it happens.

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
from collections.abc import Iterator
from typing import Generic, TypeVar, cast

from phoenix.segment import UNLINKED, Node, Segment

__all__ = ["FrequencySketch", "Node", "Policy"]

NodeT = TypeVar("NodeT", bound=Node)

# A bytearray.translate table that halves every byte (each 4-bit counter has a
# byte of its own).
_HALVE = bytes(b >> 1 for b in range(256))
_COUNTER_MAX = 15
# The sketch has this many counters per access of its sample's tenth.
_WIDTH_FACTOR = 4

_PROTECTED_FRACTION = 0.8
# A candidate at least this frequent beats a victim at least as frequent with
# probability 1/128, as in Caffeine, so that flooding the sketch with colliding
# keys cannot make the victims unbeatable.
_HASHDOS_THRESHOLD = 6
_HASHDOS_CHANCE = 1.0 / 128

# The hill climber, after Caffeine: each step moves 6.25% of max_cost, out of
# the window at first; each later step is 98% of the one before, and a change
# of 5 points or more in the hit ratio (the workload changed) restarts the full
# step. Unlike Caffeine:
# - a sample is 4 requests (reads of held keys plus adds) per held key, at
#   least _MIN_SAMPLE, not 10 per entry: on the OLTP trace at 10,000 entries
#   that gave the climber 9 samples in the whole trace, and the window stayed
#   small where LRU did 2.7 points better;
# - a change within _NOISE_SIGMAS standard errors of sampling noise moves
#   nothing: on a steady workload the window stays where it is;
# - the window never shrinks below its starting share (window_fraction): below
#   1% a new key competes for admission before a second access can show its
#   worth, which cost 4 points on scan+hot, and frequency-heavy streams gain
#   nothing from it. So the first step, out of the window, moves nothing: the
#   climber leaves the floor once a sample's hit ratio drops by more than the
#   noise, which depends on luck (tests/test_policy.py, sliding_stream).
_STEP_FRACTION = 0.0625
_STEP_DECAY = 0.98
_RESTART_THRESHOLD = 0.05
_NOISE_SIGMAS = 2.0
_SAMPLE_PER_KEY = 4
_MIN_SAMPLE = 5000
# At most this many read keys are moved (promoted or given a second chance) in
# one call; past it they are treated as not read (their reads still counted),
# so that a write after a long run of reads does not pay for all of them.
_MOVE_LIMIT = 256
# At most this many keys change segment in one adjustment.
_TRANSFER_LIMIT = 1000


class FrequencySketch:
    """Count-min sketch of 4-bit counters with a doorkeeper, aged by halving.

    `width` counters (4 x the next power of two at least `num_counters`, at
    least 8), one byte each, saturating at 15. A key maps to 4 counters by
    double hashing of `hash(key)`; its estimate is the smallest of the 4, plus
    1 when the doorkeeper (a Bloom filter of 8 * width bits, 2 per key) holds
    it. The first increment of a key in a sample only sets its doorkeeper
    bits, so keys seen once never reach the counters; later increments raise
    only the key's smallest counters (conservative update). After
    `sample_size` (10 x `num_counters` rounded up to a power of two)
    increments every counter is halved, as is the count of increments, and
    the doorkeeper is cleared.

    `num_counters` thus sets the aging period, and the table is 4 times wider
    than it: with one counter per sampled access a key shares its counters
    with about 2 others at 8 counters per held entry, and the estimates of the
    keys competing for admission mostly measured their neighbours (Caffeine
    has 16 counters per entry for a sample of 10 accesses per entry).

    `hash` of a str is salted per process (PYTHONHASHSEED), so collisions, and
    so a few of the policy's choices, differ from one process to the next.
    """

    __slots__ = ("_additions", "_door", "_door_mask", "_mask", "_table", "sample_size", "width")

    def __init__(self, num_counters: int) -> None:
        if num_counters < 1:
            raise ValueError(f"num_counters must be positive, not {num_counters!r}")
        rounded = max(8, 1 << (num_counters - 1).bit_length())
        width = _WIDTH_FACTOR * rounded
        self.width = width
        self.sample_size = 10 * rounded
        self._mask = width - 1
        self._door_mask = 8 * width - 1
        self._table = bytearray(width)
        self._door = bytearray(width)
        self._additions = 0

    def increment(self, key: str, count: int = 1, *, tick: bool = True) -> None:
        """Count `count` occurrences of `key`, as that many single increments would.

        With `tick=False` they are not counted towards the sample (the caller
        already counted them with `tick` when they happened).
        """
        h = hash(key)
        a = h >> 32
        b = h | 1  # odd: the 4 positions differ
        door = self._door
        d1 = a & self._door_mask
        d2 = (a + 4 * b) & self._door_mask
        byte1, bit1 = d1 >> 3, 1 << (d1 & 7)
        byte2, bit2 = d2 >> 3, 1 << (d2 & 7)
        raise_by = count
        if not (door[byte1] & bit1 and door[byte2] & bit2):
            door[byte1] |= bit1
            door[byte2] |= bit2
            raise_by -= 1
        if raise_by > 0:
            # Conservative update: raise only the counters below the key's new
            # minimum (the others already count some colliding key too). Raising
            # the minimum by n at once is what n single increments do.
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
                low += raise_by
                if low > _COUNTER_MAX:
                    low = _COUNTER_MAX
                if c0 < low:
                    table[i0] = low
                if c1 < low:
                    table[i1] = low
                if c2 < low:
                    table[i2] = low
                if c3 < low:
                    table[i3] = low
        if tick:
            self._additions += count
            if self._additions >= self.sample_size:
                self.halve()

    def tick(self, count: int) -> None:
        """Count `count` accesses towards the sample without attributing them yet."""
        self._additions += count
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


class Policy(Generic[NodeT]):
    """W-TinyLFU over keys with costs: decides which keys the store keeps.

    The policy holds the nodes (`nodes`, key -> node); the caller reports
    every key it stores (`insert`), overwrites (`resize`), reads (`node.hits
    += 1` and `reads += 1`, or `record_read`) and deletes (`remove`).
    `insert` and `resize` return the nodes the policy let go, which it has
    already taken out of `nodes`. After every call: `used_cost <= max_cost`,
    every held key is in exactly one segment, and each segment's cost is the
    sum of its keys' costs. `add` and `update` do the same by key, with
    plain `Node`s.

    `num_counters` sizes the sketch, which is halved every 10 x (that rounded
    up to a power of two) accesses: for hit ratio, about 4 to 8 counters per
    entry the cache holds did best on the traces we tried (bench/hit_ratio.py).
    `buffer_items` is accepted for compatibility and unused: reads are counted
    on the nodes. `seed` seeds the random admissions against hash flooding;
    `adaptive=False` keeps the window at `window_fraction` for good.
    """

    __slots__ = (
        "_adaptive",
        "_full",
        "_previous_hit_rate",
        "_probation",
        "_protected",
        "_protected_max",
        "_rng",
        "_sample_misses",
        "_sample_period",
        "_sample_start",
        "_sketch",
        "_step",
        "_ticked",
        "_window",
        "_window_max",
        "_window_min",
        "evictions",
        "max_cost",
        "nodes",
        "reads",
        "rejections",
        "updates",
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
            # The types are the annotations' (mypy checks the callers; the
            # compiled build, docs/operations.md, checks them at the call).
            # The numbers as the compiled build sees them: it has made a bool
            # an int, and an int window_fraction a float, by the time they get here.
            if value < 1:
                raise ValueError(f"{name} must be a positive int, not {int(value)}")
        if not 0.0 <= window_fraction < 1.0:
            raise ValueError(f"window_fraction must be in [0, 1), not {float(window_fraction)}")
        self.max_cost = max_cost
        # As Caffeine splits it: the main area gets the floor of its share and
        # the window the rest, so even a cache of 1 has a window of 1.
        main_max = int(max_cost * (1.0 - window_fraction))
        self._window_max = max_cost - main_max
        self._protected_max = int(main_max * _PROTECTED_FRACTION)
        self.nodes: dict[str, NodeT] = {}
        self._window = Segment("window")
        self._probation = Segment("probation")
        self._protected = Segment("protected")
        self._sketch = FrequencySketch(num_counters)
        self._rng = random.Random(seed)
        self.evictions = 0
        self.rejections = 0
        # Hits on held keys, counted by the caller; the sketch's sample and
        # the climber's take their share from it.
        self.reads = 0
        # Overwrites of held keys: accesses too (for the sketch and the
        # climber), but not reads, which the store reports as its hits.
        self.updates = 0
        self._ticked = 0  # accesses counted towards the sketch's sample
        # The hill climber; its samples start once the cache is full.
        self._adaptive = adaptive
        self._full = False
        self._sample_start = 0  # accesses when the sample started
        self._sample_misses = 0
        self._sample_period = _MIN_SAMPLE
        self._previous_hit_rate = 0.0
        self._step = -_STEP_FRACTION * max_cost
        self._window_min = self._window_max

    # -- queries -------------------------------------------------------------

    def __contains__(self, key: str) -> bool:
        return key in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def used_cost(self) -> int:
        return self._window.cost + self._probation.cost + self._protected.cost

    @property
    def window_max_cost(self) -> int:
        """The admission window's current budget (the hill climber moves it)."""
        return self._window_max

    # -- events from the caller ----------------------------------------------

    def record_read(self, key: str) -> None:
        """A hit on `key` (ignored when not held); the store does this inline."""
        node = self.nodes.get(key)
        if node is not None:
            node.hits += 1
            self.reads += 1

    def add(self, key: str, cost: int) -> list[str]:
        """`insert` of a plain Node; return the keys let go, which may include `key`."""
        node = self.nodes.get(key)
        if node is not None:
            return self.update(key, cost)
        return [n.key for n in self.insert(cast(NodeT, Node(key, cost)))]

    def update(self, key: str, cost: int) -> list[str]:
        """`resize` by key (an `add` when not held); return the keys let go."""
        node = self.nodes.get(key)
        if node is None:
            return self.add(key, cost)
        return [n.key for n in self.resize(node, cost)]

    def insert(self, node: NodeT) -> list[NodeT]:
        """A new key (`node.key` not held) of `node.cost`; return the nodes let go.

        They may include `node` itself, when it is refused.
        """
        cost = node.cost
        if cost < 0:
            raise ValueError(f"cost must not be negative, not {cost!r}")
        key = node.key
        if key in self.nodes:
            raise ValueError(f"{key!r} is already held: resize it")
        if self._accesses() != self._ticked:
            self._tick()
        self._sketch.increment(key)
        self._sample_misses += 1
        evicted: list[NodeT] = []
        node.hits = 0
        if cost > self.max_cost:
            self.rejections += 1
            evicted.append(node)
        else:
            self.nodes[key] = node
            self._window.push(node)
            self._make_room(evicted, None)
        if (
            self._adaptive
            and self._accesses() - self._sample_start + self._sample_misses >= self._sample_period
        ):
            self._climb()
        return evicted

    def resize(self, node: NodeT, cost: int) -> list[NodeT]:
        """Held `node`'s cost is now `cost` (an overwrite, which counts as an access).

        The access is counted as a read's is (on the node, reordered lazily,
        and a hit for the climber, as Caffeine counts an update) but in
        `updates`, not `reads`: an overwrite that does not make the key dearer
        costs no more than a read.
        Return the nodes let go: never `node` itself unless `cost > max_cost`.
        """
        if cost < 0:
            raise ValueError(f"cost must not be negative, not {cost!r}")
        node.hits += 1
        self.updates += 1
        if cost > self.max_cost:
            self.remove(node.key)
            self.rejections += 1
            return [node]
        growth = cost - node.cost
        segment = node.segment
        assert segment is not None
        segment.cost += growth
        node.cost = cost
        if growth <= 0:
            return []
        evicted: list[NodeT] = []
        self._make_room(evicted, node)
        return evicted

    def remove(self, key: str) -> NodeT | None:
        """The caller deleted `key`: its node, or None if the policy does not hold it."""
        node = self.nodes.pop(key, None)
        if node is not None:
            if node.hits:
                self._fold(node)
            segment = node.segment
            assert segment is not None
            segment.unlink(node)
        return node

    def clear(self) -> None:
        """Forget every key.

        The frequency sketch is kept (the reads not yet counted are counted
        into it first): it describes the workload, not the contents, so after
        a flush the keys that were popular still win admission, as after
        Caffeine's invalidateAll. The window's learned size is kept too; the
        climber's current sample is dropped, since refilling is not a steady
        state. O(number of keys).
        """
        for node in self.nodes.values():
            if node.hits:
                self._fold(node)
            node.segment = None
            node.prev = node.next = UNLINKED
        self.nodes.clear()
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self._full = False
        self._sample_start = self._accesses()
        self._sample_misses = 0

    # -- internals ---------------------------------------------------------------

    def _accesses(self) -> int:
        """Reads and overwrites of held keys so far."""
        return self.reads + self.updates

    def _tick(self) -> None:
        """Count the accesses since the last call towards the sketch's sample."""
        accesses = self._accesses()
        self._sketch.tick(accesses - self._ticked)
        self._ticked = accesses

    def _fold(self, node: Node) -> None:
        """Count `node`'s pending reads into the sketch (they were ticked already)."""
        self._sketch.increment(node.key, node.hits, tick=False)
        node.hits = 0

    def _demote_protected_overflow(self) -> None:
        """Move protected's LRU keys to probation's MRU end until protected fits.

        A key read since it was last placed gets a second chance instead: its
        reads are counted and it goes back to protected's MRU end (CLOCK).
        """
        protected, probation = self._protected, self._probation
        moves = _MOVE_LIMIT
        while protected.cost > self._protected_max:
            node = protected.head.next
            if node is protected.head:
                break
            protected.unlink(node)
            if node.hits:
                self._fold(node)
                if moves:
                    moves -= 1
                    protected.push(node)
                    continue
            probation.push(node)

    def _make_room(self, evicted: list[NodeT], pinned: NodeT | None) -> None:
        """Move the window's overflow into the main area, then fit `max_cost`.

        `pinned` (the node being updated) is never evicted nor rejected.
        """
        # The window's overflow leaves it first, so that each candidate is
        # judged by the room left once the window fits its budget. A key read
        # since it entered the window gets a second chance at its MRU end.
        window = self._window
        candidates: list[NodeT] = []
        moves = _MOVE_LIMIT
        while window.cost > self._window_max:
            node = window.head.next
            if node is window.head:
                break
            window.unlink(node)
            if node.hits:
                self._fold(node)
                if moves:
                    moves -= 1
                    window.push(node)
                    continue
            candidates.append(cast(NodeT, node))
        for candidate in candidates:
            self._admit(candidate, evicted, pinned)
        # Only an update that made a key dearer can leave an excess here.
        excess = self.used_cost - self.max_cost
        if excess > 0:
            victims: list[NodeT] = []
            for victim in self._victims(pinned):
                victims.append(victim)
                excess -= victim.cost
                if excess <= 0:
                    break
            for victim in victims:
                self._evict(victim, evicted)
        if self._protected.cost > self._protected_max:
            self._demote_protected_overflow()

    def _admit(self, candidate: NodeT, evicted: list[NodeT], pinned: NodeT | None) -> None:
        """Put a candidate leaving the window into probation, or reject it.

        When the cache lacks room, the victims that would make room are taken
        in eviction order; the candidate is admitted (and they are evicted)
        only if it is estimated more frequent than each of them. The `pinned`
        node (the one being updated) is never a victim, and as a candidate it
        is admitted whatever the estimates.
        """
        forced = candidate is pinned
        cost = candidate.cost
        need = self.used_cost + cost - self.max_cost
        if need > 0:
            if not self._full:
                # The climber's first sample starts now: warming up says
                # nothing about the window's size.
                self._full = True
                self._sample_start = self._accesses()
                self._sample_misses = 0
            victims: list[NodeT] = []
            estimate = self._sketch.estimate
            candidate_freq = estimate(candidate.key)
            for victim in self._victims(pinned):
                if (
                    not forced
                    and candidate_freq <= estimate(victim.key)
                    and (
                        candidate_freq < _HASHDOS_THRESHOLD or self._rng.random() >= _HASHDOS_CHANCE
                    )
                ):
                    self.rejections += 1
                    del self.nodes[candidate.key]
                    evicted.append(candidate)
                    return
                victims.append(victim)
                need -= victim.cost
                if need <= 0:
                    break
            else:
                # Only the pinned key could make room (a forced candidate never
                # gets here: it fits once every other key is gone).
                self.rejections += 1
                del self.nodes[candidate.key]
                evicted.append(candidate)
                return
            for victim in victims:
                self._evict(victim, evicted)
        self._probation.push(candidate)

    def _victims(self, pinned: NodeT | None) -> Iterator[NodeT]:
        """Held nodes in eviction order: probation, protected, window, LRU first.

        Lazy; callers stop iterating before they evict anything. On the way, a
        key read since it was last placed is not a victim: in probation it is
        promoted to protected (as the read would have done at once), elsewhere
        it gets a second chance at its segment's MRU end, its reads counted
        (up to _MOVE_LIMIT such moves per walk).
        """
        probation, protected = self._probation, self._protected
        moves = _MOVE_LIMIT
        head = probation.head
        node = head.next
        while node is not head:
            after = node.next
            if node.hits:
                self._fold(node)
                if moves:
                    moves -= 1
                    probation.unlink(node)
                    protected.push(node)
                    node = after
                    continue
            if node is not pinned:
                yield cast(NodeT, node)
            node = after
        for segment in (protected, self._window):
            head = segment.head
            node = head.next
            while node is not head:
                after = node.next
                if node.hits:
                    self._fold(node)
                    if moves:
                        moves -= 1
                        segment.move_to_end(node)
                        if after is head:
                            after = node  # look at it once more, now without reads
                        node = after
                        continue
                if node is not pinned:
                    yield cast(NodeT, node)
                node = after

    def _evict(self, victim: NodeT, evicted: list[NodeT]) -> None:
        del self.nodes[victim.key]
        segment = victim.segment
        assert segment is not None
        segment.unlink(victim)
        self.evictions += 1
        evicted.append(victim)

    # -- the adaptive window -------------------------------------------------------

    def _climb(self) -> None:
        """At the end of a sample, move budget between the window and the main area."""
        hits = self._accesses() - self._sample_start
        requests = hits + self._sample_misses
        hit_rate = hits / requests
        self._sample_start = self._accesses()
        self._sample_misses = 0
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
            node = probation.first()
            if node is not None and node.cost <= quota:
                probation.unlink(node)
            else:
                node = protected.first()
                if node is not None and node.cost <= quota:
                    protected.unlink(node)
                else:
                    break
            quota -= node.cost
            window.push(node)
        # Give back the budget that no key came with.
        self._protected_max += quota
        self._window_max -= quota

    def _shrink_window(self, quota: int) -> None:
        """Move up to `quota` of budget, and the keys in it, from the window to the main area."""
        quota = min(quota, self._window_max - self._window_min)
        if quota <= 0:
            return
        self._protected_max += quota
        self._window_max -= quota
        window, probation = self._window, self._probation
        for _ in range(_TRANSFER_LIMIT):
            node = window.first()
            if node is None or node.cost > quota:
                break
            window.unlink(node)
            quota -= node.cost
            probation.push(node)
        self._protected_max -= quota
        self._window_max += quota
