"""The client HTTP API, compatible with the original PhoenixCache.

Routes parse and answer; `Node` does the work. Errors are JSON
`{"error": "..."}` with the status that says why. docs/api.md is the
reference, including every deliberate difference from the original.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import unquote_to_bytes

import attrs
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestTimeout

from phoenix import __version__
from phoenix.errors import InvalidRequest, KeyNotFound, RequestError, TooLarge, UnsupportedType
from phoenix.node import Node
from phoenix.replication import Acks
from phoenix.store import DEFAULT_CONTENT_TYPE, Entry

# /list without allValue=true shows this many characters of each value.
LIST_PREVIEW_CHARS = 25
# Largest page /list hands out when asked for one.
MAX_LIST_LIMIT = 10_000

JSON = "application/json"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
# The OpenAPI 3 description of this API (docs/openapi.yaml links to it).
OPENAPI_DOCUMENT = resources.files("phoenix").joinpath("openapi.json").read_bytes()


def dumps(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        dumps(body),
        status=status,
        content_type=JSON,
        headers=headers,
    )


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def register_routes(app: QuartTrio, node: Node, render_metrics: Callable[[], bytes]) -> None:
    """Add the client routes and JSON error handlers to `app`."""

    @app.errorhandler(RequestError)
    async def _request_error(error: RequestError) -> Response:
        return error_response(error.status, str(error))

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = _HTTP_MESSAGES.get(status, error.description or error.name)
        return error_response(status, message)

    @app.route("/set", methods=["POST", "PUT"])
    async def set_value() -> Response:
        params = _query()
        key = _required(params, "key")
        ttl = _ttl(_required(params, "ttl"))
        node.check_key(key)
        length = request.content_length
        if length is not None and length > node.config.max_value_size:
            raise TooLarge(
                f"value is larger than max_value_size ({node.config.max_value_size} bytes)"
            )
        acks = _write_concern(node, params)
        value = await _read_value(node.config.max_value_size, node.config.read_timeout)
        content_type = request.headers.get("Content-Type", DEFAULT_CONTENT_TYPE)
        stored = node.set(key, value, content_type, ttl, acks)
        return await _answer_write(node, acks, {"stored": stored})

    @app.route("/setKeys", methods=["POST"])
    async def set_many() -> Response:
        params = _query()
        ttl = _ttl(_required(params, "ttl"))
        acks = _write_concern(node, params)
        body = await json_body("body must be a JSON object of key: value")
        if not isinstance(body, dict):
            raise InvalidRequest("body must be a JSON object of key: value")
        limit = node.config.max_keys_per_request
        if len(body) > limit:
            raise TooLarge(f"at most {limit} keys per request (max_keys_per_request)")
        items = [(key, *_value_from_json(key, value)) for key, value in body.items()]
        refused = node.set_many(items, ttl, acks)
        return await _answer_write(
            node, acks, {"stored": len(items) - len(refused), "refused": refused}
        )

    def requested_entry() -> Entry:
        """The entry named by `?key=`; 404 when it is missing or expired."""
        node.check_ready()
        key = _required(_query(), "key")
        node.check_key(key)
        entry = node.get(key)
        if entry is None:
            raise KeyNotFound("key not found")
        return entry

    @app.route("/get", methods=["GET"])
    async def get_value() -> Response:
        entry = requested_entry()
        return Response(entry.value, status=200, content_type=entry.content_type)

    @app.route("/trygetwithexpire", methods=["GET"])
    async def get_with_expiry() -> Response:
        entry = requested_entry()
        body = _value_fields(entry.value)
        body["expires_in"] = _expires_in(entry, node.clock.now_ms())
        return json_response(body)

    @app.route("/getKeys", methods=["POST"])
    async def get_keys() -> Response:
        node.check_ready()
        keys = await json_body("body must be a JSON array of key strings")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise InvalidRequest("body must be a JSON array of key strings")
        limit = node.config.max_keys_per_request
        if len(keys) > limit:
            raise TooLarge(f"at most {limit} keys per request (max_keys_per_request)")
        found: dict[str, Any] = {}
        for key in keys:
            entry = node.get(key) if key else None
            if entry is not None:
                fields = _value_fields(entry.value)
                fields["expiration"] = _rfc3339(entry.expires_at)
                found[key] = fields
        return json_response(found)

    @app.route("/list", methods=["GET"])
    async def list_entries() -> Response:
        node.check_ready()
        params = _query()
        full_values = _flag(params.get("allValue", "false"), "allValue")
        now = node.clock.now_ms()

        preview = None if full_values else LIST_PREVIEW_CHARS

        def item(key: str, entry: Entry) -> dict[str, Any]:
            fields = _value_fields(entry.value, preview)
            return {"key": key, **fields, "expires_in": _expires_in(entry, now)}

        if "limit" not in params and "cursor" not in params:
            return Response(_stream_all(node, item), content_type=JSON)
        limit = _bounded_int(params.get("limit", "1000"), "limit", 1, MAX_LIST_LIMIT)
        cursor = _bounded_int(params.get("cursor", "0"), "cursor", 0, 1 << 32)
        page, next_cursor = node.store.scan(cursor, limit)
        return json_response(
            [item(key, entry) for key, entry in page],
            headers={"X-Next-Cursor": str(next_cursor)},
        )

    @app.route("/flush", methods=["POST"])
    async def flush() -> Response:
        acks = _write_concern(node, _query())
        node.flush(acks)
        return await _answer_write(node, acks, {"flushed": True})

    @app.route("/remove", methods=["GET", "POST", "DELETE"])
    async def remove() -> Response:
        params = _query()
        key = _required(params, "key")
        acks = _write_concern(node, params)
        removed = node.remove(key, acks)
        return await _answer_write(node, acks, {"removed": removed})

    @app.route("/removeallkeys", methods=["GET", "POST", "DELETE"])
    async def remove_matching() -> Response:
        params = _query()
        pattern = _required(params, "key")
        acks = _write_concern(node, params)
        removed = node.remove_matching(pattern, acks)
        return await _answer_write(node, acks, removed)

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


def _write_concern(node: Node, params: dict[str, str]) -> Acks | None:
    """The `sync=N` parameter: how many peers must apply the write before we answer."""
    text = params.get("sync")
    if text is None:
        return None
    return node.acks_for(_bounded_int(text, "sync", 0, len(node.peers)))


async def _answer_write(node: Node, acks: Acks | None, body: Any) -> Response:
    """The write's answer, once `acks` (if any) are in or write_timeout has passed."""
    if acks is None:
        return json_response(body)
    with trio.move_on_after(node.config.write_timeout):
        await acks.wait()
    if len(acks.peers) >= acks.needed:
        return json_response(body, headers={"X-Acknowledged": str(len(acks.peers))})
    missing = node.missing_acks(acks)
    return json_response(
        {
            "error": f"only {len(acks.peers)} of {acks.needed} peers applied the write "
            "within write_timeout; it is applied here and will reach the others",
            "acknowledged": sorted(acks.peers),
            "missing": missing,
        },
        504,
    )


