"""The local store: versioned entries, tombstones, expiry, cost, digests.

Every method is plain and synchronous (no I/O) and O(1) per key, except the
ones that say otherwise. Writes are versioned (phoenix.clock.Version): a
write applies only if it is newer than everything the store knows of its key,
so replicas that apply the same writes in any order end up identical.

What the store knows of a key is one of: a live entry; a tombstone (a remove,
kept for a grace period so that an older write arriving late cannot bring the
key back); or an eviction memo (the version of an entry the policy evicted,
so that catching up with a peer does not fetch it again and again). Memory is
bounded by `max_cost` bytes through the admission policy (phoenix.policy).
"""

from __future__ import annotations

import fnmatch
import hashlib
import heapq
import re
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator

import attrs

from phoenix.clock import Clock, Version, physical_ms
from phoenix.policy import Policy
from phoenix.segment import Node

# What one entry costs beyond its key and value bytes: the Entry object (also
# the policy's node) and its version, its slot in the store's table, the key
# bucket and the object headers. Measured as process RSS growth at 1,000,000
# entries of 24-byte keys and 100-byte values (bench/memory.py: 480 bytes per
# entry, less the 124 bytes of key and value); tracemalloc, which leaves out
# allocator slack, sees about 386 (tests/test_store.py checks it stays near).
ENTRY_OVERHEAD = 356
# Content types are shared between entries (one string for all of one type),
# up to this many types of up to this length; any other is held by its entry
# alone and its bytes count in the entry's cost. Unbounded, a client sending
# a new type with each write grew the table for good.
MAX_SHARED_TYPES = 256
MAX_SHARED_TYPE_LENGTH = 128

# Keys are spread over this many buckets by a stable hash: listing resumes
# from a bucket cursor, and replicas compare their keyspace bucket by bucket.
BUCKET_COUNT = 16384

# How many evicted keys' versions are remembered.
EVICTION_MEMO_SIZE = 65536

NO_EXPIRY = 0
NO_VERSION: Version = (0, "")
DEFAULT_CONTENT_TYPE = "application/octet-stream"


class Entry(Node):
    """A live key: its value and metadata, and (as a Node) its place in the policy."""

    # The version is kept as its two parts: a tuple would cost an object more.
    __slots__ = ("_stamp", "_writer", "content_type", "expires_at", "value")

    def __init__(
        self,
        key: str,
        cost: int,
        value: bytes,
        content_type: str,
        expires_at: int,
        version: Version,
    ) -> None:
        super().__init__(key, cost)
        self.value = value
        self.content_type = content_type
        self.expires_at = expires_at  # ms since the epoch; NO_EXPIRY (0) means never
        self._stamp, self._writer = version

    @property
    def version(self) -> Version:
        return (self._stamp, self._writer)

    @version.setter
    def version(self, version: Version) -> None:
        self._stamp, self._writer = version

    def __repr__(self) -> str:
        return (
            f"Entry(key={self.key!r}, value={self.value!r}, content_type={self.content_type!r}, "
            f"expires_at={self.expires_at!r}, version={self.version!r})"
        )

    def expired(self, now_ms: int) -> bool:
        return self.expires_at != NO_EXPIRY and self.expires_at <= now_ms


@attrs.define(slots=True)
class StoreStats:
    hits: int = 0
    misses: int = 0
    sets: int = 0
    removes: int = 0
    expirations: int = 0
    stale_writes: int = 0  # writes ignored because a newer version was known


def bucket_of(key: str) -> int:
    """The key's bucket, the same in every process (unlike `hash`)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % BUCKET_COUNT


def key_cost(key: str, value: bytes) -> int:
    key_bytes = len(key) if key.isascii() else len(key.encode("utf-8", "surrogatepass"))
    return key_bytes + len(value) + ENTRY_OVERHEAD


def fingerprint(key: str, version: Version) -> int:
    """64 bits that stand for (key, version) in a bucket digest."""
    hasher = _FINGERPRINT_HASHER.copy()  # cheaper than building one with its parameters
    hasher.update(f"{key}\0{version[0]}\0{version[1]}".encode("utf-8", "surrogatepass"))
    return int.from_bytes(hasher.digest())  # big-endian


_FINGERPRINT_HASHER = hashlib.blake2b(digest_size=8)


def matcher(pattern: str) -> Callable[[str], bool]:
    """The original's pattern rule: a glob when it has * ? or [, else a substring."""
    if any(c in pattern for c in "*?["):
        match = re.compile(fnmatch.translate(pattern), re.DOTALL).match
        return lambda key: match(key) is not None
    return lambda key: pattern in key


