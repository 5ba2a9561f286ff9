"""The HTTP ceiling: an ASGI callable that answers every request with a fixed small body.

bench/run.py serves it with `hypercorn --worker-class trio bench/bare_asgi.py:app`
next to `phoenix serve`, and loads both the same way: what phoenix reaches
compared with this is what the framework, the middleware and the cache cost
on top of hypercorn itself. It reads (and drops) the body of a request whose
method carries one, so POSTs are answered too; like phoenix's hot routes, it
first takes what hypercorn has already queued without waiting (each wait on
the channel is a trip through trio's scheduler), so the ceiling stays one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b"x" * 100
HEADERS = [
    (b"content-type", b"application/octet-stream"),
    (b"content-length", str(len(BODY)).encode("ascii")),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    # hypercorn's trio worker hands the app a memory channel's receive.
    channel = receive.__self__
    more_body = scope["method"] not in ("GET", "HEAD")
    while more_body:
        try:
            message = channel.receive_nowait()
        except trio.WouldBlock:
            message = await receive()
        more_body = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
