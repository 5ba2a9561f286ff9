"""The RESP listener: Redis clients against a node.

Two halves. In process, `RespServer.serve_client` runs over trio's memory
streams against a node on a fake clock: expiry, recovery, the connection
rules and timeouts, deterministic and in virtual time. Against real
`phoenix serve` processes on free 127.0.0.1 ports, redis-py (sync, and async
under asyncio) runs every command, pipelines, errors and API keys, and a
two-node cluster shows writes crossing between RESP and HTTP. Real processes
use real time: every wait is bounded and every process is killed in a
`finally`.

The listener speaks RESP2 and, after `HELLO 3`, RESP3. Most clients here are
made with `protocol=2`; the RESP3 tests use redis-py 8's default client,
which sends `HELLO 3` on connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import doctest
import math
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import redis
import redis.asyncio
import trio
import trio.testing
import trustme
from redis.backoff import NoBackoff
from redis.retry import Retry

import phoenix
from phoenix import resp, resp_reactor, resp_server
from phoenix.clock import FakeClock
from phoenix.config import Config
from phoenix.node import Node
from phoenix.resp_commands import COMMANDS
from phoenix.resp_reactor import Reactor
from phoenix.resp_server import RespServer
from phoenix.security import WhitelistFile
from test_client import NodeProcesses, free_ports, node_processes

ROOT = Path(__file__).resolve().parent.parent
RESP_DOCS = ROOT / "docs" / "resp.md"
START_TIMEOUT = 15.0
CONVERGE_TIMEOUT = 5.0
POLL_INTERVAL = 0.05
NO_RETRY = Retry(NoBackoff(), 0)
READER = "reader-key-0123456789"
WRITER = "writer-key-0123456789"


# In process: one session over memory streams.


@attrs.define
class Session:
    """What a client got back from one connection, in how many writes, and how many
    commands the server had run at each write."""

    replies: bytes
    writes: int
    processed: list[int]


async def converse(server: RespServer, data: bytes, address: str = "127.0.0.1") -> Session:
    """Send `data` and end the input; run the connection to its end."""
    sent = trio.testing.MemorySendStream()
    received = trio.testing.MemoryReceiveStream()
    writes = 0
    processed: list[int] = []

    async def count_write() -> None:
        nonlocal writes
        writes += 1
        processed.append(server.commands_processed)

    sent.send_all_hook = count_write
    received.put_data(data)
    received.put_eof()
    await server.serve_client(trio.StapledStream(sent, received), address)
    return Session(sent.get_data_nowait(), writes, processed)


async def ask(server: RespServer, line: bytes) -> bytes:
    return (await converse(server, line + b"\r\n")).replies


@pytest.fixture
def server(node: Node) -> RespServer:
    return RespServer(node)


async def test_pipelined_commands_are_answered_in_one_write(server: RespServer) -> None:
    commands = resp.bulk_array([b"SET", b"k", b"v"]) + b"GET k\r\nPING\r\nECHO hi\r\n"
    session = await converse(server, commands)
    assert session.replies == b"+OK\r\n$1\r\nv\r\n+PONG\r\n$2\r\nhi\r\n"
    assert session.writes == 1


async def test_long_replies_go_out_in_batches_before_the_next_commands_run(
    clock: FakeClock,
) -> None:
    config = Config(node_id="n", num_counters=1000, max_value_size=1024 * 1024)
    server = RespServer(Node(config, clock=clock))
    value = b"v" * (resp_server.REPLY_BATCH * 2 // 5)
    await converse(server, resp.bulk_array([b"SET", b"big", value]))
    # Three GETs fill a batch, written before the next three run; the protocol
    # error after the queued commands is answered after them, and closes.
    session = await converse(server, b"GET big\r\n" * 6 + b"PING\r\n*1\r\n$x\r\n")
    assert session.replies == resp.bulk(value) * 6 + (
        b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
    )
    assert sorted(set(session.processed)) == [1 + 3, 1 + 6, 1 + 7]


# One reply holds at most max_cost bytes of values (MGET), or that plus what its
# commands carried (EXEC): values of distinct keys never add up to more.
TOO_LARGE_MGET = (
    b"-ERR reply too large: its values would add up to more than max_cost (%d bytes)\r\n"
)
TOO_LARGE_EXEC = (
    b"-ERR reply too large: the transaction's replies would be larger than its "
    b"commands by more than max_cost (%d bytes)\r\n"
)


def small_store(clock: FakeClock) -> tuple[RespServer, bytes]:
    """A listener whose store holds at most 16 KiB, with a value of 1 KiB at "big"."""
    config = Config(node_id="n", num_counters=1000, max_value_size=1024, max_cost=16 * 1024)
    server = RespServer(Node(config, clock=clock))
    value = b"v" * 1024
    assert server.node.set("big", value, "application/octet-stream", 0)
    return server, value


async def test_an_mget_that_repeats_a_key_past_max_cost_is_refused(clock: FakeClock) -> None:
    server, value = small_store(clock)
    # 16 values of 1 KiB fill max_cost: an MGET of distinct keys could hold
    # them, so it is answered; a 17th can only be a repeated key.
    at_most = resp.bulk_array([b"MGET", *[b"big"] * 16, b"missing"])
    past = resp.bulk_array([b"MGET", *[b"big"] * 17])
    session = await converse(server, at_most + past + b"GET big\r\n")
    assert session.replies == (
        resp.bulk_array([*[value] * 16, None]) + TOO_LARGE_MGET % (16 * 1024) + resp.bulk(value)
    )


async def test_exec_refuses_the_commands_that_would_take_its_reply_past_max_cost(
    clock: FakeClock,
) -> None:
    server, value = small_store(clock)
    refused = TOO_LARGE_EXEC % (16 * 1024)
    gets = 64
    transaction = b"MULTI\r\n" + b"GET big\r\n" * gets + b"SET after 1\r\nEXEC\r\nGET after\r\n"
    replies = (await converse(server, transaction)).replies
    head = b"+OK\r\n" + b"+QUEUED\r\n" * (gets + 1) + b"*%d\r\n" % (gets + 1)
    assert replies.startswith(head)
    answered = replies.count(resp.bulk(value))
    # Each GET is answered until the replies reach the bound, the rest are
    # refused (without building their replies); the other commands run.
    assert 16 <= answered < gets
    assert replies == head + resp.bulk(value) * answered + refused * (gets - answered) + (
        b"+OK\r\n$1\r\n1\r\n"
    )
    # An MGET in a transaction counts its values; INFO, with no value, its reply.
    mget = resp.bulk_array([b"MGET", *[b"big"] * 16])
    transaction = b"MULTI\r\n" + mget * 2 + b"EXEC\r\n"
    replies = (await converse(server, transaction)).replies
    assert replies == b"+OK\r\n" + b"+QUEUED\r\n" * 2 + b"*2\r\n" + (
        resp.bulk_array([value] * 16) + refused
    )
    transaction = b"MULTI\r\n" + b"INFO\r\n" * gets + b"EXEC\r\n"
    replies = (await converse(server, transaction)).replies
    assert replies.endswith(refused) and replies.count(b"redis_version:") >= 8


async def test_a_multi_queue_past_max_pending_is_refused_and_exec_aborts(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # max_pending is then 4 bulk strings' worth: 4 x (1 KiB + 64 KiB).
    monkeypatch.setattr(resp_server, "MIN_PENDING", 0)
    server, _ = small_store(clock)
    limit = server.limits.max_pending
    refused = b"-ERR transaction too large: the queued commands would hold more than %d bytes\r\n"
    commands = 2000
    transaction = b"MULTI\r\nSET written 1\r\n" + b"GET big\r\n" * commands + b"EXEC\r\n"
    replies = (await converse(server, transaction + b"GET written\r\n")).replies
    queued = replies.count(b"+QUEUED\r\n")
    assert 500 < queued < commands
    assert (
        replies
        == b"+OK\r\n"
        + b"+QUEUED\r\n" * queued
        + (refused % limit) * (commands + 1 - queued)
        + b"-EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n"
    )


def hello_reply(protocol: int, client_id: int = 1) -> bytes:
    """HELLO's exact reply: a RESP3 map, or under RESP2 the same pairs in a flat array."""
    header = b"%7\r\n" if protocol == 3 else b"*14\r\n"
    return header + (
        b"$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n"
        b"$5\r\nproto\r\n:%d\r\n$2\r\nid\r\n:%d\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n"
        b"$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n" % (protocol, client_id)
    )


async def test_hello_3_switches_the_connection_to_resp3_and_hello_2_back(
    server: RespServer,
) -> None:
    exchanges = [
        (b"GET missing", b"$-1\r\n"),
        (b"HELLO 3", hello_reply(3)),
        (b"SET k v", b"+OK\r\n"),
        (b"GET k", b"$1\r\nv\r\n"),
        (b"GET missing", b"_\r\n"),
        (b"MGET k missing", b"*2\r\n$1\r\nv\r\n_\r\n"),
        (b"SET k w NX", b"_\r\n"),
        (b"SET fresh x GET", b"_\r\n"),
        (b"GETDEL gone", b"_\r\n"),
        (b"GETEX gone", b"_\r\n"),
        (b"GETSET new 1", b"_\r\n"),
        (b"CLIENT GETNAME", b"_\r\n"),
        (b"CONFIG GET save", b"%0\r\n"),
        (b"COMMAND DOCS", b"%0\r\n"),
        (b"COMMAND", b"*0\r\n"),
        (b"HELLO", hello_reply(3)),
        (b"HELLO 4", b"-NOPROTO unsupported protocol version\r\n"),
        (b"GET missing", b"_\r\n"),
        (b"HELLO 2", hello_reply(2)),
        (b"GET missing", b"$-1\r\n"),
        (b"CONFIG GET save", b"*0\r\n"),
    ]
    session = await converse(server, b"".join(line + b"\r\n" for line, _ in exchanges))
    assert session.replies == b"".join(reply for _, reply in exchanges)
    assert session.writes == 1


