"""Replicas that apply the same versioned writes in any order end up identical."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix.clock import LOGICAL_BITS, FakeClock
from phoenix.ops import FlushOp, Op, RemoveMatchingOp, RemoveOp, SetOp
from phoenix.store import Store

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
)


def replay(ops: list[Op]) -> Store:
    store = Store(max_cost=10**9, num_counters=1000, buffer_items=4, clock=FakeClock())
    for op in ops:
        if isinstance(op, SetOp):
            store.set(op.key, op.value, op.content_type, op.expires_at, op.version)
        elif isinstance(op, RemoveOp):
            store.remove(op.key, op.version)
        elif isinstance(op, RemoveMatchingOp):
            store.remove_matching(op.pattern, op.version)
        else:
            store.flush(op.version)
    return store


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
