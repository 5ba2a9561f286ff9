"""Peer-to-peer routes under /internal: ping, apply, digests, bucket-digests, reconcile.

/internal/apply, which carries every replicated write, is served in front of
Quart by phoenix.hot_routes, with `apply_batch` below.

A malformed request is refused with 400 before any part of it is applied.
Access is guarded like every route (the whitelist, ahead of the app).
"""

from __future__ import annotations

from typing import Any

from quart import Response
from quart_trio import QuartTrio

from phoenix import recovery
from phoenix.api import json_body, json_response
from phoenix.errors import InvalidRequest
from phoenix.node import Node
from phoenix.ops import decode, encode
from phoenix.peer_client import PREFIX


def apply_batch(node: Node, body: Any) -> dict[str, Any]:
    """/internal/apply (served by phoenix.hot_routes): apply a peer's batch of writes.

    Every op is checked before any is applied. A catch-up marks its batches
    ("catch_up": true): their writes may be old on purpose, and are not timed.
    """
    items = body.get("ops") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise InvalidRequest("body must be an object with an array 'ops'")
    ops = [decode(item) for item in items]
    node.apply_pushed(ops, timed=body.get("catch_up") is not True)
    return {"applied": len(ops), "node_id": node.id, "incarnation": node.incarnation}


def register_internal_routes(app: QuartTrio, node: Node) -> None:
    @app.route(PREFIX + "/ping", methods=["GET"], endpoint="internal_ping")
    async def ping() -> Response:
        return json_response(
            {"node_id": node.id, "incarnation": node.incarnation, "ready": node.ready}
        )

    @app.route(PREFIX + "/digests", methods=["GET"], endpoint="internal_digests")
    async def digests() -> Response:
        return json_response(recovery.summary(node.store))

    @app.route(PREFIX + "/bucket-digests", methods=["POST"], endpoint="internal_bucket_digests")
    async def bucket_digests() -> Response:
        body = await json_body("body must be JSON")
        groups = body.get("groups") if isinstance(body, dict) else None
        # type(), not isinstance(): a JSON true is no group number.
        if not isinstance(groups, list) or not all(
            type(g) is int and 0 <= g < recovery.GROUP_COUNT for g in groups
        ):
            raise InvalidRequest(
                f"groups must be an array of integers below {recovery.GROUP_COUNT}"
            )
        return json_response(recovery.bucket_digests(node.store, groups))

    @app.route(PREFIX + "/reconcile", methods=["POST"], endpoint="internal_reconcile")
    async def reconcile() -> Response:
        body = await json_body("body must be JSON")
        if not isinstance(body, dict):
            raise InvalidRequest("body must be an object with 'buckets'")
        buckets = recovery.parse_buckets(body.get("buckets"))
        ops, wanted, lacking, truncated = recovery.reconcile(node.store, buckets)
        ops_json = [encode(op) for op in ops]
        answer = {"ops": ops_json, "wanted": wanted, "lacking": lacking, "truncated": truncated}
        return json_response(answer)