async def test_command_names_are_found_in_any_case(server: RespServer) -> None:
    session = await converse(server, b"SET k v\r\nget k\r\nGeT k\r\nmulti\r\nGet k\r\nExEc\r\n")
    assert (
        session.replies == b"+OK\r\n" + b"$1\r\nv\r\n" * 2 + b"+OK\r\n+QUEUED\r\n*1\r\n$1\r\nv\r\n"
    )


async def test_option_and_transaction_corners_answer_as_redis_does(server: RespServer) -> None:
    not_integer = b"-ERR value is not an integer or out of range\r\n"
    exchanges = [
        # An EXEC that is refused discards its transaction.
        (b"MULTI", b"+OK\r\n"),
        (
            b"EXEC a",
            b"-EXECABORT Transaction discarded because of: "
            b"wrong number of arguments for 'exec' command\r\n",
        ),
        (b"GET k", b"$-1\r\n"),
        (b"EXEC", b"-ERR EXEC without MULTI\r\n"),
        # An expiry option repeated in one unit: the last one counts.
        (b"SET k v EX 10 ex 20", b"+OK\r\n"),
        (b"TTL k", b":20\r\n"),
        (b"SET k v EX 10 EX abc", not_integer),
        (b"SET k v EX 10 PX 20", b"-ERR syntax error\r\n"),
        (b"GETEX k EX 10 EX 30", b"$1\r\nv\r\n"),
        (b"TTL k", b":30\r\n"),
        (b"GETEX k PERSIST PERSIST", b"$1\r\nv\r\n"),
        (b"TTL k", b":-1\r\n"),
        (b"GETEX k PERSIST EX 10", b"-ERR syntax error\r\n"),
        # GETEX looks the key up before it reads the expiry's number.
        (b"GETEX missing EX abc", b"$-1\r\n"),
        (b"GETEX missing EX 0", b"$-1\r\n"),
        (b"GETEX k EX abc", not_integer),
        # Seconds whose milliseconds overflow 64 bits are refused, and the key stays.
        (b"EXPIRE k -9223372036854775808", b"-ERR invalid expire time in 'expire' command\r\n"),
        (b"GET k", b"$1\r\nv\r\n"),
        (b"PEXPIRE k -9223372036854775808", b":1\r\n"),
        (b"GET k", b"$-1\r\n"),
        # SCAN reads its cursor as C's strtoul does: "" is 0, -1 wraps to the last.
        (b'SCAN ""', b"*2\r\n$1\r\n0\r\n*0\r\n"),
        (b"SCAN -1", b"*2\r\n$1\r\n0\r\n*0\r\n"),
    ]
    session = await converse(server, b"".join(line + b"\r\n" for line, _ in exchanges))
    assert session.replies == b"".join(reply for _, reply in exchanges)


async def test_more_corners_answer_as_redis_does(server: RespServer) -> None:
    # Found by a differential run against redis-server 7.0, each answered otherwise before.
    exchanges = [
        # A container command's subcommand is checked before it is queued:
        # the transaction is then discarded, as any refused command does.
        (b"MULTI", b"+OK\r\n"),
        (b"CLIENT FOO", b"-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n"),
        (b"CONFIG GET", b"-ERR wrong number of arguments for 'config|get' command\r\n"),
        (b"SET a 1", b"+QUEUED\r\n"),
        (b"EXEC", b"-EXECABORT Transaction discarded because of previous errors.\r\n"),
        (b"GET a", b"$-1\r\n"),
        (b"COMMAND FOO", b"-ERR unknown subcommand 'FOO'. Try COMMAND HELP.\r\n"),
        # EXEC refused outside a transaction too.
        (
            b"EXEC x",
            b"-EXECABORT Transaction discarded because of: "
            b"wrong number of arguments for 'exec' command\r\n",
        ),
        # Without keys, the only user is "default".
        (
            b"AUTH someone secret",
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        ),
        (b"AUTH default secret", b"+OK\r\n"),
        (
            b"HELLO 2 AUTH someone secret",
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        ),
        # HELLO checks its options in order.
        (
            b'HELLO 2 SETNAME "bad name" FOO',
            b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
        ),
        (
            b"SELECT 99999999999",
            b"-ERR value is out of range, value must between -2147483648 and 2147483647\r\n",
        ),
        # A client's bytes in an error go back raw, up to a NUL.
        (b'EXPIRE k 10 "\\xff\\xfe"', b"-ERR Unsupported option \xff\xfe\r\n"),
        (
            b'FOO "a\\x00b" "\\xc3\\xa9"',
            b"-ERR unknown command 'FOO', with args beginning with: 'a' '\xc3\xa9' \r\n",
        ),
    ]
    session = await converse(server, b"".join(line + b"\r\n" for line, _ in exchanges))
    assert session.replies == b"".join(reply for _, reply in exchanges)


async def test_the_help_an_unknown_subcommand_points_to_is_there(server: RespServer) -> None:
    session = await converse(server, b"CLIENT FOO\r\nCLIENT HELP\r\nCONFIG HELP\r\n")
    assert session.replies == (
        b"-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n"
        b"*6\r\n+CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands here are:\r\n"
        b"+SETNAME\r\n+GETNAME\r\n+SETINFO\r\n+ID\r\n+HELP\r\n"
        b"*3\r\n+CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands here are:\r\n"
        b"+GET\r\n+HELP\r\n"
    )


async def test_info_is_verbatim_text_in_resp3(server: RespServer) -> None:
    session = await converse(server, b"HELLO 3\r\nINFO keyspace\r\n")
    assert session.replies.endswith(b"=16\r\ntxt:# Keyspace\r\n\r\n")


async def test_what_a_key_may_run_follows_the_last_auth(clock: FakeClock) -> None:
    config = Config(
        node_id="keyed", num_counters=1000, read_only_keys=(READER,), read_write_keys=(WRITER,)
    )
    server = RespServer(Node(config, clock=clock))
    noperm = b"-NOPERM this key is read-only: no permission to run the 'set' command\r\n"
    session = await converse(
        server,
        b"AUTH %b\r\nSET k v\r\nGET k\r\nAUTH %b\r\nSET k v\r\nAUTH %b\r\nset k w\r\nGET k\r\n"
        % (READER.encode(), WRITER.encode(), READER.encode()),
    )
    assert session.replies == (
        b"+OK\r\n" + noperm + b"$-1\r\n+OK\r\n+OK\r\n+OK\r\n" + noperm + b"$1\r\nv\r\n"
    )


async def test_a_refused_hello_3_leaves_the_connection_on_resp2(clock: FakeClock) -> None:
    config = Config(node_id="keyed", num_counters=1000, read_write_keys=(WRITER,))
    server = RespServer(Node(config, clock=clock))
    session = await converse(
        server,
        b"HELLO 3\r\nHELLO 3 AUTH default wrong-key-0123456789\r\nAUTH %b\r\n"
        b"GET missing\r\nHELLO 3 BOGUS\r\nGET missing\r\n"
        b"HELLO 3 AUTH default %b SETNAME me\r\nGET missing\r\n"
        b"CLIENT GETNAME\r\n" % (WRITER.encode(), WRITER.encode()),
    )
    assert session.replies == (
        b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the "
        b"HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
        b"select the RESP protocol version at the same time\r\n"
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        b"+OK\r\n$-1\r\n-ERR Syntax error in HELLO option 'BOGUS'\r\n$-1\r\n"
        + hello_reply(3)
        + b"_\r\n$2\r\nme\r\n"
    )


async def test_a_protocol_error_is_answered_then_the_connection_closes(server: RespServer) -> None:
    session = await converse(server, b"PING\r\n*1\r\n$x\r\nPING\r\n")
    assert session.replies == b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"


async def test_quit_answers_ok_and_ignores_what_follows(server: RespServer) -> None:
    assert (await converse(server, b"QUIT\r\nPING\r\n")).replies == b"+OK\r\n"


async def test_a_bulk_string_past_max_value_size_is_a_protocol_error(
    server: RespServer, node: Node
) -> None:
    too_long = node.config.max_value_size + 64 * 1024 + 1
    session = await converse(server, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % too_long)
    assert session.replies == b"-ERR Protocol error: invalid bulk length\r\n"


async def test_expiry_follows_the_clock(server: RespServer, clock: FakeClock) -> None:
    assert await ask(server, b"SET k v PX 1500") == b"+OK\r\n"
    assert await ask(server, b"PTTL k") == b":1500\r\n"
    clock.advance(1)
    assert await ask(server, b"PTTL k") == b":500\r\n"
    assert await ask(server, b"TTL k") == b":1\r\n"  # rounded, as Redis does
    clock.advance(1)
    assert await ask(server, b"GET k") == b"$-1\r\n"
    assert await ask(server, b"TTL k") == b":-2\r\n"


