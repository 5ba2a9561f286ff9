"""One connection's failure inside hypercorn must not stop the whole server.

hypercorn's trio worker serves each connection in a task of the listener's
nursery: an exception that escapes a connection's `TCPServer.run` ends the
nursery, and with it every other connection and the node's HTTP port. Any
client could set one off. Two were found (hypercorn 0.18):

- bytes after a request that closes the connection (HTTP/1.0, or
  `Connection: close`): hypercorn answers them with a 400 while the task
  that answered the request sends the end of the stream, and trio refuses
  the second sender (BusyResourceError; hypercorn issue #203);
- over HTTP/2, the end of a request's body arriving after its answer: a
  KeyError in hypercorn's stream table.

So `guard_connections` makes each connection's failure end that
connection alone, with one line in the log. Cancellation is not caught.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.trio.tcp_server import TCPServer

log = logging.getLogger("phoenix.http")


def guard_connections() -> None:
    """Wrap hypercorn's per-connection task (once; later calls do nothing)."""
    if getattr(TCPServer.run, "guarded", False):
        return
    run: Callable[[TCPServer], Awaitable[None]] = TCPServer.run

    async def guarded_run(self: TCPServer) -> None:
        try:
            await run(self)  # which closes the connection on its way out
        except Exception as error:  # an ExceptionGroup too; never Cancelled
            log.warning("a connection ended by an error in hypercorn: %r", error)
            log.debug("the error", exc_info=True)

    guarded: Any = guarded_run
    guarded.guarded = True
    TCPServer.run = guarded  # type: ignore[method-assign]
