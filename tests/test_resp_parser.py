"""phoenix.resp: the RESP parser and the RESP2 / RESP3 encoders, as pure functions over bytes."""

from __future__ import annotations

import ast
import doctest
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix import resp
from phoenix.resp import (
    Limits,
    Parsed,
    Partial,
    array,
    bulk,
    bulk_array,
    error,
    integer,
    mapping,
    null,
    parse_commands,
    simple,
    split_arguments,
)

LIMITS = Limits()
commands_strategy = st.lists(
    st.lists(st.binary(max_size=40), min_size=1, max_size=6), min_size=1, max_size=6
)


def encode(commands: list[list[bytes]]) -> bytes:
    return b"".join(bulk_array(command) for command in commands)


def parse_byte_by_byte(
    data: bytes, limits: Limits = LIMITS, resume: bool = True
) -> list[list[bytes]]:
    """Feed `data` one byte at a time, as a connection would, keeping the unparsed rest
    (and, with `resume`, the partial array, as a connection does)."""
    commands: list[list[bytes]] = []
    pending = bytearray()
    partial = None
    for byte in data:
        pending.append(byte)
        parsed = parse_commands(pending, limits, partial)
        assert parsed.error is None
        commands.extend(parsed.commands)
        del pending[: parsed.consumed]
        partial = parsed.partial if resume else None
    assert not pending and partial is None
    return commands


def test_encoders_write_each_reply_type() -> None:
    assert simple("OK") == b"+OK\r\n"
    assert error("ERR bad\r\nthing") == b"-ERR bad  thing\r\n"
    assert integer(-42) == b":-42\r\n"
    assert bulk(b"") == b"$0\r\n\r\n"
    assert bulk(b"a\r\nb") == b"$4\r\na\r\nb\r\n"
    assert bulk(None) == b"$-1\r\n"
    assert array([integer(1), bulk(None)]) == b"*2\r\n:1\r\n$-1\r\n"
    assert array([]) == b"*0\r\n"
    assert array(None) == b"*-1\r\n"


def test_the_null_and_map_replies_follow_the_protocol() -> None:
    assert null() == null(2) == b"$-1\r\n"
    assert null(3) == b"_\r\n"
    assert bulk(None, 3) == b"_\r\n"
    assert bulk(b"v", 3) == bulk(b"v") == b"$1\r\nv\r\n"
    assert array(None, 3) == b"_\r\n"
    assert bulk_array([b"a", None], 3) == b"*2\r\n$1\r\na\r\n_\r\n"
    pairs = [(bulk(b"proto"), integer(3)), (bulk(b"modules"), array([]))]
    assert mapping(pairs, 3) == b"%2\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n"
    assert mapping(pairs) == b"*4\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n"
    assert mapping([], 3) == b"%0\r\n"
    assert mapping([]) == b"*0\r\n"


def test_the_module_s_examples() -> None:
    # Read from the source: the compiled build's functions keep no docstrings.
    source = Path(resp.__file__).with_name("resp.py").read_text(encoding="utf-8")
    runner = doctest.DocTestRunner(verbose=False)
    output: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef):
            text = ast.get_docstring(node) or ""
            name = getattr(node, "name", "resp")
            test = doctest.DocTestParser().get_doctest(text, vars(resp).copy(), name, None, 0)
            runner.run(test, out=output.append)
    assert runner.tries >= 5
    assert runner.failures == 0, "".join(output)


def test_a_complete_array_command_is_parsed_and_consumed() -> None:
    data = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert parse_commands(data, LIMITS) == Parsed([[b"GET", b"k"]], len(data))


def test_a_partial_frame_waits_for_more_bytes() -> None:
    data = b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$5\r\nab"
    parsed = parse_commands(data, LIMITS)
    assert parsed == Parsed([[b"PING"]], 14, partial=Partial([b"GET"], 2, 13))
    # Before its header is complete, an array is not partial yet.
    assert parse_commands(data[:16], LIMITS) == Parsed([[b"PING"]], 14)


