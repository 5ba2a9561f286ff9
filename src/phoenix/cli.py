"""The `phoenix` command: run a node, and talk to one.

    phoenix serve --config config.json
    phoenix set greeting hello --ttl 60
    phoenix get greeting
    phoenix keys 'user:*'
    phoenix cluster --url http://10.0.0.1:8080 --url http://10.0.0.2:8080

`serve` exits with 0 after a clean stop (Ctrl-C or SIGTERM), 1 when the node
cannot start (for example its port is taken), 2 for a bad command line or
config.

The client commands (get, set, del, keys, flush, cluster) exit with:

    0  done
    1  `get`: the key is not there
    2  a bad command line or option (e.g. a URL), a refused API key, or a
       request the node rejects (e.g. a key over max_key_length)
    3  no node answered (unreachable, timed out, or a server error)

They print errors as one line on stderr. docs/cli.md has examples.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import trio

from phoenix import __version__
from phoenix.client import (
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    AuthError,
    PhoenixClient,
    PhoenixClientError,
    RequestRejected,
)
from phoenix.errors import ConfigError, header_text

# The server's modules (the node, the app, hypercorn) are imported where
# `serve` needs them: without them a client command starts in half the time.

log = logging.getLogger("phoenix")

# Exit codes of the client commands.
EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
# The longest --timeout: a day (an infinite one overflowed the request's deadline).
MAX_TIMEOUT = 86_400


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="phoenix",
        description="PhoenixCache node and tools.",
        epilog="Run 'phoenix COMMAND --help' for a command's options. Client commands exit "
        "with 0 when done, 1 when `get` finds no key, 2 for a usage or config error "
        "(or an input or output that cannot be used), "
        "3 when no node answered.",
    )
    parser.add_argument("--version", action="version", version=f"phoenix {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_serve_parser(commands)
    add_client_parsers(commands)
    arguments = list(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(arguments)
    if unknown:
        # argparse reads a command's arguments in runs, so one after an option
        # (`phoenix set KEY --ttl 60 VALUE`) came back unknown. The command's
        # own parser reads them intermixed, and tells what is really left over
        # with the command's usage, not the top-level one.
        after_command = arguments[arguments.index(args.command) + 1 :]
        args = commands.choices[args.command].parse_intermixed_args(after_command)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


# phoenix serve


def add_serve_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `serve` command and every one of its options."""
    serve_parser = commands.add_parser("serve", help="run a cache node")
    serve_parser.add_argument(
        "--config",
        default=None,
        help="path of config.json (default: $PHOENIX_CONFIG or ./config.json)",
    )
    serve_parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    serve_parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text: key=value pairs; json: one JSON object per line (default: text)",
    )
    serve_parser.add_argument(
        "--unprotected",
        action="store_true",
        help="serve beyond loopback with neither a whitelist nor API keys (protected mode off)",
    )
    serve_parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """`phoenix serve`: run one node until Ctrl-C or SIGTERM; the exit code."""
    from phoenix import logs
    from phoenix.app import config_path
    from phoenix.config import Config
    from phoenix.security import protection_problem
    from phoenix.server import serve

    logs.configure(args.log_level, args.log_format)
    # httpx logs every peer request at info (heartbeats and batches, many a
    # second), httpcore every step of each at debug; hpack and h2 every
    # HTTP/2 header and frame at debug, API keys included.
    for chatty in ("httpx", "httpcore", "hpack", "h2"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.root.level))
    try:
        config = Config.load(args.config or config_path())
        problem = None if args.unprotected else protection_problem(config)
        if problem is not None:
            raise ConfigError(f"{config.source}: {problem}")
        trio.run(serve, config)
    except ConfigError as error:
        print(f"phoenix: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    except MemoryError:
        print(
            "phoenix: error: cannot serve: out of memory "
            "(num_counters takes 8 bytes per counter; max_cost bounds the data)",
            file=sys.stderr,
        )
        return 1
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


# The client commands: get, set, del, keys, flush, cluster.

ClientCommand = Callable[[PhoenixClient, argparse.Namespace], int]


def add_client_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The commands that talk to a running node through phoenix.client."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        action="append",
        metavar="URL",
        help="a node's URL; repeat it for several nodes (default: $PHOENIX_URL, "
        f"comma-separated, or {DEFAULT_URL})",
    )
    common.add_argument(
        "--api-key", default=None, metavar="KEY", help="API key (default: $PHOENIX_API_KEY)"
    )
    common.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"for each request to a node (default: {DEFAULT_TIMEOUT:g})",
    )
    # https nodes whose certificates a private CA signed (the nodes' ca_certs),
    # and mutual TLS (require_client_cert): without them, no command could talk to those.
    common.add_argument(
        "--ca-certs",
        default=None,
        metavar="PATH",
        help="CA bundle (PEM) to verify https nodes with (default: $PHOENIX_CA_CERTS, "
        "or the system's CAs)",
    )
    common.add_argument(
        "--cert",
        default=None,
        metavar="PATH",
        help="for nodes that require a client certificate: a PEM file holding it and "
        "its key (default: $PHOENIX_CERT)",
    )

    def add(
        name: str, run: ClientCommand, summary: str, details: str = ""
    ) -> argparse.ArgumentParser:
        command = commands.add_parser(
            name, parents=[common], help=summary, description=f"{summary}. {details}".strip()
        )
        command.set_defaults(run=_client_runner(run))
        return command

    get = add("get", _get, "print a key's value", "Writes the raw bytes; exits 1 when not found.")
    get.add_argument("key", type=_key, metavar="KEY", help="the key")

    set_ = add(
        "set",
        _set,
        "store a value",
        "Reads the value from stdin when VALUE is omitted, until end of file "
        "(on a terminal: Ctrl-D on a line of its own).",
    )
    set_.add_argument("key", type=_key, metavar="KEY", help="the key")
    set_.add_argument(
        "value", nargs="?", default=None, metavar="VALUE", help="the value (default: stdin)"
    )
    set_.add_argument(
        "--ttl",
        type=_whole_seconds,
        default=0,
        metavar="N",
        help="seconds until the key expires (default: 0, never)",
    )
    set_.add_argument(
        "--content-type",
        type=_header_argument,
        default=None,
        metavar="TYPE",
        help="what `get` over HTTP answers with (default: application/octet-stream)",
    )

    delete = add("del", _delete, "remove a key", "Exits 0 whether or not it was there.")
    delete.add_argument("key", type=_key, metavar="KEY", help="the key")

    keys = add(
        "keys",
        _keys,
        "list keys, one per line",
        "PATTERN is a glob when it has *, ? or [ (case-sensitive; * matches any character), "
        "else a substring, as for /removeallkeys.",
    )
    keys.add_argument(
        "pattern", type=_pattern, nargs="?", default=None, metavar="PATTERN", help="(default: all)"
    )

    add("flush", _flush, "remove every key, on every node")
    add("cluster", _cluster, "show a node's view of the cluster: its peers and their states")


