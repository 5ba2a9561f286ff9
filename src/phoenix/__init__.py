"""PhoenixCache: a distributed in-memory key/value cache server on trio."""

from __future__ import annotations

__version__ = "0.1.0"
