"""A Python client for PhoenixCache: sync and async, spread over several nodes.

    from phoenix.client import PhoenixClient

    with PhoenixClient(["http://127.0.0.1:8080", "http://127.0.0.1:8081"]) as cache:
        cache.set("greeting", "hello", ttl=60)
        cache.get("greeting")  # b"hello"

`AsyncPhoenixClient` has the same methods as coroutines (`keys` is an async
iterator) and runs under trio and asyncio alike. docs/client.md has more
examples.

Nodes: reads are spread round-robin over the nodes; writes, `ping` and
`cluster_status` go to the first node in the given order. A call that meets
a connection error, a timeout or a 5xx answer (a node still recovering its
data answers 503) goes on to the next node, trying each node at most once, so
a call takes at most `len(urls) * timeout` seconds. A node that failed is
tried after the others for a few seconds (`DOWN_FOR`). A write that is sent
again to another node is applied again: sets, removes and flushes give the
same result when repeated, but the answer of a repeated `delete` may say
False. Nodes replicate asynchronously, so a read right after a write may not
see it on another node yet; `sync=N` on a write waits until N other nodes
have applied it.

What the node or the network does raises a PhoenixClientError (phoenix.errors
has the tree; the classes can be imported from here too): Unavailable when no
node answered, AuthError, NotFound (from `ttl`), RequestRejected,
WriteNotAcknowledged. Arguments are checked before any request: a wrong type
raises TypeError, a bad value ValueError (an empty key or pattern, a key that
UTF-8 cannot carry, a timeout that is not a number of seconds above 0). A value that `get_str` or
`get_json` cannot decode raises what `bytes.decode` and `json.loads` would
(UnicodeDecodeError, json.JSONDecodeError: ValueErrors), naming the key; a
call on a closed client raises RuntimeError.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import reprlib
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

import attrs
import httpx

from phoenix import __version__
from phoenix.errors import (
    KEY_NOT_FOUND,
    AuthError,
    NotFound,
    PhoenixClientError,
    RequestRejected,
    Unavailable,
    WriteNotAcknowledged,
    header_text,
)

__all__ = [
    "AsyncPhoenixClient",
    "AuthError",
    "NotFound",
    "PhoenixClient",
    "PhoenixClientError",
    "RequestRejected",
    "Unavailable",
    "WriteNotAcknowledged",
]

DEFAULT_URL = "http://127.0.0.1:8080"
# Seconds for each request: to connect, to send, to receive the answer.
DEFAULT_TIMEOUT = 5.0
# The longest timeout, a day, as the CLI's --timeout: httpcore's sync sockets
# overflow on some longer ones (inf, 1e10) and misread 2**31 as a timeout.
MAX_TIMEOUT = 86_400
# Seconds a node that failed is tried only after the others.
DOWN_FOR = 5.0
# Entries per /list page when walking the keys.
LIST_PAGE_SIZE = 1000

T = TypeVar("T")
U = TypeVar("U")

# What `set` accepts: bytes-like values as they are, str as UTF-8.
Value = bytes | bytearray | memoryview | str
# A file's path, as ssl takes it.
FilePath = str | os.PathLike[str]
# Where the certificate authorities come from: True for the system's, False to
# not verify, a CA bundle's path, or a context built by the caller.
Verify = ssl.SSLContext | FilePath | bool
# A client certificate: a PEM file holding the certificate and the key, or both paths.
Cert = FilePath | tuple[FilePath, FilePath]


# The pure core: what each method sends and how it reads the answer, and
# which node to try next. The two client classes only send and receive.


# Checking arguments, before anything is sent: httpx and bytes() take almost
# anything (a bytes key went out as "b'k'", set("k", 5) stored five NUL bytes).


def _text(text: object, argument: str) -> str:
    """`text`, if it is a str that UTF-8 can carry: a key, a pattern, a str value."""
    if not isinstance(text, str):
        raise TypeError(f"{argument} must be a str, not {type(text).__name__}")
    if not text.isascii():
        _utf8(text, argument)
    return text


def _key(key: object, argument: str = "key") -> str:
    """`key`, if it is a str that UTF-8 can carry and not empty: the node has
    no empty key, and refused one as "parameter 'key' is required"."""
    text = _text(key, argument)
    if not text:
        raise ValueError(f"{argument} must not be empty")
    return text


def _pattern(pattern: object, instead: str) -> str:
    """`pattern`, if it is a str that UTF-8 can carry and not empty. An empty
    one would match every key, and the node refuses to remove with it, so
    `keys` refuses it too: `keys(p)` lists what `delete_pattern(p)` removes.
    `instead` says how to reach every key."""
    text = _text(pattern, "pattern")
    if not text:
        raise ValueError(f"pattern must not be empty ({instead})")
    return text


def _utf8(text: str, argument: str) -> bytes:
    """`text` as UTF-8; ValueError for a lone surrogate, which UTF-8 cannot
    carry (the node refuses such a key: "key must be valid UTF-8")."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{argument} must be valid UTF-8, but holds a lone surrogate at position "
            f"{error.start}: {reprlib.repr(text)}"
        ) from None


