"""KEYS and SCAN MATCH patterns: the same answers as Redis, and never slow to give them.

The reference is Redis's `stringmatchlen` (util.c, Redis 7.2) ported line by
line below; hypothesis compares the two on patterns made of the characters
that mean something in a glob.
"""

from __future__ import annotations

import doctest
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix import redis_glob
from phoenix.redis_glob import glob_matcher

E_ACUTE = "\N{LATIN SMALL LETTER E WITH ACUTE}"  # two bytes in UTF-8


def _signed(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def redis_stringmatch(pattern: bytes, string: bytes) -> bool:
    """Redis's stringmatchlen (nocase off), with C's NUL after the pattern and signed chars."""
    skip_longer = [False]
    text = pattern + b"\0"

    def match(p: int, plen: int, s: int, slen: int) -> bool:
        while plen and slen:
            char = text[p]
            if char == ord("*"):
                while plen and text[p + 1] == ord("*"):
                    p += 1
                    plen -= 1
                if plen == 1:
                    return True
                while slen:
                    if match(p + 1, plen - 1, s, slen):
                        return True
                    if skip_longer[0]:
                        return False
                    s += 1
                    slen -= 1
                skip_longer[0] = True
                return False
            if char == ord("?"):
                s += 1
                slen -= 1
            elif char == ord("["):
                p += 1
                plen -= 1
                negate = text[p] == ord("^")
                if negate:
                    p += 1
                    plen -= 1
                matched = False
                while True:
                    if text[p] == ord("\\") and plen >= 2:
                        p += 1
                        plen -= 1
                        matched |= text[p] == string[s]
                    elif text[p] == ord("]"):
                        break
                    elif plen == 0:
                        p -= 1
                        plen += 1
                        break
                    elif plen >= 3 and text[p + 1] == ord("-"):
                        low, high = sorted((_signed(text[p]), _signed(text[p + 2])))
                        p += 2
                        plen -= 2
                        matched |= low <= _signed(string[s]) <= high
                    else:
                        matched |= text[p] == string[s]
                    p += 1
                    plen -= 1
                if negate:
                    matched = not matched
                if not matched:
                    return False
                s += 1
                slen -= 1
            else:
                if char == ord("\\") and plen >= 2:
                    p += 1
                    plen -= 1
                if text[p] != string[s]:
                    return False
                s += 1
                slen -= 1
            p += 1
            plen -= 1
            if slen == 0:
                while text[p] == ord("*"):
                    p += 1
                    plen -= 1
                break
        return plen == 0 and slen == 0

    return match(0, len(pattern), 0, len(string))


def test_the_module_s_example() -> None:
    failures, tried = doctest.testmod(redis_glob)
    assert tried >= 1
    assert failures == 0


def glob_matches(pattern: bytes, key: str) -> bool:
    return glob_matcher(pattern)(key)


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        (b"user:*", "user:42", True),
        (b"h?llo", "hello", True),
        (b"h[ae]llo", "hallo", True),
        (b"h[^e]llo", "hello", False),
        (b"h[a-b]llo", "hbllo", True),
        # A reversed range is swapped, not an error.
        (b"[z-a]", "x", True),
        (b"[c-a]*", "b2", True),
        # Escapes inside brackets.
        (b"a[\\]]b", "a]b", True),
        (b"[\\]", "]", True),
        (b"[\\]", "\\", False),
        (b"a[\\-]b", "a\\b", False),
        # [] matches nothing, [^] any one byte.
        (b"a[]b", "ab", False),
        (b"a[^]b", "axb", True),
        # An unclosed bracket takes the rest of the pattern into the set.
        (b"[abc", "b", True),
        (b"[abc", "[abc", False),
        (b"*[", "x[", False),
        (b"[a-]*", "]", True),
        (b"[a-]*", "ab", False),
        # Bytes, not characters.
        (b"?", E_ACUTE, False),
        (b"??", E_ACUTE, True),
        (b"h??llo", f"h{E_ACUTE}llo", True),
        (b"\\*", "*", True),
        (b"\\*", "x", False),
        (b"a\\", "a\\", True),
    ],
)
def test_patterns_match_as_in_redis(pattern: bytes, key: str, expected: bool) -> None:
    assert glob_matches(pattern, key) is expected
    assert redis_stringmatch(pattern, key.encode()) is expected


glob_text = st.lists(
    st.sampled_from(["*", "?", "[", "]", "^", "-", "\\", "a", "b", "c", "z", E_ACUTE]), max_size=10
).map("".join)
keys = st.lists(
    st.sampled_from(["a", "b", "c", "z", "-", "]", "[", "*", "\\", "^", E_ACUTE]),
    min_size=1,
    max_size=8,
).map("".join)


@settings(max_examples=3000, deadline=None)
@given(glob_text, keys)
def test_every_pattern_matches_as_redis_stringmatchlen_does(pattern: str, key: str) -> None:
    raw = pattern.encode()
    assert glob_matches(raw, key) is redis_stringmatch(raw, key.encode())


def test_a_pattern_of_many_stars_against_a_long_key_answers() -> None:
    # Translated star by star to ".*", this pattern backtracks through every
    # way of placing six "a"s in the key: 3.5 s at 80 bytes, far longer at
    # 1,024. A KEYS or SCAN MATCH must not stall the node's event loop so.
    code = (
        "from phoenix.redis_glob import glob_matcher\n"
        "key = 'a' * 1024\n"
        "print(glob_matcher(b'*a*a*a*a*a*a*b')(key), glob_matcher(b'*a*a*a*a*a*a*')(key))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["False", "True"]
