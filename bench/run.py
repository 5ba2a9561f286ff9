"""Run every benchmark and write one Markdown report, with plots beside it.

    python bench/run.py                          # full sizes (several minutes)
    python bench/run.py --smoke                  # tiny sizes, seconds (CI)
    python bench/run.py --output /tmp/benchmarks.md --trace ../shared/traces/OLTP.lis.gz

The report (default docs/benchmarks.md) gives, per benchmark, the median and
the min-max over repeated runs; the plots go to a `bench/` folder next to it
(docs/bench/*.png). The benchmarks:

  1. Store micro-benchmarks  bench/store_micro.py, in process
  2. Hit ratio               bench/hit_ratio.py, in process
  3. Memory per entry        bench/memory.py, one fresh process per figure
  4. HTTP                    `phoenix serve` and bench/bare_asgi.py under hypercorn,
                             loaded by wrk, or by bench/load.py without it
  5. RESP                    bench/resp_bench.py: `phoenix serve` with resp_port and
                             redis-server, loaded by redis-benchmark (skipped, with a
                             note, when redis-server is not installed)
  6. Replication             bench/replication.py: three `phoenix serve`, and catch-up

matplotlib and cachetools (the `bench` extra: pip install -e '.[bench]') are
optional: without them the report says what it left out (plots, the
cachetools comparisons). Everything binds to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import attrs
import httpx
import trio

import cores
import hit_ratio
import replication
import resp_bench
import store_micro
from hit_ratio import HitRow
from load import process_cpu_seconds
from phoenix.config import Config
from phoenix.server import hypercorn_config
from store_micro import MicroRow

BENCH = Path(__file__).resolve().parent
REPO_ROOT = BENCH.parent
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks.md"
PACKAGES = ("phoenixcache", "trio", "hypercorn", "quart-trio", "quart", "httpx", "attrs", "h11")
EXTRAS = ("matplotlib", "cachetools")
SECTIONS = (
    "Store micro-benchmarks",
    "Hit ratio",
    "Memory per entry",
    "HTTP",
    "RESP",
    "Replication",
)
CONNECTIONS = 16
# Profiles taken by hand (py-spy), kept at the end of the report.
PROFILES = Path(__file__).with_name("profiles.md")
START_TIMEOUT = 30.0
KEY_BYTES = 24
VALUE = b"v" * 100

DASH = "\N{EN DASH}"
T = TypeVar("T")


# -- sizes ------------------------------------------------------------------------


@attrs.frozen
class Sizes:
    """How big and how often: one set for a real run, one for the smoke run."""

    name: str
    micro_keys: int
    micro_ops: int
    micro_repeats: int
    hit_length: int
    hit_keys: int
    hit_capacities: tuple[int, ...]
    hit_seeds: int
    trace_capacities: tuple[int, ...]
    trace_limit: int | None
    memory_entries: int
    memory_repeats: int
    http_seconds: int
    http_warmup: float
    http_repeats: int
    lag_rate: float
    lag_seconds: float
    lag_writers: int
    lag_repeats: int
    catch_up_keys: int
    catch_up_changes: int
    catch_up_repeats: int
    resp: resp_bench.RespSizes


FULL = Sizes(
    name="full",
    micro_keys=100_000,
    micro_ops=200_000,
    micro_repeats=5,
    hit_length=200_000,
    hit_keys=10_000,
    hit_capacities=(100, 300, 1000, 3000),
    hit_seeds=3,
    trace_capacities=(500, 1000, 2000, 5000, 10000),
    trace_limit=None,
    memory_entries=1_000_000,
    memory_repeats=3,
    http_seconds=3,
    http_warmup=1.0,
    http_repeats=11,
    lag_rate=1000.0,
    lag_seconds=5.0,
    lag_writers=16,
    lag_repeats=3,
    catch_up_keys=20_000,
    catch_up_changes=200,
    catch_up_repeats=3,
    resp=resp_bench.FULL,
)

SMOKE = Sizes(
    name="smoke",
    micro_keys=2_000,
    micro_ops=5_000,
    micro_repeats=3,
    hit_length=5_000,
    hit_keys=1_000,
    hit_capacities=(50, 200),
    hit_seeds=2,
    trace_capacities=(200, 1000),
    trace_limit=20_000,
    memory_entries=20_000,
    memory_repeats=2,
    http_seconds=1,
    http_warmup=0.0,
    http_repeats=1,
    lag_rate=200.0,
    lag_seconds=1.0,
    lag_writers=8,
    lag_repeats=1,
    catch_up_keys=2_000,
    catch_up_changes=20,
    catch_up_repeats=1,
    resp=resp_bench.SMOKE,
)


# -- summaries --------------------------------------------------------------------


@attrs.frozen
class Spread:
    """The median and range of repeated measurements."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread:
        values = [value for value in samples if value == value]  # drop nan
        if not values:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(values), min(values), max(values), len(values))

    def cell(self, digits: int = 0, scale: float = 1.0) -> str:
        """'median (min-max)', or only the median for a single run."""
        if self.runs == 0:
            return "n/a"
        median = f"{self.median * scale:,.{digits}f}"
        if self.runs == 1:
            return median
        return f"{median} ({self.low * scale:,.{digits}f}{DASH}{self.high * scale:,.{digits}f})"


