"""The ASGI application of a node: `create_app(node)`, and `app` for hypercorn.

`hypercorn --worker-class trio phoenix.app:app` serves the module-level `app`,
which reads its config from $PHOENIX_CONFIG (or ./config.json) at start-up and
runs the node's background work in the app's own nursery. `phoenix serve`
builds the app with `create_app` and runs the node in its root nursery.
"""

from __future__ import annotations

import os
import sys
from typing import cast

from prometheus_client import generate_latest
from quart_trio import QuartTrio

from phoenix.api import register_routes
from phoenix.config import Config
from phoenix.connection_guard import bound_writes_by, guard_connections
from phoenix.errors import ConfigError
from phoenix.hot_routes import HotRoutes
from phoenix.internal_api import register_internal_routes
from phoenix.limits import (
    ASGIApp,
    InFlightCap,
    NoWebSockets,
    Receive,
    RequestDeadline,
    Scope,
    Send,
    ShieldLastSend,
    send_json_error,
)
from phoenix.metrics import RefusalCollector, RequestMetrics, node_registry
from phoenix.node import Node
from phoenix.security import (
    HEALTH_ROUTES,
    CanonicalPath,
    Guard,
    Keys,
    WhitelistFile,
    parse_networks,
)


def create_app(
    node: Node, *, run_node: bool = False, whitelist: WhitelistFile | None = None
) -> ASGIApp:
    """The node's ASGI app; with `run_node`, serving it also runs `node.run`.

    Without `whitelist`, the app loads the config's whitelist file and has
    `node.run` watch it; a `whitelist` given is the caller's to watch
    (`phoenix serve` shares one with the RESP listener). Raises ConfigError
    when the whitelist file cannot be used.
    """
    config = node.config
    # Bounds the body of every route; /set checks max_value_size itself.
    # A /getKeys key may take 6 bytes per byte as a JSON escape; a peer's
    # batch holds up to 1 MiB of ops, each value up to max_value_size.
    max_body = max(
        config.max_keys_per_request * (6 * config.max_key_length + 8),
        2 * config.max_value_size + 2 * 1024 * 1024,
    )
    quart = QuartTrio("phoenix")
    quart.config.update(
        BODY_TIMEOUT=config.read_timeout,
        RESPONSE_TIMEOUT=config.write_timeout,
        MAX_CONTENT_LENGTH=max_body,
    )
    registry = node_registry(node)
    register_routes(quart, node, lambda: generate_latest(registry))
    register_internal_routes(quart, node)
    if run_node:

        @quart.before_serving
        async def _start_node() -> None:
            await quart.nursery.start(node.run)

    quart_app = RequestDeadline(
        ShieldLastSend(cast(ASGIApp, quart), write_timeout=config.write_timeout),
        read_timeout=config.read_timeout,
        write_timeout=config.write_timeout,
    )
    app: ASGIApp = InFlightCap(
        HotRoutes(quart_app, node, max_body=max_body), max_per_ip=config.max_conns_per_ip
    )
    if whitelist is None and config.whitelist_path is not None:
        whitelist = WhitelistFile(config.whitelist_path)
        node.background.append(whitelist.watch)
    keys = Keys(config.read_only_keys, config.read_write_keys, config.cluster_key)
    trusted = parse_networks(config.trusted_proxies)
    open_paths = HEALTH_ROUTES if config.public_health_checks else frozenset()
    guard = Guard(
        app, whitelist=whitelist, keys=keys, trusted_proxies=trusted, open_paths=open_paths
    )
    registry.register(RefusalCollector(guard.refused))
    return NoWebSockets(CanonicalPath(RequestMetrics(guard, registry)))


def config_path() -> str:
    return os.environ.get("PHOENIX_CONFIG", "config.json")


class _AppFromEnvironment:
    """The app hypercorn imports: built on first use from the config file."""

    def __init__(self) -> None:
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            guard_connections()  # first called at start-up, before any connection
            try:
                config = Config.load(config_path())
                self._app = create_app(Node(config), run_node=True)
            except ConfigError as error:
                await _refuse(scope, receive, send, str(error))
                return
            bound_writes_by(config.write_timeout)  # hypercorn's config carries none
        await self._app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, message: str) -> None:
    if scope["type"] == "lifespan":
        # One clear line and a non-zero exit, as `phoenix serve` does; a failed
        # lifespan would make hypercorn print a traceback and exit 0.
        print(f"phoenix: error: {message}", file=sys.stderr, flush=True)
        os._exit(2)
    if scope["type"] == "http":
        await send_json_error(send, 500, message)


app = _AppFromEnvironment()
