"""The hot routes, answered straight from ASGI: /get, /set, /getKeys,
/setKeys, and /internal/apply, which carries every replicated write.

Quart costs every request a nursery, two tasks, a request object and its
contexts: profiled under load, that doubled the CPU time of a GET
(docs/benchmarks.md). These routes carry a cache's traffic, so they
are answered here, in front of the Quart app, by the same rules
(phoenix.api_rules) with the same answers, errors and limits; every other
path goes on to Quart. The middleware in front of both (metrics, the guard,
the in-flight cap) is the same. Instead of RequestDeadline's bound on the
whole request, each wait on the client is bounded here: the body by
read_timeout (408), over HTTP/2 the answer's send by read_timeout +
write_timeout; hypercorn writes an HTTP/1 answer shielded from
cancellation (connection_guard bounds that write by write_timeout), and a
write concern's wait on peers has its own bound.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from phoenix.api_rules import (
    GET_KEYS_BODY_ERROR,
    HTTP_MESSAGES,
    JSON,
    SET_KEYS_BODY_ERROR,
    SMALL_JSON_BODY,
    Answer,
    batch_items,
    check_json_type,
    check_json_values,
    dumps,
    found_entries,
    lookup,
    max_json_values,
    parse_json,
    parse_query,
    required,
    set_request,
    ttl_seconds,
    value_too_large,
    write_answer,
    write_concern,
)
from phoenix.errors import BodyTimeout, InvalidRequest, RequestError, TooLarge, header_text
from phoenix.internal_api import apply_batch
from phoenix.limits import ASGIApp, Message, Receive, Scope, Send
from phoenix.node import Node
from phoenix.security import route_path
from phoenix.store import DEFAULT_CONTENT_TYPE

log = logging.getLogger("phoenix.api")

# The methods of each route; HEAD /get is a GET whose body the server drops.
METHODS = {
    "/get": ("GET", "HEAD"),
    "/set": ("POST", "PUT"),
    "/getKeys": ("POST",),
    "/setKeys": ("POST",),
    "/internal/apply": ("POST",),
}
HTTP1 = frozenset({"1.0", "1.1"})
# What werkzeug says of an unexpected failure, as the Quart routes answer it.
INTERNAL_ERROR = (
    "The server encountered an internal error and was unable to complete your request. "
    "Either the server is overloaded or there is an error in the application."
)

# The answer to nearly every /set (no write concern), encoded once.
_STORED = {stored: dumps({"stored": stored}).encode() for stored in (True, False)}

# (status, content type, body, extra headers)
Reply = tuple[int, str, bytes, dict[str, str]]


class Disconnected(Exception):
    """The client went away before its request body was in: nobody to answer."""


class HotRoutes:
    """ASGI app: the hot routes here, any other request to `app` (the Quart app).

    `max_body` bounds a /getKeys body, as Quart's MAX_CONTENT_LENGTH bounds
    the bodies of the routes it serves.
    """

    def __init__(self, app: ASGIApp, node: Node, *, max_body: int) -> None:
        self.app = app
        self.node = node
        self.max_body = max_body
        self.max_json_values = max_json_values(node.config)
        self.read_timeout = node.config.read_timeout
        self.write_timeout = node.config.write_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        methods = METHODS.get(path)
        if methods is None:
            await self.app(scope, receive, send)
            return
        # A cancel scope costs as much as all the rest of a GET's route
        # (bench/profiles.md): a request enters one only to wait on its client.
        started = trio.current_time()
        try:
            reply = await self._reply(path, methods, scope, receive, started)
        except RequestError as error:
            reply = _error(error.status, str(error))
        except Disconnected:
            return
        except Exception:
            log.exception("error answering %s %s", scope["method"], path)
            reply = _error(500, INTERNAL_ERROR)
        if scope.get("http_version") in HTTP1:
            # hypercorn writes an HTTP/1 answer to the socket shielded from
            # cancellation: a bound here could never fire (connection_guard's does).
            await _send_reply(send, reply)
            return
        with trio.move_on_at(started + self.read_timeout + self.write_timeout):
            await _send_reply(send, reply)

    async def _reply(
        self,
        path: str,
        methods: tuple[str, ...],
        scope: Scope,
        receive: Receive,
        started: float,
    ) -> Reply:
        method = scope["method"]
        if method not in methods:
            allowed = ", ".join((*methods, "OPTIONS"))
            if method == "OPTIONS":
                return 200, "text/html; charset=utf-8", b"", {"Allow": allowed}
            return _error(405, HTTP_MESSAGES[405], {"Allow": allowed})  # as HTTP requires
        node = self.node
        if path == "/get":
            entry = lookup(node, scope["query_string"])
            return 200, entry.content_type, entry.value, {}
        if path == "/set":
            content_type, length = _body_headers(scope)
            if content_type is not None and not header_text(content_type):
                raise InvalidRequest("Content-Type must be printable ASCII")
            key, ttl, acks = set_request(node, scope["query_string"], length)
            limit = node.config.max_value_size
            value = await self._body(scope, receive, length, started, limit, value_too_large(node))
            stored = node.set(key, value, content_type or DEFAULT_CONTENT_TYPE, ttl, acks)
            if acks is None:
                return 200, JSON, _STORED[stored], {}
            return _json(await write_answer(node, acks, {"stored": stored}))
        if path == "/getKeys":
            node.check_ready()
            keys = await self._json_body(scope, receive, started, GET_KEYS_BODY_ERROR)
            return _json((200, found_entries(node, keys), {}))
        if path == "/internal/apply":
            body = await self._json_body(scope, receive, started, "body must be JSON")
            return _json((200, apply_batch(node, body), {}))
        params = parse_query(scope["query_string"])
        ttl = ttl_seconds(required(params, "ttl"))
        acks = write_concern(node, params)
        items = batch_items(
            node, await self._json_body(scope, receive, started, SET_KEYS_BODY_ERROR)
        )
        refused = node.set_many(items, ttl, acks)
        if not items:  # nothing was written: no peer has anything to acknowledge
            acks = None
        body = {"stored": len(items) - len(refused), "refused": refused}
        return _json(await write_answer(node, acks, body))

    async def _json_body(self, scope: Scope, receive: Receive, started: float, error: str) -> Any:
        """The body parsed as JSON: 415 if declared as another type, 413 past
        `max_body` or `max_json_values`, InvalidRequest(`error`) when it is not JSON."""
        content_type, length = _body_headers(scope)
        check_json_type(content_type or "")
        too_large = TooLarge(HTTP_MESSAGES[413])
        if length is not None and length > self.max_body:
            raise too_large
        body = await self._body(scope, receive, length, started, self.max_body, too_large)
        if len(body) > SMALL_JSON_BODY:
            check_json_values(body, self.max_json_values)
        return parse_json(body, error)

    async def _body(
        self,
        scope: Scope,
        receive: Receive,
        length: int | None,
        started: float,
        limit: int,
        too_large: RequestError,
    ) -> bytes:
        """The request body, refused with `too_large` as soon as it grows past
        `limit`, and with a 408 unless it is in by read_timeout after `started`.

        What the server has already queued is taken without waiting; only a
        wait for more enters a cancel scope.
        """
        receive_nowait = _receive_nowait(receive)
        # Over HTTP/1, once the Content-Length's last byte is in, the end of
        # the body follows at once, without waiting on the client.
        whole_at = length if length is not None and scope.get("http_version") in HTTP1 else None
        body = bytearray()
        while True:
            try:
                message = receive_nowait()
            except trio.WouldBlock:
                if whole_at is not None and len(body) >= whole_at:
                    message = await receive()
                else:
                    message = await self._next_part(receive, started)
            if message["type"] == "http.disconnect":
                raise Disconnected
            body += message.get("body", b"")
            if len(body) > limit:
                raise too_large
            if not message.get("more_body", False):
                return bytes(body)

    async def _next_part(self, receive: Receive, started: float) -> Message:
        """The next part of the body; a 408 unless it is in by read_timeout after `started`."""
        with trio.CancelScope(deadline=started + self.read_timeout) as waiting:
            message = await receive()
        if waiting.cancel_called:  # also when the part came in as the deadline passed
            raise BodyTimeout(HTTP_MESSAGES[408])
        return message


def _receive_nowait(receive: Receive) -> Callable[[], Message]:
    """`receive` without waiting: trio.WouldBlock when nothing is queued.
    hypercorn's trio worker hands the app a memory channel's receive; any
    other receive is always waited for."""
    channel = getattr(receive, "__self__", None)
    if isinstance(channel, trio.MemoryReceiveChannel):
        nowait: Callable[[], Message] = channel.receive_nowait
        return nowait
    return _nothing_queued


def _nothing_queued() -> Message:
    raise trio.WouldBlock


async def _send_reply(send: Send, reply: Reply) -> None:
    status, content_type, body, extra = reply
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", b"%d" % len(body)),
    ]
    for name, value in extra.items():
        headers.append((name.lower().encode(), value.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _body_headers(scope: Scope) -> tuple[str | None, int | None]:
    """The request's first Content-Type and its Content-Length, when that
    frames the body: not beside a Transfer-Encoding, which overrides it."""
    content_type: str | None = None
    length: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
        elif name == b"content-length" and length is None:
            length = int(value)  # the server has checked it is a number
        elif name == b"transfer-encoding":
            chunked = True
    return content_type, None if chunked else length


def _json(answer: Answer) -> Reply:
    status, body, headers = answer
    return status, JSON, dumps(body).encode(), headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    body: Any = {"error": message}
    return _json((status, body, headers or {}))