async def test_expire_options_and_deadlines(
    server: RespServer, clock: FakeClock, node: Node
) -> None:
    await ask(server, b"SET k v")
    assert await ask(server, b"EXPIRE k 100 XX") == b":0\r\n"  # no expiry yet
    assert await ask(server, b"EXPIRE k 100 GT") == b":0\r\n"  # none counts as infinite
    assert await ask(server, b"EXPIRE k 100 NX") == b":1\r\n"
    assert await ask(server, b"EXPIRE k 50 GT") == b":0\r\n"
    assert await ask(server, b"EXPIRE k 50 LT") == b":1\r\n"
    assert await ask(server, b"TTL k") == b":50\r\n"
    now_s = clock.now // 1000
    assert await ask(server, b"EXPIREAT k %d" % (now_s + 10)) == b":1\r\n"
    assert await ask(server, b"EXPIRETIME k") == b":%d\r\n" % (now_s + 10)
    assert await ask(server, b"PEXPIRE k 2500") == b":1\r\n"
    assert await ask(server, b"PEXPIRETIME k") == b":%d\r\n" % (clock.now + 2500)
    assert await ask(server, b"PERSIST k") == b":1\r\n"
    assert await ask(server, b"PERSIST k") == b":0\r\n"
    assert await ask(server, b"TTL k") == b":-1\r\n"
    # A deadline in the past removes the key; the remove is a versioned write.
    assert await ask(server, b"EXPIRE k -1") == b":1\r\n"
    assert await ask(server, b"EXISTS k") == b":0\r\n"
    assert node.store.tombstone("k") is not None
    assert await ask(server, b"EXPIRE k 10") == b":0\r\n"
    assert await ask(server, b"EXPIRE k 10 NX XX") == (
        b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"
    )
    assert await ask(server, b"EXPIRE k 10 GT LT") == (
        b"-ERR GT and LT options at the same time are not compatible\r\n"
    )
    assert await ask(server, b"EXPIRE k 10 FOO") == b"-ERR Unsupported option FOO\r\n"
    assert await ask(server, b"EXPIRE k ten") == (
        b"-ERR value is not an integer or out of range\r\n"
    )


async def test_expiry_changes_are_new_versions_of_the_same_value(
    server: RespServer, node: Node, clock: FakeClock
) -> None:
    await ask(server, b"SET k v")
    first = node.store.get("k")
    assert first is not None
    version = first.version
    await ask(server, b"EXPIRE k 10")
    entry = node.store.get("k")
    assert entry is not None
    assert entry.version > version
    assert entry.value == b"v"
    assert entry.expires_at == clock.now + 10_000
    # SET KEEPTTL keeps the deadline; INCR keeps it too.
    await ask(server, b"SET k 5 KEEPTTL")
    await ask(server, b"INCR k")
    assert await ask(server, b"GET k") == b"$1\r\n6\r\n"
    assert await ask(server, b"PTTL k") == b":10000\r\n"


async def test_set_with_a_past_exat_leaves_no_key(server: RespServer, clock: FakeClock) -> None:
    past = clock.now // 1000 - 10
    assert await ask(server, b"SET k v EXAT %d" % past) == b"+OK\r\n"
    assert await ask(server, b"EXISTS k") == b":0\r\n"


async def test_getex_sets_or_removes_the_expiry(server: RespServer, clock: FakeClock) -> None:
    await ask(server, b"SET k v")
    assert await ask(server, b"GETEX k EX 5") == b"$1\r\nv\r\n"
    assert await ask(server, b"TTL k") == b":5\r\n"
    assert await ask(server, b"GETEX k PXAT %d" % (clock.now + 700)) == b"$1\r\nv\r\n"
    assert await ask(server, b"PTTL k") == b":700\r\n"
    assert await ask(server, b"GETEX k PERSIST") == b"$1\r\nv\r\n"
    assert await ask(server, b"TTL k") == b":-1\r\n"
    assert await ask(server, b"GETEX k EX 0") == b"-ERR invalid expire time in 'getex' command\r\n"
    assert await ask(server, b"GETEX k PERSIST EX 1") == b"-ERR syntax error\r\n"
    assert await ask(server, b"GETEX missing EX 1") == b"$-1\r\n"


async def test_reads_answer_loading_while_the_node_recovers(clock: FakeClock) -> None:
    config = Config(node_id="recovering", peers=("http://127.0.0.1:9",), num_counters=1000)
    node = Node(config, clock=clock)
    assert not node.ready
    server = RespServer(node)
    session = await converse(server, b"SET k v\r\nGET k\r\nINCR n\r\nPING\r\n")
    loading = b"-LOADING node is recovering its data from a peer; retry shortly\r\n"
    assert session.replies == b"+OK\r\n" + loading + loading + b"+PONG\r\n"
    node.ready = True
    assert await ask(server, b"GET k") == b"$1\r\nv\r\n"


async def test_max_conns_per_ip_refuses_the_next_connection(clock: FakeClock) -> None:
    node = Node(Config(node_id="n", max_conns_per_ip=1, num_counters=1000), clock=clock)
    server = RespServer(node)
    first_client, first_server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_client, first_server, "10.1.1.1")
        await first_client.send_all(b"PING\r\n")
        assert await first_client.receive_some() == b"+PONG\r\n"
        refused = await converse(server, b"PING\r\n", "10.1.1.1")
        assert refused.replies == b"-ERR max number of clients reached\r\n"
        # Another address is not affected.
        assert (await converse(server, b"PING\r\n", "10.1.1.2")).replies == b"+PONG\r\n"
        await first_client.aclose()
    assert server.rejected_connections == 1
    assert (await converse(server, b"PING\r\n", "10.1.1.1")).replies == b"+PONG\r\n"


async def test_the_whitelist_refuses_other_addresses(node: Node, tmp_path: Path) -> None:
    path = tmp_path / "whitelist.json"
    path.write_text('{"allowed_nodes": ["10.0.0.0/8"]}')
    server = RespServer(node, WhitelistFile(path))
    assert (await converse(server, b"PING\r\n", "10.2.3.4")).replies == b"+PONG\r\n"
    refused = await converse(server, b"PING\r\n", "192.168.1.1")
    assert refused.replies == b"-ERR 192.168.1.1 is not in the whitelist\r\n"


async def pinged_connections(port: int, count: int) -> list[trio.SocketStream]:
    """`count` connections to the RESP port on 127.0.0.1, each answered a PING."""
    streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(count)]
    for stream in streams:
        await stream.send_all(b"PING\r\n")
        assert await stream.receive_some() == b"+PONG\r\n"
    return streams


async def until_at_rest(server: RespServer, count: int) -> None:
    """Wait (5 s at most: real sockets) until `count` connections are at rest in the reactor."""
    assert server.reactor is not None
    with trio.fail_after(5):
        while server.reactor.serving != count:
            await trio.sleep(0.01)


async def test_connections_of_an_address_the_whitelist_drops_are_closed(
    node: Node, tmp_path: Path
) -> None:
    # HTTP checks the whitelist on every request; a RESP connection, idle or
    # not, kept being served after its address was taken off the list.
    path = tmp_path / "whitelist.json"
    path.write_text('{"allowed_nodes": ["127.0.0.1"]}')
    config = attrs.evolve(node.config, port="127.0.0.1:8080", resp_port=free_ports(1)[0])
    whitelist = WhitelistFile(path)
    server = RespServer(Node(config), whitelist)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        streams = await pinged_connections(config.resp_port, 2)
        # One at rest in the reactor, one in its own task waiting for the end of a frame.
        await streams[1].send_all(b"*1\r\n$4\r\nPI")
        await until_at_rest(server, 1)
        path.write_text('{"allowed_nodes": ["10.0.0.0/8"]}')
        whitelist.reload_if_changed()  # as the listener's watch does every second
        for stream in streams:
            with trio.fail_after(5):
                assert await stream.receive_some() == b""
            await stream.aclose()
        assert server.connected_clients == 0
        nursery.cancel_scope.cancel()


async def test_an_incomplete_frame_is_closed_after_read_timeout(
    node: Node, autojump_clock: trio.abc.Clock
) -> None:
    server = RespServer(node)
    client, server_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_client, server_side, "127.0.0.1")
        # Idle with nothing pending: kept open, like Redis with timeout 0.
        await trio.sleep(10 * node.config.read_timeout)
        await client.send_all(b"PING\r\n")
        assert await client.receive_some() == b"+PONG\r\n"
        started = trio.current_time()
        await client.send_all(b"*1\r\n$4\r\nPI")
        await trio.sleep(node.config.read_timeout / 2)
        await client.send_all(b"N")  # a byte at a time does not extend the deadline
        assert await client.receive_some() == b""
        assert trio.current_time() - started == pytest.approx(node.config.read_timeout)


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A client and the server's side of one TCP connection on 127.0.0.1."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        client = await trio.testing.open_stream_to_socket_listener(listener)
        return client, await listener.accept()


async def receive_until_closed(stream: trio.SocketStream) -> bytes:
    """Read until the node ends the connection, then end ours (the node waits for that)."""
    received = bytearray()
    while data := await stream.receive_some():
        received += data
    await stream.aclose()
    return bytes(received)


