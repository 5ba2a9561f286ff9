"""Every error PhoenixCache raises on purpose, as one tree callers can catch.

PhoenixError
├── ConfigError          config.json or whitelist.json is missing or invalid
├── RequestError         a client asked for something the node refuses
│   ├── InvalidRequest   malformed input (HTTP 400)
│   ├── KeyNotFound      no live entry for the key (HTTP 404)
│   ├── BodyTimeout      the request body did not arrive within read_timeout (HTTP 408)
│   ├── TooLarge         a key, value or body over its configured maximum (HTTP 413)
│   ├── UnsupportedType  a body declared as a type the route does not read (HTTP 415)
│   └── NotReady         the node is still recovering its data (HTTP 503)
├── PeerCallFailed       a call to a peer failed
└── PhoenixClientError   every failure of a phoenix.client call
    ├── Unavailable          no node answered: connection errors, timeouts, 5xx
    ├── AuthError            API key missing or refused (401), or not allowed (403)
    ├── NotFound             `ttl` of a key that is not there; also a KeyError
    ├── RequestRejected      any other 4xx: a key too long, a value too large...
    └── WriteNotAcknowledged `sync=N`: fewer than N other nodes applied the
                             write within the server's write_timeout (504)
"""

from __future__ import annotations

from collections.abc import Sequence


class PhoenixError(Exception):
    """Base class of every error PhoenixCache raises deliberately."""


class ConfigError(PhoenixError):
    """The configuration cannot be used; the message names the file and the key."""


class RequestError(PhoenixError):
    """A request the node refuses; `status` is the HTTP status that says why."""

    status = 400


class InvalidRequest(RequestError):
    status = 400


class KeyNotFound(RequestError):
    status = 404


# A missing key's 404 says this; the client tells it from the 404 of a path
# the node does not serve (a wrong base URL), which must not read as a miss.
KEY_NOT_FOUND = "key not found"


class BodyTimeout(RequestError):
    status = 408


class TooLarge(RequestError):
    status = 413


class UnsupportedType(RequestError):
    status = 415


class NotReady(RequestError):
    status = 503


class PeerCallFailed(PhoenixError):
    """A call to a peer failed: it could not be reached, timed out or refused."""


class PhoenixClientError(PhoenixError):
    """Base class of every error a client call raises."""


class Unavailable(PhoenixClientError):
    """No node answered: each was unreachable, timed out or answered with a 5xx.

    `failures` holds (url, what went wrong) for each node tried, in order.
    """

    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures = list(failures)
        reasons = "; ".join(f"{url}: {reason}" for url, reason in self.failures)
        super().__init__(f"no node answered ({reasons})")


class AuthError(PhoenixClientError):
    """The node refused the caller: no or an unknown API key (401), a read-only
    key on a write, or a source address outside the whitelist (403)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{message} (HTTP {status})")


class NotFound(PhoenixClientError, KeyError):
    """The key is not there (missing or expired). Raised by `ttl` only: `get`
    returns None and `exists` False, but `ttl` already uses None for "no expiry"."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"key not found: {key!r}")

    def __str__(self) -> str:
        # KeyError would show the message quoted, as if it were the key.
        return str(self.args[0])


class RequestRejected(PhoenixClientError):
    """The node refused the request (a 4xx other than 401 and 403).

    `status` is the HTTP status and `message` the node's explanation, e.g.
    413 "key is longer than max_key_length (1024 bytes)". Sending the same
    request again, or to another node, would not help.
    """

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{message} (HTTP {status})")


class WriteNotAcknowledged(PhoenixClientError):
    """A write with `sync=N` was applied, but fewer than N other nodes applied
    it within the node's write_timeout (504). It will still reach them; the
    write is not sent to another node, which would not do better.

    `acknowledged` and `missing` are the URLs of the peers that did and did not.
    """

    def __init__(self, message: str, acknowledged: list[str], missing: list[str]) -> None:
        self.acknowledged = acknowledged
        self.missing = missing
        super().__init__(message)


def header_text(text: str) -> bool:
    """Whether `text` may go in a header (a content type, an API key): printable
    ASCII. The client checks what it sends, the node what it will send back."""
    return text.isascii() and text.isprintable()


def utf8(text: str, message: str) -> bytes:
    """`text` as UTF-8; InvalidRequest(`message`) when it holds a lone
    surrogate, which JSON can carry ("\\ud800") and UTF-8 cannot."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(message) from None
