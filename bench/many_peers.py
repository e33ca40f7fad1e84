#!/usr/bin/env python3
"""
Many concurrent peers on one node (issue 16, item 2), on loopback.

One node (a child process running ``make_node_service`` with the admin API)
accepts ``--peers`` connections from dialer processes (``--dialers``); each
dialer runs one lightweight client ``Pool`` per peer (no proof of work: the
node is configured with ``expected_proof_of_work = 0``; no maintenance, no
discovery, a 1 KiB greylist). Peer ``i`` listens and dials from its own
address ``127.A.B.C`` where ``A = 1 + i % --groups``: the peers are spread
over ``--groups`` /16 network groups and the node's per-netgroup cap on
incoming connections is in force (not the loopback exemption), as on the
internet; the cap is set just above the peers per group.

In the same run, before the p2pool node, a raw Twisted TLS server (TLS 1.3,
mutual authentication, self-signed Ed25519 certificates) holds the same
number of idle connections from the same source addresses: the baseline of
the memory per idle connection.

Measured, with ``--peers`` connections up:

- RSS per idle connection of the node and of the raw TLS server (RSS after
  the connections minus RSS before, ``gc.collect()`` first), and the ratio;
- a broadcast of a 100-byte message (``Pool.broadcast``): wall time from
  the call to the last peer's receipt (clock of this machine), and how many
  peers got it;
- the admin API: latency of single-object requests (p50/p99/max), and of
  ``GET /network/connections`` (with its entry count);
- reactor stalls in the node: a 10 ms ``LoopingCall`` in the node wrapper
  records how late each tick is (``lateness``) and how much CPU the
  reactor thread used between two ticks (``busy``: the work that blocked
  the reactor; lateness without busy time is the machine's other load or
  the GIL held by the thread that writes the peers file). Reported for an
  idle window during which maintenance runs every 2 s, checkpoints every
  10 s, keepalive every 10 s, and a dashboard poller fetches what the
  dashboard page fetches (including ``GET /network/connections``) every
  second while a client streams ``GET /network/log``; and separately for a
  forced maintenance pass and a forced checkpoint.

The open-file limit of every process is raised as far as it needs (root
may also raise the hard limit); ephemeral ports are no concern since every
peer has its own source address.

    PYTHONPATH=. /work/venv/bin/python bench/many_peers.py --peers 1000
    PYTHONPATH=. /work/venv/bin/python bench/many_peers.py --peers 10000 --dialers 4
    PYTHONPATH=. /work/venv/bin/python bench/many_peers.py --quick     # <= 20 s, CI

Prints progress on stderr and one JSON object on stdout (targets with
``met`` flags, not asserted); exits 0 when every phase ran.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import resource
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
if ROOT not in sys.path:
    sys.path.append(ROOT)

from _common import (  # noqa: E402
    CertDir,
    check_loopback,
    child_stdin_commands,
    emit,
    env_info,
    log,
    quiet_twisted_logging,
    raise_nofile,
    spawn_child,
    tls_options,
    vmrss_kib,
)

NODE_IP = "127.0.0.1"
LOOPBACK = "127.0.0.0/8"
MESSAGE_SIZE = 100
TICK = 0.01
STALL_LIMIT_MS = 50.0
DASHBOARD_PERIOD = 1.0  # REFRESH_MS of p2pool/admin/static/dashboard.js
DASHBOARD_PATHS = (
    "/node",
    "/network/stat",
    "/network/stat/history",
    "/network/connections",
    "/network/points",
    "/network/peers",
    "/network/greylist/ips",
    "/network/greylist/peers",
    "/network/bans",
)
TARGETS = {
    "rss_per_connection_kib": ("<=", 48.0),
    "admin_p99_ms": ("<=", 100.0),
    "connections_listing_s": ("<=", 1.0),
    "idle_stall_busy_max_ms": ("<=", STALL_LIMIT_MS),
    "broadcast_delivered_fraction": (">=", 1.0),
}


def peer_ip(i: int, groups: int) -> str:
    """The address of peer ``i``: ``127.A.B.C`` with ``A = 1 + i % groups``."""
    j = i // groups
    return check_loopback(f"127.{1 + i % groups}.{j // 250}.{1 + j % 250}", LOOPBACK)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raise_hard_nofile(wanted: int) -> dict[str, Any]:
    """As root, the hard limit may be raised too (up to fs.nr_open)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted and os.geteuid() == 0:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, wanted))
        except (ValueError, OSError):
            pass
    return raise_nofile(wanted)


