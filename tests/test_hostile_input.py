"""A real node keeps serving through garbage, truncated requests and slow clients."""

from __future__ import annotations

import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import h2.connection
import h2.events
import h2.settings
import httpx
import trio

from test_serve_process import hypercorn_command, phoenix_command, serving, stderr_of, write_config

SEED = 20261125


async def send_and_drop(port: int, payload: bytes, linger: float) -> None:
    """Open a connection, send `payload`, read a little, close.

    The node may close the connection before all of a hostile payload is
    sent (an oversized request line or header block): that is its answer.
    """
    with trio.move_on_after(2):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            try:
                await stream.send_all(payload)
                with trio.move_on_after(linger):
                    await stream.receive_some(4096)
            except trio.BrokenResourceError:
                pass


def hostile_payloads(rng: random.Random) -> list[bytes]:
    request = b"POST /set?key=k&ttl=0 HTTP/1.1\r\nHost: n\r\nContent-Length: 10\r\n\r\n0123456789"
    payloads = [rng.randbytes(rng.randint(1, 2048)) for _ in range(40)]
    payloads += [request[: rng.randint(1, len(request) - 1)] for _ in range(20)]
    payloads += [
        b"GET /get?key=%ff%fe HTTP/1.1\r\nHost: n\r\n\r\n",
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
        b"POST /set?key=k&ttl=0 HTTP/1.1\r\nHost: n\r\nContent-Length: -5\r\n\r\n",
        b"POST /set?key=k&ttl=0 HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /get?key=k HTTP/1.1\r\n" + b"X-Filler: x\r\n" * 5000 + b"\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(64),  # a TLS hello
    ]
    return payloads


async def test_node_survives_random_bytes_and_truncated_requests(
    tmp_path: Path, free_port: int
) -> None:
    config = write_config(tmp_path, {"port": f"127.0.0.1:{free_port}", "read_timeout": 1})
    rng = random.Random(SEED)
    command = phoenix_command("serve", "--config", str(config))
    async with (
        serving(command, free_port, tmp_path),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port}", timeout=5) as http,
    ):
        response = await http.post("/set", params={"key": "kept", "ttl": 0}, content=b"v")
        assert response.status_code == 200
        payloads = hostile_payloads(rng)
        with trio.fail_after(30):
            for start in range(0, len(payloads), 16):
                async with trio.open_nursery() as nursery:
                    for payload in payloads[start : start + 16]:
                        nursery.start_soon(send_and_drop, free_port, payload, 0.2)
        # Still serving, data intact.
        assert (await http.get("/get", params={"key": "kept"})).content == b"v"
        assert (await http.get("/ping")).status_code == 200


async def test_slow_loris_body_is_cut_off_and_the_node_keeps_serving(
    tmp_path: Path, free_port: int
) -> None:
    config = write_config(tmp_path, {"port": f"127.0.0.1:{free_port}", "read_timeout": 1})
    async with serving(phoenix_command("serve", "--config", str(config)), free_port, tmp_path):
        stream = await trio.open_tcp_stream("127.0.0.1", free_port)
        async with stream:
            head = b"POST /set?key=slow&ttl=0 HTTP/1.1\r\nHost: n\r\nContent-Length: 100\r\n\r\n"
            await stream.send_all(head)
            answer = b""
            with trio.fail_after(5):
                # One byte every 0.3 s: each read is quick, the body never completes.
                for _ in range(15):
                    try:
                        await stream.send_all(b"x")
                    except trio.BrokenResourceError:
                        break
                    with trio.move_on_after(0.3):
                        answer += await stream.receive_some(4096)
                    if answer:
                        break
            assert answer.startswith(b"HTTP/1.1 408")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port}", timeout=5) as http:
            assert (await http.get("/get", params={"key": "slow"})).status_code == 404
            assert (await http.get("/ping")).status_code == 200


async def read_until_closed(port: int, payload: bytes) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        with trio.move_on_after(2):
            try:
                await stream.send_all(payload)
                while await stream.receive_some(4096):
                    pass
            except trio.BrokenResourceError:
                pass


