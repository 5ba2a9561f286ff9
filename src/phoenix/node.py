"""A PhoenixCache node: the store, the rules every write obeys, and its tasks.

The HTTP layer (and any other front end) calls these plain methods; every
write goes through `Node`, the one place where later it is also versioned and
pushed to peers.
"""

from __future__ import annotations

import logging
import secrets

import trio

from phoenix.clock import Clock, HybridClock, Version, WallClock
from phoenix.config import Config
from phoenix.errors import InvalidRequest, TooLarge
from phoenix.ops import FlushOp, Op, RemoveMatchingOp, RemoveOp, SetOp
from phoenix.store import NO_EXPIRY, Entry, Store

log = logging.getLogger("phoenix")

# Longest accepted TTL: 100 years keeps deadlines far inside any clock's range.
MAX_TTL_SECONDS = 100 * 365 * 24 * 3600

# How often expiry buckets are drained; expired keys are never returned in
# between, because reads check the deadline too.
EXPIRY_INTERVAL = 1.0


class Node:
    """One cache node. Start its background work with `await nursery.start(node.run)`."""

    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or WallClock()
        # Without a configured id a fresh one per process start: a restarted
        # node is a new incarnation to its peers.
        self.id = config.node_id or secrets.token_hex(6)
        self.hlc = HybridClock(self.clock)
        self.store = Store(
            max_cost=config.max_cost,
            num_counters=config.num_counters,
            buffer_items=config.buffer_items,
            clock=self.clock,
            tombstone_grace_ms=int(config.tombstone_grace_seconds * 1000),
        )

    def check_key(self, key: str) -> None:
        """Raise InvalidRequest or TooLarge unless `key` is an acceptable key."""
        if not key:
            raise InvalidRequest("key must not be empty")
        if len(key) > self.config.max_key_length or (
            not key.isascii() and len(key.encode("utf-8")) > self.config.max_key_length
        ):
            raise TooLarge(
                f"key is longer than max_key_length ({self.config.max_key_length} bytes)"
            )

    def get(self, key: str) -> Entry | None:
        return self.store.get(key)

    def set(self, key: str, value: bytes, content_type: str, ttl: int) -> bool:
        """Store `value` for `ttl` seconds (0: no expiry); False if not admitted."""
        self.check_key(key)
        if len(value) > self.config.max_value_size:
            raise TooLarge(
                f"value is larger than max_value_size ({self.config.max_value_size} bytes)"
            )
        if not 0 <= ttl <= MAX_TTL_SECONDS:
            raise InvalidRequest(f"ttl must be between 0 and {MAX_TTL_SECONDS} seconds")
        expires_at = self.clock.now_ms() + ttl * 1000 if ttl else NO_EXPIRY
        op = SetOp(key, value, content_type, expires_at, self._next_version())
        return bool(self.write(op))

    def remove(self, key: str) -> bool:
        self.check_key(key)
        return bool(self.write(RemoveOp(key, self._next_version())))

    def remove_matching(self, pattern: str) -> list[str]:
        if not pattern:
            raise InvalidRequest("pattern must not be empty")
        removed = self.write(RemoveMatchingOp(pattern, self._next_version()))
        assert isinstance(removed, list)
        return removed

    def flush(self) -> None:
        self.write(FlushOp(self._next_version()))

    def write(self, op: Op) -> bool | list[str]:
        """Apply a write made here; the one path every local write takes."""
        return self.apply(op)

    def apply(self, op: Op) -> bool | list[str]:
        """Apply a versioned write, local or from a peer (last writer wins)."""
        self.hlc.observe(op.version[0])
        store = self.store
        if isinstance(op, SetOp):
            return store.set(op.key, op.value, op.content_type, op.expires_at, op.version)
        if isinstance(op, RemoveOp):
            return store.remove(op.key, op.version)
        if isinstance(op, RemoveMatchingOp):
            return store.remove_matching(op.pattern, op.version)
        return store.flush(op.version)

    def _next_version(self) -> Version:
        return (self.hlc.now(), self.id)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The node's background work; runs until cancelled."""
        log.info("node %s ready", self.id)
        task_status.started()
        while True:
            await trio.sleep(EXPIRY_INTERVAL)
            self.store.expire_due()
