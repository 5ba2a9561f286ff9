"""Running a node as a process: hypercorn and the node in one nursery.

`phoenix serve` calls `serve(config)`; see docs/architecture.md for the tree
of tasks it owns.
"""

from __future__ import annotations

import gc
import logging
import resource
import signal
import ssl

import trio
from hypercorn.trio import serve as hypercorn_serve

from phoenix import build
from phoenix.app import create_app
from phoenix.config import Config
from phoenix.connection_guard import GuardedConfig, guard_connections
from phoenix.limits import ASGIApp
from phoenix.logs import show_node_id
from phoenix.node import Node
from phoenix.resp_server import RespServer
from phoenix.security import WhitelistFile

log = logging.getLogger("phoenix")

# A kept-alive connection is closed after this many requests when
# max_requests_per_conn is 0 (unlimited): hypercorn always needs a number.
_UNLIMITED_REQUESTS = 2**62


def hypercorn_config(config: Config) -> GuardedConfig:
    """The hypercorn settings that carry the node's listening address and limits."""
    settings = GuardedConfig()
    settings.bind = [config.bind]
    # A connection with no request in progress (before its first, between
    # two, or with a request head still arriving) is closed after
    # read_timeout + write_timeout; the app bounds each request itself.
    # hypercorn's own read_timeout stays off: when it fired, hypercorn
    # stopped reading but kept the connection open until keep_alive_timeout,
    # so a request sent in between was never read. (Keep-alive at
    # read_timeout alone was too short: peers heartbeating every
    # read_timeout kept meeting connections closed under them.)
    settings.keep_alive_timeout = config.read_timeout + config.write_timeout
    settings.read_timeout = None
    settings.keep_alive_max_requests = config.max_requests_per_conn or _UNLIMITED_REQUESTS
    # A client that takes nothing of an answer for write_timeout is cut off (connection_guard).
    settings.write_timeout = config.write_timeout
    settings.accesslog = None
    settings.errorlog = logging.getLogger("hypercorn.error")
    if config.tls:
        settings.certfile = config.certfile
        settings.keyfile = config.keyfile
        # A client that never finishes its handshake held a connection for
        # hypercorn's default 60 s.
        settings.ssl_handshake_timeout = config.read_timeout
    if config.ca_certs:
        settings.ca_certs = config.ca_certs
    if config.require_client_cert:
        settings.verify_mode = ssl.CERT_REQUIRED
    return settings


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one; the limit now.

    Each connection is a file descriptor. Linux's usual soft limit, 1,024,
    let a thousand idle clients make both ports refuse everyone else.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:  # a hard limit above what the kernel takes
            log.debug("open files limit left at %d: %s", soft, error)
    return soft


def cannot_listen(errors: BaseExceptionGroup[OSError], address: str, key: str) -> OSError:
    """Why `address` could not be listened on, naming it and its config key: a
    node listens on two ports, and "Address already in use" alone does not say which."""
    reasons: list[str] = []
    pending: list[BaseException] = [errors]
    while pending:  # the OSErrors, however deep the nurseries nested them
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(reversed(error.exceptions))
        else:
            reasons.append(str(error))
    return OSError(f"{address} ({key!r} in the config): {'; '.join(reasons)}")


def build_listeners(node: Node) -> tuple[ASGIApp, RespServer | None]:
    """The node's HTTP app and, with `resp_port`, its RESP listener (docs/resp.md).

    Built before serving: a bad whitelist stops start-up. Both go by one
    whitelist file, watched once: each change is loaded, and logged, once, and
    both listeners answer by the same list. (With a file each, every reload
    and every broken edit was logged twice.)
    """
    path = node.config.whitelist_path
    whitelist = None if path is None else WhitelistFile(path)
    app = create_app(node, whitelist=whitelist)
    if not node.config.resp_port:
        if whitelist is not None:
            node.background.append(whitelist.watch)
        return app, None
    return app, RespServer(node, whitelist)  # its `serve` watches the file


async def serve(
    config: Config, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run one node until SIGINT or SIGTERM; the nursery that owns all its tasks."""
    guard_connections()
    raise_open_files_limit()
    node = Node(config)
    show_node_id(node.id)
    app, resp_server = build_listeners(node)
    # What start-up built (modules, the app, the node: some 60,000 objects)
    # lives as long as the process; frozen, the collector's full passes no
    # longer walk it (bench/profiles.md: they took 4% of a GET load's CPU).
    gc.collect()
    gc.freeze()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            async with trio.open_nursery() as listeners:
                try:
                    urls = await listeners.start(hypercorn_serve, app, hypercorn_config(config))
                except* OSError as errors:
                    raise cannot_listen(errors, config.bind, "port") from None
                log.info("node %s serving on %s (%s build)", node.id, ", ".join(urls), build())
                if resp_server is not None:
                    try:
                        addresses = await listeners.start(resp_server.serve)
                    except* OSError as errors:
                        resp_address = f"{config.bind.rpartition(':')[0]}:{config.resp_port}"
                        raise cannot_listen(errors, resp_address, "resp_port") from None
                    log.info("node %s serving RESP on %s", node.id, ", ".join(addresses))
                task_status.started(urls)
                async for signum in signals:
                    log.info("received %s, stopping", signal.Signals(signum).name)
                    listeners.cancel_scope.cancel()
                    break
            # No more writes come in: the peers get what is queued for them first.
            with trio.move_on_after(config.write_timeout):
                await node.drain()
            nursery.cancel_scope.cancel()