def _client_runner(command: ClientCommand) -> Callable[[argparse.Namespace], int]:
    """Run `command` with a client built from the common options; map errors to exit codes."""

    def run(args: argparse.Namespace) -> int:
        try:
            client = PhoenixClient(
                args.url or _env_urls(),
                api_key=args.api_key or os.environ.get("PHOENIX_API_KEY") or None,
                timeout=args.timeout,
                verify=args.ca_certs or os.environ.get("PHOENIX_CA_CERTS") or True,
                cert=args.cert or os.environ.get("PHOENIX_CERT") or None,
            )
        except (ValueError, OSError) as error:  # OSError: a TLS file that cannot be used
            return _fail(EXIT_USAGE, str(error))
        try:
            with client:
                return command(client, args)
        except (AuthError, RequestRejected) as error:
            return _fail(EXIT_USAGE, str(error))
        except PhoenixClientError as error:
            return _fail(EXIT_UNAVAILABLE, str(error))
        except BrokenPipeError:
            # The reader went away (`phoenix keys | head`): not an error.
            _drop_stdout()
            return EXIT_OK
        except OSError as error:  # stdin or stdout (httpx wraps the network's errors)
            _drop_stdout()
            return _fail(EXIT_USAGE, f"cannot read the input or write the output: {error}")
        except KeyboardInterrupt:
            return 130

    return run


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit does not fail again."""
    if sys.stdout is not None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _stream(stream: TextIO | None, name: str) -> TextIO:
    """sys.stdin or sys.stdout; OSError when the shell closed it (`>&-`)."""
    if stream is None:
        raise OSError(f"standard {name} is closed")
    return stream


def _get(client: PhoenixClient, args: argparse.Namespace) -> int:
    value = client.get(args.key)
    if value is None:
        return _fail(EXIT_NOT_FOUND, f"key not found: {args.key}", prefix="phoenix: ")
    out = _stream(sys.stdout, "output").buffer
    out.write(value)
    out.flush()
    return EXIT_OK


# What ends the input on a terminal (a second Ctrl-D when the line holds text).
_EOF_KEYS = "Ctrl-Z and Enter" if os.name == "nt" else "Ctrl-D on a line of its own"


def _set(client: PhoenixClient, args: argparse.Namespace) -> int:
    # Bytes either way: stdin as it comes, an argument as the shell gave it.
    if args.value is None:
        stdin = _stream(sys.stdin, "input")
        if stdin.isatty():
            # Else a user who left VALUE out sees a command that seems to
            # hang. Said, not refused: typing a secret here keeps it out of
            # the shell's history (gpg says "Go ahead and type your message").
            print(
                f"phoenix: reading the value of {args.key} from stdin until end of file: "
                f"type it, then {_EOF_KEYS} (the newline before it is part of the value); "
                "Ctrl-C cancels",
                file=sys.stderr,
                flush=True,
            )
        value = stdin.buffer.read()
    else:
        value = os.fsencode(args.value)
    if not client.set(args.key, value, ttl=args.ttl, content_type=args.content_type):
        print(
            f"phoenix: warning: the node did not keep {args.key}: "
            "the cache is full of keys used more often",
            file=sys.stderr,
        )
    return EXIT_OK


def _delete(client: PhoenixClient, args: argparse.Namespace) -> int:
    client.delete(args.key)
    return EXIT_OK


def _keys(client: PhoenixClient, args: argparse.Namespace) -> int:
    out = _stream(sys.stdout, "output").buffer
    # The count goes to a terminal only, and only when the keys themselves
    # do not: on one terminal the two would overwrite each other.
    counter = KeyCounter(sys.stderr) if sys.stderr.isatty() and not sys.stdout.isatty() else None
    try:
        for key in client.keys(args.pattern):
            out.write(key.encode("utf-8") + b"\n")
            if counter is not None:
                counter.add()
        out.flush()
    finally:
        if counter is not None:
            counter.close()
    return EXIT_OK


class KeyCounter:
    """`phoenix keys` on a terminal: "keys listed: 12,345", rewritten in place.

    Shown once a listing has taken `delay` seconds, then redrawn at most every
    `interval`; `close` leaves the final count on its own line.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        now: Callable[[], float] = time.monotonic,
        delay: float = 1.0,
        interval: float = 0.2,
    ) -> None:
        self.stream = stream
        self.now = now
        self.interval = interval
        self.count = 0
        self.shown = False
        self.next_draw = now() + delay

    def add(self) -> None:
        self.count += 1
        if self.now() >= self.next_draw:
            self._draw()
            self.next_draw = self.now() + self.interval

    def close(self) -> None:
        if self.shown:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        self.stream.write(f"\rkeys listed: {self.count:,}")
        self.stream.flush()
        self.shown = True


