"""API keys, the cluster key, trusted proxies, whitelist reloads, protected mode."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import cast

import httpx
import pytest
import trio

from phoenix.app import create_app
from phoenix.clock import FakeClock
from phoenix.config import Config
from phoenix.errors import ConfigError
from phoenix.limits import ASGIApp
from phoenix.node import Node
from phoenix.security import WhitelistFile, protection_problem
from phoenix.server import build_listeners

READER = "r" * 20
WRITER = "w" * 20
CLUSTER = "c" * 20


def client_of(app: ASGIApp, address: str = "127.0.0.1", **headers: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://node", headers=headers)


@pytest.fixture
def keyed_app() -> ASGIApp:
    config = Config(
        num_counters=1000,
        read_only_keys=(READER,),
        read_write_keys=(WRITER,),
        cluster_key=CLUSTER,
    )
    return create_app(Node(config, clock=FakeClock()))


async def test_request_without_a_key_is_401(keyed_app: ASGIApp) -> None:
    async with client_of(keyed_app) as client:
        response = await client.get("/get", params={"key": "k"})
    assert response.status_code == 401
    assert "API key is required" in response.json()["error"]


async def test_wrong_key_is_401(keyed_app: ASGIApp) -> None:
    async with client_of(keyed_app, Authorization="Bearer " + "x" * 20) as client:
        assert (await client.get("/get", params={"key": "k"})).status_code == 401


async def test_read_only_key_reads_but_cannot_write(keyed_app: ASGIApp) -> None:
    async with client_of(keyed_app, Authorization=f"Bearer {READER}") as client:
        assert (await client.get("/get", params={"key": "k"})).status_code == 404
        response = await client.post("/set", params={"key": "k", "ttl": 0}, content=b"v")
        assert response.status_code == 403
        assert response.json() == {"error": "this API key is read-only"}
        for path in ("/remove?key=k", "/removeallkeys?key=k"):
            assert (await client.delete(path)).status_code == 403
        assert (await client.post("/flush")).status_code == 403


async def test_read_write_key_does_everything_and_x_api_key_works_too(keyed_app: ASGIApp) -> None:
    async with client_of(keyed_app, **{"X-API-Key": WRITER}) as client:
        response = await client.post("/set", params={"key": "k", "ttl": 0}, content=b"v")
        assert response.status_code == 200
        assert (await client.get("/get", params={"key": "k"})).content == b"v"


async def test_client_keys_without_a_cluster_key_close_the_peer_routes() -> None:
    # They were open to anyone: /internal/reconcile handed over every value
    # without a key, and /internal/apply took any write, flushes included.
    app = create_app(Node(Config(num_counters=1000, read_write_keys=(WRITER,)), clock=FakeClock()))
    everything = {"buckets": {str(bucket): [] for bucket in range(16384)}}
    flush = {"ops": [{"op": "flush", "version": [(FakeClock().now + 1) << 16, "stranger"]}]}
    for headers in ({}, {"Authorization": f"Bearer {WRITER}"}):
        async with client_of(app, **headers) as client:
            assert (await client.post("/internal/reconcile", json=everything)).status_code == 401
            assert (await client.post("/internal/apply", json=flush)).status_code == 401
            assert (await client.get("/internal/ping")).status_code == 401


async def test_client_keys_do_not_open_the_peer_routes(keyed_app: ASGIApp) -> None:
    async with client_of(keyed_app, Authorization=f"Bearer {WRITER}") as client:
        response = await client.get("/internal/digests")
    assert response.status_code == 401
    async with client_of(keyed_app, Authorization=f"Bearer {CLUSTER}") as client:
        assert (await client.get("/internal/digests")).status_code == 200
        # ...and the cluster key is not a client key.
        assert (await client.get("/get", params={"key": "k"})).status_code == 401


async def test_refused_request_changes_nothing(keyed_app: ASGIApp) -> None:
    async with client_of(keyed_app, Authorization=f"Bearer {READER}") as reader:
        await reader.post("/set", params={"key": "k", "ttl": 0}, content=b"v")
        assert (await reader.get("/get", params={"key": "k"})).status_code == 404


async def answer(
    app: ASGIApp, method: str, path: str, key: str, root_path: str = ""
) -> tuple[int, bytes]:
    """The status and body of one request whose path is given exactly as the server saw it."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"key=k",
        "root_path": root_path,
        "headers": [(b"host", b"node"), (b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("node", 80),
    }
    answered = trio.Event()
    status, body = 0, b""
    requested = False

    async def receive() -> dict[str, object]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"v", "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = cast(int, message["status"])
        elif message["type"] == "http.response.body":
            body += cast(bytes, message.get("body", b""))
            if not message.get("more_body", False):
                answered.set()

    with trio.fail_after(5):
        await app(scope, receive, send)
    return status, body


@pytest.mark.parametrize(
    ("method", "path", "root_path"),
    [
        ("POST", "//flush", ""),
        ("POST", "http://node/flush", ""),
        ("POST", "flush", ""),
        ("POST", "http:flush", ""),
        ("DELETE", "///remove", ""),
        ("DELETE", "http://node//removeallkeys", ""),
        ("POST", "//set", ""),
        # Served below a root_path, as `hypercorn --root-path /cache` does.
        ("POST", "/cache/flush", "/cache"),
        ("POST", "/cacheflush", "/cache"),
        ("POST", "/cache//flush", "/cache"),
        ("POST", "http://node/cache/flush", "/cache"),
    ],
)
async def test_a_path_written_otherwise_gets_the_same_checks(
    keyed_app: ASGIApp, method: str, path: str, root_path: str
) -> None:
    async with client_of(keyed_app, Authorization=f"Bearer {WRITER}") as writer:
        await writer.post("/set", params={"key": "k", "ttl": 0}, content=b"kept")
    status, body = await answer(keyed_app, method, path, READER, root_path)
    assert (status, json.loads(body)) == (403, {"error": "this API key is read-only"})
    async with client_of(keyed_app, Authorization=f"Bearer {READER}") as reader:
        assert (await reader.get("/get", params={"key": "k"})).content == b"kept"
    # The peer routes too, and a path so written still reaches its route.
    peer_path = root_path + "//internal/digests"
    assert (await answer(keyed_app, "GET", peer_path, WRITER, root_path))[0] == 401
    assert (await answer(keyed_app, "GET", peer_path, CLUSTER, root_path))[0] == 200
    get_path = root_path + "//get"
    assert await answer(keyed_app, "GET", get_path, READER, root_path) == (200, b"kept")


def test_keys_come_from_environment_and_files_and_stay_out_of_repr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOENIX_TEST_KEY", WRITER)
    (tmp_path / "reader.key").write_text(READER + "\n")
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "read_write_keys": ["env:PHOENIX_TEST_KEY"],
                "read_only_keys": [f"file:{tmp_path / 'reader.key'}"],
                "cluster_key": CLUSTER,
            }
        )
    )
    config = Config.load(path)
    assert config.read_write_keys == (WRITER,)
    assert config.read_only_keys == (READER,)
    for secret in (READER, WRITER, CLUSTER):
        assert secret not in repr(config)


