"""The client commands of `phoenix`, run as processes against a real node.

The node needs an API key and lists a peer that never answers, so that
`phoenix cluster` has rows to show. Every command runs with a timeout, and
the node is killed in a `finally`.
"""

from __future__ import annotations

import doctest
import os
import re
import selectors
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from phoenix.client import PhoenixClient
from test_client import free_ports, node_processes
from test_serve_process import phoenix_command

KEY = "cli-writer-key-0123456789"
COMMAND_TIMEOUT = 15.0
CLIENT_COMMANDS = ("get", "set", "del", "keys", "flush", "cluster")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(URL of a ready node, URL of its peer that never answers)."""
    own, dead = free_ports(2)
    peers = [f"http://127.0.0.1:{own}", f"http://127.0.0.1:{dead}"]
    with node_processes(tmp_path_factory.mktemp("cli")) as nodes:
        url = nodes.start(
            "cli",
            own,
            {
                "peers": peers,
                "heart_beat_interval_in_seconds": 0.5,
                "max_retries_to_disabled_node": 2,
                "read_write_keys": [KEY],
                "cluster_key": "cluster-key-0123456789",
            },
        )
        nodes.wait_ready("cli", headers={"Authorization": f"Bearer {KEY}"})
        peer_states_are(url, ["self", "down"])
        yield url, peers[1]


def peer_states_are(url: str, states: list[str]) -> None:
    """Until the node's /cluster shows its peers in these states."""
    deadline = time.monotonic() + COMMAND_TIMEOUT
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(timeout=2, headers=headers) as http:
        while [peer["state"] for peer in http.get(f"{url}/cluster").json()["peers"]] != states:
            if time.monotonic() > deadline:
                pytest.fail(f"peers of {url} not {states} within {COMMAND_TIMEOUT} s")
            time.sleep(0.05)


@pytest.fixture
def cache(node: tuple[str, str]) -> Iterator[PhoenixClient]:
    """A client of the node, which starts empty: to set up and check what commands do."""
    with PhoenixClient(node[0], api_key=KEY) as client:
        client.flush()
        yield client


@pytest.fixture
def url(node: tuple[str, str], cache: PhoenixClient) -> str:
    """The node's URL; the node starts empty."""
    return node[0]


def environment(url: str | None, api_key: str | None = KEY) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PHOENIX_")}
    if url is not None:
        env["PHOENIX_URL"] = url
    if api_key is not None:
        env["PHOENIX_API_KEY"] = api_key
    return env


def phoenix(
    url: str | None, *args: str, stdin: bytes = b"", api_key: str | None = KEY
) -> subprocess.CompletedProcess[bytes]:
    """Run `phoenix ARGS` with $PHOENIX_URL and $PHOENIX_API_KEY set."""
    return subprocess.run(
        phoenix_command(*args),
        input=stdin,
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        env=environment(url, api_key),
        check=False,
    )


def one_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text
    lines = text.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_set_then_get_round_trips(url: str) -> None:
    stored = phoenix(url, "set", "greeting", "hello", "--ttl", "60")
    assert (stored.returncode, stored.stdout, stored.stderr) == (0, b"", b"")
    got = phoenix(url, "get", "greeting")
    assert (got.returncode, got.stdout, got.stderr) == (0, b"hello", b"")


def test_options_may_come_between_the_key_and_the_value(url: str, cache: PhoenixClient) -> None:
    # argparse alone left "hello" unread: "unrecognized arguments: hello".
    stored = phoenix(url, "set", "greeting", "--ttl", "60", "hello")
    assert (stored.returncode, stored.stderr) == (0, b"")
    assert cache.get("greeting") == b"hello"
    assert 0 < (cache.ttl("greeting") or 0) <= 60


