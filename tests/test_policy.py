"""The W-TinyLFU policy: its invariants, admission, aging, and hit ratio."""

from __future__ import annotations

import itertools
import random
from collections import OrderedDict

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import phoenix.policy
from phoenix.policy import FrequencySketch, Policy
from phoenix.segment import Segment


def check_invariants(policy: Policy, held: dict[str, int]) -> None:
    """The policy holds exactly `held` (key -> cost), each key in one segment, within budget."""
    segments = (policy._window, policy._probation, policy._protected)
    keys = [node.key for segment in segments for node in segment]
    assert len(keys) == len(set(keys)), "a key is in two segments"
    assert set(keys) == set(held) == set(policy.nodes)
    assert len(policy) == len(held)
    assert all(key in policy for key in held)
    for segment in segments:
        nodes = list(segment)
        assert segment.cost == sum(node.cost for node in nodes)
        assert len(segment) == len(nodes)
        assert all(node.segment is segment for node in nodes)
        assert all(node.prev.next is node and node.next.prev is node for node in nodes)
    assert all(policy.nodes[node.key] is node for segment in segments for node in segment)
    assert policy.used_cost == sum(held.values()) <= policy.max_cost
    assert {node.key: node.cost for segment in segments for node in segment} == held


def keys_of(segment: Segment) -> list[str]:
    """The keys of a segment, least recently used first."""
    return [node.key for node in segment]


def zipf_stream(length: int, n_keys: int, s: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    keys = [f"k{i}" for i in range(n_keys)]
    cum_weights = list(itertools.accumulate(1.0 / rank**s for rank in range(1, n_keys + 1)))
    return rng.choices(keys, cum_weights=cum_weights, k=length)


def policy_hit_ratio(policy: Policy, stream: list[str]) -> float:
    hits = 0
    for key in stream:
        if key in policy:
            hits += 1
            policy.record_read(key)
        else:
            policy.add(key, 1)
    return hits / len(stream)


def lru_hit_ratio(capacity: int, stream: list[str]) -> float:
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
    return hits / len(stream)


# -- construction -----------------------------------------------------------------


@pytest.mark.parametrize("argument", ["max_cost", "num_counters", "buffer_items"])
@pytest.mark.parametrize("bad", [0, -1])
def test_constructor_names_the_argument_that_is_not_positive(argument: str, bad: int) -> None:
    arguments = {"max_cost": 100, "num_counters": 100, "buffer_items": 4, argument: bad}
    with pytest.raises(ValueError, match=argument):
        Policy(**arguments)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2.0])
def test_window_fraction_must_be_below_one(fraction: float) -> None:
    with pytest.raises(ValueError, match="window_fraction"):
        Policy(100, 100, 4, window_fraction=fraction)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"window_fraction": 1}, "window_fraction must be in [0, 1), not 1.0"),
        ({"window_fraction": True}, "window_fraction must be in [0, 1), not 1.0"),
        ({"max_cost": False}, "max_cost must be a positive int, not 0"),
    ],
)
def test_a_refused_argument_is_shown_alike_on_both_builds(
    arguments: dict[str, object], message: str
) -> None:
    # Compiled (mypyc), an int passed for a float parameter arrives as a float and
    # a bool for an int one as an int: the message used to say "not 1" in the pure
    # build and "not 1.0" in the compiled one.
    with pytest.raises(ValueError) as raised:
        Policy(**{"max_cost": 100, "num_counters": 100, "buffer_items": 4, **arguments})  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_negative_cost_is_refused() -> None:
    policy = Policy(100, 100, 4)
    with pytest.raises(ValueError, match="cost"):
        policy.add("k", -1)


# -- invariants under random operations ---------------------------------------------

KEYS = st.sampled_from([f"key{i}" for i in range(12)])
COSTS = st.integers(0, 12)


