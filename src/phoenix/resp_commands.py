"""The RESP listener's commands: what each Redis command does to the node (docs/resp.md).

`COMMANDS` maps each command's lower-case name to its `Spec`: the handler,
the arity, the HTTP twin whose key rule applies, whether it waits for
recovery. A handler takes the `Session` and the whole command (name first)
and returns its encoded reply, or raises `Refusal` (an error reply) or a
`RequestError`. Every write goes through a `Node` method, so it is
versioned and replicated exactly like its HTTP twin. The session
(resp_server.py) finds, checks and runs them.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NoReturn

import attrs

from phoenix import __version__, build, resp
from phoenix.errors import TooLarge
from phoenix.node import MAX_TTL_SECONDS
from phoenix.peers import PeerState
from phoenix.redis_glob import glob_matcher
from phoenix.resp import Command
from phoenix.store import BUCKET_COUNT, DEFAULT_CONTENT_TYPE, NO_EXPIRY, Entry

if TYPE_CHECKING:
    from phoenix.resp_server import Session

# The Redis version whose behaviour the listener follows; clients that
# read `redis_version` from INFO or HELLO pick their features from it.
REDIS_COMPATIBLE_VERSION = "7.2.0"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DEFAULT_SCAN_COUNT = 10

OK = resp.simple("OK")
QUEUED = resp.simple("QUEUED")
NOT_INTEGER = "ERR value is not an integer or out of range"
SYNTAX_ERROR = "ERR syntax error"
NOAUTH = "NOAUTH Authentication required."
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
# The integer form Redis accepts (string2ll): no sign but '-', no leading zeros, no "-0".
_INTEGER = re.compile(rb"0|-?[1-9][0-9]{0,18}")

# Commands run at once inside MULTI instead of being queued.
TRANSACTION_CONTROL = frozenset({b"multi", b"exec", b"discard", b"quit"})


class Refusal(Exception):
    """A command's error reply (without the leading '-'), raised to end the command."""


def refuse(message: str) -> NoReturn:
    raise Refusal(message)


@attrs.frozen
class Spec:
    """How a command is checked before it runs.

    `arity` counts the command name, as Redis does: N means exactly N words,
    -N at least N. `twin` is the HTTP route that does the same thing, whose
    key rule (security.Keys) applies. `reads` commands wait for recovery.
    """

    handler: Callable[[Session, Command], bytes]
    arity: int
    twin: str = "/get"
    reads: bool = False
    needs_auth: bool = True
    # A container command's subcommands, by lower-case name, with their
    # arities: checked before the command runs or is queued, as in Redis.
    subcommands: Mapping[bytes, int] | None = None
    # For a command whose reply holds stored values: their bytes, found
    # without building the reply, so EXEC refuses it before it runs (_exec).
    reply_values: Callable[[Session, Command], int] | None = None


def parse_integer(raw: bytes, message: str = NOT_INTEGER) -> int:
    """A signed 64-bit integer written as Redis writes them; else the error `message`."""
    if _INTEGER.fullmatch(raw) is None:
        refuse(message)
    number = int(raw)
    if not INT64_MIN <= number <= INT64_MAX:
        refuse(message)
    return number


def shown(raw: bytes, limit: int | None = None) -> str:
    """A client's argument as Redis echoes it in an error: its raw bytes (which
    `resp.error` writes back as they came), up to a NUL, at most `limit` of them."""
    return raw.split(b"\0", 1)[0][:limit].decode("utf-8", "surrogateescape")


def unknown_command(command: Command) -> str:
    arguments = b""
    for argument in command[1:]:
        if len(arguments) >= 128:
            break
        arguments += b"'" + argument.split(b"\0", 1)[0][: 128 - len(arguments)] + b"' "
    return (
        f"ERR unknown command '{shown(command[0], 128)}', with args beginning with: "
        + arguments.decode("utf-8", "surrogateescape")
    )


def wrong_arity(name: str) -> str:
    return f"ERR wrong number of arguments for '{name}' command"


def check_subcommand(spec: Spec, command: Command) -> None:
    """Refuse an unknown subcommand of a container command, or one of the wrong arity."""
    if spec.subcommands is None or len(command) < 2:
        return
    name = command[0].lower().decode("utf-8", "replace")
    sub = command[1].lower()
    arity = spec.subcommands.get(sub)
    if arity is None:
        refuse(f"ERR unknown subcommand '{shown(command[1])}'. Try {name.upper()} HELP.")
    if (arity > 0 and len(command) != arity) or len(command) < -arity:
        refuse(wrong_arity(f"{name}|{sub.decode('utf-8', 'replace')}"))


