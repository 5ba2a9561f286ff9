"""Fixes for hypercorn's connections: none may stop the server or be held forever.

hypercorn's trio worker serves each connection in a task of the listener's
nursery: an exception that escapes a connection's `TCPServer.run` ends the
nursery, and with it every other connection and the node's HTTP port. Any
client could set one off. Two were found (hypercorn 0.18):

- bytes after a request that closes the connection (HTTP/1.0, or
  `Connection: close`): hypercorn answers them with a 400 while the task
  that answered the request sends the end of the stream without the
  connection's send lock, and trio refuses the second sender
  (BusyResourceError; hypercorn issue #203). It is what it means, the
  connection closing, and is handled as hypercorn handles a closed one;
- over HTTP/2, the end of a request's body arriving after its answer: a
  KeyError in hypercorn's stream table.

So `guard_connections` makes any such failure end its connection alone,
with one line in the log. Cancellation is not caught.

Nor may a connection be held forever:

- hypercorn writes an answer shielded from cancellation and with no bound:
  a client that read nothing held its connection until it left. Now each
  WRITE_PIECE bytes of an answer must be taken within the node's
  write_timeout (`GuardedConfig`);
- hypercorn hands a request's body to the app through a queue of 10 parts,
  and the task that reads the connection waits while the queue is full,
  also after the app has answered without reading the body (a GET with a
  body, a 429): from the eleventh part on, that task never read again, so
  the connection was never seen to close and was held, file descriptor and
  all, until the node stopped. Once the app has finished, the parts it
  left are now dropped;
- over HTTP/2, an answer waits for the client's flow-control window with
  no bound, and a close did not end that wait: a window of 0 held the
  streams' tasks, and the connection, for good. Now a connection none of
  whose answers makes progress for write_timeout is closed, and a close
  ends the waits (`_bound_http2_streams`);
- a connection at rest whose client closed it was closed only by the
  keep-alive timer (CLOSE-WAIT meanwhile); now once the client's end has
  been read and the answers in progress have ended.

Nor an answer cut short: after a connection's last allowed request
(max_requests_per_conn), hypercorn closed it when the next request's bytes
came in while that request's answer was being written, and a client that
pipelines lost the answer (up to 8 times in 10). The close now waits for
the answer to end, and lingers: with requests the client sent later still
unread, closing at once reset the connection and lost the answer's end.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.events import Body, Data, EndBody, EndData, Trailers
from hypercorn.protocol.h2 import H2Protocol, StreamBuffer
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.typing import AppWrapper

from phoenix.config import WRITE_PIECE

log = logging.getLogger("phoenix.http")

# The connections whose reader waits for an answer to end, each with when
# a piece of that answer was last taken (`_send_bounded` notes it for these only).
_answers_awaited: dict[TCPServer, float] = {}
# The connections whose reader has ended: closing, whatever their streams still do.
_read_ended: weakref.WeakSet[TCPServer] = weakref.WeakSet()
# The connections being closed, each with the event of its close's end.
_closing: weakref.WeakKeyDictionary[TCPServer, trio.Event] = weakref.WeakKeyDictionary()


class GuardedConfig(HypercornConfig):
    """hypercorn's settings, and the node's write_timeout for `guard_connections`' sends."""

    write_timeout: float | None = None


# The write_timeout of a server whose config is hypercorn's own (its CLI
# builds it): the app that hypercorn imports sets it when it loads the node's.
_cli_write_timeout: float | None = None


def bound_writes_by(write_timeout: float) -> None:
    """Bound the writes of servers whose hypercorn config carries no write_timeout."""
    global _cli_write_timeout
    _cli_write_timeout = write_timeout


def _write_timeout(config: HypercornConfig) -> float | None:
    timeout: float | None = getattr(config, "write_timeout", _cli_write_timeout)
    return timeout