async def test_node_survives_bytes_after_a_request_that_closes_the_connection(
    tmp_path: Path, free_port: int
) -> None:
    # hypercorn answered the extra bytes while the answer's task closed the
    # stream; trio refused the second sender, and that once ended the server
    # within a few tries (hypercorn issue #203).
    closing = b"HTTP/1.1\r\nHost: n\r\nConnection: close\r\n"
    payloads = [
        b"POST /set?key=k&ttl=0 " + closing + b"Content-Length: 1\r\n\r\nabc",
        b"GET /get?key=k " + closing + b"\r\nabc",
        b"POST /getKeys " + closing + b"Content-Length: 2\r\n\r\n[]abc",
        b"POST /set?key=k&ttl=0 HTTP/1.0\r\nHost: n\r\nContent-Length: 1\r\n\r\nabc",
    ]
    config = write_config(tmp_path, {"port": f"127.0.0.1:{free_port}"})
    async with (
        serving(phoenix_command("serve", "--config", str(config)), free_port, tmp_path),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port}", timeout=5) as http,
    ):
        with trio.fail_after(60):
            for _ in range(25):
                for payload in payloads:
                    await read_until_closed(free_port, payload)
        assert (await http.get("/ping")).status_code == 200
    # Handled as the closing it is: no error, and no traceback, per connection.
    assert "level=error" not in stderr_of(tmp_path)


async def test_node_survives_an_http2_body_that_ends_after_its_408(
    tmp_path: Path, free_port: int
) -> None:
    # The end of the stream, coming after the answer, met a KeyError in
    # hypercorn's table of streams, which ended the server.
    connection = h2.connection.H2Connection()
    connection.initiate_connection()
    headers = [
        (":method", "POST"),
        (":path", "/set?key=k&ttl=0"),
        (":scheme", "http"),
        (":authority", "n"),
        ("content-length", "5"),
    ]
    connection.send_headers(1, headers)
    connection.send_data(1, b"abcde")
    config = write_config(tmp_path, {"port": f"127.0.0.1:{free_port}", "read_timeout": 1})
    async with (
        serving(phoenix_command("serve", "--config", str(config)), free_port, tmp_path),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port}", timeout=5) as http,
    ):
        stream = await trio.open_tcp_stream("127.0.0.1", free_port)
        async with stream:
            with trio.fail_after(10):
                await stream.send_all(connection.data_to_send())
                answered = False
                while not answered:  # the 408, after read_timeout
                    events = connection.receive_data(await stream.receive_some(65536))
                    answered = any(isinstance(e, h2.events.ResponseReceived) for e in events)
                    await stream.send_all(connection.data_to_send())
                connection.end_stream(1)
                connection.ping(b"after-it")
                await stream.send_all(connection.data_to_send())
                # The node has read the end of the stream once it answers the
                # ping behind it, or ends the connection (the error is then
                # that connection's alone): not before.
                acknowledged = False
                while not acknowledged:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    events = connection.receive_data(data)
                    acknowledged = any(isinstance(e, h2.events.PingAckReceived) for e in events)
        assert (await http.get("/ping")).status_code == 200


def open_descriptors(process: trio.Process) -> int:
    return len(os.listdir(f"/proc/{process.pid}/fd"))


@asynccontextmanager
async def node_holding_big(
    tmp_path: Path, port: int, size: int, settings: dict[str, int]
) -> AsyncIterator[httpx.AsyncClient]:
    """A node serving on `port` whose key "big" holds `size` bytes; a client of it."""
    limits = {"max_value_size": size, "max_cost": 4 * size, **settings}
    config = write_config(tmp_path, {"port": f"127.0.0.1:{port}", **limits})
    async with (
        serving(phoenix_command("serve", "--config", str(config)), port, tmp_path),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http,
    ):
        await http.post("/set", params={"key": "big", "ttl": 0}, content=b"v" * size)
        yield http


