"""What the hot routes (/get, /set, /getKeys, /setKeys, served in front of Quart) do at
the HTTP edges: other methods, a client that goes away, a failure, a root
path; and ShieldLastSend, which guards the last send of Quart's answers.

test_api.py covers what the routes answer; test_limits.py their limits.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing

from conftest import layer
from phoenix import hot_routes
from phoenix.limits import ASGIApp, InFlightCap, Message, Receive, Scope, Send, ShieldLastSend
from phoenix.node import Node
from test_api import assert_error, put
from test_limits import Exchange, http_scope


async def test_head_of_get_answers_the_headers_of_the_get(client: httpx.AsyncClient) -> None:
    await put(client, "k", "hello", content_type="text/plain")
    response = await client.head("/get", params={"key": "k"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["content-length"] == "5"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/get", "GET, HEAD, OPTIONS"),
        ("/set", "POST, PUT, OPTIONS"),
        ("/getKeys", "POST, OPTIONS"),
        ("/setKeys", "POST, OPTIONS"),
        ("/internal/apply", "POST, OPTIONS"),
    ],
)
async def test_options_lists_the_methods_of_a_hot_route(
    client: httpx.AsyncClient, path: str, allowed: str
) -> None:
    response = await client.options(path)
    assert response.status_code == 200
    assert response.headers["allow"] == allowed
    assert response.content == b""


async def test_getkeys_body_not_received_within_read_timeout_is_408(
    client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    async def stalled_body() -> AsyncIterator[bytes]:
        yield b'["k"'
        await trio.sleep_forever()

    response = await client.post("/getKeys", content=stalled_body())
    assert "read_timeout" in assert_error(response, 408)


async def test_client_gone_before_the_body_is_in_gets_no_answer_and_nothing_is_stored(
    app: ASGIApp, client: httpx.AsyncClient
) -> None:
    messages = [
        {"type": "http.request", "body": b"par", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    scope = {**http_scope("127.0.0.1"), "method": "POST", "path": "/set"}
    scope["query_string"] = b"key=k&ttl=0"
    exchange = Exchange()
    await app(scope, receive, exchange.send)
    assert exchange.messages == []
    assert (await client.get("/get", params={"key": "k"})).status_code == 404
    assert layer(app, InFlightCap).in_flight == {}


async def test_unexpected_failure_is_a_logged_json_500(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_lookup(node: Node, query_string: bytes) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(hot_routes, "lookup", broken_lookup)
    with caplog.at_level(logging.ERROR, logger="phoenix.api"):
        response = await client.get("/get", params={"key": "k"})
    assert "internal error" in assert_error(response, 500)
    assert "disk on fire" not in response.text
    assert "disk on fire" in caplog.text


def queued_set(http_version: str, length: int | None, chunked: bool = False) -> Scope:
    headers = [(b"host", b"node")]
    if length is not None:
        headers.append((b"content-length", b"%d" % length))
    if chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    scope = {**http_scope("127.0.0.1"), "method": "POST", "path": "/set", "headers": headers}
    return {**scope, "http_version": http_version, "query_string": b"key=k&ttl=0"}


async def test_body_the_server_has_queued_is_stored_whole(
    app: ASGIApp, client: httpx.AsyncClient
) -> None:
    # hypercorn's trio worker queues the parts of a body in a memory channel.
    parts, receive = trio.open_memory_channel[Message](10)
    parts.send_nowait({"type": "http.request", "body": b"hel", "more_body": True})
    parts.send_nowait({"type": "http.request", "body": b"lo", "more_body": True})
    parts.send_nowait({"type": "http.request", "body": b"", "more_body": False})
    exchange = Exchange()
    # Taken without waiting: a wait, a trip through trio's scheduler
    # (bench/profiles.md), would meet this cancellation.
    with trio.CancelScope() as cancelled:
        cancelled.cancel()
        await app(queued_set("1.1", 5), receive.receive, exchange.send)
    assert exchange.json() == {"stored": True}
    assert (await client.get("/get", params={"key": "k"})).content == b"hello"


async def test_queued_body_past_max_value_size_is_413_and_not_stored(
    app: ASGIApp, client: httpx.AsyncClient, node: Node
) -> None:
    parts, receive = trio.open_memory_channel[Message](10)
    too_long = b"x" * (node.config.max_value_size + 1)
    parts.send_nowait({"type": "http.request", "body": too_long, "more_body": False})
    exchange = Exchange()
    await app(queued_set("1.1", None), receive.receive, exchange.send)
    assert exchange.status == 413
    assert (await client.get("/get", params={"key": "k"})).status_code == 404


@pytest.mark.parametrize(
    ("http_version", "length", "chunked", "status"),
    [
        # Every byte of the declared length came in time: its end follows at once.
        ("1.1", 5, False, 200),
        # Chunked: more may come, so the end is the client's to send in time.
        ("1.1", None, True, 408),
        # Chunked beside a Content-Length, which then does not frame the body.
        ("1.1", 5, True, 408),
        # HTTP/2 ends a body with a flag the client may still withhold.
        ("2", 5, False, 408),
    ],
)
async def test_end_of_a_body_late_past_read_timeout(
    app: ASGIApp,
    client: httpx.AsyncClient,
    autojump_clock: trio.testing.MockClock,
    http_version: str,
    length: int | None,
    chunked: bool,
    status: int,
) -> None:
    parts, receive = trio.open_memory_channel[Message](10)
    parts.send_nowait({"type": "http.request", "body": b"hello", "more_body": True})
    exchange = Exchange()

    async def end_late() -> None:
        await trio.sleep(6)  # read_timeout is 5
        await parts.send({"type": "http.request", "body": b"", "more_body": False})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(end_late)
        await app(queued_set(http_version, length, chunked), receive.receive, exchange.send)
    assert exchange.status == status
    stored = await client.get("/get", params={"key": "k"})
    assert stored.status_code == (200 if status == 200 else 404)


async def test_hot_routes_are_served_below_a_root_path(app: ASGIApp) -> None:
    transport = httpx.ASGITransport(app=app, root_path="/cache")
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        await client.post("/cache/set", params={"key": "k", "ttl": 0}, content=b"v")
        response = await client.get("/cache/get", params={"key": "k"})
        assert response.status_code == 200
        assert response.content == b"v"
        assert_error(await client.get("/cache"), 404)


async def test_shield_last_send_lets_the_last_send_finish_when_the_app_cancels_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # As Quart does: it sends its last message while a sibling task, seeing
    # the client disconnect, cancels the request.
    sent: list[bytes] = []

    async def slow_send(message: Message) -> None:
        await trio.sleep(1)
        sent.append(message.get("body", b""))

    async def cancelling_app(scope: Scope, receive: Receive, send: Send) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, {"type": "http.response.body", "body": b"last"})
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()

    async def no_body() -> Message:
        return {"type": "http.request", "body": b""}

    await cancelling_app(http_scope("127.0.0.1"), no_body, slow_send)
    assert sent == []
    shielded = ShieldLastSend(cancelling_app, write_timeout=5)
    await shielded(http_scope("127.0.0.1"), no_body, slow_send)
    assert sent == [b"last"]


async def test_shield_last_send_gives_up_after_write_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def stuck_send(message: Message) -> None:
        await trio.sleep_forever()

    async def answering_app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.body", "body": b"last"})

    async def no_body() -> Message:
        return {"type": "http.request", "body": b""}

    start = trio.current_time()
    await ShieldLastSend(answering_app, write_timeout=5)(http_scope("::1"), no_body, stuck_send)
    assert trio.current_time() - start == pytest.approx(5)
