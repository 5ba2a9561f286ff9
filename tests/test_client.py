"""phoenix.client against real `phoenix serve` processes on 127.0.0.1.

One node with API keys serves the single-node tests, sync and async (the
async client under trio, and once under asyncio). A node that stays
recovering shows failover on 503 and the write concern's 504; three-node
clusters show replication through the client and failover when a node is
killed; hypercorn serving https shows the TLS options. The examples of
docs/client.md are run as written. Real time and real sockets: every wait is
bounded, and every process is killed in a `finally`; a node that does not
start in time fails the test with the nodes' stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import doctest
import json
import math
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trustme

from phoenix import client as client_module
from phoenix.client import (
    AsyncPhoenixClient,
    AuthError,
    NotFound,
    PhoenixClient,
    PhoenixClientError,
    RequestRejected,
    Unavailable,
    WriteNotAcknowledged,
)
from phoenix.errors import PhoenixError
from test_serve_process import hypercorn_command, phoenix_command

START_TIMEOUT = 15.0
CONVERGE_TIMEOUT = 5.0
POLL_INTERVAL = 0.05
HEARTBEAT = 0.5
READER = "reader-key-0123456789"
WRITER = "writer-key-0123456789"


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


class NodeProcesses:
    """Real node processes: started together, waited for with a deadline, killed together."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}

    def start(
        self,
        name: str,
        port: int,
        settings: dict[str, Any],
        command: list[str] | None = None,
        scheme: str = "http",
    ) -> str:
        """Start node `name` on `port` with these config.json settings; its URL.

        `command` replaces `phoenix serve` (it gets the config in $PHOENIX_CONFIG).
        """
        config = self.tmp_path / f"{name}.json"
        config.write_text(
            json.dumps(
                {"port": f"127.0.0.1:{port}", "node_id": name, "num_counters": 1000, **settings}
            )
        )
        with (self.tmp_path / f"{name}.log").open("wb") as log:
            self.processes[name] = subprocess.Popen(
                command or phoenix_command("serve", "--config", str(config)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=self.tmp_path,
                env={**os.environ, "PHOENIX_CONFIG": str(config)},
                # Its own process group, killed whole: hypercorn's CLI serves
                # from a worker process, which outlived its parent's SIGKILL.
                start_new_session=True,
            )
        self.urls[name] = f"{scheme}://127.0.0.1:{port}"
        return self.urls[name]

    def wait_ready(self, *names: str, ready: bool = True, **client_options: Any) -> None:
        """Until each node answers /cluster (and says it is ready, unless `ready` is False)."""
        deadline = time.monotonic() + START_TIMEOUT
        client_options.setdefault("headers", {"Authorization": f"Bearer {READER}"})
        with httpx.Client(timeout=2, **client_options) as http:
            for name in names:
                url = self.urls[name]
                while True:
                    if self.processes[name].poll() is not None:
                        pytest.fail(f"{name} exited early:\n{self.logs()}")
                    try:
                        answer = http.get(f"{url}/cluster")
                        if answer.status_code == 200 and (answer.json()["ready"] or not ready):
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        pytest.fail(f"{name} not ready within {START_TIMEOUT} s:\n{self.logs()}")
                    time.sleep(POLL_INTERVAL)

    def kill(self, name: str) -> None:
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def kill_all(self) -> None:
        for name in self.processes:
            self.kill(name)

    def logs(self) -> str:
        return "\n".join(
            f"----- {name} -----\n" + (self.tmp_path / f"{name}.log").read_text(errors="replace")
            for name in self.processes
        )


@contextmanager
def node_processes(tmp_path: Path) -> Iterator[NodeProcesses]:
    nodes = NodeProcesses(tmp_path)
    try:
        yield nodes
    finally:
        nodes.kill_all()


def start_cluster(nodes: NodeProcesses, names: tuple[str, ...]) -> list[str]:
    """Nodes that list every node's URL in `peers`, ready; their URLs, in order."""
    ports = free_ports(len(names))
    peers = [f"http://127.0.0.1:{port}" for port in ports]
    settings = {
        "peers": peers,
        "heart_beat_interval_in_seconds": HEARTBEAT,
        "max_retries_to_disabled_node": 2,
    }
    for name, port in zip(names, ports, strict=True):
        nodes.start(name, port, settings)
    nodes.wait_ready(*names)
    return peers


def readable_everywhere(urls: list[str], key: str, value: bytes) -> None:
    """Until `key` reads as `value` on each node, asked alone; fails after CONVERGE_TIMEOUT."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    for url in urls:
        with PhoenixClient(url) as one_node:
            while one_node.get(key) != value:
                if time.monotonic() > deadline:
                    pytest.fail(f"{key!r} not readable on {url} within {CONVERGE_TIMEOUT} s")
                time.sleep(POLL_INTERVAL)


@pytest.fixture(scope="module")
def node_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One node with a read-only and a read-write API key."""
    with node_processes(tmp_path_factory.mktemp("single")) as nodes:
        url = nodes.start(
            "single",
            free_ports(1)[0],
            {"read_only_keys": [READER], "read_write_keys": [WRITER], "max_key_length": 64},
        )
        nodes.wait_ready("single")
        yield url


@pytest.fixture
def cache(node_url: str) -> Iterator[PhoenixClient]:
    """A client of the single node, which starts empty."""
    with PhoenixClient(node_url, api_key=WRITER) as client:
        client.flush()
        yield client


# One node, the sync client.


def test_set_and_get_bytes_text_and_json(cache: PhoenixClient) -> None:
    assert cache.set("greeting", "hello", ttl=60) is True
    assert cache.get("greeting") == b"hello"
    assert cache.get_str("greeting") == "hello"
    assert cache.set("binary", b"\x00\xff\r\n") is True
    assert cache.get("binary") == b"\x00\xff\r\n"
    assert cache.set_json("user:1", {"name": "Zoë", "tags": [1, 2]}) is True
    assert cache.get_json("user:1") == {"name": "Zoë", "tags": [1, 2]}
    assert cache.get("missing") is None
    assert cache.get_str("missing") is None


def test_keys_with_query_characters_travel_intact(cache: PhoenixClient) -> None:
    key = "a+b c&d=e%20/é?#"
    cache.set(key, "odd")
    assert cache.get(key) == b"odd"
    assert list(cache.keys()) == [key]


def test_set_sends_the_content_type(cache: PhoenixClient, node_url: str) -> None:
    cache.set("page", "<p>hi</p>", content_type="text/html")
    cache.set("text", "plain")
    cache.set("raw", b"\x01")
    headers = {"Authorization": f"Bearer {READER}"}
    with httpx.Client(base_url=node_url, headers=headers, timeout=5) as http:
        assert http.get("/get?key=page").headers["content-type"] == "text/html"
        assert http.get("/get?key=text").headers["content-type"] == "text/plain; charset=utf-8"
        assert http.get("/get?key=raw").headers["content-type"] == "application/octet-stream"


def test_exists_ttl_and_missing_keys(cache: PhoenixClient) -> None:
    cache.set("session", "s", ttl=60)
    cache.set("forever", "f")
    assert cache.exists("session") is True
    assert cache.exists("missing") is False
    ttl = cache.ttl("session")
    assert ttl is not None
    assert 55 < ttl <= 60
    assert cache.ttl("forever") is None
    with pytest.raises(NotFound) as caught:
        cache.ttl("missing")
    assert isinstance(caught.value, KeyError)
    assert caught.value.key == "missing"
    assert str(caught.value) == "key not found: 'missing'"


def test_get_many_decodes_text_and_base64_and_leaves_out_missing(cache: PhoenixClient) -> None:
    assert cache.set_many({"text": "héllo", "binary": b"\x80\x00\xff"}, ttl=60) == []
    assert cache.get_many(["text", "binary", "missing"]) == {
        "text": "héllo".encode(),
        "binary": b"\x80\x00\xff",
    }
    assert cache.get_many([]) == {}
    # An empty key is not there, as the node answers /getKeys (get("") is a ValueError).
    assert cache.get_many(["text", ""]) == {"text": "héllo".encode()}


def test_delete_and_delete_pattern(cache: PhoenixClient) -> None:
    cache.set_many({"user:1": "a", "user:2": "b", "order:1": "c", "superuser": "d"})
    assert cache.delete("order:1") is True
    assert cache.delete("order:1") is False
    assert sorted(cache.delete_pattern("user:*")) == ["user:1", "user:2"]
    # Without * ? or [, a pattern matches the keys that contain it (the original's rule).
    assert cache.delete_pattern("user") == ["superuser"]
    assert list(cache.keys()) == []


def test_keys_follows_the_cursor_over_many_pages(
    cache: PhoenixClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "LIST_PAGE_SIZE", 2)
    names = [f"item:{n}" for n in range(30)] + ["other"]
    cache.set_many(dict.fromkeys(names, "v"))
    assert sorted(cache.keys()) == sorted(names)
    assert sorted(cache.keys("item:*")) == sorted(names[:30])
    assert sorted(cache.keys("item:1?")) == [f"item:1{n}" for n in range(10)]
    # The rule of delete_pattern: keys(p) lists what delete_pattern(p) removes.
    assert list(cache.keys("the")) == ["other"]


def test_flush_ping_and_cluster_status(cache: PhoenixClient) -> None:
    cache.set("k", "v")
    cache.flush()
    assert cache.get("k") is None
    assert cache.ping()["node_id"] == "single"
    status = cache.cluster_status()
    assert status["node_id"] == "single"
    assert status["ready"] is True


def test_api_keys_are_sent_and_refusals_are_auth_errors(node_url: str) -> None:
    with PhoenixClient(node_url, api_key=READER) as reader:
        assert reader.get("anything") is None
        with pytest.raises(AuthError) as caught:
            reader.set("k", "v")
        assert caught.value.status == 403
        assert caught.value.message == "this API key is read-only"
    with PhoenixClient(node_url) as anonymous, pytest.raises(AuthError) as caught:
        anonymous.get("k")
    assert caught.value.status == 401
    # A refused HEAD has no body: exists asks GET for the node's reason.
    with PhoenixClient(node_url) as anonymous, pytest.raises(AuthError) as by_exists:
        anonymous.exists("k")
    assert (by_exists.value.status, by_exists.value.message) == (401, caught.value.message)
    stranger = PhoenixClient(node_url, api_key="wrong-key-0123456789")
    with stranger, pytest.raises(AuthError, match="invalid API key"):
        stranger.get("k")


def test_other_refusals_carry_status_and_message(cache: PhoenixClient) -> None:
    with pytest.raises(RequestRejected) as caught:
        cache.set("k" * 65, "v")
    assert caught.value.status == 413
    assert caught.value.message == "key is longer than max_key_length (64 bytes)"
    with pytest.raises(RequestRejected) as caught:
        cache.set("k", "v", ttl=-1)
    assert caught.value.status == 400
    assert "ttl" in caught.value.message


def test_a_wrong_base_url_is_an_error_not_a_missing_key(
    cache: PhoenixClient, node_url: str
) -> None:
    cache.set("k", "v")
    with PhoenixClient(f"{node_url}/cache", api_key=WRITER) as misdirected:
        for read in (misdirected.get, misdirected.ttl):
            with pytest.raises(RequestRejected) as caught:
                read("k")
            assert caught.value.status == 404
            assert caught.value.message == "no such endpoint"


def test_the_exceptions_form_one_tree() -> None:
    for error in (Unavailable, AuthError, NotFound, RequestRejected, WriteNotAcknowledged):
        assert issubclass(error, PhoenixClientError)
    assert issubclass(PhoenixClientError, PhoenixError)


def test_no_node_answering_is_unavailable_naming_each_node() -> None:
    dead = [f"http://127.0.0.1:{port}" for port in free_ports(2)]
    with PhoenixClient(dead, timeout=2) as client, pytest.raises(Unavailable) as caught:
        client.set("k", "v")
    assert [url for url, _ in caught.value.failures] == dead
    assert "ConnectError" in str(caught.value)


@pytest.mark.parametrize(
    "urls", ["127.0.0.1:8080", "ftp://host", "http://", [], ["http://a:1", "http://a:1/"]]
)
def test_unusable_urls_are_refused_at_once(urls: str | list[str]) -> None:
    with pytest.raises(ValueError):
        PhoenixClient(urls)


# Arguments are checked before anything is sent: a bytes key went out as
# "b'k'", an int value as that many NUL bytes, a str given to get_many as
# one key per character.

VALUE_TYPES = "bytes, bytearray, memoryview or str (set_json stores other objects as JSON)"

# The methods that take one key first, with the arguments that follow it.
KEY_METHODS: list[tuple[str, tuple[Any, ...]]] = [
    ("get", ()),
    ("get_str", ()),
    ("get_json", ()),
    ("exists", ()),
    ("ttl", ()),
    ("set", ("v",)),
    ("set_json", ({},)),
    ("delete", ()),
]

# (method, arguments, exception, what its message says), for both clients.
BAD_ARGUMENTS: list[tuple[str, tuple[Any, ...], type[Exception], str]] = [
    *[
        (method, (b"k", *rest), TypeError, "key must be a str, not bytes")
        for method, rest in KEY_METHODS
    ],
    ("get", (5,), TypeError, "key must be a str, not int"),
    ("get_many", (["ok", b"k"],), TypeError, "keys[1] must be a str, not bytes"),
    ("get_many", ("ab",), TypeError, "keys must be an iterable of str, such as a list, not str"),
    ("set_many", ({b"k": "v"},), TypeError, "each key of mapping must be a str, not bytes"),
    (
        "set_many",
        ([("a", "b")],),
        TypeError,
        "mapping must be a mapping of key to value, such as a dict, not list",
    ),
    ("delete_pattern", (b"k*",), TypeError, "pattern must be a str, not bytes"),
    ("keys", (b"k*",), TypeError, "pattern must be a str, not bytes"),
    ("set", ("k", 5), TypeError, f"value must be {VALUE_TYPES}, not int"),
    ("set", ("k", None), TypeError, f"value must be {VALUE_TYPES}, not NoneType"),
    ("set", ("k", {}), TypeError, f"value must be {VALUE_TYPES}, not dict"),
    ("set_many", ({"a": "ok", "b": 5},), TypeError, f"mapping['b'] must be {VALUE_TYPES}, not int"),
    ("set", ("k", "v", 0, b"text/plain"), TypeError, "content_type must be a str, not bytes"),
    *[
        (
            method,
            ("\ud800", *rest),
            ValueError,
            f"{name} must be valid UTF-8, but holds a lone surrogate at position 0",
        )
        for method, rest, name in [
            ("get", (), "key"),
            ("exists", (), "key"),
            ("ttl", (), "key"),
            ("set", ("v",), "key"),
            ("delete", (), "key"),
            ("delete_pattern", (), "pattern"),
            ("keys", (), "pattern"),
        ]
    ],
    # An empty key: said here, not by the node as "parameter 'key' is required".
    *[(method, ("", *rest), ValueError, "key must not be empty") for method, rest in KEY_METHODS],
    ("set_many", ({"a": "v", "": "v"},), ValueError, "each key of mapping must not be empty"),
    # An empty pattern: keys(p) lists what delete_pattern(p) would remove, and
    # the node refuses to remove with an empty one, so neither takes it.
    ("keys", ("",), ValueError, "pattern must not be empty (keys() lists every key)"),
    ("delete_pattern", ("",), ValueError, "pattern must not be empty (flush() removes"),
    ("get_many", (["\ud800"],), ValueError, "keys[0] must be valid UTF-8"),
    ("set", ("k", "x\ud800"), ValueError, "value must be valid UTF-8, but holds a lone surrogate"),
    ("set_many", ({"k": "x\udfff"},), ValueError, "mapping['k'] must be valid UTF-8"),
    ("set_json", ("k", ["\ud800"]), ValueError, "value must be valid UTF-8"),
]


@pytest.fixture
def sent(cache: PhoenixClient, monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """The requests `cache` sends from now on (they still reach the node)."""
    requests: list[httpx.Request] = []
    send = cache._http.send

    def recording(request: httpx.Request, **options: Any) -> httpx.Response:
        requests.append(request)
        return send(request, **options)

    monkeypatch.setattr(cache._http, "send", recording)
    return requests


@pytest.mark.parametrize(("method", "arguments", "kind", "message"), BAD_ARGUMENTS)
def test_bad_arguments_are_refused_clearly_before_any_request(
    cache: PhoenixClient,
    sent: list[httpx.Request],
    method: str,
    arguments: tuple[Any, ...],
    kind: type[Exception],
    message: str,
) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        result = getattr(cache, method)(*arguments)
        if method == "keys":
            list(result)
    assert sent == []
    assert list(cache.keys()) == []


async def test_async_client_refuses_the_same_arguments_before_any_request(
    node_url: str, cache: PhoenixClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[httpx.Request] = []
    async with AsyncPhoenixClient(node_url, api_key=WRITER) as client:
        send = client._http.send

        async def recording(request: httpx.Request, **options: Any) -> httpx.Response:
            sent.append(request)
            return await send(request, **options)

        monkeypatch.setattr(client._http, "send", recording)
        for method, arguments, kind, message in BAD_ARGUMENTS:
            with pytest.raises(kind, match=re.escape(message)):
                if method == "keys":
                    [key async for key in client.keys(*arguments)]
                else:
                    await getattr(client, method)(*arguments)
    assert sent == []
    assert list(cache.keys()) == []


def test_every_documented_value_type_is_stored_as_its_bytes(cache: PhoenixClient) -> None:
    assert cache.set("bytearray", bytearray(b"\x00\x01"))
    assert cache.set("memoryview", memoryview(b"\xff\x00")[1:])
    assert cache.set_many({"many": memoryview(b"\x02"), "text": "é"}) == []
    assert cache.get_many(["bytearray", "memoryview", "many", "text"]) == {
        "bytearray": b"\x00\x01",
        "memoryview": b"\x00",
        "many": b"\x02",
        "text": "é".encode(),
    }


CONSTRUCTOR_ERRORS: list[tuple[dict[str, Any], type[Exception], str]] = [
    *[
        (
            {"timeout": timeout},
            ValueError,
            f"timeout must be a number of seconds above 0, at most 86400, got {timeout!r}",
        )
        for timeout in (math.inf, math.nan, 0, -1.5, 1e10, 86_401)
    ],
    ({"timeout": None}, TypeError, "timeout must be a number of seconds, not NoneType"),
    ({"timeout": "5"}, TypeError, "timeout must be a number of seconds, not str"),
    ({"timeout": True}, TypeError, "timeout must be a number of seconds, not bool"),
    # verify=None was taken for False: certificates went unchecked.
    (
        {"verify": None},
        TypeError,
        "verify must be True, False, a CA bundle's path or an ssl.SSLContext, not NoneType",
    ),
    (
        {"cert": 5},
        TypeError,
        "cert must be a PEM file's path or (certificate path, key path), not int",
    ),
    ({"api_key": b"key"}, TypeError, "api_key must be a str, not bytes"),
]


@pytest.mark.parametrize("client_class", [PhoenixClient, AsyncPhoenixClient])
@pytest.mark.parametrize(("options", "kind", "message"), CONSTRUCTOR_ERRORS)
def test_bad_options_are_refused_at_construction(
    client_class: Callable[..., Any], options: dict[str, Any], kind: type[Exception], message: str
) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        client_class("http://127.0.0.1:8080", **options)


def test_the_longest_timeout_is_a_day(node_url: str) -> None:
    with PhoenixClient(node_url, timeout=86_400, api_key=READER) as patient:
        assert patient.get("k") is None


def test_tls_files_that_cannot_be_used_are_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate")
    for options in ({"verify": missing}, {"cert": missing}, {"cert": (str(not_pem), missing)}):
        with pytest.raises(FileNotFoundError, match=re.escape(repr(missing))):
            PhoenixClient("https://127.0.0.1:8443", **options)
    for options in ({"verify": not_pem}, {"cert": str(not_pem)}):
        with pytest.raises(ssl.SSLError, match=re.escape(f"{str(not_pem)!r} cannot be used")):
            AsyncPhoenixClient("https://127.0.0.1:8443", **options)


def test_get_str_and_get_json_say_which_value_they_cannot_decode(cache: PhoenixClient) -> None:
    cache.set_many({"binary": b"\xff", "text": "not json", "deep": "[" * 100_000})
    # What bytes.decode and json.loads raise (ValueErrors), naming the key.
    with pytest.raises(UnicodeDecodeError, match="the value of 'binary' is not UTF-8 text"):
        cache.get_str("binary")
    with pytest.raises(UnicodeDecodeError, match="the value of 'binary' is not UTF-8 text"):
        cache.get_json("binary")
    with pytest.raises(json.JSONDecodeError, match="the value of 'text' is not JSON: Expecting"):
        cache.get_json("text")
    with pytest.raises(ValueError, match="the value of 'deep' is JSON nested too deeply"):
        cache.get_json("deep")


def test_a_closed_client_says_it_is_closed(node_url: str) -> None:
    with PhoenixClient(node_url, api_key=READER) as client:
        assert client.get("k") is None
    with pytest.raises(RuntimeError, match=re.escape("this PhoenixClient is closed")):
        client.get("k")
    with pytest.raises(RuntimeError, match=re.escape("this PhoenixClient is closed")):
        list(client.keys())


async def test_a_closed_async_client_says_it_is_closed(node_url: str) -> None:
    client = AsyncPhoenixClient(node_url, api_key=READER)
    await client.aclose()
    with pytest.raises(RuntimeError, match=re.escape("this AsyncPhoenixClient is closed")):
        await client.exists("k")


def test_exists_gives_the_nodes_reason_for_a_refused_key(cache: PhoenixClient) -> None:
    for read in (cache.get, cache.exists):
        with pytest.raises(RequestRejected) as caught:
            read("k" * 65)
        assert (caught.value.status, caught.value.message) == (
            413,
            "key is longer than max_key_length (64 bytes)",
        )


# One node, the async client: every method, under trio and under asyncio.


async def every_method(url: str) -> None:
    async with AsyncPhoenixClient(url, api_key=WRITER) as cache:
        await cache.flush()
        assert await cache.set("greeting", "hello", ttl=60) is True
        assert await cache.get("greeting") == b"hello"
        assert await cache.get_str("greeting") == "hello"
        assert await cache.set_json("doc", [1, "two"]) is True
        assert await cache.get_json("doc") == [1, "two"]
        await cache.set_many({"a:1": b"\xff", "a:2": "x"})
        assert await cache.get_many(["a:1", "a:2", "missing"]) == {"a:1": b"\xff", "a:2": b"x"}
        assert await cache.exists("a:1") is True
        assert await cache.exists("missing") is False
        ttl = await cache.ttl("greeting")
        assert ttl is not None and 55 < ttl <= 60
        assert await cache.ttl("doc") is None
        with pytest.raises(NotFound):
            await cache.ttl("missing")
        assert sorted([key async for key in cache.keys("a:*")]) == ["a:1", "a:2"]
        assert sorted(await cache.delete_pattern("a:*")) == ["a:1", "a:2"]
        assert await cache.delete("doc") is True
        assert await cache.delete("doc") is False
        assert await cache.get("doc") is None
        assert (await cache.ping())["node_id"] == "single"
        assert (await cache.cluster_status())["ready"] is True
        with pytest.raises(RequestRejected):
            await cache.set("k" * 65, "v")
        with pytest.raises(RequestRejected, match=re.escape("longer than max_key_length (64")):
            await cache.exists("k" * 65)
        await cache.flush()
        every_key = cache.keys()
        assert [key async for key in every_key] == []


async def test_async_client_every_method_under_trio(node_url: str) -> None:
    with trio.fail_after(20):
        await every_method(node_url)


def test_async_client_every_method_under_asyncio(node_url: str) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(every_method(node_url), timeout=20)

    asyncio.run(bounded())


async def test_async_client_unavailable_under_trio() -> None:
    with trio.fail_after(10):
        async with AsyncPhoenixClient(f"http://127.0.0.1:{free_ports(1)[0]}") as client:
            with pytest.raises(Unavailable):
                await client.get("k")


# Which node a call tries first: the pure routing core.


def test_reads_rotate_writes_keep_order_and_failed_nodes_go_last() -> None:
    urls = ["http://a:1", "http://b:1", "http://c:1"]
    with PhoenixClient(urls) as client:
        router = client._router
        read = client_module._call_get("k")
        write = client_module._call_set("k", "v", 0, None, None)
        assert [router.order(read)[0] for _ in range(4)] == [*urls, urls[0]]
        assert router.order(write) == urls
        router.failed("http://a:1")
        assert router.order(write) == ["http://b:1", "http://c:1", "http://a:1"]
        assert router.order(read)[-1] == "http://a:1"
        router.answered("http://a:1")
        assert router.order(write) == urls


# A plain node (no keys, default limits), and one still recovering its data
# (503 on reads) from a peer that never answers.


@pytest.fixture(scope="module")
def plain_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with node_processes(tmp_path_factory.mktemp("plain")) as nodes:
        url = nodes.start("plain", free_ports(1)[0], {})
        nodes.wait_ready("plain")
        yield url


@pytest.fixture(scope="module")
def recovering_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A node that stays recovering (for 15 s from its start), with write_timeout 1 s."""
    own, dead = free_ports(2)
    with node_processes(tmp_path_factory.mktemp("recovering")) as nodes:
        url = nodes.start(
            "recovering",
            own,
            {
                "peers": [f"http://127.0.0.1:{own}", f"http://127.0.0.1:{dead}"],
                "heart_beat_interval_in_seconds": 5,
                "max_retries_to_disabled_node": 3,
                "write_timeout": 1,
            },
        )
        nodes.wait_ready("recovering", ready=False)
        # Until a node has recognised its own entry in peers, it pushes writes
        # to itself and counts its own acknowledgement towards sync=N.
        knows_itself(url)
        yield url


def knows_itself(url: str) -> None:
    """Until the node at `url` has marked its own entry of peers (the first) as `self`."""
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2) as http:
        while http.get(f"{url}/cluster").json()["peers"][0]["state"] != "self":
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not recognise itself in peers within {START_TIMEOUT} s")
            time.sleep(POLL_INTERVAL)


def test_reads_fail_over_from_a_recovering_node(recovering_url: str, plain_url: str) -> None:
    with PhoenixClient(plain_url) as plain:
        plain.set("k", "from the plain node")
    with PhoenixClient([recovering_url, plain_url]) as client:
        for _ in range(4):
            assert client.get("k") == b"from the plain node"
    with PhoenixClient(recovering_url) as alone, pytest.raises(Unavailable) as caught:
        alone.get("k")
    assert "HTTP 503: node is recovering its data" in str(caught.value)


def test_a_write_concern_timeout_is_not_sent_elsewhere(recovering_url: str, plain_url: str) -> None:
    with PhoenixClient([recovering_url, plain_url]) as client:
        with pytest.raises(WriteNotAcknowledged) as caught:
            client.set("concern", "v", sync=1)
        assert caught.value.acknowledged == []
        assert len(caught.value.missing) == 1
        assert client.set("concern", "v") is True
    with PhoenixClient(plain_url) as plain:
        assert plain.get("concern") is None


# Three nodes.


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    with node_processes(tmp_path_factory.mktemp("cluster")) as nodes:
        yield start_cluster(nodes, ("n1", "n2", "n3"))


def test_a_write_through_the_client_is_readable_on_every_node(cluster: list[str]) -> None:
    with PhoenixClient(cluster) as client:
        assert client.set("replicated", b"\x00everywhere", ttl=60)
    readable_everywhere(cluster, "replicated", b"\x00everywhere")


async def test_async_client_spreads_reads_over_the_cluster(cluster: list[str]) -> None:
    with trio.fail_after(15):
        async with AsyncPhoenixClient(cluster) as client:
            await client.set("spread", "v")
            for url in cluster:
                async with AsyncPhoenixClient(url) as one_node:
                    while await one_node.get("spread") is None:
                        await trio.sleep(POLL_INTERVAL)
            assert [await client.get("spread") for _ in range(6)] == [b"v"] * 6


def test_the_client_keeps_serving_when_a_node_is_killed(tmp_path: Path) -> None:
    with node_processes(tmp_path) as nodes:
        urls = start_cluster(nodes, ("f1", "f2", "f3"))
        with PhoenixClient(urls, timeout=2) as client:
            client.set_many({f"before:{n}": f"b{n}" for n in range(5)})
            readable_everywhere(urls, "before:4", b"b4")
            # f1 is the first node: every write and a third of the reads go to it.
            nodes.kill("f1")
            for n in range(10):
                assert client.get(f"before:{n % 5}") == f"b{n % 5}".encode()
                assert client.set(f"after:{n}", f"a{n}") is True
                assert client.exists(f"before:{n % 5}") is True
            assert sorted(client.keys("before:*")) == [f"before:{n}" for n in range(5)]
            readable_everywhere(urls[1:], "after:9", b"a9")


# TLS: a node served over https by hypercorn.


def test_https_node_with_a_ca_bundle(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    ca_path, cert_path = tmp_path / "ca.pem", tmp_path / "cert.pem"
    authority.cert_pem.write_to_path(str(ca_path))
    certificate.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    port = free_ports(1)[0]
    command = hypercorn_command(
        "--worker-class", "trio", "--bind", f"127.0.0.1:{port}",
        "--certfile", str(cert_path), "--keyfile", str(cert_path), "phoenix.app:app",
    )  # fmt: skip
    with node_processes(tmp_path) as nodes:
        url = nodes.start("tls", port, {"port": "127.0.0.1:1"}, command=command, scheme="https")
        trusting = ssl.create_default_context()
        authority.configure_trust(trusting)
        nodes.wait_ready("tls", verify=trusting)
        with PhoenixClient(url, verify=str(ca_path)) as client:
            client.set("secret", "over tls")
            assert client.get("secret") == b"over tls"
        # A pathlib.Path is a path too (it used to be taken for True: the system's CAs).
        with PhoenixClient(url, verify=ca_path) as client:
            assert client.get("secret") == b"over tls"
        with PhoenixClient(url, verify=False) as unverified:
            assert unverified.get("secret") == b"over tls"
        with PhoenixClient(url) as system_cas, pytest.raises(Unavailable, match="CERTIFICATE"):
            system_cas.get("secret")


# The examples of docs/client.md, run as they are written.

DOCS = Path(__file__).parent.parent / "docs" / "client.md"


def test_the_examples_of_docs_client_md(
    plain_url: str, cluster: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = DOCS.read_text(encoding="utf-8").replace("http://127.0.0.1:8080", plain_url)
    for number, url in enumerate(cluster, start=1):
        text = text.replace(f"http://10.0.0.{number}:8080", url)
    sessions = doctest.DocTestParser().get_doctest(text, {}, "docs/client.md", str(DOCS), 0)
    assert len(sessions.examples) > 20
    runner = doctest.DocTestRunner(verbose=False)
    runner.run(sessions, out=print)
    scripts = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(scripts) == 2
    for script in scripts:
        exec(compile(script, str(DOCS), "exec"), {"__name__": "docs_example"})
    output = capsys.readouterr().out
    assert runner.failures == 0, output
    assert output == "greeting\n"