async def ask_for_big(port: int, receive_buffer: int) -> trio.SocketStream:
    """A connection that has asked for "big", with a receive buffer of that many bytes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await stream.send_all(b"GET /get?key=big HTTP/1.1\r\nHost: n\r\n\r\n")
    return stream


async def assert_cut_off_when_taking_nothing(port: int, size: int) -> None:
    """Ask for "big" (`size` bytes), take nothing for 3 s, then find the answer cut short."""
    async with await ask_for_big(port, 4096) as stream:
        await trio.sleep(3)  # taking nothing for three times write_timeout
        received = 0
        with trio.fail_after(10):
            with contextlib.suppress(trio.BrokenResourceError):
                while data := await stream.receive_some(1024 * 1024):
                    received += len(data)
        assert 0 < received < size


async def test_a_client_that_takes_nothing_of_its_answer_is_cut_off_after_write_timeout(
    tmp_path: Path, free_port: int
) -> None:
    # hypercorn's send has no bound: such a client held its connection forever.
    size = 16 * 1024 * 1024  # more than the kernel's buffers on both sides take
    async with node_holding_big(tmp_path, free_port, size, {"write_timeout": 1}) as http:
        await assert_cut_off_when_taking_nothing(free_port, size)
        assert (await http.get("/ping")).status_code == 200


async def test_under_hypercorn_s_own_cli_too_a_client_that_takes_nothing_is_cut_off(
    tmp_path: Path, free_port: int
) -> None:
    # hypercorn's CLI builds its own config, which carried no write_timeout.
    size = 16 * 1024 * 1024
    settings = {"write_timeout": 1, "max_value_size": size, "max_cost": 4 * size}
    config = write_config(tmp_path, {"port": "127.0.0.1:1", **settings})
    env = {**os.environ, "PHOENIX_CONFIG": str(config)}
    command = hypercorn_command(
        "--worker-class", "trio", "phoenix.app:app", "--bind", f"127.0.0.1:{free_port}"
    )
    async with (
        serving(command, free_port, tmp_path, env=env),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port}", timeout=5) as http,
    ):
        await http.post("/set", params={"key": "big", "ttl": 0}, content=b"v" * size)
        await assert_cut_off_when_taking_nothing(free_port, size)


async def test_a_client_that_reads_slowly_but_steadily_gets_its_whole_answer(
    tmp_path: Path, free_port: int
) -> None:
    # Also when it is the connection's last answer and the client sends the
    # next request meanwhile: that close waits for the answer while it goes on.
    size = 4 * 1024 * 1024
    settings = {"write_timeout": 1, "max_requests_per_conn": 1}
    async with node_holding_big(tmp_path, free_port, size, settings):
        async with await ask_for_big(free_port, 65536) as stream:
            answer = bytearray()
            started = trio.current_time()
            with trio.fail_after(30):
                # 64 KiB every 20 ms: about 3 MB a second, so the answer takes
                # longer than write_timeout; no 64 KiB piece waits that long.
                while not answer.endswith(b"v" * 1024) or len(answer) < size:
                    data = await stream.receive_some(65536)
                    assert data, f"cut off after {len(answer)} bytes"
                    answer += data
                    if len(answer) == len(data):
                        await stream.send_all(b"GET /get?key=big HTTP/1.1\r\nHost: n\r\n\r\n")
                    await trio.sleep(0.02)
            assert trio.current_time() - started > 1
        assert answer.startswith(b"HTTP/1.1 200")


async def test_a_connection_with_body_parts_its_answer_left_unread_is_freed(
    tmp_path: Path, free_port: int
) -> None:
    # hypercorn queues at most 10 parts of a body for the app; a GET's route
    # answers without reading its body, and from the 11th part on hypercorn
    # stopped reading the connection, which it then held until restart. Here
    # over HTTP/2 with a window of 0, so that the answer is never sent either.
    settings = {"read_timeout": 1, "write_timeout": 1}
    config = write_config(tmp_path, {"port": f"127.0.0.1:{free_port}", **settings})
    async with serving(
        phoenix_command("serve", "--config", str(config)), free_port, tmp_path
    ) as process:
        before = open_descriptors(process)
        for _ in range(5):
            connection = h2.connection.H2Connection()
            connection.initiate_connection()
            connection.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
            headers = [
                (":method", "GET"),
                (":path", "/get?key=k"),
                (":scheme", "http"),
                (":authority", "n"),
                ("content-length", "2000"),
            ]
            connection.send_headers(1, headers)
            stream = await trio.open_tcp_stream("127.0.0.1", free_port)
            async with stream:
                await stream.send_all(connection.data_to_send())
                for _ in range(20):
                    connection.send_data(1, b"x" * 100)
                    await stream.send_all(connection.data_to_send())
                    await trio.sleep(0.01)  # each part in a read of its own
        with trio.fail_after(10):
            while open_descriptors(process) > before:
                await trio.sleep(0.1)


async def open_http2(
    port: int, window: int, paths: list[str]
) -> tuple[trio.SocketStream, h2.connection.H2Connection]:
    """An HTTP/2 connection that opened with flow-control `window` and asked for `paths`."""
    connection = h2.connection.H2Connection()
    connection.initiate_connection()
    connection.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    for number, path in enumerate(paths):
        headers = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "n")]
        connection.send_headers(1 + 2 * number, headers, end_stream=True)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(connection.data_to_send())
    return stream, connection


async def receive_until_closed_by_node(stream: trio.SocketStream) -> None:
    with contextlib.suppress(trio.BrokenResourceError):
        while await stream.receive_some(65536):
            pass


async def test_http2_answers_a_client_never_lets_out_are_cut_off_after_write_timeout(
    tmp_path: Path, free_port: int
) -> None:
    # A window of 0 held each stream's task (and, for the 429s past
    # max_conns_per_ip, which bound nothing of their own) with the connection
    # for as long as the client kept it open.
    settings = {"write_timeout": 1, "max_conns_per_ip": 2}
    async with node_holding_big(tmp_path, free_port, 50_000, settings) as http:
        streams = [(await open_http2(free_port, 0, ["/get?key=big"] * 3))[0] for _ in range(5)]
        started = trio.current_time()
        with trio.fail_after(10):
            for stream in streams:
                await receive_until_closed_by_node(stream)
        assert trio.current_time() - started < 5
        for stream in streams:
            await stream.aclose()
        assert (await http.get("/ping")).status_code == 200


async def test_http2_connections_with_answers_waiting_are_freed_when_the_client_closes(
    tmp_path: Path, free_port: int
) -> None:
    # The close did not end a stream's wait for the window, so hypercorn's
    # connection task waited for it forever: the socket stayed in CLOSE-WAIT.
    settings = {"write_timeout": 60, "max_conns_per_ip": 2}
    async with node_holding_big(tmp_path, free_port, 50_000, settings) as http:
        await http.aclose()  # its connection would count as the node's
        streams = [(await open_http2(free_port, 0, ["/get?key=big"] * 3))[0] for _ in range(5)]
        await trio.sleep(0.5)  # every stream has answered as far as the window lets it
        for stream in streams:
            await stream.aclose()
        with trio.fail_after(10):
            while connections_not_closed_by_node(free_port):
                await trio.sleep(0.1)
        # The streams' tasks ended too: they held the address's max_conns_per_ip slots.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port}") as fresh:
            assert (await fresh.get("/ping")).status_code == 200


def connections_not_closed_by_node(port: int) -> int:
    """The node's TCP connections on `port` (IPv4) that it has not closed yet."""
    not_closed = {"01", "08"}  # ESTABLISHED, CLOSE_WAIT
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    fields = (row.split() for row in rows)
    return sum(f[1].endswith(f":{port:04X}") and f[3] in not_closed for f in fields)


