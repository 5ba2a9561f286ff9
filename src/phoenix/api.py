"""The client HTTP API, compatible with the original PhoenixCache.

Routes parse and answer; `Node` does the work. Errors are JSON
`{"error": "..."}` with the status that says why. docs/api.md is the
reference, including every deliberate difference from the original.
The hot routes (/get, /set, /getKeys, /setKeys) are served in front of this Quart
app by phoenix.hot_routes; what requests mean is in phoenix.api_rules.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

import attrs
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from phoenix import __version__
from phoenix.api_rules import (
    HTTP_MESSAGES,
    JSON,
    Answer,
    bounded_int,
    check_json_type,
    dumps,
    expires_in,
    flag,
    lookup,
    parse_json,
    parse_query,
    required,
    value_fields,
    write_answer,
    write_concern,
)
from phoenix.errors import RequestError
from phoenix.node import Node
from phoenix.store import Entry

# /list without allValue=true shows this many characters of each value.
LIST_PREVIEW_CHARS = 25
# Largest page /list hands out when asked for one.
MAX_LIST_LIMIT = 10_000

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
# The OpenAPI 3 description of this API (docs/openapi.yaml links to it).
OPENAPI_DOCUMENT = resources.files("phoenix").joinpath("openapi.json").read_bytes()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        dumps(body),
        status=status,
        content_type=JSON,
        headers=headers,
    )


def answered(answer: Answer) -> Response:
    status, body, headers = answer
    return json_response(body, status, headers)


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


async def json_body(error: str) -> Any:
    """The request body parsed as JSON; InvalidRequest(`error`) when it is not JSON.

    UnsupportedType (415) when the body is declared as something else.
    """
    check_json_type(request.headers.get("Content-Type", ""))
    data = await request.get_data(cache=False, as_text=False, parse_form_data=False)
    return parse_json(data, error)


def register_routes(app: QuartTrio, node: Node, render_metrics: Callable[[], bytes]) -> None:
    """Add the client routes and JSON error handlers to `app`."""

    @app.errorhandler(RequestError)
    async def _request_error(error: RequestError) -> Response:
        return error_response(error.status, str(error))

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = HTTP_MESSAGES.get(status, error.description or error.name)
        response = error_response(status, message)
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)  # as HTTP requires
        return response

    @app.route("/trygetwithexpire", methods=["GET"])
    async def get_with_expiry() -> Response:
        entry = lookup(node, request.query_string)
        body = value_fields(entry.value)
        body["expires_in"] = expires_in(entry, node.clock.now_ms())
        return json_response(body)

    @app.route("/list", methods=["GET"])
    async def list_entries() -> Response:
        node.check_ready()
        params = parse_query(request.query_string)
        full_values = flag(params.get("allValue", "false"), "allValue")
        now = node.clock.now_ms()

        preview = None if full_values else LIST_PREVIEW_CHARS

        def item(key: str, entry: Entry) -> dict[str, Any]:
            fields = value_fields(entry.value, preview)
            return {"key": key, **fields, "expires_in": expires_in(entry, now)}

        if "limit" not in params and "cursor" not in params:
            return Response(_stream_all(node, item), content_type=JSON)
        limit = bounded_int(params.get("limit", "1000"), "limit", 1, MAX_LIST_LIMIT)
        cursor = bounded_int(params.get("cursor", "0"), "cursor", 0, 1 << 32)
        page, next_cursor = node.store.scan(cursor, limit)
        return json_response(
            [item(key, entry) for key, entry in page],
            headers={"X-Next-Cursor": str(next_cursor)},
        )

    @app.route("/flush", methods=["POST"])
    async def flush() -> Response:
        acks = write_concern(node, parse_query(request.query_string))
        node.flush(acks)
        return answered(await write_answer(node, acks, {"flushed": True}))

    @app.route("/remove", methods=["GET", "POST", "DELETE"])
    async def remove() -> Response:
        params = parse_query(request.query_string)
        key = required(params, "key")
        acks = write_concern(node, params)
        removed = node.remove(key, acks)
        return answered(await write_answer(node, acks, {"removed": removed}))

    @app.route("/removeallkeys", methods=["GET", "POST", "DELETE"])
    async def remove_matching() -> Response:
        params = parse_query(request.query_string)
        pattern = required(params, "key")
        acks = write_concern(node, params)
        removed = node.remove_matching(pattern, acks)
        return answered(await write_answer(node, acks, removed))

    @app.route("/openapi.json", methods=["GET"])
    async def openapi() -> Response:
        return Response(OPENAPI_DOCUMENT, content_type=JSON)

    @app.route("/healthz", methods=["GET"])
    async def healthz() -> Response:
        return json_response({"status": "alive"})

    @app.route("/readyz", methods=["GET"])
    async def readyz() -> Response:
        if not node.ready:
            return error_response(503, f"not ready: {node.recovery}")
        return json_response({"status": "ready", "recovery": node.recovery})

    @app.route("/metrics", methods=["GET"])
    async def metrics() -> Response:
        return Response(render_metrics(), content_type=PROMETHEUS_TEXT)

    @app.route("/cluster", methods=["GET"])
    async def cluster() -> Response:
        report = node.last_catch_up
        return json_response(
            {
                "node_id": node.id,
                "incarnation": node.incarnation,
                "ready": node.ready,
                "recovery": node.recovery,
                "last_catch_up": None if report is None else attrs.asdict(report),
                "peers": [peer.describe() for peer in node.peers],
            }
        )

    @app.route("/ping", methods=["GET"])
    async def ping() -> Response:
        return json_response({"node_id": node.id, "version": __version__})


async def _stream_all(node: Node, item: Any) -> AsyncIterator[bytes]:
    """The whole listing as a JSON array, produced bucket by bucket."""
    separator = b"["
    cursor = 0
    while True:
        page, cursor = node.store.scan(cursor, 500)
        for key, entry in page:
            yield separator + dumps(item(key, entry)).encode()
            separator = b","
        if cursor == 0:
            break
    yield b"[]" if separator == b"[" else b"]"