def test_a_partial_array_is_read_on_from_where_it_stopped() -> None:
    # The bytes before `position` were read already: they are not looked at again.
    partial = Partial([b"GET"], 2, 13)
    rest = b"$5\r\nabcde\r\n"
    assert parse_commands(b"#" * 13 + rest, LIMITS, partial) == Parsed(
        [[b"GET", b"abcde"]], 13 + len(rest)
    )
    assert partial.strings == [b"GET", b"abcde"]
    still_partial = Partial([b"GET"], 2, 13)
    assert parse_commands(b"#" * 13 + rest[:-1], LIMITS, still_partial).partial == still_partial
    # Limits that shrank since (a failed AUTH) are checked again.
    assert parse_commands(b"#" * 13, Limits(max_array_length=1), Partial([b"GET"], 2, 13)) == (
        Parsed([], 0, "invalid multibulk length")
    )


def test_a_huge_array_in_pieces_is_read_once() -> None:
    # Read from its start on every piece, 200,000 strings arriving 64 KiB at a
    # time would be read 22 times; each piece leaves the partial array at the
    # end of what arrived, so the next call reads only the new bytes.
    count = 200_000
    data = b"*%d\r\n" % count + b"$1\r\nx\r\n" * count
    pending = bytearray()
    partial = None
    commands: list[list[bytes]] = []
    for start in range(0, len(data), 64 * 1024):
        pending += data[start : start + 64 * 1024]
        parsed = parse_commands(pending, LIMITS, partial)
        partial = parsed.partial
        assert partial is None or partial.position > len(pending) - len(b"$1\r\nx\r\n")
        commands.extend(parsed.commands)
        del pending[: parsed.consumed]
    assert commands == [[b"x"] * count]


def test_inline_commands_are_split_like_redis_cli() -> None:
    data = b"SET k \"a b\\x41\\n\" 'it\\'s'\r\nPING\n\r\n  \r\n"
    parsed = parse_commands(data, LIMITS)
    assert parsed.commands == [[b"SET", b"k", b"a bA\n", b"it's"], [b"PING"]]
    assert parsed.consumed == len(data)
    assert parsed.error is None


def test_inline_and_array_commands_mix_in_one_buffer() -> None:
    data = b"PING\r\n" + bulk_array([b"ECHO", b"x"]) + b"ECHO y\r\n"
    assert parse_commands(data, LIMITS).commands == [[b"PING"], [b"ECHO", b"x"], [b"ECHO", b"y"]]


def test_empty_arrays_are_skipped() -> None:
    data = b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n"
    assert parse_commands(data, LIMITS) == Parsed([[b"PING"]], len(data))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"*x\r\n", "invalid multibulk length"),
        (b"*2\r\n+GET\r\n", "expected '$', got '+'"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$abc\r\n", "invalid bulk length"),
        (b"*01\r\n$4\r\nPING\r\n", "invalid multibulk length"),
        (b"*-0\r\n", "invalid multibulk length"),
        (b"*1\r\n$04\r\nPING\r\n", "invalid bulk length"),
        (b'SET k "unclosed\r\n', "unbalanced quotes in request"),
        (b'SET k "closed"x\r\n', "unbalanced quotes in request"),
    ],
)
def test_protocol_errors_are_reported(data: bytes, message: str) -> None:
    parsed = parse_commands(data, LIMITS)
    assert parsed.error == message
    assert parsed.commands == []


def test_the_two_bytes_after_a_bulk_string_are_skipped_unread_as_redis_does() -> None:
    data = b"*2\r\n$4\r\nECHO\r\n$2\r\nhixx*1\r\n$4\r\nPING\r\n"
    assert parse_commands(data, LIMITS) == Parsed([[b"ECHO", b"hi"], [b"PING"]], len(data))


def test_header_lines_end_at_the_first_cr_as_in_redis() -> None:
    # Redis skips the byte after the CR unread, whatever it is.
    assert parse_commands(b"*1\r\n$4\rxPING\r\n", LIMITS) == Parsed([[b"PING"]], 14)
    assert parse_commands(b"*1\r\n$4\r\r\nPING\r\n", LIMITS) == Parsed([[b"\nPIN"]], 15)
    assert parse_commands(b"*1\r", LIMITS) == Parsed([], 0)  # the byte after it is awaited


