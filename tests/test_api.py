"""The client HTTP API through httpx's ASGI transport, on a fake clock.

The `config` fixture (conftest.py) sets small limits: keys of at most 32
bytes, values of at most 1024 bytes, at most 5 keys per /getKeys request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from phoenix import __version__
from phoenix.app import create_app
from phoenix.clock import FakeClock
from phoenix.config import Config
from phoenix.node import MAX_TTL_SECONDS, SETTLE_BATCH, UPKEEP_INTERVAL, Node

YEAR = 365 * 24 * 3600
BINARY = bytes(range(256))


def assert_error(response: httpx.Response, status: int) -> str:
    """Check that `response` is a JSON error with `status`; return its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


async def put(
    client: httpx.AsyncClient,
    key: str,
    value: bytes | str,
    ttl: int | str = 0,
    content_type: str | None = None,
) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post(
        "/set", params={"key": key, "ttl": str(ttl)}, content=value, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"stored": True}
    return response


async def get_keys(client: httpx.AsyncClient, keys: Any) -> httpx.Response:
    return await client.post("/getKeys", json=keys)


# /set and /get


async def test_set_then_get_returns_the_value(client: httpx.AsyncClient) -> None:
    response = await client.post("/set?key=greeting&ttl=60", content=b"hello")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"stored": True}

    response = await client.get("/get?key=greeting")
    assert response.status_code == 200
    assert response.content == b"hello"


async def test_set_accepts_put(client: httpx.AsyncClient) -> None:
    response = await client.put("/set?key=k&ttl=0", content=b"by put")
    assert response.status_code == 200
    assert response.json() == {"stored": True}
    assert (await client.get("/get?key=k")).content == b"by put"


async def test_get_answers_with_the_stored_content_type(client: httpx.AsyncClient) -> None:
    await put(client, "page", "<p>hi</p>", content_type="text/html; charset=latin-1")
    response = await client.get("/get?key=page")
    assert response.headers["content-type"] == "text/html; charset=latin-1"


async def test_a_content_type_that_is_not_printable_ascii_is_refused(
    client: httpx.AsyncClient,
) -> None:
    # It was stored and sent back as it came, where /setKeys refuses it.
    headers = {"Content-Type": b"\xe9t\xe9"}
    response = await client.post(
        "/set", params={"key": "k", "ttl": 0}, content=b"v", headers=headers
    )
    assert response.status_code == 400
    assert response.json() == {"error": "Content-Type must be printable ASCII"}
    assert (await client.get("/get", params={"key": "k"})).status_code == 404


async def test_value_without_content_type_is_octet_stream(client: httpx.AsyncClient) -> None:
    await put(client, "k", b"v")
    response = await client.get("/get?key=k")
    assert response.headers["content-type"] == "application/octet-stream"


async def test_binary_value_round_trips_byte_for_byte(client: httpx.AsyncClient) -> None:
    await put(client, "blob", BINARY, content_type="application/x-blob")
    response = await client.get("/get?key=blob")
    assert response.content == BINARY
    assert response.headers["content-type"] == "application/x-blob"


async def test_zero_length_value_is_stored(client: httpx.AsyncClient) -> None:
    await put(client, "empty", b"")
    response = await client.get("/get?key=empty")
    assert response.status_code == 200
    assert response.content == b""
    assert (await client.get("/trygetwithexpire?key=empty")).json() == {
        "value": "",
        "expires_in": None,
    }


