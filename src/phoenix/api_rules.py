"""What the client API's requests mean, apart from any web framework.

Query parameters and bodies are parsed strictly here, and answers are built
as (status, JSON body, headers); both the Quart routes (phoenix.api) and the
hot routes served straight from ASGI (phoenix.hot_routes) use these, so a
request means the same whichever serves it.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_to_bytes

import trio

from phoenix.config import Config
from phoenix.errors import (
    KEY_NOT_FOUND,
    InvalidRequest,
    KeyNotFound,
    TooLarge,
    UnsupportedType,
    header_text,
    utf8,
)
from phoenix.node import MAX_TTL_SECONDS, Node
from phoenix.ops import MAX_BATCH_OPS
from phoenix.replication import Acks
from phoenix.store import DEFAULT_CONTENT_TYPE, Entry

JSON = "application/json"

# The messages of errors the framework raises rather than the routes.
HTTP_MESSAGES = {
    404: "no such endpoint",
    405: "method not allowed on this endpoint",
    408: "request body not received within read_timeout",
    413: "request body too large",
}

# Bodies read as JSON may say so, say nothing, or say what curl's -d says by
# default (as clients of the original do); any other declared type is refused.
JSON_BODY_TYPES = frozenset({"", JSON, "text/plain", "application/x-www-form-urlencoded"})

GET_KEYS_BODY_ERROR = "body must be a JSON array of key strings"
SET_KEYS_BODY_ERROR = "body must be a JSON object of key: value"

Answer = tuple[int, Any, dict[str, str]]


# One encoder for every answer: json.dumps builds a new one per call when
# given options.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(body: Any) -> str:
    return _ENCODER.encode(body)


def parse_query(query_string: bytes) -> dict[str, str]:
    """The query parameters, decoded strictly: invalid UTF-8 is an error, not U+FFFD."""
    params: dict[str, str] = {}
    for part in query_string.split(b"&"):
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


def required(params: dict[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise InvalidRequest(f"parameter {name!r} is required")
    return value


# More digits than any bound checked here needs, far fewer than int() refuses (4,300).
_MAX_DIGITS = 30


def _whole_number(text: str) -> int | None:
    """`text` as a whole number: None unless ASCII digits, at most _MAX_DIGITS of them."""
    if text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS:
        return int(text)
    return None


def ttl_seconds(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise InvalidRequest("ttl must be a non-negative whole number of seconds")
    seconds = _whole_number(text)
    if seconds is None:
        raise InvalidRequest(f"ttl must be between 0 and {MAX_TTL_SECONDS} seconds")
    return seconds


def bounded_int(text: str, name: str, low: int, high: int) -> int:
    number = _whole_number(text)
    if number is None or not low <= number <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}")
    return number


def flag(text: str, name: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"{name} must be true or false")
    return lowered in ("true", "1")


def write_concern(node: Node, params: dict[str, str]) -> Acks | None:
    """The `sync=N` parameter: how many peers must apply the write before we answer."""
    text = params.get("sync")
    if text is None:
        return None
    # Anything but a whole number gets the same answer as one out of range.
    number = _whole_number(text)
    return node.acks_for(-1 if number is None else number)


async def write_answer(node: Node, acks: Acks | None, body: Any) -> Answer:
    """The write's answer, once `acks` (if any) are in or write_timeout has passed."""
    if acks is None:
        return 200, body, {}
    with trio.move_on_after(node.config.write_timeout):
        await acks.wait()
    if len(acks.peers) >= acks.needed:
        return 200, body, {"X-Acknowledged": str(len(acks.peers))}
    missing = node.missing_acks(acks)
    problem = {
        "error": f"only {len(acks.peers)} of {acks.needed} peers applied the write "
        "within write_timeout; it is applied here and will reach the others",
        "acknowledged": sorted(acks.peers),
        "missing": missing,
    }
    return 504, problem, {}


def check_json_type(content_type: str) -> None:
    """UnsupportedType (415) unless a body of `content_type` may be read as JSON."""
    declared = content_type.partition(";")[0].strip().lower()
    if declared not in JSON_BODY_TYPES:
        raise UnsupportedType(f"the body must be JSON, not {declared}")


def parse_json(data: bytes, error: str) -> Any:
    """`data` parsed as JSON; InvalidRequest(`error`) when it is not JSON."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nested too deep: not ours
        raise InvalidRequest(error) from None


# A JSON body longer than this is checked for how many values it holds
# before it is parsed (`check_json_values`); a shorter one costs little to
# parse, whatever it holds.
SMALL_JSON_BODY = 64 * 1024
# A JSON string, escapes and all, taken possessively, and an unterminated one
# to the end: one pass over the body, whatever it holds.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)


def max_json_values(config: Config) -> int:
    """How many values the body of a hot route may hold: a /setKeys item
    takes up to 8 (its key, and a value object of three fields), an op of a
    peer's batch (at most MAX_BATCH_OPS of them) up to 16."""
    return 8 * config.max_keys_per_request + 16 * MAX_BATCH_OPS


