"""Per-request limits: the per-address cap on requests in flight (429), the
request deadline (503) and the body timeout (408).

Tests that need time to pass take pytest-trio's `autojump_clock`, so the
timeouts elapse in virtual time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from conftest import layer
from phoenix.app import create_app
from phoenix.config import Config
from phoenix.limits import ASGIApp, InFlightCap, Message, Receive, RequestDeadline, Scope, Send
from phoenix.node import Node


@pytest.fixture
def config() -> Config:
    return Config(
        node_id="limits-node",
        num_counters=10_000,
        max_conns_per_ip=1,
        read_timeout=5,
        write_timeout=5,
    )


def http_scope(address: str) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"node")],
        "client": (address, 40000),
        "server": ("127.0.0.1", 8080),
    }


async def empty_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class Exchange:
    """The messages an ASGI app sent for one request."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int | None:
        for message in self.messages:
            if message["type"] == "http.response.start":
                return int(message["status"])
        return None

    @property
    def headers(self) -> dict[bytes, bytes]:
        for message in self.messages:
            if message["type"] == "http.response.start":
                return dict(message["headers"])
        return {}

    def json(self) -> Any:
        body = b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )
        return json.loads(body)


async def call(app: ASGIApp, address: str) -> Exchange:
    exchange = Exchange()
    await app(http_scope(address), empty_body, exchange.send)
    return exchange


def assert_json_error(exchange: Exchange, status: int) -> None:
    assert exchange.status == status
    assert exchange.headers[b"content-type"] == b"application/json"
    assert set(exchange.json()) == {"error"}


