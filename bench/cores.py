"""Where the benchmarked servers and their load generators run: one core each side.

Pinned, a server and its load generator do not compete for a core, and the
scheduler does not move a server between cores in the middle of a run: on a
2-core machine this narrowed the spread of the HTTP ratios (bench/profiles.md).
Both servers of a comparison are pinned to the same core. Nothing is pinned
with a single core, or where the system cannot pin (sched_setaffinity is
Linux's).
"""

from __future__ import annotations

import os
from typing import NamedTuple


class CoreSplit(NamedTuple):
    server: int
    load: set[int]


def core_split() -> CoreSplit | None:
    """The last core for the servers, the others for the load generator; None if not pinnable."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    return CoreSplit(cores[-1], set(cores[:-1])) if len(cores) > 1 else None


CORES = core_split()


def pin_server(pid: int) -> None:
    if CORES is not None:
        os.sched_setaffinity(pid, {CORES.server})


def pin_load() -> None:
    """In the load generator's process, before it runs (a preexec_fn)."""
    if CORES is not None:
        os.sched_setaffinity(0, CORES.load)


def note() -> str:
    """A sentence for the report: how the processes were placed."""
    if CORES is None:
        return "Not pinned to cores: the load generator may compete with a server for one. "
    others = "the other core" if len(CORES.load) == 1 else f"the other {len(CORES.load)} cores"
    return (
        f"The servers are pinned to core {CORES.server} and the load generator to "
        f"{others} (sched_setaffinity). "
    )
