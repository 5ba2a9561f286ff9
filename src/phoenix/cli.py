"""The `phoenix` command.

    phoenix serve --config config.json

Exit codes: 0 after a clean stop (Ctrl-C or SIGTERM), 1 when the node cannot
start (for example its port is taken), 2 for a bad command line or config.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from phoenix import __version__
from phoenix.app import config_path, create_app
from phoenix.config import Config
from phoenix.errors import ConfigError
from phoenix.node import Node

log = logging.getLogger("phoenix")

# A kept-alive connection is closed after this many requests when
# max_requests_per_conn is 0 (unlimited): hypercorn always needs a number.
_UNLIMITED_REQUESTS = 2**62


def hypercorn_config(config: Config) -> HypercornConfig:
    """The hypercorn settings that carry the node's listening address and limits."""
    settings = HypercornConfig()
    settings.bind = [config.bind]
    # Typed int in hypercorn, but only handed to trio.fail_after, which takes floats.
    settings.read_timeout = config.read_timeout  # type: ignore[assignment]
    settings.keep_alive_max_requests = config.max_requests_per_conn or _UNLIMITED_REQUESTS
    settings.accesslog = None
    settings.errorlog = logging.getLogger("hypercorn.error")
    return settings


async def serve(
    config: Config, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run one node until SIGINT or SIGTERM; the nursery that owns all its tasks."""
    node = Node(config)
    app = create_app(node)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            urls = await nursery.start(hypercorn_serve, app, hypercorn_config(config))
            log.info("node %s serving on %s", node.id, ", ".join(urls))
            task_status.started(urls)
            async for signum in signals:
                log.info("received %s, stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phoenix", description="PhoenixCache node and tools.")
    parser.add_argument("--version", action="version", version=f"phoenix {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_parser = commands.add_parser("serve", help="run a cache node")
    serve_parser.add_argument(
        "--config",
        default=None,
        help="path of config.json (default: $PHOENIX_CONFIG or ./config.json)",
    )
    serve_parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        trio.run(serve, Config.load(args.config or config_path()))
    except ConfigError as error:
        print(f"phoenix: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    except (OSError, BaseExceptionGroup) as error:
        # Binding the port is the failure users meet; anything else is a bug
        # and keeps its traceback.
        cause = _only_os_error(error)
        if cause is None:
            raise
        print(f"phoenix: error: cannot serve: {cause}", file=sys.stderr)
        return 1
    return 0


def _only_os_error(error: BaseException) -> OSError | None:
    """The OSError inside `error` when that is all it holds, else None."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error if isinstance(error, OSError) else None


if __name__ == "__main__":
    sys.exit(main())
