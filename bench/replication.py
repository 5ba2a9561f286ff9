"""Replication figures: lag at a steady write rate, and the cost of a catch-up.

lag       Three `phoenix serve` processes on 127.0.0.1, each listing all three
          in `peers`. Writer tasks send --rate writes/s for --duration seconds
          to node 1, each paced to its slot in a fixed schedule (a late writer
          sends at once, so the achieved rate shows when the client or the
          nodes cannot keep up); each value carries its send time. The lag is
          measured two ways:
          - on the nodes, for every write: each receiving node times the
            writes pushed to it from the clock in their version to their
            apply (the histogram phoenix_replication_lag_seconds, scraped
            from /metrics before and after the run). Exact for "applied
            within 50 ms" (a bucket bound); p50/p99 are interpolated within
            their bucket, as Prometheus's histogram_quantile does.
          - from outside, end to end, for every --sample-every'th key: one
            watcher task per other node polls POST /getKeys with all the
            sampled keys it still waits for, every --poll-interval seconds,
            until each is there. Lag = time the poll that found the key
            answered - time of the write's acknowledgement, so it includes
            one poll round trip and up to one poll interval (both printed as
            the resolution).
          The nodes' CPU (cores' worth over the run, from /proc) shows what
          the load costs each; an earlier version polled GET /get per key
          every 1 ms, about 700 requests/s on the two peers, which loaded
          them more than replication did. Writers and watchers use a minimal
          HTTP/1.1 keep-alive client (RawClient): httpx's CPU cost per request
          made this script the bottleneck on 2 cores.
catch-up  In one process, no sockets: nodes wired by httpx.ASGITransport.
          Nodes A and B get the same --keys writes (24-byte keys, 100-byte
          values, same versions); --changes of them are rewritten on A only;
          B runs phoenix.recovery.catch_up against A. Then an empty node C
          catches up against A (a full copy). Bytes are request and answer
          bodies, both directions, as PeerClient counts them; both copies are
          checked equal to A (bucket digests) afterwards.

Usage:
  python bench/replication.py                 # 1,000 writes/s for 10 s; 100,000 keys
  python bench/replication.py --quick         # seconds-long smoke run
  python bench/replication.py --json          # one JSON object instead of tables

From Python (bench/run.py does this): `run(parse_args([...]))` returns that
object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from phoenix.app import create_app
from phoenix.clock import WallClock
from phoenix.config import Config
from phoenix.node import Node
from phoenix.ops import SetOp
from phoenix.peer_client import PeerClient
from phoenix.recovery import CatchUpReport, catch_up

try:  # bench/ on the path, as when run as a script or by bench/run.py
    from load import process_cpu_seconds
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from load import process_cpu_seconds

BIN = Path(sys.executable).parent
START_TIMEOUT = 30.0
KEY_BYTES = 24
VALUE_BYTES = 100
LAG_METRIC = "phoenix_replication_lag_seconds"
TARGET_LAG_SECONDS = 0.05


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def distribution_ms(seconds: list[float]) -> dict[str, float | int]:
    ordered = sorted(seconds)
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else float("nan"),
    }


# -- lag across three processes -------------------------------------------------


def free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def phoenix_command(*args: str) -> list[str]:
    script = BIN / "phoenix"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "phoenix.cli"]
    return [*command, *args]


class _StaleConnection(Exception):
    """The server closed a kept-alive connection before answering anything."""


class RawClient:
    """A minimal HTTP/1.1 keep-alive client for one server.

    httpx costs about 1.5 ms of CPU per request; on a 2-core machine that made
    this script, not the nodes, the bottleneck (about 350 writes/s). This sends
    a request and reads one Content-Length response, nothing more.
    """

    def __init__(self, url: str) -> None:
        self.host, _, port = url.removeprefix("http://").partition(":")
        self.port = int(port)
        self._idle: list[trio.SocketStream] = []

    async def request(self, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        """The status and body of one request; OSError when the connection fails.

        A kept-alive connection that the server closed meanwhile (hypercorn's
        keep_alive_timeout) is dropped and the request sent on another one.
        """
        while self._idle:
            try:
                return await self._exchange(self._idle.pop(), method, target, body)
            except _StaleConnection:
                continue
        stream = await trio.open_tcp_stream(self.host, self.port)
        try:
            return await self._exchange(stream, method, target, body)
        except _StaleConnection:
            raise ConnectionResetError("the server closed a new connection") from None

    async def _exchange(
        self, stream: trio.SocketStream, method: str, target: str, body: bytes
    ) -> tuple[int, bytes]:
        buffer = bytearray()
        try:
            head = (
                f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            try:
                await stream.send_all(head.encode("ascii") + body)
                while (end := buffer.find(b"\r\n\r\n")) < 0:
                    buffer += await self._receive(stream)
            except (OSError, trio.BrokenResourceError) as error:
                if buffer:
                    raise ConnectionResetError(str(error)) from None
                raise _StaleConnection from None
            lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            fields = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines[1:])
            }
            length = int(fields["content-length"])
            while len(buffer) < end + 4 + length:
                buffer += await self._receive(stream)
            content = bytes(buffer[end + 4 : end + 4 + length])
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        if fields.get("connection", "").lower() == "close":
            await stream.aclose()
        else:
            self._idle.append(stream)
        return status, content

    @staticmethod
    async def _receive(stream: trio.SocketStream) -> bytes:
        try:
            data = await stream.receive_some(65536)
        except trio.BrokenResourceError as error:
            raise ConnectionResetError(str(error)) from None
        if not data:
            raise ConnectionResetError("the server closed the connection")
        return data

    async def aclose(self) -> None:
        for stream in self._idle:
            await stream.aclose()
        self._idle.clear()


@asynccontextmanager
async def three_nodes(folder: Path, log_level: str) -> AsyncIterator[list[tuple[str, int]]]:
    """Three `phoenix serve` processes; yields their (URL, pid) once all see each other up."""
    names = ["n1", "n2", "n3"]
    urls = [f"http://127.0.0.1:{port}" for port in free_ports(len(names))]
    processes: list[trio.Process] = []
    try:
        for name, url in zip(names, urls, strict=True):
            config = folder / f"{name}.json"
            config.write_text(
                json.dumps(
                    {
                        "port": url.removeprefix("http://"),
                        "node_id": name,
                        "peers": urls,
                        "heart_beat_interval_in_seconds": 0.5,
                        "max_retries_to_disabled_node": 2,
                    }
                )
            )
            with (folder / f"{name}.stderr.log").open("wb") as stderr:
                processes.append(
                    await trio.lowlevel.open_process(
                        phoenix_command("serve", "--config", str(config), "--log-level", log_level),
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                        cwd=folder,
                    )
                )
        await wait_until_formed(urls, processes, folder)
        yield [(url, process.pid) for url, process in zip(urls, processes, strict=True)]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await process.wait()


async def wait_until_formed(urls: list[str], processes: list[trio.Process], folder: Path) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        with trio.move_on_after(START_TIMEOUT):
            while True:
                if any(process.poll() is not None for process in processes):
                    break
                good = 0
                for url in urls:
                    try:
                        view = (await client.get(f"{url}/cluster")).json()
                    except (httpx.TransportError, ValueError):
                        continue
                    states = {p["url"]: (p["state"], p["needs_catch_up"]) for p in view["peers"]}
                    if view["ready"] and all(
                        states[u] == ("self", False) if u == url else states[u] == ("up", False)
                        for u in urls
                    ):
                        good += 1
                if good == len(urls):
                    return
                await trio.sleep(0.1)
    logs = "\n".join(p.read_text(errors="replace") for p in sorted(folder.glob("*.log")))
    raise RuntimeError(f"the three nodes did not form a cluster:\n{logs}")


@attrs.define
class LagRun:
    rate: float
    duration: float
    writers: int
    sample_every: int
    poll_interval: float
    watch_timeout: float
    acked: int = 0
    failed: int = 0
    first_send: float | None = None
    last_ack: float = 0.0
    ack_latency: list[float] = attrs.field(factory=list)
    behind_schedule: list[float] = attrs.field(factory=list)
    lags: dict[str, list[float]] = attrs.field(factory=dict)
    since_send: dict[str, list[float]] = attrs.field(factory=dict)
    poll_rtt: list[float] = attrs.field(factory=list)
    polls: int = 0
    not_seen: dict[str, int] = attrs.field(factory=dict)
    # Per watched node: key -> (sent, acknowledged), until a poll finds it.
    pending: dict[str, dict[str, tuple[float, float]]] = attrs.field(factory=dict)
    writing_done: bool = False


async def measure_lag(run: LagRun, urls: list[str]) -> None:
    source, watched = urls[0], urls[1:]
    for url in watched:
        run.lags[url], run.since_send[url], run.not_seen[url] = [], [], 0
        run.pending[url] = {}
    total = int(run.rate * run.duration)
    writers = RawClient(source)
    watchers = {url: RawClient(url) for url in watched}
    next_index = 0
    token = os.urandom(3).hex()

    async def watch(url: str) -> None:
        """Poll `url` for every sampled key not seen there yet, all in one /getKeys."""
        pending = run.pending[url]
        while not (run.writing_done and not pending):
            if pending:
                asked = trio.current_time()
                status, body = await watchers[url].request(
                    "POST", "/getKeys", json.dumps(list(pending)).encode()
                )
                answered = trio.current_time()
                run.polls += 1
                run.poll_rtt.append(answered - asked)
                found = json.loads(body) if status == 200 else {}
                for key in found:
                    sent, acked = pending.pop(key)
                    run.lags[url].append(answered - acked)
                    run.since_send[url].append(answered - sent)
                for key, (_, acked) in list(pending.items()):
                    if answered - acked > run.watch_timeout:
                        del pending[key]
                        run.not_seen[url] += 1
            await trio.sleep(run.poll_interval)

    async def writer(start: float) -> None:
        nonlocal next_index
        while next_index < total:
            index = next_index
            next_index += 1
            slot = start + index / run.rate
            await trio.sleep_until(slot)
            sent = trio.current_time()
            run.behind_schedule.append(sent - slot)
            if run.first_send is None:
                run.first_send = sent
            key = f"lag:{token}:{index:08d}"
            body = json.dumps({"sent": time.time(), "index": index}).encode()
            try:
                status, _ = await writers.request("POST", f"/set?key={quote(key)}&ttl=0", body)
            except OSError:
                run.failed += 1
                continue
            acked = trio.current_time()
            if status != 200:
                run.failed += 1
                continue
            run.acked += 1
            run.last_ack = max(run.last_ack, acked)
            run.ack_latency.append(acked - sent)
            if index % run.sample_every == 0:
                for url in watched:
                    run.pending[url][key] = (sent, acked)

    try:
        async with trio.open_nursery() as watch_nursery:
            for url in watched:
                watch_nursery.start_soon(watch, url)
            start = trio.current_time() + 0.2
            async with trio.open_nursery() as nursery:
                for _ in range(run.writers):
                    nursery.start_soon(writer, start)
            run.writing_done = True
    finally:
        for client in (writers, *watchers.values()):
            await client.aclose()


def lag_buckets(text: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the lag histogram in a /metrics scrape ([] if none)."""
    for family in text_string_to_metric_families(text):
        if family.name == LAG_METRIC:
            return [
                (float(sample.labels["le"]), sample.value)
                for sample in family.samples
                if sample.name == LAG_METRIC + "_bucket"
            ]
    return []