_HTTP_MESSAGES = {
    404: "no such endpoint",
    405: "method not allowed on this endpoint",
    408: "request body not received within read_timeout",
    413: "request body too large",
}


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


async def _read_value(limit: int, timeout: float) -> bytes:
    """The request body, refused with 413 as soon as it grows past `limit`."""
    value = bytearray()
    with trio.move_on_after(timeout):
        async for chunk in request.body:
            value += chunk
            if len(value) > limit:
                raise TooLarge(f"value is larger than max_value_size ({limit} bytes)")
        return bytes(value)
    raise RequestTimeout()


# Bodies read as JSON may say so, say nothing, or say what curl's -d says by
# default (as clients of the original do); any other declared type is refused.
JSON_BODY_TYPES = frozenset({"", JSON, "text/plain", "application/x-www-form-urlencoded"})


async def json_body(error: str) -> Any:
    """The request body parsed as JSON; InvalidRequest(`error`) when it is not JSON.

    UnsupportedType (415) when the body is declared as something else.
    """
    declared = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if declared not in JSON_BODY_TYPES:
        raise UnsupportedType(f"the body must be JSON, not {declared}")
    try:
        return json.loads(await request.get_data(cache=False, as_text=False, parse_form_data=False))
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(error) from None


def _query() -> dict[str, str]:
    """The query parameters, decoded strictly: invalid UTF-8 is an error, not U+FFFD."""
    params: dict[str, str] = {}
    for part in request.query_string.split(b"&"):
        if not part:
            continue
        name, _, raw = part.partition(b"=")
        try:
            params.setdefault(
                unquote_to_bytes(name.replace(b"+", b" ")).decode(),
                unquote_to_bytes(raw.replace(b"+", b" ")).decode(),
            )
        except UnicodeDecodeError:
            raise InvalidRequest("query parameters must be valid UTF-8") from None
    return params


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise InvalidRequest(f"parameter {name!r} is required")
    return value


def _ttl(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise InvalidRequest("ttl must be a non-negative whole number of seconds")
    return int(text)


def _bounded_int(text: str, name: str, low: int, high: int) -> int:
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}")
    return int(text)


def _flag(text: str, name: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"{name} must be true or false")
    return lowered in ("true", "1")


def _value_fields(value: bytes, preview: int | None = None) -> dict[str, Any]:
    """A value for a JSON body: text as is, other bytes as base64 with a marker.

    With `preview`, only that many characters (of text) or bytes (of binary).
    """
    try:
        return {"value": value.decode("utf-8")[:preview]}
    except UnicodeDecodeError:
        cut = value[:preview]
        return {"value": base64.b64encode(cut).decode("ascii"), "encoding": "base64"}


def _value_from_json(key: str, value: Any) -> tuple[bytes, str]:
    """A /setKeys value: a string (stored as UTF-8 text), or an object with
    "value", optional "encoding": "base64" and optional "content_type"."""
    if isinstance(value, str):
        return value.encode(), "text/plain; charset=utf-8"
    if isinstance(value, dict) and isinstance(value.get("value"), str):
        content_type = value.get("content_type", DEFAULT_CONTENT_TYPE)
        if not isinstance(content_type, str):
            raise InvalidRequest(f"{key!r}: content_type must be a string")
        if value.get("encoding") == "base64":
            try:
                return base64.b64decode(value["value"], validate=True), content_type
            except ValueError:
                raise InvalidRequest(f"{key!r}: value is not valid base64") from None
        if "encoding" in value:
            raise InvalidRequest(f"{key!r}: the only encoding is base64")
        return value["value"].encode(), content_type
    raise InvalidRequest(f"{key!r}: a value is a string or an object with a string 'value'")


def _expires_in(entry: Entry, now_ms: int) -> float | None:
    if not entry.expires_at:
        return None
    return max(entry.expires_at - now_ms, 0) / 1000


def _rfc3339(expires_at: int) -> str | None:
    if not expires_at:
        return None
    moment = datetime.fromtimestamp(expires_at / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