def _value(value: object, argument: str) -> bytes | str:
    """`value` as it is sent: bytes as they are, a str as UTF-8 text."""
    if isinstance(value, str):
        return _text(value, argument)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(
        f"{argument} must be bytes, bytearray, memoryview or str (set_json stores other "
        f"objects as JSON), not {type(value).__name__}"
    )


@attrs.frozen
class _Call(Generic[T]):
    """One API call before a node is chosen: the request, and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str] = attrs.field(factory=dict)
    content: bytes | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    # Reads go round-robin; writes (and ping, cluster) to the first node in order.
    round_robin: bool = False
    # The node to try first, if it is healthy: a key listing stays on one node.
    prefer: str | None = None

    def then(self, convert: Callable[[T], U]) -> _Call[U]:
        """The same call, with `convert` applied to what it returns."""
        parse = self.parse
        return _Call(
            self.method,
            self.path,
            lambda response: convert(parse(response)),
            self.params,
            self.content,
            self.headers,
            self.round_robin,
            self.prefer,
        )


def _call_get(key: str) -> _Call[bytes | None]:
    params = {"key": _key(key)}
    return _Call("GET", "/get", _parse_value, params=params, round_robin=True)


def _call_get_str(key: str) -> _Call[str | None]:
    def decode(value: bytes | None) -> str | None:
        if value is None:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _not_text(error, key) from None

    return _call_get(key).then(decode)


def _call_get_json(key: str) -> _Call[Any]:
    def decode(value: bytes | None) -> Any:
        if value is None:
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            message = f"the value of {key!r} is not JSON: {error.msg}"
            raise json.JSONDecodeError(message, error.doc, error.pos) from None
        except UnicodeDecodeError as error:
            raise _not_text(error, key) from None
        except RecursionError:
            raise ValueError(f"the value of {key!r} is JSON nested too deeply to read") from None

    return _call_get(key).then(decode)


def _not_text(error: UnicodeDecodeError, key: str) -> UnicodeDecodeError:
    """`error`, still what bytes.decode raises, saying whose value it is."""
    reason = f"{error.reason} (the value of {key!r} is not UTF-8 text; get returns its bytes)"
    return UnicodeDecodeError(error.encoding, error.object, error.start, error.end, reason)


def _call_exists(key: str) -> _Call[bool]:
    # HEAD: the node answers the status of /get without sending the value.
    params = {"key": _key(key)}
    return _Call("HEAD", "/get", _parse_found, params=params, round_robin=True)


def _call_ttl(key: str) -> _Call[float | None]:
    def parse(response: httpx.Response) -> float | None:
        if _key_missing(response):
            raise NotFound(key)
        expires_in = _parse_json(response)["expires_in"]
        return None if expires_in is None else float(expires_in)

    params = {"key": _key(key)}
    return _Call("GET", "/trygetwithexpire", parse, params=params, round_robin=True)


def _call_get_many(keys: Iterable[str]) -> _Call[dict[str, bytes]]:
    def parse(response: httpx.Response) -> dict[str, bytes]:
        found: dict[str, dict[str, Any]] = _parse_json(response)
        return {key: _decode_json_value(fields) for key, fields in found.items()}

    # A str is an iterable too: get_many("ab") would ask for "a" and "b".
    if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
        raise TypeError(
            f"keys must be an iterable of str, such as a list, not {type(keys).__name__}"
        )
    body = json.dumps([_text(key, f"keys[{n}]") for n, key in enumerate(keys)]).encode()
    headers = {"Content-Type": "application/json"}
    return _Call("POST", "/getKeys", parse, content=body, headers=headers, round_robin=True)


def _call_set(
    key: str, value: Value, ttl: int, content_type: str | None, sync: int | None
) -> _Call[bool]:
    key = _key(key)
    checked = _value(value, "value")
    if isinstance(checked, str):
        content = checked.encode("utf-8")
        content_type = content_type or "text/plain; charset=utf-8"
    else:
        content = checked
    if content_type is not None and not header_text(_text(content_type, "content_type")):
        raise ValueError("a content type must be printable ASCII (it is sent in a header)")
    headers = {} if content_type is None else {"Content-Type": content_type}
    params = _with_sync({"key": key, "ttl": str(ttl)}, sync)
    return _Call(
        "POST", "/set", _field("stored", bool), params=params, content=content, headers=headers
    )


def _call_set_many(mapping: Mapping[str, Value], ttl: int, sync: int | None) -> _Call[list[str]]:
    if not isinstance(mapping, Mapping):
        raise TypeError(
            "mapping must be a mapping of key to value, such as a dict, "
            f"not {type(mapping).__name__}"
        )
    values = {
        _key(key, "each key of mapping"): _value(value, f"mapping[{key!r}]")
        for key, value in mapping.items()
    }
    body = {
        key: value
        if isinstance(value, str)
        else {"value": base64.b64encode(value).decode("ascii"), "encoding": "base64"}
        for key, value in values.items()
    }
    params = _with_sync({"ttl": str(ttl)}, sync)
    headers = {"Content-Type": "application/json"}
    content = _encode_json(body)
    return _Call(
        "POST", "/setKeys", _field("refused", list), params=params, content=content, headers=headers
    )


def _call_delete(key: str, sync: int | None) -> _Call[bool]:
    params = _with_sync({"key": _key(key)}, sync)
    return _Call("DELETE", "/remove", _field("removed", bool), params=params)


def _call_delete_pattern(pattern: str, sync: int | None) -> _Call[list[str]]:
    def parse(response: httpx.Response) -> list[str]:
        return [str(key) for key in _parse_json(response)]

    params = _with_sync({"key": _pattern(pattern, "flush() removes every key")}, sync)
    return _Call("DELETE", "/removeallkeys", parse, params=params)


def _call_flush(sync: int | None) -> _Call[None]:
    return _Call("POST", "/flush", _parse_nothing, params=_with_sync({}, sync))


def _call_ping() -> _Call[dict[str, Any]]:
    return _Call("GET", "/ping", _parse_object)


def _call_cluster_status() -> _Call[dict[str, Any]]:
    return _Call("GET", "/cluster", _parse_object)


def _with_sync(params: dict[str, str], sync: int | None) -> dict[str, str]:
    if sync is not None:
        params["sync"] = str(sync)
    return params


def _encode_json(value: Any) -> bytes:
    return _utf8(json.dumps(value, ensure_ascii=False, separators=(",", ":")), "value")


@attrs.frozen
class _Page:
    keys: list[str]
    next_cursor: int
    node: str


class _Listing:
    """A walk over /list, page by page, following X-Next-Cursor until it says 0.

    Cursors are bucket numbers, the same on every node, so a page may come
    from another node when one fails; otherwise the walk stays on one node.
    """

    def __init__(self, pattern: str | None) -> None:
        if pattern is not None:
            pattern = _pattern(pattern, "keys() lists every key")
        self.match = _matcher(pattern)
        self.cursor = 0
        self.node: str | None = None
        self.done = False

    def next_page(self) -> _Call[_Page]:
        params = {"limit": str(LIST_PAGE_SIZE), "cursor": str(self.cursor)}
        return _Call("GET", "/list", _parse_page, params=params, round_robin=True, prefer=self.node)

    def take(self, page: _Page) -> list[str]:
        """The page's keys that match; moves the cursor on."""
        if page.next_cursor != 0 and page.next_cursor <= self.cursor:
            raise PhoenixClientError(
                f"{page.node} answered /list with a cursor that does not advance"
            )
        self.cursor = page.next_cursor
        self.done = page.next_cursor == 0
        self.node = page.node
        return [key for key in page.keys if self.match(key)]


