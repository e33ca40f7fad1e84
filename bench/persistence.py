"""
Peers file speed: save and load times at 1k, 10k and 100k known peers (and
as many points), against plain C{json.dumps} / C{json.loads} of the same
document in the same run, and the longest reactor stall during a save of
the largest table.

    PYTHONPATH=. .venv/bin/python bench/persistence.py [--sizes 1000,10000,100000] [--repeat 3]
    PYTHONPATH=. .venv/bin/python bench/persistence.py --quick   # 100 and 1000, once: a smoke run

What is timed:

  - save: what C{Pool.save_peers} does, minus the hops between threads:
    the snapshot of the tables (L{p2pool.pool.persistence.snapshot_pool}) and
    the atomic write with fsync and the C{.bak} rotation
    (L{p2pool.pool.persistence.write_snapshot});
  - save baseline: C{json.dumps} of the same document (as the file holds
    it, already decoded into dicts and strings), written to a file and
    fsynced; C{dumps_only} is C{json.dumps} alone;
  - load: C{PeersFile.load} as a starting pool runs it: reading and
    checking the file (L{p2pool.pool.persistence.read_peers_file}) and putting
    it into an empty pool's tables (L{p2pool.pool.persistence.apply_content});
  - load baseline: reading the file and C{json.loads}, with the garbage
    collector as configured (C{loads}: the target's baseline, what a
    program calling C{json.loads} gets), and paused (C{loads_gc_paused}:
    the loader pauses the collector while it builds the records, see
    L{p2pool.pool.persistence.decoder.collector_paused}, so this is the stricter
    comparison); both, and the load, run after the saved pool and its
    decoded document are freed, in a heap like a starting node's;
  - stall: the longest gap between ticks of a 1 ms C{LoopingCall} on the
    real reactor while C{Pool.save_peers()} runs on the largest table,
    compared with the same ticker over an idle period of the same length;
    and the same (C{learnt_book}) for a book of as many points learnt from
    the network and never connected, and a tenth as many peers
    (L{make_learnt_pool}).

Each step is timed in wall-clock seconds and in CPU seconds of this
process (C{*_cpu_s}; the C{cpu_*} ratios): on a machine shared with other
work the CPU figures move much less. C{*_gc_cpu_s} is the part of a step's
CPU seconds spent in CPython's cyclic garbage collector (measured with
C{gc.callbacks}; the benchmark leaves the collector as configured, and
only the loader itself pauses it). Each data point is the median of
C{--repeat} runs. Prints progress on
stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from p2pool.config import PoolConfig
from p2pool.core.addressing import PeerId, Point
from p2pool.core.identity import Identity
from p2pool.core.states import PeerInfo, PointInfo, StateEvent
from p2pool.interfaces import BasePoolApplication
from p2pool.pool.persistence import snapshot_pool, write_snapshot
from p2pool.pool.service import Pool

IDENTITY = Identity.generate(0)
NETWORK = "bench"
NOW = 1_714_560_000.0  # 2024-05-01


class _App(BasePoolApplication):
    """
    Peer metadata as an application might keep it: a small object with
    counters, encoded as a JSON object.
    """

    def initial_metadata(self) -> Any:
        return {"responses": 0, "requests": 0}

    def encode_metadata(self, metadata: Any) -> Any:
        return {"responses": str(metadata["responses"]), "requests": str(metadata["requests"])}

    def decode_metadata(self, value: Any) -> Any:
        return {"responses": int(value["responses"]), "requests": int(value["requests"])}


def _point(i: int) -> Point:
    return Point(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 9732 + (i >> 24))


def _peer(i: int) -> PeerId:
    return PeerId(i.to_bytes(16, "big"))


def _unbounded_pool(reactor: Any, data_dir: str) -> Pool:
    """
    An empty pool whose tables have no limits, saving into C{data_dir}.
    """
    config = PoolConfig(
        listen=Point("127.0.0.2", 0),
        expected_proof_of_work=0,
        max_known_points=None,
        max_known_peer_ids=None,
        data_dir=data_dir,
        network=NETWORK,
    )
    return Pool(config, _App(), reactor=reactor, identity=IDENTITY, rng=random.Random(1))


def make_pool(size: int, reactor: Any, data_dir: str) -> Pool:
    """
    A pool that knows C{size} peers and C{size} points, each as a node
    that was connected once and then disconnected: every peer with its
    metadata, two last_* times and three events; every point public, with
    two last_* times. Times spread over 30 days, in milliseconds.
    """
    pool = _unbounded_pool(reactor, data_dir)
    rng = random.Random(size)
    # The point table appends in O(1) when points come in last_seen order
    # (as they do in a running node): add them oldest first.
    times = sorted(round(NOW - rng.random() * 30 * 86400, 3) for _ in range(size))
    for i, t in enumerate(times):
        point, peer = _point(i), _peer(i)
        info = PeerInfo(
            peer,
            created=t,
            metadata={"responses": rng.randrange(1000), "requests": rng.randrange(1000)},
            last_established_connection=(point, t + 0.25),
            last_disconnection=(point, t + 3600.5),
        )
        info._record(StateEvent("accepting_request", t + 0.125, point=point))
        info._record(StateEvent("connection_established", t + 0.25, point=point))
        info._record(StateEvent("disconnection", t + 3600.5, point=point))
        pool.directory.restore_peer(info)
        pool.directory.restore_point(
            PointInfo(
                point,
                known_public=True,
                last_established_connection=(peer, t + 0.25),
                last_disconnection=(peer, t + 3600.5),
            )
        )
    pool.acl.ip_blacklist.ban("192.168.0.0/16")
    pool.acl.peer_blacklist.ban(_peer(size + 1))
    return pool


def make_learnt_pool(size: int, reactor: Any, data_dir: str) -> Pool:
    """
    A pool that knows C{size} points learnt from the network and never
    connected (no last_* stamps, no events: one object each for the
    cyclic garbage collector besides its C{Point}), and a tenth as many
    peers, never connected either: the book a node gathers from
    advertisements. Its snapshot used to add more objects than a quarter
    of those it already tracked, setting off a full pass of the collector
    during the save.
    """
    pool = _unbounded_pool(reactor, data_dir)
    for i in range(size):
        pool.directory.restore_point(PointInfo(_point(i), known_public=True, source_group=f"10.{i % 200}"))
    for i in range(size // 10):
        pool.directory.restore_peer(PeerInfo(_peer(i), created=NOW, metadata={"responses": 1, "requests": 2}))
    return pool


class ForeignLoad:
    """
    The share of the machine's CPU time used by other processes over a
    stretch: machine-wide busy time from C{/proc/stat} minus this
    process's own CPU time and its waited-for children's, over the
    machine's total time.
    """

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
        user, nice, system, idle, iowait, irq, softirq, steal = values
        hz = os.sysconf("SC_CLK_TCK")
        own = os.times()
        own_time = own.user + own.system + own.children_user + own.children_system
        return (user + nice + system + irq + softirq) / hz, sum(values) / hz, own_time

    def __enter__(self) -> ForeignLoad:
        self._start = self._sample()
        self.share = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        busy, total, own = self._sample()
        elapsed = total - self._start[1]
        if elapsed > 0:
            self.share = max(0.0, (busy - self._start[0]) - (own - self._start[2])) / elapsed


def wait_quiet(seconds: float, threshold: float = 0.15) -> float:
    """
    Wait (up to C{seconds}) for other processes to use less than
    C{threshold} of the machine over half a second; the last share seen.
    """
    deadline = time.monotonic() + seconds
    while True:
        with ForeignLoad() as load:
            time.sleep(0.5)
        if load.share < threshold or time.monotonic() >= deadline:
            return load.share


class _CollectorTime:
    """
    CPU seconds spent in the cyclic garbage collector, summed from
    C{gc.callbacks} (the collector itself runs as configured).
    """

    def __init__(self) -> None:
        self.total = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.total += time.process_time() - self._started


_COLLECTOR = _CollectorTime()


def timed(f: Callable[[], Any]) -> tuple[float, float, float, Any]:
    """
    Wall-clock and CPU seconds of C{f()} (everything it does runs in this
    thread), the CPU seconds of that spent in the cyclic garbage collector,
    and its result. CPU time is what a shared machine disturbs least: other
    processes delay the wall clock, not the work.
    """
    gc.collect()
    start, cpu, collector = time.perf_counter(), time.process_time(), _COLLECTOR.total
    result = f()
    return time.perf_counter() - start, time.process_time() - cpu, _COLLECTOR.total - collector, result


def snapshot_pool_sync(pool: Pool, clock: Clock) -> Any:
    """
    Run the snapshot as C{save_peers} does, turning the fake clock for its
    slices (each slice is one reactor turn in a running node).
    """
    from twisted.internet.defer import Deferred

    d = Deferred.fromCoroutine(snapshot_pool(pool, clock))
    results: list[Any] = []
    d.addBoth(results.append)
    while not results:
        clock.advance(0)
    return results[0]


def _write_plain(path: str, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def measure_save(size: int, path: str, plain_path: str) -> dict[str, float]:
    """
    The timed save of a pool of C{size} peers and points to C{path}, and
    its baselines (written to C{plain_path}); the pool and the decoded
    document are freed on return.
    """
    pool = make_pool(size, MemoryReactorClock(), os.path.dirname(path))
    pool.events.emit = lambda *a, **k: None  # type: ignore[method-assign]
    # A first save, so that the timed one also rotates the .bak as every
    # save but the first does.
    write_snapshot(path, snapshot_pool_sync(pool, Clock()))
    save, save_cpu, save_gc, _ = timed(lambda: write_snapshot(path, snapshot_pool_sync(pool, Clock())))
    with open(path, "rb") as f:
        document = json.loads(f.read())
    dumps_only, dumps_only_cpu, _, _ = timed(lambda: json.dumps(document))
    dumps_write, dumps_write_cpu, _, _ = timed(lambda: _write_plain(plain_path, json.dumps(document).encode()))
    return {
        "save_s": save,
        "save_baseline_dumps_write_fsync_s": dumps_write,
        "save_baseline_dumps_only_s": dumps_only,
        "save_cpu_s": save_cpu,
        "save_baseline_dumps_write_fsync_cpu_s": dumps_write_cpu,
        "save_baseline_dumps_only_cpu_s": dumps_only_cpu,
        "save_gc_cpu_s": save_gc,
    }


def measure(size: int, directory: str) -> dict[str, float]:
    path = os.path.join(directory, "peers.json")
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    # The loads below run in a heap like a starting node's: the saved pool
    # and the decoded document (freed when measure_save returns) would add
    # some 3 million objects to every pass of the cyclic collector, in the
    # baseline and in the load alike.
    saved = measure_save(size, path, os.path.join(directory, "plain.json"))
    with open(path, "rb") as f:
        data = f.read()

    def read_plain() -> Any:
        with open(path, "rb") as f:
            return json.loads(f.read())

    def read_plain_gc_paused() -> Any:
        gc.disable()
        try:
            return read_plain()
        finally:
            gc.enable()

    # Each document is freed after its timing, before the next step.
    loads, loads_cpu, loads_gc, document = timed(read_plain)
    del document
    loads_paused, loads_paused_cpu, _, document = timed(read_plain_gc_paused)
    del document
    fresh_reactor = MemoryReactorClock()
    fresh = make_pool(0, fresh_reactor, directory)
    fresh.events.emit = lambda *a, **k: None  # type: ignore[method-assign]

    def load() -> Any:
        # What a starting pool does, on a reactor without threads (the
        # reading then runs inline): read the head and its bans, read and
        # check the whole file, fill the tables a slice per reactor turn.
        results: list[Any] = []
        fresh.persistence.load().addBoth(results.append)
        while not results:
            # One reactor turn: the calls due now, not those they schedule
            # (Clock.advance would run those too, as a reactor does not).
            due, fresh_reactor.calls = fresh_reactor.calls, []
            started = time.perf_counter()
            for call in due:
                call.func(*call.args, **call.kw)
            turns.append(time.perf_counter() - started)
        outcome = results[0]
        assert outcome.status == "loaded" and not outcome.content.skipped, outcome
        assert fresh.directory.peer_count() == size and fresh.directory.point_count() == size
        return outcome

    turns: list[float] = []
    gc.collect()
    tracked_before = len(gc.get_objects())
    load_time, load_cpu, load_gc, _ = timed(load)
    # What every later full pass of the collector costs with the book in.
    started = time.process_time()
    gc.collect()
    full_pass_cpu = time.process_time() - started
    return {
        **saved,
        "file_mib": len(data) / 2**20,
        # The turns that put the records into the tables (in a node the
        # reading runs in a thread, not in a turn).
        "apply_turns": len(turns),
        "apply_turn_median_ms": 1000 * statistics.median(turns) if turns else 0.0,
        "apply_turn_max_ms": 1000 * max(turns) if turns else 0.0,
        "load_s": load_time,
        "load_baseline_loads_s": loads,
        "load_baseline_loads_gc_paused_s": loads_paused,
        "load_cpu_s": load_cpu,
        "load_baseline_loads_cpu_s": loads_cpu,
        "load_baseline_loads_gc_paused_cpu_s": loads_paused_cpu,
        "load_gc_cpu_s": load_gc,
        "load_baseline_loads_gc_cpu_s": loads_gc,
        "tracked_objects_before_load": tracked_before,
        "tracked_objects_after_load": len(gc.get_objects()),
        "full_collection_after_load_cpu_s": full_pass_cpu,
    }


def measure_stall(size: int, directory: str) -> dict[str, Any]:
    """
    The longest gap between ticks of a 1 ms LoopingCall while the pool
    saves C{size} peers and points on the real reactor, and over an idle
    stretch as long as the save; then the same for a pool of C{size}
    learnt points (L{make_learnt_pool}), in C{learnt_book}.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import LoopingCall, deferLater

    results: dict[str, Any] = {}

    async def run() -> None:
        await one_book(make_pool, results)
        learnt: dict[str, float] = {}
        await one_book(make_learnt_pool, learnt)
        results["learnt_book"] = learnt

    async def one_book(make: Callable[[int, Any, str], Pool], results: dict[str, Any]) -> None:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        pool = make(size, reactor, directory)
        pool.events.emit = lambda *a, **k: None  # type: ignore[method-assign]
        await pool.persistence.load()  # no file yet: the pool may save
        await pool.save_peers()  # warm the thread pool; there is a .bak to rotate next time
        gc.collect()

        async def ticking(body: Callable[[], Any]) -> tuple[float, float]:
            gaps = [0.0]
            last = [time.perf_counter()]

            def tick() -> None:
                now = time.perf_counter()
                gaps[0] = max(gaps[0], now - last[0])
                last[0] = now

            ticker = LoopingCall(tick)
            ticker.start(0.001)
            start = time.perf_counter()
            await body()
            elapsed = time.perf_counter() - start
            tick()
            ticker.stop()
            return gaps[0], elapsed

        stall, elapsed = await ticking(lambda: pool.save_peers())
        assert pool.persistence.failures == 0 and pool.persistence.saves == 2
        idle, _ = await ticking(lambda: deferLater(reactor, elapsed, lambda: None))
        results.update(
            {
                "save_on_reactor_s": elapsed,
                "max_tick_gap_during_save_ms": stall * 1000,
                "max_tick_gap_idle_ms": idle * 1000,
            }
        )

    def done(result: Any) -> None:
        if hasattr(result, "printTraceback"):
            result.printTraceback(file=sys.stderr)
            results["error"] = 1.0
        reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(run()).addBoth(done))
    reactor.run()
    return results


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _rounded(value) if isinstance(value, dict) else round(value, 3) for key, value in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=None, help="table sizes (default 1000,10000,100000; --quick 100,1000)")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs of each size, medians reported (default 3; --quick 1)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each run, wait up to S seconds for the machine to be quiet",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke run of every case")
    args = parser.parse_args()
    if args.sizes is None:
        args.sizes = "100,1000" if args.quick else "1000,10000,100000"
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    sizes = [int(s) for s in args.sizes.split(",")]
    directory = tempfile.mkdtemp(prefix="p2pool-bench-persistence-")
    try:
        cases: dict[str, dict[str, float]] = {}
        for size in sizes:
            runs = []
            for r in range(args.repeat):
                before = wait_quiet(args.wait_quiet) if args.wait_quiet else None
                with ForeignLoad() as load:
                    run = measure(size, directory)
                run["foreign_cpu_share"] = load.share
                print(
                    f"persistence: {size} peers and points, run {r + 1}/{args.repeat}: "
                    f"other processes used {load.share:.0%} of the machine"
                    + (f" ({before:.0%} just before)" if before is not None else ""),
                    file=sys.stderr,
                )
                runs.append(run)
            case = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            case["save_vs_dumps_write_fsync"] = case["save_s"] / case["save_baseline_dumps_write_fsync_s"]
            case["save_vs_dumps_only"] = case["save_s"] / case["save_baseline_dumps_only_s"]
            case["load_vs_loads"] = case["load_s"] / case["load_baseline_loads_s"]
            case["load_vs_loads_gc_paused"] = case["load_s"] / case["load_baseline_loads_gc_paused_s"]
            case["cpu_save_vs_dumps_write_fsync"] = case["save_cpu_s"] / case["save_baseline_dumps_write_fsync_cpu_s"]
            case["cpu_save_vs_dumps_only"] = case["save_cpu_s"] / case["save_baseline_dumps_only_cpu_s"]
            case["cpu_load_vs_loads"] = case["load_cpu_s"] / case["load_baseline_loads_cpu_s"]
            case["cpu_load_vs_loads_gc_paused"] = case["load_cpu_s"] / case["load_baseline_loads_gc_paused_cpu_s"]
            cases[str(size)] = {key: round(value, 4) for key, value in case.items()}
        largest = sizes[-1]
        if args.wait_quiet:
            wait_quiet(args.wait_quiet)
        with ForeignLoad() as load:
            stall = _rounded(measure_stall(largest, directory))
        stall["foreign_cpu_share"] = round(load.share, 3)
        print(
            f"persistence: reactor stall during a save of {largest}: other processes used {load.share:.0%}",
            file=sys.stderr,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(
        json.dumps(
            {
                "cases": cases,
                "stall": {"size": largest, **stall},
                "settings": {"sizes": sizes, "repeat": args.repeat, "quick": args.quick},
                "targets": {
                    "save_and_load_vs_plain_json": "<= 1.5",
                    "max_tick_gap_during_save_ms": "<= 50",
                },
                "env": {
                    "python": platform.python_version(),
                    "machine": platform.machine(),
                    "cpus": os.cpu_count(),
                    "load_average": [round(v, 2) for v in os.getloadavg()],
                },
            }
        )
    )


if __name__ == "__main__":
    main()