def settled_rss() -> int:
    gc.collect()
    return vmrss_kib()


# -- the node under test (child process) -------------------------------------


class StallMonitor:
    """
    A 10 ms LoopingCall in the node's reactor: per tick, how late it ran
    (ms) and the CPU time the reactor thread used since the previous tick
    (ms; not the threads that write the peers file).
    """

    def __init__(self, reactor: Any, attribute: bool = False) -> None:
        from twisted.internet.task import LoopingCall

        self.attribution = CallAttribution(reactor) if attribute else None
        self.late: list[float] = []
        self.busy: list[float] = []
        self.gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._gc_start = 0.0
        gc.callbacks.append(self._gc)
        self._last = time.monotonic()
        self._cpu = time.thread_time()
        self._call = LoopingCall(self._tick)
        self._call.clock = reactor
        self._call.start(TICK, now=False)

    def _tick(self) -> None:
        now, cpu = time.monotonic(), time.thread_time()
        self.late.append(max(0.0, (now - self._last - TICK) * 1000))
        self.busy.append((cpu - self._cpu) * 1000)
        if self.attribution is not None:
            self.attribution.tick(self.busy[-1])
        self._last, self._cpu = now, cpu

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_pauses[info["generation"]].append((time.perf_counter() - self._gc_start) * 1000)

    def reset(self) -> None:
        self.late, self.busy = [], []
        self.gc_pauses = {0: [], 1: [], 2: []}
        if self.attribution is not None:
            self.attribution.reset()

    def report(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, Any]:
            return {
                "max_ms": round(max(values), 1) if values else None,
                "p99_ms": round(percentile(values, 0.99) or 0.0, 1) if values else None,
                "over_50ms": sum(1 for v in values if v > STALL_LIMIT_MS),
            }

        return {
            "ticks": len(self.late),
            "lateness": stats(self.late),
            "busy": stats(self.busy),
            "gc_pause_max_ms": {g: round(max(v), 1) if v else None for g, v in self.gc_pauses.items()},
            "gc_collections": {g: len(v) for g, v in self.gc_pauses.items()},
            **({"over_50ms_by_call": self.attribution.report()} if self.attribution is not None else {}),
        }


class CallAttribution:
    """
    With ``--attribute-stalls``: the reactor thread's CPU per kind of call
    (a delayed call by its function, a read or write by its protocol),
    summed between two ticks; for each tick whose busy time is over 50 ms,
    the calls that made it up. Wraps ``callLater`` and ``_doReadOrWrite``
    of the node's reactor (a diagnostic: it adds a little CPU per call).
    """

    def __init__(self, reactor: Any) -> None:
        self.window: collections.Counter[str] = collections.Counter()
        self.ticks: list[dict[str, Any]] = []
        read_or_write = reactor._doReadOrWrite
        call_later = reactor.callLater

        def timed_read_or_write(selectable: Any, fd: int, event: int) -> None:
            t0 = time.thread_time()
            try:
                read_or_write(selectable, fd, event)
            finally:
                self.window[f"io:{protocol_name(selectable)}"] += time.thread_time() - t0

        def timed_call_later(delay: float, f: Any, *a: Any, **kw: Any) -> Any:
            name = f"call:{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"

            def timed(*a2: Any, **kw2: Any) -> Any:
                t0 = time.thread_time()
                try:
                    return f(*a2, **kw2)
                finally:
                    self.window[name] += time.thread_time() - t0

            return call_later(delay, timed, *a, **kw)

        reactor._doReadOrWrite = timed_read_or_write
        reactor.callLater = timed_call_later

    def tick(self, busy_ms: float) -> None:
        if busy_ms > STALL_LIMIT_MS:
            top = self.window.most_common(6)
            self.ticks.append({"busy_ms": round(busy_ms, 1), **{k: round(v * 1000, 1) for k, v in top}})
        self.window.clear()

    def reset(self) -> None:
        self.window.clear()
        self.ticks = []

    def report(self) -> list[dict[str, Any]]:
        return sorted(self.ticks, key=lambda t: -t["busy_ms"])[:20]


