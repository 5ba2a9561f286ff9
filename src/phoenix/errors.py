"""Every error PhoenixCache raises on purpose, as one tree callers can catch.

PhoenixError
├── ConfigError          config.json or whitelist.json is missing or invalid
└── RequestError         a client asked for something the node refuses
    ├── InvalidRequest   malformed input (HTTP 400)
    └── TooLarge         a key or value over its configured maximum (HTTP 413)
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


class TooLarge(RequestError):
    status = 413


class UnsupportedType(RequestError):
    status = 415


class NotReady(RequestError):
    status = 503


class PeerCallFailed(PhoenixError):
    """A call to a peer failed: it could not be reached, timed out or refused."""