def _matcher(pattern: str | None) -> Callable[[str], bool]:
    """The server's rule for /removeallkeys, so `keys(p)` lists what
    `delete_pattern(p)` removes: a glob (case-sensitive, `*` matches any
    character) when the pattern has `*`, `?` or `[`, else a substring."""
    if pattern is None:
        return lambda key: True
    if any(c in pattern for c in "*?["):
        return lambda key: fnmatch.fnmatchcase(key, pattern)
    return lambda key: pattern in key


# Reading answers. Every parser first turns a refusal into its exception.


def _check(response: httpx.Response) -> None:
    """Raise the exception that a non-2xx answer stands for."""
    status = response.status_code
    if 200 <= status < 300:
        return
    message = _error_message(response)
    if status in (401, 403):
        raise AuthError(status, message)
    if status == 504:
        body = _json_or_none(response)
        if isinstance(body, dict) and "missing" in body:
            raise WriteNotAcknowledged(
                message, list(body.get("acknowledged", [])), list(body["missing"])
            )
    raise RequestRejected(status, message)


def _parse_json(response: httpx.Response) -> Any:
    _check(response)
    try:
        return response.json()
    except ValueError:
        raise PhoenixClientError(
            f"{response.request.url} answered {response.status_code} with a body that is not "
            "JSON; is it a PhoenixCache node?"
        ) from None


