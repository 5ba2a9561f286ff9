"""The whitelist: loading the file, matching source addresses, and the 403 guard."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import layer
from phoenix.app import create_app
from phoenix.clock import FakeClock
from phoenix.config import Config
from phoenix.errors import ConfigError
from phoenix.limits import ASGIApp
from phoenix.node import Node
from phoenix.security import Guard, Whitelist

ClientFrom = Callable[[str], httpx.AsyncClient]


def write_whitelist(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "whitelist.json"
    path.write_text(json.dumps(content))
    return path


def load(tmp_path: Path, *entries: str) -> Whitelist:
    return Whitelist.load(write_whitelist(tmp_path, {"allowed_nodes": list(entries)}))


# Loading and matching


def test_ip_addresses_allow_exactly_themselves(tmp_path: Path) -> None:
    whitelist = load(tmp_path, "192.0.2.7", "2001:db8::1")
    assert whitelist.allows("192.0.2.7")
    assert whitelist.allows("2001:db8::1")
    assert not whitelist.allows("192.0.2.8")
    assert not whitelist.allows("2001:db8::2")


def test_cidr_ranges_allow_every_address_inside(tmp_path: Path) -> None:
    whitelist = load(tmp_path, "10.0.0.0/8", "2001:db8::/32", "172.16.5.9/16")
    assert whitelist.allows("10.0.0.1")
    assert whitelist.allows("10.255.255.255")
    assert not whitelist.allows("11.0.0.1")
    assert whitelist.allows("2001:db8:ffff::1")
    assert not whitelist.allows("2001:db9::1")
    # Host bits in a range are accepted, as the range they belong to.
    assert whitelist.allows("172.16.200.1")
    assert not whitelist.allows("172.17.0.1")


def test_localhost_is_resolved_to_its_addresses(tmp_path: Path) -> None:
    whitelist = load(tmp_path, "localhost")
    assert whitelist.allows("127.0.0.1")
    assert not whitelist.allows("10.1.2.3")


@pytest.mark.parametrize(
    ("entry", "allowed", "denied"),
    [
        ("192.0.2.7:8080", "192.0.2.7", "192.0.2.8"),
        ("localhost:8080", "127.0.0.1", "10.1.2.3"),
        ("[::1]:8080", "::1", "::2"),
        ("[2001:db8::5]", "2001:db8::5", "2001:db8::6"),
        ("::1", "::1", "::2"),
        ("  192.0.2.7  ", "192.0.2.7", "192.0.2.8"),
    ],
)
def test_port_is_accepted_and_ignored(
    tmp_path: Path, entry: str, allowed: str, denied: str
) -> None:
    whitelist = load(tmp_path, entry)
    assert whitelist.allows(allowed)
    assert not whitelist.allows(denied)


def test_ipv4_mapped_ipv6_source_is_treated_as_ipv4(tmp_path: Path) -> None:
    whitelist = load(tmp_path, "127.0.0.1", "10.0.0.0/8")
    assert whitelist.allows("::ffff:127.0.0.1")
    assert whitelist.allows("::ffff:10.9.8.7")
    assert not whitelist.allows("::ffff:192.0.2.1")


def test_ipv4_mapped_ipv6_entry_allows_its_ipv4_source(tmp_path: Path) -> None:
    whitelist = load(tmp_path, "::ffff:127.0.0.1")
    assert whitelist.allows("127.0.0.1")


@pytest.mark.parametrize("source", ["", "not-an-ip", "127.0.0.1.5", "localhost"])
def test_source_that_is_not_an_address_is_denied(tmp_path: Path, source: str) -> None:
    assert not load(tmp_path, "127.0.0.1", "0.0.0.0/0").allows(source)


def test_empty_list_allows_nobody(tmp_path: Path) -> None:
    assert not load(tmp_path).allows("127.0.0.1")


def test_shipped_whitelist_allows_loopback_only() -> None:
    shipped = Path(__file__).resolve().parent.parent / "whitelist.json"
    whitelist = Whitelist.load(shipped)
    assert whitelist.allows("127.0.0.1")
    assert whitelist.allows("::1")
    assert not whitelist.allows("10.1.2.3")


# Errors


def test_missing_file_is_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError, match="not found") as error:
        Whitelist.load(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "",
        '["127.0.0.1"]',
        "{}",
        '{"allowed_nodes": "127.0.0.1"}',
        '{"allowed_nodes": [1]}',
        '{"allowed_nodes": [["127.0.0.1"]]}',
        '{"allowed_nodes": null}',
        '{"allowed_nodes": ["127.0.0.1"], "alowed_nodes": ["10.0.0.0/8"]}',
    ],
    ids=[
        "bad-json",
        "empty",
        "top-level-list",
        "no-key",
        "string",
        "number",
        "nested",
        "null",
        "unknown-key",
    ],
)
def test_malformed_file_is_config_error_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "whitelist.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        Whitelist.load(path)
    assert str(path) in str(error.value)


def test_a_byte_order_mark_is_taken_as_editors_write_it(tmp_path: Path) -> None:
    path = tmp_path / "whitelist.json"
    path.write_bytes(b'\xef\xbb\xbf{"allowed_nodes": ["192.0.2.7"]}')
    assert Whitelist.load(path).allows("192.0.2.7")


def test_file_that_is_not_utf8_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "whitelist.json"
    path.write_bytes(b'{"allowed_nodes": ["\xff"]}')
    with pytest.raises(ConfigError, match="cannot read whitelist"):
        Whitelist.load(path)


@pytest.mark.parametrize(
    "entry", ["no-such-host.invalid", "no-such-host.invalid:8080", "", "   ", "localhost:port"]
)
def test_bad_entry_is_config_error_naming_file_and_entry(tmp_path: Path, entry: str) -> None:
    path = write_whitelist(tmp_path, {"allowed_nodes": ["127.0.0.1", entry]})
    with pytest.raises(ConfigError) as error:
        Whitelist.load(path)
    message = str(error.value)
    assert str(path) in message
    assert repr(entry) in message


def test_create_app_reports_a_bad_whitelist_as_config_error(tmp_path: Path) -> None:
    config = Config(white_list_file_path=str(tmp_path / "absent.json"), num_counters=1000)
    with pytest.raises(ConfigError, match=r"absent\.json"):
        create_app(Node(config))


def test_relative_whitelist_path_is_read_from_the_config_folder(tmp_path: Path) -> None:
    write_whitelist(tmp_path, {"allowed_nodes": ["192.0.2.7"]})
    config_path = tmp_path / "config.json"
    config_path.write_text('{"white_list_file_path": "whitelist.json", "num_counters": 1000}')
    app = create_app(Node(Config.load(config_path)))
    whitelist = layer(app, Guard).whitelist
    assert whitelist is not None
    assert whitelist.current.allows("192.0.2.7")


# The guard in front of the API


@pytest.fixture
def guarded_app(tmp_path: Path) -> ASGIApp:
    path = write_whitelist(tmp_path, {"allowed_nodes": ["127.0.0.1", "192.0.2.0/24"]})
    config = Config(node_id="guarded", white_list_file_path=str(path), num_counters=1000)
    return create_app(Node(config, clock=FakeClock()))


@pytest.fixture
def client_from(guarded_app: ASGIApp) -> ClientFrom:
    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=guarded_app, client=(address, 1234))
        return httpx.AsyncClient(transport=transport, base_url="http://node")

    return client


@pytest.fixture
async def outsider(client_from: ClientFrom) -> AsyncIterator[httpx.AsyncClient]:
    async with client_from("10.1.2.3") as http:
        yield http


def assert_forbidden(response: httpx.Response, address: str) -> None:
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": f"{address} is not in the whitelist"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/ping"), ("POST", "/set?key=k&ttl=0"), ("GET", "/nope"), ("PUT", "/get")],
)
async def test_source_outside_whitelist_gets_403(
    outsider: httpx.AsyncClient, method: str, path: str
) -> None:
    assert_forbidden(await outsider.request(method, path, content=b"v"), "10.1.2.3")


@pytest.mark.parametrize("address", ["127.0.0.1", "192.0.2.200", "::ffff:127.0.0.1"])
async def test_source_inside_whitelist_is_served(client_from: ClientFrom, address: str) -> None:
    async with client_from(address) as client:
        assert (await client.post("/set?key=k&ttl=0", content=b"v")).status_code == 200
        assert (await client.get("/get?key=k")).content == b"v"
        assert (await client.get("/ping")).json()["node_id"] == "guarded"


async def test_forbidden_write_is_not_applied(
    client_from: ClientFrom, outsider: httpx.AsyncClient
) -> None:
    assert_forbidden(await outsider.post("/set?key=k&ttl=0", content=b"v"), "10.1.2.3")
    async with client_from("127.0.0.1") as insider:
        assert (await insider.get("/get?key=k")).status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "127.0.0.1"},
        {"X-Real-IP": "127.0.0.1"},
        {"Forwarded": "for=127.0.0.1"},
        {"Host": "127.0.0.1"},
    ],
)
async def test_headers_do_not_grant_access(
    outsider: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert_forbidden(await outsider.get("/ping", headers=headers), "10.1.2.3")


async def test_ipv6_source_outside_whitelist_gets_403(client_from: ClientFrom) -> None:
    async with client_from("2001:db8::1") as client:
        assert_forbidden(await client.get("/ping"), "2001:db8::1")
