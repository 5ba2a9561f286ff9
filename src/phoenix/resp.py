"""RESP, the Redis serialization protocol: a bounded parser and the encoders.

Pure functions over bytes, no I/O: `parse_commands` takes what a connection
has received so far and returns every complete command in it, how many bytes
they took and, when the input breaks the protocol, why (the commands before
the error are still returned, as Redis runs them). A partial command waits
for more bytes. Both kinds of command Redis accepts are parsed:

- arrays of bulk strings, as clients send: ``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n``;
- inline commands, as typed in telnet: ``GET k\\r\\n`` (quotes as in redis-cli).

>>> parse_commands(b"*1\\r\\n$4\\r\\nPING\\r\\nECHO hi\\r\\n*2\\r\\n$3\\r\\nGET\\r\\n$1", Limits())
Parsed(commands=[[b'PING'], [b'ECHO', b'hi']], consumed=23, error=None, \
partial=Partial(strings=[b'GET'], count=2, position=13))
>>> bulk_array([b"a", None])
b'*2\\r\\n$1\\r\\na\\r\\n$-1\\r\\n'

An array left incomplete comes back as a `Partial`: handed to the next call
with the same bytes from the array's start (and more), it is read on from
where it stopped, so an array arriving in many pieces is read once in all,
not once per piece.

Every length is bounded (`Limits`), so a peer cannot make the server hold
more than a few frames' worth of bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

Command = list[bytes]

CRLF = b"\r\n"
# A multibulk of at most 1,048,576 elements (Redis 6's bound; Redis 7 takes up
# to 2^31 - 1 and bounds its query buffer instead), and header lines and
# inline commands of at most 64 KiB, as in Redis.
MAX_ARRAY_LENGTH = 1024 * 1024
MAX_INLINE_LENGTH = 64 * 1024


@attrs.frozen
class Limits:
    """How large a frame may be before it is a protocol error."""

    max_bulk_length: int = 512 * 1024 * 1024
    max_array_length: int = MAX_ARRAY_LENGTH
    max_inline_length: int = MAX_INLINE_LENGTH
    # Bytes of one incomplete command held while waiting for the rest.
    max_pending: int = 1024 * 1024 * 1024


@attrs.define
class Partial:
    """An array command not all there yet: its strings so far, and where the next begins.

    `position` counts from the array's first byte. The next `parse_commands`
    given it appends to `strings` in place.
    """

    strings: Command
    count: int
    position: int


@attrs.frozen
class Parsed:
    """The complete commands of a buffer, the bytes they took, and a protocol error.

    `partial`: the array that starts at `consumed` and is not complete yet.
    """

    commands: list[Command]
    consumed: int
    error: str | None = None
    partial: Partial | None = None


class _Incomplete(Exception):
    """The frame at this position is not all there yet (`partial`: how far an array got)."""

    def __init__(self, partial: Partial | None = None) -> None:
        self.partial = partial


class _Broken(Exception):
    """The frame at this position breaks the protocol; the message says how."""


def parse_commands(
    buffer: bytes | bytearray, limits: Limits, partial: Partial | None = None
) -> Parsed:
    """Every complete command at the start of `buffer`, and how many bytes they took.

    With `partial` (from the last call's result), `buffer` starts with that
    array, which is read on from where it stopped. Empty commands (an empty
    line, ``*0``) are skipped like Redis does. On a protocol error the
    commands before it are returned with `error` set (Redis's wording after
    ``Protocol error: ``); the connection is then beyond repair and should
    be closed.
    """
    return _parse_commands(buffer, limits, _fast_path_applies(limits), partial)


def _parse_commands(
    buffer: bytes | bytearray, limits: Limits, fast: bool, partial: Partial | None = None
) -> Parsed:
    """`parse_commands`, with or without the fast path (the tests compare the two)."""
    commands: list[Command] = []
    position = 0
    end = len(buffer)
    # The frames clients send nearly always (short arrays of short bulk
    # strings: GET, SET ...) take a fast path from the start of the buffer;
    # from the first frame it does not take (an incomplete one, an inline
    # command, anything unusual) the general parser reads the rest.
    if fast and partial is None and end and buffer[0] == _ARRAY and end <= _FAST_BUFFER:
        position = _parse_simple_arrays(buffer, commands)
    while position < end:
        try:
            if partial is not None:
                command, position_after = _parse_array(buffer, 0, limits, partial)
                partial = None
            elif buffer[position] == _ARRAY:
                command, position_after = _parse_array(buffer, position, limits)
            else:
                command, position_after = _parse_inline(buffer, position, limits)
        except _Incomplete as incomplete:
            if end - position > limits.max_pending:
                return Parsed(commands, position, "too big request")
            return Parsed(commands, position, partial=incomplete.partial)
        except _Broken as error:
            return Parsed(commands, position, str(error))
        position = position_after
        if command:
            commands.append(command)
    return Parsed(commands, position, partial=partial)


_ARRAY = ord("*")
# The fast path's frames: "*1" to "*9", then "$0" to "$4095" headers.
_ARRAY_HEADERS = {b"*%d" % count: count for count in range(1, 10)}
_BULK_HEADERS = {b"$%d" % length: length for length in range(4096)}
_LONGEST_HEADER = len(b"$4095")
# It splits the whole buffer at once: not one that may hold a large value
# still arriving (which the general parser only measures).
_FAST_BUFFER = 256 * 1024


def _fast_path_applies(limits: Limits) -> bool:
    """Whether every frame of the fast path is within `limits` (else the general parser decides)."""
    return (
        limits.max_array_length >= 9
        and limits.max_bulk_length >= 4095
        and limits.max_inline_length >= _LONGEST_HEADER
    )


def _parse_simple_arrays(buffer: bytes | bytearray, commands: list[Command]) -> int:
    """Append the complete simple arrays at the start of `buffer` to `commands`; the bytes taken.

    The buffer is split at every CRLF (in C, at once). An array of n bulk
    strings, none holding CRLF, is then 2n + 1 pieces, each followed by
    CRLF: its header, and per string a header and the string, whose length
    the header gives. A string that holds CRLF is split into pieces that
    do not match their header, and the general parser takes over there.
    """
    pieces = bytes(buffer).split(b"\r\n")
    last = len(pieces) - 1  # the piece after the last CRLF: not known to be complete
    array_headers, bulk_headers = _ARRAY_HEADERS, _BULK_HEADERS
    index = 0
    while index < last:
        count = array_headers.get(pieces[index])
        if count is None:
            break
        command: Command = []
        position = index + 1
        for _ in range(count):
            if position + 1 >= last:
                break
            word = pieces[position + 1]
            if bulk_headers.get(pieces[position]) != len(word):
                break
            command.append(word)
            position += 2
        else:
            commands.append(command)
            index = position
            continue
        break
    if index == last:  # all but the piece after the last CRLF: the usual case
        return len(buffer) - len(pieces[last])
    return sum(map(len, pieces[:index])) + 2 * index


def _line(
    buffer: bytes | bytearray, start: int, limit: int, too_big: str
) -> tuple[bytes | bytearray, int]:
    """The header line from `start`, and where the next one begins.

    As in Redis, the line ends at the first CR, and the byte after it (LF
    from any client that follows the protocol) is skipped unread.
    """
    newline = buffer.find(b"\r", start, start + limit + 1)
    if newline < 0:
        if len(buffer) - start > limit:
            raise _Broken(too_big)
        raise _Incomplete
    if newline + 2 > len(buffer):
        raise _Incomplete
    return buffer[start:newline], newline + 2


def _number(text: bytes | bytearray) -> int | None:
    """A decimal integer as Redis reads lengths: "0", or an optional "-" and
    digits that do not start with 0 ("01" and "-0" are refused), in 64 bits."""
    digits = text[1:] if text[:1] == b"-" else text
    if not digits or not digits.isdigit() or len(digits) > 19:
        return None
    if digits[:1] == b"0" and text != b"0":
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


def _parse_array(
    buffer: bytes | bytearray, start: int, limits: Limits, partial: Partial | None = None
) -> tuple[Command, int]:
    """The array at `start` (or `partial`'s, on from where it stopped), and where it ends."""
    if partial is None:
        line, position = _line(
            buffer, start + 1, limits.max_inline_length, "too big mbulk count string"
        )
        count = _number(line)
        command: Command = []
    else:
        count, position, command = partial.count, start + partial.position, partial.strings
    if count is None or count > limits.max_array_length:
        raise _Broken("invalid multibulk length")
    for _ in range(count - len(command)):
        header = position
        try:
            if position >= len(buffer):
                raise _Incomplete
            if buffer[position] != ord("$"):
                got = bytes(buffer[position : position + 1]).decode("utf-8", "surrogateescape")
                raise _Broken(f"expected '$', got '{got}'")  # the raw byte, as Redis sends it
            line, position = _line(
                buffer, position + 1, limits.max_inline_length, "too big bulk count string"
            )
            length = _number(line)
            if length is None or length < 0 or length > limits.max_bulk_length:
                raise _Broken("invalid bulk length")
            if len(buffer) < position + length + 2:
                raise _Incomplete
        except _Incomplete:
            raise _Incomplete(Partial(command, count, header - start)) from None
        # The two bytes after the string (CRLF) are skipped unread, as Redis does.
        command.append(bytes(buffer[position : position + length]))
        position += length + 2
    return command, position


def _parse_inline(buffer: bytes | bytearray, start: int, limits: Limits) -> tuple[Command, int]:
    newline = buffer.find(b"\n", start, start + limits.max_inline_length + 1)
    if newline < 0:
        if len(buffer) - start > limits.max_inline_length:
            raise _Broken("too big inline request")
        raise _Incomplete
    line = buffer[start:newline]
    if line.endswith(b"\r"):
        line = line[:-1]
    words = split_arguments(line)
    if words is None:
        raise _Broken("unbalanced quotes in request")
    return words, newline + 1


_ESCAPES = {
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("b"): b"\b",
    ord("a"): b"\a",
}
_HEX = frozenset(b"0123456789abcdefABCDEF")
_SPACE = frozenset(b" \n\r\t\v\f\0")
# What ends an unquoted word: white space but vertical tab and form feed (as in Redis).
_WORD_END = frozenset(b" \n\r\t\0")


def split_arguments(line: bytes | bytearray) -> list[bytes] | None:
    """An inline command's words, with redis-cli's quoting; None if quotes are unbalanced.

    Words are separated by white space; "double quotes" take \\n \\r \\t \\b \\a
    \\xHH and \\<any>, 'single quotes' take \\' only. A closing quote must be
    followed by a space or the end of the line.

    >>> split_arguments(b'SET k "a b\\\\x41"')
    [b'SET', b'k', b'a bA']
    """
    words: list[bytes] = []
    position, end = 0, len(line)
    while True:
        while position < end and line[position] in _SPACE:
            position += 1
        if position >= end:
            return words
        word = bytearray()
        quote = 0
        while True:
            if position >= end:
                if quote:
                    return None
                break
            char = line[position]
            if quote and char == quote:
                # A closing quote must end the word.
                if position + 1 < end and line[position + 1] not in _SPACE:
                    return None
                position += 1
                break
            if quote == ord('"'):
                if (
                    char == ord("\\")
                    and position + 3 < end
                    and line[position + 1] == ord("x")
                    and line[position + 2] in _HEX
                    and line[position + 3] in _HEX
                ):
                    word.append(int(line[position + 2 : position + 4], 16))
                    position += 3
                elif char == ord("\\") and position + 1 < end:
                    position += 1
                    word += _ESCAPES.get(line[position], line[position : position + 1])
                else:
                    word.append(char)
            elif quote == ord("'"):
                if char == ord("\\") and position + 1 < end and line[position + 1] == ord("'"):
                    position += 1
                    word.append(ord("'"))
                else:
                    word.append(char)
            elif char in _WORD_END:
                break
            elif char in (ord('"'), ord("'")):
                quote = char
            else:
                word.append(char)
            position += 1
        words.append(bytes(word))


# Encoders: one reply each, as bytes ready to send.


def _one_line(text: str) -> bytes:
    """Simple strings and errors may not hold CR or LF: Redis turns them into spaces.

    A client's bytes quoted in an error (decoded with surrogateescape) go
    back as they came, as in Redis.
    """
    line = text.replace("\r", " ").replace("\n", " ")
    try:
        return line.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate of another origin
        return line.encode("utf-8", "replace")


def simple(text: str) -> bytes:
    """A simple string: ``+OK``."""
    return b"+" + _one_line(text) + CRLF


def error(message: str) -> bytes:
    """An error; by convention its first word is the kind: ``-ERR ...``, ``-NOAUTH ...``."""
    return b"-" + _one_line(message) + CRLF


def integer(number: int) -> bytes:
    return b":%d\r\n" % number


def null(protocol: int = 2) -> bytes:
    """The null reply: RESP3's ``_``, or RESP2's nil bulk string ``$-1``."""
    return b"_\r\n" if protocol == 3 else b"$-1\r\n"


def bulk(value: bytes | None, protocol: int = 2) -> bytes:
    """A bulk string, or the null reply of `protocol` for None."""
    if value is None:
        return null(protocol)
    return b"$%d\r\n%b\r\n" % (len(value), value)


def verbatim(text: bytes, protocol: int = 2) -> bytes:
    """Plain text: RESP3's verbatim string (``=`` with its ``txt:`` format), RESP2's bulk string."""
    if protocol == 3:
        return b"=%d\r\ntxt:%b\r\n" % (len(text) + 4, text)
    return bulk(text)


def array(items: Sequence[bytes] | None, protocol: int = 2) -> bytes:
    """An array of replies encoded already; None is the nil array (RESP3: null)."""
    if items is None:
        return b"_\r\n" if protocol == 3 else b"*-1\r\n"
    return b"*%d\r\n%b" % (len(items), b"".join(items))


def bulk_array(values: Sequence[bytes | None], protocol: int = 2) -> bytes:
    """An array of bulk strings (None: null); also how a client sends a command."""
    return array([bulk(value, protocol) for value in values])


def mapping(pairs: Sequence[tuple[bytes, bytes]], protocol: int = 2) -> bytes:
    """A map of encoded keys and values: RESP3's ``%``, RESP2's flat array k1 v1 k2 v2 ...

    >>> mapping([(bulk(b"proto"), integer(3))], protocol=3)
    b'%1\\r\\n$5\\r\\nproto\\r\\n:3\\r\\n'
    >>> mapping([(bulk(b"proto"), integer(2))])
    b'*2\\r\\n$5\\r\\nproto\\r\\n:2\\r\\n'
    """
    if protocol == 3:
        return b"%%%d\r\n%b" % (len(pairs), b"".join(key + value for key, value in pairs))
    return array([part for pair in pairs for part in pair])