class Store:
    """Key -> Entry with versions, lazy expiry, expiry buckets and a cost budget."""

    def __init__(
        self,
        *,
        max_cost: int,
        num_counters: int,
        buffer_items: int,
        clock: Clock,
        tombstone_grace_ms: int = 3_600_000,
    ) -> None:
        self._clock = clock
        self.tombstone_grace_ms = tombstone_grace_ms
        self._policy: Policy[Entry] = Policy(max_cost, num_counters, buffer_items)
        # The policy's nodes are the entries: one table for both.
        self._entries = self._policy.nodes
        self._tombstones: dict[str, Version] = {}
        self._tombstone_heap: list[tuple[int, str]] = []  # (timestamp, key), to purge
        self._evicted: OrderedDict[str, Version] = OrderedDict()
        self._evicted_until: dict[str, int] = {}  # the memos' expiry deadlines, if any
        self.flush_version: Version = NO_VERSION
        self.pattern_removals: dict[str, Version] = {}
        # Each remembered pattern's matcher (re's own cache holds 512), and the
        # newest removal's version: a write newer than it (every write made
        # here) needs no look at the patterns.
        self._pattern_matchers: dict[str, Callable[[str], bool]] = {}
        self._newest_pattern_removal: Version = NO_VERSION
        # Per bucket: the keys known there, and the XOR of their fingerprints.
        # A list is a quarter of a set's size per key; its removals scan the
        # bucket (about keys / BUCKET_COUNT long), in C.
        self._buckets: dict[int, list[str]] = {}  # only non-empty buckets
        self._digests: list[int] = [0] * BUCKET_COUNT
        # The keys changed since their digests were settled, each with the
        # version its digest holds (None: none). A write only notes its key;
        # `settle_digests` hashes once per key however often it was written.
        self._unsettled: dict[str, Version | None] = {}
        # Keys by the wall-clock second in which they expire, and a heap of
        # those seconds: draining touches only the keys that are due.
        self._expiring: dict[int, set[str]] = {}
        self._expiry_heap: list[int] = []
        self._interned_types: dict[str, str] = {}
        self._stats = StoreStats()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def stats(self) -> StoreStats:
        """The store's counters (hits are the policy's count of reads)."""
        self._stats.hits = self._policy.reads
        return self._stats

    def __contains__(self, key: str) -> bool:
        return self.get(key, record=False) is not None

    @property
    def max_cost(self) -> int:
        return self._policy.max_cost

    @property
    def used_cost(self) -> int:
        return self._policy.used_cost

    @property
    def evictions(self) -> int:
        return self._policy.evictions

    @property
    def rejections(self) -> int:
        return self._policy.rejections

    @property
    def tombstone_count(self) -> int:
        return len(self._tombstones)

    def get(self, key: str, *, record: bool = True) -> Entry | None:
        """The live entry for `key`, or None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            if record:
                self._stats.misses += 1
            return None
        if entry.expires_at and entry.expires_at <= self._clock.now_ms():
            self._expire(key)
            self._stats.expirations += 1
            if record:
                self._stats.misses += 1
            return None
        if record:
            # The read as the policy counts it (see phoenix.policy); it is
            # the store's hit count too.
            entry.hits += 1
            self._policy.reads += 1
        return entry

    def known_version(self, key: str) -> Version | None:
        """The newest version of `key` this store knows: entry, tombstone or memo."""
        entry = self._entries.get(key)
        if entry is not None:
            return entry.version
        return self._tombstones.get(key) or self._evicted.get(key)

    def set(
        self, key: str, value: bytes, content_type: str, expires_at: int, version: Version
    ) -> bool:
        """Apply a versioned set; True when the value is now held.

        An older version than one known for the key (or than the last flush,
        or a matching pattern removal) is ignored. A newer one may still not
        be held when the admission policy refuses it.
        """
        # _stale, inlined: this is the write path.
        old = self._entries.get(key)
        known = old.version if old is not None else self.known_version(key)
        if (
            version <= self.flush_version
            or (known is not None and version <= known)
            or (self.pattern_removals and self._removed_by_pattern(key, version))
        ):
            self._stats.stale_writes += 1
            return False
        self._stats.sets += 1
        cost = key_cost(key, value)
        shared = self._interned_types.get(content_type)
        if shared is not None:
            content_type = shared
        elif (
            len(self._interned_types) < MAX_SHARED_TYPES
            and len(content_type) <= MAX_SHARED_TYPE_LENGTH
        ):
            self._interned_types[content_type] = content_type
        else:
            cost += len(content_type)
        if key not in self._unsettled:  # _note, inlined
            self._unsettled[key] = known
        if old is not None:
            if old.expires_at:
                self._unfile_expiry(key, old.expires_at)
            old.value, old.content_type = value, content_type
            old.expires_at, old.version = expires_at, version
            evicted = self._policy.resize(old, cost)
            if expires_at:
                self._file_expiry(key, expires_at)
            for victim in evicted:
                self._evict(victim)
            return key in self._entries
        else:
            # A removed or evicted key is already filed in its bucket (a key
            # has an entry, a tombstone or a memo, one at most).
            if self._tombstones.pop(key, None) is None:
                if key in self._evicted:
                    self._forget_memo(key)
                else:
                    self._file_in_bucket(key)
            evicted = self._policy.insert(
                Entry(key, cost, value, content_type, expires_at, version)
            )
        self._file_expiry(key, expires_at)
        for victim in evicted:
            self._evict(victim)
        return key in self._entries

    def remove(self, key: str, version: Version) -> bool:
        """Apply a versioned remove; True when a live entry was removed."""
        if self._stale(key, version):
            return False
        entry = self._entries.get(key)
        existed = entry is not None and not entry.expired(self._clock.now_ms())
        if existed:
            self._stats.removes += 1
        self._forget(key)
        self._entomb(key, version)
        return existed

    def remove_matching(self, pattern: str, version: Version) -> list[str]:
        """Apply a versioned pattern removal; return the live keys it removed.

        Every known key that matches (see `matcher`) and is older than
        `version` is forgotten. The pattern itself is remembered for the
        grace period, and keeps older writes to matching keys out, whenever
        they arrive; it leaves no per-key tombstones, so that the outcome is
        the same in any order. This looks at every key: O(number of keys).
        """
        if version <= self.flush_version:
            self._stats.stale_writes += 1
            return []
        matches = self._pattern_matchers.get(pattern) or matcher(pattern)
        if self._within_grace(version):
            previous = self.pattern_removals.get(pattern, NO_VERSION)
            self.pattern_removals[pattern] = max(previous, version)
            self._pattern_matchers[pattern] = matches
            self._newest_pattern_removal = max(self._newest_pattern_removal, version)
        now = self._clock.now_ms()
        removed = []
        for key in [*self._entries, *self._tombstones, *self._evicted]:
            if not matches(key):
                continue
            known = self.known_version(key)
            if known is None or known >= version:
                continue
            entry = self._entries.get(key)
            if entry is not None and not entry.expired(now):
                removed.append(key)
                self._stats.removes += 1
            self._forget(key)
        return removed

    def flush(self, version: Version) -> bool:
        """Apply a versioned flush: forget everything older. False if stale.

        O(number of keys).
        """
        if version <= self.flush_version:
            self._stats.stale_writes += 1
            return False
        self.flush_version = version
        survivors = [e for e in self._entries.items() if e[1].version > version]
        tombstones = [t for t in self._tombstones.items() if t[1] > version]
        memos = [(k, v, self._evicted_until.get(k, NO_EXPIRY)) for k, v in self._evicted.items()]
        self._policy.clear()  # and so self._entries
        self._tombstones.clear()
        self._tombstone_heap.clear()
        self._evicted.clear()
        self._evicted_until.clear()
        self._keep_patterns({p: v for p, v in self.pattern_removals.items() if v > version})
        self._buckets.clear()
        self._digests = [0] * BUCKET_COUNT
        self._unsettled.clear()
        self._expiring.clear()
        self._expiry_heap.clear()
        for key, entry in survivors:
            self._note(key)  # nothing known now: the digests start from zero
            self._file_in_bucket(key)
            self._file_expiry(key, entry.expires_at)
            for victim in self._policy.insert(entry):
                self._evict(victim)
        for key, tomb_version in tombstones:
            self._entomb(key, tomb_version)
        for key, memo_version, expires_at in memos:
            if memo_version > version:  # an eviction of a newer write
                self._note(key)
                self._file_in_bucket(key)
                self._file_expiry(key, expires_at)
                self._remember_evicted(key, memo_version, expires_at)
        return True

    def expire_due(self) -> int:
        """Remove keys whose deadline has passed and tombstones past their grace.

        Only the expiry buckets whose second is over are examined, so the work
        is proportional to what expires. Returns the number of expired keys.
        """
        now = self._clock.now_ms()
        current_second = now // 1000
        removed = 0
        heap = self._expiry_heap
        while heap and heap[0] < current_second:
            second = heapq.heappop(heap)
            for key in self._expiring.pop(second, ()):
                entry = self._entries.get(key)
                if entry is not None and entry.expired(now):
                    self._expire(key)
                    removed += 1
                elif self._evicted_until.get(key, now + 1) <= now:
                    self._expire(key)  # as the peers that kept it expire it
        self._stats.expirations += removed
        self._purge_tombstones(now)
        return removed

    def scan(self, cursor: int, limit: int) -> tuple[list[tuple[str, Entry]], int]:
        """Up to about `limit` live entries from bucket `cursor` on, and the next cursor.

        Whole buckets are returned, so a page may hold a few more than `limit`
        entries. The next cursor is 0 when the scan is complete. As with
        Redis's SCAN, a key present for the whole scan is returned exactly once.
        """
        now = self._clock.now_ms()
        page: list[tuple[str, Entry]] = []
        bucket = cursor
        buckets = self._buckets
        while bucket < BUCKET_COUNT and len(page) < limit:
            keys = buckets.get(bucket)
            if keys:
                for key in sorted(keys):
                    entry = self._entries.get(key)
                    if entry is not None and not entry.expired(now):
                        page.append((key, entry))
            bucket += 1
        return page, (0 if bucket >= BUCKET_COUNT else bucket)

    def items(self) -> Iterator[tuple[str, Entry]]:
        """Every live entry, bucket by bucket; safe against changes between buckets."""
        cursor = 0
        while True:
            page, cursor = self.scan(cursor, 1)
            yield from page
            if cursor == 0:
                return

    # Anti-entropy: what replicas compare.

    def digests(self) -> list[int]:
        """Per bucket, the XOR of the fingerprints of every (key, version) known."""
        self.settle_digests()
        return list(self._digests)

    def settle_digests(self, limit: int | None = None) -> bool:
        """Bring the digests of up to `limit` changed keys (all: None) up to
        date; True while changed keys remain. The node settles in the
        background, a batch at a time, so that `digests` has little left to do.
        """
        unsettled = self._unsettled
        digests = self._digests
        count = len(unsettled) if limit is None else min(limit, len(unsettled))
        for _ in range(count):
            key, held = unsettled.popitem()
            now = self.known_version(key)
            if now != held:
                change = fingerprint(key, held) if held is not None else 0
                if now is not None:
                    change ^= fingerprint(key, now)
                digests[bucket_of(key)] ^= change
        if unsettled:
            return True
        self._unsettled = {}  # an emptied dict keeps its table: let a burst's go
        return False

    def bucket_versions(self, bucket: int) -> dict[str, Version]:
        """Every key known in `bucket` with its version (entries, tombstones, memos)."""
        versions = {}
        for key in self._buckets.get(bucket, ()):
            version = self.known_version(key)
            if version is not None:
                versions[key] = version
        return versions

    def tombstone(self, key: str) -> Version | None:
        return self._tombstones.get(key)

    def memo(self, key: str) -> tuple[Version, int] | None:
        """An evicted key's version and deadline (NO_EXPIRY: none), if remembered."""
        version = self._evicted.get(key)
        if version is None:
            return None
        return version, self._evicted_until.get(key, NO_EXPIRY)

    def evicted(self, key: str, expires_at: int, version: Version) -> bool:
        """Apply a peer's memo: a write whose value it let go. True if newer than
        what is known here, which is then forgotten: the key is remembered as
        an eviction of this store's own (or a tombstone, if past its deadline)."""
        if self._stale(key, version):
            return False
        self._forget(key)
        if expires_at != NO_EXPIRY and expires_at <= self._clock.now_ms():
            self._entomb(key, version)
            return True
        self._file_in_bucket(key)
        self._file_expiry(key, expires_at)
        self._remember_evicted(key, version, expires_at)
        return True

    # Internals.

    def _stale(self, key: str, version: Version) -> bool:
        """Whether a write of `key` at `version` loses to what is already known.

        It loses to a newer flush, a newer write of the key, or a newer
        pattern removal that matches the key.
        """
        known = self.known_version(key)
        stale = (
            version <= self.flush_version
            or (known is not None and version <= known)
            or self._removed_by_pattern(key, version)
        )
        if stale:
            self._stats.stale_writes += 1
        return stale

    def _removed_by_pattern(self, key: str, version: Version) -> bool:
        """Whether a newer pattern removal that matches `key` keeps `version` out."""
        if version >= self._newest_pattern_removal:
            return False
        matchers = self._pattern_matchers
        return any(
            version < removal and matchers[pattern](key)
            for pattern, removal in self.pattern_removals.items()
        )

    def _keep_patterns(self, kept: dict[str, Version]) -> None:
        """Remember only the pattern removals `kept` (a part of what is remembered)."""
        self.pattern_removals = kept
        self._pattern_matchers = {p: self._pattern_matchers[p] for p in kept}
        self._newest_pattern_removal = max(kept.values(), default=NO_VERSION)

    def _within_grace(self, version: Version) -> bool:
        return physical_ms(version[0]) + self.tombstone_grace_ms > self._clock.now_ms()

    def _note(self, key: str) -> None:
        """What is known of `key` is about to change: its digest waits to be settled."""
        if key not in self._unsettled:
            self._unsettled[key] = self.known_version(key)

    def _entomb(self, key: str, version: Version) -> None:
        """Record a remove of `key` (whose other knowledge is already gone)."""
        if not self._within_grace(version):
            return
        self._note(key)
        self._tombstones[key] = version
        self._file_in_bucket(key)
        heap = self._tombstone_heap
        heapq.heappush(heap, (version[0], key))
        # A key written again leaves its old entry in the heap (purging skips
        # it): a key that expires every second left one a second for the grace.
        if len(heap) > 2 * len(self._tombstones) + 1024:
            self._tombstone_heap = [(v[0], k) for k, v in self._tombstones.items()]
            heapq.heapify(self._tombstone_heap)

    def _purge_tombstones(self, now: int) -> None:
        horizon = now - self.tombstone_grace_ms
        heap = self._tombstone_heap
        while heap and physical_ms(heap[0][0]) <= horizon:
            timestamp, key = heapq.heappop(heap)
            version = self._tombstones.get(key)
            if version is not None and version[0] == timestamp:
                self._note(key)
                del self._tombstones[key]
                self._discard_from_bucket(key)
        patterns = self.pattern_removals
        if any(physical_ms(version[0]) <= horizon for version in patterns.values()):
            self._keep_patterns({p: v for p, v in patterns.items() if physical_ms(v[0]) > horizon})

    def _forget(self, key: str) -> None:
        """Take out whatever the store knows of `key`: entry, tombstone or memo."""
        self._note(key)
        entry = self._policy.remove(key)
        if entry is not None:
            self._unfile_expiry(key, entry.expires_at)
        self._tombstones.pop(key, None)
        self._forget_memo(key)
        self._discard_from_bucket(key)

    def _expire(self, key: str) -> None:
        """The write known for `key` (an entry or a memo) has expired: it becomes a tombstone.

        An expired set is still the key's greatest write: an older set that
        arrives later must not bring the key back (and peers that expired it
        too keep the same version, so digests agree).
        """
        version = self.known_version(key)
        self._forget(key)
        if version is not None:
            self._entomb(key, version)

    def _evict(self, entry: Entry) -> None:
        """The policy let `entry` go: keep only its version, so digests still agree."""
        self._remember_evicted(entry.key, entry.version, entry.expires_at)

    def _remember_evicted(self, key: str, version: Version, expires_at: int) -> None:
        """Remember `key` at `version` with no value (filed in its bucket and its
        expiry second already): it expires here when it does on the peers."""
        self._evicted[key] = version  # the same version: the digest stays
        if expires_at:
            self._evicted_until[key] = expires_at
        if len(self._evicted) > EVICTION_MEMO_SIZE:
            old_key = next(iter(self._evicted))
            self._note(old_key)
            self._forget_memo(old_key)
            self._discard_from_bucket(old_key)

    def _forget_memo(self, key: str) -> None:
        if self._evicted.pop(key, None) is not None:
            self._unfile_expiry(key, self._evicted_until.pop(key, NO_EXPIRY))

    def _discard_from_bucket(self, key: str) -> None:
        if key in self._entries or key in self._tombstones or key in self._evicted:
            return
        bucket = bucket_of(key)
        keys = self._buckets.get(bucket)
        if keys is None:
            return
        try:
            keys.remove(key)
        except ValueError:
            return
        if not keys:
            del self._buckets[bucket]

    def _file_in_bucket(self, key: str) -> None:
        """File `key`, which must not be filed yet (it is known nowhere else)."""
        bucket = bucket_of(key)
        keys = self._buckets.get(bucket)
        if keys is None:
            self._buckets[bucket] = [key]
        else:
            keys.append(key)

    def _file_expiry(self, key: str, expires_at: int) -> None:
        if expires_at == NO_EXPIRY:
            return
        second = expires_at // 1000
        keys = self._expiring.get(second)
        if keys is None:
            keys = self._expiring[second] = set()
            heapq.heappush(self._expiry_heap, second)
        keys.add(key)

    def _unfile_expiry(self, key: str, expires_at: int) -> None:
        if expires_at == NO_EXPIRY:
            return
        keys = self._expiring.get(expires_at // 1000)
        if keys is not None:
            keys.discard(key)