# The commands.


def _ping(session: Session, command: Command) -> bytes:
    if len(command) > 2:
        refuse(wrong_arity("ping"))
    return resp.bulk(command[1]) if len(command) == 2 else resp.simple("PONG")


def _echo(session: Session, command: Command) -> bytes:
    return resp.bulk(command[1])


def _quit(session: Session, command: Command) -> bytes:
    session.closing = True
    return OK


def _authenticate(session: Session, password: bytes) -> None:
    key = password.decode("utf-8", "replace")
    if session.server.keys.refusal("/get", key) is not None:
        refuse(WRONGPASS)
    session.key = key
    session.allowed.clear()


def _default_user_only(user: bytes) -> None:
    """Without keys, Redis's one user is "default", which takes any password."""
    if user != b"default":
        refuse(WRONGPASS)


def _auth(session: Session, command: Command) -> bytes:
    if len(command) > 3:
        refuse(SYNTAX_ERROR)
    if not session.server.keys.required:
        if len(command) == 2:
            refuse(
                "ERR AUTH <password> called without any password configured for the "
                "default user. Are you sure your configuration is correct?"
            )
        _default_user_only(command[1])
        return OK
    _authenticate(session, command[-1])
    return OK


def _hello(session: Session, command: Command) -> bytes:
    """Redis's handshake: switch to RESP2 or RESP3 (after AUTH / SETNAME) and describe the server.

    The protocol changes only when the whole command succeeds (as in Redis, an AUTH
    in it stays done even if a bad SETNAME then refuses it).
    """
    protocol = session.protocol
    if len(command) >= 2:
        protocol = parse_integer(
            command[1], "ERR Protocol version is not an integer or out of range"
        )
        if protocol not in (2, 3):
            refuse("NOPROTO unsupported protocol version")
    options = command[2:]
    user = password = name = None
    setname = False
    index = 0
    while index < len(options):
        option = options[index].upper()
        remaining = len(options) - index - 1
        if option == b"AUTH" and remaining >= 2:
            user, password = options[index + 1], options[index + 2]
            index += 3
        elif option == b"SETNAME" and remaining >= 1:
            name = _client_name(options[index + 1])  # checked in turn, as Redis does
            setname = True
            index += 2
        else:
            refuse(f"ERR Syntax error in HELLO option '{shown(options[index])}'")
    keys = session.server.keys
    if password is not None and keys.required:
        _authenticate(session, password)
    elif user is not None:
        _default_user_only(user)
    if keys.required and session.key is None:
        refuse(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise "
            "the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the "
            "client and select the RESP protocol version at the same time"
        )
    if setname:
        session.name = name
    session.protocol = protocol
    return resp.mapping(
        [
            (resp.bulk(b"server"), resp.bulk(b"redis")),
            (resp.bulk(b"version"), resp.bulk(REDIS_COMPATIBLE_VERSION.encode())),
            (resp.bulk(b"proto"), resp.integer(protocol)),
            (resp.bulk(b"id"), resp.integer(session.id)),
            (resp.bulk(b"mode"), resp.bulk(b"standalone")),
            (resp.bulk(b"role"), resp.bulk(b"master")),
            (resp.bulk(b"modules"), resp.array([])),
        ],
        protocol,
    )


def _multi(session: Session, command: Command) -> bytes:
    if session.transaction is not None:
        refuse("ERR MULTI calls can not be nested")
    session.transaction = []
    session.transaction_size = 0
    session.transaction_failed = False
    return OK


