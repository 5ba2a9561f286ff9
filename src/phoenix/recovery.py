"""Anti-entropy: two nodes find and exchange only what differs between them.

Every key lives in one of the store's buckets, and each bucket keeps the XOR
of the fingerprints of the (key, version) pairs it knows (a write notes its
key; the digest is brought up to date in the background, or when asked for).
To catch up with a peer, a node fetches the peer's bucket digests, lists its
own (key, version) pairs for the buckets whose digests differ, and
the peer answers with the writes the node lacks and the keys it wants in
return; last writer wins decides each key. Work and bytes grow with the size
of the difference, not of the cache.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Container, Iterable
from typing import Any

import attrs
import trio

from phoenix.clock import Version
from phoenix.errors import InvalidRequest, PeerCallFailed
from phoenix.ops import (
    EvictedOp,
    FlushOp,
    Op,
    RemoveMatchingOp,
    RemoveOp,
    SetOp,
    batches,
    decode,
    encoded_size,
)
from phoenix.peer_client import PeerClient
from phoenix.store import BUCKET_COUNT, NO_VERSION, Store

log = logging.getLogger("phoenix.recovery")

# Digests are compared in two levels: groups of this many buckets first (the
# XOR of their digests), then the buckets of the groups that differ.
GROUP_SIZE = 64
GROUP_COUNT = BUCKET_COUNT // GROUP_SIZE
# Groups whose bucket digests are asked for in one call.
GROUPS_PER_CALL = 64
# Buckets listed in one reconcile call, and about how many bytes their
# (key, version) list may take (one bucket may take more): a peer refuses a
# body past 2 MiB at the least (app.create_app's max_body).
BUCKETS_PER_CALL = 256
LISTING_BYTES = 1024 * 1024
# The writes of one reconcile answer are cut at about this many bytes (one
# may be larger): 256 buckets of large values made answers of gigabytes.
ANSWER_BYTES = 4 * 1024 * 1024
# How often the same buckets are asked for again after cut answers, at most
# (64 answers: about 256 MiB); what is left waits for the next round.
ASKS_PER_CALL = 64
# A catch-up that takes longer than this logs its progress, at most once per
# this many seconds.
PROGRESS_INTERVAL = 2.0


@attrs.define
class CatchUpReport:
    peer: str
    differing_buckets: int = 0
    received: int = 0  # writes applied here
    sent: int = 0  # writes sent to the peer
    bytes: int = 0  # both directions, request and answer bodies
    seconds: float = 0.0


@attrs.define
class Progress:
    """Logs how far a long catch-up has got, at most once every `interval` seconds.

    Nothing is logged before `interval` has passed, so a quick catch-up
    (the usual case) logs only its final line. `now` is trio's clock, so
    autojump_clock drives it in tests; any clock in seconds will do.
    """

    peer: str
    total_buckets: int = 0
    interval: float = PROGRESS_INTERVAL
    now: Callable[[], float] = trio.current_time
    started: float = attrs.field(init=False)
    next_line: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.started = self.now()
        self.next_line = self.started + self.interval

    def update(self, report: CatchUpReport, buckets_done: int, moved_bytes: int) -> bool:
        """Log a progress line if one is due; True when it did."""
        now = self.now()
        if now < self.next_line:
            return False
        self.next_line = now + self.interval
        elapsed = max(now - self.started, 1e-9)
        log.info(
            "catching up with %s: %d of %d buckets, %d writes received, %d sent, "
            "%d bytes in %.1fs (%.0f KB/s)",
            self.peer,
            buckets_done,
            self.total_buckets,
            report.received,
            report.sent,
            moved_bytes,
            elapsed,
            moved_bytes / elapsed / 1000,
        )
        return True


# The side that answers.


def summary(store: Store) -> dict[str, Any]:
    """What a peer compares first: flush version, pattern removals, group digests."""
    return {
        "flush_version": list(store.flush_version),
        "pattern_removals": [[p, list(v)] for p, v in store.pattern_removals.items()],
        "groups": _pack(_group_digests(store.digests())),
    }


def bucket_digests(store: Store, groups: Iterable[int]) -> dict[str, str]:
    """The bucket digests of each listed group, packed."""
    digests = store.digests()
    return {
        str(group): _pack(digests[group * GROUP_SIZE : (group + 1) * GROUP_SIZE])
        for group in groups
    }


def reconcile(
    store: Store, theirs: dict[int, dict[str, Version]]
) -> tuple[list[Op], list[str], list[str], bool]:
    """For the listed buckets: the writes the peer lacks (cut at about
    ANSWER_BYTES), the keys we want, those of them we know nothing of, and
    whether the writes were cut (the peer may ask again)."""
    for_them: list[str] = []
    known_to_them: set[str] = set()
    wanted: list[str] = []
    lacking: list[str] = []
    for bucket, their_versions in theirs.items():
        mine = store.bucket_versions(bucket)
        for key, version in mine.items():
            their_version = their_versions.get(key)
            if their_version is None or version > their_version:
                for_them.append(key)
                if their_version is not None:
                    known_to_them.add(key)
        for key, their_version in their_versions.items():
            my_version = mine.get(key)
            if my_version is None:
                lacking.append(key)
            if my_version is None or their_version > my_version:
                wanted.append(key)
    ops: list[Op] = []
    size = 0
    for op in export(store, for_them, memos_for=known_to_them):
        if size >= ANSWER_BYTES:
            return ops, wanted, lacking, True
        ops.append(op)
        size += encoded_size(op)
    return ops, wanted, lacking, False


def export(store: Store, keys: Iterable[str], memos_for: Container[str] = ()) -> list[Op]:
    """The current write for each key: its entry, its tombstone, or its memo.

    An evicted key has no value here to send. Its memo goes only to a peer
    that holds an older write of the key (`memos_for`), which it then drops
    (it kept serving that for good); a peer that knows nothing of the key
    may get the value from another node still.
    """
    ops: list[Op] = []
    for key in keys:
        entry = store.get(key, record=False)
        if entry is not None:
            ops.append(SetOp(key, entry.value, entry.content_type, entry.expires_at, entry.version))
            continue
        tombstone = store.tombstone(key)
        if tombstone is not None:
            ops.append(RemoveOp(key, tombstone))
            continue
        memo = store.memo(key) if key in memos_for else None
        if memo is not None:
            ops.append(EvictedOp(key, memo[1], memo[0]))
    return ops


def parse_buckets(data: Any) -> dict[int, dict[str, Version]]:
    """The `buckets` of a reconcile request; InvalidRequest when malformed."""
    if not isinstance(data, dict):
        raise InvalidRequest("buckets must be an object")
    parsed: dict[int, dict[str, Version]] = {}
    for name, listing in data.items():
        if not (name.isascii() and name.isdigit() and len(name) <= 5) or int(name) >= BUCKET_COUNT:
            raise InvalidRequest(f"bad bucket {name!r}")
        if not isinstance(listing, list):
            raise InvalidRequest("a bucket listing must be an array")
        versions: dict[str, Version] = {}
        for item in listing:
            if (
                not isinstance(item, list)
                or len(item) != 3
                or not isinstance(item[0], str)
                or not isinstance(item[1], int)
                or not isinstance(item[2], str)
            ):
                raise InvalidRequest("a listing item must be [key, timestamp, node id]")
            versions[item[0]] = (item[1], item[2])
        parsed[int(name)] = versions
    return parsed


# The side that asks.


async def catch_up(
    store: Store, apply: Callable[[Op], object], client: PeerClient, url: str
) -> CatchUpReport:
    """Exchange with the peer at `url` whatever differs; both end up with the newest.

    One that takes longer than PROGRESS_INTERVAL logs its progress (`Progress`).
    """
    report = CatchUpReport(url)
    progress = Progress(url)
    bytes_before = client.bytes_sent + client.bytes_received

    def moved() -> int:
        return client.bytes_sent + client.bytes_received - bytes_before

    theirs = await client.digests(url)
    # Our newer flush and patterns first: until the peer has them, it would
    # send writes they remove, which we refuse as stale.
    for batch in batches(_settle_flushes(store, apply, theirs)):
        await client.apply(url, batch, catch_up=True)
        report.sent += len(batch)
    differing = await _differing_buckets(store, client, url, theirs.get("groups"))
    report.differing_buckets = progress.total_buckets = len(differing)
    wanted: dict[str, None] = {}  # in order, once each
    lacking: set[str] = set()
    start = 0
    while start < len(differing):
        buckets = differing[start : start + BUCKETS_PER_CALL]
        for _ in range(ASKS_PER_CALL):
            progress.update(report, start, moved())
            listing = _listing(store, buckets)
            # What does not fit goes with the next call (the list grows with
            # what each cut answer brought).
            buckets = buckets[: len(listing)]
            answer = await client.reconcile(url, listing)
            try:
                ops = [decode(item) for item in answer["ops"]]
                wanted.update(dict.fromkeys(str(key) for key in answer["wanted"]))
                lacking.update(str(key) for key in answer.get("lacking", ()))
            except (KeyError, TypeError, InvalidRequest) as error:
                raise PeerCallFailed(f"{url}: malformed reconcile answer: {error}") from None
            for op in ops:
                apply(op)
            report.received += len(ops)
            # A cut answer: ask again for the rest, unless nothing it held
            # took (it would come again; the next round tries).
            if answer.get("truncated") is not True or not any(_took(store, op) for op in ops):
                break
        start += len(buckets)
    for batch in batches(export(store, wanted, memos_for=wanted.keys() - lacking)):
        progress.update(report, len(differing), moved())
        await client.apply(url, batch, catch_up=True)
        report.sent += len(batch)
    report.bytes = moved()
    report.seconds = trio.current_time() - progress.started
    return report


def _took(store: Store, op: Op) -> bool:
    """Whether a write received is now what the store knows of its key."""
    key = getattr(op, "key", None)
    return key is not None and store.known_version(key) == op.version


def _listing(store: Store, buckets: list[int]) -> dict[str, list[list[Any]]]:
    """What a reconcile call sends: every (key, version) known in each bucket,
    for the first of `buckets` that fit in about LISTING_BYTES (one at least)."""
    listing: dict[str, list[list[Any]]] = {}
    size = 0
    for bucket in buckets:
        versions = store.bucket_versions(bucket)
        # Each item's JSON: its key (escaped, if not ASCII), its node id, a
        # timestamp of up to 19 digits and 10 bytes of punctuation.
        size += sum(
            (len(key) if key.isascii() else len(json.dumps(key))) + len(v[1]) + 29
            for key, v in versions.items()
        )
        if listing and size > LISTING_BYTES:
            break
        listing[str(bucket)] = [[key, v[0], v[1]] for key, v in versions.items()]
    return listing


def _settle_flushes(
    store: Store, apply: Callable[[Op], object], theirs: dict[str, Any]
) -> list[Op]:
    """Apply the peer's newer flush and pattern removals; return ours it lacks."""
    try:
        their_flush = _version(theirs["flush_version"])
        their_patterns = {str(p): _version(v) for p, v in theirs["pattern_removals"]}
    except (KeyError, TypeError, ValueError) as error:
        raise PeerCallFailed(f"malformed digests answer: {error}") from None
    to_send: list[Op] = []
    if their_flush > store.flush_version:
        apply(FlushOp(their_flush))
    elif store.flush_version > their_flush:
        to_send.append(FlushOp(store.flush_version))
    for pattern, version in their_patterns.items():
        if store.pattern_removals.get(pattern, NO_VERSION) < version:
            apply(RemoveMatchingOp(pattern, version))
    for pattern, version in store.pattern_removals.items():
        if their_patterns.get(pattern, NO_VERSION) < version:
            to_send.append(RemoveMatchingOp(pattern, version))
    return to_send