def protocol_name(selectable: Any) -> str:
    protocol = getattr(selectable, "protocol", None)
    inner = getattr(protocol, "wrappedProtocol", None)
    return type(inner if inner is not None else protocol if protocol is not None else selectable).__name__


def node_config(args: argparse.Namespace, data_dir: str) -> Any:
    from p2pool.config import AdminConfig, PoolConfig
    from p2pool.core.addressing import Point

    per_group = -(-args.peers // args.groups)
    return PoolConfig(
        listen=Point(NODE_IP, 0),
        data_dir=data_dir,
        expected_proof_of_work=0,
        min_connections=10,
        expected_connections=args.peers,
        max_connections=args.peers + max(64, args.peers // 50),
        max_incoming_connections=256,
        max_incoming_connections_per_netgroup=per_group + 8,
        max_known_points=(2 * args.peers, int(1.5 * args.peers)),
        max_known_peer_ids=(2 * args.peers, int(1.5 * args.peers)),
        # Generous handshake bounds: a loaded 2-core machine stalls the
        # node for seconds while thousands of handshakes arrive at once.
        authentication_timeout=30.0,
        connection_timeout=30.0,
        maintenance_idle_time=2.0,
        checkpoint_interval=10.0,
        keepalive_interval=10.0,
        admin=AdminConfig(listen=Point(NODE_IP, 0)),
    )


def node_main(args: argparse.Namespace) -> None:
    quiet_twisted_logging()
    nofile = raise_hard_nofile(args.peers + 1024)
    from twisted.internet import reactor

    from p2pool.daemon.node import make_node_service

    data_dir = tempfile.mkdtemp(prefix="p2pool-many-peers-node-")
    service = make_node_service(node_config(args, data_dir), reactor=reactor)
    pool = service.pool
    monitor = StallMonitor(reactor, attribute=args.attribute_stalls)
    closes: collections.Counter[str] = collections.Counter()

    def on_event(event: Any) -> None:
        if event.event in ("disconnection", "external_disconnection"):
            closes[f"{event.event}:{event.fields.get('reason')}"] += 1
        elif event.event == "authentication_failed":
            closes[f"authentication_failed:{event.fields.get('error')}"] += 1
        elif event.event in ("incoming_connection_too_many", "incoming_connection_netgroup_full"):
            closes[str(event.event.value)] += 1

    pool.events.callbacks.append(on_event)

    def tracked_census() -> dict[str, Any]:
        """The objects the cyclic GC tracks, in all and by type (the 12 most)."""
        counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        return {"gc_tracked": sum(counts.values()), "gc_tracked_by_type": dict(counts.most_common(40))}

    def ready(_: object) -> None:
        assert service.admin is not None
        emit(
            {
                "port": pool.listening_port.getHost().port,  # type: ignore[union-attr]
                "admin_port": service.admin.port.getHost().port,  # type: ignore[attr-defined]
                "rss_kib": settled_rss(),
                "nofile": nofile,
                **tracked_census(),
            }
        )

    def timed(d: Any, name: str) -> Any:
        t0 = time.perf_counter()
        monitor.reset()

        def done(_: object) -> None:
            emit({name: time.perf_counter() - t0, "stalls": monitor.report()})

        d.addBoth(done)

    def handle(words: list[str]) -> None:
        cmd = words[0]
        if cmd == "wait_conns":
            want, deadline = int(words[1]), time.monotonic() + float(words[2])

            def check() -> None:
                if pool.active_connections() >= want or time.monotonic() > deadline:
                    emit({"conns": pool.active_connections(), "rss_kib": settled_rss(), **tracked_census()})
                else:
                    reactor.callLater(0.1, check)

            check()
        elif cmd == "stall_reset":
            monitor.reset()
            emit({"ok": True})
        elif cmd == "stall_report":
            emit(
                {
                    "stalls": monitor.report(),
                    "conns": pool.active_connections(),
                    "rss_kib": vmrss_kib(),
                    "closes_and_refusals": dict(closes),
                }
            )
        elif cmd == "maintain":
            timed(pool.maintain(), "maintain_s")
        elif cmd == "checkpoint":
            timed(pool.save_peers(), "checkpoint_s")
        elif cmd == "broadcast":
            t0 = time.time()
            sent = pool.broadcast(b"b" * MESSAGE_SIZE)
            emit({"t_send": t0, "sent": sent, "call_s": time.time() - t0})
        elif cmd == "quit":
            reactor.stop()

    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        reactor.addSystemEventTrigger("before", "shutdown", lambda: profiler.dump_stats(args.profile))
    service.startService()
    pool.when_started().addCallback(lambda _: service.admin.when_listening()).addCallback(ready)  # type: ignore[union-attr]
    child_stdin_commands(reactor, handle)
    reactor.callLater(args.lifetime, reactor.stop)
    reactor.run()


def raw_server_main(args: argparse.Namespace) -> None:
    """The baseline: a plain Twisted TLS server holding idle connections."""
    quiet_twisted_logging()
    nofile = raise_hard_nofile(args.peers + 1024)
    from twisted.internet import reactor
    from twisted.internet.interfaces import IHandshakeListener
    from twisted.internet.protocol import Factory, Protocol
    from zope.interface import implementer

    live: set[Protocol] = set()

    @implementer(IHandshakeListener)
    class Idle(Protocol):
        """Writes one byte once the client is verified, then holds the connection."""

        def handshakeCompleted(self) -> None:
            self.transport.write(b"!")  # type: ignore[union-attr]
            live.add(self)

        def connectionLost(self, reason: object = None) -> None:
            live.discard(self)

    factory = Factory.forProtocol(Idle)
    factory.noisy = False
    port = reactor.listenSSL(
        0, factory, tls_options(CertDir(path=args.certdir), "server", "client"), backlog=1024, interface=NODE_IP
    )

    def handle(words: list[str]) -> None:
        if words[0] == "wait_conns":
            want, deadline = int(words[1]), time.monotonic() + float(words[2])

            def check() -> None:
                if len(live) >= want or time.monotonic() > deadline:
                    emit({"conns": len(live), "rss_kib": settled_rss()})
                else:
                    reactor.callLater(0.1, check)

            check()
        elif words[0] == "quit":
            reactor.stop()

    reactor.callWhenRunning(lambda: emit({"port": port.getHost().port, "rss_kib": settled_rss(), "nofile": nofile}))
    child_stdin_commands(reactor, handle)
    reactor.callLater(args.lifetime, reactor.stop)
    reactor.run()


# -- a dialer (child process): many client identities -------------------------


def client_config(ip: str, data_dir: str) -> Any:
    from p2pool.config import PoolConfig
    from p2pool.core.addressing import Point

    return PoolConfig(
        listen=Point(ip, 0),
        data_dir=data_dir,
        peers_file=os.path.join(data_dir, f"peers-{ip}.json"),
        expected_proof_of_work=0,
        connection_timeout=60.0,
        authentication_timeout=60.0,
        min_connections=0,
        expected_connections=1,
        max_connections=4,
        max_incoming_connections=4,
        maintenance_idle_time=None,
        keepalive_interval=None,
        disable_peer_discovery=True,
        ip_greylist_size_in_kilobytes=1,
        max_known_points=(16, 8),
        max_known_peer_ids=(16, 8),
        checkpoint_interval=86400.0,
    )


def dialer_main(args: argparse.Namespace) -> None:
    quiet_twisted_logging()
    count = args.count
    nofile = raise_hard_nofile(2 * count + 1024)
    from twisted.internet import defer, reactor
    from twisted.internet.protocol import ClientFactory, Protocol

    from p2pool.core.addressing import Point
    from p2pool.core.identity import Identity
    from p2pool.interfaces import BasePoolApplication
    from p2pool.pool.service import Pool

    ips = [peer_ip(args.start + k, args.groups) for k in range(count)]
    data_dir = tempfile.mkdtemp(prefix=f"p2pool-many-peers-dialer{args.index}-")
    received = {"count": 0, "t_last": 0.0, "armed": False}
    waiting: list[tuple[int, Any]] = []

    class Counting(BasePoolApplication):  # type: ignore[misc]
        def message_received(self, conn: Any, data: bytes) -> None:
            received["count"] += 1
            received["t_last"] = time.time()
            if waiting and received["count"] >= waiting[0][0]:
                waiting.pop()[1]()

    app = Counting()
    pools: list[Any] = []
    raw: list[Any] = []

    def open_all(make_one: Any, concurrency: int, timeout: float) -> Any:
        """Call make_one(k) for every k, at most ``concurrency`` in flight."""
        result = {"opened": 0, "failed": 0, "errors": {}}
        t0 = time.perf_counter()
        sem = defer.DeferredSemaphore(concurrency)

        def one(k: int) -> Any:
            d = make_one(k)
            d.addTimeout(timeout, reactor)

            def ok(_: object) -> None:
                result["opened"] += 1

            def bad(f: Any) -> None:
                result["failed"] += 1
                key = f"{f.type.__name__}: {f.getErrorMessage()}"[:120]
                result["errors"][key] = result["errors"].get(key, 0) + 1

            return d.addCallbacks(ok, bad)

        d = defer.gatherResults([sem.run(one, k) for k in range(count)])
        d.addCallback(lambda _: {**result, "seconds": time.perf_counter() - t0})
        return d

    client_opts = None

    def raw_one(port: int) -> Any:
        class Client(Protocol):
            def __init__(self, up: Any) -> None:
                self.up = up

            def dataReceived(self, data: bytes) -> None:
                if not self.up.called:
                    self.up.callback(None)

            def connectionLost(self, reason: object = None) -> None:
                if not self.up.called:
                    self.up.errback(RuntimeError("closed before the server's byte"))

        def make(k: int) -> Any:
            up: Any = defer.Deferred()
            f = ClientFactory()
            f.noisy = False

            def build(addr: object) -> Protocol:
                p = Client(up)
                raw.append(p)
                return p

            f.buildProtocol = build  # type: ignore[method-assign]
            f.clientConnectionFailed = lambda c, reason: up.called or up.errback(reason)  # type: ignore[method-assign]
            reactor.connectSSL(NODE_IP, port, f, client_opts, bindAddress=(ips[k], 0))
            return up

        return make

    @defer.inlineCallbacks
    def setup() -> Any:
        t0 = time.perf_counter()
        for ip in ips:
            pool = Pool(client_config(ip, data_dir), app, identity=Identity.generate(0), reactor=reactor)
            pool.startService()
            pools.append(pool)
        yield defer.gatherResults([p.when_started() for p in pools])
        return {"setup_s": time.perf_counter() - t0, "rss_kib": settled_rss()}

    def handle(words: list[str]) -> None:
        nonlocal client_opts
        cmd = words[0]
        if cmd == "setup":
            setup().addCallbacks(emit, lambda f: emit({"error": f.getErrorMessage()}))
        elif cmd == "open_raw":
            client_opts = tls_options(CertDir(path=args.certdir), "client", "server")
            open_all(raw_one(int(words[1])), int(words[2]), 60).addCallback(emit)
        elif cmd == "close_raw":
            for p in raw:
                if p.transport is not None:
                    p.transport.abortConnection()
            raw.clear()
            emit({"ok": True})
        elif cmd == "open":
            point = Point(NODE_IP, int(words[1]))
            open_all(lambda k: pools[k].connect(point), int(words[2]), 120).addCallback(emit)
        elif cmd == "arm":
            received["count"] = 0
            want, timeout = int(words[1]), float(words[2])
            call = reactor.callLater(timeout, lambda: waiting and waiting.pop()[1]())
            waiting.append(
                (want, lambda: (call.active() and call.cancel(), emit({"received": received["count"], **received})))
            )
            emit({"armed": True})
        elif cmd == "quit":
            reactor.stop()

    reactor.callWhenRunning(lambda: emit({"ready": True, "nofile": nofile}))
    child_stdin_commands(reactor, handle)
    reactor.callLater(args.lifetime, reactor.stop)
    reactor.run()


# -- the admin API, from this process (threads: the API is blocking HTTP) ------


def http_get(base: str, path: str, timeout: float = 30.0) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(base + path, timeout=timeout) as reply:
        body = reply.read()
    return time.perf_counter() - t0, body


class Dashboard(threading.Thread):
    """What an open dashboard page does: every second, its nine GETs."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.stop = threading.Event()
        self.rounds = 0
        self.slowest: dict[str, float] = {}
        self.errors = 0

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            for path in DASHBOARD_PATHS:
                try:
                    seconds, _ = http_get(self.base, path)
                except Exception:
                    self.errors += 1
                    continue
                self.slowest[path] = max(self.slowest.get(path, 0.0), seconds)
            self.rounds += 1
            self.stop.wait(max(0.0, DASHBOARD_PERIOD - (time.monotonic() - t0)))


class LogStream(threading.Thread):
    """A client of the event feed (``GET /network/log``): counts lines."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.lines = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.base + "/network/log", timeout=3600) as reply:
                for _ in reply:
                    self.lines += 1
        except Exception as e:  # ends when the node stops
            self.error = str(e)


def admin_latency(base: str, requests: int) -> dict[str, Any]:
    """Single-object requests, round robin, one at a time; then the listing."""
    _, body = http_get(base, "/network/self")
    peer_id = json.loads(body)["peer_id"] if body.startswith(b"{") else None
    _, body = http_get(base, "/network/connections")
    listed = json.loads(body)
    some_peer = listed[0]["peer_id"] if listed else peer_id
    some_point = listed[0]["point"] if listed and listed[0].get("point") else None
    paths = [
        "/node",
        "/version",
        "/health/ready",
        "/network/self",
        "/network/stat",
        "/network/stat/history",
        "/network/bans",
        f"/network/connections/{some_peer}",
        f"/network/peers/{some_peer}",
    ]
    if some_point:
        paths.append(f"/network/points/{some_point}")
    times: list[float] = []
    slowest: dict[str, float] = {}
    errors = 0
    for k in range(requests):
        path = paths[k % len(paths)]
        try:
            seconds, _ = http_get(base, path)
        except Exception:
            errors += 1
            continue
        times.append(seconds * 1000)
        slowest[path.split("/")[-1] if "connections/" in path or "peers/" in path else path] = max(
            slowest.get(path, 0.0), seconds * 1000
        )
    listing = []
    entries = None
    for _ in range(3):
        seconds, body = http_get(base, "/network/connections")
        listing.append(seconds)
        entries = len(json.loads(body))
    metrics_s, _ = http_get(base, "/metrics")
    return {
        "requests": len(times),
        "errors": errors,
        "p50_ms": percentile(times, 0.5),
        "p99_ms": percentile(times, 0.99),
        "max_ms": max(times) if times else None,
        "connections_listing_s": {"max": max(listing), "min": min(listing), "entries": entries},
        "metrics_s": metrics_s,
    }


# -- orchestration (this process) -----------------------------------------------


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def held_connections(opened: dict[str, Any], first: dict[str, Any], held: dict[str, Any]) -> dict[str, Any]:
    """The dials, the connections the server holds, and its RSS per connection."""
    return {
        "open": opened,
        "conns": held["conns"],
        "rss_before_kib": first["rss_kib"],
        "rss_after_kib": held["rss_kib"],
        "kib_per_connection": (held["rss_kib"] - first["rss_kib"]) / max(1, held["conns"]),
        **tracked_per_connection(first, held),
    }


def tracked_per_connection(first: dict[str, Any], held: dict[str, Any]) -> dict[str, Any]:
    """
    The objects the node's cyclic GC tracks per connection (each full
    collection traverses them all), in all and by type, when both
    replies carry a census.
    """
    if "gc_tracked" not in first or "gc_tracked" not in held:
        return {}
    conns = max(1, held["conns"])
    before, after = first["gc_tracked_by_type"], held["gc_tracked_by_type"]
    by_type = {k: round((v - before.get(k, 0)) / conns, 2) for k, v in after.items()}
    return {
        "gc_tracked_per_connection": round((held["gc_tracked"] - first["gc_tracked"]) / conns, 1),
        "gc_tracked_per_connection_by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])[:25]),
    }


def run(args: argparse.Namespace) -> Any:
    from twisted.internet import defer, reactor, threads

    out: dict[str, Any] = {
        "bench": "many_peers",
        "quick": args.quick,
        "peers": args.peers,
        "dialers": args.dialers,
        "groups": args.groups,
        "env": env_info(),
        "loadavg_start": loadavg(),
    }
    certs = CertDir()
    me = os.path.abspath(__file__)
    common = ["--peers", str(args.peers), "--groups", str(args.groups), "--certdir", certs.path]
    common += ["--lifetime", str(args.lifetime)]
    node_extra = ["--profile", os.path.abspath(args.profile)] if args.profile else []
    node_extra += ["--attribute-stalls"] if args.attribute_stalls else []
    shares = [args.peers // args.dialers + (1 if k < args.peers % args.dialers else 0) for k in range(args.dialers)]
    starts = [sum(shares[:k]) for k in range(args.dialers)]
    children: list[Any] = []

    def sleep(seconds: float) -> Any:
        return defer.Deferred.fromCoroutine(_sleep(seconds))

    async def _sleep(seconds: float) -> None:
        from twisted.internet.task import deferLater

        await deferLater(reactor, seconds, lambda: None)

    def all_(command: str, timeout: float) -> Any:
        return defer.gatherResults([d.ask(command, timeout) for d in dialers])

    def merge_open(replies: list[dict[str, Any]]) -> dict[str, Any]:
        errors: dict[str, int] = {}
        for r in replies:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        return {
            "opened": sum(r["opened"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "seconds": max(r["seconds"] for r in replies),
            "errors": errors,
        }

    @defer.inlineCallbacks
    def body() -> Any:
        nonlocal dialers
        per = max(shares)
        log(f"[many_peers] {args.peers} peers from {args.dialers} dialers over {args.groups} /16 groups")
        dialers = [
            spawn_child(
                reactor,
                me,
                ["--role", "dialer", "--index", str(k), "--start", str(starts[k]), "--count", str(shares[k]), *common],
                f"dialer{k}",
            )
            for k in range(args.dialers)
        ]
        children.extend(dialers)
        yield defer.gatherResults([d.next(60) for d in dialers])

        # -- the raw TLS baseline
        raw = spawn_child(reactor, me, ["--role", "raw_server", *common], "raw")
        children.append(raw)
        first = yield raw.next(60)
        log(f"[many_peers] raw TLS: opening {args.peers} idle connections")
        opened = merge_open((yield all_(f"open_raw {first['port']} {args.concurrency}", 600 + per)))
        held = yield raw.ask(f"wait_conns {args.peers} 60", 90)
        out["raw_tls"] = held_connections(opened, first, held)
        log(f"[many_peers] raw TLS: {out['raw_tls']}")
        yield all_("close_raw", 60)
        yield raw.quit()

        # -- the p2pool node
        log(f"[many_peers] setting up {args.peers} client pools")
        setups = yield all_("setup", 120 + per * 0.05)
        out["dialer_setup"] = {"seconds": max(s.get("setup_s", 0) for s in setups), "replies": setups[:1]}
        node = spawn_child(reactor, me, ["--role", "node", *common, *node_extra], "node")
        children.append(node)
        first = yield node.next(60)
        base = f"http://{NODE_IP}:{first['admin_port']}"
        log(f"[many_peers] node up ({first['rss_kib']} KiB); opening {args.peers} p2pool connections")
        opened = merge_open((yield all_(f"open {first['port']} {args.concurrency}", 600 + per)))
        held = yield node.ask(f"wait_conns {args.peers} 60", 120)
        ramp = yield node.ask("stall_report", 30)
        out["p2pool"] = {
            **held_connections(opened, first, held),
            "stalls_while_connecting": ramp["stalls"],
            "closes_and_refusals": ramp["closes_and_refusals"],
        }
        log(f"[many_peers] p2pool: {out['p2pool']}")

        # -- idle window: maintenance, checkpoints, keepalive, dashboard, log feed
        stream = LogStream(base)
        stream.start()
        dashboard = Dashboard(base)
        yield node.ask("stall_reset", 30)
        dashboard.start()
        log(f"[many_peers] idle window of {args.idle}s with the dashboard open")
        yield sleep(args.idle)
        dashboard.stop.set()
        yield threads.deferToThread(dashboard.join, 60)
        idle = yield node.ask("stall_report", 30)
        out["idle_window"] = {
            "seconds": args.idle,
            "stalls": idle["stalls"],
            "conns": idle["conns"],
            "dashboard_rounds": dashboard.rounds,
            "dashboard_errors": dashboard.errors,
            "dashboard_slowest_s": {k: round(v, 3) for k, v in dashboard.slowest.items()},
            "log_lines": stream.lines,
        }
        log(f"[many_peers] idle: {out['idle_window']}")
        out["forced_maintenance"] = yield node.ask("maintain", 120)
        out["forced_checkpoint"] = yield node.ask("checkpoint", 120)
        log(f"[many_peers] maintenance {out['forced_maintenance']} checkpoint {out['forced_checkpoint']}")

        # -- admin API
        yield node.ask("stall_reset", 30)
        out["admin"] = yield threads.deferToThread(admin_latency, base, args.admin_requests)
        out["admin"]["stalls"] = (yield node.ask("stall_report", 30))["stalls"]
        log(f"[many_peers] admin: {out['admin']}")

        # -- broadcast
        yield defer.gatherResults([d.ask(f"arm {shares[k]} 120", 30) for k, d in enumerate(dialers)])
        waits = [d.next(150) for d in dialers]
        sent = yield node.ask("broadcast", 60)
        got = yield defer.gatherResults(waits)
        received = sum(g["received"] for g in got)
        out["broadcast"] = {
            "message_bytes": MESSAGE_SIZE,
            "sent": sent["sent"],
            "call_s": sent["call_s"],
            "received": received,
            "wall_s": max(g["t_last"] for g in got) - sent["t_send"],
        }
        log(f"[many_peers] broadcast: {out['broadcast']}")
        out["loadavg_end"] = loadavg()
        out["targets"] = targets(out, args.peers)
        return out

    dialers: list[Any] = []

    @defer.inlineCallbacks
    def main() -> Any:
        try:
            result = yield body()
            emit(result)
        except Exception as e:
            out["error"] = f"{type(e).__name__}: {e}"
            log(f"[many_peers] failed: {out['error']}")
            emit(out)
            raise
        finally:
            yield defer.gatherResults([c.quit() for c in children], consumeErrors=True)
            certs.cleanup()
            reactor.stop()

    failed: list[bool] = []
    reactor.callWhenRunning(lambda: main().addErrback(lambda f: failed.append(True)))
    reactor.run()
    return 1 if failed else 0


def targets(out: dict[str, Any], peers: int) -> dict[str, Any]:
    values = {
        "rss_per_connection_kib": out["p2pool"]["kib_per_connection"],
        "admin_p99_ms": out["admin"]["p99_ms"],
        "connections_listing_s": out["admin"]["connections_listing_s"]["max"],
        "idle_stall_busy_max_ms": out["idle_window"]["stalls"]["busy"]["max_ms"],
        "broadcast_delivered_fraction": out["broadcast"]["received"] / peers,
    }
    result = {}
    for name, (op, bound) in TARGETS.items():
        value = values[name]
        met = value is not None and (value <= bound if op == "<=" else value >= bound)
        result[name] = {"value": value, "target": f"{op} {bound}", "met": met}
    result["rss_ratio_to_raw_tls"] = {
        "value": out["p2pool"]["kib_per_connection"] / max(1e-9, out["raw_tls"]["kib_per_connection"])
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--dialers", type=int, default=2, help="dialer processes (default %(default)s)")
    parser.add_argument("--groups", type=int, default=250, help="/16 groups 127.1-127.N (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=25, help="dials in flight per dialer")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of the idle window")
    parser.add_argument("--admin-requests", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="150 peers, short windows (<= 20 s on an idle machine)")
    parser.add_argument("--profile", metavar="FILE", help="write cProfile stats of the node process to FILE")
    parser.add_argument(
        "--attribute-stalls",
        action="store_true",
        help="in the node, break each tick over 50 ms down by the calls that used its CPU (a diagnostic)",
    )
    parser.add_argument("--lifetime", type=float, default=3600.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--role", default="main", choices=("main", "node", "raw_server", "dialer"), help=argparse.SUPPRESS
    )
    parser.add_argument("--certdir", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "node":
        node_main(args)
    elif args.role == "raw_server":
        raw_server_main(args)
    elif args.role == "dialer":
        dialer_main(args)
    else:
        if args.quick:
            args.peers, args.dialers, args.idle, args.admin_requests = 150, 2, 2.0, 60
            args.groups = min(args.groups, 20)
        if not 1 <= args.groups <= 254:
            parser.error("--groups must be 1 to 254")
        raise_hard_nofile(4096)
        return run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