def _exec(session: Session, command: Command) -> bytes:
    """Run the queued commands one after the other, with no other client in between.

    Commands run synchronously on the node's one thread, so nothing else (no
    other connection, no replicated write) is applied between them.

    The reply is bounded, as MGET's is by max_cost: the replies may be larger
    than the queued commands (as command_size counts them) by max_cost bytes
    at most. A command that would take them past is refused with an error in
    its place, as Redis answers a command that fails inside EXEC, and the
    others run. One whose reply holds stored values is refused before it
    runs, so it neither builds its reply nor changes anything; any other
    once its reply is built, which only a long reply can be refused for
    (KEYS, SCAN, INFO ..., which change nothing): a short one is smaller than
    its command.
    """
    queued, failed = session.transaction, session.transaction_failed
    if queued is None:
        refuse("ERR EXEC without MULTI")
    session.transaction = None
    if failed:
        refuse("EXECABORT Transaction discarded because of previous errors.")
    limit = session.node.store.max_cost
    too_large = resp.error(
        "ERR reply too large: the transaction's replies would be larger than its "
        f"commands by more than max_cost ({limit} bytes)"
    )
    replies: list[bytes] = []
    excess = 0  # how much larger the replies answered are than their commands
    for spec, each in queued:
        allowance = command_size(each)
        values = spec.reply_values
        if values is not None and excess + values(session, each) - allowance > limit:
            replies.append(too_large)
            continue
        reply = session.run_command(spec, each)
        if values is None and excess + len(reply) - allowance > limit:
            replies.append(too_large)
            continue
        excess += len(reply) - allowance
        replies.append(reply)
    return resp.array(replies)


# What a queued command holds beyond its arguments' bytes: per argument (a
# bytes object and its slot in a list), and three times that per command (its
# list, its place in the queue). tracemalloc saw 184 bytes for a queued PING,
# 221 for GET big, 316 for a SET of 100 bytes, 2,361 for an MGET of 50 keys.
QUEUED_OVERHEAD = 48


def command_size(command: Command) -> int:
    """The bytes a command queued by MULTI holds in memory, a little more than
    measured: PING counts 196, GET big 246."""
    return sum(map(len, command)) + QUEUED_OVERHEAD * (len(command) + 3)


def stored_size(session: Session, raw_keys: Sequence[bytes]) -> int:
    """The bytes of the live values of these keys, read without counting a hit."""
    store = session.node.store
    size = 0
    for raw in raw_keys:
        try:
            key = raw.decode("utf-8")
        except UnicodeDecodeError:  # the command refuses it
            continue
        entry = store.get(key, record=False)
        if entry is not None:
            size += len(entry.value)
    return size


def _key_value(session: Session, command: Command) -> int:
    """GET, GETEX, GETDEL, GETSET: the reply holds the key's value."""
    return stored_size(session, command[1:2])


def _set_old_value(session: Session, command: Command) -> int:
    """SET ... GET: the reply holds the key's old value."""
    if any(option.upper() == b"GET" for option in command[3:]):
        return stored_size(session, command[1:2])
    return 0


def _mget_values(session: Session, command: Command) -> int:
    return stored_size(session, command[1:])


def _discard(session: Session, command: Command) -> bytes:
    if session.transaction is None:
        refuse("ERR DISCARD without MULTI")
    session.transaction = None
    return OK


def _select(session: Session, command: Command) -> bytes:
    index = parse_integer(command[1])
    if not -(2**31) <= index < 2**31:  # Redis reads it as a C int first
        refuse("ERR value is out of range, value must between -2147483648 and 2147483647")
    if index != 0:
        refuse("ERR DB index is out of range")
    return OK


def _client_name(name: bytes) -> bytes | None:
    if any(not 0x21 <= byte <= 0x7E for byte in name):
        refuse("ERR Client names cannot contain spaces, newlines or special characters.")
    return name or None


def _help(command: Command, working: str) -> bytes:
    """CLIENT HELP and the like: the subcommands that work here, as Redis lists its own."""
    name = command[0].upper().decode()
    lines = [f"{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands here are:"]
    return resp.array([resp.simple(line) for line in [*lines, *working.split()]])


def _client(session: Session, command: Command) -> bytes:
    sub = command[1].lower()  # known, of the right arity (check_subcommand)
    if sub == b"help":
        return _help(command, "SETNAME GETNAME SETINFO ID HELP")
    if sub == b"setname":
        session.name = _client_name(command[2])
        return OK
    if sub == b"getname":
        return resp.bulk(session.name, session.protocol)
    if sub == b"id":
        return resp.integer(session.id)
    if command[2].upper() not in (b"LIB-NAME", b"LIB-VER"):
        refuse(f"ERR Unrecognized option '{shown(command[2])}'")
    return OK