class PolicyMachine(RuleBasedStateMachine):
    """Random adds, updates, removes, reads and clears against a dict of held keys.

    The store's contract is followed: `add` for keys not held, `update` for
    keys held, and every returned key is dropped from the model.
    """

    def __init__(self) -> None:
        super().__init__()
        self.held: dict[str, int] = {}
        self.patch = pytest.MonkeyPatch()
        self.policy = Policy(1, 16, 1)

    @initialize(
        max_cost=st.integers(1, 10),
        buffer_items=st.integers(1, 5),
        window_fraction=st.sampled_from([0.0, 0.01, 0.3]),
        fast_climber=st.booleans(),
    )
    def start(
        self, max_cost: int, buffer_items: int, window_fraction: float, fast_climber: bool
    ) -> None:
        if fast_climber:
            # Samples of a few requests and big steps: the window moves all the time.
            self.patch.setattr(phoenix.policy, "_MIN_SAMPLE", 3)
            self.patch.setattr(phoenix.policy, "_SAMPLE_PER_KEY", 1)
            self.patch.setattr(phoenix.policy, "_STEP_FRACTION", 0.5)
            self.patch.setattr(phoenix.policy, "_NOISE_SIGMAS", 0.0)
        self.policy = Policy(max_cost, 16, buffer_items, window_fraction=window_fraction, seed=7)

    def teardown(self) -> None:
        self.patch.undo()

    def settle(self, evicted: list[str], before: tuple[int, int]) -> None:
        assert len(evicted) == len(set(evicted))
        for victim in evicted:
            assert victim not in self.policy
            del self.held[victim]
        # Every returned key is counted once, as a victim or as a refusal.
        evictions, rejections = before
        counted = self.policy.evictions - evictions + self.policy.rejections - rejections
        assert counted == len(evicted)

    def counts(self) -> tuple[int, int]:
        return self.policy.evictions, self.policy.rejections

    @rule(key=KEYS, cost=COSTS)
    def add(self, key: str, cost: int) -> None:
        if key in self.held:
            return
        before = self.counts()
        evicted = self.policy.add(key, cost)
        self.held[key] = cost
        if cost > self.policy.max_cost:
            assert evicted == [key]
        self.settle(evicted, before)

    @rule(key=KEYS, cost=COSTS)
    def update(self, key: str, cost: int) -> None:
        if key not in self.held:
            return
        before = self.counts()
        evicted = self.policy.update(key, cost)
        self.held[key] = cost
        assert (key in evicted) == (cost > self.policy.max_cost)
        self.settle(evicted, before)

    @rule(key=KEYS)
    def remove(self, key: str) -> None:
        self.policy.remove(key)
        self.held.pop(key, None)

    @rule(key=KEYS, times=st.integers(1, 4))
    def read(self, key: str, times: int) -> None:
        if key in self.held:
            for _ in range(times):
                self.policy.record_read(key)

    @precondition(lambda self: len(self.held) > 3)
    @rule()
    def clear(self) -> None:
        self.policy.clear()
        self.held.clear()

    @invariant()
    def capacity_is_never_exceeded_and_the_model_is_kept(self) -> None:
        check_invariants(self.policy, self.held)


PolicyMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=100, deadline=None)
test_capacity_is_never_exceeded_and_the_model_is_kept = PolicyMachine.TestCase