def timed(results: Results, section: str, benchmark: Callable[[], T]) -> T | None:
    """Run one benchmark; note its time, or its failure (the run goes on).

    A section left out by --only is not run (the report says so).
    """
    if results.only and section.split()[0].lower() not in results.only:
        return None
    print(f"[bench] {section} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        return benchmark()
    except Exception:
        results.failures[section] = traceback.format_exc()
        print(results.failures[section], file=sys.stderr)
        return None
    finally:
        results.seconds[section] = time.monotonic() - started
        print(f"[bench] {section}: {results.seconds[section]:.1f} s", file=sys.stderr, flush=True)


# -- 1. store micro-benchmarks ---------------------------------------------------------


def bench_store(sizes: Sizes) -> list[MicroRow]:
    return store_micro.run(
        n_keys=sizes.micro_keys, ops=sizes.micro_ops, repeats=sizes.micro_repeats
    )


# -- 2. hit ratio --------------------------------------------------------------------------


@attrs.frozen
class HitRatios:
    synthetic: list[HitRow]  # every seed's rows
    trace: list[HitRow]
    trace_path: Path | None


def bench_hit_ratio(sizes: Sizes, trace: Path | None) -> HitRatios:
    synthetic: list[HitRow] = []
    for seed in range(1, sizes.hit_seeds + 1):
        synthetic += hit_ratio.run(
            length=sizes.hit_length,
            keys=sizes.hit_keys,
            capacities=sizes.hit_capacities,
            seed=seed,
        )
    trace_rows: list[HitRow] = []
    if trace is not None:
        # The policy's sketch hashes with Python's salted str hash: one process
        # per hash seed, so that the figures show how much the salt moves them.
        command = [
            sys.executable,
            str(BENCH / "hit_ratio.py"),
            "--no-synthetic",
            "--json",
            f"--trace={trace}",
            f"--trace-capacities={','.join(map(str, sizes.trace_capacities))}",
            *([f"--trace-limit={sizes.trace_limit}"] if sizes.trace_limit else []),
        ]
        for seed in range(1, sizes.hit_seeds + 1):
            env = {**os.environ, "PYTHONHASHSEED": str(seed)}
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            trace_rows += [HitRow(**json.loads(line)) for line in done.stdout.splitlines()]
    return HitRatios(synthetic, trace_rows, trace)


# -- 3. memory -------------------------------------------------------------------------------


def bench_memory(sizes: Sizes) -> list[dict[str, Any]]:
    """One fresh process per measurement, alternating store and dict."""
    runs: list[dict[str, Any]] = []
    for _ in range(sizes.memory_repeats):
        for kind in ("store", "dict"):
            command = [
                sys.executable,
                str(BENCH / "memory.py"),
                kind,
                "--entries",
                str(sizes.memory_entries),
            ]
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"bench/memory.py {kind} failed:\n{done.stderr}")
            runs.append(json.loads(done.stdout))
    return runs


# -- 4. HTTP -----------------------------------------------------------------------------------


@attrs.frozen
class Target:
    """One request to load a server with, again and again."""

    name: str
    server: str  # "bare" or "phoenix"
    method: str
    path: str
    body: bytes = b""
    content_type: str = "application/octet-stream"
    keys: int = 1  # keys per request, for keys/s


@attrs.frozen
class LoadResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    client_cpu: float  # cores' worth of CPU the load generator used
    server_cpu: float  # and the server


@attrs.define
class HttpRow:
    target: Target
    runs: list[LoadResult] = attrs.field(factory=list)
    ratios: list[float] = attrs.field(factory=list)  # to the bare ceiling of the same repeat


@attrs.frozen
class HttpResults:
    generator: str
    rows: list[HttpRow]


def key_of(index: int) -> str:
    return store_micro.key_of(index, "http")


def http_targets() -> list[Target]:
    def keys_body(count: int) -> bytes:
        return json.dumps([key_of(i) for i in range(count)]).encode()

    def items_body(count: int) -> bytes:
        return json.dumps({key_of(2000 + i): VALUE.decode() for i in range(count)}).encode()

    def batch(name: str, path: str, body: bytes, keys: int) -> Target:
        return Target(name, "phoenix", "POST", path, body, "application/json", keys)

    get = f"/get?key={quote(key_of(0))}"
    set_ = f"/set?key={quote(key_of(1000))}&ttl=0"
    return [
        # Each phoenix row's ratio is to the bare row above it, sent the same
        # request: a GET, and a POST of a 100-byte body (hypercorn's work for
        # a body counts there too).
        Target("bare ASGI, GET (ceiling)", "bare", "GET", get),
        Target("GET /get", "phoenix", "GET", get),
        Target("bare ASGI, POST 100 bytes (ceiling)", "bare", "POST", set_, VALUE),
        Target("POST /set", "phoenix", "POST", set_, VALUE),
        batch("POST /getKeys, 10 keys", "/getKeys", keys_body(10), 10),
        batch("POST /getKeys, 100 keys", "/getKeys", keys_body(100), 100),
        batch("POST /setKeys, 100 keys", "/setKeys?ttl=0", items_body(100), 100),
    ]


def wrk_version() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"wrk (\S+)", done.stdout + done.stderr)
    return match.group(1) if match else "unknown version"


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(output: str) -> tuple[float, float, float, int, int]:
    """requests/s, p50 ms, p99 ms, non-2xx responses and socket errors from `wrk --latency`."""

    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        if match is None:
            raise ValueError(f"no {percent}% latency in wrk's output:\n{output}")
        return float(match.group(1)) * _WRK_UNITS[match.group(2)]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rate is None:
        raise ValueError(f"no Requests/sec in wrk's output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return (
        float(rate.group(1)),
        latency("50"),
        latency("99"),
        int(non_2xx.group(1)) if non_2xx else 0,
        sum(int(n) for n in errors.groups()) if errors else 0,
    )


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def load_with_wrk(
    wrk: str, url: str, target: Target, seconds: int, server_pid: int, folder: Path
) -> LoadResult:
    command = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if target.method != "GET":
        script = folder / f"{re.sub(r'[^a-z0-9]+', '-', target.name.lower())}.lua"
        script.write_text(
            f'wrk.method = "{target.method}"\n'
            f"wrk.body = [==[{target.body.decode()}]==]\n"
            f'wrk.headers["Content-Type"] = "{target.content_type}"\n'
        )
        command += ["-s", str(script)]
    command.append(url + target.path)
    server_before, client_before = process_cpu_seconds(server_pid), children_cpu_seconds()
    started = time.monotonic()
    done = await trio.run_process(
        command, capture_stdout=True, capture_stderr=True, check=True, preexec_fn=cores.pin_load
    )
    elapsed = time.monotonic() - started
    server_cpu = process_cpu_seconds(server_pid) - server_before
    client_cpu = children_cpu_seconds() - client_before
    rate, p50, p99, non_2xx, errors = parse_wrk(done.stdout.decode())
    return LoadResult(rate, p50, p99, non_2xx, errors, client_cpu / elapsed, server_cpu / elapsed)


