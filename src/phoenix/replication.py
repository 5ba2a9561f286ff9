"""Push replication: a bounded outbox per peer and the task that drains it.

A local write is queued to every peer that accepts pushes; one replicator task
per peer sends what is queued in batches (bounded by count and bytes), in
order, over the node's kept-alive HTTP client, retrying with backoff until it
is delivered or the peer is disabled. A full outbox is never a silent loss:
the peer is marked for catch-up by anti-entropy instead (peers.Peer).
The receiving node times each pushed write from its version (LagHistogram).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from phoenix.errors import PeerCallFailed
from phoenix.ops import MAX_BATCH_BYTES, MAX_BATCH_OPS, Op, encoded_size, to_json

log = logging.getLogger("phoenix.replication")

# An outbox holds about this much at most, whatever outbox_size allows: 500
# writes of 1 MiB queued for a paused peer took the node from 60 to 562 MB.
OUTBOX_BYTES = 256 * 1024 * 1024
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0

# Upper bounds (seconds) of the replication lag histogram's buckets: fine up
# to 100 ms, where a healthy cluster's lag lies, then coarse.
LAG_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


@attrs.define(eq=False)
class Acks:
    """Who has applied one write; `wait` returns once `needed` peers have."""

    needed: int
    peers: set[str] = attrs.field(factory=set)
    _done: trio.Event = attrs.field(factory=trio.Event)

    def ack(self, url: str) -> None:
        self.peers.add(url)
        if len(self.peers) >= self.needed:
            self._done.set()

    async def wait(self) -> None:
        if self.needed > 0:
            await self._done.wait()


@attrs.define(eq=False)
class Queued:
    """One write on its way to the peers: the same object goes to every outbox."""

    op: Op
    acks: Acks | None
    _encoded: bytes | None = attrs.field(default=None, init=False)
    size: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.size = encoded_size(self.op)

    def json(self) -> bytes:
        """The op's JSON form, encoded once for all the peers."""
        if self._encoded is None:
            self._encoded = to_json(self.op)
        return self._encoded


class Outbox:
    """A bounded queue of writes for one peer (a trio memory channel): at most
    `capacity` writes, and about OUTBOX_BYTES (one write may be larger)."""

    def __init__(self, capacity: int) -> None:
        self._send, self._receive = trio.open_memory_channel[Queued](capacity)
        self.max_bytes = OUTBOX_BYTES
        self.bytes = 0  # the encoded size of what is queued
        self.unfinished = 0  # writes queued or being sent
        # Made only when `finished` waits: not one per write.
        self._finished: trio.Event | None = None

    @property
    def depth(self) -> int:
        return self._send.statistics().current_buffer_used

    def put(self, item: Queued) -> bool:
        """Queue `item`; False when the outbox is full."""
        if self.bytes and self.bytes + item.size > self.max_bytes:
            return False
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            return False
        self.bytes += item.size
        self.unfinished += 1
        return True

    def drop(self) -> None:
        """Throw away everything queued (the peer will be caught up instead)."""
        while True:
            try:
                item = self._receive.receive_nowait()
            except trio.WouldBlock:
                return
            # Not bytes = 0: a batch handed to the replicator already is taken off when it returns.
            self.bytes -= item.size
            self.done(1)

    def done(self, count: int) -> None:
        """`count` writes taken by `next_batch` were delivered or given up."""
        self.unfinished -= count
        if not self.unfinished and self._finished is not None:
            self._finished.set()
            self._finished = None

    async def finished(self) -> None:
        """Wait until nothing is queued or being sent."""
        if not self.unfinished:
            return
        if self._finished is None:
            self._finished = trio.Event()
        await self._finished.wait()

    async def next_batch(self) -> list[Queued]:
        """Wait for at least one write, then take what is queued, up to the bounds."""
        batch = [await self._receive.receive()]
        size = batch[0].size
        while len(batch) < MAX_BATCH_OPS and size < MAX_BATCH_BYTES:
            try:
                item = self._receive.receive_nowait()
            except trio.WouldBlock:
                break
            batch.append(item)
            size += item.size
        self.bytes -= size
        return batch


# Sends a batch; True when a peer applied it, False when it turned out to be
# this node itself (which must not count towards a write concern).
Deliver = Callable[[Sequence[Queued]], Awaitable[bool]]


async def replicate(
    url: str, outbox: Outbox, deliver: Deliver, still_wanted: Callable[[], bool]
) -> None:
    """Drain `outbox` to one peer forever: batch, send, retry with backoff.

    A batch is given up only when `still_wanted()` turns false (the peer was
    disabled and will be caught up by anti-entropy).
    """
    while True:
        batch = await outbox.next_batch()
        delay = BACKOFF_FIRST
        while still_wanted():
            try:
                acknowledged = await deliver(batch)
            except PeerCallFailed as error:
                log.debug("push of %d ops to %s failed: %s", len(batch), url, error)
                await trio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            for item in batch:
                if acknowledged and item.acks is not None:
                    item.acks.ack(url)
            break
        outbox.done(len(batch))
