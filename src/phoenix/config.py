"""The node's configuration: config.json, checked once, held in one frozen object.

The keys are the original PhoenixCache's, plus a few of ours (marked below);
docs/configuration.md says what each one does here.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from phoenix.errors import ConfigError, header_text

# write_timeout bounds each piece this long of an answer, not the whole:
# a client that reads slowly but steadily is not cut off (HTTP and RESP).
WRITE_PIECE = 64 * 1024


@attrs.frozen
class Config:
    """Every setting of one node, with its default."""

    # The original PhoenixCache's keys.
    port: str = "127.0.0.1:8080"
    num_counters: int = 1_000_000
    max_cost: int = 256 * 1024 * 1024
    buffer_items: int = 64
    read_timeout: float = 5.0
    write_timeout: float = 5.0
    max_conns_per_ip: int = 1000
    max_requests_per_conn: int = 0
    peers: tuple[str, ...] = ()
    max_retries_to_disabled_node: int = 3
    heart_beat_interval_in_seconds: float = 5.0
    white_list_file_path: str = ""
    # Ours.
    node_id: str = ""
    max_key_length: int = 1024
    max_value_size: int = 1024 * 1024
    max_keys_per_request: int = 10_000
    tombstone_grace_seconds: float = 3600.0
    outbox_size: int = 100_000
    anti_entropy_interval_in_seconds: float = 30.0
    # Security (docs/security.md). Keys are secrets: kept out of repr and logs.
    read_only_keys: tuple[str, ...] = attrs.field(default=(), repr=False)
    read_write_keys: tuple[str, ...] = attrs.field(default=(), repr=False)
    cluster_key: str = attrs.field(default="", repr=False)
    trusted_proxies: tuple[str, ...] = ()
    certfile: str = ""
    keyfile: str = ""
    ca_certs: str = ""
    require_client_cert: bool = False
    protected_mode: bool = True
    public_health_checks: bool = False
    # The Redis-protocol listener for Redis clients (docs/resp.md): its port on the
    # same host as `port`; 0 leaves it off.
    resp_port: int = 0

    # Where the file was read from: relative paths in it (the whitelist) are
    # resolved against its folder, and errors name it.
    source: str = attrs.field(default="", eq=False, repr=False)

    @property
    def host(self) -> str:
        host, _, _ = self.port.rpartition(":")
        # ":8080" means every interface, as in the original.
        return host.strip("[]") or "0.0.0.0"

    @property
    def port_number(self) -> int:
        return int(self.port.rpartition(":")[2])

    @property
    def bind(self) -> str:
        """The address in hypercorn's `bind` form."""
        host = self.host
        return f"[{host}]:{self.port_number}" if ":" in host else f"{host}:{self.port_number}"

    @property
    def whitelist_path(self) -> Path | None:
        return self.relative_path(self.white_list_file_path)

    def relative_path(self, name: str) -> Path | None:
        """A path named in the config, taken from the config file's folder."""
        if not name:
            return None
        path = Path(name)
        if not path.is_absolute() and self.source:
            path = Path(self.source).parent / path
        return path

    @property
    def tls(self) -> bool:
        return bool(self.certfile)

    @property
    def requires_keys(self) -> bool:
        return bool(self.read_only_keys or self.read_write_keys)

    @property
    def loopback_only(self) -> bool:
        """Whether the node listens on a loopback address only."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "<config>") -> Config:
        """Check every key of a parsed config.json and build the Config.

        Raises ConfigError naming the file and the key for an unknown key, a
        wrong type or a value out of range.
        """
        values: dict[str, Any] = {}
        # Files named in the config are found from its folder.
        folder = Path(source).parent if source != "<config>" else Path()
        for key, raw in data.items():
            check = _CHECKS.get(key)
            if check is None:
                known = ", ".join(sorted(_CHECKS))
                raise ConfigError(f"{source}: unknown key {key!r} (known keys: {known})")
            try:
                values[key] = check(raw) if key not in _SECRET_SETTINGS else check(raw, folder)
            except (TypeError, ValueError) as error:
                raise ConfigError(f"{source}: key {key!r}: {error}") from None
        if bool(values.get("certfile")) != bool(values.get("keyfile")):
            raise ConfigError(f"{source}: keys 'certfile' and 'keyfile' go together")
        if values.get("require_client_cert") and not values.get("ca_certs"):
            raise ConfigError(f"{source}: key 'require_client_cert' needs 'ca_certs'")
        client_keys = values.get("read_only_keys") or values.get("read_write_keys")
        if client_keys and values.get("peers") and not values.get("cluster_key"):
            raise ConfigError(
                f"{source}: key 'peers' needs 'cluster_key' when client keys are set "
                "(the peer routes take no client key: without it, no peer could replicate)"
            )
        for key in ("certfile", "keyfile", "ca_certs"):
            if values.get(key):
                values[key] = path = str(folder / values[key])
                if not Path(path).is_file():
                    what = "not a file" if Path(path).exists() else "no such file"
                    raise ConfigError(f"{source}: key {key!r}: {what} {path!r}")
        _check_tls_files(values, source)
        # The original treats 0 as "use the default" for these two; so do we.
        for key in ("max_retries_to_disabled_node", "heart_beat_interval_in_seconds"):
            if values.get(key) == 0:
                del values[key]
        return cls(**values, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Config:
        """Read and check a config.json file."""
        name = os.fspath(path)
        try:
            text = Path(name).read_text(encoding="utf-8-sig")  # a BOM, as some editors write
        except FileNotFoundError:
            raise ConfigError(f"{name}: config file not found") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{name}: cannot read config file: {error}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(
                f"{name}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{name}: the top level must be a JSON object")
        return cls.from_mapping(data, source=name)


def _integer(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def check(raw: Any) -> int:
        # JSON numbers like 1e7 arrive as floats; accept them when whole.
        value = int(raw) if isinstance(raw, float) and raw.is_integer() else raw
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"must be an integer, got {raw!r}")
        if value < minimum:
            raise ValueError(f"must be >= {minimum}, got {raw!r}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be <= {maximum}, got {raw!r}")
        return value

    return check


def _seconds(allow_zero: bool = False, maximum: float = math.inf) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"must be a number of seconds, got {value!r}")
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"must be {bound}, got {value}")
        if value > maximum:
            raise ValueError(f"must be <= {maximum:g}, got {value}")
        return float(value)

    return check


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, got {value!r}")
    return value


def _port(value: Any) -> str:
    text = _string(value)
    host, colon, number = text.rpartition(":")
    if not colon or not (number.isascii() and number.isdigit()):
        raise ValueError(f'must look like ":8080" or "host:8080", got {text!r}')
    # Well formed but out of range says so; the length check keeps int() from
    # a number of thousands of digits (it refuses those past 4,300).
    significant = number.lstrip("0")
    if len(significant) > 5 or not 1 <= int(significant or "0") <= 65535:
        shown = number if len(number) <= 10 else f"{number[:10]}... ({len(number)} digits)"
        raise ValueError(f"the port must be from 1 to 65535, got {shown}")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"unbalanced brackets in {text!r}")
    return text


def _peers(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError(f"must be a list of URLs, got {value!r}")
    peers = []
    for item in value:
        url = _string(item).rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{item!r} is not an http:// or https:// URL")
        peers.append(url)
    return tuple(peers)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"must be true or false, got {value!r}")
    return value


def _secret(value: Any, folder: Path = Path()) -> str:
    """A key given as is, as "env:NAME" (an environment variable) or "file:PATH"
    (from the config file's folder, unless absolute)."""
    text = _string(value)
    if text.startswith("env:"):
        name = text[4:]
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        text = os.environ[name]
    elif text.startswith("file:"):
        path = folder / text[5:]
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"cannot read key file {str(path)!r}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"key file {str(path)!r} is not UTF-8 text") from None
    text = text.strip()
    if len(text) < 16:
        raise ValueError("a key must be at least 16 characters long")
    if not header_text(text):  # one that is not could never match over HTTP
        raise ValueError("a key must be printable ASCII: it is sent in a header")
    return text


def _secrets(value: Any, folder: Path = Path()) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError("must be a list of keys")
    return tuple(_secret(item, folder) for item in value)


def _check_tls_files(values: dict[str, Any], source: str) -> None:
    """Load the TLS files once, so that one that cannot be used stops the node
    with its name (ssl's own error names neither the file nor the key)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    checks: list[tuple[str, str, Callable[[], None]]] = [
        (
            "keys 'certfile' and 'keyfile' must hold a certificate and its private key (PEM)",
            "certfile",
            lambda: context.load_cert_chain(values["certfile"], values["keyfile"]),
        ),
        (
            "key 'ca_certs' must hold CA certificates (PEM)",
            "ca_certs",
            lambda: context.load_verify_locations(values["ca_certs"]),
        ),
    ]
    for rule, key, load in checks:
        if values.get(key):
            try:
                load()
            except (ssl.SSLError, OSError) as error:
                raise ConfigError(f"{source}: {rule}; ssl says: {error}") from None


def _networks(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError("must be a list of addresses or CIDR ranges")
    for item in value:
        ipaddress.ip_network(_string(item), strict=False)
    return tuple(value)


def _node_id(value: Any) -> str:
    text = _string(value)
    if len(text) > 64 or not all(c.isalnum() or c in "-_." for c in text):
        raise ValueError("must be at most 64 letters, digits, '-', '_' or '.'")
    return text


def _resp_port(value: Any) -> int:
    number = _integer(0)(value)
    if number > 65535:
        raise ValueError(f"must be a port number 1..65535, or 0 for off; got {number}")
    return number


# The checks that take the config file's folder too (their "file:" keys).
_SECRET_SETTINGS = frozenset({"read_only_keys", "read_write_keys", "cluster_key"})

_CHECKS: dict[str, Callable[..., Any]] = {
    "port": _port,
    # 2^30 counters take 8 GiB (docs/configuration.md).
    "num_counters": _integer(1, 1 << 30),
    "max_cost": _integer(1),
    "buffer_items": _integer(1),
    "read_timeout": _seconds(),
    "write_timeout": _seconds(),
    "max_conns_per_ip": _integer(0),
    "max_requests_per_conn": _integer(0),
    "peers": _peers,
    "max_retries_to_disabled_node": _integer(0),
    "heart_beat_interval_in_seconds": _seconds(allow_zero=True),
    "white_list_file_path": _string,
    "node_id": _node_id,
    "max_key_length": _integer(1),
    "max_value_size": _integer(0),
    "max_keys_per_request": _integer(1),
    "tombstone_grace_seconds": _seconds(maximum=100 * 365 * 24 * 3600),  # 100 years
    "outbox_size": _integer(1),
    "anti_entropy_interval_in_seconds": _seconds(allow_zero=True),
    "read_only_keys": _secrets,
    "read_write_keys": _secrets,
    "cluster_key": _secret,
    "trusted_proxies": _networks,
    "certfile": _string,
    "keyfile": _string,
    "ca_certs": _string,
    "require_client_cert": _boolean,
    "protected_mode": _boolean,
    "public_health_checks": _boolean,
    "resp_port": _resp_port,
}