@pytest.fixture(params=["own task", "reactor"])
def socket_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a TCP connection is served by the stream loop instead of its socket.

    Twice: by the connection's own task alone (`serve_client` without a
    listener), and at rest by a reactor, as under `RespServer.serve`.
    """

    async def no_stream_loop(session: Any, stream: trio.abc.Stream) -> None:
        raise AssertionError("a TCP connection went through Session.run")

    monkeypatch.setattr(resp_server.Session, "run", no_stream_loop)
    if request.param == "reactor":
        on_socket = resp_server._run_on_socket

        async def with_a_reactor(
            session: resp_server.Session, stream: trio.SocketStream, reactor: Reactor | None
        ) -> None:
            assert reactor is None
            async with trio.open_nursery() as nursery:
                await on_socket(session, stream, await nursery.start(reactor_of(session.server)))
                nursery.cancel_scope.cancel()

        monkeypatch.setattr(resp_server, "_run_on_socket", with_a_reactor)


def reactor_of(server: RespServer) -> Any:
    """A task function that starts a reactor for `server`'s connections, as `serve` does."""

    async def run(*, task_status: trio.TaskStatus[Reactor] = trio.TASK_STATUS_IGNORED) -> None:
        reactor = Reactor(resp_server.RECEIVE_SIZE)
        try:
            await reactor.run(task_status=task_status)
        finally:
            server.reactor = None

    return run


async def start_reactor(server: RespServer, nursery: trio.Nursery) -> Reactor:
    server.reactor = await nursery.start(reactor_of(server))
    return server.reactor


@pytest.mark.usefixtures("socket_only")
async def test_a_tcp_connection_is_served_on_its_socket(server: RespServer) -> None:
    client, server_side = await tcp_pair()
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_client, server_side, "127.0.0.1")
        await client.send_all(resp.bulk_array([b"SET", b"k", b"v"]) + b"GET k\r\nPING\r\n")
        expected = b"+OK\r\n$1\r\nv\r\n+PONG\r\n"
        received = b""
        while len(received) < len(expected):
            received += await client.receive_some()
        assert received == expected
        # A frame split across writes waits for its end.
        await client.send_all(b"*2\r\n$4\r\nECHO\r\n$5\r\nhel")
        await trio.testing.wait_all_tasks_blocked()
        await client.send_all(b"lo\r\nQUIT\r\nPING\r\n")
        assert await receive_until_closed(client) == b"$5\r\nhello\r\n+OK\r\n"
    assert server.connected_clients == 0


@pytest.mark.usefixtures("socket_only")
async def test_a_protocol_error_on_a_socket_is_answered_then_closed(server: RespServer) -> None:
    client, server_side = await tcp_pair()
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_client, server_side, "127.0.0.1")
        await client.send_all(b"PING\r\n*1\r\n$x\r\nPING\r\n")
        assert await receive_until_closed(client) == (
            b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
        )


@pytest.mark.usefixtures("socket_only")
async def test_an_incomplete_frame_on_a_socket_is_closed_after_read_timeout(
    node: Node, autojump_clock: trio.abc.Clock
) -> None:
    server = RespServer(node)
    client, server_side = await tcp_pair()
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_client, server_side, "127.0.0.1")
        # Idle with nothing pending: kept open, like Redis with timeout 0.
        await trio.sleep(10 * node.config.read_timeout)
        await client.send_all(b"PING\r\n")
        assert await client.receive_some() == b"+PONG\r\n"
        started = trio.current_time()
        await client.send_all(b"*1\r\n$4\r\nPI")
        await trio.sleep(node.config.read_timeout / 2)
        await client.send_all(b"N")  # a byte at a time does not extend the deadline
        assert await client.receive_some() == b""
        assert trio.current_time() - started == pytest.approx(node.config.read_timeout)


BIG = bytes(range(256)) * 4096  # 1 MiB


@asynccontextmanager
async def holding_big(
    clock: FakeClock, **settings: Any
) -> AsyncIterator[tuple[RespServer, trio.SocketStream, trio.Nursery]]:
    """A client connected to a node whose key "big" holds BIG; the connection is served
    in the nursery (cancelled on the way out)."""
    config = Config(node_id="n", num_counters=1000, max_value_size=len(BIG), **settings)
    server = RespServer(Node(config, clock=clock))
    client, server_side = await tcp_pair()
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_client, server_side, "127.0.0.1")
        await client.send_all(resp.bulk_array([b"SET", b"big", BIG]))
        assert await client.receive_some() == b"+OK\r\n"
        yield server, client, nursery
        nursery.cancel_scope.cancel()


@pytest.mark.usefixtures("socket_only")
async def test_replies_larger_than_the_kernel_s_buffers_arrive_whole(clock: FakeClock) -> None:
    async with holding_big(clock) as (_, client, _):
        with trio.fail_after(30):
            await client.send_all(b"GET big\r\n" * 32 + b"QUIT\r\n")
            received = await receive_until_closed(client)
    assert received == resp.bulk(BIG) * 32 + b"+OK\r\n"


@pytest.mark.usefixtures("socket_only")
async def test_every_reply_before_quit_arrives_though_more_commands_follow_it(
    clock: FakeClock,
) -> None:
    # Closed with those commands unread, the socket was reset, and the
    # replies the client had not read yet were lost.
    async with holding_big(clock) as (_, client, nursery):
        # More than the node reads at once after QUIT, sent while the replies are read.
        pipeline = b"GET big\r\n" * 8 + b"QUIT\r\n" + b"PING\r\n" * 100_000
        nursery.start_soon(partial(send_ignoring_the_end, client, pipeline))
        with trio.fail_after(30):
            received = await receive_until_closed(client)
    assert received == resp.bulk(BIG) * 8 + b"+OK\r\n"