def test_set_reads_stdin_and_get_writes_the_raw_bytes(url: str) -> None:
    value = bytes(range(256)) + b"\r\n\x00"
    stored = phoenix(url, "set", "blob", stdin=value)
    # Not a terminal: nothing said, as for any filter.
    assert (stored.returncode, stored.stderr) == (0, b"")
    got = phoenix(url, "get", "blob")
    assert got.returncode == 0
    assert got.stdout == value


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_set_from_a_terminal_says_it_reads_until_end_of_file(
    url: str, cache: PhoenixClient
) -> None:
    """A user who types `phoenix set KEY` is told what it waits for, then can type the value."""
    terminal, its_stdin = os.openpty()
    process = subprocess.Popen(
        phoenix_command("set", "typed"),
        stdin=its_stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(url),
    )
    os.close(its_stdin)
    try:
        assert process.stderr is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stderr, selectors.EVENT_READ)
            # Said before it reads: nothing is typed until the line is there.
            assert selector.select(COMMAND_TIMEOUT), "no word on stderr while waiting for stdin"
        hint = process.stderr.readline().decode()
        assert hint.startswith("phoenix: reading the value of typed from stdin until end of file")
        assert "Ctrl-D" in hint
        os.write(terminal, b"typed value\n\x04")  # a line, then Ctrl-D at the start of the next
        stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        os.close(terminal)
        process.kill()
        process.wait()
    assert (process.returncode, stdout, stderr) == (0, b"", b"")
    assert cache.get("typed") == b"typed value\n"


def test_get_of_a_missing_key_exits_1(url: str) -> None:
    got = phoenix(url, "get", "missing")
    assert got.returncode == 1
    assert got.stdout == b""
    assert one_line(got.stderr) == "phoenix: key not found: missing"


def test_no_node_answering_exits_3_with_one_line() -> None:
    unused = f"http://127.0.0.1:{free_ports(1)[0]}"
    for args in (("get", "k"), ("set", "k", "v")):
        result = phoenix(unused, *args)
        assert result.returncode == 3, args
        assert one_line(result.stderr).startswith(f"phoenix: error: no node answered ({unused}: ")


def test_url_and_api_key_options_override_the_environment(url: str) -> None:
    unused = f"http://127.0.0.1:{free_ports(1)[0]}"
    result = phoenix(unused, "set", "k", "v", "--url", url, "--api-key", KEY, api_key=None)
    assert result.returncode == 0, result.stderr
    # Several --url: the first does not answer, the second does.
    result = phoenix(None, "get", "k", "--url", unused, "--url", url)
    assert (result.returncode, result.stdout) == (0, b"v")


def test_a_refused_api_key_or_bad_url_exits_2(url: str) -> None:
    result = phoenix(url, "get", "k", api_key=None)
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        "phoenix: error: an API key is required (Authorization: Bearer KEY) (HTTP 401)"
    )
    result = phoenix("127.0.0.1:8080", "get", "k")
    assert result.returncode == 2
    assert one_line(result.stderr).startswith("phoenix: error: invalid node URL '127.0.0.1:8080'")


def test_usage_errors_exit_2(url: str) -> None:
    assert phoenix(url, "get").returncode == 2
    assert phoenix(url, "set", "k", "v", "--ttl", "soon").returncode == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # With the command's usage line, not the top-level one.
        (("get", "a", "b"), "phoenix get: error: unrecognized arguments: b"),
        # Said here, not by the node as "parameter 'key' is required".
        (("get", ""), "phoenix get: error: argument KEY: a key must not be empty"),
        (("del", ""), "phoenix del: error: argument KEY: a key must not be empty"),
        (
            ("keys", ""),
            "phoenix keys: error: argument PATTERN: a pattern must not be empty "
            "(omit it to list every key)",
        ),
    ],
)
def test_usage_errors_name_the_command(url: str, args: tuple[str, ...], message: str) -> None:
    result = phoenix(url, *args)
    assert result.returncode == 2
    assert message in result.stderr.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--timeout", "inf"), "argument --timeout: must be a number of seconds above 0"),
        (("--content-type", "t\u00e9xt"), "argument --content-type: must be printable ASCII"),
        (("--content-type", "a\nb"), "argument --content-type: must be printable ASCII"),
        (("--api-key", "bad\nkey-0123456789"), "an API key must be printable ASCII"),
        (("--url", "http://127.0.0.1:99999"), "the port must be from 1 to 65535"),
        (("--ttl", "9" * 5000), "argument --ttl: must be a whole number of seconds"),
    ],
)
def test_arguments_that_cannot_be_sent_exit_2_without_a_traceback(
    url: str, args: tuple[str, ...], message: str
) -> None:
    result = phoenix(url, "set", "k", "v", *args)
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_output_that_cannot_be_written_exits_2_with_one_line(url: str) -> None:
    assert phoenix(url, "set", "k", "v").returncode == 0
    for args in (("get", "k"), ("keys",)):
        with open("/dev/full", "wb") as full:
            result = subprocess.run(
                phoenix_command(*args),
                stdout=full,
                stderr=subprocess.PIPE,
                timeout=COMMAND_TIMEOUT,
                env=environment(url),
                check=False,
            )
        assert result.returncode == 2, args
        assert one_line(result.stderr) == (
            "phoenix: error: cannot read the input or write the output: "
            "[Errno 28] No space left on device"
        )