async def load_with_python(
    url: str, target: Target, seconds: float, warmup: float, server_pid: int
) -> LoadResult:
    command = [
        sys.executable,
        str(BENCH / "load.py"),
        url,
        f"--method={target.method}",
        f"--path={target.path}",
        f"--body={target.body.decode()}",
        f"--content-type={target.content_type}",
        f"--connections={CONNECTIONS}",
        f"--duration={seconds}",
        f"--warmup={warmup}",
        f"--server-pid={server_pid}",
    ]
    done = await trio.run_process(
        command, capture_stdout=True, capture_stderr=True, check=True, preexec_fn=cores.pin_load
    )
    figures = json.loads(done.stdout)
    return LoadResult(
        figures["requests_per_s"],
        figures["p50_ms"],
        figures["p99_ms"],
        figures["non_2xx"],
        sum(figures["errors"].values()),
        figures["client_cpu"],
        figures["server_cpu"],
    )


async def start_server(
    command: list[str], url: str, ready_path: str, folder: Path, name: str
) -> trio.Process:
    """Start `command`; return once GET `ready_path` answers 200 (or raise with its stderr)."""
    log = folder / f"{name}.stderr.log"
    with log.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, cwd=folder
        )
    async with httpx.AsyncClient(timeout=2) as client:
        with trio.move_on_after(START_TIMEOUT):
            while process.poll() is None:
                try:
                    if (await client.get(url + ready_path)).status_code == 200:
                        return process
                except httpx.TransportError:
                    pass
                await trio.sleep(0.1)
    await stop_server(process)
    raise RuntimeError(f"{name} did not start:\n{log.read_text(errors='replace')}")


async def stop_server(process: trio.Process) -> None:
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(10):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def http_benchmark(sizes: Sizes, wrk: str | None, folder: Path) -> HttpResults:
    """Both servers up for the whole run; each target loaded in turn by `wrk` or bench/load.py."""
    phoenix_port, bare_port = replication.free_ports(2)
    urls = {"phoenix": f"http://127.0.0.1:{phoenix_port}", "bare": f"http://127.0.0.1:{bare_port}"}
    config = folder / "phoenix.json"
    config.write_text(json.dumps({"port": f"127.0.0.1:{phoenix_port}", "node_id": "bench"}))
    # The ceiling runs under the hypercorn settings phoenix serve uses: no
    # request limit per kept-alive connection (hypercorn's default is 1,000)
    # and its keep-alive timeout.
    served = hypercorn_config(Config.from_mapping(json.loads(config.read_text())))
    bare_config = folder / "bare.toml"
    bare_config.write_text(
        f"keep_alive_max_requests = {served.keep_alive_max_requests}\n"
        f"keep_alive_timeout = {served.keep_alive_timeout}\n"
    )
    hypercorn = Path(sys.executable).parent / "hypercorn"
    bare_command = [
        *([str(hypercorn)] if hypercorn.exists() else [sys.executable, "-m", "hypercorn"]),
        "--worker-class=trio",
        "--workers=0",  # in the one process, as phoenix serve runs
        f"--config={bare_config}",
        f"--bind=127.0.0.1:{bare_port}",
        f"{BENCH / 'bare_asgi.py'}:app",
    ]
    phoenix_command = replication.phoenix_command("serve", "--config", str(config))
    targets = http_targets()
    rows = [HttpRow(target) for target in targets]
    processes: dict[str, trio.Process] = {}
    try:
        processes["phoenix"] = await start_server(
            phoenix_command, urls["phoenix"], "/ping", folder, "phoenix"
        )
        processes["bare"] = await start_server(bare_command, urls["bare"], "/", folder, "bare")
        for process in processes.values():
            cores.pin_server(process.pid)
        async with httpx.AsyncClient(base_url=urls["phoenix"], timeout=5) as client:
            for index in range(100):
                answer = await client.post(f"/set?key={quote(key_of(index))}&ttl=0", content=VALUE)
                answer.raise_for_status()
            for target in targets:
                answer = await client.request(
                    target.method,
                    urls[target.server] + target.path,
                    content=target.body,
                    headers={"Content-Type": target.content_type},
                )
                if answer.status_code != 200:
                    raise RuntimeError(f"{target.name}: {answer.status_code} {answer.text}")

        async def load(target: Target, seconds: float, warmup: float) -> LoadResult:
            pid = processes[target.server].pid
            if wrk is not None:
                return await load_with_wrk(
                    wrk, urls[target.server], target, max(1, round(seconds)), pid, folder
                )
            return await load_with_python(urls[target.server], target, seconds, warmup, pid)

        if sizes.http_warmup > 0:
            for target in targets:  # a warm-up pass, not counted
                await load(target, sizes.http_warmup, 0.0)
        # Each ceiling with the rows measured against it; every other rotation
        # runs a group backwards, so that neither side always goes first.
        groups: list[list[HttpRow]] = []
        for row in rows:
            if row.target.server == "bare" or not groups:
                groups.append([])
            groups[-1].append(row)
        for repeat in range(sizes.http_repeats):
            for group in groups:
                for row in group if repeat % 2 == 0 else group[::-1]:
                    row.runs.append(
                        await load(row.target, sizes.http_seconds, min(0.5, sizes.http_warmup))
                    )
                ceiling = group[0].runs[-1].requests_per_s
                for row in group[1:]:
                    row.ratios.append(row.runs[-1].requests_per_s / ceiling)
    finally:
        for process in processes.values():
            await stop_server(process)
    generator = (
        f"wrk {wrk_version()} (1 thread, {CONNECTIONS} connections, {sizes.http_seconds} s)"
        if wrk
        else f"bench/load.py (trio, {CONNECTIONS} keep-alive connections, {sizes.http_seconds} s)"
    )
    return HttpResults(generator, rows)


def bench_http(sizes: Sizes, wrk: str | None) -> HttpResults:
    with tempfile.TemporaryDirectory(prefix="phoenix-bench-http-") as folder:
        return trio.run(http_benchmark, sizes, wrk, Path(folder))


# -- 5. replication --------------------------------------------------------------------------


@attrs.frozen
class ReplicationResults:
    lag: list[dict[str, Any]]
    catch_up: list[dict[str, Any]]


