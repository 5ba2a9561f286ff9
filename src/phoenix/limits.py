"""Per-request limits that sit in front of the application.

- max_conns_per_ip caps the requests in flight from one source address (not
  TCP connections: hypercorn does not tell the application about those);
  past it the answer is 429 (`InFlightCap`, in front of every route).
- A request must be read and answered within read_timeout + write_timeout;
  past that it is cancelled and, if nothing was sent yet, answered 503
  (`RequestDeadline`, in front of the Quart routes; phoenix.hot_routes
  bounds only their waits on the client, as its docstring says).
  Reading the body alone is bounded by read_timeout (408), and waiting for a
  write's peers by write_timeout; a connection with no request in progress
  is closed after read_timeout + write_timeout (phoenix.server).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import h11
import trio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_json_error(send: Send, status: int, message: str) -> None:
    """Answer a request from ASGI middleware with the API's JSON error shape."""
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# The answer to a request that ran out of time before anything was sent (503).
DEADLINE_EXCEEDED = "request not completed within read_timeout + write_timeout"


class NoWebSockets:
    """ASGI middleware, outermost: the API has no WebSocket route, so an upgrade is refused.

    hypercorn answers the refusal 403. An upgrade followed by more bytes
    breaks hypercorn's HTTP/1 state (it answers 400 and ends the connection
    with a warning from connection_guard); the refusal then has no one to go
    to. Left to Quart, each such request logged a 6 KB error traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            with contextlib.suppress(h11.LocalProtocolError):
                await send({"type": "websocket.close", "code": 1008})  # policy violation
            return
        await self.app(scope, receive, send)


class InFlightCap:
    """ASGI middleware: 429 past `max_per_ip` requests in flight from one address (0: no cap)."""

    def __init__(self, app: ASGIApp, *, max_per_ip: int) -> None:
        self.app = app
        self.max_per_ip = max_per_ip
        self.in_flight: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else ""
        in_flight = self.in_flight.get(address, 0)
        if self.max_per_ip and in_flight >= self.max_per_ip:
            await send_json_error(
                send, 429, f"too many requests in flight from {address} (max_conns_per_ip)"
            )
            return
        self.in_flight[address] = in_flight + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = self.in_flight[address] - 1
            if left:
                self.in_flight[address] = left
            else:
                del self.in_flight[address]


class RequestDeadline:
    """ASGI middleware: the request is cancelled past read_timeout + write_timeout, and
    answered 503 if nothing was sent yet."""

    def __init__(self, app: ASGIApp, *, read_timeout: float, write_timeout: float) -> None:
        self.app = app
        self.deadline = read_timeout + write_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        with trio.move_on_after(self.deadline) as deadline:
            await self.app(scope, receive, tracking_send)
        if deadline.cancelled_caught and not started:
            await send_json_error(send, 503, DEADLINE_EXCEEDED)


class ShieldLastSend:
    """ASGI middleware for the Quart app: its last send is not cut short.

    The server may close the connection inside the last send of a response
    (max_requests_per_conn), and Quart cancels the request's tasks when it
    sees the disconnect; that must not cut the close short. So the last send
    is shielded, and bounded by write_timeout instead.
    """

    def __init__(self, app: ASGIApp, *, write_timeout: float) -> None:
        self.app = app
        self.write_timeout = write_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def shielding_send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                send_by = trio.current_time() + self.write_timeout
                with trio.CancelScope(shield=True, deadline=send_by):
                    await send(message)
                return
            await send(message)

        await self.app(scope, receive, shielding_send)
