"""Three real `phoenix serve` processes on 127.0.0.1: no acknowledged write is lost.

Each node lists all three URLs in `peers` (itself included: it must detect
itself). Real time and real sockets, so every wait is bounded in count and in
time, every process is killed in a `finally`, and a failing test prints the
nodes' logs (their stderr, one file per node).
"""

from __future__ import annotations

import json
import random
import secrets
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from test_serve_process import phoenix_command

NAMES = ("n1", "n2", "n3")
HEARTBEAT = 0.5
MAX_RETRIES = 2
START_TIMEOUT = 15.0
CONVERGE_TIMEOUT = 15.0
POLL_INTERVAL = 0.2
CLIENT_TIMEOUT = 10.0
# A safety net only: each test takes well under half of it.
TEST_TIMEOUT = 90.0
WRITERS = 16
LIST_PAGE = 10_000
MAX_PAGES = 100


def ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that were free a moment ago.

    Taken below the ephemeral range when possible: n1 is restarted on its
    port, and a port from that range could meanwhile become the local port
    of some outgoing connection, which would make the restart fail.
    """
    low = ephemeral_low()
    candidates = random.sample(range(low // 2, low), 200) if low > 4096 else []
    with ExitStack() as stack:
        ports: list[int] = []
        for port in [*candidates, *[0] * count]:
            sock = stack.enter_context(socket.socket())
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(int(sock.getsockname()[1]))
            if len(ports) == count:
                return ports
    raise RuntimeError("no free ports")


class Nodes:
    """The three node processes, their configs and their logs."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        ports = free_ports(len(NAMES))
        self.urls = {
            name: f"http://127.0.0.1:{port}" for name, port in zip(NAMES, ports, strict=True)
        }
        self.processes: dict[str, trio.Process] = {}
        for name, port in zip(NAMES, ports, strict=True):
            settings: dict[str, Any] = {
                "port": f"127.0.0.1:{port}",
                "node_id": name,
                "peers": list(self.urls.values()),
                "heart_beat_interval_in_seconds": HEARTBEAT,
                "max_retries_to_disabled_node": MAX_RETRIES,
                "white_list_file_path": "",
                "num_counters": 100_000,
            }
            self.config_path(name).write_text(json.dumps(settings, indent=2))

    def config_path(self, name: str) -> Path:
        return self.tmp_path / f"{name}.json"

    def log_path(self, name: str) -> Path:
        return self.tmp_path / f"{name}.stderr.log"

    async def start(self, name: str) -> None:
        """Start `name` (again: a restart appends to the same log)."""
        assert name not in self.processes, f"{name} is already running"
        with self.log_path(name).open("ab") as stderr:
            stderr.write(f"=== {time.strftime('%H:%M:%S')} starting {name}\n".encode())
            stderr.flush()
            self.processes[name] = await trio.lowlevel.open_process(
                phoenix_command("serve", "--config", str(self.config_path(name))),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self.tmp_path,
            )

    async def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await process.wait()

    async def kill_all(self) -> None:
        for name in list(self.processes):
            await self.kill(name)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{self.logs()}")

    def logs(self) -> str:
        """Every node's stderr, without httpx's line per peer request (kept in the files)."""
        parts = []
        for name in NAMES:
            path = self.log_path(name)
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            kept = [line for line in lines if " INFO httpx HTTP Request: " not in line]
            parts.append(
                f"----- {name} ({self.urls[name]}) stderr, {path}: "
                f"{len(lines) - len(kept)} httpx request lines left out -----\n" + "\n".join(kept)
            )
        return "\n".join(parts)


@asynccontextmanager
async def three_nodes(tmp_path: Path) -> AsyncIterator[tuple[Nodes, httpx.AsyncClient]]:
    """Start n1, n2, n3; yield once all are ready and see each other up."""
    nodes = Nodes(tmp_path)
    try:
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
            for name in NAMES:
                await nodes.start(name)
            await wait_until_formed(nodes, client, NAMES)
            yield nodes, client
    except BaseException:
        # pytest shows this captured output with the failure.
        print(nodes.logs())
        raise
    finally:
        await nodes.kill_all()