def _version(data: Any) -> Version:
    timestamp, node_id = data
    if not isinstance(timestamp, int) or not isinstance(node_id, str):
        raise TypeError("a version is [timestamp, node id]")
    return (timestamp, node_id)


async def _differing_buckets(
    store: Store, client: PeerClient, url: str, their_groups: Any
) -> list[int]:
    mine = store.digests()
    my_groups = _group_digests(mine)
    groups = _unpack(their_groups, GROUP_COUNT)
    differing_groups = [g for g in range(GROUP_COUNT) if my_groups[g] != groups[g]]
    differing: list[int] = []
    for start in range(0, len(differing_groups), GROUPS_PER_CALL):
        chunk = differing_groups[start : start + GROUPS_PER_CALL]
        answer = await client.bucket_digests(url, chunk)
        for group in chunk:
            theirs = _unpack(answer.get(str(group)), GROUP_SIZE)
            first = group * GROUP_SIZE
            differing.extend(first + i for i in range(GROUP_SIZE) if mine[first + i] != theirs[i])
    return differing


def _group_digests(digests: list[int]) -> list[int]:
    groups = [0] * GROUP_COUNT
    for bucket, digest in enumerate(digests):
        groups[bucket // GROUP_SIZE] ^= digest
    return groups


def _pack(digests: Iterable[int]) -> str:
    return base64.b64encode(b"".join(d.to_bytes(8, "big") for d in digests)).decode("ascii")


def _unpack(text: Any, count: int) -> list[int]:
    try:
        raw = base64.b64decode(str(text), validate=True)
    except ValueError:
        raise PeerCallFailed("digests are not base64") from None
    if len(raw) != count * 8:
        raise PeerCallFailed(f"expected {count} digests, got {len(raw) // 8}")
    return [int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8)]
