from __future__ import annotations

import json
from pathlib import Path

import pytest

from phoenix.config import Config
from phoenix.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.json"
    path.write_text(text)
    return path


def test_shipped_config_loads_for_a_single_loopback_node() -> None:
    config = Config.load(ROOT / "config.json")
    assert config.host == "127.0.0.1"
    assert config.port_number == 8080
    assert config.peers == ()
    assert config.whitelist_path == ROOT / "whitelist.json"


def test_original_config_with_every_key_loads(tmp_path: Path) -> None:
    original = {
        "port": ":8080",
        "num_counters": 1e7,
        "max_cost": 1073741824,
        "buffer_items": 64,
        "read_timeout": 5,
        "write_timeout": 5,
        "max_conns_per_ip": 1000,
        "max_requests_per_conn": 10,
        "peers": ["http://localhost:8080", "http://localhost:8081/"],
        "max_retries_to_disabled_node": 3,
        "heart_beat_interval_in_seconds": 5,
        "white_list_file_path": "whitelist.json",
    }
    config = Config.load(write(tmp_path, json.dumps(original)))
    assert config.num_counters == 10_000_000
    assert config.host == "0.0.0.0"
    assert config.bind == "0.0.0.0:8080"
    assert config.peers == ("http://localhost:8080", "http://localhost:8081")
    assert config.whitelist_path == tmp_path / "whitelist.json"


def test_missing_keys_take_defaults(tmp_path: Path) -> None:
    assert Config.load(write(tmp_path, "{}")) == Config()


def test_zero_heartbeat_and_retries_mean_default_as_in_the_original(tmp_path: Path) -> None:
    text = '{"heart_beat_interval_in_seconds": 0, "max_retries_to_disabled_node": 0}'
    config = Config.load(write(tmp_path, text))
    assert config.heart_beat_interval_in_seconds == Config().heart_beat_interval_in_seconds
    assert config.max_retries_to_disabled_node == Config().max_retries_to_disabled_node


def test_a_port_with_leading_zeros_is_its_number(tmp_path: Path) -> None:
    assert Config.load(write(tmp_path, '{"port": ":000080"}')).port_number == 80


def test_ipv6_port_binds_in_brackets(tmp_path: Path) -> None:
    config = Config.load(write(tmp_path, '{"port": "[::1]:9000"}'))
    assert config.host == "::1"
    assert config.bind == "[::1]:9000"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"max_cost": -1}', "'max_cost': must be >= 1"),
        ('{"read_timeout": -2}', "'read_timeout': must be > 0"),
        ('{"buffer_items": "64"}', "'buffer_items': must be an integer"),
        ('{"max_cost": true}', "'max_cost': must be an integer"),
        ('{"max_cost": 1.5}', "'max_cost': must be an integer"),
        ('{"port": 8080}', "'port': must be a string"),
        ('{"port": "8080"}', "'port': must look like"),
        # A port out of range says so, not that the setting is misshapen.
        ('{"port": ":99999"}', "'port': the port must be from 1 to 65535, got 99999"),
        ('{"port": "localhost:0"}', "'port': the port must be from 1 to 65535, got 0"),
        ('{"port": "[::1]:65536"}', "'port': the port must be from 1 to 65535, got 65536"),
        ('{"port": ":' + "9" * 5000 + '"}', "'port': the port must be from 1 to 65535, got 99999"),
        ('{"peers": "http://a"}', "'peers': must be a list"),
        ('{"peers": ["ftp://a"]}', "'peers': 'ftp://a' is not an http"),
        ('{"node_id": "a b"}', "'node_id': must be at most 64"),
        ('{"colour": "red"}', "unknown key 'colour'"),
        ("[1, 2]", "the top level must be a JSON object"),
        ('{"port": ":8080",}', "invalid JSON at line 1"),
        # Values that would not fit in memory or in a date.
        ('{"num_counters": 1e18}', "'num_counters': must be <= 1073741824"),
        ('{"tombstone_grace_seconds": 1e308}', "'tombstone_grace_seconds': must be <= 3.1536e+09"),
        # A number as it was written, not a 300-digit integer.
        ('{"num_counters": 1e300}', "must be <= 1073741824, got 1e+300"),
        # A digit that is not an ASCII digit ("²" passed isdigit, then int() failed).
        ('{"port": "127.0.0.1:\u00b2"}', "'port': must look like"),
        ('{"certfile": ".", "keyfile": "."}', "'certfile': not a file"),
    ],
)
def test_bad_config_names_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        Config.load(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert expected in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        Config.load(tmp_path / "nope.json")


def test_a_byte_order_mark_is_taken_as_editors_write_it(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'\xef\xbb\xbf{"node_id": "with-bom"}')
    assert Config.load(path).node_id == "with-bom"
