"""A PhoenixCache node: the store, the rules every write obeys, and its tasks.

The HTTP layer calls these plain methods; every local write goes through
`Node.write`, which versions it, applies it and queues it to the peers.
`Node.run` owns the node's background work in one nursery: expiry, one
replicator per peer, the heartbeat, start-up recovery and catch-up.
"""

from __future__ import annotations

import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import httpx
import trio

from phoenix.clock import Clock, HybridClock, Version, WallClock, physical_ms
from phoenix.config import Config
from phoenix.errors import InvalidRequest, NotReady, PeerCallFailed, TooLarge, utf8
from phoenix.histogram import Histogram
from phoenix.ops import EvictedOp, FlushOp, Op, RemoveMatchingOp, RemoveOp, SetOp
from phoenix.peer_client import PeerClient
from phoenix.peers import Peer, PeerState
from phoenix.recovery import CatchUpReport, catch_up
from phoenix.replication import LAG_BUCKETS, Acks, Outbox, Queued, replicate
from phoenix.store import NO_EXPIRY, Entry, Store

log = logging.getLogger("phoenix")

# Longest accepted TTL: 100 years keeps deadlines far inside any clock's range.
MAX_TTL_SECONDS = 100 * 365 * 24 * 3600

# How often expiry buckets are drained (expired keys are never returned in
# between, because reads check the deadline too) and digests settled.
UPKEEP_INTERVAL = 1.0

# Changed keys whose digests are settled between two checkpoints (a few ms).
SETTLE_BATCH = 4096
# How far ahead of this node's wall clock a peer's version may be. Taking
# one further ahead (a clock set wrong, or a forged op) would move this
# node's clock, and so every version it writes, that far ahead for good.
MAX_CLOCK_AHEAD_MS = 24 * 3600 * 1000


def peer_tls_context(config: Config) -> ssl.SSLContext:
    """How this node verifies peers' https certificates, and shows its own.

    With ca_certs, peers are verified against that CA (else the system's);
    with certfile, the node presents its certificate, for mutual TLS.
    """
    context = ssl.create_default_context(cafile=config.ca_certs or None)
    if config.certfile:
        context.load_cert_chain(config.certfile, config.keyfile)
    return context


