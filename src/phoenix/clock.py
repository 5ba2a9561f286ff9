"""Wall-clock time for expiry deadlines, behind one small object tests replace.

Intervals (heartbeats, timeouts) use `trio.current_time()` instead, so that
pytest-trio's autojump_clock drives them; only absolute deadlines that must
mean the same moment on every node come from here.
"""

from __future__ import annotations

import time
from typing import Protocol

import attrs


class WallClock:
    """The real clock: milliseconds since the Unix epoch."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


@attrs.define
class FakeClock:
    """A clock that moves only when told to; for tests and simulations."""

    now: int = 1_700_000_000_000

    def now_ms(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


class Clock(Protocol):
    """Anything that tells the wall-clock time in milliseconds since the epoch."""

    def now_ms(self) -> int: ...


# A version is (hybrid logical timestamp, writer's node id); tuples compare
# field by field, so the greatest version is the same on every node.
Version = tuple[int, str]

# The low bits of a hybrid timestamp count events within one millisecond.
LOGICAL_BITS = 16


class HybridClock:
    """A hybrid logical clock (Kulkarni et al., 2014) over a wall clock.

    Timestamps are `wall_ms << 16 | counter`: they follow the wall clock, never
    go backwards, and a node that sees a later timestamp from a peer moves past
    it, so a write made after reading another node's write orders after it.
    """

    def __init__(self, wall: Clock) -> None:
        self._wall = wall
        self._last = 0

    def now(self) -> int:
        """A new timestamp, greater than every one issued or observed before."""
        stamp = self._wall.now_ms() << LOGICAL_BITS
        following = self._last + 1
        # Not max(): this runs once per write, and the call costs more than the test.
        self._last = stamp if stamp > following else following
        return self._last

    def observe(self, timestamp: int) -> None:
        """Take note of a peer's timestamp, so later ones here exceed it."""
        if timestamp > self._last:
            self._last = timestamp


def physical_ms(timestamp: int) -> int:
    """The wall-clock milliseconds inside a hybrid timestamp."""
    return timestamp >> LOGICAL_BITS