async def test_a_kept_alive_connection_the_client_closes_is_closed_at_once(
    tmp_path: Path, free_port: int
) -> None:
    # hypercorn left it to the keep-alive timer (read_timeout + write_timeout):
    # a client that opened and closed connections held a descriptor for each.
    settings = {"read_timeout": 30, "write_timeout": 30}
    config = write_config(tmp_path, {"port": f"127.0.0.1:{free_port}", **settings})
    async with serving(phoenix_command("serve", "--config", str(config)), free_port, tmp_path):
        for _ in range(10):
            stream = await trio.open_tcp_stream("127.0.0.1", free_port)
            async with stream:
                await stream.send_all(b"GET /ping HTTP/1.1\r\nHost: n\r\n\r\n")
                with trio.fail_after(5):
                    assert (await stream.receive_some(4096)).startswith(b"HTTP/1.1 200")
                await trio.sleep(0.05)  # the connection is at rest, kept alive
        with trio.fail_after(5):
            while connections_not_closed_by_node(free_port):
                await trio.sleep(0.1)


async def test_a_slow_but_steady_http2_reader_gets_its_whole_answer(
    tmp_path: Path, free_port: int
) -> None:
    # It reads one of its two streams and leaves the other waiting: the
    # connection makes progress, so neither stream's wait closes it.
    size = 400_000
    async with node_holding_big(tmp_path, free_port, size, {"write_timeout": 1}):
        paths = ["/get?key=big", "/get?key=big"]
        stream, connection = await open_http2(free_port, 16_384, paths)
        body = bytearray()
        started = trio.current_time()
        async with stream:
            with trio.fail_after(30):
                ended = False
                while not ended:
                    data = await stream.receive_some(65536)
                    assert data, f"cut off after {len(body)} bytes"
                    for event in connection.receive_data(data):
                        if isinstance(event, h2.events.DataReceived) and event.stream_id == 1:
                            body += event.data
                            # 16 KiB every 0.1 s: the answer takes longer than write_timeout.
                            await trio.sleep(0.1)
                            connection.acknowledge_received_data(event.flow_controlled_length, 1)
                        if isinstance(event, h2.events.StreamEnded):
                            ended = ended or event.stream_id == 1
                    await stream.send_all(connection.data_to_send())
        assert bytes(body) == b"v" * size
        assert trio.current_time() - started > 2


