"""
Soak test: N real p2pool nodes on loopback exchanging application messages
for a while, with churn, in a few child processes.

Each node is a L{p2pool.pool.Pool} listening on its own 127.0.0.x address
(127.0.0.10 + i, one shared port), bootstrapped from node 0 (node 0 from
node 1). Every ~100 ms each node sends one numbered message (100-1000
bytes: sender node, incarnation, connection serial, global and
per-connection sequence) on each of its connections and the receivers check
the sequence. Every ~20 s one random node is stopped (C{stopService}) and a
new Pool with the same identity and data directory (it reloads its peers
file) is started ~5 s later.

At the end every node stops sending, waits a few seconds for what is in
flight, and a snapshot is taken. Message loss is counted:

- on any connection, a gap in the per-connection sequence (a later message
  arrived, so the connection was up when the earlier one was lost);
- on connections still open on both ends at the snapshot, every message sent
  that did not arrive (C{lost_on_live_connections}).

Messages still unread when a connection closed (churn, maintenance, swap)
are reported as C{undelivered_at_close}, not as loss.

Errors are C{twisted.logger} events at level error or critical (which
includes unhandled errors in Deferreds, logged when the Deferred is garbage
collected; the worker runs C{gc.collect()} before the snapshot), plus
exceptions raised by the benchmark's own callbacks.

RSS is sampled from /proc every 10 s per worker process; the trend is the
least-squares slope of RSS over the second half of the run, in KiB/min.
With --diagnose each worker also logs, every minute, where its memory is
(glibc malloc's memory in use and the free memory it keeps, pymalloc's
arenas, gc-tracked objects and the types that grew, threads) and whether the
pools it stopped, or their ACLs, are still alive.

    PYTHONPATH=. .venv/bin/python bench/soak.py --minutes 10 --nodes 20
    PYTHONPATH=. .venv/bin/python bench/soak.py --quick   # 6 nodes for 8 s, 2 restarts

--quick is a smoke run of every part (sending, churn with reload, the
final accounting, RSS samples) on a shorter clock: 6 nodes in 2 processes
for 8 s, a node restarted every 2.5 s after 1 s down, samples every 2 s.

Prints progress on stderr every 30 s and one JSON object on stdout. Exits
with status 1 if a worker process failed (it left no result).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import weakref
from typing import Any

HEADER = struct.Struct("!HHIQI")  # node, incarnation, conn serial, global seq, conn seq
PAD = b"\xa5" * 1000


@dataclasses.dataclass(frozen=True)
class Timing:
    """The soak's clock, in seconds."""

    #: between two messages of a node on each of its connections
    send_interval: float
    #: between two RSS and connection-count samples
    sample_interval: float
    #: between two progress lines
    progress_interval: float
    #: after the senders stop, for what is in flight to arrive
    quiesce: float
    #: how long a churned node stays down
    churn_down: float
    #: time left after a churned node is back before the end
    churn_settle: float
    #: from the parent's start to the first message (the workers start their nodes)
    start_delay: float


FULL = Timing(0.1, 10.0, 30.0, 4.0, 5.0, 10.0, 5.0)
QUICK = Timing(0.1, 2.0, 5.0, 1.5, 1.0, 1.5, 2.5)


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def node_ip(i: int) -> str:
    return f"127.0.0.{10 + i}"


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, KiB) points, in KiB/min."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    sxy = sum((t - mx) * (v - my) for t, v in points)
    return round(sxy / sxx * 60.0, 1)


def churn_schedule(
    seed: int, nodes: int, t0: float, t_end: float, interval: float, timing: Timing
) -> list[tuple[float, int]]:
    """The (time, node) churn events, the same in every process."""
    rng = random.Random(seed)
    events = []
    t = t0 + interval
    while t + timing.churn_down + timing.churn_settle < t_end:
        events.append((t, rng.randrange(nodes)))
        t += interval
    return events


