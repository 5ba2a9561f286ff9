"""One connection's failure inside hypercorn must not stop the whole server.

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
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.events import Closed, Event
from hypercorn.trio.tcp_server import TCPServer

log = logging.getLogger("phoenix.http")


def guard_connections() -> None:
    """Wrap hypercorn's per-connection task and its sends (once; later calls do nothing)."""
    if getattr(TCPServer.run, "guarded", False):
        return
    run: Callable[[TCPServer], Awaitable[None]] = TCPServer.run
    protocol_send: Callable[[TCPServer, Event], Awaitable[None]] = TCPServer.protocol_send

    async def guarded_run(self: TCPServer) -> None:
        try:
            await run(self)  # which closes the connection on its way out
        except Exception as error:  # an ExceptionGroup too; never Cancelled
            log.warning("a connection ended by an error in hypercorn: %r", error)
            log.debug("the error", exc_info=True)

    async def closing_aware_send(self: TCPServer, event: Event) -> None:
        try:
            await protocol_send(self, event)
        except trio.BusyResourceError:  # the end of the stream is being sent: closing
            await self.protocol.handle(Closed())

    guarded: Any = guarded_run
    guarded.guarded = True
    TCPServer.run = guarded  # type: ignore[method-assign]
    TCPServer.protocol_send = closing_aware_send  # type: ignore[method-assign]
