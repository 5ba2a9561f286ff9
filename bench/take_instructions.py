"""Instructions per RESP command in process, counted by callgrind: for comparing builds.

    python bench/take_instructions.py                   # this environment's phoenix
    python bench/take_instructions.py --path DIR        # the phoenix in DIR (a --target install)

Runs `Session.take` on 1,000 buffers of 16 pipelined commands (SET, then GET:
16-byte keys drawn from 10,000, 100-byte values, as redis-benchmark -P 16
sends them) under `valgrind --tool=callgrind`, once taking every buffer
twice and once taking none, and prints the difference per command. The
count is the same from run to run whatever else the machine does, which
timings on a shared 2-core machine are not (bench/profiles.md).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

BUFFERS, PIPELINE, ROUNDS = 1_000, 16, 2
# The workload, run under valgrind: argv is rounds (passes over the buffers), command,
# buffers, commands per buffer.
WORKLOAD = """
import random, sys
import trio
from phoenix.config import Config
from phoenix.node import Node
from phoenix.resp_server import RespServer, Session

async def main(rounds, command, count, pipeline):
    node = Node(Config.from_mapping({"port": "127.0.0.1:1", "node_id": "x", "resp_port": 1}))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        session = Session(RespServer.for_node(node), 1, "127.0.0.1")
        rng = random.Random(1)
        value = bytes(rng.randrange(33, 127) for _ in range(100))
        for i in range(10_000):
            node.set_until("key:%012d" % i, value, "application/octet-stream", 0)
        buffers = []
        for _ in range(count):
            frames = []
            for _ in range(pipeline):
                key = b"key:%012d" % rng.randrange(10_000)
                words = [command, key, value] if command == b"SET" else [command, key]
                frames.append(b"*%d\\r\\n" % len(words))
                frames += [b"$%d\\r\\n%b\\r\\n" % (len(word), word) for word in words]
            buffers.append(b"".join(frames))
        for buffer in buffers[:50]:  # warm
            session.take(buffer)
        for _ in range(rounds):
            for buffer in buffers:
                session.take(buffer)
        nursery.cancel_scope.cancel()

trio.run(main, int(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4]))
"""


def instructions(rounds: int, command: str, env: dict[str, str]) -> int:
    done = subprocess.run(
        [
            *("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"),
            *(sys.executable, "-c", WORKLOAD, str(rounds), command, str(BUFFERS), str(PIPELINE)),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    match = re.search(r"Collected : ([\d,]+)", done.stderr)
    if match is None:
        raise RuntimeError(f"no count from callgrind:\n{done.stderr}")
    return int(match.group(1).replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--path", type=Path, help="import phoenix from here first")
    args = parser.parse_args()
    # The same string hashes in every run: the store's tables grow the same way.
    env = {**os.environ, "PYTHONHASHSEED": "1"}
    if args.path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.path), env.get("PYTHONPATH")]))
    build = subprocess.run(
        [sys.executable, "-c", "import phoenix; print(phoenix.build())"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.strip()
    for command in ("SET", "GET"):
        extra = instructions(ROUNDS, command, env) - instructions(0, command, env)
        per_command = extra / (ROUNDS * BUFFERS * PIPELINE)
        print(f"{build} build, {command}: {per_command:,.0f} instructions per command")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
