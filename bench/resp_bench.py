"""The RESP listener against redis-server, side by side, loaded by redis-benchmark.

    python bench/resp_bench.py                 # full sizes (about a minute)
    python bench/resp_bench.py --smoke         # tiny sizes, seconds
    python bench/resp_bench.py --json          # the figures as JSON instead of Markdown

Starts `phoenix serve` with `resp_port` set, twice: as installed here, and this checkout
built with PHOENIX_COMPILE=1 (the compiled build, docs/operations.md; not in --smoke), and
`redis-server --save '' --appendonly no`, all on free 127.0.0.1 ports and pinned to one
core (redis-benchmark to the others, as bench/cores.py places them), fills the same
keyspace in each, then runs
`redis-benchmark -t get,set -d 100 -r KEYSPACE -q --csv` against each in three modes
(1 client; 50 clients; 50 clients with -P 16), alternating the servers, repeated.
Then, unless --profile-seconds 0, py-spy samples `phoenix serve` under
`redis-benchmark -c 50 -t get` and the shares of CPU time are summed by function
and by package. Without redis-server (or redis-benchmark) installed the benchmark
is skipped with a note (apt-get install redis-server redis-tools); without py-spy
only the profile is.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import attrs

import cores
import replication
from load import process_cpu_seconds

START_TIMEOUT = 30.0
RUN_TIMEOUT = 300.0
VALUE_BYTES = 100
GO_HTTP_GETS_PER_S = 82_000  # the original Go server's HTTP GETs/s (the project's issue)
TARGET_UNPIPELINED = 0.5  # x redis-server ops/s, 50 clients
TARGET_PIPELINED = 0.25  # x redis-server ops/s, 50 clients, -P 16
INSTALL = "apt-get install redis-server redis-tools"
SERVERS = ("phoenix", "compiled", "redis")
PHOENIX_BUILDS = ("phoenix", "compiled")
LABELS = {"phoenix": "PhoenixCache", "compiled": "PhoenixCache, compiled", "redis": "redis-server"}
REPO = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 900.0
TESTS = ("GET", "SET")


@attrs.frozen
class Mode:
    name: str
    clients: int
    pipeline: int
    pipelined: bool  # uses the pipelined request count

    def flags(self) -> list[str]:
        flags = ["-c", str(self.clients)]
        if self.pipeline > 1:
            flags += ["-P", str(self.pipeline)]
        return flags


MODES = (
    Mode("1 client", 1, 1, False),
    Mode("50 clients", 50, 1, False),
    Mode("50 clients, -P 16", 50, 16, True),
)


@attrs.frozen
class RespSizes:
    name: str
    requests: int  # per test, unpipelined modes
    pipelined_requests: int  # per test, -P 16
    repeats: int
    keyspace: int
    profile_seconds: float
    compiled: bool  # also build and measure the compiled build


FULL = RespSizes("full", 20_000, 200_000, 3, 10_000, 10.0, True)
SMOKE = RespSizes("smoke", 1_000, 4_000, 1, 1_000, 0.0, False)


@attrs.frozen
class RunResult:
    server: str
    mode: str
    test: str
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu: float  # cores' worth of CPU the server used during the whole command
    repeat: int


@attrs.define
class Profile:
    seconds: float = 0.0
    samples: int = 0
    ops_per_s: float = float("nan")  # what redis-benchmark reached while sampled
    by_package: list[tuple[str, float]] = attrs.field(factory=list)
    by_function: list[tuple[str, float]] = attrs.field(factory=list)  # self time
    inclusive: list[tuple[str, float]] = attrs.field(factory=list)  # phoenix functions
    skipped: str = ""


@attrs.define
class RespResults:
    sizes: RespSizes
    skipped: str = ""  # why the benchmark did not run
    compiled_skipped: str = ""  # why the compiled build was not measured
    builds: dict[str, str] = attrs.field(factory=dict)  # server -> INFO's phoenix_build
    versions: dict[str, str] = attrs.field(factory=dict)
    runs: list[RunResult] = attrs.field(factory=list)
    commands: dict[str, str] = attrs.field(factory=dict)  # mode -> redis-benchmark command
    warnings: dict[str, list[str]] = attrs.field(factory=dict)  # server -> stderr lines
    hits: dict[str, tuple[int, int]] = attrs.field(factory=dict)  # server -> hits, misses
    profile: Profile | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


# -- servers ---------------------------------------------------------------------------------


def tool(name: str) -> str | None:
    found = shutil.which(name)
    if found is None:
        beside = Path(sys.executable).parent / name  # a venv's script, venv not activated
        if beside.exists():
            found = str(beside)
    return found


class Resp:
    """A minimal blocking RESP2 client: enough to fill a keyspace, PING and read INFO."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    @staticmethod
    def encode(*words: bytes) -> bytes:
        out = [b"*%d\r\n" % len(words)]
        for word in words:
            out.append(b"$%d\r\n%s\r\n" % (len(word), word))
        return b"".join(out)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _exactly(self, count: int) -> bytes:
        while len(self.buffer) < count + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count + 2 :]
        return data

    def reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if int(rest) < 0 else self._exactly(int(rest))
        if kind == b"*":
            return None if int(rest) < 0 else [self.reply() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")

    def call(self, *words: bytes) -> Any:
        self.sock.sendall(self.encode(*words))
        return self.reply()

    def fill(self, keyspace: int, batch: int = 500) -> None:
        """SET every key redis-benchmark -r uses (key:%012d) to a 100-byte value."""
        value = b"x" * VALUE_BYTES
        for start in range(0, keyspace, batch):
            stop = min(keyspace, start + batch)
            self.sock.sendall(
                b"".join(self.encode(b"SET", b"key:%012d" % i, value) for i in range(start, stop))
            )
            for _ in range(start, stop):
                self.reply()

    def info(self, section: str) -> dict[str, str]:
        text = self.call(b"INFO", section.encode()).decode()
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {name: value for name, value in pairs}


def wait_for_resp(process: subprocess.Popen[bytes], port: int, name: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            client = Resp(port, timeout=2)
            try:
                if client.call(b"PING") == b"PONG":
                    return
            finally:
                client.close()
        except (OSError, RuntimeError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not start:\n{log.read_text(errors='replace')}")


@contextmanager
def started(
    command: list[str], port: int, name: str, folder: Path, env: dict[str, str] | None = None
) -> Iterator[int]:
    """Run `command` until the block ends; yield its pid once PING answers on `port`."""
    log = folder / f"{name}.stderr.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, cwd=folder, env=env
        )
    try:
        wait_for_resp(process, port, name, log)
        yield process.pid
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def phoenix_server(folder: Path, name: str = "phoenix") -> tuple[list[str], int]:
    http_port, resp_port = replication.free_ports(2)
    config = folder / f"{name}.json"
    config.write_text(
        json.dumps({"port": f"127.0.0.1:{http_port}", "node_id": "bench", "resp_port": resp_port})
    )
    return replication.phoenix_command("serve", "--config", str(config)), resp_port


def compiled_build(folder: Path) -> tuple[dict[str, str] | None, str]:
    """This checkout built as a user builds it with PHOENIX_COMPILE=1, into `folder`:
    the environment that runs `phoenix serve` on it (None if the build failed), or why not."""
    target = folder / "compiled"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    done = subprocess.run(
        [*command, "--target", str(target), str(REPO)],
        env={**os.environ, "PHOENIX_COMPILE": "1"},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return None, f"the compiled build failed (pip exit {done.returncode}): {last}"
    path = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}, ""


def redis_server(binary: str) -> tuple[list[str], int]:
    (port,) = replication.free_ports(1)
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    return [*command, "no", "--daemonize", "no"], port


# -- redis-benchmark -------------------------------------------------------------------------


def benchmark_command(
    binary: str, port: int, mode: Mode, sizes: RespSizes, tests: str = "get,set"
) -> list[str]:
    requests = sizes.pipelined_requests if mode.pipelined else sizes.requests
    return [
        binary,
        *("-h", "127.0.0.1", "-p", str(port), "-t", tests, "-n", str(requests)),
        *mode.flags(),
        *("-d", str(VALUE_BYTES), "-r", str(sizes.keyspace), "-q", "--csv"),
    ]


def parse_csv(output: str) -> dict[str, tuple[float, float, float]]:
    """test -> (requests/s, p50 ms, p99 ms) from `redis-benchmark -q --csv`."""
    rows = list(csv.DictReader(io.StringIO(output)))
    figures = {}
    for row in rows:
        p50 = row.get("p50_latency_ms") or "nan"
        p99 = row.get("p99_latency_ms") or "nan"
        figures[row["test"]] = (float(row["rps"]), float(p50), float(p99))
    return figures


def run_benchmark(
    command: list[str], pid: int
) -> tuple[dict[str, tuple[float, float, float]], str, float]:
    before = process_cpu_seconds(pid)
    begun = time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT, preexec_fn=cores.pin_load
    )
    elapsed = time.monotonic() - begun
    cpu = (process_cpu_seconds(pid) - before) / elapsed
    figures = parse_csv(done.stdout) if done.returncode == 0 else {}
    if not figures:
        raise RuntimeError(
            f"{' '.join(command)} failed (exit {done.returncode}):\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
    return figures, done.stderr, cpu


# -- profile ---------------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_parts(frame: str) -> tuple[str, str]:
    """'Session.run (phoenix/resp_server.py:247)' -> ('phoenix/resp_server.py', 'Session.run')."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return "?", frame.strip()
    return match.group("file"), match.group("function")


def package_of(path: str) -> str:
    if path.startswith("<"):
        return "Python (frozen/builtin)"
    parts = path.split("/")
    if len(parts) == 1:
        return "Python stdlib" if path.endswith(".py") else path
    if parts[0] in {"trio", "phoenix", "attrs", "attr", "outcome", "sniffio", "prometheus_client"}:
        return parts[0] if parts[0] != "phoenix" else f"phoenix/{parts[1]}"
    return parts[0]


# Functions whose self time is mostly the recv and send system calls: the
# reactor that serves connections at rest, a connection's own loop on a
# plain TCP socket, and trio's socket wrapper.
SOCKET_CALLERS = frozenset(
    {"Reactor._serve_ready", "Session.run_socket", "_SocketType._nonblocking_helper"}
)


def summarize_profile(raw: str, top: int = 15) -> Profile:
    """Shares of samples from py-spy's raw (collapsed) output."""
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [frame_parts(f) for f in stack.split(";")]
        path, function = frames[-1]
        if function in SOCKET_CALLERS:  # where recv and send are called
            by_package["socket calls (recv/send syscalls included)"] += count
        else:
            by_package[package_of(path)] += count
        by_function[f"{function} ({path})"] += count
        for name in {f"{fn} ({p})" for p, fn in frames if p.startswith("phoenix/")}:
            inclusive[name] += count

    def shares(counter: Counter[str], limit: int) -> list[tuple[str, float]]:
        return [(name, n / total) for name, n in counter.most_common(limit)] if total else []

    # Functions on (nearly) every stack (main, the connection handler) say nothing.
    every = {name for name, n in inclusive.items() if total and n / total >= 0.95}
    for name in every:
        del inclusive[name]
    return Profile(
        samples=total,
        by_package=shares(by_package, top),
        by_function=shares(by_function, top),
        inclusive=shares(inclusive, top),
    )


def profile_phoenix(
    benchmark: str, py_spy: str | None, port: int, pid: int, sizes: RespSizes, folder: Path
) -> Profile:
    if py_spy is None:
        return Profile(skipped="py-spy is not installed (pip install py-spy)")
    seconds = sizes.profile_seconds
    load = benchmark_command(benchmark, port, MODES[1], sizes, "get")
    load = [*load[: load.index("-n") + 1], str(10**9), *load[load.index("-n") + 2 :]]
    load = [part for part in load if part != "--csv"]  # -q alone: a running rate on stderr
    raw = folder / "profile.txt"
    with ExitStack() as stack:
        output = stack.enter_context((folder / "profile-load.txt").open("wb"))
        loader = subprocess.Popen(
            load, stdout=output, stderr=subprocess.STDOUT, preexec_fn=cores.pin_load
        )
        try:
            time.sleep(1.0)  # let the 50 connections open
            record = [py_spy, "record", "-p", str(pid), "-d", f"{seconds:g}", "-r", "100"]
            done = subprocess.run(
                [*record, "-f", "raw", "-o", str(raw)],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
            )
        finally:
            loader.send_signal(signal.SIGINT)
            try:
                loader.wait(10)
            except subprocess.TimeoutExpired:
                loader.kill()
                loader.wait()
    if done.returncode != 0 or not raw.exists():
        return Profile(skipped=f"py-spy failed (exit {done.returncode}): {done.stderr.strip()}")
    profile = summarize_profile(raw.read_text())
    profile.seconds = seconds
    rates = re.findall(rb"GET: rps=([\d.]+)", (folder / "profile-load.txt").read_bytes())
    if rates:
        profile.ops_per_s = statistics.median(float(r) for r in rates[2:] or rates)
    return profile


# -- the benchmark ---------------------------------------------------------------------------


def version(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    match = re.search(r"v=(\S+)|(\d+\.\d+\.\d+)", done.stdout + done.stderr)
    return next((g for g in match.groups() if g), "?") if match else "unknown version"


def run(sizes: RespSizes = FULL, log: Any = sys.stderr) -> RespResults:
    results = RespResults(sizes)
    server_binary, benchmark = tool("redis-server"), tool("redis-benchmark")
    missing = [
        n for n, b in (("redis-server", server_binary), ("redis-benchmark", benchmark)) if not b
    ]
    if missing or server_binary is None or benchmark is None:
        results.skipped = f"{' and '.join(missing)} not installed ({INSTALL})"
        print(f"[resp] skipped: {results.skipped}", file=log, flush=True)
        return results
    results.versions = {
        "redis-server": version([server_binary, "--version"]),
        "redis-benchmark": version([benchmark, "--version"]),
    }
    with tempfile.TemporaryDirectory(prefix="phoenix-bench-resp-") as name, ExitStack() as stack:
        folder = Path(name)
        ports: dict[str, int] = {}
        pids: dict[str, int] = {}
        phoenix_command, ports["phoenix"] = phoenix_server(folder)
        pids["phoenix"] = stack.enter_context(
            started(phoenix_command, ports["phoenix"], "phoenix", folder)
        )
        compiled_env: dict[str, str] | None = None
        if not sizes.compiled:
            results.compiled_skipped = "not in a smoke run"
        else:
            print("[resp] building the compiled build (PHOENIX_COMPILE=1)", file=log, flush=True)
            compiled_env, results.compiled_skipped = compiled_build(folder)
        if compiled_env is not None:
            command, ports["compiled"] = phoenix_server(folder, "compiled")
            command = [sys.executable, "-m", "phoenix.cli", *command[command.index("serve") :]]
            pids["compiled"] = stack.enter_context(
                started(command, ports["compiled"], "compiled", folder, compiled_env)
            )
        redis_command, ports["redis"] = redis_server(server_binary)
        pids["redis"] = stack.enter_context(started(redis_command, ports["redis"], "redis", folder))
        for pid in pids.values():
            cores.pin_server(pid)
        before: dict[str, dict[str, str]] = {}
        for server, port in ports.items():
            client = Resp(port)
            try:
                client.fill(sizes.keyspace)
                size = client.call(b"DBSIZE")
                if size != sizes.keyspace:
                    raise RuntimeError(f"{server}: DBSIZE {size} after filling {sizes.keyspace}")
                before[server] = client.info("stats")
                if server in PHOENIX_BUILDS:
                    results.builds[server] = client.info("server")["phoenix_build"]
            finally:
                client.close()
        if results.builds.get("compiled", "compiled") != "compiled":
            raise RuntimeError(f"the compiled build runs as {results.builds['compiled']!r}")
        for mode in MODES:
            shown = benchmark_command("redis-benchmark", 0, mode, sizes)
            results.commands[mode.name] = " ".join(shown).replace("-p 0", "-p PORT")
        for repeat in range(sizes.repeats):
            for mode in MODES:
                order = [server for server in SERVERS if server in ports]
                order = order if repeat % 2 == 0 else order[::-1]
                for server in order:
                    command = benchmark_command(benchmark, ports[server], mode, sizes)
                    figures, stderr, cpu = run_benchmark(command, pids[server])
                    for line in stderr.splitlines():
                        lines = results.warnings.setdefault(server, [])
                        if line.strip() and line.strip() not in lines:
                            lines.append(line.strip())
                    for test, (rate, p50, p99) in figures.items():
                        results.runs.append(
                            RunResult(server, mode.name, test, rate, p50, p99, cpu, repeat)
                        )
                    print(
                        f"[resp] {repeat + 1}/{sizes.repeats} {mode.name:<18} "
                        f"{LABELS[server]:<13} "
                        + ", ".join(f"{t} {f[0]:>10,.0f}/s" for t, f in sorted(figures.items())),
                        file=log,
                        flush=True,
                    )
        for server, port in ports.items():
            client = Resp(port)
            try:
                after = client.info("stats")
            finally:
                client.close()
            results.hits[server] = (
                int(after["keyspace_hits"]) - int(before[server]["keyspace_hits"]),
                int(after["keyspace_misses"]) - int(before[server]["keyspace_misses"]),
            )
        if sizes.profile_seconds > 0:
            print(f"[resp] profiling phoenix serve for {sizes.profile_seconds:g} s", file=log)
            results.profile = profile_phoenix(
                benchmark, tool("py-spy"), ports["phoenix"], pids["phoenix"], sizes, folder
            )
    return results


# -- the report ------------------------------------------------------------------------------

DASH = "\N{EN DASH}"


def spread(values: Sequence[float], digits: int = 0) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "n/a"
    median = f"{statistics.median(values):,.{digits}f}"
    if len(values) == 1:
        return median
    return f"{median} ({min(values):,.{digits}f}{DASH}{max(values):,.{digits}f})"


def series(results: RespResults, server: str, mode: str, test: str) -> list[RunResult]:
    return sorted(
        (r for r in results.runs if (r.server, r.mode, r.test) == (server, mode, test)),
        key=lambda r: r.repeat,
    )


def ratios(results: RespResults, server: str, mode: str, test: str) -> list[float]:
    """`server` / redis-server, per repeat (the two ran back to back)."""
    theirs = {r.repeat: r.ops_per_s for r in series(results, "redis", mode, test)}
    return [
        r.ops_per_s / theirs[r.repeat]
        for r in series(results, server, mode, test)
        if theirs.get(r.repeat)
    ]


def target_of(mode: Mode) -> tuple[float, str] | None:
    if mode.clients == 50 and mode.pipeline == 1:
        return TARGET_UNPIPELINED, f"≥ {TARGET_UNPIPELINED:g}x"
    if mode.pipeline > 1:
        return TARGET_PIPELINED, f"≥ {TARGET_PIPELINED:g}x and > {GO_HTTP_GETS_PER_S:,} ops/s"
    return None


def verdict(mode: Mode, ratio: list[float], ops: list[float]) -> str:
    target = target_of(mode)
    if target is None or not ratio:
        return "(none)"
    median_ratio, median_ops = statistics.median(ratio), statistics.median(ops)
    met = median_ratio >= target[0]
    if mode.pipeline > 1:
        met = met and median_ops > GO_HTTP_GETS_PER_S
    return f"{target[1]}: {'met' if met else '**not met**'}"


def render(results: RespResults) -> list[str]:
    sizes = results.sizes
    if results.skipped:
        return [
            f"**Skipped: {results.skipped}.** This benchmark needs redis-server and "
            f"redis-benchmark (`{INSTALL}`); nothing else in the report depends on them.",
        ]
    versions = ", ".join(f"{name} {v}" for name, v in results.versions.items())
    if results.compiled_skipped:
        compiled = f"The compiled build was not measured: {results.compiled_skipped}."
    else:
        compiled = (
            "*PhoenixCache, compiled* is the same checkout built with `PHOENIX_COMPILE=1` "
            "(`pip install --target`, its hot modules compiled by mypyc: docs/operations.md), "
            "run beside the other two; INFO's `phoenix_build` said "
            + ", ".join(f"{LABELS[s]}: `{b}`" for s, b in results.builds.items())
            + ". "
        )
    out = [
        f"`bench/resp_bench.py`: `phoenix serve` (default settings, `resp_port` set, one node) "
        f"and `redis-server --save '' --appendonly no` ({versions}), all up for the whole "
        f"benchmark on 127.0.0.1, loaded in turn by redis-benchmark on the same machine. "
        f"{compiled}Each "
        f"first gets the same {sizes.keyspace:,} keys (`key:%012d`, {VALUE_BYTES}-byte values), "
        f"so that GETs hit: `-r {sizes.keyspace}` draws keys from that keyspace (SET runs "
        f"before GET and overwrites them). {sizes.requests:,} requests per test unpipelined, "
        f"{sizes.pipelined_requests:,} with -P 16; "
        f"{sizes.repeats} {'run' if sizes.repeats == 1 else 'runs'} per mode, alternating "
        "the servers (and which goes first); ratios are to redis-server's rate in the "
        f"same repeat. {cores.note()}*Server CPU* is cores' worth of CPU over the "
        "redis-benchmark command (both tests): PhoenixCache serves on one core (trio), as "
        "does redis-server.",
        "",
        "Commands (PORT is each server's):",
        "",
    ]
    out += [f"- {name}: `{command}`" for name, command in results.commands.items()]
    out += [""]
    header = [
        "mode",
        "test",
        "server",
        "ops/s",
        "÷ redis-server",
        "target (project issue)",
        "p50 / p99 ms",
        "server CPU",
    ]
    body = []
    for mode in MODES:
        for test in TESTS:
            for server in SERVERS:
                rows = series(results, server, mode.name, test)
                if not rows:
                    continue
                ops = [r.ops_per_s for r in rows]
                ratio = ratios(results, server, mode.name, test)
                mine = server in PHOENIX_BUILDS
                p50 = statistics.median(r.p50_ms for r in rows)
                p99 = statistics.median(r.p99_ms for r in rows)
                body.append(
                    [
                        mode.name,
                        test,
                        LABELS[server],
                        spread(ops),
                        spread(ratio, 2) if mine else "1",
                        verdict(mode, ratio, ops) if mine else "",
                        f"{p50:.3f} / {p99:.3f}",
                        f"{statistics.median(r.server_cpu for r in rows):.2f}",
                    ]
                )
    out += table(header, body, "lllrrlrr")
    pipelined = MODES[2].name
    against = []
    for server in PHOENIX_BUILDS:
        gets = [r.ops_per_s for r in series(results, server, pipelined, "GET")]
        sets = [r.ops_per_s for r in series(results, server, pipelined, "SET")]
        if gets and sets:
            against.append(
                f"{LABELS[server]} answers {spread(gets)} GETs/s "
                f"({spread([g / GO_HTTP_GETS_PER_S for g in gets], 2)}x) and {spread(sets)} "
                f"SETs/s ({spread([s / GO_HTTP_GETS_PER_S for s in sets], 2)}x)"
            )
    out += [
        "",
        f"**Against the original Go server** ({GO_HTTP_GETS_PER_S:,} HTTP GETs/s): with -P 16 "
        + "; ".join(against)
        + ". The Go figure is HTTP, one request per round trip; this is RESP with 16 "
        "commands per round trip.",
    ]
    if results.hits:
        parts = []
        for server, (hits, misses) in results.hits.items():
            total = hits + misses
            share = f"{100 * hits / total:.1f}%" if total else "n/a"
            parts.append(f"{LABELS[server]} {share} ({hits:,} hits, {misses:,} misses)")
        out += ["", "GET hits over the run (INFO keyspace_hits/misses): " + "; ".join(parts) + "."]
    warned = sorted({w for server in PHOENIX_BUILDS for w in results.warnings.get(server, [])})
    if warned:
        out += [
            "",
            "redis-benchmark printed against PhoenixCache (it ran nonetheless): "
            + "; ".join(f"`{line}`" for line in warned)
            + ". It sends `CONFIG GET save` and `CONFIG GET appendonly` first, and "
            "PhoenixCache, which has no Redis configuration parameters, answers an empty "
            "match (`*0`).",
        ]
    if results.profile is not None:
        out += ["", *render_profile(results.profile)]
    return out


def render_profile(profile: Profile) -> list[str]:
    if profile.skipped:
        return [f"Profile skipped: {profile.skipped}."]
    rate = (
        ""
        if profile.ops_per_s != profile.ops_per_s
        else f" at about {profile.ops_per_s:,.0f} GETs/s"
    )
    out = [
        f"**Where the time goes**: py-spy record (100 Hz, {profile.seconds:g} s, "
        f"{profile.samples:,} samples of the busy thread; idle time in epoll is not "
        f"sampled) on `phoenix serve` (PhoenixCache, as installed: py-spy sees no frames "
        f"in compiled code) under `redis-benchmark -c 50 -t get -d 100`{rate}. "
        "Shares of samples by the function running (self time), summed by package and "
        "by function; and, for phoenix's functions, the share of samples with the "
        "function anywhere on the stack (inclusive; those on 95% or more of the stacks, "
        "such as `Reactor.run`, left out). `Reactor._serve_ready` is where the "
        "listener calls recv and send on the sockets of connections at rest "
        "(`Session.run_socket` on the others): their self time includes those system "
        "calls. On a busy machine, samples also count time spent waiting for a core "
        "(often right after a wake-up in `EpollIOManager.get_events` or a send).",
        "",
    ]
    out += table(
        ["package (self)", "share"], [[n, f"{100 * s:.1f}%"] for n, s in profile.by_package]
    )
    out += [""]
    out += table(
        ["function (self)", "share"],
        [[f"`{n}`", f"{100 * s:.1f}%"] for n, s in profile.by_function],
    )
    out += [""]
    out += table(
        ["phoenix function (inclusive)", "share"],
        [[f"`{n}`", f"{100 * s:.1f}%"] for n, s in profile.inclusive],
    )
    return out


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def plot(results: RespResults, path: Path, plt: Any) -> bool:
    """A grouped bar chart of ops/s per mode and test, both servers; False if nothing to plot."""
    if not results.runs:
        return False
    labels = [(m.name, t) for m in MODES for t in TESTS if series(results, "phoenix", m.name, t)]
    colors = {"phoenix": "tab:blue", "compiled": "tab:cyan", "redis": "tab:red"}
    shown = [server for server in SERVERS if any(r.server == server for r in results.runs)]
    figure, axes = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(shown)
    for i, server in enumerate(shown):
        color = colors[server]
        values = [[r.ops_per_s for r in series(results, server, m, t)] for m, t in labels]
        medians = [statistics.median(v) if v else 0.0 for v in values]
        xs = [j + i * width for j in range(len(labels))]
        axes.bar(xs, medians, width, label=LABELS[server], color=color)
        axes.errorbar(
            xs,
            medians,
            yerr=[
                [m - min(v) if v else 0 for m, v in zip(medians, values, strict=True)],
                [max(v) - m if v else 0 for m, v in zip(medians, values, strict=True)],
            ],
            fmt="none",
            ecolor="black",
            capsize=3,
        )
    axes.axhline(GO_HTTP_GETS_PER_S, color="grey", linestyle="--", label="Go server, HTTP GET")
    axes.set_xticks([j + width * (len(shown) - 1) / 2 for j in range(len(labels))])
    axes.set_xticklabels([f"{t}\n{m}" for m, t in labels], fontsize="small")
    axes.set_yscale("log")
    axes.set_ylabel("ops/s (median, min-max; log scale)")
    axes.set_title("RESP: PhoenixCache vs redis-server, redis-benchmark")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--repeats", type=int, default=None, help="runs per mode and server")
    parser.add_argument(
        "--profile-seconds", type=float, default=None, help="py-spy time; 0 skips the profile"
    )
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.repeats is not None:
        sizes = attrs.evolve(sizes, repeats=args.repeats)
    if args.profile_seconds is not None:
        sizes = attrs.evolve(sizes, profile_seconds=args.profile_seconds)
    begun = time.monotonic()
    results = run(sizes)
    if args.plot is not None and results.runs:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plot(results, args.plot, plt)
    if args.json:
        print(json.dumps(results.to_json(), indent=2))
    else:
        print("\n".join(render(results)))
    print(f"[resp] took {time.monotonic() - begun:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