def bench_replication(sizes: Sizes) -> ReplicationResults:
    lags = []
    for _ in range(sizes.lag_repeats):
        args = replication.parse_args(
            [
                "--json",
                "--skip-catch-up",
                f"--rate={sizes.lag_rate}",
                f"--duration={sizes.lag_seconds}",
                f"--writers={sizes.lag_writers}",
            ]
        )
        lags.append(replication.run(args)["lag"])
    catch_ups = []
    for seed in range(1, sizes.catch_up_repeats + 1):
        args = replication.parse_args(
            [
                "--json",
                "--skip-lag",
                f"--keys={sizes.catch_up_keys}",
                f"--changes={sizes.catch_up_changes}",
                f"--seed={seed}",
            ]
        )
        catch_ups.append(replication.run(args)["catch_up"])
    return ReplicationResults(lags, catch_ups)


# -- the machine -----------------------------------------------------------------------------


def version_of(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()
    packages = ", ".join(f"{name} {version_of(name)}" for name in PACKAGES)
    extras = ", ".join(f"{name} {version_of(name) or 'not installed'}" for name in EXTRAS)
    return {
        "CPU cores": f"{usable} usable ({os.cpu_count()} in the machine), {cpu_model()}",
        "OS": f"{platform.system()} {platform.release()} {platform.machine()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Packages": packages,
        "Bench extras": extras,
        "Load average at start": f"{load[0]:.2f} (1 min), {load[1]:.2f} (5 min)",
    }


# -- results, plots and the report -------------------------------------------------------------


@attrs.define
class Results:
    sizes: Sizes
    command: str
    started: datetime
    machine: dict[str, str]
    store: list[MicroRow] | None = None
    hit: HitRatios | None = None
    memory: list[dict[str, Any]] | None = None
    http: HttpResults | None = None
    resp: resp_bench.RespResults | None = None
    replication: ReplicationResults | None = None
    seconds: dict[str, float] = attrs.field(factory=dict)
    failures: dict[str, str] = attrs.field(factory=dict)
    plots: dict[str, str] = attrs.field(factory=dict)  # section -> path relative to the report
    plot_note: str = ""
    only: frozenset[str] = frozenset()  # --only: the sections to run (all when empty)


def percent_cell(ratios: Iterable[float]) -> str:
    """Hit ratios (or their differences) of a group of runs, as a % median and spread."""
    return Spread.of(list(ratios)).cell(2, 100)


def grouped(rows: Sequence[HitRow]) -> dict[tuple[str, int], list[HitRow]]:
    groups: dict[tuple[str, int], list[HitRow]] = {}
    for row in rows:
        groups.setdefault((row.stream, row.capacity), []).append(row)
    return groups


def make_plots(results: Results, folder: Path, relative: str) -> None:
    """PNG plots into `folder`, linked as `relative`/NAME.png; a note if matplotlib is absent."""
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        results.plot_note = (
            "Plots skipped: matplotlib is not installed (pip install -e '.[bench]')."
        )
        return
    folder.mkdir(parents=True, exist_ok=True)

    def save(figure: Any, section: str, name: str) -> None:
        figure.tight_layout()
        figure.savefig(folder / name, dpi=100)
        plt.close(figure)
        results.plots[section] = f"{relative}/{name}"

    if results.store:
        labels = sorted(
            {(r.state, r.op) for r in results.store},
            key=lambda so: (so[0] != "not full", store_micro.OPS.index(so[1])),
        )
        caches = list(dict.fromkeys(r.cache for r in results.store))
        figure, axes = plt.subplots(figsize=(9, 4.5))
        width = 0.8 / len(caches)
        for i, cache in enumerate(caches):
            medians = {
                (r.state, r.op): statistics.median(r.ns_per_op)
                for r in results.store
                if r.cache == cache
            }
            xs = [j + i * width for j, label in enumerate(labels) if label in medians]
            ys = [medians[label] for label in labels if label in medians]
            axes.bar(xs, ys, width, label=cache)
        axes.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))])
        axes.set_xticklabels([f"{op}\n({state})" for state, op in labels])
        axes.set_yscale("log")
        axes.set_ylabel("ns per operation (median, log scale)")
        axes.set_title("Store micro-benchmarks")
        axes.legend()
        save(figure, "Store micro-benchmarks", "store_micro.png")

    if results.hit and (results.hit.synthetic or results.hit.trace):
        groups = grouped([*results.hit.synthetic, *results.hit.trace])
        streams = list(dict.fromkeys(stream for stream, _ in groups))
        columns = min(3, len(streams))
        rows = (len(streams) + columns - 1) // columns
        figure, grid = plt.subplots(
            rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False
        )
        for ax, stream in zip(grid.flat, streams, strict=False):
            capacities = sorted(c for s, c in groups if s == stream)
            for field, label in (
                ("optimal", "optimal (Belady)"),
                ("online", "online bound (A0)"),
                ("exact_lfu", "exact LFU"),
                ("policy", "W-TinyLFU"),
                ("static", "W-TinyLFU, static 1% window"),
                ("lru", "LRU"),
            ):
                if any(getattr(r, field) is None for c in capacities for r in groups[stream, c]):
                    continue  # A0 and the exact LFU: for the Zipf streams only
                ys = [
                    100 * statistics.median(getattr(r, field) for r in groups[stream, c])
                    for c in capacities
                ]
                style = {"linestyle": "--", "color": "black"} if field == "online" else {}
                ax.plot(capacities, ys, marker="o", label=label, **style)
            ax.set_xscale("log")
            ax.set_xticks(capacities, [f"{c:,}" for c in capacities])
            ax.set_xticks([], minor=True)
            ax.set_title(stream)
            ax.set_xlabel("capacity (entries)")
            ax.set_ylabel("hit ratio (%)")
            ax.grid(True, alpha=0.3)
        for ax in list(grid.flat)[len(streams) :]:
            ax.set_visible(False)
        grid.flat[0].legend(fontsize="small")
        save(figure, "Hit ratio", "hit_ratio.png")

    if results.http and results.http.rows:
        rows_http = results.http.rows
        figure, axes = plt.subplots(figsize=(9, 4))
        spreads = [Spread.of([r.requests_per_s for r in row.runs]) for row in rows_http]
        xs = list(range(len(rows_http)))
        colors = ["grey" if row.target.server == "bare" else "tab:blue" for row in rows_http]
        axes.bar(xs, [s.median for s in spreads], color=colors)
        axes.errorbar(
            xs,
            [s.median for s in spreads],
            yerr=[[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]],
            fmt="none",
            ecolor="black",
            capsize=4,
        )
        axes.set_xticks(xs)
        axes.set_xticklabels([row.target.name for row in rows_http], fontsize="small")
        axes.set_ylabel("requests/s (median, min-max)")
        axes.set_title(f"HTTP, {results.http.generator}")
        save(figure, "HTTP", "http.png")

    if results.resp and resp_bench.plot(results.resp, folder / "resp.png", plt):
        results.plots["RESP"] = f"{relative}/resp.png"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """A Markdown table; `align` has one letter per column, l or r (default: l then r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_store(results: Results) -> list[str]:
    sizes = results.sizes
    out = [
        f"`bench/store_micro.py`, in process. {sizes.micro_keys:,} keys of {KEY_BYTES} bytes with "
        f"100-byte values; each figure is one loop of {sizes.micro_ops:,} operations on one "
        f"seeded Zipf(1.0) key stream, {plural(sizes.micro_repeats, 'run')} in rotation between "
        "the caches (median, min-max in brackets). *Not full*: every key fits and is loaded "
        "first; *full*: the caches hold a tenth of the keys, get hit / get miss read the "
        "stream's keys each cache holds / does not hold, and set writes a fresh stream "
        "(admission and eviction included). The Store is called as the node calls it: "
        "`store.get(key)` (which records the read for W-TinyLFU) and "
        "`store.set(key, value, content_type, expires_at, version)` with a new version per "
        "write, which also keeps the expiry index and notes the key for its bucket digest; "
        "each set loop ends with `store.settle_digests()`, which brings the digests of the "
        "keys written up to date (a node does that in the background). The garbage "
        "collector is off during each loop, as in timeit.",
        "",
    ]
    if not store_micro.cachetools_available():
        out += [
            "**cachetools is not installed: the LRUCache and TTLCache comparisons (and the "
            "ratios to LRUCache) are skipped** (pip install -e '.[bench]').",
            "",
        ]
    rows = results.store or []
    lru = {
        (r.state, r.op): statistics.median(r.ns_per_op) for r in rows if r.cache == store_micro.LRU
    }
    body = []
    for row in sorted(rows, key=lambda r: (r.state != "not full", store_micro.OPS.index(r.op))):
        spread = Spread.of(row.ns_per_op)
        base = lru.get((row.state, row.op))
        hits = Spread.of(row.hit_fraction)
        body.append(
            [
                row.state,
                row.op,
                row.cache,
                f"{spread.median:,.0f}",
                f"{spread.low:,.0f}{DASH}{spread.high:,.0f}",
                f"{spread.median / base:.2f}" if base else "n/a",
                "" if hits.runs == 0 else f"{100 * hits.median:.0f}%",
            ]
        )
    out += table(
        ["state", "operation", "cache", "ns/op (median)", "min-max", "÷ LRUCache", "hits"],
        body,
        "lllrrrr",
    )
    out += [
        "",
        "A plain dict has no capacity, so it appears only in the *not full* rows, as the floor.",
    ]
    return out


def render_hit_ratio(results: Results) -> list[str]:
    hit = results.hit
    sizes = results.sizes
    assert hit is not None
    out = [
        "`bench/hit_ratio.py`: every key costs 1, so capacity is a number of entries; a miss "
        "offers the key to the cache. *W-TinyLFU* is phoenix.policy as the Store runs it "
        "(adaptive window, num_counters = 8 x capacity); *static 1%* keeps the window at 1%; "
        "*optimal* is Belady's MIN with bypass, which no policy can beat, but it reads the "
        "future. *Online bound (A0)*, for the Zipf streams: each access of a Zipf stream is "
        "an independent draw from fixed key probabilities (the independent reference model), "
        "so an online policy's chance of a hit on the next access is the summed probability of "
        "the keys it holds, and none does better in expectation than A0, which holds the most "
        'probable keys (A. V. Aho, P. J. Denning and J. D. Ullman, "Principles of Optimal '
        'Page Replacement", J. ACM 18(1), 1971, pp. 80-93). The column is A0 run on the same '
        "stream from an empty cache, as the others are: it knows the true probabilities and "
        "holds the most probable keys among those seen so far. *Exact LFU*, for the Zipf "
        "streams too: what an online policy can learn of the probabilities is each key's count "
        "so far; this LFU counts every access exactly (no sketch, no aging, no memory limit) "
        "and keeps a missed key when it is counted more often than the least counted key held. "
        f"Synthetic streams: {sizes.hit_length:,} accesses over {sizes.hit_keys:,} keys "
        "(Zipf s = 0.8, 1.0, 1.2; *scan+hot*: a loop over 4 x the capacity interleaved with "
        "Zipf(1.0) hits on a hot set of half the capacity), "
        f"{plural(sizes.hit_seeds, 'seed')} each: median hit ratio in %, min-max over the "
        "seeds in brackets.",
        "",
    ]
    body = []
    for (stream, capacity), group in grouped(hit.synthetic).items():
        cells = [percent_cell(getattr(r, f) for r in group) for f in ("policy", "static", "lru")]
        bound = ["", "", "", ""]
        if all(r.online is not None and r.exact_lfu is not None for r in group):
            bound = [
                percent_cell(r.exact_lfu or 0.0 for r in group),
                percent_cell(r.online or 0.0 for r in group),
                percent_cell((r.online or 0.0) - r.policy for r in group),
                percent_cell(r.optimal - (r.online or 0.0) for r in group),
            ]
        optimal = percent_cell(r.optimal for r in group)
        gain = percent_cell(r.policy - r.lru for r in group)
        body.append([stream, f"{capacity:,}", *cells, *bound[:2], optimal, gain, *bound[2:]])
    zipf_header = [
        "stream",
        "capacity",
        "W-TinyLFU",
        "static 1%",
        "LRU",
        "exact LFU",
        "online bound (A0)",
        "optimal",
        "W-TinyLFU - LRU (points)",
        "A0 - W-TinyLFU (points)",
        "optimal - A0 (points)",
    ]
    out += table(zipf_header, body)
    out += ["", *online_bound_summary(hit.synthetic)]
    header = [
        "stream",
        "capacity",
        "W-TinyLFU",
        "static 1%",
        "LRU",
        "optimal",
        "W-TinyLFU - LRU (points)",
    ]
    if hit.trace_path is None or not hit.trace:
        out += ["No trace: the OLTP trace was not found (pass --trace PATH).", ""]
    else:
        limit = (
            ""
            if results.sizes.trace_limit is None
            else f" (its first {results.sizes.trace_limit:,} accesses)"
        )
        out += [
            f"The OLTP trace, `{hit.trace_path.name}`{limit}: {hit.trace[0].accesses:,} "
            'accesses, from N. Megiddo and D. S. Modha, "ARC: A Self-Tuning, Low Overhead '
            "Replacement Cache\", USENIX FAST 2003. The trace is fixed, but the policy's "
            "sketch hashes with Python's salted str hash, so its figures move from one "
            f"process to another: {sizes.hit_seeds} runs, one process each, with PYTHONHASHSEED "
            f"= 1 to {sizes.hit_seeds}; median, min-max in brackets.",
            "",
        ]
        fields = ("policy", "static", "lru", "optimal")
        body = [
            [
                stream,
                f"{capacity:,}",
                *(percent_cell(getattr(r, f) for r in group) for f in fields),
                percent_cell(r.policy - r.lru for r in group),
            ]
            for (stream, capacity), group in grouped(hit.trace).items()
        ]
        out += table(header, body)
    return out


def online_bound_summary(rows: Sequence[HitRow]) -> list[str]:
    """What A0 and the exact LFU say about the target "within 5 points of Belady's optimum"."""
    groups = {
        f"{stream} at {capacity:,}": group
        for (stream, capacity), group in grouped(rows).items()
        if all(r.online is not None and r.exact_lfu is not None for r in group)
    }
    if not groups:
        return []

    def median(group: Sequence[HitRow], value: Callable[[HitRow], float]) -> float:
        return 100 * statistics.median(value(r) for r in group)

    def below_optimum(group: Sequence[HitRow], field: str) -> float:
        return median(group, lambda r: r.optimal - (getattr(r, field) or 0.0))

    beyond_a0 = [name for name, g in groups.items() if below_optimum(g, "online") > 5]
    beyond_lfu = [
        name
        for name, g in groups.items()
        if name not in beyond_a0 and below_optimum(g, "exact_lfu") > 5
    ]
    missed = [
        name
        for name, g in groups.items()
        if name not in beyond_a0 + beyond_lfu and below_optimum(g, "policy") > 5
    ]
    to_bound = [median(g, lambda r: (r.online or 0.0) - r.policy) for g in groups.values()]
    expected_gap = max(
        abs(median(g, lambda r: r.online_expected or 0.0) - median(g, lambda r: r.online or 0.0))
        for g in groups.values()
    )
    out = [
        f"On {len(beyond_a0)} of the {len(groups)} Zipf rows ({', '.join(beyond_a0)}) the "
        "online bound itself is more than 5 points below Belady's optimum: there the target "
        "is out of reach of every online policy (in expectation)."
        if beyond_a0
        else "On every Zipf row the online bound is within 5 points of Belady's optimum."
    ]
    if beyond_lfu:
        figures = ", ".join(
            f"{name}: exact LFU {median(groups[name], lambda r: r.exact_lfu or 0.0):.2f}, "
            f"optimum {median(groups[name], lambda r: r.optimal):.2f}, "
            f"W-TinyLFU {median(groups[name], lambda r: r.policy):.2f}"
            for name in beyond_lfu
        )
        out.append(
            f"On {', '.join(beyond_lfu)} A0 is within 5 points, but A0 knows the true "
            "probabilities; even the exact LFU, which knows every count, is more than 5 points "
            f"below the optimum ({figures}): learning the frequencies from the stream costs "
            "more than the target leaves."
        )
    if missed:
        out.append(
            f"W-TinyLFU misses the target where the exact LFU does not: {', '.join(missed)}."
        )
    out.append(
        f"A0 - W-TinyLFU ranges from {min(to_bound):.2f} to {max(to_bound):.2f} points "
        "(medians). A0's long-run expectation, the summed probability of the `capacity` most "
        f"probable keys, differs from the measured A0 by at most {expected_gap:.2f} points: "
        "the first access of each key, which every cache misses, and sampling noise."
    )
    return [" ".join(out), ""]


def render_memory(results: Results) -> list[str]:
    runs = results.memory or []
    sizes = results.sizes
    entries = sizes.memory_entries
    out = [
        f"`bench/memory.py`, each figure in a fresh process: resident set size "
        f"(/proc/self/statm) after inserting {entries:,} entries of {KEY_BYTES}-byte keys and "
        "100-byte values, minus before, divided by the entries; the key and value objects "
        "are included. The Store has max_cost large enough to hold all (nothing is "
        "evicted) and a sketch of 1,000,000 counters allocated before the first reading; "
        "each set carries its own version, and the digests are settled before the second "
        "reading (as a node does within a second). "
        f"{plural(sizes.memory_repeats, 'run')} each, alternating.",
        "",
    ]
    body = []
    for kind, label in (("store", "phoenix Store"), ("dict", "dict (floor)")):
        mine = [r for r in runs if r["kind"] == kind]
        if not mine:
            continue
        per_entry = Spread.of([r["bytes_per_entry"] for r in mine])
        growth = Spread.of([(r["rss_after"] - r["rss_before"]) / 2**20 for r in mine])
        charged = mine[0]["charged_per_entry"]
        body.append(
            [
                label,
                f"{entries:,}",
                per_entry.cell(0),
                growth.cell(1),
                ""
                if charged is None
                else f"{charged} ({mine[0]['entry_overhead_constant']} + 124)",
            ]
        )
    out += table(
        ["container", "entries", "bytes/entry", "RSS growth (MiB)", "charged to max_cost"], body
    )
    out += [
        "",
        "*Charged to max_cost* is what the Store counts per entry against `max_cost` "
        "(key bytes + value bytes + `ENTRY_OVERHEAD`); the measured figure is what it "
        "really costs here, so `max_cost` divided by the charge is the entries a node holds.",
    ]
    return out


def render_http(results: Results) -> list[str]:
    http = results.http
    sizes = results.sizes
    assert http is not None
    warmup = (
        f"each target gets a {sizes.http_warmup:g} s warm-up load first, then "
        if sizes.http_warmup > 0
        else "no warm-up, "
    )
    out = [
        f"Load generator: {http.generator}, in a separate process on the same machine. "
        "Install wrk with `apt-get install wrk`; without it the runner falls back to "
        "`bench/load.py` (trio, raw HTTP/1.1 keep-alive, closed loop, as wrk does). "
        "The servers: `phoenix serve` (default settings, one node, no peers) and, as the "
        "ceiling, `hypercorn --worker-class trio --workers 0 bench/bare_asgi.py:app` (one "
        "process, with the hypercorn settings phoenix serve uses: keep-alive without a request "
        "limit, and its keep-alive timeout), an ASGI "
        "callable answering a fixed 100-byte body (it reads and drops a POST's body, first "
        "taking what hypercorn has already queued without waiting, as phoenix's hot routes "
        "do, and leaves a GET's empty body unread). "
        "Both run for the whole benchmark; "
        f"{warmup}{plural(sizes.http_repeats, 'counted run')} per target in "
        "rotation; the ratio is to the ceiling of the same method measured in the same "
        "rotation: the bare GET (sent the same request as GET /get) for GET /get, the bare "
        "POST of 100 bytes (sent the same request as POST /set) for the POST routes (a body "
        "costs hypercorn work of its own). Every other rotation runs each ceiling and its "
        "routes in the opposite order, so that neither side always goes first. Keys are 24 "
        "bytes, values 100 bytes; the /getKeys keys are all present, and /setKeys writes "
        f"the same 100 keys each time. {cores.note()}CPU columns are cores' "
        "worth of CPU time over the run: a server near 1.0 is the limit (trio serves on "
        "one core).",
        "",
    ]
    body = []
    for row in http.rows:
        runs = row.runs
        rate = Spread.of([r.requests_per_s for r in runs])
        keys = Spread.of([r.requests_per_s * row.target.keys for r in runs])
        bad = sum(r.non_2xx + r.socket_errors for r in runs)
        body.append(
            [
                row.target.name,
                rate.cell(0),
                keys.cell(0),
                Spread.of([r.p50_ms for r in runs]).cell(2),
                Spread.of([r.p99_ms for r in runs]).cell(2),
                "1.00" if row.target.server == "bare" else Spread.of(row.ratios).cell(2),
                f"{Spread.of([r.server_cpu for r in runs]).median:.2f}",
                f"{Spread.of([r.client_cpu for r in runs]).median:.2f}",
                str(bad),
            ]
        )
    out += table(
        [
            "request",
            "requests/s",
            "keys/s",
            "p50 ms",
            "p99 ms",
            "÷ bare ceiling",
            "server CPU",
            "client CPU",
            "errors",
        ],
        body,
    )
    out += ["", "*errors*: non-2xx answers and socket errors over all runs (0 expected)."]
    return out


def render_resp(results: Results) -> list[str]:
    assert results.resp is not None
    return resp_bench.render(results.resp)


def server_lag(lag: dict[str, Any], field: str) -> float:
    """A figure of the nodes' own lag histogram, the worse of nodes 2 and 3 (nan if absent)."""
    values = [row.get(field, float("nan")) for row in lag["server_lag"].values()]
    if field == "within_50ms_pct":
        return min(values)
    return max(values)


