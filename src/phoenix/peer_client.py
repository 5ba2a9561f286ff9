"""Calls from one node to another over the internal routes (/internal/...).

One kept-alive httpx.AsyncClient per node; every call is bounded by a trio
cancel scope, and every failure comes out as PeerCallFailed. Bytes sent and
received are counted, so catch-up can report what it cost.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs
import httpx
import trio

from phoenix.errors import PeerCallFailed
from phoenix.ops import Op, to_json

PREFIX = "/internal"


@attrs.frozen
class PeerInfo:
    node_id: str
    incarnation: str
    ready: bool


class PeerClient:
    """The HTTP calls a node makes to its peers."""

    def __init__(
        self, client: httpx.AsyncClient, node_id: str, timeout: float, cluster_key: str = ""
    ) -> None:
        self._client = client
        self._headers = {"X-Phoenix-Node": node_id}
        if cluster_key:
            self._headers["Authorization"] = f"Bearer {cluster_key}"
        self.timeout = timeout
        self.bytes_sent = 0
        self.bytes_received = 0

    async def ping(self, url: str, timeout: float | None = None) -> PeerInfo:
        body = await self._call("GET", url, "/ping", None, timeout)
        try:
            return PeerInfo(str(body["node_id"]), str(body["incarnation"]), bool(body["ready"]))
        except (KeyError, TypeError):
            raise PeerCallFailed(f"{url}: malformed ping answer") from None

    async def apply(
        self, url: str, ops: Sequence[Op], *, catch_up: bool = False
    ) -> tuple[str, str]:
        """Send writes; the (node id, incarnation) of the node that applied them.

        A catch-up's writes are marked so: the peer does not time them as pushes.
        """
        return await self.apply_encoded(url, [to_json(op) for op in ops], catch_up=catch_up)

    async def apply_encoded(
        self, url: str, ops: Sequence[bytes], *, catch_up: bool = False
    ) -> tuple[str, str]:
        """`apply` for ops already in their JSON form (ops.to_json), joined as they are."""
        end = b'],"catch_up":true}' if catch_up else b"]}"
        content = b'{"ops":[' + b",".join(ops) + end
        body = await self._call("POST", url, "/apply", None, content=content)
        try:
            return (str(body["node_id"]), str(body["incarnation"]))
        except (KeyError, TypeError):
            raise PeerCallFailed(f"{url}: malformed apply answer") from None

    async def digests(self, url: str) -> dict[str, Any]:
        body = await self._call("GET", url, "/digests", None)
        if not isinstance(body, dict):
            raise PeerCallFailed(f"{url}: malformed digests answer")
        return body

    async def bucket_digests(self, url: str, groups: list[int]) -> dict[str, Any]:
        body = await self._call("POST", url, "/bucket-digests", {"groups": groups})
        if not isinstance(body, dict):
            raise PeerCallFailed(f"{url}: malformed bucket digests answer")
        return body

    async def reconcile(self, url: str, buckets: dict[str, Any]) -> dict[str, Any]:
        body = await self._call("POST", url, "/reconcile", {"buckets": buckets})
        if not isinstance(body, dict):
            raise PeerCallFailed(f"{url}: malformed reconcile answer")
        return body

    async def _call(
        self,
        method: str,
        url: str,
        path: str,
        payload: Any,
        timeout: float | None = None,
        *,
        content: bytes | None = None,
    ) -> Any:
        """One call; its JSON answer. The body is `payload` as JSON, or `content` as it is."""
        if payload is not None:
            content = json.dumps(payload, separators=(",", ":")).encode()
        headers = dict(self._headers)
        if content is not None:
            headers["Content-Type"] = "application/json"
            self.bytes_sent += len(content)
        try:
            with trio.fail_after(timeout or self.timeout):
                response = await self._client.request(
                    method, url + PREFIX + path, content=content, headers=headers
                )
        except (httpx.HTTPError, trio.TooSlowError, OSError) as error:
            raise PeerCallFailed(f"{url}{PREFIX}{path}: {type(error).__name__}: {error}") from None
        self.bytes_received += len(response.content)
        if response.status_code != 200:
            raise PeerCallFailed(f"{url}{PREFIX}{path}: HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise PeerCallFailed(f"{url}{PREFIX}{path}: answer is not JSON") from None
