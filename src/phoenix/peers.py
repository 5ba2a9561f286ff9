"""The peer table: who the other nodes are and what state each one is in.

A peer is `unknown` until its first heartbeat answers, then `up`; after
max_retries_to_disabled_node missed heartbeats in a row it is `down` (no more
pushes, its outbox dropped, marked as needing catch-up) until it answers
again. The entry of `peers` that turns out to be this node itself is `self`
and is ignored.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

import attrs

from phoenix.replication import Outbox

log = logging.getLogger("phoenix.peers")


class PeerState(enum.Enum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"
    SELF = "self"


@attrs.define
class Peer:
    url: str
    outbox: Outbox
    node_id: str | None = None
    incarnation: str | None = None
    ready: bool = False
    state: PeerState = PeerState.UNKNOWN
    failures: int = 0
    last_contact_ms: int | None = None
    last_catch_up_ms: int | None = None
    # Set when writes may have missed this peer (it was down, or its outbox
    # overflowed); cleared when a catch-up with it starts.
    needs_catch_up: bool = False
    # Set when an anti-entropy round with this peer is due while pushes go
    # on: periodically, and when another peer went away mid-replication.
    sync_due: bool = False
    batches_sent: int = 0
    push_failures: int = 0

    @property
    def accepts_pushes(self) -> bool:
        return self.state in (PeerState.UP, PeerState.UNKNOWN) and not self.needs_catch_up

    def mark_answered(self, node_id: str, incarnation: str, ready: bool, now_ms: int) -> None:
        """A heartbeat (or any call) answered."""
        self.node_id, self.incarnation, self.ready = node_id, incarnation, ready
        self.failures = 0
        self.last_contact_ms = now_ms
        if self.state is not PeerState.UP:
            log.info("peer %s (%s) is up", self.url, node_id)
            self.state = PeerState.UP

    def mark_missed(self, max_failures: int, error: str) -> None:
        """A heartbeat failed; after `max_failures` in a row the peer is disabled."""
        self.failures += 1
        if self.state is not PeerState.DOWN and self.failures >= max_failures:
            log.warning(
                "peer %s is down after %d missed heartbeats: %s", self.url, self.failures, error
            )
            self.disable()

    def disable(self) -> None:
        self.state = PeerState.DOWN
        self.outbox.drop()
        self.needs_catch_up = True

    def fell_behind(self) -> None:
        """Its outbox overflowed: drop it and catch the peer up instead."""
        if not self.needs_catch_up:
            log.warning("outbox to %s is full; it will be caught up by anti-entropy", self.url)
        self.outbox.drop()
        self.needs_catch_up = True

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "node_id": self.node_id,
            "state": self.state.value,
            "consecutive_failures": self.failures,
            "outbox_depth": self.outbox.depth,
            "needs_catch_up": self.needs_catch_up,
            "last_contact_ms": self.last_contact_ms,
            "last_catch_up_ms": self.last_catch_up_ms,
        }