async def send_ignoring_the_end(stream: trio.SocketStream, data: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(data)


@pytest.mark.usefixtures("socket_only")
async def test_a_client_reading_slowly_but_steadily_gets_a_reply_longer_than_write_timeout(
    clock: FakeClock,
) -> None:
    async with holding_big(clock, write_timeout=1) as (_, client, _):
        await client.send_all(b"MGET big big big big\r\nQUIT\r\n")
        expected = resp.bulk_array([BIG] * 4) + b"+OK\r\n"
        received = bytearray()
        started = trio.current_time()
        with trio.fail_after(30):
            # 64 KiB every 20 ms: the reply takes over 1.3 s, longer than write_timeout.
            while data := await client.receive_some(64 * 1024):
                received += data
                await trio.sleep(0.02)
        assert trio.current_time() - started > 1
        await client.aclose()
    assert received == expected


@pytest.mark.usefixtures("socket_only")
async def test_a_client_that_does_not_read_holds_back_the_commands_it_pipelined(
    clock: FakeClock,
) -> None:
    async with holding_big(clock) as (server, client, _):
        # 1,000 GETs of 1 MiB, never read: only the replies the kernel's
        # buffers take are made; the rest of the commands wait.
        await client.send_all(b"GET big\r\n" * 1000)
        await trio.testing.wait_all_tasks_blocked()
        assert 1 < server.commands_processed < 100


@pytest.mark.usefixtures("socket_only")
async def test_a_client_that_does_not_read_is_closed_after_write_timeout(
    clock: FakeClock, autojump_clock: trio.abc.Clock
) -> None:
    config = Config(node_id="n", num_counters=1000, max_value_size=1024 * 1024)
    server = RespServer(Node(config, clock=clock))
    client, server_side = await tcp_pair()
    ended_at = math.inf

    async def serve() -> None:
        nonlocal ended_at
        await server.serve_client(server_side, "127.0.0.1")
        ended_at = trio.current_time()

    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await client.send_all(resp.bulk_array([b"SET", b"big", b"x" * config.max_value_size]))
        assert await client.receive_some() == b"+OK\r\n"
        # 32 MiB of replies: more than the kernel's buffers hold while nobody reads.
        started = trio.current_time()
        await client.send_all(b"GET big\r\n" * 32)
        await trio.sleep(10 * config.write_timeout)
        assert ended_at - started == pytest.approx(config.write_timeout)
        assert server.connected_clients == 0


async def test_connections_at_rest_are_served_by_the_reactor_and_leave_it_to_wait(
    server: RespServer,
) -> None:
    first, first_side = await tcp_pair()
    second, second_side = await tcp_pair()
    async with first, second, trio.open_nursery() as nursery:
        reactor = await start_reactor(server, nursery)
        nursery.start_soon(server.serve_client, first_side, "127.0.0.1")
        nursery.start_soon(server.serve_client, second_side, "127.0.0.1")
        await trio.testing.wait_all_tasks_blocked()
        assert reactor.serving == 2
        # A frame split across writes: its connection waits for the rest on its own.
        await first.send_all(b"SET k v\r\n*2\r\n$4\r\nECHO\r\n$5\r\nhel")
        assert await first.receive_some() == b"+OK\r\n"
        await trio.testing.wait_all_tasks_blocked()
        assert reactor.serving == 1
        await second.send_all(b"GET k\r\n")
        assert await second.receive_some() == b"$1\r\nv\r\n"
        # Complete again: back in the reactor.
        await first.send_all(b"lo\r\n")
        assert await first.receive_some() == b"$5\r\nhello\r\n"
        await trio.testing.wait_all_tasks_blocked()
        assert reactor.serving == 2
        await first.send_all(b"QUIT\r\nPING\r\n")
        assert await receive_until_closed(first) == b"+OK\r\n"
        await trio.testing.wait_all_tasks_blocked()
        assert (reactor.serving, server.connected_clients) == (1, 1)
        nursery.cancel_scope.cancel()
    assert server.connected_clients == 0


async def test_many_connections_at_once_share_the_reactor(
    server: RespServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fewer connections per pass than are ready: the rest wait for the next pass.
    monkeypatch.setattr(resp_reactor, "PASS_EVENTS", 3)
    clients = 40
    pairs = [await tcp_pair() for _ in range(clients)]
    answers: dict[int, bytes] = {}

    async def converse_on(index: int, client: trio.SocketStream) -> None:
        key = b"key:%d" % index
        request = resp.bulk_array([b"SET", key, b"v%d" % index]) + b"GET " + key + b"\r\n"
        expected = b"+OK\r\n" + resp.bulk(b"v%d" % index)
        received = b""
        for round in range(1, 4):
            await client.send_all(request)
            while len(received) < round * len(expected):
                received += await client.receive_some()
        answers[index] = received

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            reactor = await start_reactor(server, nursery)
            for _, server_side in pairs:
                nursery.start_soon(server.serve_client, server_side, "127.0.0.1")
            async with trio.open_nursery() as talking:
                for index, (client, _) in enumerate(pairs):
                    talking.start_soon(converse_on, index, client)
            await trio.testing.wait_all_tasks_blocked()
            assert reactor.serving == clients
            for client, _ in pairs:
                await client.aclose()
            while server.connected_clients:
                await trio.sleep(0.01)
            assert reactor.serving == 0
            nursery.cancel_scope.cancel()
    for index in range(clients):
        expected = b"+OK\r\n" + resp.bulk(b"v%d" % index)
        assert answers[index] == expected * 3


async def test_a_client_that_stops_reading_leaves_the_reactor_and_the_others_are_served(
    clock: FakeClock, autojump_clock: trio.abc.Clock
) -> None:
    config = Config(node_id="n", num_counters=1000, max_value_size=1024 * 1024)
    server = RespServer(Node(config, clock=clock))
    stalled, stalled_side = await tcp_pair()
    other, other_side = await tcp_pair()
    ended_at = math.inf

    async def serve_stalled() -> None:
        nonlocal ended_at
        await server.serve_client(stalled_side, "127.0.0.1")
        ended_at = trio.current_time()

    async with stalled, other, trio.open_nursery() as nursery:
        reactor = await start_reactor(server, nursery)
        nursery.start_soon(serve_stalled)
        nursery.start_soon(server.serve_client, other_side, "127.0.0.1")
        await stalled.send_all(resp.bulk_array([b"SET", b"big", b"x" * config.max_value_size]))
        assert await stalled.receive_some() == b"+OK\r\n"
        started = trio.current_time()
        await stalled.send_all(b"GET big\r\n" * 32)  # 32 MiB that nobody reads
        await trio.testing.wait_all_tasks_blocked()
        assert reactor.serving == 1
        for _ in range(5):
            await trio.sleep(config.write_timeout / 10)
            await other.send_all(b"PING\r\n")
            assert await other.receive_some() == b"+PONG\r\n"
        await trio.sleep(10 * config.write_timeout)
        assert ended_at - started == pytest.approx(config.write_timeout)
        assert (reactor.serving, server.connected_clients) == (1, 1)
        nursery.cancel_scope.cancel()


async def test_a_peer_that_leaves_mid_batch_is_closed_and_the_reactor_goes_on(
    server: RespServer,
) -> None:
    leaving, leaving_side = await tcp_pair()
    staying, staying_side = await tcp_pair()
    async with staying, trio.open_nursery() as nursery:
        reactor = await start_reactor(server, nursery)
        nursery.start_soon(server.serve_client, leaving_side, "127.0.0.1")
        nursery.start_soon(server.serve_client, staying_side, "127.0.0.1")
        await trio.testing.wait_all_tasks_blocked()
        # Commands and a half, then gone without reading a reply.
        await leaving.send_all(b"SET gone 1\r\nPING\r\n*1\r\n$4\r\nPI")
        await leaving.aclose()
        with trio.fail_after(10):
            while server.connected_clients > 1:
                await trio.sleep(0.01)
        await staying.send_all(b"GET gone\r\n")
        assert await staying.receive_some() == b"$1\r\n1\r\n"
        await trio.testing.wait_all_tasks_blocked()
        assert reactor.serving == 1
        nursery.cancel_scope.cancel()


async def test_a_failure_in_the_reactor_ends_that_connection_only(
    server: RespServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    take = resp_server.Session.take

    def failing_take(session: resp_server.Session, data: bytes) -> tuple[bytes, int]:
        if b"BOOM" in data:
            raise RuntimeError("boom")
        return take(session, data)

    monkeypatch.setattr(resp_server.Session, "take", failing_take)
    failing, failing_side = await tcp_pair()
    other, other_side = await tcp_pair()
    async with failing, other, trio.open_nursery() as nursery:
        reactor = await start_reactor(server, nursery)
        # As the listener runs a connection: a failure is logged and ends it.
        nursery.start_soon(server.handle_connection, failing_side)
        nursery.start_soon(server.handle_connection, other_side)
        await failing.send_all(b"ECHO BOOM\r\n")
        assert await receive_until_closed(failing) == b""
        await other.send_all(b"PING\r\n")
        assert await other.receive_some() == b"+PONG\r\n"
        await trio.testing.wait_all_tasks_blocked()
        assert (reactor.serving, server.connected_clients) == (1, 1)
        nursery.cancel_scope.cancel()
    assert "RESP connection from 127.0.0.1 failed" in caplog.text


async def test_frames_stay_small_until_auth(clock: FakeClock) -> None:
    config = Config(node_id="n", num_counters=1000, read_write_keys=(WRITER,))
    server = RespServer(Node(config, clock=clock))
    big_set = resp.bulk_array([b"SET", b"k", b"v" * 20_000])
    refused = await converse(server, big_set)
    assert refused.replies == b"-ERR Protocol error: invalid bulk length\r\n"
    too_many = resp.bulk_array([b"EXISTS", *[b"k"] * 10])
    assert (await converse(server, too_many)).replies == (
        b"-ERR Protocol error: invalid multibulk length\r\n"
    )
    # AUTH in the same write as the large command lifts the limits for what follows.
    session = await converse(server, resp.bulk_array([b"AUTH", WRITER.encode()]) + big_set)
    assert session.replies == b"+OK\r\n+OK\r\n"


async def test_the_listener_serves_on_a_socket_and_stops_with_its_nursery(node: Node) -> None:
    config = attrs.evolve(node.config, port="127.0.0.1:8080", resp_port=free_ports(1)[0])
    server = RespServer(Node(config))
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(server.serve)
        assert addresses == [f"127.0.0.1:{config.resp_port}"]
        stream = await trio.open_tcp_stream("127.0.0.1", config.resp_port)
        async with stream:
            await stream.send_all(b"PING\r\n")
            assert await stream.receive_some() == b"+PONG\r\n"
        # Connections at rest in the reactor, and one waiting for the end of a frame.
        idle = await pinged_connections(config.resp_port, 3)
        await idle[0].send_all(b"*1\r\n$4\r\nPI")
        await until_at_rest(server, 2)
        assert server.connected_clients == 3
        nursery.cancel_scope.cancel()
    # The node stopping closes every connection, and the reactor.
    assert server.reactor is None
    assert server.connected_clients == 0
    for stream in idle:
        with trio.fail_after(5):
            assert await stream.receive_some() == b""
        await stream.aclose()


# Real processes and redis-py.


def wait_for_resp(port: int, **options: Any) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    client = redis.Redis(port=port, protocol=2, socket_timeout=2, **options)
    while True:
        try:
            client.ping()
            client.close()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                pytest.fail(f"RESP port {port} not answering within {START_TIMEOUT} s")
            time.sleep(POLL_INTERVAL)


@attrs.frozen
class RespNode:
    http: str
    resp_port: int
    nodes: NodeProcesses

    def client(self, **options: Any) -> redis.Redis:
        # No retries: redis-py retries a refused AUTH with backoff, seconds in all.
        return redis.Redis(
            port=self.resp_port, protocol=2, socket_timeout=5, retry=NO_RETRY, **options
        )

    def resp3_client(self, **options: Any) -> redis.Redis:
        """redis-py 8's default client: RESP3, asked for with HELLO 3 on connect."""
        return redis.Redis(port=self.resp_port, socket_timeout=5, retry=NO_RETRY, **options)


def start_node(nodes: NodeProcesses, name: str, settings: dict[str, Any]) -> RespNode:
    http_port, resp_port = free_ports(2)
    url = nodes.start(name, http_port, {"resp_port": resp_port, **settings})
    nodes.wait_ready(name)
    wait_for_resp(resp_port, password=settings.get("read_write_keys", [None])[0])
    return RespNode(url, resp_port, nodes)


@pytest.fixture(scope="module")
def plain_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RespNode]:
    with node_processes(tmp_path_factory.mktemp("resp")) as nodes:
        yield start_node(nodes, "plain", {"max_key_length": 64, "max_value_size": 4096})


@pytest.fixture(scope="module")
def keyed_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RespNode]:
    with node_processes(tmp_path_factory.mktemp("resp-keys")) as nodes:
        yield start_node(nodes, "keyed", {"read_only_keys": [READER], "read_write_keys": [WRITER]})


@pytest.fixture
def r(plain_node: RespNode) -> Iterator[redis.Redis]:
    client = plain_node.client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def r3(plain_node: RespNode) -> Iterator[redis.Redis]:
    client = plain_node.resp3_client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()


def error_of(client: redis.Redis, *command: Any) -> str:
    with pytest.raises(redis.ResponseError) as caught:
        client.execute_command(*command)
    return str(caught.value)


def test_connection_commands(r: redis.Redis) -> None:
    assert r.ping() is True
    assert r.echo("hello") == b"hello"
    assert r.execute_command("SELECT", 0) is True
    assert error_of(r, "SELECT", 1) == "DB index is out of range"
    assert error_of(r, "SELECT", "x") == "value is not an integer or out of range"
    assert r.client_setname("worker-1") is True
    assert r.client_getname() == "worker-1"
    assert isinstance(r.client_id(), int)
    assert r.execute_command("CLIENT", "SETINFO", "LIB-NAME", "x") == b"OK"
    # redis-py makes dicts of COMMAND's empty arrays (the raw reply is checked below).
    assert r.execute_command("COMMAND", "DOCS") == {}
    assert r.execute_command("COMMAND") == {}
    hello = r.execute_command("HELLO", 2)
    fields = dict(zip(hello[::2], hello[1::2], strict=True))
    assert fields[b"proto"] == 2
    assert fields[b"server"] == b"redis"
    assert fields[b"modules"] == []
    assert r.execute_command("HELLO")[5] == 2
    assert error_of(r, "HELLO", 4) == "NOPROTO unsupported protocol version"
    assert error_of(r, "HELLO", 1) == "NOPROTO unsupported protocol version"
    assert error_of(r, "HELLO", "x") == "Protocol version is not an integer or out of range"
    with pytest.raises(redis.AuthenticationError, match="without any password configured"):
        r.execute_command("AUTH", "secret")
    assert r.execute_command("AUTH", "default", "anything") is True


def test_noproto_error_has_its_own_prefix(plain_node: RespNode) -> None:
    with socket.create_connection(("127.0.0.1", plain_node.resp_port), timeout=5) as sock:
        sock.sendall(b"HELLO 4\r\nQUIT\r\n")
        assert read_all(sock) == b"-NOPROTO unsupported protocol version\r\n+OK\r\n"


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_get_set_and_set_options(r: redis.Redis) -> None:
    assert r.get("missing") is None
    assert r.set("k", "v") is True
    assert r.get("k") == b"v"
    assert r.set("k", "w", nx=True) is None
    assert r.set("new", "x", xx=True) is None
    assert r.get("new") is None
    assert r.set("k", "w", xx=True) is True
    assert r.set("k", "x", get=True) == b"w"
    assert r.set("fresh", "1", get=True) is None
    assert r.set("fresh", "2", nx=True, get=True) == b"1"  # NX with GET: the old value
    assert r.get("fresh") == b"1"
    assert r.set("k", "v", ex=100) is True
    assert 99 <= r.ttl("k") <= 100
    assert r.set("k", "v", keepttl=True) is True
    assert 99 <= r.ttl("k") <= 100
    assert r.set("k", "v") is True
    assert r.ttl("k") == -1
    assert r.set("k", "v", px=5000) is True
    assert 4900 <= r.pttl("k") <= 5000
    assert r.set("k", "v", exat=int(time.time()) + 100) is True
    assert 98 <= r.ttl("k") <= 100
    assert r.set("k", "v", pxat=int(time.time() * 1000) + 100_000) is True
    assert 98 <= r.ttl("k") <= 100
    assert r.set("k", b"\x00\xff binary \r\n") is True
    assert r.get("k") == b"\x00\xff binary \r\n"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (("SET", "k", "v", "EX", "10", "PX", "10"), "syntax error"),
        (("SET", "k", "v", "NX", "XX"), "syntax error"),
        (("SET", "k", "v", "EX", "10", "KEEPTTL"), "syntax error"),
        (("SET", "k", "v", "EX"), "syntax error"),
        (("SET", "k", "v", "BOGUS"), "syntax error"),
        (("SET", "k", "v", "EX", "0"), "invalid expire time in 'set' command"),
        (("SET", "k", "v", "PX", "-5"), "invalid expire time in 'set' command"),
        (("SET", "k", "v", "EX", "ten"), "value is not an integer or out of range"),
        (("SETEX", "k", "0", "v"), "invalid expire time in 'setex' command"),
        (("PSETEX", "k", "-1", "v"), "invalid expire time in 'psetex' command"),
        (("GET",), "wrong number of arguments for 'get' command"),
        (("GET", "a", "b"), "wrong number of arguments for 'get' command"),
        (("MSET", "a", "1", "b"), "wrong number of arguments for 'mset' command"),
        (("PING", "a", "b"), "wrong number of arguments for 'ping' command"),
        (("FLUSHALL", "NOW"), "syntax error"),
        (("SCAN", "x"), "invalid cursor"),
        (("SCAN", " 1"), "invalid cursor"),
        (("SCAN", "-"), "invalid cursor"),
        (("SCAN", "18446744073709551616"), "invalid cursor"),
        (("SCAN", "0", "COUNT", "0"), "syntax error"),
        (("SCAN", "0", "MATCH"), "syntax error"),
        (("CLIENT", "KILL"), "unknown subcommand 'KILL'. Try CLIENT HELP."),
        (
            ("CLIENT", "SETNAME", "a b"),
            "Client names cannot contain spaces, newlines or special characters.",
        ),
        (("DISCARD",), "DISCARD without MULTI"),
        (("EXEC",), "EXEC without MULTI"),
    ],
)
def test_redis_s_errors(r: redis.Redis, command: tuple[str, ...], message: str) -> None:
    assert error_of(r, *command) == message