def render_replication(results: Results) -> list[str]:
    rep = results.replication
    sizes = results.sizes
    assert rep is not None
    out = [
        f"`bench/replication.py`. **Lag**: three `phoenix serve` processes on 127.0.0.1; "
        f"{sizes.lag_rate:g} writes/s for {sizes.lag_seconds:g} s to node 1 "
        f"({sizes.lag_writers} writer tasks). *On the nodes*: every write, as the two other "
        "nodes time it in `phoenix_replication_lag_seconds` (from the clock in the write's "
        "version to its apply there; scraped before and after): the share applied within "
        "50 ms is exact, p50 and p99 are interpolated within their histogram bucket; the "
        "worse of the two nodes. *After "
        "ack*: every 10th key watched on the two other nodes, each node polled with one "
        "POST /getKeys for all the keys it has not shown yet, every 5 ms; lag = answer of "
        "the poll that found the key - the write's acknowledgement, so it includes up to one "
        "poll interval and one poll round trip. *Node CPU*: cores' worth over the run. "
        f"{plural(sizes.lag_repeats, 'run')}, a fresh cluster each.",
        "",
    ]
    body = []
    if rep.lag:
        fields: list[tuple[str, Callable[[dict[str, Any]], float]]] = [
            ("achieved writes/s", lambda r: r["achieved_rate_per_s"] or float("nan")),
            ("write ack p50 (ms)", lambda r: r["ack_latency"]["p50_ms"]),
            ("write ack p99 (ms)", lambda r: r["ack_latency"]["p99_ms"]),
            ("lag on the nodes p50 (ms)", lambda r: server_lag(r, "p50_ms")),
            ("lag on the nodes p99 (ms)", lambda r: server_lag(r, "p99_ms")),
            ("writes applied within 50 ms (%)", lambda r: server_lag(r, "within_50ms_pct")),
            ("lag after ack p50 (ms)", lambda r: r["lag_after_ack"]["both"]["p50_ms"]),
            ("lag after ack p99 (ms)", lambda r: r["lag_after_ack"]["both"]["p99_ms"]),
            ("lag after ack max (ms)", lambda r: r["lag_after_ack"]["both"]["max_ms"]),
            ("poll round trip p50 (ms)", lambda r: r["poll_round_trip_p50_ms"]),
            ("polls per s", lambda r: r["polls_per_s"] or float("nan")),
            ("writes per batch pushed", lambda r: r["writes_per_batch"] or float("nan")),
            ("node 1 CPU (cores)", lambda r: r["node_cpu_cores"]["node1"]),
            (
                "node 2, node 3 CPU (cores, the larger)",
                lambda r: max(r["node_cpu_cores"]["node2"], r["node_cpu_cores"]["node3"]),
            ),
            ("lag samples per run", lambda r: r["lag_after_ack"]["both"]["count"]),
            ("failed writes", lambda r: r["writes_failed"]),
            ("keys not seen in time", lambda r: sum(r["not_seen_within_timeout"].values())),
        ]
        for name, get in fields:
            digits = 2 if any(unit in name for unit in ("ms", "%", "cores", "batch")) else 0
            body.append([name, Spread.of([get(r) for r in rep.lag]).cell(digits)])
        out += table(["lag", "median (min-max)"], body)
    out += [
        "",
        f"**Catch-up**: in one process (httpx.ASGITransport, no sockets). Nodes A and B get "
        f"the same {sizes.catch_up_keys:,} writes; {sizes.catch_up_changes:,} are rewritten on A "
        "only; B catches up against A (*difference*). Then an empty node catches up against "
        "A (*full copy*). Bytes are request and answer bodies, both directions. "
        f"{plural(sizes.catch_up_repeats, 'run')} (seeds 1..{sizes.catch_up_repeats}).",
        "",
    ]
    body = []
    for name in ("difference", "full_copy"):
        reports = [r[name] for r in rep.catch_up]
        body.append(
            [
                name.replace("_", " "),
                Spread.of([r["differing_buckets"] for r in reports]).cell(0),
                Spread.of([r["received"] for r in reports]).cell(0),
                Spread.of([r["bytes"] for r in reports]).cell(0),
                Spread.of([r["seconds"] for r in reports]).cell(3),
            ]
        )
    out += table(["catch-up", "differing buckets", "entries received", "bytes", "seconds"], body)
    if rep.catch_up:
        ratio = Spread.of([r["bytes_ratio"] for r in rep.catch_up]).cell(2, 100)
        per_key = Spread.of([r["bytes_per_changed_key"] for r in rep.catch_up]).cell(0)
        out += [
            "",
            f"The difference costs {ratio} % of the full copy's bytes, "
            f"{per_key} bytes per changed key.",
        ]
    return out