def _parse_object(response: httpx.Response) -> dict[str, Any]:
    body = _parse_json(response)
    if not isinstance(body, dict):
        raise PhoenixClientError(f"{response.request.url} answered {body!r}, not an object")
    return body


def _parse_nothing(response: httpx.Response) -> None:
    _check(response)


def _key_missing(response: httpx.Response) -> bool:
    """Whether the answer says the key is missing: a 404 saying so, or with no
    body (a HEAD, or the original server). Any other 404 is an error: the
    node does not serve that path, so the base URL is wrong."""
    if response.status_code != 404:
        return False
    body = _json_or_none(response) if response.content else {"error": KEY_NOT_FOUND}
    return isinstance(body, dict) and body.get("error") == KEY_NOT_FOUND


def _parse_value(response: httpx.Response) -> bytes | None:
    if _key_missing(response):
        return None
    _check(response)
    return response.content


def _parse_found(response: httpx.Response) -> bool:
    if _key_missing(response):
        return False
    _check(response)
    return True


def _field(name: str, kind: Callable[[Any], T]) -> Callable[[httpx.Response], T]:
    def parse(response: httpx.Response) -> T:
        return kind(_parse_object(response)[name])

    return parse


def _parse_page(response: httpx.Response) -> _Page:
    entries = _parse_json(response)
    request_url = str(response.request.url)
    return _Page(
        keys=[str(entry["key"]) for entry in entries],
        next_cursor=int(response.headers.get("X-Next-Cursor", "0")),
        # The base URL the request was made from: what precedes "/list?".
        node=request_url[: request_url.rindex("/list")],
    )


def _decode_json_value(fields: Mapping[str, Any]) -> bytes:
    """A value that traveled in JSON: text as is, other bytes as base64 with a marker."""
    value = str(fields["value"])
    if fields.get("encoding") == "base64":
        return base64.b64decode(value)
    return value.encode("utf-8")


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_message(response: httpx.Response) -> str:
    """The node's {"error": ...} message, else the start of the body, else the reason."""
    body = _json_or_none(response)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    text = response.text.strip()
    # A HEAD answer has no body, and hypercorn sends no reason phrase.
    return text[:200] or httpx.codes.get_reason_phrase(response.status_code) or "no message"


def _describe(error: httpx.RequestError) -> str:
    detail = str(error)
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


# Which node next.


class _BuildRequest(Protocol):
    """httpx's Client.build_request and AsyncClient.build_request."""

    def __call__(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str],
        content: bytes | None,
        headers: Mapping[str, str],
    ) -> httpx.Request: ...