def test_lengths_are_read_as_64_bit_integers_as_in_redis() -> None:
    # A count of zero or less is an empty command, skipped, however long.
    assert parse_commands(b"*-1000000000000000000\r\nPING\r\n", LIMITS).commands == [[b"PING"]]
    for header in (b"*-10000000000000000000", b"*9223372036854775808", b"*-9223372036854775809"):
        assert parse_commands(header + b"\r\n", LIMITS).error == "invalid multibulk length"
    assert parse_commands(b"*-9223372036854775808\r\n", LIMITS) == Parsed([], 23)


def test_commands_before_a_protocol_error_are_kept() -> None:
    good = bulk_array([b"PING"])
    parsed = parse_commands(good + b"*1\r\n$x\r\n", LIMITS)
    assert parsed == Parsed([[b"PING"]], len(good), "invalid bulk length")


def test_limits_bound_bulk_strings_arrays_and_lines() -> None:
    limits = Limits(max_bulk_length=10, max_array_length=3, max_inline_length=20, max_pending=100)
    assert parse_commands(bulk_array([b"x" * 10]), limits).error is None
    # Refused from the header alone, before the bytes arrive.
    assert parse_commands(b"*1\r\n$11\r\n", limits).error == "invalid bulk length"
    assert parse_commands(b"*4\r\n", limits).error == "invalid multibulk length"
    assert parse_commands(b"*3" + b"0" * 30, limits).error == "too big mbulk count string"
    assert parse_commands(b"*1\r\n$1" + b"0" * 30, limits).error == "too big bulk count string"
    assert parse_commands(b"GET " + b"k" * 30, limits).error == "too big inline request"
    assert parse_commands(b"GET k", limits).error is None  # short: just incomplete
    # An incomplete command may not grow past max_pending while it waits.
    limits = Limits(max_bulk_length=60, max_pending=100)
    waiting = b"*3\r\n" + bulk(b"x" * 60) + b"$60\r\n" + b"x" * 10
    assert parse_commands(waiting, limits).error is None
    assert parse_commands(waiting + b"x" * 20, limits).error == "too big request"


def test_the_default_array_limit_is_redis_s() -> None:
    assert parse_commands(b"*1048577\r\n", LIMITS).error == "invalid multibulk length"
    assert parse_commands(b"*1048576\r\n", LIMITS).error is None


@given(commands_strategy)
def test_encode_then_parse_round_trips(commands: list[list[bytes]]) -> None:
    data = encode(commands)
    assert parse_commands(data, LIMITS) == Parsed(commands, len(data))


@given(commands_strategy)
def test_byte_by_byte_input_gives_the_same_commands(commands: list[list[bytes]]) -> None:
    assert parse_byte_by_byte(encode(commands)) == commands
    assert parse_byte_by_byte(encode(commands), resume=False) == commands