async def test_set_replaces_value_content_type_and_ttl(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await put(client, "k", b"old", ttl=10, content_type="text/plain")
    await put(client, "k", b"new", ttl=0, content_type="application/json")
    clock.advance(60)
    response = await client.get("/get?key=k")
    assert response.content == b"new"
    assert response.headers["content-type"] == "application/json"


async def test_percent_encoded_key_is_decoded(client: httpx.AsyncClient) -> None:
    key = "ключ/ä ?&=+"
    await put(client, key, b"v")
    assert (await client.get("/get", params={"key": key})).content == b"v"
    assert [item["key"] for item in (await client.get("/list")).json()] == [key]


async def test_plus_in_query_means_space(client: httpx.AsyncClient) -> None:
    await client.post("/set?key=a+b&ttl=0", content=b"v")
    assert (await client.get("/get?key=a%20b")).content == b"v"


async def test_get_of_missing_key_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/get?key=missing"), 404)


async def test_get_without_key_is_400(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/get"), 400)
    assert_error(await client.get("/get?key="), 400)


async def test_expired_key_is_not_returned(client: httpx.AsyncClient, clock: FakeClock) -> None:
    await put(client, "k", b"v", ttl=10)
    clock.advance(9.999)
    assert (await client.get("/get?key=k")).status_code == 200
    clock.advance(0.001)
    assert_error(await client.get("/get?key=k"), 404)


async def test_key_with_ttl_zero_never_expires(
    client: httpx.AsyncClient, node: Node, clock: FakeClock
) -> None:
    await put(client, "forever", b"v", ttl=0)
    clock.advance(200 * YEAR)
    node.store.expire_due()
    assert (await client.get("/get?key=forever")).content == b"v"


async def test_the_node_settles_digests_of_a_burst_of_writes_in_the_background(
    node: Node, autojump_clock: trio.abc.Clock
) -> None:
    keys = [f"k{i}" for i in range(3 * SETTLE_BATCH)]  # more than one batch
    node.set_many([(key, b"v", "t") for key in keys], 0)
    assert node.store.settle_digests(0)  # noted, not yet hashed
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await trio.sleep(UPKEEP_INTERVAL * 1.5)
        assert not node.store.settle_digests(0)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "query",
    [
        "ttl=10",
        "key=k",
        "key=&ttl=10",
        "key=k&ttl=",
        "key=k&ttl=x",
        "key=k&ttl=-1",
        "key=k&ttl=1.5",
    ],
    ids=["no-key", "no-ttl", "empty-key", "empty-ttl", "ttl-x", "ttl-negative", "ttl-fraction"],
)
async def test_set_with_missing_or_malformed_parameter_is_400(
    client: httpx.AsyncClient, query: str
) -> None:
    assert_error(await client.post(f"/set?{query}", content=b"v"), 400)
    assert_error(await client.get("/get?key=k"), 404)


@pytest.mark.parametrize("ttl", ["+5", " 5", "5 ", "1e3", "٣", "²"])
async def test_ttl_must_be_ascii_digits(client: httpx.AsyncClient, ttl: str) -> None:
    assert_error(await client.post("/set", params={"key": "k", "ttl": ttl}, content=b"v"), 400)


async def test_ttl_over_a_hundred_years_is_400(client: httpx.AsyncClient) -> None:
    await put(client, "longest", b"v", ttl=MAX_TTL_SECONDS)
    assert_error(await client.post(f"/set?key=k&ttl={MAX_TTL_SECONDS + 1}", content=b"v"), 400)


async def test_key_over_max_key_length_is_413(client: httpx.AsyncClient) -> None:
    await put(client, "k" * 32, b"v")
    assert_error(await client.post("/set", params={"key": "k" * 33, "ttl": "0"}, content=b"v"), 413)
    assert_error(await client.get("/get", params={"key": "k" * 33}), 413)


async def test_key_length_is_counted_in_utf8_bytes(client: httpx.AsyncClient) -> None:
    await put(client, "é" * 16, b"v")  # 32 bytes
    response = await client.post("/set", params={"key": "é" * 17, "ttl": "0"}, content=b"v")
    assert_error(response, 413)


async def test_value_over_max_value_size_is_413(client: httpx.AsyncClient) -> None:
    await put(client, "fits", b"x" * 1024)
    message = assert_error(await client.post("/set?key=k&ttl=0", content=b"x" * 1025), 413)
    assert "max_value_size" in message
    assert_error(await client.get("/get?key=k"), 404)


async def test_chunked_value_over_max_value_size_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(11):
            yield b"x" * 100

    response = await client.post("/set?key=k&ttl=0", content=chunks())
    assert_error(response, 413)
    assert_error(await client.get("/get?key=k"), 404)


async def test_chunked_value_over_max_value_size_is_refused_without_waiting_for_the_rest(
    clock: FakeClock, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(Config(max_value_size=16, num_counters=1000), clock=clock)
    transport = httpx.ASGITransport(app=create_app(node))

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        await trio.sleep_forever()

    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        response = await client.post("/set?key=k&ttl=0", content=chunks())
    # Today: 408 once read_timeout is over, after buffering what came.
    assert_error(response, 413)


async def test_value_the_policy_does_not_admit_is_answered_stored_false(clock: FakeClock) -> None:
    # Every entry costs more than the whole budget, so none is admitted.
    node = Node(Config(max_cost=200, num_counters=1000), clock=clock)
    transport = httpx.ASGITransport(app=create_app(node))
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        response = await client.post("/set?key=k&ttl=0", content=b"v")
        assert response.status_code == 200
        assert response.json() == {"stored": False}
        assert_error(await client.get("/get?key=k"), 404)


@pytest.mark.parametrize("path", ["/set?key=%ff&ttl=0", "/set?key=k&ttl=0&other=%c3%28"])
async def test_invalid_utf8_in_query_is_400(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.post(path, content=b"v"), 400)


@pytest.mark.parametrize("path", ["/get", "/trygetwithexpire", "/remove", "/removeallkeys"])
async def test_invalid_utf8_key_is_400_on_every_route(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(f"{path}?key=%ff"), 400)


# /trygetwithexpire


async def test_trygetwithexpire_returns_value_and_seconds_left(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await put(client, "k", "héllo", ttl=10)
    clock.advance(2.5)
    response = await client.get("/trygetwithexpire?key=k")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"value": "héllo", "expires_in": 7.5}


async def test_trygetwithexpire_without_expiry_is_null(client: httpx.AsyncClient) -> None:
    await put(client, "k", b"v", ttl=0)
    assert (await client.get("/trygetwithexpire?key=k")).json() == {
        "value": "v",
        "expires_in": None,
    }


async def test_trygetwithexpire_sends_binary_values_as_base64(client: httpx.AsyncClient) -> None:
    await put(client, "blob", BINARY, ttl=0)
    body = (await client.get("/trygetwithexpire?key=blob")).json()
    assert body["encoding"] == "base64"
    assert base64.b64decode(body["value"]) == BINARY
    assert body["expires_in"] is None


async def test_trygetwithexpire_of_missing_or_expired_key_is_404(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    assert_error(await client.get("/trygetwithexpire?key=missing"), 404)
    await put(client, "k", b"v", ttl=1)
    clock.advance(1)
    assert_error(await client.get("/trygetwithexpire?key=k"), 404)


async def test_trygetwithexpire_without_key_is_400(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/trygetwithexpire"), 400)


# /getKeys


async def test_getkeys_returns_only_found_keys_with_expiration(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await put(client, "a", "alpha", ttl=60)
    await put(client, "b", "beta", ttl=0)
    await put(client, "c", BINARY, ttl=0)
    response = await get_keys(client, ["a", "b", "c", "missing", ""])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    # FakeClock starts at 2023-11-14T22:13:20Z.
    assert body["a"] == {"value": "alpha", "expiration": "2023-11-14T22:14:20.000Z"}
    assert body["b"] == {"value": "beta", "expiration": None}
    assert body["c"]["encoding"] == "base64"
    assert base64.b64decode(body["c"]["value"]) == BINARY
    assert set(body) == {"a", "b", "c"}

    moment = datetime.fromisoformat(body["a"]["expiration"].replace("Z", "+00:00"))
    assert moment == datetime.fromtimestamp(clock.now_ms() / 1000 + 60, UTC)


async def test_getkeys_expiration_keeps_milliseconds(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    clock.advance(0.123)
    await put(client, "a", "v", ttl=1)
    assert (await get_keys(client, ["a"])).json()["a"]["expiration"] == "2023-11-14T22:13:21.123Z"


async def test_getkeys_leaves_out_expired_keys(client: httpx.AsyncClient, clock: FakeClock) -> None:
    await put(client, "short", "v", ttl=1)
    await put(client, "long", "v", ttl=100)
    clock.advance(1)
    assert set((await get_keys(client, ["short", "long"])).json()) == {"long"}


async def test_getkeys_of_empty_array_is_empty_object(client: httpx.AsyncClient) -> None:
    response = await get_keys(client, [])
    assert response.status_code == 200
    assert response.json() == {}


async def test_getkeys_reads_a_key_listed_many_times_once(
    client: httpx.AsyncClient, node: Node
) -> None:
    # The answer holds each key once, but a key listed 10,000 times was read
    # and encoded 10,000 times: for a binary value of 1 MiB (base64 each
    # time), 12 s of the node's one thread for a request of 60 KB.
    await put(client, "c", BINARY)

    def reads() -> tuple[int, int]:
        stats = node.store.stats  # hits are read from the policy when asked
        return stats.hits, stats.misses

    hits, misses = reads()
    response = await get_keys(client, ["c", "missing", "c", "c", "missing"])
    assert reads() == (hits + 1, misses + 1)
    encoded = base64.b64encode(BINARY).decode()
    assert response.json() == {"c": {"value": encoded, "encoding": "base64", "expiration": None}}


@pytest.mark.parametrize(
    "body",
    [b'{"a": 1}', b'"a"', b"null", b'["a", 1]', b'[["a"]]', b"[", b"", b"\xff\xfe"],
    ids=["object", "string", "null", "number-item", "nested", "malformed", "empty", "not-utf8"],
)
async def test_getkeys_body_must_be_json_array_of_strings(
    client: httpx.AsyncClient, body: bytes
) -> None:
    assert_error(await client.post("/getKeys", content=body), 400)


async def test_getkeys_past_max_keys_per_request_is_413(client: httpx.AsyncClient) -> None:
    assert (await get_keys(client, ["k"] * 5)).status_code == 200
    message = assert_error(await get_keys(client, ["k"] * 6), 413)
    assert "max_keys_per_request" in message


async def test_getkeys_body_too_large_is_413(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/getKeys", content=b" " * (3 * 1024 * 1024)), 413)


# /list


async def test_list_of_empty_cache_is_empty_array(client: httpx.AsyncClient) -> None:
    response = await client.get("/list")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == []


async def test_list_streams_every_entry_with_values_cut_to_25_characters(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    long_text = "ä" * 30
    await put(client, "long", long_text, ttl=10)
    await put(client, "short", "v", ttl=0)
    await put(client, "blob", BINARY, ttl=0)
    await put(client, "gone", "v", ttl=1)
    clock.advance(1)

    items = {item["key"]: item for item in (await client.get("/list")).json()}
    assert set(items) == {"long", "short", "blob"}
    assert items["long"] == {"key": "long", "value": "ä" * 25, "expires_in": 9.0}
    assert items["short"] == {"key": "short", "value": "v", "expires_in": None}
    # A binary value's preview is its first 25 bytes, in base64.
    assert items["blob"]["encoding"] == "base64"
    assert base64.b64decode(items["blob"]["value"]) == BINARY[:25]


@pytest.mark.parametrize("flag", ["true", "TRUE", "1"])
async def test_list_with_all_value_returns_whole_values(
    client: httpx.AsyncClient, flag: str
) -> None:
    await put(client, "long", "x" * 100)
    await put(client, "blob", BINARY)
    items = {item["key"]: item for item in (await client.get(f"/list?allValue={flag}")).json()}
    assert items["long"]["value"] == "x" * 100
    assert base64.b64decode(items["blob"]["value"]) == BINARY


async def test_list_with_all_value_false_cuts_values(client: httpx.AsyncClient) -> None:
    await put(client, "long", "x" * 100)
    for flag in ("false", "0"):
        [item] = (await client.get(f"/list?allValue={flag}")).json()
        assert item["value"] == "x" * 25


async def test_list_with_all_value_maybe_is_400(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/list?allValue=maybe"), 400)


async def test_list_pages_return_every_key_exactly_once(client: httpx.AsyncClient) -> None:
    keys = {f"key-{i:03}" for i in range(300)}
    for key in keys:
        await put(client, key, key)

    seen: list[str] = []
    cursor = "0"
    pages = 0
    while True:
        response = await client.get("/list", params={"limit": "50", "cursor": cursor})
        assert response.status_code == 200
        page = response.json()
        assert all(item["value"] == item["key"] for item in page)
        seen.extend(item["key"] for item in page)
        cursor = response.headers["X-Next-Cursor"]
        pages += 1
        if cursor == "0":
            break
        assert pages < 100, "the cursor never came back to 0"
    assert sorted(seen) == sorted(keys)
    assert len(seen) == len(keys)
    assert pages >= 6


async def test_list_page_past_the_last_bucket_is_empty_and_final(
    client: httpx.AsyncClient,
) -> None:
    await put(client, "k", "v")
    response = await client.get("/list?limit=10&cursor=100000")
    assert response.json() == []
    assert response.headers["X-Next-Cursor"] == "0"


async def test_list_with_only_limit_starts_at_the_beginning(client: httpx.AsyncClient) -> None:
    await put(client, "k", "v")
    response = await client.get("/list?limit=10000")
    assert [item["key"] for item in response.json()] == ["k"]
    assert response.headers["X-Next-Cursor"] == "0"


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=10001", "limit=x", "limit=", "cursor=-1", "cursor=1.5"]
)
async def test_list_with_bad_limit_or_cursor_is_400(client: httpx.AsyncClient, query: str) -> None:
    assert_error(await client.get(f"/list?{query}"), 400)


# /flush, /remove, /removeallkeys


async def test_flush_empties_the_cache(client: httpx.AsyncClient) -> None:
    await put(client, "a", "v")
    await put(client, "b", "v", ttl=10)
    response = await client.post("/flush")
    assert response.status_code == 200
    assert response.json() == {"flushed": True}
    assert (await client.get("/list")).json() == []
    assert_error(await client.get("/get?key=a"), 404)


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_remove_answers_200_whether_or_not_the_key_existed(
    client: httpx.AsyncClient, method: str
) -> None:
    await put(client, "k", "v")
    response = await client.request(method, "/remove?key=k")
    assert response.status_code == 200
    assert response.json() == {"removed": True}
    assert_error(await client.get("/get?key=k"), 404)

    response = await client.request(method, "/remove?key=k")
    assert response.status_code == 200
    assert response.json() == {"removed": False}


async def test_remove_without_key_is_400(client: httpx.AsyncClient) -> None:
    assert_error(await client.delete("/remove"), 400)


SOME_KEYS = ["user:1", "user:22", "session:user", "User:3", "admin", "bdmin", "path/a:b"]


async def removed(client: httpx.AsyncClient, pattern: str, method: str = "DELETE") -> list[str]:
    for key in SOME_KEYS:
        await put(client, key, "v")
    response = await client.request(method, "/removeallkeys", params={"key": pattern})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    keys: list[str] = response.json()
    remaining = {item["key"] for item in (await client.get("/list")).json()}
    assert remaining == set(SOME_KEYS) - set(keys)
    return sorted(keys)


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_removeallkeys_without_wildcards_matches_substrings(
    client: httpx.AsyncClient, method: str
) -> None:
    assert await removed(client, "user", method) == ["session:user", "user:1", "user:22"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("user:*", ["user:1", "user:22"]),
        ("user:?", ["user:1"]),
        ("[ab]dmin", ["admin", "bdmin"]),
        ("*user", ["session:user"]),
        ("path*b", ["path/a:b"]),
        ("[Uu]ser:*", ["User:3", "user:1", "user:22"]),
        ("nothing*", []),
    ],
)
async def test_removeallkeys_with_wildcards_globs_the_whole_key(
    client: httpx.AsyncClient, pattern: str, expected: list[str]
) -> None:
    assert await removed(client, pattern) == expected


async def test_removeallkeys_does_not_report_expired_keys(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await put(client, "user:old", "v", ttl=1)
    await put(client, "user:new", "v", ttl=100)
    clock.advance(1)
    assert (await client.delete("/removeallkeys?key=user:*")).json() == ["user:new"]


async def test_removeallkeys_without_pattern_is_400(client: httpx.AsyncClient) -> None:
    assert_error(await client.delete("/removeallkeys"), 400)
    assert_error(await client.delete("/removeallkeys?key="), 400)


async def test_removeallkeys_pattern_past_four_key_lengths_is_413_and_removes_nothing(
    client: httpx.AsyncClient, node: Node
) -> None:
    # As KEYS and SCAN MATCH refuse it over RESP: compiling a long pattern
    # stalled the node (a 64 KB one, which HTTP/2 carries, for 0.3 s), the
    # regex cache kept about 20 times its size, and the store remembered it
    # for the tombstone grace.
    await put(client, "k", "v")
    longest = "*" * (4 * node.config.max_key_length)
    assert (await client.delete("/removeallkeys", params={"key": longest})).json() == ["k"]
    await put(client, "k", "v")
    message = assert_error(
        await client.delete("/removeallkeys", params={"key": longest + "*"}), 413
    )
    assert "4 x max_key_length" in message
    assert (await client.get("/get", params={"key": "k"})).content == b"v"
    assert set(node.store.pattern_removals) == {longest}


# /ping, unknown paths and methods


async def test_ping_returns_the_node_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/ping")
    assert response.status_code == 200
    assert response.json() == {"node_id": "test-node", "version": __version__}


@pytest.mark.parametrize("path", ["/", "/nope", "/get/extra", "/GET"])
async def test_unknown_path_is_404_json(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/set?key=k&ttl=0", "POST, PUT, OPTIONS"),
        ("PUT", "/get?key=k", "GET, HEAD, OPTIONS"),
        ("POST", "/trygetwithexpire?key=k", "GET, HEAD, OPTIONS"),
        ("GET", "/getKeys", "POST, OPTIONS"),
        ("DELETE", "/list", "GET, HEAD, OPTIONS"),
        ("GET", "/flush", "POST, OPTIONS"),
        ("PUT", "/remove?key=k", "GET, HEAD, POST, DELETE, OPTIONS"),
        ("PUT", "/removeallkeys?key=k", "GET, HEAD, POST, DELETE, OPTIONS"),
        ("POST", "/ping", "GET, HEAD, OPTIONS"),
    ],
)
async def test_wrong_method_is_405_json_naming_the_allowed_ones(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)
    assert_error(response, 405)
    assert sorted(response.headers["allow"].split(", ")) == sorted(allowed.split(", "))


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "text/plain", "application/x-www-form-urlencoded"]
)
async def test_getkeys_takes_json_declared_as_json_text_or_curl_form(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    await put(client, "k", "v")
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/getKeys", content=b'["k"]', headers=headers)
    assert response.status_code == 200
    assert response.json()["k"]["value"] == "v"


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=x", "application/xml"])
async def test_getkeys_refuses_a_body_declared_as_something_else(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await client.post(
        "/getKeys", content=b'["k"]', headers={"Content-Type": content_type}
    )
    assert_error(response, 415)


# /setKeys


async def test_setkeys_stores_text_and_binary_values(client: httpx.AsyncClient) -> None:
    body = {
        "text": "hello",
        "binary": {"value": base64.b64encode(BINARY).decode(), "encoding": "base64"},
        "typed": {"value": "{}", "content_type": "application/json"},
        "untyped": {"value": "x", "content_type": ""},
    }
    response = await client.post("/setKeys", params={"ttl": 0}, json=body)
    assert response.status_code == 200
    assert response.json() == {"stored": 4, "refused": []}
    untyped = await client.get("/get", params={"key": "untyped"})
    assert untyped.headers["content-type"] == "application/octet-stream"  # as /set stores it
    assert (await client.get("/get", params={"key": "text"})).content == b"hello"
    assert (await client.get("/get", params={"key": "binary"})).content == BINARY
    typed = await client.get("/get", params={"key": "typed"})
    assert typed.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("params", "body", "status"),
    [
        ({}, {"a": "v"}, 400),
        ({"ttl": "x"}, {"a": "v"}, 400),
        ({"ttl": 0}, ["a"], 400),
        ({"ttl": 0}, {"a": "v", "b": 5}, 400),
        ({"ttl": 0}, {"a": "v", "b": {"value": "!!", "encoding": "base64"}}, 400),
        ({"ttl": 0}, {"a": "v", "b": {"value": "x", "encoding": "gzip"}}, 400),
        ({"ttl": 0}, {"a": "v", "b": {"value": "x", "content_type": "text/\u00e9"}}, 400),
        ({"ttl": 0}, {"a": "v", "b": {"value": "x", "content_type": "a\r\nSet-Cookie: x"}}, 400),
        ({"ttl": 0}, {"a": "v", "": "v"}, 400),
        ({"ttl": 0}, {"a": "v", "k" * 33: "v"}, 413),
        ({"ttl": 0}, {"a": "v", "b": "x" * 2000}, 413),
        ({"ttl": 0}, {f"k{i}": "v" for i in range(6)}, 413),
        # Lone surrogates, which JSON's \\u escapes can write but UTF-8 cannot.
        ({"ttl": 0}, {"a": "v", "\ud800": "x"}, 400),
        ({"ttl": 0}, {"a": "v", "b": "\ud800"}, 400),
        ({"ttl": 0}, {"a": "v", "b": {"value": "\udfff"}}, 400),
    ],
)
async def test_setkeys_with_any_bad_item_writes_nothing(
    client: httpx.AsyncClient, params: dict[str, object], body: object, status: int
) -> None:
    # json.dumps escapes lone surrogates as \\ud800 (httpx's json= cannot send them).
    content = json.dumps(body).encode()
    response = await client.post("/setKeys", params=params, content=content)
    assert_error(response, status)
    assert (await client.get("/get", params={"key": "a"})).status_code == 404


HUGE_NUMBER = "9" * 5000  # past the 4,300 digits int() reads from text
DEEP_JSON = b"[" * 100_000


@pytest.mark.parametrize(
    ("method", "url", "body", "status"),
    [
        ("POST", f"/set?key=k&ttl={HUGE_NUMBER}", b"v", 400),
        ("POST", f"/set?key=k&ttl=0&sync={HUGE_NUMBER}", b"v", 400),
        ("POST", f"/setKeys?ttl={HUGE_NUMBER}", b'{"k": "v"}', 400),
        ("GET", f"/list?limit={HUGE_NUMBER}", b"", 400),
        ("GET", f"/list?limit=10&cursor={HUGE_NUMBER}", b"", 400),
        ("POST", f"/flush?sync={HUGE_NUMBER}", b"", 400),
        # More values than a request can hold, refused before they are parsed.
        ("POST", "/getKeys", DEEP_JSON, 413),
        ("POST", "/setKeys?ttl=0", b'{"a":' * 50_000, 413),
        ("POST", "/getKeys", b"[" * 8_000, 400),
        ("POST", "/getKeys", b'["\\ud800"]', 400),
        ("POST", "/getKeys", b'["' + b"k" * 33 + b'"]', 413),
        ("POST", "/internal/reconcile", b'{"buckets": {"%s": []}}' % HUGE_NUMBER.encode(), 400),
        ("POST", "/internal/reconcile", b'{"buckets": {"\\u00b2": []}}', 400),
        ("POST", "/internal/bucket-digests", b'{"groups": [true]}', 400),
    ],
)
async def test_input_past_what_python_reads_is_a_clear_error_and_changes_nothing(
    client: httpx.AsyncClient, method: str, url: str, body: bytes, status: int
) -> None:
    await client.post("/set", params={"key": "k", "ttl": 0}, content=b"kept")
    assert_error(await client.request(method, url, content=body), status)
    assert (await client.get("/get", params={"key": "k"})).content == b"kept"


# A body under the routes' size bound whose values are all tiny: json.loads
# makes an object of each, 21 bytes of memory per byte of `{},`.
TINY_VALUES = b"{}," * 600_000 + b"{}"


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/getKeys", b"[" + TINY_VALUES + b"]"),
        ("/setKeys?ttl=0", b'{"a": [' + TINY_VALUES + b"]}"),
        ("/internal/apply", b'{"ops": [' + TINY_VALUES + b"]}"),
    ],
)
async def test_a_json_body_of_countless_tiny_values_is_413_without_parsing_it(
    client: httpx.AsyncClient, url: str, body: bytes
) -> None:
    # Such a body of 61 MB (the default bound of /getKeys) took 1.4 GB and 4 s to parse.
    message = assert_error(await client.post(url, content=body), 413)
    assert "JSON values" in message
    assert (await client.get("/get", params={"key": "a"})).status_code == 404


@pytest.mark.parametrize(
    ("body", "status"),
    [
        # Separators inside strings are not values: the key is read, and is too long.
        (b'["' + b"," * 200_000 + b'"]', 413),
        (b"[" + b" " * 200_000 + b'"k"]', 200),
        # An unterminated string of escaped quotes is skipped in one pass, not one per quote.
        (b'["' + b'\\",' * 200_000, 400),
    ],
)
async def test_a_large_json_body_of_few_values_is_read(
    client: httpx.AsyncClient, body: bytes, status: int
) -> None:
    response = await client.post("/getKeys", content=body)
    assert response.status_code == status, response.text
    assert "JSON values" not in response.text
