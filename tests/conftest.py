"""Shared fixtures: a node on a fake clock, an HTTP client for it, a free port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeVar

import httpx
import pytest
from hypothesis import settings

from phoenix.clock import FakeClock
from phoenix.config import Config
from phoenix.limits import ASGIApp

if TYPE_CHECKING:
    from phoenix.node import Node


T = TypeVar("T")

# Property tests check behaviour, not speed: no per-example deadline, which a
# loaded CI machine would turn into flaky failures.
settings.register_profile("phoenix", deadline=None)
settings.load_profile("phoenix")


def pick_free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to 0, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def free_port() -> int:
    return pick_free_port()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config() -> Config:
    """Small limits, so that tests cross them with small requests."""
    return Config(
        node_id="test-node",
        num_counters=10_000,
        max_key_length=32,
        max_value_size=1024,
        max_keys_per_request=5,
    )


@pytest.fixture
def node(config: Config, clock: FakeClock) -> Node:
    # Imported here, not at the top: a conftest that fails to import takes
    # every test module down with it, also those that never build a node.
    from phoenix.node import Node

    return Node(config, clock=clock)


@pytest.fixture
def app(node: Node) -> ASGIApp:
    from phoenix.app import create_app

    return create_app(node)


@pytest.fixture
async def client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app` in process; ASGITransport's source address is 127.0.0.1."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
        yield http


def layer(app: object, kind: type[T]) -> T:
    """The middleware of type `kind` in the app's stack (each holds the next in `.app`)."""
    while not isinstance(app, kind):
        app = app.app  # type: ignore[attr-defined]
    return app
