"""Who may talk to a node: the whitelist of allowed source addresses.

The whitelist file has the original's format, {"allowed_nodes": [...]}, with
entries that are IP addresses, CIDR ranges or host names (resolved when the
file is loaded), each with an optional ":port" that is accepted and ignored:
a client's source port is ephemeral, so it cannot be matched. Requests are
checked against the connection's source address only, never a header.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path

from phoenix.errors import ConfigError
from phoenix.limits import ASGIApp, Receive, Scope, Send, send_json_error

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Whitelist:
    """A set of networks; `allows(address)` says whether a source address is in it."""

    def __init__(self, networks: list[Network]) -> None:
        self.networks = networks
        self._decisions: dict[str, bool] = {}

    @classmethod
    def load(cls, path: Path) -> Whitelist:
        """Read and resolve a whitelist file; ConfigError names the file and entry."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: whitelist file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"{path}: cannot read whitelist: {error}") from None
        entries = data.get("allowed_nodes") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ConfigError(f"{path}: must be an object with a list of strings 'allowed_nodes'")
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


class WhitelistGuard:
    """ASGI middleware answering 403 to sources outside the whitelist."""

    def __init__(self, app: ASGIApp, whitelist: Whitelist) -> None:
        self.app = app
        self.whitelist = whitelist
        self.rejected = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            address = client[0] if client else ""
            if not self.whitelist.allows(address):
                self.rejected += 1
                if scope["type"] == "http":
                    await send_json_error(send, 403, f"{address} is not in the whitelist")
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)