def bucket_quantile(buckets: Sequence[tuple[float, float]], fraction: float) -> float:
    """The `fraction` quantile of a histogram, interpolated linearly within its bucket.

    As Prometheus's histogram_quantile: the first bucket starts at 0, and a
    quantile in the +Inf bucket is the last finite bound.
    """
    total = buckets[-1][1] if buckets else 0
    if not total:
        return float("nan")
    rank = fraction * total
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def server_lag(before: str, after: str) -> dict[str, Any]:
    """The lag histogram's growth between two scrapes of one node, summarised."""
    old = dict(lag_buckets(before))
    buckets = [(bound, count - old.get(bound, 0.0)) for bound, count in lag_buckets(after)]
    if not buckets:
        return {"count": 0, "note": f"no {LAG_METRIC} on this node"}
    total = buckets[-1][1]
    within = dict(buckets).get(TARGET_LAG_SECONDS, float("nan"))
    return {
        "count": int(total),
        "p50_ms": round(bucket_quantile(buckets, 0.50) * 1000, 2),
        "p99_ms": round(bucket_quantile(buckets, 0.99) * 1000, 2),
        "within_50ms_pct": round(100 * within / total, 3) if total else float("nan"),
        "largest_bucket_ms": next(
            (round(bound * 1000, 1) for bound, count in buckets if count == total),
            float("inf"),
        ),
    }


