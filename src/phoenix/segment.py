"""Intrusive LRU lists: the policy's segments, threaded through the entries.

A `Node` is what the policy knows of one held key: the key, its cost, the
reads since the policy last looked at it, the segment it is in and its two
neighbours there. The store's entries are nodes (phoenix.store.Entry extends
`Node`), so one object per key serves both, and a segment costs two pointers
per key instead of an OrderedDict's table slot and list node.

A `Segment` is a circular doubly linked list of nodes around a sentinel,
least recently used first, that keeps the count and total cost of its nodes.
Every operation is O(1) except iteration.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["UNLINKED", "Node", "Segment"]


class Node:
    """One held key as the policy sees it."""

    __slots__ = ("cost", "hits", "key", "next", "prev", "segment")

    def __init__(self, key: str, cost: int, *, sentinel: bool = False) -> None:
        self.key = key
        self.cost = cost
        # Reads since the policy last looked at this node: the store bumps it
        # on a hit, the policy folds it into its sketch when it needs to.
        self.hits = 0
        self.segment: Segment | None = None
        # Out of any segment, a node points at UNLINKED, never at itself: a
        # self-reference is a cycle, and a node dropped with one would wait
        # for the garbage collector's full passes instead of going at once.
        # Only a sentinel (a segment's head, UNLINKED) is linked to itself.
        self.prev: Node = self if sentinel else UNLINKED
        self.next: Node = self if sentinel else UNLINKED

    @staticmethod
    def sentinel() -> Node:
        """A node linked to itself: a segment's head, or UNLINKED."""
        return Node("", 0, sentinel=True)


UNLINKED = Node.sentinel()


class Segment:
    """Nodes in LRU order (least recent first), with their count and total cost."""

    __slots__ = ("cost", "count", "head", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.head = Node.sentinel()  # head.next is the LRU node
        self.cost = 0
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Node]:
        """The nodes, least recently used first (do not change the segment meanwhile)."""
        head = self.head
        node = head.next
        while node is not head:
            yield node
            node = node.next

    def __repr__(self) -> str:
        return f"<Segment {self.name}: {self.count} keys, cost {self.cost}>"

    def first(self) -> Node | None:
        """The least recently used node, or None when empty."""
        node = self.head.next
        return None if node is self.head else node

    def push(self, node: Node) -> None:
        """Add `node` (in no segment) at the most recently used end."""
        head = self.head
        tail = head.prev
        node.prev = tail
        node.next = head
        tail.next = node
        head.prev = node
        node.segment = self
        self.cost += node.cost
        self.count += 1

    def unlink(self, node: Node) -> None:
        """Take `node` (in this segment) out."""
        prev, after = node.prev, node.next
        prev.next = after
        after.prev = prev
        node.prev = node.next = UNLINKED
        node.segment = None
        self.cost -= node.cost
        self.count -= 1

    def move_to_end(self, node: Node) -> None:
        """Make `node` (in this segment) the most recently used."""
        head = self.head
        tail = head.prev
        if tail is node:
            return
        prev, after = node.prev, node.next
        prev.next = after
        after.prev = prev
        node.prev = tail
        node.next = head
        tail.next = node
        head.prev = node

    def clear(self) -> None:
        head = self.head
        head.prev = head.next = head
        self.cost = 0
        self.count = 0