def test_window_moves_both_ways_and_keeps_the_invariants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phoenix.policy, "_MIN_SAMPLE", 50)
    monkeypatch.setattr(phoenix.policy, "_NOISE_SIGMAS", 0.0)
    rng = random.Random(11)
    policy = Policy(60, 256, 3, seed=3)
    held: dict[str, int] = {}
    grew = shrank = 0
    previous_window = policy.window_max_cost
    for step in range(20_000):
        # Alternate phases favour recency (a few fresh keys) and frequency (a fixed set).
        if (step // 2_000) % 2:
            key = f"fresh{step // 7 - rng.randrange(8)}"
        else:
            key = f"fixed{rng.randrange(40)}"
        if key in held:
            if rng.random() < 0.1:
                held[key] = rng.randint(1, 5)
                evicted = policy.update(key, held[key])
            else:
                policy.record_read(key)
                evicted = []
        else:
            held[key] = rng.randint(1, 5)
            evicted = policy.add(key, held[key])
        window = policy.window_max_cost
        for victim in evicted:
            del held[victim]
        check_invariants(policy, held)
        grew += window > previous_window
        shrank += window < previous_window
        previous_window = window
    assert grew >= 5
    assert shrank >= 5


# -- admission ------------------------------------------------------------------------


def test_hot_key_survives_a_scan_of_one_hit_wonders() -> None:
    capacity = 100
    policy = Policy(capacity, 1024, 4, seed=1)
    lru: OrderedDict[str, None] = OrderedDict()

    def access(key: str) -> None:
        if key in policy:
            policy.record_read(key)
        else:
            policy.add(key, 1)
        lru[key] = None
        lru.move_to_end(key)
        if len(lru) > capacity:
            lru.popitem(last=False)

    for i in range(300):
        access(f"warm{i % 150}")
        if i % 3 == 0:
            access("hot")
    assert "hot" in policy
    for i in range(2_000):
        access(f"scan{i}")
    assert "hot" in policy
    assert "hot" not in lru  # what plain LRU would have done


def test_key_costlier_than_max_cost_is_rejected() -> None:
    policy = Policy(100, 1024, 4)
    policy.add("small", 10)
    assert policy.add("big", 101) == ["big"]
    assert "big" not in policy
    assert policy.used_cost == 10
    assert policy.rejections == 1
    assert policy.evictions == 0


def test_update_beyond_max_cost_drops_only_that_key() -> None:
    policy = Policy(100, 1024, 4)
    policy.add("a", 10)
    policy.add("b", 10)
    assert policy.update("a", 101) == ["a"]
    assert "a" not in policy
    assert "b" in policy
    assert policy.used_cost == 10


def fill_with_light_keys(policy: Policy, count: int) -> list[str]:
    keys = [f"light{i}" for i in range(count)]
    for key in keys:
        assert policy.add(key, 1) == []
    assert policy.used_cost == count
    return keys


def test_frequent_heavy_key_is_admitted_by_evicting_several_light_victims() -> None:
    policy = Policy(100, 1024, 4, adaptive=False, seed=1)
    light = fill_with_light_keys(policy, 100)
    # First sight: as frequent as the victims (once each), so refused.
    assert policy.add("heavy", 30) == ["heavy"]
    # Second sight: more frequent than any light key seen once.
    evicted = policy.add("heavy", 30)
    assert "heavy" in policy
    assert len(evicted) >= 30
    assert set(evicted) <= set(light)
    assert policy.evictions == len(evicted)
    assert policy.used_cost <= policy.max_cost
    assert len(policy) == 100 - len(evicted) + 1


def test_heavy_key_is_refused_when_one_needed_victim_is_more_frequent() -> None:
    policy = Policy(100, 1024, 4, adaptive=False, seed=1)
    # light0, the first victim, was stored and deleted often before.
    for _ in range(5):
        policy.add("light0", 1)
        policy.remove("light0")
    fill_with_light_keys(policy, 100)
    policy.add("heavy", 30)
    assert policy.add("heavy", 30) == ["heavy"]
    assert policy.evictions == 0
    assert len(policy) == 100


def test_hits_in_probation_promote_and_protected_overflow_demotes() -> None:
    policy = Policy(100, 1024, 1, adaptive=False)
    fill_with_light_keys(policy, 100)
    assert keys_of(policy._probation)[0] == "light0"
    for i in range(90):
        policy.record_read(f"light{i}")
    # Reads move nothing yet: a read key moves when it reaches its LRU end.
    assert keys_of(policy._probation)[:90] == [f"light{i}" for i in range(90)]
    assert policy.nodes["light0"].hits == 1
    # A newcomer pushes light99 out of the window; looking for its victim
    # promotes the read keys, and protected keeps 80% of the main area (79 of
    # 99): the rest went back. light99, no more frequent than light90, is refused.
    assert policy.add("new", 1) == ["light99"]
    assert policy._protected.cost == 79
    assert keys_of(policy._protected)[-1] == "light89"
    assert keys_of(policy._probation)[-11:] == [f"light{i}" for i in range(11)]
    assert keys_of(policy._probation)[0] == "light90"
    assert all(node.hits == 0 for node in policy.nodes.values())
    check_invariants(policy, {**{f"light{i}": 1 for i in range(99)}, "new": 1})


def test_key_read_in_the_window_gets_a_second_chance() -> None:
    policy = Policy(10, 1024, 1, window_fraction=0.3, adaptive=False)
    for key in "abc":
        policy.add(key, 1)
    policy.record_read("a")
    policy.add("d", 1)
    # a, read, went back to the MRU end; b, not read, left for probation.
    assert keys_of(policy._window) == ["c", "d", "a"]
    assert keys_of(policy._probation) == ["b"]
    assert policy.nodes["a"].hits == 0


def test_key_read_in_protected_gets_a_second_chance_instead_of_demotion() -> None:
    policy = Policy(100, 1024, 1, adaptive=False)
    fill_with_light_keys(policy, 100)
    for i in range(79):
        policy.record_read(f"light{i}")
    policy.add("new", 1)  # promotes light0..light78: protected is full
    assert keys_of(policy._protected) == [f"light{i}" for i in range(79)]
    policy.record_read("light0")
    policy.record_read("light79")
    policy.add("newer", 1)  # promotes light79, so one key must leave protected
    assert keys_of(policy._protected)[-2:] == ["light79", "light0"]
    assert keys_of(policy._probation)[-1] == "light1"


def test_one_write_moves_a_bounded_number_of_read_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = Policy(100, 1024, 1, adaptive=False)
    fill_with_light_keys(policy, 100)
    for i in range(100):
        policy.record_read(f"light{i}")
    monkeypatch.setattr(phoenix.policy, "_MOVE_LIMIT", 3)
    # The walk for a victim promotes three read keys, then takes light3 as
    # it comes (its read counted), which "new" should not beat (unless its
    # counters collide with others').
    evicted = policy.add("new", 1)
    assert evicted in (["new"], ["light3"])
    assert keys_of(policy._protected) == ["light0", "light1", "light2"]
    assert "light3" not in policy or policy.nodes["light3"].hits == 0
    assert policy.nodes["light4"].hits == 1
    held = {f"light{i}": 1 for i in range(100)} | {"new": 1}
    check_invariants(policy, {key: 1 for key in held if key not in evicted})


def test_reads_are_counted_into_the_sketch_when_the_key_moves_or_leaves() -> None:
    policy = Policy(100, 1024, 1, adaptive=False)
    fill_with_light_keys(policy, 100)
    estimate = policy._sketch.estimate
    assert estimate("light5") == 1
    for _ in range(4):
        policy.record_read("light5")
    assert estimate("light5") == 1
    policy.remove("light5")
    assert estimate("light5") == 5


def test_an_overwrite_is_an_access_counted_as_a_read_is() -> None:
    policy = Policy(100, 1024, 1, adaptive=False)
    fill_with_light_keys(policy, 100)
    estimate = policy._sketch.estimate
    reads = policy.reads
    # Same cost: nothing moves and nothing is let go, as for a read (but it
    # is not one: the store reports `reads` as its hits)...
    assert policy.update("light0", 1) == []
    assert keys_of(policy._probation)[0] == "light0"
    assert policy.nodes["light0"].hits == 1
    assert (policy.reads, policy.updates) == (reads, 1)
    # ...and the key is promoted when a newcomer looks for its victim, with
    # the access counted into the sketch then.
    assert estimate("light0") == 1
    assert policy.add("new", 1) == ["light99"]
    assert keys_of(policy._protected) == ["light0"]
    assert estimate("light0") == 2


# -- sizes ------------------------------------------------------------------------------


def test_update_changes_used_cost() -> None:
    policy = Policy(100, 1024, 4)
    policy.add("a", 5)
    policy.add("b", 7)
    assert policy.update("a", 9) == []
    assert policy.used_cost == 16
    assert policy.update("a", 2) == []
    assert policy.used_cost == 9


def test_growing_update_evicts_others_but_never_the_key() -> None:
    policy = Policy(100, 1024, 4)
    fill_with_light_keys(policy, 100)
    evicted = policy.update("light50", 40)
    assert "light50" in policy
    assert "light50" not in evicted
    assert len(evicted) == 39
    assert policy.used_cost == 100


def test_growing_update_in_the_window_never_makes_the_key_its_own_victim() -> None:
    # A window of 7 out of 9 holding the updated key behind another one.
    policy = Policy(9, 16, 1, window_fraction=0.7, adaptive=False)
    policy.add("other", 6)
    policy.add("key", 0)
    # The update pushes "other" out of the window; only "key" could make room.
    assert policy.update("key", 4) == ["other"]
    assert policy.used_cost == 4
    check_invariants(policy, {"key": 4})


def test_remove_frees_cost_and_ignores_unknown_keys() -> None:
    policy = Policy(100, 1024, 4)
    policy.add("a", 5)
    policy.remove("a")
    policy.remove("never-added")
    assert policy.used_cost == 0
    assert len(policy) == 0


def test_clear_empties() -> None:
    policy = Policy(100, 1024, 4)
    fill_with_light_keys(policy, 100)
    policy.record_read("light3")
    policy.clear()
    assert len(policy) == 0
    assert policy.used_cost == 0
    assert "light3" not in policy
    fill_with_light_keys(policy, 100)
    check_invariants(policy, {f"light{i}": 1 for i in range(100)})


# -- the frequency sketch ------------------------------------------------------------------


def test_doorkeeper_absorbs_the_first_occurrence() -> None:
    sketch = FrequencySketch(1024)
    assert sketch.estimate("k") == 0
    sketch.increment("k")
    assert sketch.estimate("k") == 1
    assert max(sketch._table) == 0  # only the doorkeeper knows it
    sketch.increment("k")
    assert sketch.estimate("k") == 2


def test_a_count_of_n_is_n_single_increments() -> None:
    one_by_one, at_once = FrequencySketch(64), FrequencySketch(64)
    rng = random.Random(5)
    keys = [f"k{i}" for i in range(40)]
    for _ in range(200):
        key, count = rng.choice(keys), rng.randint(1, 4)
        for _ in range(count):
            one_by_one.increment(key)
        at_once.increment(key, count)
        assert one_by_one._table == at_once._table
        assert one_by_one._door == at_once._door
        assert one_by_one._additions == at_once._additions


def test_counters_saturate_at_fifteen() -> None:
    sketch = FrequencySketch(1024)
    for _ in range(100):
        sketch.increment("k")
    assert sketch.estimate("k") == 16  # 15 in the counters, 1 in the doorkeeper


def test_width_is_a_power_of_two_and_the_sample_ten_times_the_counters_asked() -> None:
    sketch = FrequencySketch(1000)
    assert sketch.width == 4096
    assert sketch.sample_size == 10_240


def test_halving_ages_a_formerly_hot_key() -> None:
    sketch = FrequencySketch(64)
    for _ in range(20):
        sketch.increment("hot")
    assert sketch.estimate("hot") == 16
    # One-time keys fill the rest of the sample; at its end the counters halve.
    for i in range(sketch.sample_size - 20 - 1):
        sketch.increment(f"once{i}")
    assert sketch.estimate("hot") >= 15
    sketch.increment("last")
    assert sketch.estimate("hot") <= 8
    assert sketch._additions == sketch.sample_size // 2


def test_halve_halves_every_counter() -> None:
    sketch = FrequencySketch(8)
    sketch._table[:8] = bytes(range(8))
    sketch.halve()
    assert list(sketch._table[:8]) == [0, 0, 1, 1, 2, 2, 3, 3]


# -- the adaptive window ------------------------------------------------------------------


class StableKey(str):
    """A key (a number) whose hash is the same in every process, as an int's is."""

    __slots__ = ()

    def __hash__(self) -> int:
        return int(self)


def sliding_stream(length: int, live: int, new_every: int, seed: int) -> list[str]:
    """Each step reads one of the `live` newest keys; a new key arrives every `new_every` steps.

    The keys hash the same in every process (StableKey): with str's hash
    (salted per process) the climber stayed at its floor for
    PYTHONHASHSEED 142 of 0 to 215, and gained less than 0.25 for a few
    others. It leaves the floor only when a sample's hit ratio drops by more
    than the noise, since its first step (out of the window) moves nothing.
    """
    rng = random.Random(seed)
    return [StableKey(max(0, t // new_every - rng.randrange(live))) for t in range(length)]


def test_window_grows_when_recency_pays() -> None:
    stream = sliding_stream(200_000, live=60, new_every=4, seed=3)
    adaptive = Policy(100, 1024, 16, seed=1)
    static = Policy(100, 1024, 16, seed=1, adaptive=False)
    adaptive_ratio = policy_hit_ratio(adaptive, stream)
    static_ratio = policy_hit_ratio(static, stream)
    assert adaptive.window_max_cost >= 20
    assert static.window_max_cost == 1
    assert adaptive_ratio > static_ratio + 0.2


def test_window_never_shrinks_below_its_starting_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phoenix.policy, "_MIN_SAMPLE", 50)
    monkeypatch.setattr(phoenix.policy, "_NOISE_SIGMAS", 0.0)
    policy = Policy(1000, 8192, 16, seed=1)
    start = policy.window_max_cost
    assert start == 10
    lowest = start
    for key in zipf_stream(50_000, 5_000, 1.0, seed=9):
        if key in policy:
            policy.record_read(key)
        else:
            policy.add(key, 1)
        lowest = min(lowest, policy.window_max_cost)
    assert lowest == start


def test_window_stays_small_when_frequency_pays() -> None:
    stream = zipf_stream(60_000, 5_000, 1.0, seed=5)
    adaptive = Policy(100, 1024, 16, seed=1)
    static = Policy(100, 1024, 16, seed=1, adaptive=False)
    adaptive_ratio = policy_hit_ratio(adaptive, stream)
    static_ratio = policy_hit_ratio(static, stream)
    # Sampling noise may move it a step or two (the sketch's hash is salted).
    assert adaptive.window_max_cost <= 20
    assert adaptive_ratio >= static_ratio - 0.01


# -- hit ratio ----------------------------------------------------------------------------


def test_policy_beats_lru_on_a_zipf_stream() -> None:
    capacity = 500
    stream = zipf_stream(100_000, 10_000, 1.0, seed=2024)
    ours = policy_hit_ratio(Policy(capacity, 8 * capacity, 64, seed=1), stream)
    lru = lru_hit_ratio(capacity, stream)
    assert ours > lru + 0.02, (ours, lru)
