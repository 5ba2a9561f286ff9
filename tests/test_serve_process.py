"""Real server processes: start-up, signals, exit codes and sockets.

Only what needs a real process is tested here. These tests use real time, so
every wait is bounded: a server that does not answer within a few seconds
fails the test with its stderr, and every process is killed in a `finally`.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from phoenix.server import raise_open_files_limit

BIN = Path(sys.executable).parent
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.1


def phoenix_command(*args: str) -> list[str]:
    script = BIN / "phoenix"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "phoenix.cli"]
    return [*command, *args]


def hypercorn_command(*args: str) -> list[str]:
    script = BIN / "hypercorn"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "hypercorn"]
    return [*command, *args]


def write_config(tmp_path: Path, settings: dict[str, Any]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"num_counters": 1000, **settings}))
    return path


def stderr_of(tmp_path: Path) -> str:
    return (tmp_path / "stderr.log").read_text(errors="replace")


async def wait_until_serving(process: trio.Process, port: int, tmp_path: Path) -> None:
    """Return once /ping answers 200; fail with the server's stderr otherwise."""
    attempts = int(START_TIMEOUT / POLL_INTERVAL)
    with trio.move_on_after(START_TIMEOUT):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
            for _ in range(attempts):
                if process.poll() is not None:
                    pytest.fail(
                        f"server exited with {process.returncode} before serving:\n"
                        + stderr_of(tmp_path)
                    )
                try:
                    if (await client.get("/ping")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(POLL_INTERVAL)
    pytest.fail(f"server did not answer /ping within {START_TIMEOUT} s:\n" + stderr_of(tmp_path))


@asynccontextmanager
async def serving(
    command: list[str], port: int, tmp_path: Path, env: dict[str, str] | None = None
) -> AsyncIterator[trio.Process]:
    """Run `command` until the block ends, once it answers /ping on `port`."""
    with (tmp_path / "stderr.log").open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=tmp_path,
            env=env,
            # Its own process group, killed whole: hypercorn's CLI serves
            # from a worker process, which outlives its parent's SIGKILL.
            start_new_session=True,
        )
        try:
            await wait_until_serving(process, port, tmp_path)
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
                os.killpg(process.pid, signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await process.wait()


async def stop(process: trio.Process, signum: signal.Signals) -> int:
    process.send_signal(signum)
    with trio.fail_after(STOP_TIMEOUT):
        return await process.wait()


async def run_to_exit(command: list[str], tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(START_TIMEOUT):
        return await trio.run_process(
            command,
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=tmp_path,
        )


async def set_and_get(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        response = await client.post(
            "/set?key=greeting&ttl=60", content=b"hello", headers={"Content-Type": "text/plain"}
        )
        assert response.status_code == 200
        assert response.json() == {"stored": True}
        response = await client.get("/get?key=greeting")
        assert response.status_code == 200
        assert response.content == b"hello"
        assert response.headers["content-type"] == "text/plain"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_phoenix_serve_serves_and_exits_0_on_signal(
    tmp_path: Path, free_port: int, signum: signal.Signals
) -> None:
    config = write_config(tmp_path, {"port": f"127.0.0.1:{free_port}", "node_id": "proc-node"})
    command = phoenix_command("serve", "--config", str(config))
    async with serving(command, free_port, tmp_path) as process:
        await set_and_get(free_port)
        async with httpx.AsyncClient(timeout=5) as client:
            ping = await client.get(f"http://127.0.0.1:{free_port}/ping")
        assert ping.json()["node_id"] == "proc-node"
        assert await stop(process, signum) == 0
    stderr = stderr_of(tmp_path)
    assert f"received {signum.name}, stopping" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"max_cost": -1}', "key 'max_cost': must be >= 1, got -1"),
        ('{"no_such_key": 1}', "unknown key 'no_such_key'"),
        ("{not json", "invalid JSON at line 1"),
        ('{"white_list_file_path": "absent.json"}', "whitelist file not found"),
    ],
    ids=["out-of-range", "unknown-key", "bad-json", "missing-whitelist"],
)
async def test_config_error_exits_2_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "config.json"
    config.write_text(text)
    result = await run_to_exit(phoenix_command("serve", "--config", str(config)), tmp_path)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"phoenix: error: {tmp_path}")
    assert expected in lines[0]


async def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    result = await run_to_exit(phoenix_command("serve", "--config", str(missing)), tmp_path)
    assert result.returncode == 2
    assert result.stderr.decode().strip() == f"phoenix: error: {missing}: config file not found"