async def test_a_client_that_half_closes_after_its_request_gets_its_whole_answer(
    tmp_path: Path, free_port: int
) -> None:
    # As `printf 'GET ...' | nc` does. Closing at the client's end of
    # stream (once the keep-alive timer no longer did it) cut such answers.
    size = 1_000_000
    async with node_holding_big(tmp_path, free_port, size, {"write_timeout": 2}):
        for _ in range(5):
            async with await ask_for_big(free_port, 65536) as stream:
                await stream.send_eof()
                answer = bytearray()
                with trio.fail_after(10):
                    while data := await stream.receive_some(65536):
                        answer += data
                assert answer.startswith(b"HTTP/1.1 200")
                assert answer.endswith(b"\r\n\r\n" + b"v" * size)


async def test_a_websocket_upgrade_is_refused_without_an_error_in_the_log(
    tmp_path: Path, free_port: int
) -> None:
    upgrade = (
        b"GET /get?key=k HTTP/1.1\r\nHost: n\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    config = write_config(tmp_path, {"port": f"127.0.0.1:{free_port}"})
    async with serving(phoenix_command("serve", "--config", str(config)), free_port, tmp_path):
        stream = await trio.open_tcp_stream("127.0.0.1", free_port)
        async with stream:
            await stream.send_all(upgrade)
            with trio.fail_after(5):
                assert (await stream.receive_some(4096)).startswith(b"HTTP/1.1 403")
        # Bytes after the upgrade break hypercorn's state: the connection ends.
        for _ in range(5):
            await read_until_closed(free_port, upgrade + b"x")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port}", timeout=5) as http:
            assert (await http.get("/ping")).status_code == 200
    assert "level=error" not in stderr_of(tmp_path)


