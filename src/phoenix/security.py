"""Who may talk to a node: the whitelist of source addresses, and API keys.

The whitelist file has the original's format, {"allowed_nodes": [...]}, with
entries that are IP addresses, CIDR ranges or host names (resolved when the
file is loaded), each with an optional ":port" that is accepted and ignored:
a client's source port is ephemeral, so it cannot be matched. Requests are
checked against the connection's source address only, never a header,
unless the connection comes from a configured trusted proxy.

API keys come in three kinds: read-only and read-write keys for clients, and
the cluster key for the peer routes under /internal. docs/security.md says
how to set them.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import socket
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

import trio

from phoenix.config import Config
from phoenix.errors import ConfigError
from phoenix.limits import ASGIApp, Receive, Scope, Send, send_json_error

log = logging.getLogger("phoenix.security")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> list[Network]:
    """Addresses or CIDR ranges (checked already by the config)."""
    return [_unmapped(ipaddress.ip_network(entry, strict=False)) for entry in entries]


class Whitelist:
    """A set of networks; `allows(address)` says whether a source address is in it."""

    def __init__(self, networks: list[Network]) -> None:
        self.networks = networks
        self._decisions: dict[str, bool] = {}

    @classmethod
    def load(cls, path: Path) -> Whitelist:
        """Read and resolve a whitelist file; ConfigError names the file and entry."""
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM, as some editors write
        except FileNotFoundError:
            raise ConfigError(f"{path}: whitelist file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"{path}: cannot read whitelist: {error}") from None
        entries = data.get("allowed_nodes") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ConfigError(f"{path}: must be an object with a list of strings 'allowed_nodes'")
        unknown = sorted(set(data) - {"allowed_nodes"})
        if unknown:  # a misspelt key would be ignored, as config.json refuses it
            raise ConfigError(
                f"{path}: unknown key {unknown[0]!r} (the only key is 'allowed_nodes')"
            )
        networks: list[Network] = []
        for entry in entries:
            try:
                networks.extend(_networks(entry))
            except ValueError as error:
                raise ConfigError(f"{path}: entry {entry!r}: {error}") from None
        return cls(networks)

    def allows(self, address: str) -> bool:
        decision = self._decisions.get(address)
        if decision is None:
            decision = _in_networks(address, self.networks)
            if len(self._decisions) >= 65536:
                self._decisions.clear()
            self._decisions[address] = decision
        return decision


def _networks(entry: str) -> list[Network]:
    host = _strip_port(entry.strip())
    if not host:
        raise ValueError("empty entry")
    try:
        return [_unmapped(ipaddress.ip_network(host, strict=False))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise ValueError(
            f"not an address, a CIDR range or a resolvable host name ({error})"
        ) from None
    return [ipaddress.ip_network(str(info[4][0]).partition("%")[0]) for info in infos]


def _unmapped(network: Network) -> Network:
    """::ffff:a.b.c.d/n as the IPv4 range it stands for (sources are compared as IPv4)."""
    mapped = getattr(network.network_address, "ipv4_mapped", None)
    if mapped is None or network.prefixlen < 96:
        return network
    return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")


def _strip_port(entry: str) -> str:
    """'host:port' -> 'host', '[v6]:port' -> 'v6'; bare IPv6 stays as it is."""
    if entry.startswith("["):
        return entry[1:].partition("]")[0]
    host, colon, port = entry.rpartition(":")
    if colon and host.count(":") == 0 and port.isdigit():
        return host
    return entry


def _in_networks(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


class WhitelistFile:
    """The whitelist file, reloaded when it changes.

    A broken edit keeps the last good list and logs one error (per distinct
    problem), so a typo cannot lock the cluster out.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current = Whitelist.load(path)
        self._stamp = self._stat()
        self._last_error = ""
        # Called with each new list once it is in force (the RESP listener
        # closes the connections of addresses it no longer allows).
        self.on_reload: list[Callable[[Whitelist], None]] = []

    def reload_if_changed(self) -> bool:
        """Reload when the file's size or mtime changed; True if a new list is in force."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self.current = Whitelist.load(self.path)
        except ConfigError as error:
            if str(error) != self._last_error:
                log.error("whitelist not reloaded, keeping the last good one: %s", error)
                self._last_error = str(error)
            return False
        self._last_error = ""
        log.info("whitelist reloaded from %s (%d networks)", self.path, len(self.current.networks))
        for listener in self.on_reload:
            listener(self.current)
        return True

    async def watch(self, interval: float = 1.0) -> None:
        """Check the file every `interval` seconds, forever."""
        while True:
            await trio.sleep(interval)
            self.reload_if_changed()

    def _stat(self) -> tuple[int, int] | None:
        try:
            status = self.path.stat()
        except OSError:
            return None
        return (status.st_mtime_ns, status.st_size)


# Routes that change data need a read-write key; the peer routes the cluster key.
WRITE_ROUTES = frozenset({"/set", "/setKeys", "/remove", "/removeallkeys", "/flush"})
# Open without a key when public_health_checks is set (the whitelist still applies).
HEALTH_ROUTES = frozenset({"/healthz", "/readyz"})
INTERNAL_PREFIX = "/internal/"


class Keys:
    """The configured API keys, and what a presented key may do."""

    def __init__(self, read_only: Iterable[str], read_write: Iterable[str], cluster: str) -> None:
        self._read_only = [key.encode() for key in read_only]
        self._read_write = [key.encode() for key in read_write]
        self._cluster = cluster.encode()

    @property
    def required(self) -> bool:
        return bool(self._read_only or self._read_write)

    @property
    def configured(self) -> bool:
        """Whether any key is set, the cluster key included."""
        return self.required or bool(self._cluster)

    def refusal(self, path: str, presented: str | None) -> tuple[int, str] | None:
        """Why the request may not go on, as (status, message); None when it may."""
        if path.startswith(INTERNAL_PREFIX):
            if not self._cluster:
                # Open to all only where the client routes are: they would
                # hand the whole cache (reconcile) and every write (apply) to anyone.
                return (401, "peer routes need the cluster key") if self.required else None
            if presented is not None and _matches(presented.encode(), [self._cluster]):
                return None
            return 401, "peer routes need the cluster key"
        if not self.required:
            return None
        if presented is None:
            return 401, "an API key is required (Authorization: Bearer KEY)"
        key = presented.encode()
        if _matches(key, self._read_write):
            return None
        if _matches(key, self._read_only):
            if path in WRITE_ROUTES:
                return 403, "this API key is read-only"
            return None
        return 401, "invalid API key"


def _matches(presented: bytes, keys: list[bytes]) -> bool:
    """Constant-time comparison with every key: the time tells nothing of which."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented, key)
    return found