def _command(session: Session, command: Command) -> bytes:
    sub = command[1].upper() if len(command) > 1 else b""
    if sub == b"HELP":
        return _help(command, "COUNT DOCS INFO LIST HELP")
    if sub == b"COUNT":
        return resp.integer(len(COMMANDS))
    # COMMAND, COMMAND DOCS, COMMAND INFO ...: no documentation to give;
    # redis-cli then falls back on its built-in hints. DOCS is a map in RESP3.
    if sub == b"DOCS":
        return resp.mapping([], session.protocol)
    return resp.array([])


def _config(session: Session, command: Command) -> bytes:
    if command[1].upper() == b"HELP":
        return _help(command, "GET HELP")
    if command[1].upper() == b"GET" and len(command) == 3:
        # No Redis configuration parameters here: an empty match, as Redis
        # answers for a pattern that matches nothing (redis-benchmark asks);
        # a map in RESP3.
        return resp.mapping([], session.protocol)
    refuse("ERR CONFIG supports only CONFIG GET parameter here")


def _info(session: Session, command: Command) -> bytes:
    wanted = {argument.lower() for argument in command[1:]}
    everything = not wanted or wanted & {b"all", b"everything", b"default"}
    sections = [
        text
        for name, text in _info_sections(session)
        if everything or name.lower().encode() in wanted
    ]
    return resp.verbatim("\r\n".join(sections).encode(), session.protocol)


def _info_sections(session: Session) -> list[tuple[str, str]]:
    server = session.server
    node = session.node
    store = node.store
    stats = store.stats
    config = node.config
    port = config.resp_port
    if server.addresses:
        port = int(server.addresses[0].rpartition(":")[2])
    peers = [peer for peer in node.peers if peer.state is not PeerState.SELF]

    def section(title: str, fields: Sequence[tuple[str, object]]) -> tuple[str, str]:
        lines = [f"# {title}", *(f"{name}:{value}" for name, value in fields)]
        return title, "\r\n".join(lines) + "\r\n"

    keyspace = [("db0", f"keys={len(store)},expires=0,avg_ttl=0")] if len(store) else []
    return [
        section(
            "Server",
            [
                ("redis_version", REDIS_COMPATIBLE_VERSION),
                ("redis_mode", "standalone"),
                ("phoenix_version", __version__),
                ("phoenix_build", build()),
                ("node_id", node.id),
                ("run_id", node.incarnation),
                ("process_id", os.getpid()),
                ("tcp_port", port),
                ("uptime_in_seconds", int(time.monotonic() - server.started_at)),
            ],
        ),
        section(
            "Clients",
            [
                ("connected_clients", server.connected_clients),
                ("maxclients_per_ip", config.max_conns_per_ip),
                # No command blocks; redis-cli --stat showed a missing one as
                # -9223372036854775808 in its "blocked" column.
                ("blocked_clients", 0),
            ],
        ),
        section(
            "Memory",
            [
                ("used_memory", store.used_cost),
                ("maxmemory", store.max_cost),
                ("maxmemory_policy", "w-tinylfu"),
            ],
        ),
        section(
            "Stats",
            [
                ("total_connections_received", server.connections_received),
                ("total_commands_processed", server.commands_processed),
                ("rejected_connections", server.rejected_connections),
                ("expired_keys", stats.expirations),
                ("evicted_keys", store.evictions),
                ("keyspace_hits", stats.hits),
                ("keyspace_misses", stats.misses),
            ],
        ),
        section(
            "Replication",
            [
                ("role", "master"),
                ("connected_slaves", 0),
                ("phoenix_ready", int(node.ready)),
                ("phoenix_recovery", node.recovery),
                ("phoenix_peers", len(peers)),
                ("phoenix_peers_up", sum(peer.state is PeerState.UP for peer in peers)),
            ],
        ),
        section("Keyspace", keyspace),
    ]


def _dbsize(session: Session, command: Command) -> bytes:
    return resp.integer(len(session.node.store))


def _get(session: Session, command: Command) -> bytes:
    entry = session.node.get(session.key_of(command[1]))
    return resp.bulk(None if entry is None else entry.value, session.protocol)


_EXPIRY_UNITS = (b"EX", b"PX", b"EXAT", b"PXAT")