def guard_connections() -> None:
    """Wrap hypercorn's per-connection task and its sends (once; later calls do nothing)."""
    if getattr(TCPServer.run, "guarded", False):
        return
    run: Callable[[TCPServer], Awaitable[None]] = TCPServer.run
    protocol_send: Callable[[TCPServer, Event], Awaitable[None]] = TCPServer.protocol_send
    read_data: Callable[[TCPServer], Awaitable[None]] = TCPServer._read_data
    close: Callable[[TCPServer], Awaitable[None]] = TCPServer._close

    async def guarded_run(self: TCPServer) -> None:
        try:
            await run(self)  # which closes the connection on its way out
        except Exception as error:  # an ExceptionGroup too; never Cancelled
            log.warning("a connection ended by an error in hypercorn: %r", error)
            log.debug("the error", exc_info=True)

    async def guarded_send(self: TCPServer, event: Event) -> None:
        if isinstance(event, Updated) and self in _read_ended:
            return  # no keep-alive timer for a connection being closed
        try:
            timeout = _write_timeout(self.config)
            if isinstance(event, RawData) and timeout is not None:
                await _send_bounded(self, event.data, timeout)
                return
            if isinstance(event, Closed) and timeout is not None:
                await _let_the_answer_end(self, timeout)
            await protocol_send(self, event)
        except trio.BusyResourceError:  # the end of the stream is being sent: closing
            await self.protocol.handle(Closed())

    guarded: Any = guarded_run
    guarded.guarded = True

    async def read_then_end(self: TCPServer) -> None:
        await read_data(self)
        # The client has gone (or half-closed), or the connection is being
        # closed. hypercorn left a connection at rest (kept alive, or HTTP/2
        # with its streams ended) to the keep-alive timer: CLOSE-WAIT for up
        # to keep_alive_timeout, descriptor, task and all. Without the timer,
        # the socket is closed once the answers in progress have ended (a
        # client that half-closed after its request still gets its answer).
        _read_ended.add(self)
        await self.idle_task.stop()

    async def close_lingering(self: TCPServer) -> None:
        # hypercorn closed at once, and with a client's later requests unread
        # the kernel reset the connection: the end of the answer still on
        # its way was lost (9 to 14 KB of 1 MB, every time, for a client
        # that sent two requests past max_requests_per_conn while reading).
        # So, as web servers do, the node first ends its side and reads until
        # the client ends its own, for write_timeout at most (nginx's
        # lingering_timeout is 5 s too). Only a close that hypercorn's reader
        # makes lingers: when an answer's end closes, the reader is still
        # reading (BusyResourceError), and the close is at once, as before.
        timeout = _write_timeout(self.config)
        if timeout is None or not isinstance(self.stream, trio.SocketStream):
            await close(self)
            return
        closed = _closing.get(self)
        if closed is not None:  # the reader and an answer's end may both close
            await closed.wait()
            return
        closed = _closing[self] = trio.Event()
        try:
            with contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError
            ):
                async with self.send_lock:  # after the piece of an answer being sent
                    await self.stream.send_eof()
                with trio.move_on_after(timeout):
                    while await self.stream.receive_some(WRITE_PIECE):
                        pass
            await close(self)
        finally:
            closed.set()

    TCPServer.run = guarded  # type: ignore[method-assign]
    TCPServer.protocol_send = guarded_send  # type: ignore[method-assign]
    TCPServer._read_data = read_then_end  # type: ignore[method-assign]
    TCPServer._close = close_lingering  # type: ignore[method-assign]
    TaskGroup.spawn_app = _spawn_app_dropping_parts_left(TaskGroup.spawn_app)  # type: ignore[method-assign]
    _bound_http2_streams()


async def _let_the_answer_end(server: TCPServer, timeout: float) -> None:
    """Before a close, wait for an HTTP/1 answer part written to end, while it goes on.

    hypercorn's reader closes the connection when it meets bytes of a next
    request after an answer that says `Connection: close` (the last of
    max_requests_per_conn) has begun, cutting that answer short. The
    answer's end closes the connection anyway, and the reader waits for it
    on `can_read`, as it does for any answer in progress: for as long as the
    client takes a piece of it within `timeout`, as `_send_bounded` asks.
    """
    protocol = getattr(server.protocol, "protocol", None)
    if (
        isinstance(protocol, H11Protocol)
        and protocol.stream is not None  # None once the answer's own end closes
        and protocol.connection.our_state is h11.SEND_BODY
    ):
        await protocol.can_read.clear()
        _answers_awaited[server] = trio.current_time()
        try:
            while True:
                since = _answers_awaited[server]
                with trio.move_on_at(since + timeout) as waiting:
                    await protocol.can_read.wait()
                if not waiting.cancelled_caught or _answers_awaited[server] == since:
                    return
        finally:
            del _answers_awaited[server]


async def _send_bounded(server: TCPServer, data: bytes, timeout: float) -> None:
    """hypercorn's send, with each WRITE_PIECE bytes of it bounded by `timeout`.

    Shielded as hypercorn's is (a send cut short by the request's end would
    break the stream), but a client that takes nothing for `timeout` has its
    connection closed; one that reads slowly but steadily is not cut off.
    """
    view = memoryview(data)
    async with server.send_lock:
        try:
            for start in range(0, len(view), WRITE_PIECE):
                with trio.CancelScope(shield=True) as piece:
                    piece.deadline = trio.current_time() + timeout
                    await server.stream.send_all(view[start : start + WRITE_PIECE])
                if piece.cancelled_caught:
                    log.debug("closing a connection: the client took nothing for write_timeout")
                    await trio.aclose_forcefully(server.stream)
                    await server.protocol.handle(Closed())
                    return
                if _answers_awaited and server in _answers_awaited:
                    _answers_awaited[server] = trio.current_time()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await server.protocol.handle(Closed())