def check_json_values(data: bytes, limit: int) -> None:
    """TooLarge unless the JSON text `data` holds at most about `limit` values.

    json.loads makes an object of every value, up to 21 bytes of memory per
    byte of body (`[{},{},...]`): a body of 61 MB, the default bound of
    /getKeys, took 1.4 GB and 4 s to parse. Every value but the first
    follows one of `,:[{` outside a string, so these bound the values.
    """
    if _separators(data) > limit and _separators(_JSON_STRING.sub(b"", data)) > limit:
        raise TooLarge(f"body holds more than {limit} JSON values")


def _separators(data: bytes) -> int:
    return data.count(b",") + data.count(b":") + data.count(b"[") + data.count(b"{")


def lookup(node: Node, query_string: bytes) -> Entry:
    """The entry named by `?key=`; KeyNotFound (404) when it is missing or expired."""
    node.check_ready()
    key = required(parse_query(query_string), "key")
    node.check_key(key)
    entry = node.get(key)
    if entry is None:
        raise KeyNotFound(KEY_NOT_FOUND)
    return entry


def set_request(
    node: Node, query_string: bytes, content_length: int | None
) -> tuple[str, int, Acks | None]:
    """A /set's key, ttl and write concern, checked before its body is read."""
    params = parse_query(query_string)
    key = required(params, "key")
    ttl = ttl_seconds(required(params, "ttl"))
    node.check_key(key)
    limit = node.config.max_value_size
    if content_length is not None and content_length > limit:
        raise TooLarge(f"value is larger than max_value_size ({limit} bytes)")
    return key, ttl, write_concern(node, params)


def value_too_large(node: Node) -> TooLarge:
    return TooLarge(f"value is larger than max_value_size ({node.config.max_value_size} bytes)")


def found_entries(node: Node, keys: Any) -> dict[str, Any]:
    """/getKeys: the live entries among `keys` (the parsed body), as JSON fields."""
    node.check_ready()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise InvalidRequest(GET_KEYS_BODY_ERROR)
    limit = node.config.max_keys_per_request
    if len(keys) > limit:
        raise TooLarge(f"at most {limit} keys per request (max_keys_per_request)")
    # Each key once: the answer holds it once, and a key listed 10,000 times
    # was read and encoded each time (a binary value of 1 MiB, base64 each
    # time, held the node's one thread for 12 s).
    distinct = dict.fromkeys(keys)
    for key in distinct:
        if key:  # an empty key is simply not found
            node.check_key(key)  # 413 past max_key_length, as /get says
    found: dict[str, Any] = {}
    for key in distinct:
        entry = node.get(key) if key else None
        if entry is not None:
            fields = value_fields(entry.value)
            fields["expiration"] = rfc3339(entry.expires_at)
            found[key] = fields
    return found


def batch_items(node: Node, body: Any) -> list[tuple[str, bytes, str]]:
    """/setKeys: the (key, value, content type) items of the parsed body."""
    if not isinstance(body, dict):
        raise InvalidRequest(SET_KEYS_BODY_ERROR)
    limit = node.config.max_keys_per_request
    if len(body) > limit:
        raise TooLarge(f"at most {limit} keys per request (max_keys_per_request)")
    return [(key, *_value_from_json(key, value)) for key, value in body.items()]


def _value_from_json(key: str, value: Any) -> tuple[bytes, str]:
    """A /setKeys value: a string (stored as UTF-8 text), or an object with
    "value", optional "encoding": "base64" and optional "content_type"."""
    if isinstance(value, str):
        return utf8(value, f"{key!r}: value is not valid Unicode text"), "text/plain; charset=utf-8"
    if isinstance(value, dict) and isinstance(value.get("value"), str):
        content_type = value.get("content_type", DEFAULT_CONTENT_TYPE)
        if not isinstance(content_type, str) or not header_text(content_type):
            raise InvalidRequest(f"{key!r}: content_type must be a string of printable ASCII")
        content_type = content_type or DEFAULT_CONTENT_TYPE  # as /set takes an empty one
        if value.get("encoding") == "base64":
            try:
                return base64.b64decode(value["value"], validate=True), content_type
            except ValueError:
                raise InvalidRequest(f"{key!r}: value is not valid base64") from None
        if "encoding" in value:
            raise InvalidRequest(f"{key!r}: the only encoding is base64")
        return utf8(value["value"], f"{key!r}: value is not valid Unicode text"), content_type
    raise InvalidRequest(f"{key!r}: a value is a string or an object with a string 'value'")


def value_fields(value: bytes, preview: int | None = None) -> dict[str, Any]:
    """A value for a JSON body: text as is, other bytes as base64 with a marker.

    With `preview`, only that many characters (of text) or bytes (of binary).
    """
    try:
        return {"value": value.decode("utf-8")[:preview]}
    except UnicodeDecodeError:
        cut = value[:preview]
        return {"value": base64.b64encode(cut).decode("ascii"), "encoding": "base64"}


def expires_in(entry: Entry, now_ms: int) -> float | None:
    if not entry.expires_at:
        return None
    return max(entry.expires_at - now_ms, 0) / 1000


def rfc3339(expires_at: int) -> str | None:
    if not expires_at:
        return None
    moment = datetime.fromtimestamp(expires_at / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