def test_a_relative_key_file_is_found_from_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the whitelist and the TLS files are; it was read from the working folder.
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "writer.key").write_text(WRITER)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"read_write_keys": ["file:keys/writer.key"]}))
    monkeypatch.chdir("/")
    assert Config.load(path).read_write_keys == (WRITER,)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"read_write_keys": ["short"]}, "at least 16 characters"),
        # A key travels in a header, which carries printable ASCII: over HTTP
        # this one could never match.
        ({"read_only_keys": ["schlüssel-für-leser"]}, "printable ASCII"),
        ({"cluster_key": "tab\tin-the-middle-of-it"}, "printable ASCII"),
        ({"read_write_keys": ["env:PHOENIX_NO_SUCH_VARIABLE"]}, "is not set"),
        ({"cluster_key": "file:/no/such/file"}, "cannot read key file '/no/such/file'"),
        ({"certfile": "cert.pem"}, "'certfile' and 'keyfile' go together"),
        ({"certfile": "cert.pem", "keyfile": "cert.pem"}, "'certfile': no such file"),
        ({"require_client_cert": True}, "needs 'ca_certs'"),
        (
            {"read_write_keys": [WRITER], "peers": ["http://10.0.0.2:8080"]},
            "'peers' needs 'cluster_key' when client keys are set",
        ),
        # Files that are there but cannot be used: named, not ssl's "PEM lib" alone.
        ({"certfile": "config.json", "keyfile": "config.json"}, "'certfile' and 'keyfile' must"),
        ({"ca_certs": "config.json"}, "'ca_certs' must hold CA certificates"),
        ({"trusted_proxies": ["not-an-address"]}, "'trusted_proxies'"),
    ],
)
def test_bad_security_settings_are_config_errors(
    tmp_path: Path, settings: dict[str, object], expected: str
) -> None:
    os.environ.pop("PHOENIX_NO_SUCH_VARIABLE", None)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(settings))
    with pytest.raises(ConfigError, match=expected):
        Config.load(path)


