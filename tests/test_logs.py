"""Log lines (text and JSON, the node id on each, no keys) and progress reports.

The formatters are checked on records; `phoenix serve` once per format as a
real process, with API keys in its config; a slow catch-up in the in-process
cluster under autojump_clock; `phoenix keys`' counter with a fake clock.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from cluster_harness import cluster, contents, settle
from phoenix import cli
from phoenix.logs import JsonFormatter, NodeIdFilter, TextFormatter, configure, show_node_id
from phoenix.recovery import PROGRESS_INTERVAL, CatchUpReport, Progress
from test_client import free_ports, node_processes
from test_serve_process import phoenix_command

TEXT_LINE = re.compile(
    r"^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(debug|info|warning|error|critical) "
    r'node=(?P<node>\S+) logger=\S+ msg=("([^"\\]|\\.)*"|\S+)( exc="([^"\\]|\\.)*")?$'
)


def record(message: str, *args: object, name: str = "phoenix.peers") -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, message, args, None)


def formatted(formatter: logging.Formatter, entry: logging.LogRecord, node_id: str) -> str:
    assert NodeIdFilter(node_id).filter(entry)
    return formatter.format(entry)


# The formatters.


def test_a_text_line_is_key_value_pairs_with_the_node_id() -> None:
    line = formatted(TextFormatter(), record("peer %s is up", "http://10.0.0.2:8080"), "n1")
    assert TEXT_LINE.match(line), line
    assert line.endswith(
        ' level=info node=n1 logger=phoenix.peers msg="peer http://10.0.0.2:8080 is up"'
    )


def test_a_text_value_without_spaces_is_not_quoted_and_quotes_are_escaped() -> None:
    assert formatted(TextFormatter(), record("stopping"), "n1").endswith(" msg=stopping")
    line = formatted(TextFormatter(), record('key "a=b"\nnext'), "n1")
    assert line.endswith(r' msg="key \"a=b\"\nnext"')
    assert "\n" not in line


def test_a_json_line_is_one_object_with_the_same_fields() -> None:
    line = formatted(JsonFormatter(), record("peer %s is up", "http://b"), "n1")
    entry = json.loads(line)
    assert list(entry) == ["ts", "level", "node", "logger", "msg"]
    assert entry["node"] == "n1"
    assert entry["level"] == "info"
    assert entry["logger"] == "phoenix.peers"
    assert entry["msg"] == "peer http://b is up"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_a_traceback_stays_on_the_line_of_its_event(formatter: logging.Formatter) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        entry = logging.LogRecord(
            "phoenix", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = formatted(formatter, entry, "n1")
    assert "\n" not in line
    assert "ValueError: boom" in line


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, given back as it was (handlers and level)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_lines_name_the_node_once_it_is_known(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    configure("info", "text", stream)
    logging.getLogger("phoenix").info("starting")
    show_node_id("n7")
    logging.getLogger("phoenix").info("started")
    first, second = stream.getvalue().splitlines()
    assert " node=- " in first
    assert " node=n7 " in second


def test_an_unknown_log_format_is_refused(root_logger: logging.Logger) -> None:
    with pytest.raises(ValueError, match="text, json"):
        configure("info", "xml")


# phoenix serve: every line names the node, and no key is ever written.

READ_KEY = "reader-0123456789abcdef"
WRITE_KEY = "writer-0123456789abcdef"
CLUSTER_KEY = "cluster-0123456789abcdef"
FROM_ENV = "from-env-0123456789abcdef"
WRONG_KEY = "wrong-0123456789abcdef"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_serve_logs_every_line_with_the_node_id_and_never_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_format: str
) -> None:
    monkeypatch.setenv("PHOENIX_TEST_KEY", FROM_ENV)
    own, dead = free_ports(2)
    settings = {
        "peers": [f"http://127.0.0.1:{own}", f"http://127.0.0.1:{dead}"],
        "heart_beat_interval_in_seconds": 0.2,
        "max_retries_to_disabled_node": 2,
        "read_only_keys": [READ_KEY],
        "read_write_keys": [WRITE_KEY, "env:PHOENIX_TEST_KEY"],
        "cluster_key": CLUSTER_KEY,
    }
    config = tmp_path / "log-node.json"
    command = phoenix_command(
        "serve", "--config", str(config), "--log-level", "debug", "--log-format", log_format
    )
    with node_processes(tmp_path) as nodes:
        url = nodes.start("log-node", own, settings, command=command)
        nodes.wait_ready("log-node", headers={"Authorization": f"Bearer {READ_KEY}"})
        with httpx.Client(base_url=url, timeout=5) as client:
            for key in (WRITE_KEY, FROM_ENV):
                headers = {"Authorization": f"Bearer {key}"}
                assert client.post("/set?key=k&ttl=0", content=b"v", headers=headers).is_success
            for key in (READ_KEY, WRONG_KEY):
                client.get("/get?key=k", headers={"Authorization": f"Bearer {key}"})
            client.get("/internal/ping", headers={"Authorization": f"Bearer {WRONG_KEY}"})
        # hpack logged every HTTP/2 header it decoded at debug, keys included.
        with httpx.Client(base_url=url, timeout=5, http1=False, http2=True) as client:
            response = client.get("/get?key=k", headers={"Authorization": f"Bearer {READ_KEY}"})
            assert response.http_version == "HTTP/2"
        process = nodes.processes["log-node"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        output = nodes.logs().split("\n", 1)[1]  # after the "----- log-node -----" header
    lines = output.splitlines()
    assert len(lines) >= 4, output
    for line in lines:
        if log_format == "json":
            assert json.loads(line)["node"] == "log-node", line
        else:
            match = TEXT_LINE.match(line)
            assert match is not None and match["node"] == "log-node", line
    assert "is down after" in output  # the dead peer: a warning with its error
    assert "received SIGTERM, stopping" in output
    for secret in (READ_KEY, WRITE_KEY, CLUSTER_KEY, FROM_ENV, WRONG_KEY, "Bearer"):
        assert secret not in output
    assert "/get?key=" not in output  # no access log


# Progress of a long catch-up.


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_silent_at_first_then_at_most_one_line_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="phoenix.recovery")
    time = FakeTime()
    progress = Progress("http://b", total_buckets=1000, now=time)
    report = CatchUpReport("http://b", received=40, sent=2)
    assert not progress.update(report, 10, 1000)  # a quick catch-up says nothing
    lines = 0
    for step in range(1, 1001):  # 20 s in steps of 20 ms
        time.now = step * 0.02
        lines += progress.update(report, step, 1000 * step)
    assert lines == int(20 / PROGRESS_INTERVAL)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == lines
    assert messages[0] == (
        "catching up with http://b: 100 of 1000 buckets, 40 writes received, 2 sent, "
        "100000 bytes in 2.0s (50 KB/s)"
    )


class SlowTransport(httpx.ASGITransport):
    """A node's app that takes `delay` seconds to answer anything."""

    def __init__(self, inner: httpx.ASGITransport, delay: float) -> None:
        super().__init__(app=inner.app)
        self.delay = delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await trio.sleep(self.delay)
        return await super().handle_async_request(request)