def test_unknown_commands_name_their_first_arguments(r: redis.Redis) -> None:
    assert error_of(r, "FOO", "a", "b") == (
        "unknown command 'FOO', with args beginning with: 'a' 'b' "
    )
    assert error_of(r, "WAIT") == "unknown command 'WAIT', with args beginning with: "


def test_limits_of_keys_and_values_refuse_without_writing(r: redis.Redis) -> None:
    assert error_of(r, "SET", "k" * 65, "v") == "key is longer than max_key_length (64 bytes)"
    assert error_of(r, "SET", "k", "v" * 4097) == "value is larger than max_value_size (4096 bytes)"
    assert error_of(r, "MSET", "a", "1", "b", "v" * 4097) == (
        "value is larger than max_value_size (4096 bytes)"
    )
    assert r.exists("k", "a", "b") == 0
    assert error_of(r, "GET", "") == "key must not be empty"
    assert error_of(r, "GET", b"\xff") == "key must be valid UTF-8"
    assert r.set("ключ", "значение") is True
    assert r.get("ключ") == "значение".encode()


def test_string_commands(r: redis.Redis) -> None:
    assert r.execute_command("SETEX", "a", 100, "1") is True
    assert 99 <= r.ttl("a") <= 100
    assert r.psetex("b", 100_000, "2") is True
    assert 99_000 <= r.pttl("b") <= 100_000
    assert r.getex("a", persist=True) == b"1"
    assert r.ttl("a") == -1
    assert r.getex("a", ex=50) == b"1"
    assert 49 <= r.ttl("a") <= 50
    assert r.getex("a") == b"1"
    assert r.getdel("a") == b"1"
    assert r.getdel("a") is None
    assert r.setnx("c", "3") is True
    assert r.setnx("c", "4") is False
    assert r.getset("c", "5") == b"3"
    assert r.get("c") == b"5"
    assert r.strlen("c") == 1
    assert r.strlen("nothing") == 0
    assert r.append("c", "67") == 3
    assert r.append("d", "x") == 1
    assert r.get("c") == b"567"


def test_multi_key_commands(r: redis.Redis) -> None:
    assert r.mset({"a": "1", "b": "2", "c": "3"}) is True
    assert r.mget("a", "missing", "c") == [b"1", None, b"3"]
    assert r.exists("a", "a", "missing") == 2  # repeats count, as in Redis
    assert r.delete("a", "missing", "a") == 1
    assert r.unlink("b", "c") == 2
    assert r.exists("a", "b", "c") == 0


def test_ttl_type_persist_and_expire(r: redis.Redis) -> None:
    assert r.ttl("missing") == -2
    assert r.pttl("missing") == -2
    assert r.type("missing") == b"none"
    r.set("k", "v")
    assert r.type("k") == b"string"
    assert r.ttl("k") == -1
    assert r.pttl("k") == -1
    assert r.expire("k", 100) is True
    assert 99 <= r.ttl("k") <= 100
    assert r.pexpire("k", 50_000) is True
    assert 49_000 <= r.pttl("k") <= 50_000
    assert r.expireat("k", int(time.time()) + 200) is True
    assert 198 <= r.ttl("k") <= 200
    assert r.execute_command("PEXPIREAT", "k", int(time.time() * 1000) + 300_000) == 1
    assert 298 <= r.ttl("k") <= 300
    assert r.persist("k") is True
    assert r.ttl("k") == -1
    assert r.expire("missing", 10) is False
    assert r.expire("k", 0) is True  # a deadline not in the future removes the key
    assert r.get("k") is None