async def answer_ok(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


class HeldApp:
    """An inner app whose requests all wait until `release` is set, then answer 200."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.inside = 0
        self.served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.inside += 1
        try:
            await self.release.wait()
        finally:
            self.inside -= 1
        await answer_ok(send)
        self.served += 1


def limits(app: ASGIApp, max_per_ip: int) -> InFlightCap:
    return InFlightCap(app, max_per_ip=max_per_ip)


def deadline(app: ASGIApp) -> InFlightCap:
    """`app` behind the request deadline (2 + 3 s) and a cap of 1, as the Quart routes are."""
    return InFlightCap(RequestDeadline(app, read_timeout=2, write_timeout=3), max_per_ip=1)


async def held_request_from(app: ASGIApp, address: str, results: list[Exchange]) -> None:
    results.append(await call(app, address))


def client_of(app: ASGIApp, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://node")


# The per-address cap


@asynccontextmanager
async def set_in_flight(client: httpx.AsyncClient, key: str) -> AsyncIterator[None]:
    """Hold a /set of `key` in flight, its body unfinished, for the `with` block."""
    body_started = trio.Event()
    release = trio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"first,"
        body_started.set()
        await release.wait()
        yield b"last"

    async def held_set() -> None:
        response = await client.post("/set", params={"key": key, "ttl": "0"}, content=slow_body())
        assert response.status_code == 200
        assert response.json() == {"stored": True}

    async with trio.open_nursery() as nursery:
        nursery.start_soon(held_set)
        await body_started.wait()
        yield
        release.set()
    assert (await client.get("/get", params={"key": key})).content == b"first,last"


async def test_second_request_in_flight_from_same_address_is_429(app: ASGIApp) -> None:
    limits = layer(app, InFlightCap)
    async with client_of(app, "127.0.0.1") as same, client_of(app, "10.0.0.2") as other:
        async with set_in_flight(same, "held"):
            assert limits.in_flight == {"127.0.0.1": 1}

            refused = await same.get("/ping")
            assert refused.status_code == 429
            assert refused.headers["content-type"] == "application/json"
            assert set(refused.json()) == {"error"}
            assert "max_conns_per_ip" in refused.json()["error"]

            served = await other.get("/ping")
            assert served.status_code == 200
            assert served.json()["node_id"] == "limits-node"

        assert limits.in_flight == {}
        assert (await same.get("/ping")).status_code == 200


async def test_zero_max_conns_per_ip_means_unlimited_through_the_app() -> None:
    app = create_app(Node(Config(max_conns_per_ip=0, num_counters=1000)))
    async with (
        client_of(app, "127.0.0.1") as client,
        set_in_flight(client, "a"),
        set_in_flight(client, "b"),
    ):
        assert (await client.get("/ping")).status_code == 200


async def test_sequential_requests_from_one_address_are_all_served(
    app: ASGIApp, client: httpx.AsyncClient
) -> None:
    for _ in range(5):
        assert (await client.get("/ping")).status_code == 200
    assert layer(app, InFlightCap).in_flight == {}


async def test_cap_counts_requests_in_flight_per_address() -> None:
    inner = HeldApp()
    guard = limits(inner, max_per_ip=2)
    held: list[Exchange] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(held_request_from, guard, "192.0.2.1", held)
        nursery.start_soon(held_request_from, guard, "192.0.2.1", held)
        await trio.testing.wait_all_tasks_blocked()
        assert inner.inside == 2
        assert guard.in_flight == {"192.0.2.1": 2}

        assert_json_error(await call(guard, "192.0.2.1"), 429)
        assert inner.inside == 2

        # Another address has its own allowance.
        nursery.start_soon(held_request_from, guard, "192.0.2.2", held)
        await trio.testing.wait_all_tasks_blocked()
        assert inner.inside == 3
        assert guard.in_flight == {"192.0.2.1": 2, "192.0.2.2": 1}
        inner.release.set()

    assert [exchange.status for exchange in held] == [200, 200, 200]
    assert guard.in_flight == {}
    assert (await call(guard, "192.0.2.1")).status == 200


async def test_zero_max_per_ip_means_unlimited() -> None:
    inner = HeldApp()
    guard = limits(inner, max_per_ip=0)
    results: list[Exchange] = []
    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(held_request_from, guard, "192.0.2.1", results)
        await trio.testing.wait_all_tasks_blocked()
        assert inner.inside == 50
        assert guard.in_flight == {"192.0.2.1": 50}
        inner.release.set()
    assert [exchange.status for exchange in results] == [200] * 50
    assert guard.in_flight == {}


async def test_counter_returns_to_zero_when_the_app_fails() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    guard = limits(failing, max_per_ip=1)
    with pytest.raises(RuntimeError, match="boom"):
        await call(guard, "192.0.2.1")
    assert guard.in_flight == {}


async def test_counter_returns_to_zero_when_the_request_is_cancelled() -> None:
    inner = HeldApp()
    guard = limits(inner, max_per_ip=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, guard, "192.0.2.1")
        await trio.testing.wait_all_tasks_blocked()
        assert guard.in_flight == {"192.0.2.1": 1}
        nursery.cancel_scope.cancel()
    assert guard.in_flight == {}
    assert inner.served == 0


async def test_lifespan_passes_through_uncounted() -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    guard = limits(inner, max_per_ip=1)
    await guard({"type": "lifespan"}, empty_body, Exchange().send)
    assert seen == ["lifespan"]
    assert guard.in_flight == {}


# The request deadline


def sleeping_app(seconds: float) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await trio.sleep(seconds)
        await answer_ok(send)

    return app


async def test_request_past_deadline_is_answered_503(
    autojump_clock: trio.testing.MockClock,
) -> None:
    guard = deadline(sleeping_app(60))
    start = trio.current_time()
    exchange = await call(guard, "192.0.2.1")
    assert trio.current_time() - start == pytest.approx(5)
    assert_json_error(exchange, 503)
    assert "read_timeout + write_timeout" in exchange.json()["error"]
    assert guard.in_flight == {}


async def test_request_within_deadline_is_served(
    autojump_clock: trio.testing.MockClock,
) -> None:
    guard = deadline(sleeping_app(4.9))
    exchange = await call(guard, "192.0.2.1")
    assert exchange.status == 200


async def test_deadline_after_response_started_sends_no_503(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def stalls_mid_response(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await trio.sleep(60)
        await send({"type": "http.response.body", "body": b"late"})

    guard = deadline(stalls_mid_response)
    exchange = await call(guard, "192.0.2.1")
    assert [message["type"] for message in exchange.messages] == ["http.response.start"]
    assert exchange.status == 200
    assert guard.in_flight == {}


async def test_body_not_received_within_read_timeout_is_408(
    app: ASGIApp, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    async def stalled_body() -> AsyncIterator[bytes]:
        yield b"part"
        await trio.sleep_forever()

    start = trio.current_time()
    response = await client.post("/set?key=k&ttl=0", content=stalled_body())
    assert trio.current_time() - start == pytest.approx(5)
    assert response.status_code == 408
    assert response.headers["content-type"] == "application/json"
    assert "read_timeout" in response.json()["error"]
    assert (await client.get("/get?key=k")).status_code == 404
    assert layer(app, InFlightCap).in_flight == {}


async def stalled_send(message: Message) -> None:
    await trio.sleep_forever()


def http2_scope(address: str) -> Scope:
    # The hot routes bound their answer's send over HTTP/2, where it waits on
    # the client's flow control; hypercorn writes an HTTP/1 answer shielded
    # from cancellation, so there a bound could never fire and none is set.
    return {**http_scope(address), "http_version": "2"}


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [("GET", "/get", b"key=k"), ("POST", "/set", b"ttl=0")],  # a read; an error before the body
)
async def test_hot_route_is_cut_off_at_the_request_deadline(
    app: ASGIApp,
    client: httpx.AsyncClient,
    autojump_clock: trio.testing.MockClock,
    method: str,
    path: str,
    query: bytes,
) -> None:
    assert (await client.post("/set?key=k&ttl=0", content=b"v")).status_code == 200
    scope = {**http2_scope("192.0.2.1"), "method": method, "path": path, "query_string": query}
    start = trio.current_time()
    with trio.fail_after(60):
        await app(scope, empty_body, stalled_send)
    assert trio.current_time() - start == pytest.approx(10)
    assert layer(app, InFlightCap).in_flight == {}


async def test_body_in_within_read_timeout_leaves_the_write_its_time(
    app: ASGIApp, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    parts = [b"first,", b"last"]

    async def slow_body() -> Message:
        if len(parts) == 1:
            await trio.sleep(4.5)
        return {"type": "http.request", "body": parts.pop(0), "more_body": bool(len(parts))}

    scope = {**http2_scope("192.0.2.1"), "method": "POST", "path": "/set"}
    scope["query_string"] = b"key=k&ttl=0"
    start = trio.current_time()
    with trio.fail_after(60):
        await app(scope, slow_body, stalled_send)
    assert trio.current_time() - start == pytest.approx(10)
    assert (await client.get("/get?key=k")).content == b"first,last"
    assert layer(app, InFlightCap).in_flight == {}


async def test_the_408_is_sent_within_the_request_deadline(
    app: ASGIApp, autojump_clock: trio.testing.MockClock
) -> None:
    async def no_body() -> Message:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    tried: list[int] = []

    async def stalled(message: Message) -> None:
        tried.append(message["status"])
        await trio.sleep_forever()

    scope = {**http2_scope("192.0.2.1"), "method": "POST", "path": "/set"}
    scope["query_string"] = b"key=k&ttl=0"
    start = trio.current_time()
    with trio.fail_after(60):
        await app(scope, no_body, stalled)
    assert tried == [408]
    assert trio.current_time() - start == pytest.approx(10)
    assert layer(app, InFlightCap).in_flight == {}


async def test_body_that_the_deadline_overtakes_is_408_and_not_stored(
    app: ASGIApp, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    # The last part arrives just before read_timeout, but the request's task
    # resumes only after it: trio has cancelled the request by then.
    parts: trio.MemorySendChannel[Message]
    parts, arrived = trio.open_memory_channel[Message](0)
    exchange = Exchange()

    async def send(message: Message) -> None:
        await trio.lowlevel.checkpoint()  # as hypercorn's send does, first
        await exchange.send(message)

    async def late_client() -> None:
        await trio.sleep(4.999)
        parts.send_nowait({"type": "http.request", "body": b"v", "more_body": False})
        autojump_clock.jump(0.002)

    scope = {**http_scope("192.0.2.1"), "method": "POST", "path": "/set"}
    scope["query_string"] = b"key=k&ttl=0"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(late_client)
        await app(scope, arrived.receive, send)
    assert exchange.status == 408
    assert (await client.get("/get?key=k")).status_code == 404