def test_keys_lists_every_key_or_those_matching(url: str, cache: PhoenixClient) -> None:
    cache.set_many(dict.fromkeys(["user:1", "user:2", "order:1"], "v"))
    every = phoenix(url, "keys")
    assert every.returncode == 0
    assert sorted(every.stdout.decode().splitlines()) == ["order:1", "user:1", "user:2"]
    users = phoenix(url, "keys", "user:*")
    assert sorted(users.stdout.decode().splitlines()) == ["user:1", "user:2"]


def test_del_and_flush(url: str, cache: PhoenixClient) -> None:
    cache.set_many({"a": "1", "b": "2"})
    assert phoenix(url, "del", "a").returncode == 0
    assert list(cache.keys()) == ["b"]
    # Removing a key that is not there is not an error.
    assert phoenix(url, "del", "a").returncode == 0
    assert phoenix(url, "flush").returncode == 0
    assert list(cache.keys()) == []


def test_cluster_prints_a_table_of_peers(node: tuple[str, str]) -> None:
    url, dead = node
    result = phoenix(url, "cluster")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith("node cli: ready; recovery: ")
    assert lines[1].split() == [
        "URL", "NODE", "STATE", "FAILURES", "OUTBOX", "CATCH-UP", "LAST", "CONTACT",
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows[url][1:3] == ["cli", "self"]
    assert rows[dead][1:3] == ["-", "down"]
    assert rows[dead][-1] == "never"


async def test_help_works_for_every_command() -> None:
    results: dict[str, subprocess.CompletedProcess[bytes]] = {}

    async def help_of(*command: str) -> None:
        results[" ".join(command)] = await trio.run_process(
            phoenix_command(*command, "--help"), capture_stdout=True, capture_stderr=True
        )

    with trio.fail_after(COMMAND_TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(help_of)
            for command in ("serve", *CLIENT_COMMANDS):
                nursery.start_soon(help_of, command)
    assert all(result.returncode == 0 for result in results.values())
    for command in CLIENT_COMMANDS:
        usage = results[command].stdout.decode()
        assert usage.startswith(f"usage: phoenix {command} ")
        assert "--url URL" in usage
        assert "--api-key KEY" in usage
    top = results[""].stdout.decode()
    assert all(command in top for command in ("serve", *CLIENT_COMMANDS))


# The examples of docs/cli.md, run as they are written.

DOCS = Path(__file__).parent.parent / "docs" / "cli.md"


def console_sessions(text: str) -> list[tuple[str, str]]:
    """(command, expected output) for each `$ ` line of the ```console blocks."""
    sessions: list[tuple[str, str]] = []
    for block in re.findall(r"```console\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                sessions.append((line[2:], ""))
            else:
                command, output = sessions[-1]
                sessions[-1] = (command, output + line + "\n")
    return sessions


def test_the_examples_of_docs_cli_md(url: str, tmp_path: Path) -> None:
    text = DOCS.read_text(encoding="utf-8").replace("http://127.0.0.1:8080", url)
    sessions = console_sessions(text)
    assert len(sessions) > 10
    env = environment(url)
    env["PATH"] = f"{Path(phoenix_command()[0]).parent}{os.pathsep}{env.get('PATH', '')}"
    checker = doctest.OutputChecker()
    for command, expected in sessions:
        result = subprocess.run(
            ["bash", "-c", command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=COMMAND_TIMEOUT,
            env=env,
            cwd=tmp_path,
            check=False,
        )
        output = result.stdout.decode(errors="replace")
        # `get` adds no newline; a terminal shows the value on its own line all the same.
        if output and not output.endswith("\n"):
            output += "\n"
        assert checker.check_output(expected, output, doctest.ELLIPSIS), (command, output)
        assert result.returncode == 0, (command, output)
