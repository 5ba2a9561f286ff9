"""The benchmarks keep working: `bench/run.py --smoke` end to end, in seconds.

The smoke run uses the Python load generator (bench/load.py), as CI has no
wrk; wrk's output parsing is pinned down separately on a captured sample.
matplotlib and cachetools are bench extras: without them the report must say
what it skipped, and everything else must still be there.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH = REPO_ROOT / "bench"
RUNNER = BENCH / "run.py"
SMOKE_TIMEOUT = 120
SECTIONS = ("Store micro-benchmarks", "Hit ratio", "Memory per entry", "HTTP", "Replication")
# Needs redis-server and redis-benchmark; without them the section says it was skipped.
RESP_SECTION = "RESP"
# A table row whose cells after the first hold at least one number.
NUMBERED_ROW = re.compile(r"^\|[^|\n]+\|.*\d", re.MULTILINE)


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def sections_of(report: str) -> dict[str, str]:
    parts = re.split(r"^## ", report, flags=re.MULTILINE)
    return {part.split("\n", 1)[0].strip(): part for part in parts[1:]}


def import_runner(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # run.py imports its neighbours (hit_ratio, replication, ...) as top-level modules.
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_run", RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_reports_every_benchmark_with_numbers(tmp_path: Path) -> None:
    report_path = tmp_path / "docs" / "benchmarks.md"
    command = [
        sys.executable,
        str(RUNNER),
        "--smoke",
        "--output",
        str(report_path),
        "--load-generator",
        "python",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr
    report = report_path.read_text()
    assert "FAILED" not in report, report

    sections = sections_of(report)
    machine = sections["Machine"]
    for fact in ("CPU cores", "Python", "trio ", "hypercorn ", "quart-trio ", "httpx "):
        assert fact in machine, fact
    assert re.search(r"on \d{4}-\d\d-\d\d \d\d:\d\d UTC", report)
    for name in SECTIONS:
        assert name in sections, f"no section {name!r}"
        rows = NUMBERED_ROW.findall(sections[name])
        assert len(rows) >= 2, f"section {name!r} has no figures:\n{sections[name]}"

    store = sections["Store micro-benchmarks"]
    assert "phoenix Store" in store and "get miss" in store
    if installed("cachetools"):
        assert "cachetools.LRUCache" in store and "cachetools.TTLCache" in store
    else:
        assert "cachetools is not installed" in store
    assert "Megiddo" in sections["Hit ratio"] or "No trace" in sections["Hit ratio"]
    assert "bytes/entry" in sections["Memory per entry"]
    http = sections["HTTP"]
    for route in ("bare ASGI", "GET /get", "POST /set", "/getKeys, 10 keys", "/getKeys, 100 keys"):
        assert route in http, route
    assert "apt-get install wrk" in http
    assert "lag after ack p99" in sections["Replication"]
    resp = sections[RESP_SECTION]
    if "**Skipped:" in resp:
        assert "apt-get install redis-server redis-tools" in resp
    else:
        assert len(NUMBERED_ROW.findall(resp)) >= 2, resp
        assert "PhoenixCache" in resp and "redis-server" in resp and "82,000" in resp

    pictures = re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", report)
    if installed("matplotlib"):
        assert pictures
        for picture in pictures:
            assert (report_path.parent / picture).is_file(), picture
    else:
        assert not pictures
        assert "matplotlib is not installed" in report


WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:8080/getKeys
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.55ms    1.64ms  13.94ms   76.75%
    Req/Sec     2.90k   309.14     3.22k    70.00%
  Latency Distribution
     50%  950.00us
     75%    6.24ms
     90%    7.62ms
     99%    1.20s
  14503 requests in 5.01s, 3.30MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 7
Requests/sec:   2894.43
Transfer/sec:    670.41KB
"""


def test_wrk_output_is_parsed_with_its_units(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = import_runner(monkeypatch)
    rate, p50_ms, p99_ms, non_2xx, socket_errors = runner.parse_wrk(WRK_OUTPUT)
    assert rate == pytest.approx(2894.43)
    assert p50_ms == pytest.approx(0.95)
    assert p99_ms == pytest.approx(1200.0)
    assert (non_2xx, socket_errors) == (7, 3)


def test_resp_benchmark_is_skipped_with_a_note_without_redis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import resp_bench

    monkeypatch.setattr(resp_bench, "tool", lambda name: None)
    results = resp_bench.run(resp_bench.SMOKE, log=sys.stderr)
    assert results.skipped and not results.runs
    text = "\n".join(resp_bench.render(results))
    assert "Skipped: redis-server and redis-benchmark not installed" in text
    assert "apt-get install redis-server redis-tools" in text
