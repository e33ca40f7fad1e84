"""
Per-operation cost of the pool's tables at 1k, 10k and 100k known points.

For each table size: register_point (new points), register_peer (new
peers), the banned-address check, greylist add and check, and
list_known_points(size=50); plus memory per known point. The 1k figures
are the baseline: every operation's 100k/1k ratio should be <= 2 (no O(n)
work per call).

    PYTHONPATH=. .venv/bin/python bench/tables.py [--sizes 1000,10000,100000] [--repeat 3]
    PYTHONPATH=. .venv/bin/python bench/tables.py --quick   # 1k and 10k, once: a smoke run

Prints progress on stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from twisted.internet.testing import MemoryReactorClock

from p2pool.config import PoolConfig
from p2pool.core.addressing import PeerId, Point
from p2pool.core.identity import Identity
from p2pool.core.states import PointInfo
from p2pool.pool.service import Pool

OPS = 2000
IDENTITY = Identity.generate(0)


def _point(i: int) -> Point:
    return Point(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 9732 + (i >> 24))


def _peer(i: int) -> PeerId:
    return PeerId(i.to_bytes(16, "big"))


def make_pool(size: int) -> Pool:
    """
    A pool knowing C{size} points (half of them public and seen) and
    C{size} peers, with no table limits.
    """
    config = PoolConfig(
        listen=Point("127.0.0.2", 0),
        expected_proof_of_work=0,
        max_known_points=None,
        max_known_peer_ids=None,
        data_dir="unused",
    )
    pool = Pool(config, reactor=MemoryReactorClock(), identity=IDENTITY, rng=random.Random(1))
    pool.events.emit = lambda *a, **k: None  # type: ignore[method-assign]
    for i in range(size):
        if i % 2:
            # Half the points are public and were connected once.
            pool.directory.restore_point(
                PointInfo(_point(i), known_public=True, last_established_connection=(_peer(i), float(i)))
            )
        else:
            pool.register_point(_point(i))
        pool.register_peer(_peer(i))
    return pool


def per_op(f: Callable[[int], Any], count: int = OPS) -> float:
    """
    Seconds per call of C{f(i)} for C{i} in C{range(count)}.
    """
    gc.collect()
    # Like timeit: a full collection of the whole heap landing in one
    # sample is the interpreter's cost, not the operation's.
    gc.disable()
    try:
        start = time.perf_counter()
        for i in range(count):
            f(i)
        return (time.perf_counter() - start) / count
    finally:
        gc.enable()


def measure(size: int, run: int) -> dict[str, float]:
    pool = make_pool(size)
    # Fresh ids and addresses in every run, so no cache carries over.
    base = size + 10 + run * 5_000_000
    new_points = [_point(base + i) for i in range(OPS)]
    new_peers = [_peer(base + i) for i in range(OPS)]
    known_ips = [_point(i * 7 % size).ip for i in range(OPS)]
    other_ips = [f"172.{16 + run}.{i >> 8 & 255}.{i & 255}" for i in range(OPS)]
    return {
        "register_point_us": per_op(lambda i: pool.register_point(new_points[i])) * 1e6,
        "register_peer_us": per_op(lambda i: pool.register_peer(new_peers[i])) * 1e6,
        "banned_addr_us": per_op(lambda i: pool.acl.banned_addr(known_ips[i])) * 1e6,
        "list_known_points_50_us": per_op(lambda i: pool.list_known_points(ignore_private=bool(i % 2), size=50), 500)
        * 1e6,
        "greylist_add_us": per_op(lambda i: pool.greylist_addr(other_ips[i])) * 1e6,
        "greylist_check_us": per_op(lambda i: pool.acl.ip_greylist.mem(other_ips[i])) * 1e6,
    }


def memory_per_point(size: int) -> float:
    """
    Bytes of Python memory per known point (point and peer entries).
    """
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    pool = make_pool(size)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del pool
    return (after - before) / size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes",
        default=None,
        help="table sizes, the first is the baseline (default 1000,10000,100000; --quick 1000,10000)",
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs of each size, medians reported (default 3; --quick 1)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller tables, one run: a smoke run of every operation")
    args = parser.parse_args()
    if args.sizes is None:
        args.sizes = "1000,10000" if args.quick else "1000,10000,100000"
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    sizes = [int(s) for s in args.sizes.split(",")]
    cases: dict[str, dict[str, float]] = {}
    for size in sizes:
        runs = []
        for r in range(args.repeat):
            print(f"tables: {size} known points, run {r + 1}/{args.repeat}", file=sys.stderr)
            runs.append(measure(size, r + 10 * sizes.index(size)))
        cases[str(size)] = {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}
    smallest, largest = str(sizes[0]), str(sizes[-1])
    ratios = {key: round(cases[largest][key] / cases[smallest][key], 2) for key in cases[smallest]}
    print(f"tables: memory at {sizes[-1]} points", file=sys.stderr)
    memory = round(memory_per_point(sizes[-1]))
    print(
        json.dumps(
            {
                "cases": cases,
                "ratios": {f"{key}_{largest}_vs_{smallest}": value for key, value in ratios.items()},
                "target": "every ratio <= 2",
                "memory_bytes_per_known_point_and_peer": memory,
                "settings": {"sizes": sizes, "repeat": args.repeat, "quick": args.quick},
                "env": {"python": platform.python_version(), "machine": platform.machine()},
            }
        )
    )


if __name__ == "__main__":
    main()