def render(results: Results) -> str:
    sizes = results.sizes
    total = sum(results.seconds.values())
    out = [
        "# Benchmarks",
        "",
        f"Written by `{results.command}` on {results.started:%Y-%m-%d %H:%M} UTC; the run took "
        f"{total:,.0f} s. Every table gives the median over repeated runs and the min-max in "
        "brackets (or a column); how many runs is said per table. Ratios are measured side "
        "by side in the same run. Regenerate with `python bench/run.py` "
        "(`pip install -e '.[bench]'` for the plots and the cachetools comparisons).",
        "",
    ]
    if sizes.name == "smoke":
        out += [
            "**Smoke run**: tiny sizes so that it ends in seconds (CI runs it to keep the "
            "benchmarks working); its figures are not meaningful.",
            "",
        ]
    out += ["## Machine", ""]
    out += table(["", ""], [[name, value] for name, value in results.machine.items()], "ll")
    out += [""]
    if results.plot_note:
        out += [results.plot_note, ""]
    renderers: dict[str, tuple[object, Callable[[Results], list[str]]]] = {
        "Store micro-benchmarks": (results.store, render_store),
        "Hit ratio": (results.hit, render_hit_ratio),
        "Memory per entry": (results.memory, render_memory),
        "HTTP": (results.http, render_http),
        "RESP": (results.resp, render_resp),
        "Replication": (results.replication, render_replication),
    }
    for number, section in enumerate(SECTIONS, start=1):
        data, renderer = renderers[section]
        seconds = results.seconds.get(section)
        took = f" ({seconds:,.0f} s)" if seconds is not None else ""
        out += [f"## {section}", "", f"Benchmark {number} of {len(SECTIONS)}{took}.", ""]
        if section in results.failures:
            last = results.failures[section].strip().splitlines()[-1]
            out += [f"**FAILED**: `{last}` (the traceback is on the runner's stderr).", ""]
            continue
        if data is None:
            out += ["Not run.", ""]
            continue
        out += renderer(results)
        out += [""]
        if section in results.plots:
            out += [f"![{section}]({results.plots[section]})", ""]
    out += [PROFILES.read_text().strip()] if PROFILES.exists() else []
    return "\n".join(out).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds, for CI")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="the Markdown report (plots go to a bench/ folder beside it); "
        "default docs/benchmarks.md",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        default=None,
        help=f"ARC .lis trace for the hit ratios (default {hit_ratio.DEFAULT_TRACE} if present)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[section.split()[0].lower() for section in SECTIONS],
        help="run only these benchmarks (for a quick look; the report says the rest were not run)",
    )
    parser.add_argument(
        "--load-generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="HTTP load: wrk, bench/load.py, or wrk when installed (default)",
    )
    args = parser.parse_args(argv)
    trace = args.trace
    if trace is None and hit_ratio.DEFAULT_TRACE.exists():
        trace = hit_ratio.DEFAULT_TRACE
    if trace is not None and not trace.exists():
        parser.error(f"--trace: {trace} not found")
    sizes = SMOKE if args.smoke else FULL
    wrk = shutil.which("wrk") if args.load_generator != "python" else None
    if args.load_generator == "wrk" and wrk is None:
        parser.error("--load-generator wrk: wrk is not installed (apt-get install wrk)")
    results = Results(
        sizes=sizes,
        command=shlex.join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)]),
        started=datetime.now(UTC),
        machine=machine(),
        only=frozenset(args.only or ()),
    )
    results.store = timed(results, "Store micro-benchmarks", lambda: bench_store(sizes))
    results.hit = timed(results, "Hit ratio", lambda: bench_hit_ratio(sizes, trace))
    results.memory = timed(results, "Memory per entry", lambda: bench_memory(sizes))
    results.http = timed(results, "HTTP", lambda: bench_http(sizes, wrk))
    results.resp = timed(results, "RESP", lambda: resp_bench.run(sizes.resp))
    results.replication = timed(results, "Replication", lambda: bench_replication(sizes))
    load = os.getloadavg()
    results.machine["Load average at end"] = f"{load[0]:.2f} (1 min), {load[1]:.2f} (5 min)"
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    make_plots(results, output.parent / "bench", "bench")
    output.write_text(render(results))
    print(f"[bench] wrote {output}", file=sys.stderr)
    return 1 if results.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