@given(
    st.lists(
        st.lists(
            st.binary(min_size=1, max_size=12).filter(
                # '*' would begin an array, as in Redis.
                lambda word: not any(b in word for b in b" \t\r\n\v\f\0\"'*")
            ),
            min_size=1,
            max_size=5,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_inline_commands_parse_byte_by_byte(commands: list[list[bytes]]) -> None:
    data = b"".join(b" ".join(command) + b"\r\n" for command in commands)
    assert parse_byte_by_byte(data) == commands


# Pieces of frames, valid or not: the fast path must take only what the
# general parser reads the same way, and leave every other frame to it.
frame_pieces = st.lists(
    st.one_of(
        st.sampled_from(
            [
                *(b"*", b"$", b"\r\n", b"\r", b"\n", b"0", b"1", b"2", b"3", b"9", b"10", b"-1"),
                *(b"007", b"1234567890", b"+", b" ", b"GET", b"set", b"k", b"PING\r\n", b"\x00"),
                *(b"*9", b"$4095", b"$4096", bulk_array([b"SET", b"k", b"a\r\nb"]), b"$2\r\n\r\n"),
            ]
        ),
        st.lists(st.lists(st.binary(max_size=12), min_size=1, max_size=4), max_size=2).map(encode),
    ),
    max_size=12,
).map(b"".join)
limits_choices = st.sampled_from(
    [
        LIMITS,
        Limits(max_bulk_length=3, max_array_length=2, max_pending=40),
        Limits(max_bulk_length=16 * 1024, max_array_length=10, max_pending=64 * 1024),
        # At and just past the bounds of the fast path's frames.
        Limits(max_bulk_length=4095, max_array_length=9, max_inline_length=5),
        Limits(max_bulk_length=4094),
        Limits(max_array_length=8),
        Limits(max_inline_length=4),
    ]
)


@settings(deadline=None)
@given(frame_pieces, limits_choices)
def test_the_fast_path_parses_every_prefix_as_the_general_parser_does(
    data: bytes, limits: Limits
) -> None:
    for end in range(len(data) + 1):
        expected = resp._parse_commands(data[:end], limits, False)
        assert parse_commands(data[:end], limits) == expected
        assert parse_commands(bytearray(data[:end]), limits) == expected


@given(commands_strategy, st.lists(st.integers(min_value=1, max_value=30), max_size=8))
def test_input_split_anywhere_gives_the_same_commands(
    commands: list[list[bytes]], cuts: list[int]
) -> None:
    data = encode(commands)
    got: list[list[bytes]] = []
    pending = bytearray()
    partial = None
    position = 0
    for size in [*cuts, len(data)]:
        pending += data[position : position + size]
        position += size
        parsed = parse_commands(pending, LIMITS, partial)
        assert parsed.error is None
        assert all(type(word) is bytes for command in parsed.commands for word in command)
        got.extend(parsed.commands)
        del pending[: parsed.consumed]
        partial = parsed.partial
    assert got == commands and not pending and partial is None


def test_the_fast_path_leaves_unusual_frames_to_the_general_parser() -> None:
    for data, expected in [
        (b"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n", Parsed([], 0, "invalid bulk length")),
        (b"*1\r\n$-1\r\n", Parsed([], 0, "invalid bulk length")),
        (b"*2\r\n$3\r\nGET\r\n:1\r\n", Parsed([], 0, "expected '$', got ':'")),
        (b"*1\r\n$4\r\nPINGxx", Parsed([[b"PING"]], 14)),
        (b"*10\r\n" + b"$1\r\nx\r\n" * 10, Parsed([[b"x"] * 10], 75)),
        (bulk_array([b"a\r\nb", b"\r\n"]), Parsed([[b"a\r\nb", b"\r\n"]], 22)),
        (bulk_array([b"x" * 4095]) * 2, Parsed([[b"x" * 4095]] * 2, 2 * 4108)),
        (bulk_array([b"x" * 4096]) * 2, Parsed([[b"x" * 4096]] * 2, 2 * 4109)),
        (b"PING\r\n" + bulk_array([b"PING"]), Parsed([[b"PING"], [b"PING"]], 20)),
    ]:
        assert parse_commands(data, LIMITS) == expected
    small = Limits(max_bulk_length=2, max_array_length=1)
    assert parse_commands(b"*1\r\n$3\r\nabc\r\n", small).error == "invalid bulk length"
    assert parse_commands(b"*2\r\n", small).error == "invalid multibulk length"


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    parsed = parse_commands(data, Limits(max_bulk_length=50, max_array_length=10))
    assert 0 <= parsed.consumed <= len(data)
    for command in parsed.commands:
        assert command and all(isinstance(word, bytes) for word in command)


def test_split_arguments_quotes() -> None:
    assert split_arguments(b"ECHO a\x0bb\x0c") == [b"ECHO", b"a\x0bb\x0c"]  # as Redis splits
    assert split_arguments(b"") == []
    assert split_arguments(b'a "" b') == [b"a", b"", b"b"]
    assert split_arguments(b'"\\"q\\\\"') == [b'"q\\']
    assert split_arguments(b"'a\"b'") == [b'a"b']
    assert split_arguments(b"'open") is None