def _set(session: Session, command: Command) -> bytes:
    key = session.key_of(command[1])
    value = command[2]
    if len(command) == 3:  # no options, the usual SET: Node checks the value's size
        session.node.set_until(key, value, DEFAULT_CONTENT_TYPE, NO_EXPIRY)
        return OK
    condition: bytes | None = None
    want_old = keep_ttl = False
    expiry: tuple[bytes, bytes] | None = None
    options = command[3:]
    index = 0
    while index < len(options):
        option = options[index].upper()
        has_next = index + 1 < len(options)
        if option in (b"NX", b"XX") and condition in (None, option):
            condition = option
        elif option == b"GET":
            want_old = True
        elif option == b"KEEPTTL" and expiry is None:
            keep_ttl = True
        elif option in _EXPIRY_UNITS and not keep_ttl and _same_unit(expiry, option) and has_next:
            expiry = (option, options[index + 1])
            index += 1
        else:
            refuse(SYNTAX_ERROR)
        index += 1
    expires_at = NO_EXPIRY
    if expiry is not None:
        expires_at = session.deadline(*expiry, "set")
    node = session.node
    limit = node.config.max_value_size
    if len(value) > limit:
        raise TooLarge(f"value is larger than max_value_size ({limit} bytes)")
    current = None
    if condition or want_old or keep_ttl:
        node.check_ready()
        current = session.live(key)
    old = None if current is None else current.value
    reply = resp.bulk(old, session.protocol) if want_old else OK
    if (condition == b"NX" and current is not None) or (condition == b"XX" and current is None):
        return reply if want_old else resp.null(session.protocol)
    if keep_ttl and current is not None:
        expires_at = current.expires_at
    if expires_at != NO_EXPIRY and expires_at <= session.now():
        node.remove(key)
    else:
        node.set_until(key, value, DEFAULT_CONTENT_TYPE, expires_at)
    return reply


def _setnx(session: Session, command: Command) -> bytes:
    key = session.key_of(command[1])
    session.node.check_ready()
    if session.live(key) is not None:
        return resp.integer(0)
    session.node.set_until(key, command[2], DEFAULT_CONTENT_TYPE, NO_EXPIRY)
    return resp.integer(1)


def _setex(unit: bytes, name: str) -> Callable[[Session, Command], bytes]:
    def setex(session: Session, command: Command) -> bytes:
        key = session.key_of(command[1])
        expires_at = session.deadline(unit, command[2], name)
        session.node.set_until(key, command[3], DEFAULT_CONTENT_TYPE, expires_at)
        return OK

    return setex


def _getset(session: Session, command: Command) -> bytes:
    key = session.key_of(command[1])
    session.node.check_ready()
    current = session.live(key)
    old = None if current is None else current.value
    session.node.set_until(key, command[2], DEFAULT_CONTENT_TYPE, NO_EXPIRY)
    return resp.bulk(old, session.protocol)


def _getdel(session: Session, command: Command) -> bytes:
    key = session.key_of(command[1])
    entry = session.node.get(key)
    if entry is None:
        return resp.null(session.protocol)
    value = entry.value
    session.node.remove(key)
    return resp.bulk(value)


def _getex(session: Session, command: Command) -> bytes:
    key = session.key_of(command[1])
    options = command[2:]
    expiry: tuple[bytes, bytes] | None = None
    persist = False
    index = 0
    while index < len(options):
        option = options[index].upper()
        has_next = index + 1 < len(options)
        if option in _EXPIRY_UNITS and _same_unit(expiry, option) and not persist and has_next:
            expiry = (option, options[index + 1])
            index += 1
        elif option == b"PERSIST" and expiry is None:
            persist = True
        else:
            refuse(SYNTAX_ERROR)
        index += 1
    entry = session.node.get(key)
    if entry is None:  # as in Redis, before the expiry's number is read
        return resp.null(session.protocol)
    expires_at = None
    if expiry is not None:
        expires_at = session.deadline(*expiry, "getex")
    value = entry.value
    if expires_at is not None:
        session.rewrite(key, entry, value, expires_at)
    elif persist and entry.expires_at != NO_EXPIRY:
        session.rewrite(key, entry, value, NO_EXPIRY)
    return resp.bulk(value)


def _same_unit(expiry: tuple[bytes, bytes] | None, unit: bytes) -> bool:
    """Whether an expiry option in `unit` may follow `expiry`: Redis takes the
    last of repeated options in one unit, and refuses two units."""
    return expiry is None or expiry[0] == unit