def _spawn_app_dropping_parts_left(spawn_app: Callable[..., Any]) -> Callable[..., Any]:
    """`TaskGroup.spawn_app`, whose queue to the app never makes hypercorn wait in vain.

    Once the app has finished, the queue is closed and what is put in it is
    dropped. The end of the request (http.disconnect) is never waited for:
    hypercorn puts it from the app's own task too, once the answer is sent,
    and that task waited forever on a queue full of body parts it had not
    read. The parts not read are dropped to make room for it.
    """

    async def spawn(
        self: TaskGroup, app: AppWrapper, config: Any, scope: Any, send: Any
    ) -> Callable[[Any], Awaitable[None]]:
        queues: list[trio.MemoryReceiveChannel[Any]] = []  # the app's end, once it runs

        async def app_then_close(scope: Any, receive: Any, *args: Any) -> None:
            queue = receive.__self__  # hypercorn's receive is its queue's bound method
            queues.append(queue)
            try:
                await app(scope, receive, *args)
            finally:
                queue.close()

        put: Any = await spawn_app(self, app_then_close, config, scope, send)

        async def put_without_waiting_in_vain(event: Any) -> None:
            if event["type"] == "http.disconnect":
                for queue in queues:
                    with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
                        while True:
                            queue.receive_nowait()
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                    put.__self__.send_nowait(event)
                return
            with contextlib.suppress(trio.BrokenResourceError):  # the app has finished
                await put(event)

        return put_without_waiting_in_vain

    return spawn


# The HTTP/2 stream events whose send waits for the client's flow-control window.
_WINDOWED = (Body, Data, EndBody, EndData, Trailers)
# Per HTTP/2 connection, the waits of its streams' apps for the client's
# window; data of any of its streams going out puts all their deadlines off.
_waits: weakref.WeakKeyDictionary[H2Protocol, set[trio.CancelScope]] = weakref.WeakKeyDictionary()
_connection_of: weakref.WeakKeyDictionary[StreamBuffer, H2Protocol] = weakref.WeakKeyDictionary()


def _bound_http2_streams() -> None:
    """hypercorn's HTTP/2 streams, whose answers neither wait forever nor outlive the connection.

    An answer's data waits in its stream's buffer until the client's window
    lets it out, and the app's task with it. hypercorn bounds that wait by
    nothing: a client that opened with a window of 0 held each stream's task
    (and its max_conns_per_ip slot) for as long as it kept the connection,
    and then for good, as the connection's close did not end those waits,
    so the connection was never closed either (CLOSE-WAIT, descriptor and
    all). Now the close ends them, and a connection none of whose streams'
    data makes progress for write_timeout is closed, as an HTTP/1 client
    that takes nothing is cut off. (Progress is the connection's, not each
    stream's: a client may read its streams one after another, or leave one
    waiting while it reads the others.)
    """
    handle: Callable[[H2Protocol, Event], Awaitable[None]] = H2Protocol.handle
    stream_send: Callable[[H2Protocol, Any], Awaitable[None]] = H2Protocol.stream_send
    pop: Callable[[StreamBuffer, int], Awaitable[bytes]] = StreamBuffer.pop

    async def handle_ending_waits(self: H2Protocol, event: Event) -> None:
        await handle(self, event)
        if isinstance(event, Closed):
            for buffer in list(self.stream_buffers.values()):
                await buffer.close()

    async def stream_send_bounded(self: H2Protocol, event: Any) -> None:
        timeout = _write_timeout(self.config)
        buffer = self.stream_buffers.get(event.stream_id) if isinstance(event, _WINDOWED) else None
        if timeout is None or buffer is None:
            await stream_send(self, event)
            return
        _connection_of[buffer] = self
        waits = _waits.setdefault(self, set())
        with trio.CancelScope(deadline=trio.current_time() + timeout) as waiting:
            waits.add(waiting)
            try:
                await stream_send(self, event)
            finally:
                waits.discard(waiting)
        if waiting.cancelled_caught:
            log.debug("closing an HTTP/2 connection: no answer of it made progress")
            await self.send(Closed())

    async def pop_noting_progress(self: StreamBuffer, max_length: int) -> bytes:
        data = await pop(self, max_length)
        connection = _connection_of.get(self) if data else None
        timeout = _write_timeout(connection.config) if connection is not None else None
        if connection is not None and timeout is not None and _waits.get(connection):
            deadline = trio.current_time() + timeout
            for waiting in _waits[connection]:
                waiting.deadline = deadline
        return data

    H2Protocol.handle = handle_ending_waits  # type: ignore[method-assign]
    H2Protocol.stream_send = stream_send_bounded  # type: ignore[method-assign]
    StreamBuffer.pop = pop_noting_progress  # type: ignore[method-assign]
