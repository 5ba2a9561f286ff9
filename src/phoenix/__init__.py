"""PhoenixCache: a distributed in-memory key/value cache server on trio."""

from __future__ import annotations

__version__ = "0.1.0"


def build() -> str:
    """How the hot modules run: "compiled" (C extensions, installed with
    PHOENIX_COMPILE=1: docs/operations.md) or "python"."""
    from phoenix import store

    return "python" if store.__file__.endswith(".py") else "compiled"