class _Router:
    """The nodes, which ones failed lately, and in what order a call tries them."""

    def __init__(self, urls: str | Sequence[str], build: _BuildRequest) -> None:
        self.urls = _check_urls(urls)
        self._build = build
        self._down_until: dict[str, float] = {}
        self._next_read = 0

    def attempt(self, call: _Call[T]) -> _Attempt[T]:
        return _Attempt(self, call)

    def order(self, call: _Call[Any]) -> list[str]:
        """Healthy nodes first (round-robin or in order), then those that failed lately."""
        urls = list(self.urls)
        if call.round_robin:
            start = self._next_read % len(urls)
            self._next_read += 1
            urls = urls[start:] + urls[:start]
        if call.prefer in urls:
            urls.remove(call.prefer)
            urls.insert(0, call.prefer)
        now = time.monotonic()
        # sorted() is stable: the order above holds within each group.
        return sorted(urls, key=lambda url: self._down_until.get(url, 0.0) > now)

    def request(self, call: _Call[Any], url: str) -> httpx.Request:
        return self._build(
            call.method,
            url + call.path,
            params=call.params,
            content=call.content,
            headers=call.headers,
        )

    def failed(self, url: str) -> None:
        self._down_until[url] = time.monotonic() + DOWN_FOR

    def answered(self, url: str) -> None:
        self._down_until.pop(url, None)


class _Attempt(Generic[T]):
    """One call's way through the nodes: the requests to send, in order, and
    what went wrong with each node tried.

        attempt = router.attempt(call)
        for request in attempt:
            try:
                response = send(request)
            except httpx.RequestError as error:
                attempt.failed(error)
                continue
            if attempt.answered(response):
                return call.parse(response)
        raise attempt.unavailable()
    """

    def __init__(self, router: _Router, call: _Call[T]) -> None:
        self._router = router
        self._call = call
        self._url = ""
        self._failures: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[httpx.Request]:
        for url in self._router.order(self._call):
            self._url = url
            yield self._router.request(self._call, url)

    def failed(self, error: httpx.RequestError) -> None:
        self._failures.append((self._url, _describe(error)))
        self._router.failed(self._url)

    def answered(self, response: httpx.Response) -> bool:
        """True when `response` is the call's answer; False to try the next node."""
        if response.status_code >= 500 and not _is_write_concern_answer(response):
            self._failures.append(
                (self._url, f"HTTP {response.status_code}: {_error_message(response)}")
            )
            self._router.failed(self._url)
            return False
        self._router.answered(self._url)
        return True

    def unavailable(self) -> Unavailable:
        return Unavailable(self._failures)


def _is_write_concern_answer(response: httpx.Response) -> bool:
    """A 504 that says how many peers applied a `sync=N` write: the node is fine."""
    if response.status_code != 504:
        return False
    body = _json_or_none(response)
    return isinstance(body, dict) and "missing" in body