def memory_state(reactor: Any, previous_types: list[collections.Counter[str]]) -> dict[str, Any]:
    """
    Where this process's memory is: RSS by kind, glibc malloc's totals,
    pymalloc's blocks and arenas, the count of gc-tracked objects and the
    types whose count grew most since the previous call.
    """
    import ctypes
    import gc
    import threading

    state: dict[str, Any] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                state[key] = int(line.split()[1])

    class Mallinfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo2
    info = libc.mallinfo2()
    state["malloc_kib"] = {
        "sbrk_and_arenas": info.arena // 1024,
        "mmapped": info.hblkhd // 1024,
        "in_use": info.uordblks // 1024,
        "free_kept": info.fordblks // 1024,
    }
    state["pymalloc_blocks"] = sys.getallocatedblocks()
    r, w = os.pipe()
    saved = os.dup(2)
    try:
        os.dup2(w, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    for label, key in (
        ("# arenas allocated current", "pymalloc_arenas"),
        ("# bytes in allocated blocks", "pymalloc_used_bytes"),
        ("# bytes in available blocks", "pymalloc_free_bytes"),
    ):
        m = re.search(re.escape(label) + r"\s*=\s*([\d,]+)", text)
        if m:
            state[key] = int(m.group(1).replace(",", ""))
    objects = gc.get_objects()
    state["gc_objects"] = len(objects)
    types = collections.Counter(type(o).__qualname__ for o in objects)
    del objects
    if previous_types:
        growth = types - previous_types[0]
        state["types_grown"] = dict(growth.most_common(8))
        previous_types[0] = types
    else:
        previous_types.append(types)
    state["threads"] = threading.active_count()
    state["delayed_calls"] = len(reactor.getDelayedCalls())
    state["fds"] = len(os.listdir("/proc/self/fd"))
    return state


def what_holds(alive: list[Any]) -> dict[str, Any]:
    """
    Whether the objects of stopped pools in C{alive} (weak references) are
    held only by reference cycles, and the types in those cycles: a full collection
    with C{DEBUG_SAVEALL}, whose garbage is inspected and then freed.
    """
    import gc

    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        garbage = list(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
    # what DEBUG_SAVEALL kept, freed once looked at below
    in_garbage = {id(o) for o in garbage}
    held_by_cycles = sum(1 for r in alive if id(r()) in in_garbage)
    types = collections.Counter(type(o).__qualname__ for o in garbage)
    frames = collections.Counter(
        f"{o.f_code.co_filename.rsplit('/', 3)[-1]}:{o.f_code.co_name}" for o in garbage if type(o).__name__ == "frame"
    )
    exceptions = collections.Counter(type(o).__qualname__ for o in garbage if issubclass(type(o), BaseException))
    out = {
        "held_only_by_cycles": held_by_cycles,
        "garbage_objects": len(garbage),
        "garbage_types": dict(types.most_common(15)),
        "frames": dict(frames.most_common(10)),
        "exceptions": dict(exceptions.most_common(5)),
    }
    del garbage
    gc.collect()
    return out


class RecvRecord:
    """
    What one receiving connection got: for each sender key (node,
    incarnation, serial) the last per-connection sequence number, and the
    gaps and duplicates seen. A connection receives from one sender key,
    so the first is kept in slots and any other in a dict.
    """

    __slots__ = ("node", "remote", "open", "key", "last", "others", "gaps", "dups")

    def __init__(self, node: int, remote: str) -> None:
        self.node = node
        self.remote = remote
        self.open = True
        self.key: tuple[int, int, int] | None = None
        self.last = 0
        self.others: dict[tuple[int, int, int], int] | None = None
        self.gaps = 0
        self.dups = 0

    def received(self, key: tuple[int, int, int], cseq: int) -> None:
        if self.key is None:
            self.key = key
        if key == self.key:
            got = self.last
        else:
            if self.others is None:
                self.others = {}
            got = self.others.get(key, 0)
        if cseq > got:
            self.gaps += cseq - got - 1
            if key == self.key:
                self.last = cseq
            else:
                assert self.others is not None
                self.others[key] = cseq
        else:
            self.dups += 1

    def as_json(self) -> dict[str, Any]:
        keys = {} if self.key is None else {self.key: self.last}
        keys.update(self.others or {})
        return {
            "node": self.node,
            "remote": self.remote,
            "open": self.open,
            "keys": {f"{n}:{i}:{s}": v for (n, i, s), v in keys.items()},
            "gaps": self.gaps,
            "dups": self.dups,
        }


# ---------------------------------------------------------------------------
# worker process (runs a reactor and some of the nodes)


def worker(args: argparse.Namespace) -> None:
    import gc

    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import LoopingCall, deferLater
    from twisted.logger import LogLevel, formatEvent, globalLogBeginner

    from p2pool.config import PoolConfig
    from p2pool.core.addressing import Point, PointSpec
    from p2pool.core.identity import Identity
    from p2pool.interfaces import BasePoolApplication
    from p2pool.pool.service import Pool

    errors: list[str] = []
    error_count = [0]
    error_events_by_level: collections.Counter[str] = collections.Counter()

    def observer(event: dict) -> None:
        level = event.get("log_level")
        if level in (LogLevel.error, LogLevel.critical):
            error_count[0] += 1
            error_events_by_level[level.name] += 1
            if len(errors) < 20:
                text = formatEvent(event)
                failure = event.get("log_failure")
                if failure is not None:
                    text += "\n" + failure.getTraceback()[-2000:]
                errors.append(text[:3000])

    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=False)

    mine = [i for i in range(args.nodes) if i % args.workers == args.worker_index]
    rng = random.Random(args.seed * 1000 + args.worker_index)
    base = tempfile.mkdtemp(prefix=f"p2pool-soak-w{args.worker_index}-")
    peer_ids: dict[int, str] = {}
    pool_events: collections.Counter[str] = collections.Counter()
    bench_exceptions: list[str] = []

    # -- accounting ------------------------------------------------------
    # The records are part of the RSS measured, and there is one per
    # connection ever made (over 3,000 in 30 minutes): they are kept small
    # (peer ids interned, slotted records, tuple keys).
    # sender side: key (node, inc, serial) -> [sent, remote peer, open]
    sent_records: dict[tuple[int, int, int], list[Any]] = {}
    # receiver side: one record per receiving connection
    recv_records: list[RecvRecord] = []
    totals = collections.Counter()

    class SoakApp(BasePoolApplication):
        def __init__(self, node: SoakNode) -> None:
            self.node = node
            self.conns: dict[Any, list[Any]] = {}  # conn -> [key, cseq, recv_record]

        def connection_made(self, conn: Any) -> None:
            n = self.node
            n.serial += 1
            key = (n.index, n.incarnation, n.serial)
            remote = sys.intern(str(conn.peer_id))
            sent_records[key] = [0, remote, True]
            rec = RecvRecord(n.index, remote)
            recv_records.append(rec)
            self.conns[conn] = [key, 0, rec]
            totals["connections_made"] += 1

        def message_received(self, conn: Any, data: bytes) -> None:
            try:
                node, inc, serial, _gseq, cseq = HEADER.unpack_from(data)
                state = self.conns.get(conn)
                if state is None:
                    totals["received_on_unknown_connection"] += 1
                    return
                state[2].received((node, inc, serial), cseq)
                totals["received"] += 1
            except Exception as e:  # pragma: no cover
                bench_exceptions.append(repr(e))

        def connection_lost(self, conn: Any, reason: Any) -> None:
            state = self.conns.pop(conn, None)
            if state is None:
                totals["lost_unknown_connection"] += 1
                return
            sent_records[state[0]][2] = False
            state[2].open = False
            totals["connections_lost"] += 1

    class SoakNode:
        def __init__(self, index: int) -> None:
            self.index = index
            self.incarnation = 0
            self.serial = 0
            self.gseq = 0
            self.identity = Identity.generate(0)
            self.data_dir = os.path.join(base, f"node{index}")
            os.makedirs(self.data_dir)
            self.pool: Pool | None = None
            self.app: SoakApp | None = None
            boot = 1 if index == 0 else 0
            self.config = PoolConfig(
                listen=Point(node_ip(index), args.port),
                expected_proof_of_work=0,
                min_connections=3,
                expected_connections=6,
                max_connections=10,
                maintenance_idle_time=10.0,
                netgroup_cap_exempts_loopback=True,
                data_dir=self.data_dir,
                bootstrap_points=(PointSpec(node_ip(boot), args.port),),
            )
            peer_ids[index] = str(self.identity.peer_id)

        async def start(self) -> None:
            self.incarnation += 1
            self.app = SoakApp(self)
            self.pool = Pool(
                self.config, self.app, identity=self.identity, log=lambda e: pool_events.update((e.event,))
            )
            self.pool.startService()
            await self.pool.when_started()

        async def stop(self) -> None:
            pool, self.pool = self.pool, None
            if pool is not None:
                await pool.stopService()
                stopped_pools.append(weakref.ref(pool))
                stopped_acls.append(weakref.ref(pool.acl))
            app = self.app
            if app is not None and app.conns:
                totals["open_after_stop"] += len(app.conns)

        def tick(self) -> None:
            pool, app = self.pool, self.app
            if pool is None or app is None or not pool.is_started:
                return
            for conn in pool.connections:
                state = app.conns.get(conn)
                if state is None or not conn.is_open:
                    continue
                self.gseq += 1
                state[1] += 1
                key = state[0]
                data = (
                    HEADER.pack(key[0], key[1], key[2], self.gseq, state[1])
                    + PAD[: rng.randint(100 - HEADER.size, 1000 - HEADER.size)]
                )
                conn.send(data)
                sent_records[key][0] += 1
                totals["sent"] += 1

    nodes = {i: SoakNode(i) for i in mine}
    stopped_pools: list[weakref.ref[Pool]] = []
    #: the access lists of stopped pools (with their 4 MiB greylist filter)
    stopped_acls: list[weakref.ref[Any]] = []
    samples: list[dict[str, Any]] = []
    churns: list[dict[str, Any]] = []
    sending = [True]

    def tick_all() -> None:
        if not sending[0]:
            return
        for n in nodes.values():
            try:
                n.tick()
            except Exception as e:
                bench_exceptions.append(repr(e))

    def sample() -> None:
        conns = {
            i: (len(n.pool.connections) if n.pool is not None and n.pool.is_started else None) for i, n in nodes.items()
        }
        samples.append({"t": round(time.time() - args.t0, 1), "conns": conns})

    def progress() -> None:
        up = [len(n.pool.connections) for n in nodes.values() if n.pool is not None]
        log(
            f"[w{args.worker_index} t={time.time() - args.t0:5.0f}s] sent={totals['sent']} recv={totals['received']} "
            f"conns={sum(up)} (per node {min(up, default=0)}..{max(up, default=0)}) "
            f"errors={error_count[0]} churns={len(churns)} rss={rss_kib(os.getpid())} KiB"
        )

    async def churn(at: float, i: int) -> None:
        await deferLater(reactor, max(0.0, at - time.time()), lambda: None)
        n = nodes[i]
        t_stop = time.time()
        await n.stop()
        stop_took = time.time() - t_stop
        await deferLater(reactor, max(0.0, t_stop + args.timing.churn_down - time.time()), lambda: None)
        await n.start()
        churns.append(
            {
                "t": round(t_stop - args.t0, 1),
                "node": i,
                "stop_took_s": round(stop_took, 3),
                "down_s": round(time.time() - t_stop, 2),
            }
        )

    diagnosis: list[dict[str, Any]] = []
    previous_types: list[collections.Counter[str]] = []

    def diagnose() -> None:
        state = memory_state(reactor, previous_types)
        alive = [r for r in stopped_pools if r() is not None]
        stopped_pools[:] = alive
        stopped_acls[:] = [r for r in stopped_acls if r() is not None]
        state["stopped_pools_alive"] = len(alive)
        state["stopped_pools_acls_alive"] = len(stopped_acls)
        if alive or stopped_acls:
            state["what_holds_them"] = what_holds(alive + stopped_acls)
        diagnosis.append(state)
        log(f"[w{args.worker_index} t={time.time() - args.t0:5.0f}s] memory {json.dumps(diagnosis[-1])}")

    traced: list[Any] = []

    def trace_mid() -> None:
        import tracemalloc

        traced.append(tracemalloc.take_snapshot())

    async def run() -> None:
        if args.tracemalloc:
            import tracemalloc

            tracemalloc.start(8)
            reactor.callLater(max(0.0, args.t0 + (args.t_end - args.t0) / 2 - time.time()), trace_mid)
        for n in nodes.values():
            await n.start()
        await deferLater(reactor, max(0.0, args.t0 - time.time()), lambda: None)
        sender = LoopingCall(tick_all)
        sender.start(args.timing.send_interval, now=True)
        sampler = LoopingCall(sample)
        sampler.start(args.timing.sample_interval, now=True)
        prog = LoopingCall(progress)
        prog.start(args.timing.progress_interval, now=False)
        if args.diagnose:
            LoopingCall(diagnose).start(2 * args.timing.progress_interval, now=True)
        jobs = [
            ensureDeferred(churn(at, i))
            for at, i in churn_schedule(args.seed, args.nodes, args.t0, args.t_end, args.churn_interval, args.timing)
            if i in nodes
        ]
        await deferLater(reactor, max(0.0, args.t_end - time.time()), lambda: None)
        sending[0] = False
        sender.stop()
        for j in jobs:
            await j
        await deferLater(reactor, args.timing.quiesce, lambda: None)
        gc.collect()
        await deferLater(reactor, 0.1, lambda: None)
        sampler.stop()
        prog.stop()
        sample()
        # snapshot
        stale = 0
        for n in nodes.values():
            if n.app is None:
                continue
            for conn in n.app.conns:
                if not conn.is_open:
                    stale += 1
        errors_before_shutdown = error_count[0]
        growth = []
        if traced:
            import tracemalloc

            end_snap = tracemalloc.take_snapshot()
            for st in end_snap.compare_to(traced[0], "traceback")[:8]:
                growth.append(
                    {
                        "size_diff_kib": st.size_diff // 1024,
                        "count_diff": st.count_diff,
                        "where": st.traceback.format()[-8:],
                    }
                )
        snapshot = {
            "worker": args.worker_index,
            "pid": os.getpid(),
            "nodes": mine,
            "peer_ids": peer_ids,
            "sent_records": [[list(k), v[0], v[1], v[2]] for k, v in sent_records.items()],
            "recv_records": [rec.as_json() for rec in recv_records],
            "totals": dict(totals),
            "stale_open_records": stale,
            "errors": errors_before_shutdown,
            "error_levels": dict(error_events_by_level),
            "error_samples": list(errors),
            "bench_exceptions": bench_exceptions[:20],
            "bench_exception_count": len(bench_exceptions),
            "pool_events": dict(pool_events),
            "samples": samples,
            "churns": churns,
            "tracemalloc_growth_second_half": growth,
            "memory_diagnosis": diagnosis,
        }
        snapshot = json.loads(json.dumps(snapshot))  # freeze before shutdown mutates records
        for n in nodes.values():
            await n.stop()
        await deferLater(reactor, 0.5, lambda: None)
        gc.collect()
        snapshot["errors_during_shutdown"] = error_count[0] - errors_before_shutdown
        snapshot["error_samples"] = list(errors)
        with open(args.out, "w") as f:
            json.dump(snapshot, f)

    def main() -> None:
        d = ensureDeferred(run())

        def failed(f: Any) -> None:
            log(f"[w{args.worker_index}] worker failed:\n{f.getTraceback()}")
            with open(args.out, "w") as fh:
                json.dump({"worker": args.worker_index, "failed": f.getTraceback()}, fh)

        d.addErrback(failed)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(main)
    reactor.run()


# ---------------------------------------------------------------------------
# parent


def pick_port(nodes: int) -> int:
    for _ in range(50):
        port = random.randint(20000, 40000)
        ok = True
        for i in range(nodes):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((node_ip(i), port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise SystemExit("no free port")


def parent(args: argparse.Namespace) -> int:
    """Run the workers; print the report; 1 if a worker failed, else 0."""
    started = time.time()
    port = pick_port(args.nodes)
    t0 = time.time() + args.timing.start_delay
    t_end = t0 + args.minutes * 60.0
    tmp = tempfile.mkdtemp(prefix="p2pool-soak-")
    procs = []
    for w in range(args.workers):
        out = os.path.join(tmp, f"w{w}.json")
        cmd = (
            [
                sys.executable,
                os.path.abspath(__file__),
                "--worker-index",
                str(w),
                "--workers",
                str(args.workers),
                "--nodes",
                str(args.nodes),
                "--port",
                str(port),
                "--t0",
                repr(t0),
                "--t-end",
                repr(t_end),
                "--seed",
                str(args.seed),
                "--churn-interval",
                str(args.churn_interval),
                "--out",
                out,
            ]
            + (["--tracemalloc"] if args.tracemalloc else [])
            + (["--diagnose"] if args.diagnose else [])
            + (["--quick"] if args.quick else [])
        )
        procs.append((w, subprocess.Popen(cmd, stdout=subprocess.DEVNULL), out))
    log(
        f"soak: {args.nodes} nodes in {args.workers} processes, port {port}, {args.minutes:g} min, churn every {args.churn_interval} s"
    )
    rss: dict[int, list[tuple[float, int]]] = {w: [] for w, _, _ in procs}
    deadline = t_end + 120.0
    next_sample = t0
    next_progress = t0 + args.timing.progress_interval
    while any(p.poll() is None for _, p, _ in procs) and time.time() < deadline:
        now = time.time()
        if now >= next_sample:
            if now <= t_end + args.timing.quiesce:
                for w, p, _ in procs:
                    v = rss_kib(p.pid)
                    if v is not None:
                        rss[w].append((round(now - t0, 1), v))
            next_sample += args.timing.sample_interval
        if now >= next_progress and now <= t_end:
            log(
                f"[parent t={now - t0:5.0f}s] rss KiB: "
                + ", ".join(f"w{w}={rss[w][-1][1] if rss[w] else None}" for w in rss)
            )
            next_progress += args.timing.progress_interval
        time.sleep(0.5)
    for _, p, _ in procs:
        if p.poll() is None:
            p.kill()
            log(f"worker pid {p.pid} did not finish; killed")
    results = []
    for w, p, out in procs:
        try:
            with open(out) as f:
                results.append(json.load(f))
        except OSError:
            results.append({"worker": w, "failed": f"no result (exit code {p.returncode})"})
    report = aggregate(args, port, t0, t_end, started, rss, results)
    print(json.dumps(report, indent=1))
    return 1 if report["worker_failures"] else 0


def aggregate(args, port, t0, t_end, started, rss, results) -> dict[str, Any]:
    failed = [r for r in results if "failed" in r]
    ok = [r for r in results if "failed" not in r]
    peer_ids: dict[int, str] = {}
    for r in ok:
        peer_ids.update({int(k): v for k, v in r["peer_ids"].items()})
    node_by_peer = {v: k for k, v in peer_ids.items()}
    # receiver: (receiver node, remote peer) -> open record; key -> received count
    open_recv: dict[tuple[int, str], dict[str, Any]] = {}
    received_by_key: dict[str, int] = {}
    gaps = dups = 0
    for r in ok:
        for rec in r["recv_records"]:
            gaps += rec["gaps"]
            dups += rec["dups"]
            for k, v in rec["keys"].items():
                received_by_key[k] = received_by_key.get(k, 0) + v
            if rec["open"]:
                open_recv[(rec["node"], rec["remote"])] = rec
    sent = received = 0
    lost_live = 0
    live_connections = 0
    live_examples = []
    undelivered_at_close = 0
    closed_connections = 0
    half_open_at_snapshot = 0
    for r in ok:
        received += r["totals"].get("received", 0)
        for (node, inc, serial), n_sent, remote, is_open in r["sent_records"]:
            sent += n_sent
            key = f"{node}:{inc}:{serial}"
            got = received_by_key.get(key, 0)
            if is_open:
                rnode = node_by_peer.get(remote)
                rec = open_recv.get((rnode, peer_ids[node])) if rnode is not None else None
                if rec is None:
                    half_open_at_snapshot += 1
                    undelivered_at_close += n_sent - got
                    continue
                live_connections += 1
                if n_sent != got:
                    lost_live += n_sent - got
                    if len(live_examples) < 10:
                        live_examples.append(
                            {"key": key, "sent": n_sent, "received": got, "receiver_keys": rec["keys"]}
                        )
            else:
                closed_connections += 1
                undelivered_at_close += n_sent - got
    # RSS
    rss_out = {}
    trend = {}
    half = (t_end - t0) / 2.0
    for w, pts in rss.items():
        rss_out[f"w{w}"] = [[t, v] for t, v in pts]
        second = [(t, v) for t, v in pts if t >= half]
        vals = [v for _, v in pts]
        trend[f"w{w}"] = {
            "first_kib": vals[0] if vals else None,
            "last_kib": vals[-1] if vals else None,
            "max_kib": max(vals) if vals else None,
            "slope_second_half_kib_per_min": slope_per_min(second),
        }
    # total RSS over time (samples aligned by index)
    n_min = min((len(p) for p in rss.values()), default=0)
    total = [(rss[0][i][0], sum(rss[w][i][1] for w in rss)) for i in range(n_min)] if rss else []
    trend["total"] = {
        "first_kib": total[0][1] if total else None,
        "last_kib": total[-1][1] if total else None,
        "max_kib": max(v for _, v in total) if total else None,
        "slope_second_half_kib_per_min": slope_per_min([(t, v) for t, v in total if t >= half]),
    }
    # connections over time
    by_t: dict[float, dict[int, int | None]] = collections.defaultdict(dict)
    for r in ok:
        for s in r["samples"]:
            tb = round(s["t"] / args.timing.sample_interval) * args.timing.sample_interval
            by_t[tb].update({int(k): v for k, v in s["conns"].items()})
    conns_over_time = []
    for tb in sorted(by_t):
        vals = [v for v in by_t[tb].values() if v is not None]
        conns_over_time.append(
            {
                "t": tb,
                "nodes_up": len(vals),
                "connections": sum(vals) // 2,
                "per_node_min": min(vals, default=0),
                "per_node_max": max(vals, default=0),
            }
        )
    churns = sorted((c for r in ok for c in r["churns"]), key=lambda c: c["t"])
    pool_events = collections.Counter()
    totals = collections.Counter()
    for r in ok:
        pool_events.update(r["pool_events"])
        totals.update(r["totals"])
    return {
        "benchmark": "soak",
        "command": " ".join(["bench/soak.py"] + sys.argv[1:]),
        "nodes": args.nodes,
        "workers": args.workers,
        "minutes": args.minutes,
        "quick": args.quick,
        "port": port,
        "churn_interval_s": args.churn_interval,
        "wall_seconds": round(time.time() - started, 1),
        "worker_failures": [r["failed"][-3000:] for r in failed],
        "rss_kib_samples": rss_out,
        "rss_trend_kib_per_min": trend,
        "messages_sent": sent,
        "messages_received": received,
        "lost_on_live_connections": lost_live,
        "sequence_gaps": gaps,
        "sequence_duplicates_or_reorders": dups,
        "live_connections_at_end": live_connections,
        "closed_or_closing_connections": closed_connections + half_open_at_snapshot,
        "undelivered_at_close": undelivered_at_close,
        "lost_examples": live_examples,
        "errors": sum(r["errors"] for r in ok) + sum(r["bench_exception_count"] for r in ok),
        "errors_twisted_logger": sum(r["errors"] for r in ok),
        "errors_bench_callbacks": sum(r["bench_exception_count"] for r in ok),
        "errors_during_final_shutdown": sum(r.get("errors_during_shutdown", 0) for r in ok),
        "error_samples": [e for r in ok for e in r["error_samples"]][:10]
        + [e for r in ok for e in r["bench_exceptions"]][:10],
        "stale_open_records": sum(r["stale_open_records"] for r in ok),
        "churn_events": churns,
        "connections_made": totals.get("connections_made", 0),
        "connections_lost": totals.get("connections_lost", 0),
        "received_on_unknown_connection": totals.get("received_on_unknown_connection", 0),
        "connections_over_time": conns_over_time,
        "pool_events": dict(sorted(pool_events.items())),
        "tracemalloc_growth_second_half": {f"w{r['worker']}": r.get("tracemalloc_growth_second_half", []) for r in ok},
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=None, help="length of the run (default 10; --quick 8 s)")
    p.add_argument("--nodes", type=int, default=None, help="nodes (default 20; --quick 6)")
    p.add_argument("--workers", type=int, default=2, help="child processes (2-4)")
    p.add_argument(
        "--churn-interval", type=float, default=None, help="seconds between two restarts (default 20; --quick 2.5)"
    )
    p.add_argument("--quick", action="store_true", help="a smoke run on a shorter clock (see above)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--tracemalloc", action="store_true", help="report the allocation sites that grew over the second half (slow)"
    )
    p.add_argument(
        "--diagnose",
        action="store_true",
        help="each minute, log where each worker's memory is (allocator, object counts; slow)",
    )
    # worker-only
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--t0", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--t-end", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    for name, full, quick in (("minutes", 10.0, 8 / 60), ("nodes", 20, 6), ("churn_interval", 20.0, 2.5)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.timing = QUICK if args.quick else FULL
    if not 1 <= args.nodes <= 200:
        raise SystemExit("--nodes must be 1..200")
    if not 0 < args.minutes <= 120:
        raise SystemExit("--minutes must be in (0, 120]")
    if not 1 <= args.workers <= 8:
        raise SystemExit("--workers must be 1..8")
    if args.worker_index is not None:
        worker(args)
    else:
        sys.exit(parent(args))


if __name__ == "__main__":
    main()