def test_keys_scan_dbsize_and_flush(r: redis.Redis) -> None:
    names = [f"user:{n}" for n in range(30)] + ["other", "User:1", "a*b"]
    r.mset(dict.fromkeys(names, "x"))
    assert r.dbsize() == len(names)
    assert sorted(r.keys("user:*")) == sorted(n.encode() for n in names[:30])
    assert sorted(r.keys("user:1?")) == sorted(f"user:{n}".encode() for n in range(10, 20))
    assert r.keys("User:*") == [b"User:1"]  # case-sensitive
    assert sorted(r.keys("user:[12]")) == [b"user:1", b"user:2"]
    assert r.keys("user:[^0-8]") == [b"user:9"]
    assert r.keys("a\\*b") == [b"a*b"]
    assert sorted(r.keys("*")) == sorted(n.encode() for n in names)
    seen: list[bytes] = []
    cursor = 0
    while True:
        cursor, page = r.scan(cursor, count=5)
        seen.extend(page)
        if cursor == 0:
            break
    assert sorted(seen) == sorted(n.encode() for n in names)
    assert sorted(r.scan_iter(match="user:2*", count=100)) == sorted(
        n.encode() for n in names if n.startswith("user:2")
    )
    assert list(r.scan_iter(_type="hash")) == []
    assert r.flushdb() is True
    assert r.dbsize() == 0
    r.set("again", "1")
    assert r.flushall(asynchronous=True) is True
    assert r.keys("*") == []


def test_a_pattern_far_longer_than_any_key_is_refused(r: redis.Redis) -> None:
    # The node under test has max_key_length 64: patterns up to 256 bytes.
    r.set("k", "v")
    assert r.keys("*" * 256) == [b"k"]
    assert error_of(r, "KEYS", "*" * 257) == "pattern longer than 256 bytes (4 x max_key_length)"
    assert error_of(r, "SCAN", "0", "MATCH", "*" * 257).startswith("pattern longer than")


def test_counters(r: redis.Redis) -> None:
    assert r.incr("n") == 1
    assert r.incrby("n", 10) == 11
    assert r.decr("n") == 10
    assert r.decrby("n", 20) == -10
    assert r.get("n") == b"-10"
    r.set("text", "abc")
    assert error_of(r, "INCR", "text") == "value is not an integer or out of range"
    r.set("padded", " 1")
    assert error_of(r, "INCR", "padded") == "value is not an integer or out of range"
    assert error_of(r, "INCRBY", "n", "1.5") == "value is not an integer or out of range"
    r.set("big", str(2**63 - 1))
    assert error_of(r, "INCR", "big") == "increment or decrement would overflow"
    assert error_of(r, "DECRBY", "n", str(-(2**63))) == "decrement would overflow"


def test_info_reports_the_node_s_figures(r: redis.Redis, plain_node: RespNode) -> None:
    r.set("a", "1")
    r.get("a")
    r.get("missing")
    info = r.info()
    assert info["redis_version"] == "7.2.0"
    assert info["phoenix_build"] == phoenix.build()
    assert info["tcp_port"] == plain_node.resp_port
    assert info["node_id"] == "plain"
    assert info["connected_clients"] >= 1
    assert info["used_memory"] > 0
    assert info["keyspace_hits"] >= 1
    assert info["keyspace_misses"] >= 1
    assert info["role"] == "master"
    assert info["db0"]["keys"] == 1
    assert set(r.info("memory")) == {"used_memory", "maxmemory", "maxmemory_policy"}
    assert r.info("nothing-like-this") == {}


def test_info_has_every_field_redis_cli_stat_shows(r: redis.Redis) -> None:
    # redis-cli --stat prints these; one missing showed as -9223372036854775808.
    info = r.info()
    for field in (
        "used_memory",
        "connected_clients",
        "blocked_clients",
        "total_commands_processed",
        "total_connections_received",
    ):
        assert isinstance(info[field], int), field


def test_pipelines_and_transactions(r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=False)
    for n in range(100):
        pipe.set(f"p{n}", n)
    pipe.get("p42").incr("p42").delete("p0").exists("p0")
    results = pipe.execute()
    assert results[:100] == [True] * 100
    assert results[100:] == [b"42", 43, 1, 0]
    with r.pipeline() as transaction:  # MULTI ... EXEC
        transaction.set("t", "1").incr("t").get("t")
        assert transaction.execute() == [True, 2, b"2"]
    with pytest.raises(redis.ResponseError), r.pipeline() as transaction:
        transaction.set("t", "5").execute_command("NOSUCH")
        transaction.execute()
    assert r.get("t") == b"2"


def test_raw_inline_commands_and_pipelining(plain_node: RespNode) -> None:
    with socket.create_connection(("127.0.0.1", plain_node.resp_port), timeout=5) as sock:
        sock.sendall(
            b'SET greeting "hello world"\r\nGET greeting\r\nDEL greeting\r\nPING hi\r\n'
            b"COMMAND DOCS\r\nCOMMAND COUNT\r\nQUIT\r\n"
        )
        assert read_all(sock) == (
            b"+OK\r\n$11\r\nhello world\r\n:1\r\n$2\r\nhi\r\n*0\r\n:%d\r\n+OK\r\n" % len(COMMANDS)
        )


def test_the_async_client_under_asyncio(plain_node: RespNode) -> None:
    async def main() -> list[Any]:
        client = redis.asyncio.Redis(port=plain_node.resp_port, protocol=2, socket_timeout=5)
        try:
            await client.set("async", "yes", ex=60)
            async with client.pipeline(transaction=False) as pipe:
                pipe.get("async").ttl("async").incr("async-n")
                results: list[Any] = await pipe.execute()
            await client.delete("async", "async-n")
            return results
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [b"yes", 60, 1]


def test_api_keys(keyed_node: RespNode) -> None:
    anonymous = keyed_node.client()
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("k")  # NOAUTH
    with pytest.raises(redis.AuthenticationError):
        keyed_node.client(password="wrong-key-0123456789").ping()
    writer = keyed_node.client(password=WRITER)
    assert writer.set("k", "v") is True
    reader = keyed_node.client(username="anyone", password=READER)  # AUTH user key
    assert reader.get("k") == b"v"
    assert reader.ttl("k") == -1
    with pytest.raises(redis.exceptions.NoPermissionError, match="read-only"):
        reader.set("k", "w")
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.flushall()
    assert writer.get("k") == b"v"
    for client in (anonymous, writer, reader):
        client.close()


def test_api_keys_on_a_raw_connection(keyed_node: RespNode) -> None:
    with socket.create_connection(("127.0.0.1", keyed_node.resp_port), timeout=5) as sock:
        sock.sendall(
            b"PING\r\nNOSUCH\r\nHELLO 2\r\nAUTH wrong-key-0123456789\r\n"
            + f"HELLO 2 AUTH default {READER} SETNAME me\r\n".encode()
            + b"CLIENT GETNAME\r\nDEL k\r\nQUIT\r\n"
        )
        replies = read_all(sock)
    assert replies.startswith(
        b"-NOAUTH Authentication required.\r\n"
        b"-ERR unknown command 'NOSUCH', with args beginning with: \r\n"
        b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the "
        b"HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
        b"select the RESP protocol version at the same time\r\n"
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        b"*14\r\n"
    )
    assert replies.endswith(
        b"$2\r\nme\r\n"
        b"-NOPERM this key is read-only: no permission to run the 'del' command\r\n+OK\r\n"
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RespNode]]:
    with node_processes(tmp_path_factory.mktemp("resp-cluster")) as nodes:
        http_ports = free_ports(4)
        peers = [f"http://127.0.0.1:{port}" for port in http_ports[:2]]
        settings = {"peers": peers, "heart_beat_interval_in_seconds": 0.5}
        for name, http_port, resp_port in (("a", *http_ports[::2]), ("b", *http_ports[1::2])):
            nodes.start(name, http_port, {**settings, "resp_port": resp_port})
        nodes.wait_ready("a", "b")
        wait_for_resp(http_ports[2])
        wait_for_resp(http_ports[3])
        yield [
            RespNode(peers[0], http_ports[2], nodes),
            RespNode(peers[1], http_ports[3], nodes),
        ]


def poll(check: Any, what: str) -> None:
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {CONVERGE_TIMEOUT} s")
        time.sleep(POLL_INTERVAL)


def test_resp_writes_replicate_to_http_and_back(cluster: list[RespNode]) -> None:
    a, b = cluster
    on_a = a.client()
    assert on_a.set("crossing", "from-resp", ex=300) is True
    with httpx.Client(timeout=5) as http:

        def on_b() -> httpx.Response:
            return http.get(f"{b.http}/get", params={"key": "crossing"})

        poll(lambda: on_b().status_code == 200, "a RESP write on a not readable over HTTP on b")
        assert on_b().content == b"from-resp"
        expiring = http.get(f"{b.http}/trygetwithexpire", params={"key": "crossing"}).json()
        assert 290 < expiring["expires_in"] <= 300  # the deadline travelled with the value

        answer = http.post(f"{b.http}/set", params={"key": "back", "ttl": 0}, content=b"http")
        assert answer.status_code == 200
    poll(lambda: on_a.get("back") == b"http", "an HTTP write on b not readable over RESP on a")
    assert on_a.delete("back") == 1
    on_b_resp = b.client()
    poll(lambda: on_b_resp.exists("back") == 0, "a RESP delete on a not seen on b")
    assert on_a.incr("counter") == 1
    poll(lambda: on_b_resp.get("counter") == b"1", "INCR on a not seen on b")
    on_a.close()
    on_b_resp.close()


