#!/usr/bin/env python3
"""
A p2pool cluster on real (virtual) networks: ``--nodes`` nodes, each in a
network namespace of its own with an address on a distinct ``10.N.0.0/16``
network, joined by a bridge (issue 16, item 5).

Needs root and ``ip netns``; elsewhere it prints a JSON line saying why it
skipped, and exits 0. Nothing is added to the host's own network: the
bridge lives in a hub namespace of its own, each node's veth pair goes from
the hub to the node's namespace, and everything is deleted at the end
(namespaces named ``p2pnc<pid>-*``). Latency comes from ``tc netem`` on each
node's interface where the kernel has it (reported either way).

Node 0 is the only bootstrap point; every node runs with maintenance and
keepalive on. Reported:

- convergence: seconds from the start until every node has at least
  ``min_connections`` connections and the graph is connected;
- the degree distribution once settled, and the outbound netgroup
  diversity (distinct /16 networks among each node's outgoing connections,
  per outgoing connection);
- a partition: half the nodes are moved to a second bridge; the seconds
  until no connection crosses the cut (keepalive closes them), then, after
  the halves have settled, the bridge is healed and the seconds until the
  graph is connected again (or that it was not within the deadline), and
  how many connections cross the former cut once settled again.

    sudo PYTHONPATH=. /work/venv/bin/python bench/netns_cluster.py            # 30 nodes
    sudo PYTHONPATH=. /work/venv/bin/python bench/netns_cluster.py --quick    # 6 nodes, <= 20 s

Prints progress on stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
if ROOT not in sys.path:
    sys.path.append(ROOT)

from _common import child_stdin_commands, emit, env_info, log, quiet_twisted_logging, spawn_child  # noqa: E402

PORT = 9732
PREFIX = f"p2pnc{os.getpid()}"
NETEM = "delay 10ms 2ms"


def node_ip(i: int) -> str:
    return f"10.{i + 1}.0.1"


def hub() -> str:
    return f"{PREFIX}-hub"


def namespace(i: int) -> str:
    return f"{PREFIX}-{i}"


def ip_cmd(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def skip_reason() -> str | None:
    """Why this machine cannot run the bench, or None."""
    if not sys.platform.startswith("linux"):
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    probe = f"{PREFIX}-probe"
    added = ip_cmd("netns", "add", probe, check=False)
    if added.returncode != 0:
        return f"ip netns add failed: {added.stderr.strip()}"
    ip_cmd("netns", "del", probe, check=False)
    return None


# -- the network --------------------------------------------------------------


class Network:
    """The hub namespace with two bridges, and one namespace per node."""

    def __init__(self, nodes: int) -> None:
        self.nodes = nodes
        self.created: list[str] = []
        self.netem: str | None = None

    def build(self) -> None:
        ip_cmd("netns", "add", hub())
        self.created.append(hub())
        for bridge in ("br0", "br1"):
            ip_cmd("-n", hub(), "link", "add", bridge, "type", "bridge")
            ip_cmd("-n", hub(), "link", "set", bridge, "up")
        for i in range(self.nodes):
            ns = namespace(i)
            ip_cmd("netns", "add", ns)
            self.created.append(ns)
            ip_cmd("-n", hub(), "link", "add", f"h{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip_cmd("-n", hub(), "link", "set", f"h{i}", "master", "br0", "up")
            ip_cmd("-n", ns, "link", "set", "lo", "up")
            ip_cmd("-n", ns, "addr", "add", f"{node_ip(i)}/16", "dev", "eth0")
            ip_cmd("-n", ns, "link", "set", "eth0", "up")
            # The other /16 networks are on the same bridge: on-link.
            ip_cmd("-n", ns, "route", "add", "10.0.0.0/8", "dev", "eth0")
            if i == 0 or self.netem is not None:
                tc = subprocess.run(
                    ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", *NETEM.split()],
                    capture_output=True,
                    text=True,
                )
                if i == 0:
                    self.netem = NETEM if tc.returncode == 0 else None
                    self.netem_error = tc.stderr.strip() or None

    def move(self, nodes: list[int], bridge: str) -> None:
        for i in nodes:
            ip_cmd("-n", hub(), "link", "set", f"h{i}", "master", bridge)

    def destroy(self) -> None:
        for ns in reversed(self.created):
            ip_cmd("netns", "del", ns, check=False)
        self.created.clear()


# -- a node (child process, inside its namespace) -------------------------------


def node_main(args: argparse.Namespace) -> None:
    quiet_twisted_logging()
    from twisted.internet import reactor

    from p2pool.config import AdminConfig, PoolConfig
    from p2pool.core.addressing import Point, PointSpec
    from p2pool.daemon.node import make_node_service

    me = node_ip(args.index)
    bootstrap = () if args.index == 0 else (PointSpec.parse(f"{node_ip(0)}:{PORT}"),)
    config = PoolConfig(
        listen=Point(me, PORT),
        data_dir=tempfile.mkdtemp(prefix=f"p2pool-netns-{args.index}-"),
        expected_proof_of_work=0,
        bootstrap_points=bootstrap,
        min_connections=args.min,
        expected_connections=args.expected,
        max_connections=args.max,
        maintenance_idle_time=args.maintenance,
        keepalive_interval=args.keepalive,
        connection_timeout=3.0,
        swap_linger=args.maintenance,
        admin=AdminConfig(listen=None),
    )
    service = make_node_service(config, reactor=reactor)
    pool = service.pool

    def handle(words: list[str]) -> None:
        if words[0] == "state":
            emit(
                {
                    "index": args.index,
                    "conns": [[c.remote_ip, c.incoming] for c in pool.connections],
                    "known_points": sum(1 for _ in pool.points),
                }
            )
        elif words[0] == "quit":
            reactor.stop()

    service.startService()
    pool.when_started().addCallback(lambda _: emit({"ready": True, "index": args.index}))
    child_stdin_commands(reactor, handle)
    reactor.callLater(args.lifetime, reactor.stop)
    reactor.run()


# -- the graph ------------------------------------------------------------------


class Snapshot:
    """The connections every node reports at one moment."""

    def __init__(self, states: list[dict[str, Any]]) -> None:
        index_of = {node_ip(s["index"]): s["index"] for s in states}
        self.n = len(states)
        self.edges: set[frozenset[int]] = set()
        self.outbound: dict[int, list[str]] = {}
        self.degree: dict[int, int] = {}
        for s in states:
            self.degree[s["index"]] = len(s["conns"])
            self.outbound[s["index"]] = [ip for ip, incoming in s["conns"] if not incoming]
            for ip, _ in s["conns"]:
                if ip in index_of:
                    self.edges.add(frozenset((s["index"], index_of[ip])))

    def components(self) -> int:
        parent = list(range(self.n))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for edge in self.edges:
            a, b = tuple(edge)
            parent[find(a)] = find(b)
        return len({find(x) for x in range(self.n)})

    def crossing(self, half: set[int]) -> int:
        return sum(1 for e in self.edges if len(e & half) == 1)

    def converged(self, minimum: int) -> bool:
        return self.components() == 1 and min(self.degree.values()) >= minimum

    def summary(self) -> dict[str, Any]:
        degrees = list(self.degree.values())
        diversity = []
        for outbound in self.outbound.values():
            if outbound:
                groups = {".".join(ip.split(".")[:2]) for ip in outbound}
                diversity.append(len(groups) / len(outbound))
        return {
            "edges": len(self.edges),
            "components": self.components(),
            "degree_histogram": dict(sorted(collections.Counter(degrees).items())),
            "degree_min": min(degrees),
            "degree_median": statistics.median(degrees),
            "degree_max": max(degrees),
            "outbound_per_node_median": statistics.median(len(o) for o in self.outbound.values()),
            "outbound_netgroup_diversity_mean": round(statistics.mean(diversity), 3) if diversity else None,
            "outbound_netgroup_diversity_min": round(min(diversity), 3) if diversity else None,
        }


# -- orchestration ----------------------------------------------------------------


def run(args: argparse.Namespace, net: Network) -> int:
    from twisted.internet import defer, reactor
    from twisted.internet.task import deferLater

    out: dict[str, Any] = {
        "bench": "netns_cluster",
        "quick": args.quick,
        "nodes": args.nodes,
        "limits": {"min": args.min, "expected": args.expected, "max": args.max},
        "env": env_info(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    t0 = time.monotonic()
    net.build()
    out["network_setup_s"] = round(time.monotonic() - t0, 2)
    out["netem"] = net.netem or f"unavailable ({net.netem_error})"
    log(f"[netns] {args.nodes} namespaces up in {out['network_setup_s']} s; netem: {out['netem']}")
    ip_path = shutil.which("ip") or "ip"
    common = ["--min", str(args.min), "--expected", str(args.expected), "--max", str(args.max)]
    common += ["--maintenance", str(args.maintenance), "--keepalive", str(args.keepalive)]
    common += ["--lifetime", str(args.lifetime)]
    me = os.path.abspath(__file__)
    nodes: list[Any] = []

    def sleep(seconds: float) -> Any:
        return deferLater(reactor, seconds, lambda: None)

    @defer.inlineCallbacks
    def snapshot() -> Any:
        states = yield defer.gatherResults([n.ask("state", 60) for n in nodes], consumeErrors=True)
        return Snapshot(states)

    @defer.inlineCallbacks
    def wait_until(predicate: Any, deadline: float) -> Any:
        """Poll every second; (seconds, last snapshot, met)."""
        start = time.monotonic()
        while True:
            snap = yield snapshot()
            if predicate(snap):
                return time.monotonic() - start, snap, True
            if time.monotonic() - start > deadline:
                return time.monotonic() - start, snap, False
            yield sleep(args.poll)

    @defer.inlineCallbacks
    def body() -> Any:
        start = time.monotonic()
        for i in range(args.nodes):
            prefix = [ip_path, "netns", "exec", namespace(i)]
            nodes.append(spawn_child(reactor, me, ["--role", "node", "--index", str(i), *common], f"n{i}", prefix))
            if i == 0:
                yield nodes[0].next(args.start_timeout)
        yield defer.gatherResults([n.next(args.start_timeout) for n in nodes[1:]], consumeErrors=True)
        out["started_s"] = round(time.monotonic() - start, 2)
        seconds, snap, met = yield wait_until(lambda s: s.converged(args.min), args.deadline)
        out["convergence"] = {
            "seconds_from_all_listening": round(seconds, 2),
            "seconds_from_first_spawn": round(time.monotonic() - start, 2),
            "converged": met,
        }
        log(f"[netns] converged={met}: {out['convergence']}")
        yield sleep(args.settle)
        settled = yield snapshot()
        out["settled"] = settled.summary()
        log(f"[netns] settled: {out['settled']}")

        half = set(range(args.nodes // 2, args.nodes))
        net.move(sorted(half), "br1")
        log(f"[netns] partition: nodes {min(half)}-{max(half)} on a second bridge")
        seconds, snap, met = yield wait_until(lambda s: s.crossing(half) == 0, args.deadline)
        out["partition"] = {"cut_closed_s": round(seconds, 2), "cut_closed": met, "crossing_left": snap.crossing(half)}
        yield sleep(args.settle)
        during = yield snapshot()
        out["partition"]["during"] = during.summary()
        net.move(sorted(half), "br0")
        log(f"[netns] healed; waiting for the graph to join again (deadline {args.deadline} s)")
        seconds, snap, met = yield wait_until(lambda s: s.converged(args.min), args.heal_deadline)
        out["recovery"] = {
            "seconds": round(seconds, 2),
            "recovered": met,
            "crossing_edges": snap.crossing(half),
            "graph": snap.summary(),
        }
        yield sleep(args.settle)
        after = yield snapshot()
        out["recovery"]["settled"] = {"crossing_edges": after.crossing(half), "graph": after.summary()}
        log(f"[netns] recovery: {out['recovery']}")
        out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    failed: list[bool] = []

    @defer.inlineCallbacks
    def main() -> Any:
        try:
            yield body()
        except Exception as e:
            out["error"] = f"{type(e).__name__}: {e}"
            failed.append(True)
        finally:
            yield defer.gatherResults([n.quit(5) for n in nodes], consumeErrors=True)
            emit(out)
            reactor.stop()

    reactor.callWhenRunning(main)
    reactor.run()
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--min", type=int, default=4, help="min_connections (default %(default)s)")
    parser.add_argument("--expected", type=int, default=8, help="expected_connections (default %(default)s)")
    parser.add_argument("--max", type=int, default=12, help="max_connections (default %(default)s)")
    parser.add_argument("--maintenance", type=float, default=5.0, help="maintenance_idle_time (default %(default)s)")
    parser.add_argument("--keepalive", type=float, default=5.0, help="keepalive_interval (default %(default)s)")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to settle after each phase")
    parser.add_argument("--deadline", type=float, default=120.0, help="bound of convergence and of the cut")
    parser.add_argument("--heal-deadline", type=float, default=180.0, help="bound of the recovery")
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--start-timeout", type=float, default=300.0, help="bound of each node's start (seconds)")
    parser.add_argument("--quick", action="store_true", help="6 nodes, short phases (<= 20 s)")
    parser.add_argument("--lifetime", type=float, default=1800.0, help=argparse.SUPPRESS)
    parser.add_argument("--role", default="main", choices=("main", "node"), help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "node":
        node_main(args)
        return 0
    if args.quick:
        args.nodes, args.min, args.expected, args.max = 6, 2, 3, 5
        args.maintenance, args.keepalive, args.settle = 2.0, 1.0, 1.0
        args.deadline, args.heal_deadline, args.poll = 8.0, 6.0, 0.5
    if not 2 <= args.nodes <= 250:
        parser.error("--nodes must be 2 to 250")
    reason = skip_reason()
    if reason is not None:
        emit({"bench": "netns_cluster", "skipped": reason})
        log(f"[netns] skipped: {reason}")
        return 0
    net = Network(args.nodes)
    atexit.register(net.destroy)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        return run(args, net)
    finally:
        net.destroy()


if __name__ == "__main__":
    sys.exit(main())