def presented_key(scope: Scope) -> str | None:
    """The key of `Authorization: Bearer KEY` or `X-API-Key: KEY`, if any."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return str(value[7:].decode("latin-1")).strip()
        if name == b"x-api-key":
            return str(value.decode("latin-1")).strip()
    return None


def client_address(scope: Scope, trusted_proxies: list[Network]) -> str:
    """The connection's source address; behind a trusted proxy, X-Forwarded-For's.

    Only when the connection comes from a configured trusted proxy is the
    header read, right to left, skipping the trusted proxies in it.
    """
    client = scope.get("client")
    address = str(client[0]) if client else ""
    if not trusted_proxies or not _in_networks(address, trusted_proxies):
        return address
    forwarded = [
        part.strip()
        for name, value in scope.get("headers", ())
        if name == b"x-forwarded-for"
        for part in value.decode("latin-1").split(",")
    ]
    for hop in reversed(forwarded):
        if not _in_networks(hop, trusted_proxies):
            return str(hop)
    return address


class CanonicalPath:
    """ASGI middleware, outermost but for NoWebSockets: every layer sees the path the app routes.

    Quart routes an absolute-form target (`POST http://host/flush`) by its
    path, takes off root_path, and werkzeug routes `flush` and `//flush` as
    `/flush`. Left as sent, such a path passed the Guard as some unknown
    route and still reached /flush: a read-only key could flush. So it is
    rewritten here, once, to root_path and the route the app will run;
    `route_path` gives the route back to every layer below.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path, root = scope["path"], scope.get("root_path", "")
            if root or not path.startswith("/") or "//" in path:
                routed = routed_path(path, root)
                if routed is not None and root + routed != path:
                    scope = {**scope, "path": root + routed}
        await self.app(scope, receive, send)


def routed_path(path: str, root_path: str = "") -> str | None:
    """The route the app runs for `path`, as Quart and werkzeug read it: an
    absolute URL's path, less `root_path`, one leading "/" and runs of "/"
    merged. None when `path` is not below `root_path` (the app answers 404).
    """
    if not path.startswith("/"):
        path = urlsplit(path).path
    if root_path:
        if path == root_path or not path.startswith(root_path):
            return None
        path = path.removeprefix(root_path)
    return "/" + _SLASHES.sub("/", path.lstrip("/"))


def route_path(scope: Scope) -> str:
    """The route of a request that CanonicalPath has seen: its path below
    root_path ("" when it is not below it)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if not root:
        return path
    return path.removeprefix(root) if path != root and path.startswith(root) else ""


_SLASHES = re.compile("//+")


class Guard:
    """ASGI middleware: who may talk to the node, checked before anything else.

    The source address (through trusted proxies only) must be in the
    whitelist, when there is one (403); the request must carry a key that
    allows the route, when keys are configured (401, or 403 for a read-only
    key on a write route). The counts of refusals are kept for metrics.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        whitelist: WhitelistFile | None,
        keys: Keys,
        trusted_proxies: list[Network],
        open_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.open_paths = open_paths
        self.whitelist = whitelist
        self.keys = keys
        self.trusted_proxies = trusted_proxies
        self.refused: Counter[int] = Counter()
        # Nothing to check: no whitelist, no keys, no proxies to see through.
        self.open = whitelist is None and not keys.configured and not trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.open or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        address = client_address(scope, self.trusted_proxies)
        if self.trusted_proxies:
            client = scope.get("client")
            scope = {**scope, "client": (address, client[1] if client else 0)}
        refusal = None
        if self.whitelist is not None and not self.whitelist.current.allows(address):
            refusal = 403, f"{address} is not in the whitelist"
        elif (route := route_path(scope)) not in self.open_paths:
            refusal = self.keys.refusal(route, presented_key(scope))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message = refusal
        self.refused[status] += 1
        if scope["type"] == "http":
            await send_json_error(send, status, message)
        else:
            await send({"type": "websocket.close", "code": 1008})


def protection_problem(config: Config) -> str | None:
    """Why serving this config would expose an open cache (protected mode), if it would.

    Like Redis's protected mode: a node listening beyond loopback needs a
    whitelist or API keys, unless protected_mode is turned off.
    """
    if not config.protected_mode or config.loopback_only:
        return None
    if config.whitelist_path is not None or config.requires_keys:
        return None
    return (
        f"refusing to serve on {config.port} with neither a whitelist nor API keys "
        "(protected mode): set white_list_file_path or read_write_keys in the config, "
        'listen on 127.0.0.1, or set "protected_mode": false (or pass --unprotected)'
    )