class Node:
    """One cache node. Start its background work with `await nursery.start(node.run)`."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or WallClock()
        # Without a configured id a fresh one per process start. The
        # incarnation is always fresh: peers see that this process restarted
        # (and lost its memory) even when node_id is fixed.
        self.id = config.node_id or secrets.token_hex(6)
        self.incarnation = secrets.token_hex(6)
        self.hlc = HybridClock(self.clock)
        self.store = Store(
            max_cost=config.max_cost,
            num_counters=config.num_counters,
            buffer_items=config.buffer_items,
            clock=self.clock,
            tombstone_grace_ms=int(config.tombstone_grace_seconds * 1000),
        )
        self.peers = [Peer(url, Outbox(config.outbox_size)) for url in config.peers]
        self.ready = not self.peers
        self.recovery = "no peers configured" if self.ready else "starting"
        self.last_catch_up: CatchUpReport | None = None
        self.catch_up_runs = 0
        self.catch_up_bytes = 0
        self.replication_lag = Histogram(LAG_BUCKETS)
        self._transport = transport
        self._client: PeerClient | None = None
        self._catch_up_wanted = trio.Event()
        # More work for Node.run's nursery, added by whoever builds the app
        # (the whitelist watcher), so that both ways of serving run it.
        self.background: list[Callable[[], Awaitable[None]]] = []

    # Reads and the rules of input.

    def check_key(self, key: str) -> None:
        """Raise InvalidRequest or TooLarge unless `key` is an acceptable key."""
        if not key:
            raise InvalidRequest("key must not be empty")
        limit = self.config.max_key_length
        if len(key) > limit or (
            not key.isascii() and len(utf8(key, "key must be valid UTF-8")) > limit
        ):
            raise TooLarge(f"key is longer than max_key_length ({limit} bytes)")

    def check_ready(self) -> None:
        """Raise NotReady while start-up recovery has not finished."""
        if not self.ready:
            raise NotReady("node is recovering its data from a peer; retry shortly")

    def get(self, key: str) -> Entry | None:
        return self.store.get(key)

    # Local writes: versioned here, applied, queued to peers.

    def set(
        self, key: str, value: bytes, content_type: str, ttl: int, acks: Acks | None = None
    ) -> bool:
        """Store `value` for `ttl` seconds (0: no expiry); False if not admitted."""
        self._check_item(key, value)
        return self._set(key, value, content_type, self._expiry_after(ttl), acks)

    def set_many(
        self, items: Sequence[tuple[str, bytes, str]], ttl: int, acks: Acks | None = None
    ) -> list[str]:
        """Store (key, value, content type) items, all checked before any is written.

        Returns the keys the admission policy refused. With `acks`, the answer
        waits for the last write only: a peer applies a batch in order.
        """
        for key, value, _ in items:
            self._check_item(key, value)
        expires_at = self._expiry_after(ttl)
        last = len(items) - 1
        return [
            key
            for index, (key, value, content_type) in enumerate(items)
            if not self._set(key, value, content_type, expires_at, acks if index == last else None)
        ]

    def set_until(
        self, key: str, value: bytes, content_type: str, expires_at: int, acks: Acks | None = None
    ) -> bool:
        """Store `value` until `expires_at` (ms since the epoch; NO_EXPIRY: never).

        The same checks and write as `set`, with an absolute deadline in
        milliseconds, for the RESP listener's PX, PXAT, PEXPIRE and for
        changing a key's expiry (a new versioned write of the same value).
        False if not admitted.
        """
        self._check_item(key, value)
        if expires_at != NO_EXPIRY and not (
            0 < expires_at <= self.clock.now_ms() + MAX_TTL_SECONDS * 1000
        ):
            raise InvalidRequest(f"expiry must be within {MAX_TTL_SECONDS} seconds from now")
        return self._set(key, value, content_type, expires_at, acks)

    def _check_item(self, key: str, value: bytes) -> None:
        self.check_key(key)
        if len(value) > self.config.max_value_size:
            raise TooLarge(
                f"value is larger than max_value_size ({self.config.max_value_size} bytes)"
            )

    def _expiry_after(self, ttl: int) -> int:
        if not 0 <= ttl <= MAX_TTL_SECONDS:
            raise InvalidRequest(f"ttl must be between 0 and {MAX_TTL_SECONDS} seconds")
        return self.clock.now_ms() + ttl * 1000 if ttl else NO_EXPIRY

    def _set(
        self, key: str, value: bytes, content_type: str, expires_at: int, acks: Acks | None
    ) -> bool:
        """`write` of a SetOp, for the hot path: the op is built only when there are peers."""
        version = self._next_version()
        held = self.store.set(key, value, content_type, expires_at, version)
        if self.peers:
            self._push(SetOp(key, value, content_type, expires_at, version), acks)
        return held

    def remove(self, key: str, acks: Acks | None = None) -> bool:
        self.check_key(key)
        return bool(self.write(RemoveOp(key, self._next_version()), acks))

    def remove_matching(self, pattern: str, acks: Acks | None = None) -> list[str]:
        """Remove every key that matches `pattern` (store.matcher); the keys removed.

        A pattern longer than 4 x max_key_length bytes is refused, as RESP's
        KEYS refuses it: compiling one of 64 KB stalled the node for 0.3 s,
        and the regex cache and the store's pattern removals kept it.
        """
        if not pattern:
            raise InvalidRequest("pattern must not be empty")
        limit = 4 * self.config.max_key_length
        if len(pattern) > limit or len(utf8(pattern, "pattern must be valid UTF-8")) > limit:
            raise TooLarge(f"pattern longer than {limit} bytes (4 x max_key_length)")
        removed = self.write(RemoveMatchingOp(pattern, self._next_version()), acks)
        return cast(list[str], removed)

    def flush(self, acks: Acks | None = None) -> None:
        self.write(FlushOp(self._next_version()), acks)

    def write(self, op: Op, acks: Acks | None = None) -> object:
        """Apply a write made here and queue it to every peer that takes pushes."""
        result = self._apply_to_store(op)  # its version comes from our clock: nothing to observe
        self._push(op, acks)
        return result

    def apply(self, op: Op) -> object:
        """Apply a versioned write, local or from a peer (last writer wins).

        InvalidRequest, and nothing applied, if its version is more than
        MAX_CLOCK_AHEAD_MS ahead of this node's wall clock.
        """
        self._check_not_ahead([op])
        return self._observe_and_apply(op)

    def _observe_and_apply(self, op: Op) -> object:
        self.hlc.observe(op.version[0])
        return self._apply_to_store(op)

    def _check_not_ahead(self, ops: Sequence[Op]) -> None:
        limit = self.clock.now_ms() + MAX_CLOCK_AHEAD_MS
        for op in ops:
            if physical_ms(op.version[0]) > limit:
                raise InvalidRequest(
                    f"version {list(op.version)} is more than a day ahead of this node's clock"
                )

    def _apply_to_store(self, op: Op) -> object:
        store = self.store
        if isinstance(op, SetOp):
            return store.set(op.key, op.value, op.content_type, op.expires_at, op.version)
        if isinstance(op, RemoveOp):
            return store.remove(op.key, op.version)
        if isinstance(op, RemoveMatchingOp):
            return store.remove_matching(op.pattern, op.version)
        if isinstance(op, EvictedOp):
            return store.evicted(op.key, op.expires_at, op.version)
        return store.flush(op.version)

    def apply_pushed(self, ops: Sequence[Op], *, timed: bool = True) -> None:
        """Apply, in order, writes a peer pushed; time each from its version's
        clock, unless not `timed` (a peer's catch-up sent them).

        All are checked before any is applied (`apply`'s InvalidRequest).
        """
        self._check_not_ahead(ops)
        for op in ops:
            self._observe_and_apply(op)
        if not timed:
            return
        now_ms = self.clock.now_ms()
        for op in ops:
            self.replication_lag.observe((now_ms - physical_ms(op.version[0])) / 1000)

    def acks_for(self, needed: int) -> Acks:
        """A write concern: wait for `needed` peers; InvalidRequest if there are fewer."""
        others = [p for p in self.peers if p.state is not PeerState.SELF]
        if not 0 <= needed <= len(others):
            raise InvalidRequest(f"sync must be between 0 and {len(others)} (the other peers)")
        return Acks(needed)

    def missing_acks(self, acks: Acks) -> list[str]:
        return [
            p.url for p in self.peers if p.state is not PeerState.SELF and p.url not in acks.peers
        ]

    def _next_version(self) -> Version:
        return (self.hlc.now(), self.id)

    def _push(self, op: Op, acks: Acks | None) -> None:
        queued = None
        for peer in self.peers:
            if not peer.accepts_pushes:
                continue
            if queued is None:  # one for every outbox, and none without peers
                queued = Queued(op, acks)
            if not peer.outbox.put(queued):
                peer.fell_behind()
                self._catch_up_wanted.set()

    async def drain(self) -> None:
        """Wait until what is queued for the peers that take pushes is sent.

        A stopping node calls it, bounded, once it takes no more requests:
        the writes only its outboxes hold would go with it.
        """
        for peer in self.peers:
            if peer.accepts_pushes:  # a peer disabled meanwhile is let go too
                await peer.outbox.finished()

    # Background work.

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The node's background work; runs until cancelled.

        Reports started at once (writes are taken from then on); reads are
        served once start-up recovery is done (`ready`).
        """
        async with httpx.AsyncClient(
            transport=self._transport, timeout=None, verify=peer_tls_context(self.config)
        ) as http:
            self._client = PeerClient(
                http,
                self.id,
                timeout=self.config.write_timeout,
                cluster_key=self.config.cluster_key,
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._upkeep_forever)
                for task in self.background:
                    nursery.start_soon(task)
                for peer in self.peers:
                    nursery.start_soon(self._replicate_to, peer)
                log.info("node %s started (incarnation %s)", self.id, self.incarnation)
                task_status.started()
                if self.peers:
                    await self._recover_at_start()
                    nursery.start_soon(self._heartbeat_forever)
                    nursery.start_soon(self._catch_up_forever)

    async def _upkeep_forever(self) -> None:
        while True:
            await trio.sleep(UPKEEP_INTERVAL)
            self.store.expire_due()
            while self.store.settle_digests(SETTLE_BATCH):
                await trio.sleep(0)  # let requests in between batches

    async def _replicate_to(self, peer: Peer) -> None:
        client = self._peer_client()

        async def deliver(batch: Sequence[Queued]) -> bool:
            try:
                applied_by = await client.apply_encoded(peer.url, [q.json() for q in batch])
            except PeerCallFailed:
                peer.push_failures += 1
                raise
            peer.batches_sent += 1
            if applied_by == (self.id, self.incarnation):
                # Pushed to ourselves before the heartbeat found out.
                self._found_self(peer)
                return False
            return True

        def still_wanted() -> bool:
            return peer.accepts_pushes

        await replicate(peer.url, peer.outbox, deliver, still_wanted)

    async def _recover_at_start(self) -> None:
        """Pull the data from the first live peer that is ready itself.

        A peer still recovering (restarted with this one) may hold nothing
        yet: synced from it, this node would say it is ready with no data.
        When every peer answers and all are recovering, the whole cluster is
        starting and there is nothing to pull. Else waits at most
        heart_beat_interval_in_seconds times max_retries_to_disabled_node for
        a ready peer; then serves without a sync and says so (the regular
        catch-up pulls the data once one is ready).
        """
        config = self.config
        patience = config.heart_beat_interval_in_seconds * config.max_retries_to_disabled_node
        deadline = trio.current_time() + patience
        while True:
            await self._ping_all()
            for peer in self.peers:
                if peer.state is PeerState.UP and peer.ready and await self._catch_up_with(peer):
                    self._become_ready(f"synced from {peer.url}")
                    return
            others = [p for p in self.peers if p.state is not PeerState.SELF]
            if not others:
                self._become_ready("no other peers")
                return
            if all(p.state is PeerState.UP and not p.ready for p in others):
                # The whole cluster is starting: no one holds data to pull.
                self._become_ready("every peer is starting too")
                return
            if trio.current_time() >= deadline:
                self._become_ready(
                    f"no ready peer answered within {patience:g}s; serving without sync"
                )
                return
            await trio.sleep(min(1.0, config.heart_beat_interval_in_seconds))

    def _become_ready(self, how: str) -> None:
        self.ready = True
        self.recovery = how
        log.info("node %s ready: %s", self.id, how)

    async def _heartbeat_forever(self) -> None:
        interval = self.config.anti_entropy_interval_in_seconds
        next_round = trio.current_time() + interval
        turn = 0
        beat = trio.current_time()
        while True:
            # Beats keep their cadence: a ping waits at most an interval, and
            # sleeping a whole interval after it made each miss of a hung
            # peer last up to two (30 s, not 15, to mark it down by default).
            beat = max(beat + self.config.heart_beat_interval_in_seconds, trio.current_time())
            await trio.sleep_until(beat)
            await self._ping_all()
            live = [p for p in self.peers if p.state is PeerState.UP and p.ready]
            if interval and live and trio.current_time() >= next_round:
                # A safety net for anything a push missed: one peer a round.
                live[turn % len(live)].sync_due = True
                turn += 1
                next_round = trio.current_time() + interval
            if any(p.needs_catch_up or p.sync_due for p in live):
                self._catch_up_wanted.set()

    async def _catch_up_forever(self) -> None:
        while True:
            await self._catch_up_wanted.wait()
            self._catch_up_wanted = trio.Event()
            for peer in self.peers:
                wanted = peer.needs_catch_up or peer.sync_due
                if wanted and peer.state is PeerState.UP and peer.ready:
                    await self._catch_up_with(peer)

    def _sync_survivors(self, gone: Peer) -> None:
        """A peer died or restarted: the others may each hold writes it pushed
        to only some of them, so every pair of survivors compares."""
        for peer in self.peers:
            if peer is not gone and peer.state is PeerState.UP:
                peer.sync_due = True

    async def _catch_up_with(self, peer: Peer) -> bool:
        # Pushes resume now; the catch-up covers every write made before.
        behind, peer.needs_catch_up, peer.sync_due = peer.needs_catch_up, False, False
        try:
            report = await catch_up(self.store, self.apply, self._peer_client(), peer.url)
        except (PeerCallFailed, InvalidRequest) as error:  # InvalidRequest: `apply` refused
            log.warning("catch-up with %s failed: %s", peer.url, error)
            peer.needs_catch_up, peer.sync_due = behind, True
            return False
        peer.last_catch_up_ms = self.clock.now_ms()
        self.last_catch_up = report
        self.catch_up_runs += 1
        self.catch_up_bytes += report.bytes
        log.log(
            logging.INFO if report.differing_buckets else logging.DEBUG,
            "caught up with %s: %d differing buckets, %d writes received, %d sent, %d bytes, %.3fs",
            peer.url,
            report.differing_buckets,
            report.received,
            report.sent,
            report.bytes,
            report.seconds,
        )
        return True

    async def _ping_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for peer in self.peers:
                if peer.state is not PeerState.SELF:
                    nursery.start_soon(self._ping, peer)

    async def _ping(self, peer: Peer) -> None:
        timeout = min(self.config.heart_beat_interval_in_seconds, self.config.write_timeout)
        try:
            info = await self._peer_client().ping(peer.url, timeout)
        except PeerCallFailed as error:
            was_down = peer.state is PeerState.DOWN
            peer.mark_missed(self.config.max_retries_to_disabled_node, str(error))
            if not was_down and peer.state is PeerState.DOWN:
                self._sync_survivors(peer)
            return
        if info.node_id == self.id and info.incarnation == self.incarnation:
            self._found_self(peer)
            return
        if peer.incarnation is not None and info.incarnation != peer.incarnation:
            # It restarted and lost its memory: catch it up once it is ready.
            peer.needs_catch_up = True
            self._sync_survivors(peer)
        peer.mark_answered(info.node_id, info.incarnation, info.ready, self.clock.now_ms())

    def _found_self(self, peer: Peer) -> None:
        if peer.state is not PeerState.SELF:
            log.info("peer %s is this node itself; ignoring it", peer.url)
        peer.state = PeerState.SELF
        peer.node_id = self.id
        peer.failures = 0
        peer.outbox.drop()

    def _peer_client(self) -> PeerClient:
        if self._client is None:
            raise RuntimeError("Node.run is not running")
        return self._client
