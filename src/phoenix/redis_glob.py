"""Redis's glob patterns (KEYS, SCAN MATCH), read exactly as Redis reads them.

Redis's `stringmatchlen` (util.c) matches bytes: `*` any run, `?` any one
byte, `[abc]`, `[^abc]` and `[a-z]` one byte of a set (a reversed range
is swapped), and `\\` takes the next byte as it is, also inside brackets.
Its corner cases are kept: `[]` matches nothing and `[^]` any byte; an
unclosed `[` takes the rest of the pattern into the set, `*` and `]`
included.

The pattern becomes a regular expression over the key's UTF-8 bytes,
written so that it never backtracks more than once over the key: between
two `*`, a run of one-byte tests is matched where it first fits, which is
where a match would find it too, since all that follows only needs room
after it. (`*a*a*a*b` as `.*a.*a.*a.*b` takes seconds on an 80-byte key.)

>>> matches = glob_matcher(b"user:[0-9]*")
>>> matches("user:42"), matches("user:x")
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Callable

_STAR = ord("*")
_ANY = ord("?")
_OPEN = ord("[")
_CLOSE = ord("]")
_NOT = ord("^")
_ESCAPE = ord("\\")
_RANGE = ord("-")


def glob_matcher(pattern: bytes) -> Callable[[str], bool]:
    """Whether a key matches `pattern`, as Redis's KEYS and SCAN MATCH decide."""
    runs: list[list[bytes]] = [[]]  # the one-byte tests between stars, as regex pieces
    index, end = 0, len(pattern)
    while index < end:
        byte = pattern[index]
        if byte == _STAR:
            if runs[-1] or len(runs) == 1:
                runs.append([])
        elif byte == _ANY:
            runs[-1].append(b".")
        elif byte == _OPEN:
            piece, index = _bracket(pattern, index + 1)
            runs[-1].append(piece)
        else:
            if byte == _ESCAPE and index + 1 < end:
                index += 1
            runs[-1].append(_byte(pattern[index]))
        index += 1
    first, *middle = (b"".join(run) for run in runs)
    if not middle:
        regex = first
    else:
        *between, last = middle
        regex = first + b"".join(b"(?>.*?" + run + b")" for run in between) + b".*" + last
    compiled = re.compile(regex, re.DOTALL)
    return lambda key: compiled.fullmatch(key.encode("utf-8", "surrogatepass")) is not None


def _bracket(pattern: bytes, index: int) -> tuple[bytes, int]:
    """The set that starts at `index` (just after "["), and the index of its "]".

    Unclosed, the set runs to the end of the pattern, whose last index is returned.
    """
    end = len(pattern)
    negate = index < end and pattern[index] == _NOT
    if negate:
        index += 1
    members: list[bytes] = []
    while True:
        if index + 1 < end and pattern[index] == _ESCAPE:
            index += 1
            members.append(_byte(pattern[index]))
        elif index < end and pattern[index] == _CLOSE:
            break
        elif index >= end:
            index = end - 1
            break
        elif index + 2 < end and pattern[index + 1] == _RANGE:
            members.extend(_range(pattern[index], pattern[index + 2]))
            index += 2
        else:
            members.append(_byte(pattern[index]))
        index += 1
    if not members:
        return (b"." if negate else b"(?!)"), index
    return b"[" + (b"^" if negate else b"") + b"".join(members) + b"]", index


def _range(start: int, stop: int) -> list[bytes]:
    """Regex set members for Redis's range from `start` to `stop`.

    Redis compares C chars, signed on x86-64: a byte over 0x7f counts as
    negative there, so a range from "a" to "\\xc3" holds 0xc3 to 0xff and 0
    to "a".
    """
    low, high = sorted((_signed(start), _signed(stop)))
    if high < 0 or low >= 0:
        return [_byte(low & 0xFF) + b"-" + _byte(high & 0xFF)]
    return [_byte(low & 0xFF) + b"-\\xff", b"\\x00-" + _byte(high)]


def _signed(byte: int) -> int:
    return byte - 256 if byte > 0x7F else byte


def _byte(byte: int) -> bytes:
    return b"\\x%02x" % byte