def _strlen(session: Session, command: Command) -> bytes:
    entry = session.live(session.key_of(command[1]))
    return resp.integer(0 if entry is None else len(entry.value))


def _append(session: Session, command: Command) -> bytes:
    key = session.key_of(command[1])
    session.node.check_ready()
    entry = session.live(key)
    if entry is None:
        session.node.set_until(key, command[2], DEFAULT_CONTENT_TYPE, NO_EXPIRY)
        return resp.integer(len(command[2]))
    value = entry.value + command[2]
    session.node.set_until(key, value, entry.content_type, entry.expires_at)
    return resp.integer(len(value))


def _mget(session: Session, command: Command) -> bytes:
    """The values of the keys, refused past max_cost bytes of them: distinct keys
    never hold more (the store holds at most that), so only a key repeated can,
    and a command of 7 MB could otherwise ask for a reply of a TiB."""
    keys = [session.key_of(raw) for raw in command[1:]]
    entries = [session.node.get(key) for key in keys]
    values = [None if entry is None else entry.value for entry in entries]
    max_cost = session.node.store.max_cost
    if sum(len(value) for value in values if value is not None) > max_cost:
        refuse(
            f"ERR reply too large: its values would add up to more than max_cost ({max_cost} bytes)"
        )
    return resp.bulk_array(values, session.protocol)


def _mset(session: Session, command: Command) -> bytes:
    if len(command) % 2 == 0:
        refuse(wrong_arity("mset"))
    pairs = command[1:]
    items = [
        (session.key_of(pairs[index]), pairs[index + 1], DEFAULT_CONTENT_TYPE)
        for index in range(0, len(pairs), 2)
    ]
    session.node.set_many(items, 0)
    return OK


def _delete(session: Session, command: Command) -> bytes:
    keys = [session.key_of(raw) for raw in command[1:]]
    return resp.integer(sum(session.node.remove(key) for key in keys))


def _exists(session: Session, command: Command) -> bytes:
    keys = [session.key_of(raw) for raw in command[1:]]
    return resp.integer(sum(session.live(key) is not None for key in keys))


def _expire(unit: bytes, name: str) -> Callable[[Session, Command], bytes]:
    def expire(session: Session, command: Command) -> bytes:
        key = session.key_of(command[1])
        flags = {option.upper() for option in command[3:]}
        unknown = flags - {b"NX", b"XX", b"GT", b"LT"}
        if unknown:
            option = next(o for o in command[3:] if o.upper() in unknown)
            refuse(f"ERR Unsupported option {shown(option)}")
        if b"NX" in flags and len(flags) > 1:
            refuse("ERR NX and XX, GT or LT options at the same time are not compatible")
        if {b"GT", b"LT"} <= flags:
            refuse("ERR GT and LT options at the same time are not compatible")
        number = parse_integer(command[2])
        now = session.now()
        milliseconds = number * (1000 if unit in (b"EX", b"EXAT") else 1)
        expires_at = milliseconds + now if unit in (b"EX", b"PX") else milliseconds
        # Past 100 years, or seconds whose milliseconds overflow 64 bits (as Redis checks).
        if expires_at > now + MAX_TTL_SECONDS * 1000 or milliseconds < INT64_MIN:
            refuse(f"ERR invalid expire time in '{name}' command")
        entry = session.live(key)
        if entry is None:
            return resp.integer(0)
        current = entry.expires_at or math.inf  # no expiry: later than any deadline
        if (
            (b"NX" in flags and entry.expires_at != NO_EXPIRY)
            or (b"XX" in flags and entry.expires_at == NO_EXPIRY)
            or (b"GT" in flags and not expires_at > current)
            or (b"LT" in flags and not expires_at < current)
        ):
            return resp.integer(0)
        # A deadline already past removes the key, as in Redis.
        session.rewrite(key, entry, entry.value, max(expires_at, 1))
        return resp.integer(1)

    return expire


def _persist(session: Session, command: Command) -> bytes:
    key = session.key_of(command[1])
    entry = session.live(key)
    if entry is None or entry.expires_at == NO_EXPIRY:
        return resp.integer(0)
    session.rewrite(key, entry, entry.value, NO_EXPIRY)
    return resp.integer(1)