async def test_a_slow_catch_up_logs_its_progress_a_bounded_number_of_times(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="phoenix")
    async with cluster(["a", "b"]) as harness:
        await settle(2)
        harness.kill("b")
        await settle(5)  # a finds b down and stops pushing to it
        a = harness.nodes["a"]
        for i in range(2000):
            a.set(f"key:{i}", b"value", "text/plain", 0)
        # Each call b makes to a takes half a second: b's start-up catch-up
        # runs about 20 calls (digests, bucket digests, reconcile).
        harness.network.apps["a"] = SlowTransport(harness.network.apps["a"], delay=0.5)
        caplog.clear()
        b = await harness.start("b")
        await settle(20)
        assert b.ready and b.recovery == "synced from http://a"
        assert len(contents(b)) == 2000
        report = b.last_catch_up
        assert report is not None and report.peer == "http://a"
    progress = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("catching up with http://a:")
    ]
    assert report.seconds > 2 * PROGRESS_INTERVAL
    assert 1 <= len(progress) <= report.seconds / PROGRESS_INTERVAL, progress
    assert f"of {report.differing_buckets} buckets" in progress[-1]


# phoenix keys: a count of the keys listed, on a terminal.


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_key_counter_shows_after_a_delay_then_redraws_at_a_bounded_rate() -> None:
    stream, time = Terminal(), FakeTime()
    counter = cli.KeyCounter(stream, now=time, delay=1.0, interval=0.2)
    for _ in range(100):  # the first 0.5 s: nothing shown
        time.now += 0.005
        counter.add()
    assert stream.getvalue() == ""
    for _ in range(1000):  # then 5 s more
        time.now += 0.005
        counter.add()
    counter.close()
    draws = stream.getvalue().split("\r")[1:]
    assert len(draws) <= 4.5 / 0.2 + 2
    assert draws[-1] == "keys listed: 1,100\n"


def test_key_counter_says_nothing_for_a_quick_listing() -> None:
    stream, time = Terminal(), FakeTime()
    counter = cli.KeyCounter(stream, now=time)
    for _ in range(10):
        counter.add()
    counter.close()
    assert stream.getvalue() == ""


class FakeClient:
    def keys(self, pattern: str | None) -> Iterator[str]:
        return iter(["a", "b", "c"])


class Stdout:
    """Just what `phoenix keys` uses of sys.stdout."""

    def __init__(self, tty: bool) -> None:
        self.bytes = io.BytesIO()
        self.tty = tty

    @property
    def buffer(self) -> io.BytesIO:
        return self.bytes

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("stdout_tty", "stderr", "counted"),
    [(False, Terminal(), True), (True, Terminal(), False), (False, io.StringIO(), False)],
    ids=["to-a-file", "on-a-terminal", "stderr-not-a-terminal"],
)
def test_keys_counts_on_stderr_only_when_it_is_a_terminal_and_stdout_is_not(
    monkeypatch: pytest.MonkeyPatch, stdout_tty: bool, stderr: io.StringIO, counted: bool
) -> None:
    stdout = Stdout(stdout_tty)
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(cli, "KeyCounter", functools.partial(cli.KeyCounter, delay=0.0))
    args = argparse.Namespace(pattern=None)
    assert cli._keys(FakeClient(), args) == cli.EXIT_OK  # type: ignore[arg-type]
    assert stdout.bytes.getvalue() == b"a\nb\nc\n"
    assert stderr.getvalue().endswith("keys listed: 3\n") if counted else stderr.getvalue() == ""
