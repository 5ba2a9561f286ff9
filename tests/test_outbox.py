"""The per-peer outbox: bounded in writes and in bytes, whatever the order of events."""

from __future__ import annotations

import trio
import trio.testing

from phoenix.ops import SetOp
from phoenix.replication import Outbox, Queued


def queued(index: int) -> Queued:
    return Queued(SetOp(f"k{index}", b"v" * 1000, "t", 0, (index + 1, "n1")), None)


async def test_bytes_stay_true_when_a_batch_taken_is_followed_by_a_drop() -> None:
    # A write handed straight to the waiting replicator, then the outbox
    # dropped (the peer fell behind): the count went below zero, loosening the bound.
    outbox = Outbox(capacity=2)
    taken: list[list[Queued]] = []

    async def replicator() -> None:
        while True:
            taken.append(await outbox.next_batch())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(replicator)
        await trio.testing.wait_all_tasks_blocked()
        for index in range(4):
            if not outbox.put(queued(index)):
                outbox.drop()
        await trio.testing.wait_all_tasks_blocked()
        assert outbox.depth == 0
        assert outbox.bytes == 0
        assert outbox.put(queued(9))
        assert outbox.bytes == queued(9).size
        nursery.cancel_scope.cancel()