def _ttl(milliseconds: bool, absolute: bool = False) -> Callable[[Session, Command], bytes]:
    def ttl(session: Session, command: Command) -> bytes:
        entry = session.live(session.key_of(command[1]))
        if entry is None:
            return resp.integer(-2)
        if entry.expires_at == NO_EXPIRY:
            return resp.integer(-1)
        left = entry.expires_at if absolute else max(entry.expires_at - session.now(), 0)
        return resp.integer(left if milliseconds else (left + 500) // 1000)

    return ttl


def _type(session: Session, command: Command) -> bytes:
    entry = session.live(session.key_of(command[1]))
    return resp.simple("none" if entry is None else "string")


def _matcher(session: Session, pattern: bytes) -> Callable[[str], bool]:
    """KEYS and SCAN MATCH's test. A pattern far longer than any key it could
    match is refused: compiling a megabyte of pattern stalled the node for
    seconds, and the regex cache kept tens of megabytes of it."""
    limit = 4 * session.max_key_length
    if len(pattern) > limit:
        refuse(f"ERR pattern longer than {limit} bytes (4 x max_key_length)")
    return glob_matcher(pattern)


def _keys(session: Session, command: Command) -> bytes:
    matches = _matcher(session, command[1])
    found = [key.encode() for key, _ in session.node.store.items() if matches(key)]
    return resp.bulk_array(found)


def _scan_cursor(raw: bytes) -> int:
    """A cursor as Redis reads it (C's strtoul): an optional sign, decimal digits
    (none: 0), within 64 bits; a negative one wraps around."""
    match = _CURSOR.fullmatch(raw)
    if match is None or (match[1] and not match[2]):  # a sign alone is not read
        refuse("ERR invalid cursor")
    digits = match[2].lstrip(b"0")
    if len(digits) > 20 or int(digits or b"0") >= UINT64_LIMIT:
        refuse("ERR invalid cursor")
    magnitude = int(digits or b"0")
    return -magnitude % UINT64_LIMIT if match[1] == b"-" else magnitude


_CURSOR = re.compile(rb"([+-]?)([0-9]*)")
UINT64_LIMIT = 2**64


def _scan(session: Session, command: Command) -> bytes:
    cursor = _scan_cursor(command[1])
    count = DEFAULT_SCAN_COUNT
    matches: Callable[[str], bool] | None = None
    wanted_type: bytes | None = None
    options = command[2:]
    for index in range(0, len(options), 2):
        option = options[index].upper()
        if index + 1 >= len(options):
            refuse(SYNTAX_ERROR)
        argument = options[index + 1]
        if option == b"COUNT":
            count = parse_integer(argument)
            if count < 1:
                refuse(SYNTAX_ERROR)
        elif option == b"MATCH":
            matches = _matcher(session, argument)
        elif option == b"TYPE":
            wanted_type = argument.lower()
        else:
            refuse(SYNTAX_ERROR)
    page: list[tuple[str, Entry]] = []
    next_cursor = 0
    if cursor < BUCKET_COUNT:
        page, next_cursor = session.node.store.scan(cursor, count)
    keys = [key.encode() for key, _ in page if matches is None or matches(key)]
    if wanted_type not in (None, b"string"):
        keys = []
    return resp.array([resp.bulk(str(next_cursor).encode()), resp.bulk_array(keys)])


def _flush(session: Session, command: Command) -> bytes:
    if len(command) > 2 or (len(command) == 2 and command[1].upper() not in (b"ASYNC", b"SYNC")):
        refuse(SYNTAX_ERROR)
    session.node.flush()
    return OK


def _increment(sign: int, by_argument: bool) -> Callable[[Session, Command], bytes]:
    def increment(session: Session, command: Command) -> bytes:
        key = session.key_of(command[1])
        delta = parse_integer(command[2]) if by_argument else 1
        if sign < 0 and delta == INT64_MIN:
            refuse("ERR decrement would overflow")
        entry = session.live(key)
        current = 0 if entry is None else parse_integer(entry.value)
        result = current + sign * delta
        if not INT64_MIN <= result <= INT64_MAX:
            refuse("ERR increment or decrement would overflow")
        value = str(result).encode()
        if entry is None:
            session.node.set_until(key, value, DEFAULT_CONTENT_TYPE, NO_EXPIRY)
        else:
            session.node.set_until(key, value, entry.content_type, entry.expires_at)
        return resp.integer(result)

    return increment


COMMANDS: dict[bytes, Spec] = {  # by lower-case name
    # Connection.
    b"ping": Spec(_ping, -1, "/ping"),
    b"echo": Spec(_echo, 2, "/ping"),
    b"quit": Spec(_quit, -1, "/ping", needs_auth=False),
    b"auth": Spec(_auth, -2, "/ping", needs_auth=False),
    b"hello": Spec(_hello, -1, "/ping", needs_auth=False),
    b"select": Spec(_select, 2, "/ping"),
    b"multi": Spec(_multi, 1, "/ping"),
    b"exec": Spec(_exec, 1, "/ping"),
    b"discard": Spec(_discard, 1, "/ping"),
    b"client": Spec(
        _client,
        -2,
        "/ping",
        subcommands={b"setname": 3, b"getname": 2, b"setinfo": 4, b"id": 2, b"help": 2},
    ),
    b"command": Spec(
        _command,
        -1,
        "/ping",
        subcommands={
            b"count": 2,
            b"docs": -2,
            b"info": -2,
            b"list": -2,
            b"getkeys": -3,
            b"getkeysandflags": -3,
            b"help": 2,
        },
    ),
    # Server.
    b"info": Spec(_info, -1, "/cluster"),
    b"config": Spec(
        _config,
        -2,
        "/cluster",
        subcommands={b"get": -3, b"set": -4, b"resetstat": 2, b"rewrite": 2, b"help": 2},
    ),
    b"dbsize": Spec(_dbsize, 1, "/list", reads=True),
    b"flushall": Spec(_flush, -1, "/flush"),
    b"flushdb": Spec(_flush, -1, "/flush"),
    # Strings.
    b"get": Spec(_get, 2, reads=True, reply_values=_key_value),
    b"set": Spec(_set, -3, "/set", reply_values=_set_old_value),
    b"setnx": Spec(_setnx, 3, "/set"),
    b"setex": Spec(_setex(b"EX", "setex"), 4, "/set"),
    b"psetex": Spec(_setex(b"PX", "psetex"), 4, "/set"),
    b"getset": Spec(_getset, 3, "/set", reply_values=_key_value),
    b"getdel": Spec(_getdel, 2, "/remove", reads=True, reply_values=_key_value),
    b"getex": Spec(_getex, -2, "/set", reads=True, reply_values=_key_value),
    b"strlen": Spec(_strlen, 2, reads=True),
    b"append": Spec(_append, 3, "/set"),
    b"mget": Spec(_mget, -2, "/getKeys", reads=True, reply_values=_mget_values),
    b"mset": Spec(_mset, -3, "/setKeys"),
    b"incr": Spec(_increment(1, False), 2, "/set", reads=True),
    b"decr": Spec(_increment(-1, False), 2, "/set", reads=True),
    b"incrby": Spec(_increment(1, True), 3, "/set", reads=True),
    b"decrby": Spec(_increment(-1, True), 3, "/set", reads=True),
    # Keys.
    b"del": Spec(_delete, -2, "/remove"),
    b"unlink": Spec(_delete, -2, "/remove"),
    b"exists": Spec(_exists, -2, reads=True),
    b"expire": Spec(_expire(b"EX", "expire"), -3, "/set", reads=True),
    b"pexpire": Spec(_expire(b"PX", "pexpire"), -3, "/set", reads=True),
    b"expireat": Spec(_expire(b"EXAT", "expireat"), -3, "/set", reads=True),
    b"pexpireat": Spec(_expire(b"PXAT", "pexpireat"), -3, "/set", reads=True),
    b"persist": Spec(_persist, 2, "/set", reads=True),
    b"ttl": Spec(_ttl(milliseconds=False), 2, reads=True),
    b"pttl": Spec(_ttl(milliseconds=True), 2, reads=True),
    b"expiretime": Spec(_ttl(milliseconds=False, absolute=True), 2, reads=True),
    b"pexpiretime": Spec(_ttl(milliseconds=True, absolute=True), 2, reads=True),
    b"type": Spec(_type, 2, reads=True),
    b"keys": Spec(_keys, 2, "/list", reads=True),
    b"scan": Spec(_scan, -2, "/list", reads=True),
}
# The spellings clients send (lower and upper case), looked up before lowering the word.
SPEC_OF_WORD = {**COMMANDS, **{name.upper(): spec for name, spec in COMMANDS.items()}}
