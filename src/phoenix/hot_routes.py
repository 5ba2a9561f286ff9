"""The hot routes, answered straight from ASGI: /get, /set, /getKeys,
/setKeys, and /internal/apply, which carries every replicated write.

Quart costs every request a nursery, two tasks, a request object and its
contexts: profiled under load, that doubled the CPU time of a GET
(docs/benchmarks.md). These routes carry a cache's traffic, so they
are answered here, in front of the Quart app, by the same rules
(phoenix.api_rules) with the same answers, errors and limits; every other
path goes on to Quart. The middleware in front of both (metrics, the guard,
the in-flight cap) is the same; the request deadline, which RequestDeadline
sets in front of Quart, is kept here in the cancel scope that bounds the body.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from phoenix.api_rules import (
    GET_KEYS_BODY_ERROR,
    HTTP_MESSAGES,
    JSON,
    SET_KEYS_BODY_ERROR,
    Answer,
    batch_items,
    check_json_type,
    dumps,
    found_entries,
    lookup,
    parse_json,
    parse_query,
    required,
    set_request,
    ttl_seconds,
    value_too_large,
    write_answer,
    write_concern,
)
from phoenix.errors import BodyTimeout, RequestError, TooLarge
from phoenix.internal_api import apply_batch
from phoenix.limits import DEADLINE_EXCEEDED, ASGIApp, Receive, Scope, Send, send_json_error
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
        self.read_timeout = node.config.read_timeout
        self.write_timeout = node.config.write_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        methods = METHODS.get(path)
        if methods is None:
            await self.app(scope, receive, send)
            return
        # One cancel scope bounds the request, as RequestDeadline bounds the
        # other routes: to read_timeout while the body is read (408), then,
        # once `_body` has it, to read_timeout + write_timeout from the start
        # (503 if nothing was sent). A cancel scope costs about as much as all
        # the rest of a GET's route, so a request enters only this one.
        body_deadline = trio.current_time() + self.read_timeout
        deadline = body_deadline + self.write_timeout
        sending = False
        with trio.CancelScope(deadline=deadline if path == "/get" else body_deadline) as bound:
            try:
                reply = await self._reply(path, methods, scope, receive, bound)
            except RequestError as error:
                reply = _error(error.status, str(error))
            except Disconnected:
                return
            except Exception:
                log.exception("error answering %s %s", scope["method"], path)
                reply = _error(500, INTERNAL_ERROR)
            if not bound.cancel_called:  # else the scope would cancel the send: see below
                if bound.deadline == body_deadline:  # answered before a body was read to its end
                    bound.deadline = deadline
                sending = True
                await _send_reply(send, reply)
        if sending:
            return
        if bound.cancelled_caught and bound.deadline == deadline:
            await send_json_error(send, 503, DEADLINE_EXCEEDED)  # as RequestDeadline answers
            return
        # Out of time before the answer went: past the body's deadline, a 408 or
        # the answer that was ready as it passed (a 413, or _body's 408), still
        # within the request's deadline (past that, nothing, as for a stalled send).
        late = _error(408, HTTP_MESSAGES[408]) if bound.cancelled_caught else reply
        with trio.move_on_at(deadline):
            await _send_reply(send, late)

    async def _reply(
        self,
        path: str,
        methods: tuple[str, ...],
        scope: Scope,
        receive: Receive,
        bound: trio.CancelScope,
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
            key, ttl, acks = set_request(node, scope["query_string"], length)
            limit = node.config.max_value_size
            value = await self._body(receive, limit, bound, value_too_large(node))
            stored = node.set(key, value, content_type or DEFAULT_CONTENT_TYPE, ttl, acks)
            if acks is None:
                return 200, JSON, _STORED[stored], {}
            return _json(await write_answer(node, acks, {"stored": stored}))
        if path == "/getKeys":
            node.check_ready()
            keys = await self._json_body(scope, receive, bound, GET_KEYS_BODY_ERROR)
            return _json((200, found_entries(node, keys), {}))
        if path == "/internal/apply":
            body = await self._json_body(scope, receive, bound, "body must be JSON")
            return _json((200, apply_batch(node, body), {}))
        params = parse_query(scope["query_string"])
        ttl = ttl_seconds(required(params, "ttl"))
        acks = write_concern(node, params)
        items = batch_items(node, await self._json_body(scope, receive, bound, SET_KEYS_BODY_ERROR))
        refused = node.set_many(items, ttl, acks)
        if not items:  # nothing was written: no peer has anything to acknowledge
            acks = None
        body = {"stored": len(items) - len(refused), "refused": refused}
        return _json(await write_answer(node, acks, body))

    async def _json_body(
        self, scope: Scope, receive: Receive, bound: trio.CancelScope, error: str
    ) -> Any:
        """The body parsed as JSON: 415 if declared as another type, 413 past
        `max_body`, InvalidRequest(`error`) when it is not JSON."""
        content_type, length = _body_headers(scope)
        check_json_type(content_type or "")
        too_large = TooLarge(HTTP_MESSAGES[413])
        if length is not None and length > self.max_body:
            raise too_large
        return parse_json(await self._body(receive, self.max_body, bound, too_large), error)

    async def _body(
        self,
        receive: Receive,
        limit: int,
        bound: trio.CancelScope,
        too_large: RequestError,
    ) -> bytes:
        """The request body, refused with `too_large` as soon as it grows past `limit`.

        Once it is in, `bound` (the request's deadline) moves on by write_timeout.
        """
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            body += message.get("body", b"")
            if len(body) > limit:
                raise too_large
            if not message.get("more_body", False):
                if bound.cancel_called:  # the deadline passed as the last part came in
                    raise BodyTimeout(HTTP_MESSAGES[408])
                bound.deadline += self.write_timeout
                return bytes(body)


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
    """The request's first Content-Type and its Content-Length, when given."""
    content_type: str | None = None
    length: int | None = None
    for name, value in scope["headers"]:
        if name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
        elif name == b"content-length" and length is None:
            length = int(value)  # the server has checked it is a number
    return content_type, length


def _json(answer: Answer) -> Reply:
    status, body, headers = answer
    return status, JSON, dumps(body).encode(), headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    body: Any = {"error": message}
    return _json((status, body, headers or {}))