# Trusted proxies


def write_whitelist(tmp_path: Path, entries: list[str]) -> Path:
    path = tmp_path / "whitelist.json"
    path.write_text(json.dumps({"allowed_nodes": entries}))
    return path


async def test_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    whitelist = write_whitelist(tmp_path, ["192.0.2.10"])
    config = Config(
        num_counters=1000, white_list_file_path=str(whitelist), trusted_proxies=("10.0.0.1",)
    )
    app = create_app(Node(config, clock=FakeClock()))
    forwarded = {"X-Forwarded-For": "192.0.2.10"}
    async with client_of(app, "10.0.0.1", **forwarded) as via_proxy:
        assert (await via_proxy.get("/ping")).status_code == 200
    async with client_of(app, "10.0.0.2", **forwarded) as elsewhere:
        assert (await elsewhere.get("/ping")).status_code == 403
    # A client cannot prepend its way in: the rightmost untrusted hop counts.
    spoofed = {"X-Forwarded-For": "192.0.2.10, 203.0.113.5"}
    async with client_of(app, "10.0.0.1", **spoofed) as via_proxy:
        assert (await via_proxy.get("/ping")).status_code == 403


# Whitelist reloads


def test_whitelist_reloads_on_change_and_keeps_the_last_good_list(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_whitelist(tmp_path, ["192.0.2.1"])
    whitelist = WhitelistFile(path)
    assert whitelist.current.allows("192.0.2.1")
    assert not whitelist.reload_if_changed()

    write_whitelist(tmp_path, ["192.0.2.1", "198.51.100.0/24"])
    os.utime(path, ns=(1, 1))  # a different mtime, whatever the file system's resolution
    assert whitelist.reload_if_changed()
    assert whitelist.current.allows("198.51.100.7")

    caplog.set_level(logging.ERROR, logger="phoenix.security")
    path.write_text("{broken")
    os.utime(path, ns=(2, 2))
    assert not whitelist.reload_if_changed()
    os.utime(path, ns=(3, 3))
    assert not whitelist.reload_if_changed()
    assert whitelist.current.allows("198.51.100.7")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "keeping the last good one" in errors[0].getMessage()


@pytest.mark.parametrize("resp", [True, False], ids=["with-resp", "http-only"])
async def test_a_whitelist_change_is_loaded_and_logged_once_for_both_listeners(
    tmp_path: Path,
    free_port: int,
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
    resp: bool,
) -> None:
    path = write_whitelist(tmp_path, ["127.0.0.1"])
    config = Config(
        num_counters=1000, white_list_file_path=str(path), resp_port=free_port if resp else 0
    )
    node = Node(config, clock=FakeClock())
    app, resp_server = build_listeners(node)
    caplog.set_level(logging.INFO, logger="phoenix.security")
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        if resp_server is not None:
            await nursery.start(resp_server.serve)
        path.write_text("{broken")
        os.utime(path, ns=(1, 1))
        await trio.sleep(3)
        write_whitelist(tmp_path, ["192.0.2.1"])
        os.utime(path, ns=(2, 2))
        await trio.sleep(3)
        async with client_of(app, "192.0.2.1") as allowed:
            assert (await allowed.get("/ping")).status_code == 200
        if resp_server is not None:
            assert resp_server.whitelist is not None
            assert resp_server.whitelist.current.allows("192.0.2.1")
        nursery.cancel_scope.cancel()
    messages = [r.getMessage() for r in caplog.records if r.name == "phoenix.security"]
    assert len([m for m in messages if "keeping the last good one" in m]) == 1, messages
    assert len([m for m in messages if "whitelist reloaded" in m]) == 1, messages


# Protected mode


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({"port": "127.0.0.1:8080"}, False),
        ({"port": "[::1]:8080"}, False),
        ({"port": "localhost:8080"}, False),
        ({"port": ":8080"}, True),
        ({"port": "0.0.0.0:8080"}, True),
        ({"port": ":8080", "white_list_file_path": "whitelist.json"}, False),
        ({"port": ":8080", "read_write_keys": (WRITER,)}, False),
        ({"port": ":8080", "protected_mode": False}, False),
    ],
)
def test_protected_mode_refuses_an_open_node_beyond_loopback(
    settings: dict[str, object], refused: bool
) -> None:
    problem = protection_problem(Config(**settings))  # type: ignore[arg-type]
    assert (problem is not None) == refused
    if problem:
        assert "protected mode" in problem and "--unprotected" in problem