async def cluster_view(client: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    try:
        response = await client.get(f"{url}/cluster", timeout=2)
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    view: dict[str, Any] = response.json()
    return view


def formed(view: dict[str, Any] | None, url: str) -> bool:
    """Ready, knows itself, sees every other peer up with nothing left to catch up."""
    if view is None or not view["ready"]:
        return False
    for peer in view["peers"]:
        if peer["url"] == url:
            if peer["state"] != "self":
                return False
        elif peer["state"] != "up" or peer["needs_catch_up"]:
            return False
    return True


async def wait_until_formed(
    nodes: Nodes, client: httpx.AsyncClient, names: tuple[str, ...]
) -> None:
    views: dict[str, dict[str, Any] | None] = {}
    with trio.move_on_after(START_TIMEOUT):
        for _ in range(int(START_TIMEOUT / 0.1)):
            nodes.check_alive()
            views = {name: await cluster_view(client, nodes.urls[name]) for name in names}
            if all(formed(views[name], nodes.urls[name]) for name in names):
                return
            await trio.sleep(0.1)
    pytest.fail(f"cluster not formed within {START_TIMEOUT} s; last /cluster views: {views}")


async def wait_until_answering(nodes: Nodes, client: httpx.AsyncClient, name: str) -> None:
    with trio.move_on_after(START_TIMEOUT):
        for _ in range(int(START_TIMEOUT / 0.05)):
            nodes.check_alive()
            if await cluster_view(client, nodes.urls[name]) is not None:
                return
            await trio.sleep(0.05)
    pytest.fail(f"{name} did not answer /cluster within {START_TIMEOUT} s")


async def wait_until_down(nodes: Nodes, client: httpx.AsyncClient, name: str) -> None:
    """Until every other running node reports `name` down."""
    url = nodes.urls[name]
    views: dict[str, dict[str, Any] | None] = {}
    with trio.move_on_after(START_TIMEOUT):
        for _ in range(int(START_TIMEOUT / 0.05)):
            nodes.check_alive()
            views = {
                other: await cluster_view(client, nodes.urls[other]) for other in nodes.processes
            }
            if all(
                view is not None
                and any(p["url"] == url and p["state"] == "down" for p in view["peers"])
                for view in views.values()
            ):
                return
            await trio.sleep(0.05)
    pytest.fail(f"{name} not seen down within {START_TIMEOUT} s; last /cluster views: {views}")


async def listing(client: httpx.AsyncClient, url: str) -> dict[str, str] | None:
    """Every key -> value the node lists (paged by cursor); None while it cannot."""
    items: dict[str, str] = {}
    cursor = 0
    for _ in range(MAX_PAGES):
        params: dict[str, str | int] = {"limit": LIST_PAGE, "cursor": cursor, "allValue": "true"}
        try:
            response = await client.get(f"{url}/list", params=params)
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        for item in response.json():
            items[item["key"]] = item["value"]
        cursor = int(response.headers["X-Next-Cursor"])
        if cursor == 0:
            return items
    raise AssertionError(f"{url}/list did not end within {MAX_PAGES} pages")


async def listings(nodes: Nodes, client: httpx.AsyncClient) -> dict[str, dict[str, str] | None]:
    return {name: await listing(client, nodes.urls[name]) for name in NAMES}


class Load:
    """Writers sharing one list of distinct (key, value) writes, round-robin over targets."""

    def __init__(self, prefix: str, count: int, targets: list[str], sync: int | None) -> None:
        token = secrets.token_hex(4)
        self.writes = [(f"{prefix}:{i:05d}", f"{prefix}-{i}-{token}") for i in range(count)]
        self._pending: Iterator[tuple[int, tuple[str, str]]] = iter(enumerate(self.writes))
        self.targets = targets
        self.sync = sync
        self.acked: dict[str, str] = {}
        self.unacked: dict[str, str] = {}  # attempted, outcome unknown
        self.failures: Counter[str] = Counter()
        self.done = trio.Event()

    async def run(self, writers: int) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(writers):
                nursery.start_soon(self._writer)
        self.done.set()

    async def _writer(self) -> None:
        params: dict[str, str | int] = {"ttl": 0}
        if self.sync is not None:
            params["sync"] = self.sync
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
            # One shared iterator: trio switches tasks only at awaits, so
            # each write is taken by exactly one writer.
            for index, (key, value) in self._pending:
                url = self.targets[index % len(self.targets)]
                try:
                    response = await client.post(
                        f"{url}/set",
                        params={**params, "key": key},
                        content=value.encode(),
                        headers={"Content-Type": "text/plain"},
                    )
                except httpx.TransportError as error:
                    self.unacked[key] = value
                    self.failures[type(error).__name__] += 1
                    continue
                if response.status_code == 200:
                    self.acked[key] = value
                else:
                    self.unacked[key] = value
                    self.failures[f"HTTP {response.status_code}"] += 1

    async def wait_acked(self, count: int, timeout: float = 30.0) -> None:
        """Until `count` writes are acknowledged or the load has ended."""
        with trio.fail_after(timeout):
            while len(self.acked) < count and not self.done.is_set():
                await trio.sleep(0.01)

    def summary(self) -> str:
        return (
            f"{len(self.writes)} writes attempted, {len(self.acked)} acknowledged, "
            f"{len(self.unacked)} not; failures: {dict(self.failures)}"
        )


def describe_difference(expected: dict[str, str], actual: dict[str, str] | None) -> str:
    if actual is None:
        return "no listing"
    lost = [k for k in expected if k not in actual]
    wrong = [k for k in expected if k in actual and actual[k] != expected[k]]
    extra = [k for k in actual if k not in expected]
    return (
        f"{len(actual)} keys; {len(lost)} lost (e.g. {lost[:3]}), {len(wrong)} with another "
        f"value (e.g. {wrong[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})"
    )


async def test_no_acknowledged_write_is_lost_across_three_nodes(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with three_nodes(tmp_path) as (nodes, client):
            started = trio.current_time()
            load = Load("a", 3000, [nodes.urls[name] for name in NAMES], sync=None)
            await load.run(WRITERS)
            seconds = trio.current_time() - started
            print(f"load: {load.summary()} in {seconds:.2f} s")
            assert not load.failures, load.summary()
            assert len(load.acked) == len(load.writes)

            expected = load.acked
            views: dict[str, dict[str, str] | None] = {}
            waited = trio.current_time()
            with trio.move_on_after(CONVERGE_TIMEOUT):
                for _ in range(int(CONVERGE_TIMEOUT / POLL_INTERVAL)):
                    views = await listings(nodes, client)
                    if all(view == expected for view in views.values()):
                        break
                    await trio.sleep(POLL_INTERVAL)
            waited = trio.current_time() - waited
            report = {name: describe_difference(expected, view) for name, view in views.items()}
            print(f"converged after {waited:.2f} s: {report}")
            assert all(view == expected for view in views.values()), (
                f"{len(expected)} acknowledged writes; after {waited:.1f} s: {report}"
            )
            nodes.check_alive()


async def remove_keys(
    client: httpx.AsyncClient, keys: list[str], targets: list[str]
) -> tuple[set[str], Counter[str]]:
    """Remove `keys` (sync=1), round-robin over `targets`: the acknowledged, and outcomes."""
    removed: set[str] = set()
    outcomes: Counter[str] = Counter()

    async def remove(index: int, key: str) -> None:
        url = targets[index % len(targets)]
        try:
            response = await client.post(f"{url}/remove", params={"key": key, "sync": 1})
        except httpx.TransportError as error:
            outcomes[type(error).__name__] += 1
            return
        if response.status_code == 200:
            # Acknowledged by two nodes. {"removed": false} happens too: the
            # key was acknowledged by n1 and one peer, maybe not this one.
            removed.add(key)
            outcomes[f"removed: {response.json()['removed']}"] += 1
        else:
            outcomes[f"HTTP {response.status_code} {response.text[:80]}"] += 1

    async with trio.open_nursery() as nursery:
        for index, key in enumerate(keys):
            nursery.start_soon(remove, index, key)
    return removed, outcomes


async def test_killed_node_returns_and_every_node_converges(tmp_path: Path) -> None:
    # sync=1: a write is acknowledged once two nodes hold it, so killing any
    # one node cannot lose it. (Without sync, a write acknowledged by n1
    # alone could die with n1 before it was pushed: that is asynchronous
    # replication, not a loss this test looks for.)
    with trio.fail_after(TEST_TIMEOUT):
        async with three_nodes(tmp_path) as (nodes, client):
            everyone = [nodes.urls[name] for name in NAMES]
            survivors = [nodes.urls["n2"], nodes.urls["n3"]]
            load = Load("b", 3000, list(everyone), sync=1)
            timeline: list[str] = []
            started = trio.current_time()

            def note(event: str) -> None:
                timeline.append(f"{trio.current_time() - started:.2f}s {event}")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(load.run, WRITERS)
                await load.wait_acked(800)
                load.targets = survivors
                before_kill = dict(load.acked)
                await nodes.kill("n1")
                note(f"killed n1 after {len(before_kill)} acknowledged writes")
                victims = sorted(before_kill)[::8]
                removed, remove_outcomes = await remove_keys(client, victims, survivors)
                note(f"removed {len(removed)} of {len(victims)} keys: {dict(remove_outcomes)}")
                await wait_until_down(nodes, client, "n1")
                note(f"n2 and n3 see n1 down after {len(load.acked)} acknowledged writes")
                await nodes.start("n1")
                note(f"restarting n1 after {len(load.acked)} acknowledged writes")
                await wait_until_answering(nodes, client, "n1")
                load.targets = everyone
                note(f"n1 answers; {len(load.acked)} acknowledged writes")
            note(f"load done: {load.summary()}")
            assert len(removed) == len(victims), (timeline, dict(remove_outcomes))
            assert len(load.acked) >= 2500, (timeline, load.summary())

            expected = {k: v for k, v in load.acked.items() if k not in removed}
            views: dict[str, dict[str, str] | None] = {}

            def converged() -> bool:
                first = views.get("n1")
                return (
                    first is not None
                    and all(view == first for view in views.values())
                    and all(first.get(k) == v for k, v in expected.items())
                    and not removed & first.keys()
                )

            with trio.move_on_after(CONVERGE_TIMEOUT):
                for _ in range(int(CONVERGE_TIMEOUT / POLL_INTERVAL)):
                    views = await listings(nodes, client)
                    if converged():
                        break
                    await trio.sleep(POLL_INTERVAL)
            note("listings compared")
            report = {name: describe_difference(expected, view) for name, view in views.items()}
            resurrected = {
                name: sorted(removed & view.keys())[:3] for name, view in views.items() if view
            }
            print("\n".join(timeline), f"\nfinal listings: {report}")
            assert converged(), (
                f"{len(expected)} acknowledged writes expected, {len(removed)} removed keys; "
                f"listings: {report}; removed keys still present: {resurrected}; "
                f"timeline: {timeline}"
            )
            # The only keys beyond the acknowledged ones are writes whose
            # answer was lost (to n1 as it was killed, or a 504).
            first = views["n1"]
            assert first is not None
            assert first.keys() - expected.keys() <= load.unacked.keys()

            view = await cluster_view(client, nodes.urls["n1"])
            assert view is not None
            assert view["recovery"] in {f"synced from {url}" for url in survivors}, view
            # And the cluster is whole again: n1 knows itself, all see all up.
            await wait_until_formed(nodes, client, NAMES)
            nodes.check_alive()


async def test_a_node_stopped_by_sigterm_first_pushes_what_it_acknowledged(
    tmp_path: Path,
) -> None:
    # n1 exited at once: a write it had acknowledged (without sync) and not
    # yet pushed was lost with it. Both peers are paused (SIGSTOP), so the
    # first write's push waits for an answer and the second stays queued.
    with trio.fail_after(TEST_TIMEOUT):
        nodes = Nodes(tmp_path)
        for name in NAMES:  # a paused peer must not be marked down meanwhile
            path = nodes.config_path(name)
            settings = json.loads(path.read_text())
            settings.update(heart_beat_interval_in_seconds=2, max_retries_to_disabled_node=10)
            path.write_text(json.dumps(settings))
        try:
            async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
                for name in NAMES:
                    await nodes.start(name)
                await wait_until_formed(nodes, client, NAMES)
                n1 = nodes.urls["n1"]
                for name in ("n2", "n3"):
                    nodes.processes[name].send_signal(signal.SIGSTOP)
                # Each replicator takes the first write and waits on its push;
                # the second stays in the outboxes.
                for key, depth in (("sent", 0), ("queued", 1)):
                    response = await client.post(f"{n1}/set", params={"key": key, "ttl": 0})
                    assert response.status_code == 200
                    for _ in range(int(START_TIMEOUT / POLL_INTERVAL)):
                        view = await cluster_view(client, n1)
                        assert view is not None
                        depths = [p["outbox_depth"] for p in view["peers"] if p["url"] != n1]
                        if depths == [depth, depth]:
                            break
                        await trio.sleep(POLL_INTERVAL)
                    assert depths == [depth, depth], view
                nodes.processes["n1"].send_signal(signal.SIGTERM)
                for name in ("n2", "n3"):
                    nodes.processes[name].send_signal(signal.SIGCONT)
                with trio.fail_after(START_TIMEOUT):
                    assert await nodes.processes["n1"].wait() == 0
                for name in ("n2", "n3"):
                    for _ in range(int(CONVERGE_TIMEOUT / POLL_INTERVAL)):
                        response = await client.get(
                            f"{nodes.urls[name]}/get", params={"key": "queued"}
                        )
                        if response.status_code == 200:
                            break
                        await trio.sleep(POLL_INTERVAL)
                    assert response.status_code == 200, (name, response.text)
        except BaseException:
            print(nodes.logs())
            raise
        finally:
            for process in nodes.processes.values():
                if process.returncode is None:
                    process.send_signal(signal.SIGCONT)
            await nodes.kill_all()