def _flush(client: PhoenixClient, args: argparse.Namespace) -> int:
    client.flush()
    return EXIT_OK


def _cluster(client: PhoenixClient, args: argparse.Namespace) -> int:
    table = cluster_table(client.cluster_status(), now_ms=time.time() * 1000)
    print(table, file=_stream(sys.stdout, "output"), flush=True)
    return EXIT_OK


def cluster_table(status: dict[str, Any], now_ms: float) -> str:
    """/cluster as text: a line about the node that answered, then one row per peer.

    node n1: ready; recovery: no other peers
    URL                     NODE  STATE  FAILURES  OUTBOX  CATCH-UP  LAST CONTACT
    http://127.0.0.1:8081   n2    up     0         0       no        0.3 s ago
    """
    ready = "ready" if status.get("ready") else "not ready (recovering)"
    lines = [f"node {status.get('node_id')}: {ready}; recovery: {status.get('recovery')}"]
    peers = status.get("peers") or []
    if not peers:
        lines.append("no peers configured")
        return "\n".join(lines)
    rows = [["URL", "NODE", "STATE", "FAILURES", "OUTBOX", "CATCH-UP", "LAST CONTACT"]]
    for peer in peers:
        # The node's own entry carries no node_id: it is the answering node's.
        node_id = status.get("node_id") if peer.get("state") == "self" else peer.get("node_id")
        rows.append(
            [
                str(peer.get("url")),
                str(node_id or "-"),
                str(peer.get("state")),
                str(peer.get("consecutive_failures")),
                str(peer.get("outbox_depth")),
                "needed" if peer.get("needs_catch_up") else "no",
                _ago(peer.get("last_contact_ms"), now_ms),
            ]
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def _ago(moment_ms: Any, now_ms: float) -> str:
    if not isinstance(moment_ms, int | float):
        return "never"
    return f"{max(now_ms - moment_ms, 0) / 1000:.1f} s ago"


def _env_urls() -> list[str]:
    text = os.environ.get("PHOENIX_URL", "")
    return [url.strip() for url in text.split(",") if url.strip()] or [DEFAULT_URL]


def _fail(code: int, message: str, prefix: str = "phoenix: error: ") -> int:
    """Print `message` as one line on stderr; return `code`."""
    print(prefix + " ".join(message.split()), file=sys.stderr)
    return code


def _utf8(text: str) -> str:
    """A key or pattern from the command line: it must be valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"not valid UTF-8: {text!r}") from None
    return text


def _key(text: str) -> str:
    """A key from the command line: valid UTF-8, and not empty."""
    if not text:
        raise argparse.ArgumentTypeError("a key must not be empty")
    return _utf8(text)


def _pattern(text: str) -> str:
    """A pattern from the command line: valid UTF-8, and not empty (the
    client refuses an empty one, which /removeallkeys refuses too)."""
    if not text:
        raise argparse.ArgumentTypeError("a pattern must not be empty (omit it to list every key)")
    return _utf8(text)


def _header_argument(text: str) -> str:
    """A value sent in a header (--content-type): printable ASCII."""
    if not header_text(text):
        raise argparse.ArgumentTypeError(
            f"must be printable ASCII (it is sent in a header), got {text!r}"
        )
    return text


def _whole_seconds(text: str) -> int:
    # Past 20 digits it is past any TTL a node takes (and past what int() reads at 4,300).
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise argparse.ArgumentTypeError(f"must be a whole number of seconds, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= MAX_TIMEOUT:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds above 0, at most {MAX_TIMEOUT}, got {text!r}"
        )
    return seconds


if __name__ == "__main__":
    sys.exit(main())
