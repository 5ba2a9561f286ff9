"""A small HTTP/1.1 load generator: the fallback when wrk is not installed.

N keep-alive connections (trio, raw sockets), each sending one request after
another for a fixed time: closed-loop load, as wrk does. The first --warmup
seconds are not counted. Prints one JSON object: requests, requests/s, latency
percentiles, status counts, reconnects, and the CPU this process used over the
counted window (near 1.0 means the client, not the server, was the limit). With
--server-pid, also the CPU the server used over the same window
(/proc/PID/stat, with its child processes; Linux).

It answers only what bench/run.py needs: one fixed request, responses with a
Content-Length (no chunked bodies). A response that says `connection: close`
(hypercorn's keep_alive_max_requests) makes the connection reopen, as wrk does.

Usage:
  python bench/load.py http://127.0.0.1:8080 --path '/get?key=k' --duration 5
  python bench/load.py http://127.0.0.1:8080 --method POST --path /getKeys \\
      --body '["a","b"]' --content-type application/json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

import trio

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerClosed(Exception):
    """The server closed the connection before a whole response arrived."""


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of process `pid` and its descendants (Linux /proc).

    `hypercorn` runs its worker in a child process, so the tree is what serves.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The command name (field 2) may hold spaces; the fields after it do not.
            fields = stat.read().rpartition(b")")[2].split()
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            child_pids = [int(child) for child in children.read().split()]
    except FileNotFoundError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return own + sum(process_cpu_seconds(child) for child in child_pids)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build_request(host: str, method: str, path: str, body: bytes, content_type: str) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode("ascii") + body


class Load:
    """The counters that every connection task adds to."""

    def __init__(self, count_from: float, count_until: float) -> None:
        self.count_from = count_from
        self.count_until = count_until
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.reconnects = 0
        self.errors: dict[str, int] = {}


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, bool]:
    """Read one response from `stream` (leftovers stay in `buffer`): status, close?"""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        data = await stream.receive_some(65536)
        if not data:
            raise ServerClosed
        buffer += data
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    length = 0
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 17)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
    total = end + 4 + length
    while len(buffer) < total:
        data = await stream.receive_some(65536)
        if not data:
            raise ServerClosed
        buffer += data
    del buffer[:total]
    return status, b"\r\nconnection: close" in head


async def connection(host: str, port: int, request: bytes, load: Load) -> None:
    """One keep-alive connection sending `request` again and again until cancelled."""
    latencies, statuses = load.latencies, load.statuses
    now = time.perf_counter
    while True:
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as error:
            load.errors[type(error).__name__] = load.errors.get(type(error).__name__, 0) + 1
            await trio.sleep(0.01)
            continue
        buffer = bytearray()
        try:
            while True:
                sent = now()
                await stream.send_all(request)
                status, close = await read_response(stream, buffer)
                done = now()
                if load.count_from <= sent and done <= load.count_until:
                    latencies.append(done - sent)
                    statuses[status] = statuses.get(status, 0) + 1
                if close:
                    break
        except (OSError, trio.BrokenResourceError, ServerClosed) as error:
            load.errors[type(error).__name__] = load.errors.get(type(error).__name__, 0) + 1
        finally:
            await trio.aclose_forcefully(stream)
        load.reconnects += 1


async def generate(
    url: str,
    *,
    method: str,
    path: str,
    body: bytes,
    content_type: str,
    connections: int,
    duration: float,
    warmup: float,
    server_pid: int | None,
) -> dict[str, Any]:
    """Load `url` for warmup + duration seconds; the figures of the counted part."""
    host, _, port_text = url.removeprefix("http://").rstrip("/").partition(":")
    port = int(port_text or 80)
    request = build_request(f"{host}:{port}", method, path, body, content_type)
    start = time.perf_counter()
    load = Load(start + warmup, start + warmup + duration)
    cpu: dict[str, float] = {}

    async def sample_cpu() -> None:
        await trio.sleep_until(trio.current_time() + warmup)
        cpu["client"] = own_cpu_seconds()
        if server_pid is not None:
            cpu["server"] = process_cpu_seconds(server_pid)
        await trio.sleep(duration)
        cpu["client"] = own_cpu_seconds() - cpu["client"]
        if server_pid is not None:
            cpu["server"] = process_cpu_seconds(server_pid) - cpu["server"]

    with trio.move_on_after(warmup + duration + 0.05):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample_cpu)
            for _ in range(connections):
                nursery.start_soon(connection, host, port, request, load)
    latencies = sorted(load.latencies)
    ok = sum(count for status, count in load.statuses.items() if 200 <= status < 300)
    return {
        "generator": "bench/load.py",
        "connections": connections,
        "duration_s": duration,
        "requests": len(latencies),
        "non_2xx": len(latencies) - ok,
        "statuses": {str(status): count for status, count in sorted(load.statuses.items())},
        "requests_per_s": len(latencies) / duration,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "reconnects": load.reconnects,
        "errors": load.errors,
        "client_cpu": cpu.get("client", float("nan")) / duration,
        "server_cpu": cpu["server"] / duration if "server" in cpu else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("url", help="http://HOST:PORT")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--path", default="/")
    parser.add_argument("--body", default="", help="request body (UTF-8 text)")
    parser.add_argument("--content-type", default="application/octet-stream")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0, help="counted seconds")
    parser.add_argument("--warmup", type=float, default=0.5, help="uncounted seconds first")
    parser.add_argument("--server-pid", type=int, default=None, help="also report its CPU use")
    args = parser.parse_args(argv)
    result = trio.run(
        lambda: generate(
            args.url,
            method=args.method.upper(),
            path=args.path,
            body=args.body.encode(),
            content_type=args.content_type,
            connections=args.connections,
            duration=args.duration,
            warmup=args.warmup,
            server_pid=args.server_pid,
        )
    )
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