def _check_urls(urls: str | Sequence[str]) -> tuple[str, ...]:
    """The node URLs, checked and normalized (no trailing slash); ValueError if unusable."""
    listed = [urls] if isinstance(urls, str) else list(urls)
    if not listed:
        raise ValueError("at least one node URL is needed")
    checked = []
    for text in listed:
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL as error:
            raise ValueError(f"invalid node URL {text!r}: {error}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"invalid node URL {text!r}: must be http://HOST:PORT or https://…")
        if url.port is not None and not 0 < url.port < 65536:
            raise ValueError(f"invalid node URL {text!r}: the port must be from 1 to 65535")
        if url.query or url.fragment:
            raise ValueError(f"invalid node URL {text!r}: no query or fragment, please")
        checked.append(str(url).rstrip("/"))
    if len(set(checked)) != len(checked):
        raise ValueError(f"a node URL is listed twice: {listed}")
    return tuple(checked)


@attrs.frozen
class _Settings:
    """The httpx options both client classes are built with."""

    headers: dict[str, str]
    timeout: httpx.Timeout
    verify: ssl.SSLContext | bool

    @classmethod
    def of(
        cls, api_key: str | None, timeout: float, verify: Verify, cert: Cert | None
    ) -> _Settings:
        headers = {"User-Agent": f"phoenix-client/{__version__}"}
        if api_key is not None:
            _text(api_key, "api_key")
        if api_key:  # "" is no key, as an unset PHOENIX_API_KEY
            if not header_text(api_key):
                raise ValueError("an API key must be printable ASCII (it is sent in a header)")
            headers["Authorization"] = f"Bearer {api_key}"
        return cls(headers, httpx.Timeout(_seconds(timeout)), _tls_context(verify, cert))


def _seconds(timeout: object) -> float:
    """`timeout`, if it is a number of seconds above 0, at most MAX_TIMEOUT."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not 0 < timeout <= MAX_TIMEOUT:  # also refuses nan and inf
        raise ValueError(
            f"timeout must be a number of seconds above 0, at most {MAX_TIMEOUT}, got {timeout!r}"
        )
    return float(timeout)


def _tls_context(verify: Verify, cert: Cert | None) -> ssl.SSLContext | bool:
    """What httpx's `verify` takes, built here for a CA path or a client
    certificate (httpx 0.28 deprecates passing those as str and `cert`)."""
    # A wrong type must not fall through: verify=None used to turn checking off.
    if not isinstance(verify, ssl.SSLContext | str | os.PathLike | bool):
        raise TypeError(
            "verify must be True, False, a CA bundle's path or an ssl.SSLContext, "
            f"not {type(verify).__name__}"
        )
    cert_files = _cert_files(cert)
    if isinstance(verify, ssl.SSLContext) or (cert_files is None and isinstance(verify, bool)):
        return verify
    if isinstance(verify, bool):
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    else:
        context = _loaded(
            "the CA bundle", [verify], lambda: ssl.create_default_context(cafile=verify)
        )
    if cert_files is not None:
        certfile, keyfile = cert_files
        _loaded(
            "the client certificate",
            [path for path in cert_files if path is not None],
            lambda: context.load_cert_chain(certfile, keyfile),
        )
    return context


def _cert_files(cert: object) -> tuple[FilePath, FilePath | None] | None:
    """What load_cert_chain takes: a PEM file and no key file, or the certificate and the key."""
    if cert is None:
        return None
    if isinstance(cert, str | os.PathLike):
        return cert, None
    if (
        isinstance(cert, tuple)
        and len(cert) == 2
        and all(isinstance(path, str | os.PathLike) for path in cert)
    ):
        return cert[0], cert[1]
    raise TypeError(
        f"cert must be a PEM file's path or (certificate path, key path), not {type(cert).__name__}"
    )


def _loaded(what: str, paths: Sequence[FilePath], load: Callable[[], T]) -> T:
    """`load()`, which reads TLS files, with errors that name them: ssl's do not."""
    for path in paths:
        with open(path, "rb"):  # a missing or unreadable file: open()'s error names it
            pass
    try:
        return load()
    except ssl.SSLError as error:
        names = ", ".join(repr(os.fspath(path)) for path in paths)
        raise ssl.SSLError(error.errno, f"{what} {names} cannot be used: {error}") from None


# The clients: they send what the core builds and hand back what it parses.


class PhoenixClient:
    """A blocking client of one PhoenixCache cluster, with a kept-alive
    connection pool per node. Use it as a context manager, or call `close`.

        with PhoenixClient("http://127.0.0.1:8080", api_key="...") as cache:
            cache.set("user:1", b"\\x00\\x01", ttl=300)
            assert cache.get("user:1") == b"\\x00\\x01"

    `urls` is one node URL or several (see the module docstring for how
    they are used). `api_key` is sent as `Authorization: Bearer KEY`.
    `timeout` bounds each request, in seconds (above 0, at most a day); a
    `sync=N` write waits up to the node's write_timeout for its peers, so
    give it more than that. `verify` is True (the system's CAs), False, a CA
    bundle's path, or an ssl.SSLContext; `cert` a client certificate (a PEM
    path, or the paths of the certificate and the key).
    """

    def __init__(
        self,
        urls: str | Sequence[str] = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        verify: Verify = True,
        cert: Cert | None = None,
    ) -> None:
        settings = _Settings.of(api_key, timeout, verify, cert)
        self._http = httpx.Client(
            headers=settings.headers, timeout=settings.timeout, verify=settings.verify
        )
        self._router = _Router(urls, self._http.build_request)

    @property
    def urls(self) -> tuple[str, ...]:
        return self._router.urls

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: _Call[T]) -> T:
        if self._http.is_closed:  # httpx's error names neither this client nor the way out
            raise RuntimeError("this PhoenixClient is closed (close() or its with block ended)")
        attempt = self._router.attempt(call)
        for request in attempt:
            try:
                response = self._http.send(request)
            except httpx.RequestError as error:
                attempt.failed(error)
                continue
            if attempt.answered(response):
                return call.parse(response)
        raise attempt.unavailable()

    def get(self, key: str) -> bytes | None:
        """The value of `key`, or None when it is missing or expired."""
        return self._send(_call_get(key))

    def get_str(self, key: str) -> str | None:
        """The value of `key` decoded as UTF-8, or None when it is missing;
        UnicodeDecodeError (a ValueError) when it is not UTF-8 text."""
        return self._send(_call_get_str(key))

    def get_json(self, key: str) -> Any:
        """The value of `key` parsed as JSON, or None when it is missing
        (a stored JSON `null` also gives None: use `exists` to tell them apart);
        json.JSONDecodeError or UnicodeDecodeError (ValueErrors) when it is not JSON."""
        return self._send(_call_get_json(key))

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of those of `keys` that are there, in one request (/getKeys).

        The node takes at most its max_keys_per_request keys per call
        (RequestRejected, 413, beyond).
        """
        return self._send(_call_get_many(keys))

    def exists(self, key: str) -> bool:
        """Whether `key` is there (the value is not transferred)."""
        try:
            return self._send(_call_exists(key))
        except (AuthError, RequestRejected):
            # A refused HEAD has no body: the GET is refused the same way, saying why.
            return self._send(_call_get(key)) is not None

    def ttl(self, key: str) -> float | None:
        """Seconds until `key` expires (millisecond precision), None if it never
        does; raises NotFound (a KeyError) when the key is not there."""
        return self._send(_call_ttl(key))

    def set(
        self,
        key: str,
        value: Value,
        ttl: int = 0,
        content_type: str | None = None,
        sync: int | None = None,
    ) -> bool:
        """Store `value` (bytes, bytearray or memoryview as they are, str as UTF-8)
        under `key` for `ttl` whole seconds (0: no expiry).

        `content_type` is what `/get` will answer with (text/plain for str,
        application/octet-stream for bytes unless given). With `sync=N`, return
        once N other nodes applied it (WriteNotAcknowledged past the node's
        write_timeout). Returns False when the node's admission policy chose
        not to keep the value (the cache is full of keys used more often).
        """
        return self._send(_call_set(key, value, ttl, content_type, sync))

    def set_json(self, key: str, value: Any, ttl: int = 0, sync: int | None = None) -> bool:
        """Store `value` as JSON (application/json); see `set`."""
        return self.set(key, _encode_json(value), ttl, "application/json", sync)

    def set_many(
        self, mapping: Mapping[str, Value], ttl: int = 0, sync: int | None = None
    ) -> list[str]:
        """Store every item of `mapping` in one /setKeys request (all or, for
        bad input, none); return the keys the admission policy refused. str
        values are stored as UTF-8 text, bytes-like values as they are."""
        return self._send(_call_set_many(mapping, ttl, sync))

    def delete(self, key: str, sync: int | None = None) -> bool:
        """Remove `key`; True if it was there."""
        return self._send(_call_delete(key, sync))

    def delete_pattern(self, pattern: str, sync: int | None = None) -> list[str]:
        """Remove every key matching `pattern` and return them.

        A pattern with `*`, `?` or `[` is a glob (case-sensitive, `*` matches
        any character, `/` and `:` too); any other pattern matches the keys
        that contain it, as in the original PhoenixCache. An empty pattern is
        a ValueError (`flush` removes every key).
        """
        return self._send(_call_delete_pattern(pattern, sync))

    def flush(self, sync: int | None = None) -> None:
        """Empty the cache, on every node."""
        self._send(_call_flush(sync))

    def keys(self, pattern: str | None = None) -> Iterator[str]:
        """Every key, or those matching `pattern` (the rule of `delete_pattern`),
        fetched page by page as the iteration goes on. A key that is there for
        the whole walk is listed exactly once. An empty pattern is a
        ValueError, as for `delete_pattern`: leave it out to list every key."""
        listing = _Listing(pattern)
        while not listing.done:
            yield from listing.take(self._send(listing.next_page()))

    def ping(self) -> dict[str, Any]:
        """`{"node_id": ..., "version": ...}` of the first node that answers."""
        return self._send(_call_ping())

    def cluster_status(self) -> dict[str, Any]:
        """The first answering node's view of the cluster: /cluster in docs/api.md."""
        return self._send(_call_cluster_status())


