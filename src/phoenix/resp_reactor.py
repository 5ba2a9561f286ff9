"""The RESP listener's reactor: one task serves every plain TCP connection at rest (docs/resp.md).

A trio task that waits for its socket costs a registration with trio's
epoll, a park, a wake-up and a reschedule: about as much as the rest of a
GET. Most of the time a connection is *at rest*: no incomplete command
pending, no command queued and no reply left unsent, so nothing it does is
bounded by a timeout. While at rest, its task parks in `Reactor.serve` and
the reactor serves it, with every other connection at rest, from its own
`select.epoll`: the reactor waits through trio until that epoll's file
descriptor is readable (some connection has something to read), then takes
one batch from each ready connection in one pass: ``recv``, `Session.take`
(parse and run the commands, which never wait), one non-blocking ``send``.

A connection that leaves rest (a frame left incomplete, commands queued
behind a full batch of replies, a reply the kernel's buffer did not take,
the peer gone, a protocol error or QUIT, an exception) is handed back to
its own task, which carries on exactly as
`Session.run_socket` always has, its read_timeout and write_timeout as
trio cancel scopes, and parks again once the connection is back at rest.
So each connection keeps its task (its accounting, its clean-up, its
cancellation when the node stops); only the hot path is shared.

Fairness: each pass waits for the epoll through trio (a checkpoint: the
node's other tasks run in between) and takes at most one batch from each of
at most PASS_EVENTS connections; the others stay ready for the next pass.
"""

from __future__ import annotations

import select
import socket
from typing import TYPE_CHECKING

import outcome
import trio

if TYPE_CHECKING:
    from phoenix.resp_server import Session

# Ready connections served per pass at most; level-triggered epoll keeps the others ready.
PASS_EVENTS = 256
NOTHING_UNSENT = memoryview(b"")

_Parked = tuple["Session", socket.socket, trio.lowlevel.Task]


class Reactor:
    """Serves the connections at rest of one listener; `run` is its task.

    >>> async with trio.open_nursery() as nursery:  # doctest: +SKIP
    ...     reactor = await nursery.start(Reactor(64 * 1024).run)
    ...     unsent = await reactor.serve(session, sock)  # in a connection's task
    """

    def __init__(self, receive_size: int) -> None:
        self.receive_size = receive_size
        self._epoll: select.epoll | None = None
        # By file descriptor: the connections at rest, each with its parked task.
        self._parked: dict[int, _Parked] = {}

    @property
    def serving(self) -> int:
        """How many connections are at rest in the reactor now."""
        return len(self._parked)

    async def run(
        self, *, task_status: trio.TaskStatus[Reactor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve the parked connections until cancelled; then hand back any left over."""
        epoll = select.epoll()
        self._epoll = epoll
        try:
            task_status.started(self)
            fd = epoll.fileno()
            wait_readable = trio.lowlevel.wait_readable
            while True:
                await wait_readable(fd)
                self._serve_ready(epoll.poll(0, PASS_EVENTS))
        finally:
            self._epoll = None
            stopped = trio.ClosedResourceError("the RESP listener stopped")
            for fd in list(self._parked):
                self._hand_back(fd, epoll, outcome.Error(stopped))
            trio.lowlevel.notify_closing(epoll.fileno())
            epoll.close()

    async def serve(self, session: Session, sock: socket.socket) -> memoryview | None:
        """Park the calling connection's task while the reactor serves `sock`.

        Returns when the connection leaves rest: None if the peer closed,
        else the replies the kernel's buffer did not take (empty if none);
        `session.pending`, `session.queued` and `session.closing` tell the
        rest. An error met while serving (a reset, a failing command) is
        raised here.
        Cancelling the task takes the connection out of the reactor.
        """
        epoll = self._epoll
        if epoll is None:
            raise trio.ClosedResourceError("the RESP listener stopped")
        fd = sock.fileno()
        self._parked[fd] = (session, sock, trio.lowlevel.current_task())
        epoll.register(fd, select.EPOLLIN)

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            if self._parked.pop(fd, None) is not None:
                epoll.unregister(fd)
            return trio.lowlevel.Abort.SUCCEEDED

        result: memoryview | None = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def _serve_ready(self, events: list[tuple[int, int]]) -> None:
        """One pass: one batch from each ready connection, which stays only if still at rest."""
        parked = self._parked
        epoll = self._epoll
        assert epoll is not None
        receive_size = self.receive_size
        for fd, _ in events:
            connection = parked.get(fd)
            if connection is None:  # its task was cancelled during this pass
                continue
            session, sock, _task = connection
            try:
                data = sock.recv(receive_size)
            except BlockingIOError:  # woken for nothing
                continue
            except OSError as error:
                self._hand_back(fd, epoll, outcome.Error(error))
                continue
            if not data:
                self._hand_back(fd, epoll, outcome.Value(None))
                continue
            try:
                replies, _consumed = session.take(data)
                unsent = NOTHING_UNSENT
                if replies:
                    try:
                        sent = sock.send(replies)
                    except BlockingIOError:
                        sent = 0
                    if sent < len(replies):
                        unsent = memoryview(replies)[sent:]
            except Exception as error:  # the connection's task reports it, as it would have
                self._hand_back(fd, epoll, outcome.Error(error))
                continue
            if unsent or session.pending or session.queued or session.closing:
                self._hand_back(fd, epoll, outcome.Value(unsent))

    def _hand_back(
        self, fd: int, epoll: select.epoll, result: outcome.Outcome[memoryview | None]
    ) -> None:
        _session, _sock, task = self._parked.pop(fd)
        epoll.unregister(fd)
        trio.lowlevel.reschedule(task, result)
