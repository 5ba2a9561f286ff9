"""Writes as values: what a node applies locally and pushes to its peers.

Every write carries its version, so applying the same ops on any replica, in
any order and any number of times, leaves the same state (last writer wins).
The JSON form is what travels between nodes; `decode` checks it strictly.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from phoenix.clock import Version
from phoenix.errors import InvalidRequest, utf8

# The last expiry a date can show (/getKeys writes it as a date): 9999-12-31T23:59:59.999Z.
LAST_EXPIRY_MS = 253_402_300_799_999
# A content type is sent back as a header: what HTTP allows in one (h11's field-value).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


@attrs.frozen
class SetOp:
    key: str
    value: bytes
    content_type: str
    expires_at: int  # ms since the epoch; 0 means never
    version: Version


@attrs.frozen
class RemoveOp:
    key: str
    version: Version


@attrs.frozen
class RemoveMatchingOp:
    pattern: str
    version: Version


@attrs.frozen
class FlushOp:
    version: Version


@attrs.frozen
class EvictedOp:
    """A write whose value its sender let go (evicted, or refused by admission):
    only catch-up sends it, so that an older value held elsewhere goes too."""

    key: str
    expires_at: int  # the write's deadline; 0 means never
    version: Version


Op = SetOp | RemoveOp | RemoveMatchingOp | FlushOp | EvictedOp


def encode(op: Op) -> dict[str, Any]:
    """The op as a JSON-ready dict."""
    version = [op.version[0], op.version[1]]
    if isinstance(op, SetOp):
        return {
            "op": "set",
            "key": op.key,
            "value": base64.b64encode(op.value).decode("ascii"),
            "content_type": op.content_type,
            "expires_at": op.expires_at,
            "version": version,
        }
    if isinstance(op, RemoveOp):
        return {"op": "remove", "key": op.key, "version": version}
    if isinstance(op, RemoveMatchingOp):
        return {"op": "remove_matching", "pattern": op.pattern, "version": version}
    if isinstance(op, EvictedOp):
        return {"op": "evicted", "key": op.key, "expires_at": op.expires_at, "version": version}
    return {"op": "flush", "version": version}


def to_json(op: Op) -> bytes:
    """The op's JSON form, compact, as it travels in a batch."""
    return json.dumps(encode(op), separators=(",", ":")).encode()


# One POST /internal/apply carries up to this many ops or about this many
# bytes (one op may be larger): well within the receiver's body limit.
MAX_BATCH_OPS = 500
MAX_BATCH_BYTES = 1024 * 1024


def batches(ops: Sequence[Op]) -> Iterator[Sequence[Op]]:
    """`ops` in order, cut into batches within MAX_BATCH_OPS and MAX_BATCH_BYTES."""
    start = size = 0
    for index, op in enumerate(ops):
        if index > start and (index - start == MAX_BATCH_OPS or size >= MAX_BATCH_BYTES):
            yield ops[start:index]
            start = index
            size = 0
        size += encoded_size(op)
    if start < len(ops):
        yield ops[start:]


def encoded_size(op: Op) -> int:
    """About how many bytes the op takes on the wire, for batching."""
    if isinstance(op, SetOp):
        return 120 + len(op.key) + len(op.value) * 4 // 3 + len(op.content_type)
    if isinstance(op, RemoveOp | EvictedOp):
        return 80 + len(op.key)
    if isinstance(op, RemoveMatchingOp):
        return 70 + len(op.pattern)
    return 50


def decode(data: Any) -> Op:
    """An op from its JSON form; InvalidRequest for anything malformed."""
    if not isinstance(data, dict):
        raise InvalidRequest("an op must be a JSON object")
    kind = data.get("op")
    version = _version(data.get("version"))
    if kind == "set":
        try:
            value = base64.b64decode(_text(data, "value"), validate=True)
        except binascii.Error:
            raise InvalidRequest("set op: value is not base64") from None
        content_type = _text(data, "content_type")
        if not _HEADER_VALUE.fullmatch(content_type):
            raise InvalidRequest("set op: content_type must be fit for an HTTP header")
        return SetOp(_key(data, "key"), value, content_type, _expires_at(data, kind), version)
    if kind == "remove":
        return RemoveOp(_key(data, "key"), version)
    if kind == "evicted":
        return EvictedOp(_key(data, "key"), _expires_at(data, kind), version)
    if kind == "remove_matching":
        return RemoveMatchingOp(_key(data, "pattern"), version)
    if kind == "flush":
        return FlushOp(version)
    raise InvalidRequest(f"unknown op {kind!r}")


def _expires_at(data: dict[str, Any], kind: str) -> int:
    expires_at = data.get("expires_at")
    if type(expires_at) is not int or not 0 <= expires_at <= LAST_EXPIRY_MS:
        raise InvalidRequest(f"{kind} op: expires_at must be milliseconds from 0 to year 9999")
    return expires_at


def _version(data: Any) -> Version:
    if (
        isinstance(data, list)
        and len(data) == 2
        and isinstance(data[0], int)
        and not isinstance(data[0], bool)
        and 0 < data[0] < 2**63
        and isinstance(data[1], str)
    ):
        return (data[0], data[1])
    raise InvalidRequest("version must be [timestamp, node id]")


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string")
    return value


def _key(data: dict[str, Any], name: str) -> str:
    value = _text(data, name)
    if not value:
        raise InvalidRequest(f"{name} must not be empty")
    utf8(value, f"{name} must be valid UTF-8 (JSON gave a lone surrogate)")
    return value