class AsyncPhoenixClient:
    """The async twin of `PhoenixClient`, for trio or asyncio; see it for
    every method and option.

        async with AsyncPhoenixClient(["http://127.0.0.1:8080"]) as cache:
            await cache.set("greeting", "hello", ttl=60)
            async for key in cache.keys("greet*"):
                print(key)
    """

    def __init__(
        self,
        urls: str | Sequence[str] = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        verify: Verify = True,
        cert: Cert | None = None,
    ) -> None:
        settings = _Settings.of(api_key, timeout, verify, cert)
        self._http = httpx.AsyncClient(
            headers=settings.headers, timeout=settings.timeout, verify=settings.verify
        )
        self._router = _Router(urls, self._http.build_request)

    @property
    def urls(self) -> tuple[str, ...]:
        return self._router.urls

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: _Call[T]) -> T:
        if self._http.is_closed:  # httpx's error names neither this client nor the way out
            raise RuntimeError(
                "this AsyncPhoenixClient is closed (aclose() or its async with block ended)"
            )
        attempt = self._router.attempt(call)
        for request in attempt:
            try:
                response = await self._http.send(request)
            except httpx.RequestError as error:
                attempt.failed(error)
                continue
            if attempt.answered(response):
                return call.parse(response)
        raise attempt.unavailable()

    async def get(self, key: str) -> bytes | None:
        """See PhoenixClient.get."""
        return await self._send(_call_get(key))

    async def get_str(self, key: str) -> str | None:
        """See PhoenixClient.get_str."""
        return await self._send(_call_get_str(key))

    async def get_json(self, key: str) -> Any:
        """See PhoenixClient.get_json."""
        return await self._send(_call_get_json(key))

    async def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """See PhoenixClient.get_many."""
        return await self._send(_call_get_many(keys))

    async def exists(self, key: str) -> bool:
        """See PhoenixClient.exists."""
        try:
            return await self._send(_call_exists(key))
        except (AuthError, RequestRejected):
            # A refused HEAD has no body: the GET is refused the same way, saying why.
            return await self._send(_call_get(key)) is not None

    async def ttl(self, key: str) -> float | None:
        """See PhoenixClient.ttl."""
        return await self._send(_call_ttl(key))

    async def set(
        self,
        key: str,
        value: Value,
        ttl: int = 0,
        content_type: str | None = None,
        sync: int | None = None,
    ) -> bool:
        """See PhoenixClient.set."""
        return await self._send(_call_set(key, value, ttl, content_type, sync))

    async def set_json(self, key: str, value: Any, ttl: int = 0, sync: int | None = None) -> bool:
        """See PhoenixClient.set_json."""
        return await self.set(key, _encode_json(value), ttl, "application/json", sync)

    async def set_many(
        self, mapping: Mapping[str, Value], ttl: int = 0, sync: int | None = None
    ) -> list[str]:
        """See PhoenixClient.set_many."""
        return await self._send(_call_set_many(mapping, ttl, sync))

    async def delete(self, key: str, sync: int | None = None) -> bool:
        """See PhoenixClient.delete."""
        return await self._send(_call_delete(key, sync))

    async def delete_pattern(self, pattern: str, sync: int | None = None) -> list[str]:
        """See PhoenixClient.delete_pattern."""
        return await self._send(_call_delete_pattern(pattern, sync))

    async def flush(self, sync: int | None = None) -> None:
        """See PhoenixClient.flush."""
        await self._send(_call_flush(sync))

    async def keys(self, pattern: str | None = None) -> AsyncIterator[str]:
        """See PhoenixClient.keys."""
        listing = _Listing(pattern)
        while not listing.done:
            for key in listing.take(await self._send(listing.next_page())):
                yield key

    async def ping(self) -> dict[str, Any]:
        """See PhoenixClient.ping."""
        return await self._send(_call_ping())

    async def cluster_status(self) -> dict[str, Any]:
        """See PhoenixClient.cluster_status."""
        return await self._send(_call_cluster_status())
