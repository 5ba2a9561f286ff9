"""The store against a plain dict model, driven by random operations (capacity aside)."""

from __future__ import annotations

import fnmatch

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from phoenix.clock import FakeClock, HybridClock, Version
from phoenix.store import NO_EXPIRY, Store

KEYS = st.sampled_from(["a", "b", "ab", "ba", "user:1", "user:2", "ü"])


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.store = Store(max_cost=10**9, num_counters=1000, buffer_items=4, clock=self.clock)
        # key -> (value, expires_at)
        self.model: dict[str, tuple[bytes, int]] = {}
        self.hlc = HybridClock(self.clock)

    def version(self) -> Version:
        return (self.hlc.now(), "n1")

    def live(self) -> dict[str, bytes]:
        now = self.clock.now_ms()
        return {
            key: value
            for key, (value, expires_at) in self.model.items()
            if expires_at == NO_EXPIRY or expires_at > now
        }

    @rule(key=KEYS, value=st.binary(max_size=8), ttl=st.integers(0, 5))
    def set(self, key: str, value: bytes, ttl: int) -> None:
        expires_at = self.clock.now_ms() + ttl * 1000 if ttl else NO_EXPIRY
        assert self.store.set(key, value, "t", expires_at, self.version())
        self.model[key] = (value, expires_at)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        entry = self.store.get(key)
        expected = self.live().get(key)
        assert (entry.value if entry else None) == expected

    @rule(key=KEYS)
    def remove(self, key: str) -> None:
        assert self.store.remove(key, self.version()) == (key in self.live())
        self.model.pop(key, None)

    @rule(pattern=st.sampled_from(["a", "user", "user:*", "?", "[ab]*", "zzz"]))
    def remove_matching(self, pattern: str) -> None:
        live = self.live()
        if any(c in pattern for c in "*?["):
            expected = {key for key in live if fnmatch.fnmatchcase(key, pattern)}
        else:
            expected = {key for key in live if pattern in key}
        assert set(self.store.remove_matching(pattern, self.version())) == expected
        for key in expected:
            del self.model[key]

    @rule()
    def flush(self) -> None:
        self.store.flush(self.version())
        self.model.clear()

    @rule(seconds=st.floats(0, 3))
    def advance_time(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def expire_due(self) -> None:
        self.store.expire_due()

    @rule()
    def listing_matches_model(self) -> None:
        listed = {key: entry.value for key, entry in self.store.items()}
        assert listed == self.live()

    @invariant()
    def every_known_key_is_filed_once_in_its_bucket(self) -> None:
        store = self.store
        filed = [key for keys in store._buckets.values() for key in keys]
        assert len(filed) == len(set(filed))
        assert set(filed) == set(store._entries) | set(store._tombstones) | set(store._evicted)


TestStoreAgainstModel = StoreMachine.TestCase
TestStoreAgainstModel.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
