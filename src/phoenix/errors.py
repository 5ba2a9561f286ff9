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
└── PeerCallFailed       a call to a peer failed
"""

from __future__ import annotations


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
