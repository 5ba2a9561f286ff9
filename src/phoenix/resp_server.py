"""The RESP listener and its connections: Redis clients talk to a node (docs/resp.md).

`RespServer.serve` listens with `trio.serve_tcp` on the node's host and
`resp_port`, one task per connection in serve_tcp's own nursery; a `Session`
is one connection. The commands (resp_commands.py) run against the same
`Node` as the HTTP API, and reads wait for start-up recovery
(``-LOADING``). The whitelist, max_conns_per_ip, API keys (``AUTH``) and
read_timeout / write_timeout apply as they do to HTTP.

A connection speaks RESP2 until `HELLO 3` switches it to RESP3 (`HELLO 2`
switches back). The two differ only in the null reply (``$-1`` / ``_``) and
in map replies (a flat array / ``%``), which the handlers encode with
`Session.protocol`; every other reply is the same bytes in both.

A connection reads what arrives, runs every complete command in it in order
and sends all their replies in one write (pipelining), or in writes of about
REPLY_BATCH bytes when they are longer: the commands after a full batch wait
for it to be sent, and nothing more is read meanwhile. A frame left
incomplete for longer than read_timeout, or a protocol error, closes it. A
plain TCP connection is served on its socket directly (`Session.run_socket`),
and while at rest (nothing pending, queued or unsent) by the listener's one
reactor task (resp_reactor.py); a TLS one through trio's stream (`Session.run`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

import trio

from phoenix import resp
from phoenix.config import WRITE_PIECE, Config
from phoenix.errors import NotReady, RequestError
from phoenix.node import MAX_TTL_SECONDS, Node
from phoenix.resp import Command, Limits
from phoenix.resp_commands import (
    COMMANDS,
    NOAUTH,
    QUEUED,
    SPEC_OF_WORD,
    TRANSACTION_CONTROL,
    Refusal,
    Spec,
    check_subcommand,
    command_size,
    parse_integer,
    refuse,
    unknown_command,
    wrong_arity,
)
from phoenix.resp_reactor import Reactor
from phoenix.security import Keys, Whitelist, WhitelistFile
from phoenix.store import NO_EXPIRY, Entry

log = logging.getLogger("phoenix.resp")
_T = TypeVar("_T")

RECEIVE_SIZE = 64 * 1024
# A bulk string may hold a value of max_value_size plus this much (a key is
# bounded by max_key_length, which is far smaller in every sane config).
BULK_SLACK = 64 * 1024
# Redis's bounds for a client that has not authenticated yet.
UNAUTHENTICATED_BULK = 16 * 1024
UNAUTHENTICATED_ARRAY = 10
UNAUTHENTICATED_PENDING = 64 * 1024
# An incomplete command may hold this much, or four bulk strings' worth.
MIN_PENDING = 64 * 1024 * 1024
# Replies held in memory at once: once a batch of a pipeline's replies is
# this long, it is sent before the next commands run (one reply may be longer).
REPLY_BATCH = 1024 * 1024


class RespServer:
    """The listener and what its connections share: the node, the rules, the counts."""

    def __init__(self, node: Node, whitelist: WhitelistFile | None = None) -> None:
        config = node.config
        self.node = node
        self.whitelist = whitelist
        if whitelist is not None:
            whitelist.on_reload.append(self._close_refused)
        self.keys = Keys(config.read_only_keys, config.read_write_keys, config.cluster_key)
        self.keys_required = self.keys.required
        max_bulk = config.max_value_size + BULK_SLACK
        self.limits = Limits(max_bulk_length=max_bulk, max_pending=max(MIN_PENDING, 4 * max_bulk))
        # Before AUTH, when keys are required, frames are kept small, as Redis does.
        self.unauthenticated_limits = Limits(
            max_bulk_length=UNAUTHENTICATED_BULK,
            max_array_length=UNAUTHENTICATED_ARRAY,
            max_pending=UNAUTHENTICATED_PENDING,
        )
        self.clients: Counter[str] = Counter()
        # Each open connection's cancel scope, with its source address.
        self.connections: dict[trio.CancelScope, str] = {}
        self.started_at = time.monotonic()
        self.connections_received = 0
        self.rejected_connections = 0
        self.commands_processed = 0
        self.addresses: list[str] = []
        self._next_client_id = 0
        self.tls = server_tls_context(config) if config.tls else None
        # While `serve` runs (plain TCP only): serves the connections at rest.
        self.reactor: Reactor | None = None

    @classmethod
    def for_node(cls, node: Node) -> RespServer:
        """The listener of `node`, with the whitelist file of its config (ConfigError if bad)."""
        path = node.config.whitelist_path
        return cls(node, None if path is None else WhitelistFile(path))

    async def serve(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on the node's host and resp_port until cancelled; report the addresses.

        >>> async with trio.open_nursery() as nursery:  # doctest: +SKIP
        ...     addresses = await nursery.start(RespServer.for_node(node).serve)
        """
        config = self.node.config
        try:
            async with trio.open_nursery() as nursery:
                if self.whitelist is not None:
                    nursery.start_soon(self.whitelist.watch)
                if self.tls is None:
                    self.reactor = await nursery.start(Reactor(RECEIVE_SIZE).run)
                listeners: list[trio.SocketListener] = await nursery.start(
                    partial(
                        trio.serve_tcp, self.handle_connection, config.resp_port, host=config.host
                    )
                )
                for listener in listeners:
                    host, port = listener.socket.getsockname()[:2]
                    self.addresses.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
                task_status.started(self.addresses)
        finally:
            self.reactor = None

    def _close_refused(self, whitelist: Whitelist) -> None:
        """Close the connections of the addresses a new whitelist no longer
        allows: HTTP checks the list on every request, and a RESP connection,
        kept open while idle as in Redis, was served for good."""
        for connection, address in self.connections.items():
            if not whitelist.allows(address):
                connection.cancel()

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        """One accepted connection (over TLS when the node has a certificate).

        Nothing a connection does may stop the listener: a failure is logged
        and ends that connection only.
        """
        try:
            peer = stream.socket.getpeername()
        except OSError:  # already gone
            await stream.aclose()
            return
        address = str(peer[0]) if isinstance(peer, tuple) else ""
        client: trio.abc.Stream = stream
        if self.tls is not None:
            client = trio.SSLStream(stream, self.tls, server_side=True)
        try:
            await self.serve_client(client, address)
        except Exception:
            log.exception("RESP connection from %s failed", address)

    async def serve_client(self, stream: trio.abc.Stream, address: str) -> None:
        """Serve a client whose source address is `address` until it leaves or breaks a rule."""
        config = self.node.config
        self.connections_received += 1
        async with stream:
            refusal = None
            if self.whitelist is not None and not self.whitelist.current.allows(address):
                refusal = f"ERR {address} is not in the whitelist"
            elif config.max_conns_per_ip and self.clients[address] >= config.max_conns_per_ip:
                refusal = "ERR max number of clients reached"
            if refusal is not None:
                self.rejected_connections += 1
                with trio.move_on_after(config.write_timeout):
                    await _send_quietly(stream, resp.error(refusal))
                return
            self.clients[address] += 1
            self._next_client_id += 1
            session = Session(self, self._next_client_id, address)
            connection = trio.CancelScope()  # cancelled when the whitelist drops the address
            self.connections[connection] = address
            try:
                with connection:
                    if isinstance(stream, trio.SSLStream) and not await _handshake(
                        stream, config.read_timeout
                    ):
                        return
                    if isinstance(stream, trio.SocketStream):
                        await _run_on_socket(session, stream, self.reactor)
                    else:
                        await session.run(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                del self.connections[connection]
                self.clients[address] -= 1
                if not self.clients[address]:
                    del self.clients[address]

    @property
    def connected_clients(self) -> int:
        return sum(self.clients.values())


def server_tls_context(config: Config) -> ssl.SSLContext:
    """The node's certificate for RESP clients, with the same client-certificate rule as HTTP."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.certfile, config.keyfile)
    if config.ca_certs:
        context.load_verify_locations(config.ca_certs)
    if config.require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def _run_on_socket(
    session: Session, stream: trio.SocketStream, reactor: Reactor | None
) -> None:
    """Run `session` on the stream's socket itself, taken from trio's wrapper and closed here."""
    sock = socket.socket(fileno=stream.socket.detach())
    try:
        sock.setblocking(False)
        await session.run_socket(sock, reactor)
        if session.closing:  # QUIT or a protocol error
            await _close_gently(sock, session.node.config.write_timeout)
    except OSError as error:  # reset by the peer, broken pipe
        log.debug("RESP connection from %s broke: %s", session.address, error)
    finally:
        trio.lowlevel.notify_closing(sock)
        sock.close()


async def _close_gently(sock: socket.socket, timeout: float) -> None:
    """End the connection after the replies sent, and read what the client still sends.

    Closed with unread bytes, a socket is reset, and the replies the client
    has not read yet are lost: so the end is sent after them, and what
    comes in is dropped until the client closes too, or for `timeout`.
    """
    sock.shutdown(socket.SHUT_WR)
    fd = sock.fileno()
    with trio.move_on_after(timeout):
        while True:
            await trio.lowlevel.wait_readable(fd)
            with contextlib.suppress(BlockingIOError):  # woken for nothing
                if not sock.recv(RECEIVE_SIZE):
                    return


async def _readable(fd: int) -> bool:
    await trio.lowlevel.wait_readable(fd)
    return True


async def _send_rest(sock: socket.socket, rest: memoryview, timeout: float) -> bool:
    """Send what the kernel's buffer did not take at once; False once the client has
    taken nothing for `timeout` (one that reads slowly but steadily is not cut off)."""
    fd = sock.fileno()
    while rest:
        with trio.move_on_after(timeout) as waiting:
            await trio.lowlevel.wait_writable(fd)
        if waiting.cancelled_caught:
            return False
        with contextlib.suppress(BlockingIOError):  # woken for nothing
            sent = sock.send(rest)  # not in the slice: compiled, it would run twice
            rest = rest[sent:]
    return True


async def _send_all(stream: trio.abc.Stream, data: bytes, timeout: float) -> bool:
    """`_send_rest` over a trio stream: each WRITE_PIECE bytes taken within `timeout`."""
    view = memoryview(data)
    for start in range(0, len(view), WRITE_PIECE):
        with trio.move_on_after(timeout) as waiting:
            await stream.send_all(view[start : start + WRITE_PIECE])
        if waiting.cancelled_caught:
            return False
    return True


async def _handshake(stream: trio.SSLStream[trio.abc.Stream], timeout: float) -> bool:
    """Whether the client finished its TLS handshake within `timeout` (read_timeout)."""
    with trio.move_on_after(timeout):
        await stream.do_handshake()
        return True
    log.debug("closing a RESP connection: TLS handshake unfinished after read_timeout")
    return False


async def _send_quietly(stream: trio.abc.Stream, data: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(data)


class Session:
    """One client connection's state (its key, its name) and its commands."""

    def __init__(self, server: RespServer, client_id: int, address: str) -> None:
        self.server = server
        self.node = server.node
        self.id = client_id
        self.address = address
        self.max_key_length = server.node.config.max_key_length
        self.key: str | None = None
        # Whether `key` may use an HTTP route (security.Keys), by route, for `admit`.
        self.allowed: dict[str, bool] = {}
        self.name: bytes | None = None
        # The RESP version of the replies, 2 until HELLO 3; the null and map
        # replies depend on it (resp.null, resp.bulk, resp.mapping).
        self.protocol = 2
        self.closing = False
        # Between MULTI and EXEC: the queued commands, the bytes they hold
        # (command_size) and whether one was refused.
        self.transaction: list[tuple[Spec, Command]] | None = None
        self.transaction_size = 0
        self.transaction_failed = False
        # Received bytes of an incomplete command, waiting for the rest, and
        # how far that command's array was read.
        self.pending = bytearray()
        self.partial: resp.Partial | None = None
        # Commands received but not run yet: those after a full batch of replies.
        self.queued: list[Command] = []

    async def run(self, stream: trio.abc.Stream) -> None:
        """Read, run every complete command, answer them in one write; until closed.

        Over any trio stream (TLS; memory streams in tests). A plain TCP
        connection takes `run_socket` instead, the same loop on the socket.
        """
        config = self.node.config
        deadline = math.inf  # when the incomplete frame in `pending` must be complete
        data: bytes | bytearray | None
        while not self.closing:
            if self.queued:  # the last batch of replies is sent: run the next
                await trio.lowlevel.checkpoint()
                data, deadline = b"", math.inf
            else:
                data = await self._by(deadline, partial(stream.receive_some, RECEIVE_SIZE))
                if not data:  # the frame's deadline passed, or the client left
                    return
            replies, consumed = self.take(data)
            if replies:
                if not await _send_all(stream, replies, config.write_timeout):
                    return
            else:
                await trio.lowlevel.checkpoint()
            deadline = self._frame_deadline(deadline, consumed)

    async def run_socket(self, sock: socket.socket, reactor: Reactor | None = None) -> None:
        """`run` on a plain TCP socket (non-blocking), with trio's waits only where needed.

        trio's socket methods pay for a cancellation check, a yield and a
        cancel scope on every call; here a connection waits for the socket
        to be readable (its one yield per batch of commands, so a busy
        client cannot starve the others), reads once, and sends its replies
        with one non-blocking send, waiting to write (bounded by
        write_timeout) only when the kernel's buffer is full. An incomplete
        frame is bounded by read_timeout exactly as in `run`.

        With a `reactor` (resp_reactor.py), the connection is served there
        whenever it is at rest (nothing pending, queued or unsent), and by
        this loop only from when it leaves rest until it is back.
        """
        config = self.node.config
        recv, send = sock.recv, sock.send
        readable = partial(_readable, sock.fileno())
        deadline = math.inf
        while not self.closing:
            if self.queued:  # the last batch of replies is sent: run the next
                await trio.lowlevel.checkpoint()
                data, deadline = b"", math.inf
            elif deadline == math.inf and reactor is not None:
                unsent = await reactor.serve(self, sock)
                if unsent is None:
                    return
                if unsent and not await _send_rest(sock, unsent, config.write_timeout):
                    return
                deadline = self._frame_deadline(deadline, 0)
                continue
            else:
                if not await self._by(deadline, readable):
                    return
                try:
                    data = recv(RECEIVE_SIZE)
                except BlockingIOError:  # woken for nothing
                    continue
                if not data:
                    return
            replies, consumed = self.take(data)
            if replies:
                try:
                    sent = send(replies)
                except BlockingIOError:
                    sent = 0
                if sent < len(replies) and not await _send_rest(
                    sock, memoryview(replies)[sent:], config.write_timeout
                ):
                    return
            deadline = self._frame_deadline(deadline, consumed)

    async def _by(self, deadline: float, wait: Callable[[], Awaitable[_T]]) -> _T | None:
        """`wait()`, or None once the incomplete frame's deadline has passed."""
        if deadline == math.inf:  # nothing pending: no cancel scope to pay for
            return await wait()
        with trio.move_on_at(deadline):
            return await wait()
        log.debug("closing %s: frame incomplete after read_timeout", self.address)
        return None

    def _frame_deadline(self, deadline: float, consumed: int) -> float:
        """When the incomplete frame in `pending` must be complete, after a batch that
        took `consumed` bytes: read_timeout from the first batch that left it, or
        from the last that made progress."""
        if not self.pending:
            return math.inf
        if consumed or deadline == math.inf:
            return trio.current_time() + self.node.config.read_timeout
        return deadline

    def take(self, data: bytes | bytearray) -> tuple[bytes, int]:
        """Take bytes received: run the complete commands, keep the rest pending.

        Returns the replies to send in one write (b"" if none) and the bytes
        of commands taken. A protocol error is answered and closes the session.
        """
        pending = self.pending
        if pending or self.queued:
            pending += data
            replies, consumed, error = self.run_pending(pending)
            del pending[:consumed]
        else:
            replies, consumed, error = self.run_pending(data)
            if consumed < len(data):
                pending += memoryview(data)[consumed:]
        if error is not None and not self.closing:
            replies.append(resp.error(f"ERR Protocol error: {error}"))
            self.closing = True
        return b"".join(replies), consumed

    def run_pending(self, buffer: bytes | bytearray) -> tuple[list[bytes], int, str | None]:
        """Run the queued commands, then the complete commands at the start of `buffer`.

        Returns their replies, the bytes they took and the protocol error
        met, if any. Once the replies reach REPLY_BATCH bytes, the commands
        left are queued (and a protocol error after them is found again once
        they have run). An AUTH lifts the limits on unauthenticated frames:
        what follows it is parsed again with the larger ones.
        """
        replies: list[bytes] = []
        size = 0
        if self.queued:
            queued, self.queued = self.queued, []
            size = self.run_commands(queued, replies, size)
            if self.queued or self.closing:
                return replies, 0, None
        consumed = 0
        while True:
            limits = self.limits()
            parsed = resp.parse_commands(
                buffer[consumed:] if consumed else buffer, limits, self.partial
            )
            self.partial = parsed.partial
            size = self.run_commands(parsed.commands, replies, size)
            consumed += parsed.consumed
            if self.queued:
                return replies, consumed, None
            if self.closing or parsed.error is None or self.limits() is limits:
                return replies, consumed, parsed.error

    def run_commands(self, commands: list[Command], replies: list[bytes], size: int) -> int:
        """Run `commands` in order until the session closes or the replies reach REPLY_BATCH
        bytes; queue the ones left then. Returns the size of `replies` now."""
        left = iter(commands)
        for command in left:
            reply = self.execute(command)
            replies.append(reply)
            size += len(reply)
            if size >= REPLY_BATCH or self.closing:
                if not self.closing:
                    self.queued = list(left)
                break
        return size

    def limits(self) -> Limits:
        if self.server.keys_required and self.key is None:
            return self.server.unauthenticated_limits
        return self.server.limits

    def execute(self, command: Command) -> bytes:
        """The reply to one command; never raises for anything the client sent.

        Inside MULTI, a command that passes the checks is queued for EXEC;
        one that fails them makes EXEC discard the transaction, as in Redis,
        and so does one that would take the queue past max_pending bytes.
        """
        self.server.commands_processed += 1
        word = command[0]
        known = SPEC_OF_WORD.get(word) or COMMANDS.get(word.lower())
        # The usual case, outside MULTI and without keys to check, takes no
        # detour: what `admit` would find is only whether the arity fits.
        if (
            known is not None
            and self.transaction is None
            and not (known.needs_auth and self.server.keys_required)
            and known.subcommands is None
        ):
            arity = known.arity
            if len(command) == arity or (arity < 0 and len(command) >= -arity):
                return self.run_command(known, command)
        try:
            spec = self.admit(known, command)
        except Refusal as refusal:
            if word.lower() == b"exec":  # Redis discards a transaction whose EXEC it refuses
                self.transaction = None
                reason = str(refusal).removeprefix("ERR ")
                return resp.error(f"EXECABORT Transaction discarded because of: {reason}")
            if self.transaction is not None:
                self.transaction_failed = True
            return resp.error(str(refusal))
        if self.transaction is not None and word.lower() not in TRANSACTION_CONTROL:
            # The queue holds what an incomplete command may: unbounded, a
            # client that never sends EXEC grew it for as long as it sent.
            size = self.transaction_size + command_size(command)
            limit = self.server.limits.max_pending
            if size > limit:
                self.transaction_failed = True
                return resp.error(
                    "ERR transaction too large: the queued commands would hold more than "
                    f"{limit} bytes"
                )
            self.transaction_size = size
            self.transaction.append((spec, command))
            return QUEUED
        return self.run_command(spec, command)

    def admit(self, spec: Spec | None, command: Command) -> Spec:
        """The command's spec, once it is known, has its arguments and is allowed."""
        if spec is None:
            refuse(unknown_command(command))
        arity = spec.arity
        if (arity > 0 and len(command) != arity) or len(command) < -arity:
            refuse(wrong_arity(command[0].lower().decode("utf-8", "replace")))
        check_subcommand(spec, command)
        if spec.needs_auth and self.server.keys_required:
            if self.key is None:
                refuse(NOAUTH)
            if not self.may_run(spec.twin):
                shown = command[0].lower().decode("utf-8", "replace")
                refuse(f"NOPERM this key is read-only: no permission to run the '{shown}' command")
        return spec

    def may_run(self, twin: str) -> bool:
        """Whether the session's key may use the HTTP route `twin`: asked once per route."""
        allowed = self.allowed.get(twin)
        if allowed is None:
            allowed = self.allowed[twin] = self.server.keys.refusal(twin, self.key) is None
        return allowed

    def run_command(self, spec: Spec, command: Command) -> bytes:
        try:
            if spec.reads and not self.node.ready:
                self.node.check_ready()
            return spec.handler(self, command)
        except Refusal as refusal:
            return resp.error(str(refusal))
        except NotReady as error:
            return resp.error(f"LOADING {error}")
        except RequestError as error:
            return resp.error(f"ERR {error}")
        except Exception:
            log.exception("RESP command %r failed", command[0])
            return resp.error("ERR internal error; see the node's log")

    # Arguments.

    def key_of(self, raw: bytes) -> str:
        """A key argument, checked like the HTTP API checks keys."""
        try:
            key = raw.decode("utf-8")
        except UnicodeDecodeError:
            refuse("ERR key must be valid UTF-8")
        # Node.check_key refuses empty keys and keys over max_key_length bytes only.
        if not 0 < len(raw) <= self.max_key_length:
            self.node.check_key(key)
        return key

    def now(self) -> int:
        return self.node.clock.now_ms()

    def live(self, key: str) -> Entry | None:
        """The key's entry, without counting a hit or miss (for metadata and updates)."""
        return self.node.store.get(key, record=False)

    def deadline(self, unit: bytes, raw: bytes, command: str) -> int:
        """An expiry option's absolute deadline in ms: EX/PX from now, EXAT/PXAT as given.

        Redis's rule: the number must be an integer > 0 (past EXAT/PXAT are
        fine); past our 100-year limit it is an invalid expire time too.
        """
        number = parse_integer(raw)
        now = self.now()
        if unit in (b"EX", b"EXAT"):
            number *= 1000
        deadline = number + now if unit in (b"EX", b"PX") else number
        if number <= 0 or deadline > now + MAX_TTL_SECONDS * 1000:
            refuse(f"ERR invalid expire time in '{command}' command")
        return deadline

    def rewrite(self, key: str, entry: Entry, value: bytes, expires_at: int) -> None:
        """A new versioned write of `key` (keeping its content type), or a remove if past due."""
        if expires_at != NO_EXPIRY and expires_at <= self.now():
            self.node.remove(key)
        else:
            self.node.set_until(key, value, entry.content_type, expires_at)