def batches_sent(text: str) -> float:
    """Batches a node's replicators delivered, over all its peers, from a /metrics scrape."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "phoenix_replication_batches"
        for sample in family.samples
        if sample.name == "phoenix_replication_batches_total"
    )


def lag_results(run: LagRun, urls: list[str]) -> dict[str, Any]:
    span = run.last_ack - (run.first_send or 0.0)
    combined = [lag for url in urls[1:] for lag in run.lags[url]]
    behind = sorted(run.behind_schedule)
    rtt = sorted(run.poll_rtt)
    return {
        "target_rate_per_s": run.rate,
        "duration_s": run.duration,
        "writer_tasks": run.writers,
        "writes_acked": run.acked,
        "writes_failed": run.failed,
        "achieved_rate_per_s": round(run.acked / span, 1) if span > 0 else None,
        "ack_latency": distribution_ms(run.ack_latency),
        "behind_schedule_p99_ms": round(percentile(behind, 0.99) * 1000, 2),
        "sample_every": run.sample_every,
        "poll_interval_ms": run.poll_interval * 1000,
        "poll_round_trip_p50_ms": round(percentile(rtt, 0.5) * 1000, 2),
        "polls": run.polls,
        "polls_per_s": round(run.polls / span, 1) if span > 0 else None,
        "lag_after_ack": {
            **{f"node{i + 2}": distribution_ms(run.lags[url]) for i, url in enumerate(urls[1:])},
            "both": distribution_ms(combined),
        },
        "lag_after_send_both": distribution_ms(
            [lag for url in urls[1:] for lag in run.since_send[url]]
        ),
        "not_seen_within_timeout": {
            f"node{i + 2}": run.not_seen[url] for i, url in enumerate(urls[1:])
        },
    }


async def scrape_all(client: httpx.AsyncClient, urls: Sequence[str]) -> list[str]:
    return [(await client.get(f"{url}/metrics")).text for url in urls]


async def lag_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    run = LagRun(
        rate=args.rate,
        duration=args.duration,
        writers=args.writers,
        sample_every=args.sample_every,
        poll_interval=args.poll_interval,
        watch_timeout=args.watch_timeout,
    )
    with tempfile.TemporaryDirectory(prefix="phoenix-bench-") as folder:
        async with three_nodes(Path(folder), args.log_level) as nodes:
            urls = [url for url, _ in nodes]
            async with httpx.AsyncClient(timeout=10) as http:
                before = await scrape_all(http, urls)
                cpu_before = [process_cpu_seconds(pid) for _, pid in nodes]
                started = time.monotonic()
                await measure_lag(run, urls)
                elapsed = time.monotonic() - started
                cpu = [
                    round((process_cpu_seconds(pid) - used) / elapsed, 2)
                    for (_, pid), used in zip(nodes, cpu_before, strict=True)
                ]
                # Pushes still in flight when the last watcher gave up are counted too.
                await trio.sleep(0.5)
                after = await scrape_all(http, urls)
            server = {
                f"node{i + 2}": server_lag(old, new)
                for i, (old, new) in enumerate(zip(before[1:], after[1:], strict=True))
            }
            batches = batches_sent(after[0]) - batches_sent(before[0])
            return {
                "log_level": args.log_level,
                **lag_results(run, urls),
                "node_cpu_cores": {f"node{i + 1}": used for i, used in enumerate(cpu)},
                "server_lag": server,
                "batches_from_node1": int(batches),
                "writes_per_batch": round(2 * run.acked / batches, 2) if batches else None,
            }


# -- catch-up cost, in process --------------------------------------------------


class Router(httpx.AsyncBaseTransport):
    """Hands each request to the in-process app named by its URL's host."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.ASGITransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.apps[request.url.host].handle_async_request(request)