def test_the_redis_py_example_of_the_docs(plain_node: RespNode) -> None:
    text = RESP_DOCS.read_text(encoding="utf-8").replace("6380", str(plain_node.resp_port))
    examples = doctest.DocTestParser().get_doctest(text, {}, "docs/resp.md", str(RESP_DOCS), 0)
    assert len(examples.examples) >= 5
    runner = doctest.DocTestRunner(verbose=False)
    output: list[str] = []
    runner.run(examples, out=output.append)
    assert runner.failures == 0, "".join(output)


def tls_config(folder: Path) -> tuple[Config, Path]:
    """A node's config with a certificate for 127.0.0.1, and its authority's file."""
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = (folder / name for name in ("cert.pem", "key.pem", "ca.pem"))
    certificate.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    certificate.private_key_pem.write_to_path(str(keyfile))
    authority.cert_pem.write_to_path(str(cafile))
    config = Config(
        node_id="tls",
        num_counters=1000,
        certfile=str(certfile),
        keyfile=str(keyfile),
        resp_port=free_ports(1)[0],
    )
    return config, cafile


async def test_a_tls_handshake_left_unfinished_is_closed_after_read_timeout(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config, _ = tls_config(tmp_path)
    server = RespServer(Node(config))
    assert server.tls is not None
    client, server_side = trio.testing.memory_stream_pair()
    started = trio.current_time()
    with trio.fail_after(10 * config.read_timeout):
        async with client:
            await client.send_all(b"\x16\x03\x01")  # the start of a ClientHello, no more
            await server.serve_client(
                trio.SSLStream(server_side, server.tls, server_side=True), "127.0.0.1"
            )
    assert trio.current_time() - started == pytest.approx(config.read_timeout)
    assert server.connected_clients == 0


async def test_with_a_certificate_the_listener_speaks_tls(tmp_path: Path) -> None:
    config, cafile = tls_config(tmp_path)
    server = RespServer(Node(config))

    def talk() -> Any:
        client = redis.Redis(
            host="127.0.0.1",
            port=config.resp_port,
            protocol=2,
            ssl=True,
            ssl_ca_certs=str(cafile),
            socket_timeout=5,
            retry=NO_RETRY,
        )
        try:
            client.set("secure", "yes")
            return client.get("secure")
        finally:
            client.close()

    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        with trio.fail_after(10):
            assert await trio.to_thread.run_sync(talk) == b"yes"
        # A client that does not speak TLS gets nowhere, and the listener goes on.
        with trio.fail_after(10):
            plain = await trio.open_tcp_stream("127.0.0.1", config.resp_port)
            async with plain:
                await plain.send_all(b"PING\r\n")
                assert await plain.receive_some() == b""
            assert await trio.to_thread.run_sync(talk) == b"yes"
        nursery.cancel_scope.cancel()


def test_config_get_answers_an_empty_match_as_redis_benchmark_expects(r: redis.Redis) -> None:
    assert r.execute_command("CONFIG", "GET", "save") == []
    with pytest.raises(redis.ResponseError, match="only CONFIG GET"):
        r.execute_command("CONFIG", "SET", "save", "")


# RESP3: redis-py 8's default client, which sends HELLO 3 on connect.


def test_resp3_hello_answers_a_map(r3: redis.Redis) -> None:
    assert r3.get_connection_kwargs().get("protocol") is None  # redis-py's default
    hello = r3.execute_command("HELLO", 3)
    assert hello == {
        b"server": b"redis",
        b"version": b"7.2.0",
        b"proto": 3,
        b"id": hello[b"id"],
        b"mode": b"standalone",
        b"role": b"master",
        b"modules": [],
    }
    assert isinstance(hello[b"id"], int)
    assert r3.execute_command("HELLO")[b"proto"] == 3
    assert error_of(r3, "HELLO", 4) == "NOPROTO unsupported protocol version"
    assert r3.ping() is True


def test_resp3_get_set_and_nil_replies(r3: redis.Redis) -> None:
    assert r3.get("missing") is None
    assert r3.set("k", "v") is True
    assert r3.get("k") == b"v"
    assert r3.set("k", "w", nx=True) is None
    assert r3.set("new", "x", xx=True) is None
    assert r3.set("k", "x", get=True) == b"v"
    assert r3.set("fresh", "1", get=True) is None
    assert r3.set("fresh", "2", nx=True, get=True) == b"1"
    assert r3.set("k", "v", ex=100) is True
    assert 99 <= r3.ttl("k") <= 100
    assert r3.set("k", "v", keepttl=True) is True
    assert 99 <= r3.ttl("k") <= 100
    assert r3.getdel("gone") is None
    assert r3.getex("gone", ex=10) is None
    assert r3.getset("k", "y") == b"v"
    assert r3.client_getname() is None
    assert r3.set("k", b"\x00\xff binary \r\n") is True
    assert r3.get("k") == b"\x00\xff binary \r\n"


def test_resp3_multi_key_expiry_and_counters(r3: redis.Redis) -> None:
    assert r3.mset({"a": "1", "b": "2"}) is True
    assert r3.mget("a", "missing", "b") == [b"1", None, b"2"]
    assert r3.exists("a", "missing") == 1
    assert r3.delete("a", "missing") == 1
    assert r3.ttl("b") == -1
    assert r3.ttl("missing") == -2
    assert r3.expire("b", 100) is True
    assert 99 <= r3.ttl("b") <= 100
    assert r3.persist("b") is True
    assert r3.incr("n") == 1
    assert r3.incrby("n", 9) == 10
    assert r3.decr("n") == 9
    r3.set("text", "abc")
    assert error_of(r3, "INCR", "text") == "value is not an integer or out of range"
    assert r3.type("b") == b"string"
    assert sorted(r3.keys("*")) == [b"b", b"n", b"text"]
    assert r3.dbsize() == 3


def test_resp3_pipelines_and_transactions(r3: redis.Redis) -> None:
    pipe = r3.pipeline(transaction=False)
    pipe.set("p", "1").get("p").get("missing").mget("p", "missing").incr("p").delete("p")
    assert pipe.execute() == [True, b"1", None, [b"1", None], 2, 1]
    with r3.pipeline() as transaction:  # MULTI ... EXEC
        transaction.set("t", "1").incr("t").get("t").get("missing")
        assert transaction.execute() == [True, 2, b"2", None]


def test_resp3_config_get_is_an_empty_map(r3: redis.Redis) -> None:
    assert r3.config_get("save") == {}
    assert r3.execute_command("CONFIG", "GET", "save") == {}


def test_resp3_with_the_async_client_under_asyncio(plain_node: RespNode) -> None:
    async def main() -> list[Any]:
        client = redis.asyncio.Redis(port=plain_node.resp_port, socket_timeout=5)
        try:
            hello = await client.execute_command("HELLO", 3)
            await client.set("async3", "yes", ex=60)
            async with client.pipeline(transaction=False) as pipe:
                pipe.get("async3").get("missing").mget("async3", "missing")
                pipe.ttl("async3").incr("async3-n").delete("async3", "async3-n")
                results: list[Any] = await pipe.execute()
            return [hello[b"proto"], await client.get("missing"), *results]
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [3, None, b"yes", None, [b"yes", None], 60, 1, 2]


def test_resp3_with_api_keys(keyed_node: RespNode) -> None:
    # With a password, redis-py sends HELLO 3 AUTH default <key> on connect.
    writer = keyed_node.resp3_client(password=WRITER)
    reader = keyed_node.resp3_client(username="anyone", password=READER, client_name="me")
    try:
        assert writer.set("k3", "v") is True
        assert reader.get("k3") == b"v"
        assert reader.get("missing") is None
        assert reader.client_getname() == "me"
        with pytest.raises(redis.exceptions.NoPermissionError, match="read-only"):
            reader.set("k3", "w")
        assert writer.delete("k3") == 1
    finally:
        writer.close()
        reader.close()
    with pytest.raises(redis.AuthenticationError):
        keyed_node.resp3_client(password="wrong-key-0123456789").ping()


def test_resp3_exact_bytes_on_a_raw_connection(plain_node: RespNode) -> None:
    with socket.create_connection(("127.0.0.1", plain_node.resp_port), timeout=5) as sock:
        sock.sendall(b"CLIENT ID\r\n")
        client_id = int(sock.recv(100)[1:-2])
        sock.sendall(
            b"HELLO 3\r\nGET raw-missing\r\nMGET raw-missing\r\nCONFIG GET save\r\n"
            b"HELLO 2\r\nGET raw-missing\r\nQUIT\r\n"
        )
        assert read_all(sock) == (
            hello_reply(3, client_id)
            + b"_\r\n*1\r\n_\r\n%0\r\n"
            + hello_reply(2, client_id)
            + b"$-1\r\n+OK\r\n"
        )
