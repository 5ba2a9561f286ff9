"""Several nodes in one trio run, wired by an in-memory network that can fail.

Each node's peer calls go through `Network.transport_for(name)`, which hands
the request to the named node's ASGI app, unless the link is cut. Time is
trio's (virtual under autojump_clock), and the wall clock follows it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import trio

from phoenix.app import create_app
from phoenix.config import Config
from phoenix.node import Node

WALL_START_MS = 1_700_000_000_000


class TrioWallClock:
    """A wall clock that moves with trio's clock (virtual under autojump_clock)."""

    def now_ms(self) -> int:
        return WALL_START_MS + int(trio.current_time() * 1000)


def url(name: str) -> str:
    return f"http://{name}"


class Network:
    """Routes requests by host name to apps; links can be cut and healed."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.ASGITransport] = {}
        self.cut: set[frozenset[str]] = set()
        self.isolated: set[str] = set()
        self.hung: set[str] = set()  # nodes that take requests and never answer
        self.requests: list[tuple[str, str, str]] = []
        # Drops any request for which this returns True: (source, target, path).
        self.refuse: Callable[[str, str, str], bool] = lambda source, target, path: False

    def transport_for(self, source: str) -> httpx.AsyncBaseTransport:
        return _Link(self, source)

    def catch_up_only_by(self, name: str) -> None:
        """Refuse the other nodes' reconcile calls: only `name`'s catch-ups move data
        (two catch-ups at once would share the work, in an order trio may vary)."""
        self.refuse = lambda source, target, path: source != name and path.endswith("/reconcile")

    def partition(self, name: str) -> None:
        self.isolated.add(name)

    def heal(self, name: str) -> None:
        self.isolated.discard(name)

    def reachable(self, source: str, target: str) -> bool:
        return (
            target in self.apps
            and source not in self.isolated
            and target not in self.isolated
            and frozenset((source, target)) not in self.cut
        )


@attrs.define
class _Link(httpx.AsyncBaseTransport):
    network: Network
    source: str

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = request.url.host
        self.network.requests.append((self.source, target, request.url.path))
        if not self.network.reachable(self.source, target) or self.network.refuse(
            self.source, target, request.url.path
        ):
            raise httpx.ConnectError(f"{self.source} cannot reach {target}", request=request)
        if target in self.network.hung:
            await trio.sleep_forever()  # until the caller's timeout
        return await self.network.apps[target].handle_async_request(request)


@attrs.define
class Cluster:
    network: Network
    nodes: dict[str, Node]
    nursery: trio.Nursery
    scopes: dict[str, trio.CancelScope]
    config: dict[str, Any]

    def client(self, name: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=self.network.apps[name], base_url=url(name), timeout=None
        )

    async def start(self, name: str, **overrides: Any) -> Node:
        """Start (or restart, empty) the node called `name`, with some settings of its own."""
        names = self.config["names"]
        settings = {k: v for k, v in self.config.items() if k != "names"} | overrides
        config = Config(peers=tuple(url(n) for n in names), node_id=name, **settings)
        node = Node(config, clock=TrioWallClock(), transport=self.network.transport_for(name))
        self.network.apps[name] = httpx.ASGITransport(app=create_app(node))
        scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await node.run(task_status=task_status)

        await self.nursery.start(run)
        self.nodes[name] = node
        self.scopes[name] = scope
        return node

    def kill(self, name: str) -> None:
        """Stop the node at once; its memory is gone and it answers nothing."""
        self.scopes.pop(name).cancel()
        del self.network.apps[name]
        del self.nodes[name]


@asynccontextmanager
async def cluster(
    names: list[str], refuse: Callable[[str, str, str], bool] | None = None, **settings: Any
) -> AsyncIterator[Cluster]:
    """Start one node per name, each listing all of them as peers.

    `refuse` drops the requests it returns True for, from the very start.
    """
    defaults: dict[str, Any] = {
        "heart_beat_interval_in_seconds": 1.0,
        "max_retries_to_disabled_node": 3,
        "read_timeout": 2.0,
        "write_timeout": 2.0,
    }
    defaults.update(settings)
    defaults["names"] = names
    async with trio.open_nursery() as nursery:
        harness = Cluster(Network(), {}, nursery, {}, defaults)
        if refuse is not None:
            harness.network.refuse = refuse
        for name in names:
            await harness.start(name)
        yield harness
        nursery.cancel_scope.cancel()


def contents(node: Node) -> dict[str, tuple[bytes, Any]]:
    """What a node holds: key -> (value, version)."""
    return {key: (entry.value, entry.version) for key, entry in node.store.items()}


async def settle(seconds: float = 10.0) -> None:
    """Let heartbeats, replicators and catch-ups run (virtual time)."""
    await trio.sleep(seconds)