async def test_a_pipelining_client_gets_every_answer_up_to_max_requests_per_conn(
    tmp_path: Path, free_port: int
) -> None:
    # hypercorn closed the connection after its last allowed request while
    # that request's answer was being written, when it met the bytes of the
    # next request: the client got one answer of two (or the second cut
    # short) up to 8 times in 10, the more so with larger answers.
    config = write_config(tmp_path, {"port": f"127.0.0.1:{free_port}", "max_requests_per_conn": 2})
    requests = [
        b"GET /get?key=k HTTP/1.1\r\nHost: n\r\n\r\n",
        b"POST /set?key=k&ttl=0 HTTP/1.1\r\nHost: n\r\nContent-Length: 1\r\n\r\nv",
    ]
    async with serving(phoenix_command("serve", "--config", str(config)), free_port, tmp_path):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port}") as http:
            await http.post("/set", params={"key": "k", "ttl": 0}, content=b"v" * 200_000)
        for request in requests:
            # The third request in the same segment, or in one of its own a moment later.
            for pause in [None, 0, 0.0005, 0.001, 0.002] * 4:
                stream = await trio.open_tcp_stream("127.0.0.1", free_port)
                async with stream:
                    if pause is None:
                        await stream.send_all(request * 3)
                    else:
                        await stream.send_all(request * 2)
                        await trio.sleep(pause)
                        await stream.send_all(request)
                    answers = b""
                    with trio.fail_after(5):
                        while data := await stream.receive_some(1024 * 1024):
                            answers += data
                assert answers.count(b"HTTP/1.1 ") == 2, answers[:300]
                if request.startswith(b"GET"):
                    assert answers.endswith(b"v" * 200_000)


async def test_requests_sent_past_max_requests_per_conn_do_not_cut_the_last_answer(
    tmp_path: Path, free_port: int
) -> None:
    # Closed with those requests unread, the socket was reset, and the end of
    # the last answer still on its way was lost: 9 to 14 KB of 1 MB, every time.
    size = 1_000_000
    async with node_holding_big(tmp_path, free_port, size, {"max_requests_per_conn": 2}):
        request = b"GET /get?key=big HTTP/1.1\r\nHost: n\r\n\r\n"
        for _ in range(5):
            async with await ask_for_big(free_port, 65536) as stream:
                await stream.send_all(request)  # the last one allowed
                answers = bytearray()
                sent_after = 0
                with trio.fail_after(20):
                    while data := await stream.receive_some(8192):
                        answers += data
                        # Two more requests, each in a segment of its own, while reading.
                        if sent_after < 2 and len(answers) > size * (1.2 + sent_after / 10):
                            await stream.send_all(request)
                            sent_after += 1
            assert answers.count(b"HTTP/1.1 200") == 2
            assert answers.endswith(b"\r\n\r\n" + b"v" * size)


async def test_a_get_with_a_long_body_and_a_long_answer_ends_and_frees_its_slot(
    tmp_path: Path, free_port: int
) -> None:
    # The answer was written while the body's parts filled hypercorn's queue
    # of 10; once it was sent, hypercorn put the end of the request into that
    # queue from the app's own task, which then waited forever: the
    # connection never ended and its slot of max_conns_per_ip stayed taken.
    size = 16 * 1024 * 1024
    async with node_holding_big(tmp_path, free_port, size, {"max_conns_per_ip": 2}) as http:
        body = 1024 * 1024
        for _ in range(2):
            stream = await trio.open_tcp_stream("127.0.0.1", free_port)
            async with stream:
                head = b"GET /get?key=big HTTP/1.1\r\nHost: n\r\nContent-Length: %d\r\n\r\n"
                await stream.send_all(head % body)
                for _ in range(body // 65536):  # parts read one by one, until the node stops
                    with trio.move_on_after(1) as blocked:
                        await stream.send_all(b"x" * 65536)
                    if blocked.cancelled_caught:
                        break
                    await trio.sleep(0.01)
                # Then the answer, to the end: the node closes a connection
                # whose body it did not read (with a reset, as bytes are left).
                with trio.fail_after(10), contextlib.suppress(trio.BrokenResourceError):
                    while await stream.receive_some(1024 * 1024):
                        pass
        assert (await http.get("/ping")).status_code == 200