@pytest.mark.parametrize("key", ["port", "resp_port"])
async def test_port_in_use_exits_1_naming_the_address_and_its_key(
    tmp_path: Path, free_port: int, key: str
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = {"port": f"127.0.0.1:{port}", "resp_port": free_port}
        if key == "resp_port":
            settings = {"port": f"127.0.0.1:{free_port}", "resp_port": port}
        config = write_config(tmp_path, settings)
        result = await run_to_exit(phoenix_command("serve", "--config", str(config)), tmp_path)
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    # Two ports: the line says which one is taken.
    assert f"phoenix: error: cannot serve: 127.0.0.1:{port} ({key!r} in the config):" in stderr
    assert "in use" in stderr
    assert "Traceback" not in stderr


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> bytes:
    """Read one HTTP/1.1 response with a Content-Length; return its head."""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some()
        assert data, "connection closed before a whole response arrived"
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        data = await stream.receive_some()
        assert data, "connection closed before the whole body arrived"
        rest += data
    buffer[:] = rest[length:]
    return head


async def test_connection_is_closed_after_max_requests_per_conn(
    tmp_path: Path, free_port: int
) -> None:
    config = write_config(tmp_path, {"port": f"127.0.0.1:{free_port}", "max_requests_per_conn": 2})
    request = b"GET /ping HTTP/1.1\r\nHost: node\r\n\r\n"
    async with serving(phoenix_command("serve", "--config", str(config)), free_port, tmp_path):
        stream = await trio.open_tcp_stream("127.0.0.1", free_port)
        async with stream:
            buffer = bytearray()
            with trio.fail_after(5):
                await stream.send_all(request)
                first = await read_response(stream, buffer)
                await stream.send_all(request)
                second = await read_response(stream, buffer)
            assert first.startswith(b"HTTP/1.1 200")
            assert b"connection: close" not in first.lower()
            assert second.startswith(b"HTTP/1.1 200")
            assert b"connection: close" in second.lower()
            # Closed at once, not at read_timeout (5 s).
            with trio.fail_after(2):
                assert await stream.receive_some() == b""
            assert buffer == b""


async def test_an_idle_connection_is_closed_not_left_unread(tmp_path: Path, free_port: int) -> None:
    # Such a connection was once left open unread until keep-alive's 5 s: a
    # request sent then was neither read nor answered.
    config = {"port": f"127.0.0.1:{free_port}", "read_timeout": 1, "write_timeout": 1}
    request = b"POST /set?key=k&ttl=0 HTTP/1.1\r\nHost: node\r\nContent-Length: 1\r\n\r\nv"
    command = phoenix_command("serve", "--config", str(write_config(tmp_path, config)))
    async with serving(command, free_port, tmp_path):
        for head in (request, b"GET /get?key=k HTTP/1.1\r\nHost: n"):  # answered; unfinished
            stream = await trio.open_tcp_stream("127.0.0.1", free_port)
            async with stream:
                buffer = bytearray()
                with trio.fail_after(5):
                    await stream.send_all(head)
                    if head == request:
                        assert (await read_response(stream, buffer)).startswith(b"HTTP/1.1 200")
                # Closed after read_timeout + write_timeout (2 s) of silence, not
                # left open to hypercorn's default keep-alive (5 s).
                with trio.fail_after(4):
                    assert await stream.receive_some() == b""


async def test_connection_stays_open_without_max_requests_per_conn(
    tmp_path: Path, free_port: int
) -> None:
    config = write_config(tmp_path, {"port": f"127.0.0.1:{free_port}"})
    request = b"GET /ping HTTP/1.1\r\nHost: node\r\n\r\n"
    async with serving(phoenix_command("serve", "--config", str(config)), free_port, tmp_path):
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream("127.0.0.1", free_port)
            async with stream:
                buffer = bytearray()
                for _ in range(5):
                    await stream.send_all(request)
                    head = await read_response(stream, buffer)
                    assert head.startswith(b"HTTP/1.1 200")
                    assert b"connection: close" not in head.lower()


async def test_hypercorn_serves_the_app_from_phoenix_config(tmp_path: Path, free_port: int) -> None:
    # The config's port is not used: hypercorn binds where --bind says.
    config = write_config(tmp_path, {"port": "127.0.0.1:1", "node_id": "hypercorn-node"})
    env = {**os.environ, "PHOENIX_CONFIG": str(config)}
    command = hypercorn_command(
        "--worker-class", "trio", "phoenix.app:app", "--bind", f"127.0.0.1:{free_port}"
    )
    async with serving(command, free_port, tmp_path, env=env) as process:
        await set_and_get(free_port)
        async with httpx.AsyncClient(timeout=5) as client:
            ping = await client.get(f"http://127.0.0.1:{free_port}/ping")
        assert ping.json()["node_id"] == "hypercorn-node"
        assert await stop(process, signal.SIGTERM) == 0


async def test_hypercorn_with_a_bad_config_says_why_without_a_traceback(
    tmp_path: Path, free_port: int
) -> None:
    config = write_config(tmp_path, {"max_cost": -1})
    command = hypercorn_command(
        "--worker-class", "trio", "phoenix.app:app", "--bind", f"127.0.0.1:{free_port}"
    )
    with trio.fail_after(START_TIMEOUT):
        result = await trio.run_process(
            command,
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=tmp_path,
            env={**os.environ, "PHOENIX_CONFIG": str(config)},
        )
    stderr = result.stderr.decode()
    assert f"phoenix: error: {config}: key 'max_cost': must be >= 1, got -1" in stderr
    assert "Traceback" not in stderr


async def test_protected_mode_refuses_an_open_node_beyond_loopback(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"port": ":18080", "white_list_file_path": ""})
    result = await run_to_exit(phoenix_command("serve", "--config", str(config)), tmp_path)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "protected mode" in lines[0] and "--unprotected" in lines[0]


def test_the_open_files_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard // 2, hard))
    try:
        assert raise_open_files_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