def make_node(router: Router, name: str) -> Node:
    node = Node(Config(node_id=name, max_cost=1 << 30, num_counters=1_000_000))
    router.apps[name] = httpx.ASGITransport(app=create_app(node))
    return node


def key_of(index: int) -> str:
    key = f"key:{index:020d}"
    assert len(key) == KEY_BYTES
    return key


def report_dict(report: CatchUpReport) -> dict[str, Any]:
    fields = attrs.asdict(report)
    fields["seconds"] = round(report.seconds, 3)
    return fields


async def run_catch_up(router: Router, node: Node, peer: str) -> CatchUpReport:
    async with httpx.AsyncClient(transport=router, timeout=None) as http:
        client = PeerClient(http, node.id, timeout=600)
        return await catch_up(node.store, node.apply, client, f"http://{peer}")


async def catch_up_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    router = Router()
    a, b, c = (make_node(router, name) for name in ("a", "b", "c"))
    base = (WallClock().now_ms() - 60_000) << 16
    loading = time.monotonic()
    for index in range(args.keys):
        value = rng.randbytes(VALUE_BYTES // 2).hex().encode()
        op = SetOp(key_of(index), value, "application/octet-stream", 0, (base + index, "a"))
        a.apply(op)
        b.apply(op)
    changed = rng.sample(range(args.keys), args.changes)
    for offset, index in enumerate(changed):
        value = rng.randbytes(VALUE_BYTES // 2).hex().encode()
        version = (base + args.keys + offset, "a")
        a.apply(SetOp(key_of(index), value, "application/octet-stream", 0, version))
    loaded = time.monotonic() - loading
    assert len(a.store) == len(b.store) == args.keys

    difference = await run_catch_up(router, b, "a")
    assert b.store.digests() == a.store.digests(), "B differs from A after catching up"
    full = await run_catch_up(router, c, "a")
    assert c.store.digests() == a.store.digests(), "C differs from A after catching up"
    ratio = difference.bytes / full.bytes if full.bytes else float("nan")
    return {
        "keys": args.keys,
        "changed": args.changes,
        "key_bytes": KEY_BYTES,
        "value_bytes": VALUE_BYTES,
        "load_seconds": round(loaded, 2),
        "difference": report_dict(difference),
        "full_copy": report_dict(full),
        "bytes_ratio": round(ratio, 4),
        "seconds_ratio": round(difference.seconds / full.seconds, 4) if full.seconds else None,
        "bytes_per_changed_key": round(difference.bytes / args.changes, 1)
        if args.changes
        else None,
    }


# -- output ---------------------------------------------------------------------


def print_lag(result: dict[str, Any]) -> None:
    print(
        f"Replication lag: 3 phoenix serve processes on 127.0.0.1, writes to node 1 "
        f"(serve --log-level {result['log_level']})"
    )
    print(
        f"  target {result['target_rate_per_s']:g} writes/s for {result['duration_s']:g} s with "
        f"{result['writer_tasks']} writer tasks: {result['writes_acked']} acknowledged, "
        f"{result['writes_failed']} failed, achieved {result['achieved_rate_per_s']} writes/s"
    )
    ack = result["ack_latency"]
    print(
        f"  write ack latency p50 {ack['p50_ms']} ms, p99 {ack['p99_ms']} ms, "
        f"max {ack['max_ms']} ms; p99 behind schedule {result['behind_schedule_p99_ms']} ms"
    )
    print(
        f"  sampled every {result['sample_every']}th key, polled with /getKeys; resolution: "
        f"poll every {result['poll_interval_ms']:g} ms + poll round trip (p50 "
        f"{result['poll_round_trip_p50_ms']} ms); {result['polls']} polls "
        f"({result['polls_per_s']}/s)"
    )
    print(f"  {'lag after ack':<22}{'samples':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    rows = {**result["lag_after_ack"], "both, after send": result["lag_after_send_both"]}
    for name, row in rows.items():
        figures = f"{row['count']:>8}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['max_ms']:>10}"
        print(f"  {name:<22}{figures}")
    print(f"  not seen within the watch timeout: {result['not_seen_within_timeout']}")
    print(f"  nodes' CPU over the run (cores): {result['node_cpu_cores']}")
    print(
        f"  node 1 pushed {result['batches_from_node1']} batches to its two peers, "
        f"{result['writes_per_batch']} writes per batch"
    )
    print(
        f"  lag on the nodes ({LAG_METRIC}), every write: "
        f"{'writes':>8}{'p50 ms':>10}{'p99 ms':>10}{'<= 50 ms':>10}"
    )
    for name, row in result["server_lag"].items():
        if not row["count"]:
            print(f"  {name}: {row.get('note', 'no writes timed')}")
            continue
        print(
            f"  {name:<49}{row['count']:>8}{row['p50_ms']:>10}{row['p99_ms']:>10}"
            f"{row['within_50ms_pct']:>9}%"
        )


def print_catch_up(result: dict[str, Any]) -> None:
    print(
        f"Catch-up cost (in process, httpx.ASGITransport): {result['keys']} keys of "
        f"{result['key_bytes']} + {result['value_bytes']} bytes, {result['changed']} changed"
    )
    print(f"  {'':<12}{'buckets':>9}{'received':>10}{'sent':>7}{'bytes':>12}{'seconds':>9}")
    for name in ("difference", "full_copy"):
        row = result[name]
        print(
            f"  {name:<12}{row['differing_buckets']:>9}{row['received']:>10}{row['sent']:>7}"
            f"{row['bytes']:>12}{row['seconds']:>9}"
        )
    print(
        f"  difference / full copy: {result['bytes_ratio']:.2%} of the bytes, "
        f"{result['seconds_ratio']:.2%} of the time; "
        f"{result['bytes_per_changed_key']} bytes per changed key"
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if not args.skip_lag:
        results["lag"] = await lag_benchmark(args)
        if not args.json:
            print_lag(results["lag"])
    if not args.skip_catch_up:
        results["catch_up"] = await catch_up_benchmark(args)
        if not args.json:
            print_catch_up(results["catch_up"])
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line's settings (with --quick applied); `run` takes them."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--skip-lag", action="store_true")
    parser.add_argument("--skip-catch-up", action="store_true")
    lag = parser.add_argument_group("lag")
    lag.add_argument("--rate", type=float, default=1000.0, help="writes per second")
    lag.add_argument("--duration", type=float, default=10.0, help="seconds of writing")
    lag.add_argument("--writers", type=int, default=32, help="concurrent writer tasks")
    lag.add_argument("--sample-every", type=int, default=10, help="watch every Nth key")
    lag.add_argument(
        "--poll-interval", type=float, default=0.005, help="seconds between a node's polls"
    )
    lag.add_argument("--watch-timeout", type=float, default=10.0, help="give up after (s)")
    lag.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the nodes' --log-level (info is phoenix serve's default)",
    )
    catch = parser.add_argument_group("catch-up")
    catch.add_argument("--keys", type=int, default=100_000)
    catch.add_argument("--changes", type=int, default=1_000)
    catch.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.quick:
        args.rate, args.duration, args.writers = 200.0, 2.0, 8
        args.keys, args.changes = 5_000, 50
    if args.changes > args.keys:
        parser.error("--changes must not exceed --keys")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both measurements (unless skipped): {"lag": ..., "catch_up": ...}.

    The tables are printed as each part ends, unless `args.json`.
    """
    return trio.run(main_async, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
