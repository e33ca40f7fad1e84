r"""
Many pools on the in-memory network (p2pool.testing), bootstrapped from one
point, with their real handshake, maintenance and discovery, over real TLS
(--channel tls, the default) or the simulation-only channel (--channel sim:
the same flights and decisions, no cryptography; see docs/TESTING.md).

Reports the simulated, wall and CPU time until every node has at least
min_connections, the degree distribution, whether the connection graph is
connected, and wall time per simulated node-second. With --churn, 10 % of
the nodes are then stopped and restarted, --churn-rounds times, and the
report says whether the graph stayed connected. With --eclipse, an
attacker holding two /16 netgroups advertises 500 addresses it controls to
an honest node; the report gives the share of that node's outbound
connections the attacker obtained.

    PYTHONPATH=. .venv/bin/python bench/simulate.py --nodes 1000
    PYTHONPATH=. .venv/bin/python bench/simulate.py --nodes 1000 --channel sim
    PYTHONPATH=. .venv/bin/python bench/simulate.py --nodes 10000 --channel sim \
        --expected-connections 15 --max-connections 40 --bootstrap-incoming 10000
    PYTHONPATH=. .venv/bin/python bench/simulate.py --nodes 300 --channel sim --churn
    PYTHONPATH=. .venv/bin/python bench/simulate.py --nodes 100 --eclipse
    PYTHONPATH=. .venv/bin/python bench/simulate.py --quick

--quick runs, with 20 honest nodes, convergence through both channels on
one seed (TLS is the baseline; "same_topology" says whether both ended with
the same connections) and one churn round, then the eclipse with 30 honest
nodes and 20 simulated seconds of flooding, both through the simulation
channel; in one object under "channels", "churn" and "eclipse".

Every node starts at once and knows only the bootstrap node, which takes
max_incoming_connections (20) handshakes at once and closes the other
connections before any exchange: each newcomer must get through it to
learn a first point list, and with thousands of nodes that queue, not the
network, sets the time to converge. --bootstrap-incoming N gives the
bootstrap node room for N handshakes at once (a bootstrap node sized for
the crowd); the other nodes keep the defaults.

Prints progress on stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import math
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from twisted.logger import LogLevel, globalLogBeginner, textFileLogObserver

from p2pool.config import ConfigError, PoolConfig
from p2pool.core.addressing import Point, PointSpec
from p2pool.core.wire import Advertise, encode
from p2pool.pool.service import Pool
from p2pool.testing.network import SIMULATION_CHANNEL, TLS_CHANNEL, MemoryNetwork

PORT = 9732


def host(i: int) -> str:
    """
    Node i's address: every node in a /16 of its own, as on the Internet.
    """
    return f"{11 + i % 200}.{i // 200}.0.1"


def attacker_host(i: int) -> str:
    """
    Attacker address i, all in two /16 netgroups.
    """
    return f"66.{1 + i % 2}.{(i // 2) // 250}.{1 + (i // 2) % 250}"


def degree_stats(pools: list[Pool]) -> dict[str, Any]:
    degrees = [p.active_connections() for p in pools]
    histogram = collections.Counter(degrees)
    return {
        "min": min(degrees),
        "median": statistics.median(degrees),
        "max": max(degrees),
        "mean": round(statistics.fmean(degrees), 2),
        "histogram": {str(k): histogram[k] for k in sorted(histogram)},
    }


def is_connected(pools: list[Pool]) -> bool:
    """
    Whether the graph of running connections spans every node.
    """
    by_id = {p.peer_id: p for p in pools}
    seen = {pools[0].peer_id}
    frontier = [pools[0]]
    while frontier:
        pool = frontier.pop()
        for conn in pool.connections.list():
            if conn.peer_id not in seen and conn.peer_id in by_id:
                seen.add(conn.peer_id)
                frontier.append(by_id[conn.peer_id])
    return len(seen) == len(pools)


CHANNELS = {"tls": TLS_CHANNEL, "sim": SIMULATION_CHANNEL}

#: The cyclic garbage collector's thresholds for the run (see --gc-default):
#: a first generation of 50,000 allocations instead of Python's 700, and a
#: second collected every 20 of those. The pools of a simulation hold
#: millions of long-lived objects, and with Python's thresholds a third of
#: the CPU went to collections that found little; with (10,000, 10, 10) a
#: quarter still did at 3,000 nodes (23.7 of 93.1 s), 10 s of 69 with these,
#: for the same peak RSS.
GC_THRESHOLDS = (50_000, 20, 10)


class CollectorClock:
    """
    Times the cyclic garbage collector's runs (through C{gc.callbacks}):
    CPU seconds and runs, by generation.
    """

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.runs = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.process_time() - self._started
            self.runs[generation] += 1

    def report(self) -> dict[str, Any]:
        return {
            "cpu_seconds": round(sum(self.seconds), 1),
            "by_generation": [round(s, 1) for s in self.seconds],
            "runs": self.runs,
        }


COLLECTOR = CollectorClock()


def make_network(args: argparse.Namespace) -> MemoryNetwork:
    # The log keeps warnings only (see main): pool events, debug and
    # info, are declared unwanted, so that no pool builds them.
    return MemoryNetwork(
        seed=args.seed,
        latency=args.latency,
        jitter=args.latency / 2,
        channel=CHANNELS[args.channel],
        log_level=LogLevel.warn,
    )


def node_config(args: argparse.Namespace) -> dict[str, Any]:
    """
    The configuration of every honest node: a small address greylist (a
    simulation sees few addresses), and the connection targets asked for.
    """
    config: dict[str, Any] = {"ip_greylist_size_in_kilobytes": 16}
    if args.expected_connections is not None:
        config["expected_connections"] = args.expected_connections
    if args.max_connections is not None:
        config["max_connections"] = args.max_connections
    return config


def bootstrap_config(args: argparse.Namespace) -> dict[str, Any]:
    """
    The configuration of the bootstrap node: an honest node's, with
    --bootstrap-incoming handshakes at once if given.
    """
    config = node_config(args)
    if args.bootstrap_incoming is not None:
        config["max_incoming_connections"] = args.bootstrap_incoming
    return config


def build(
    network: MemoryNetwork, count: int, config: dict[str, Any], bootstrap: dict[str, Any] | None = None
) -> list[Pool]:
    """
    C{count} pools with C{config}, the first (the bootstrap point of the
    others) with C{bootstrap} instead if given.
    """
    seed = PointSpec(host(0), PORT)
    pools = [network.add_pool(host(0), **(config if bootstrap is None else bootstrap))]
    for i in range(1, count):
        pools.append(network.add_pool(host(i), bootstrap_points=(seed,), **config))
    return pools


def run_to_min_connections(network: MemoryNetwork, pools: list[Pool], limit: float, start_wall: float) -> float | None:
    """
    Advance a second at a time until every pool has min_connections or
    C{limit} simulated seconds have passed; the simulated seconds it took,
    or None.
    """
    min_connections = pools[0].config.min_connections
    sim = 0.0
    while sim < limit:
        network.advance(1.0)
        sim += 1.0
        degrees = sorted(p.active_connections() for p in pools)
        low = degrees[0]
        print(
            f"simulate: t={network.seconds():.0f}s degree min {low} median {degrees[len(degrees) // 2]}"
            f" connections {sum(degrees) // 2} wall {time.perf_counter() - start_wall:.0f}s",
            file=sys.stderr,
        )
        if low >= min_connections:
            return sim
    return None


def converge(args: argparse.Namespace) -> dict[str, Any]:
    return converged_network(args)[2]


def converged_network(args: argparse.Namespace) -> tuple[MemoryNetwork, list[Pool], dict[str, Any]]:
    """
    --nodes pools bootstrapped from one point, run until every one has
    min_connections: the network, its pools and the report.
    """
    network = make_network(args)
    start_wall = time.perf_counter()
    start_cpu = time.process_time()
    pools = build(network, args.nodes, node_config(args), bootstrap_config(args))
    build_wall = time.perf_counter() - start_wall
    min_connections = pools[0].config.min_connections
    idle = pools[0].config.maintenance_idle_time or 0.0
    limit = args.max_sim or 3 * idle
    converged_at = run_to_min_connections(network, pools, limit, start_wall)
    sim = network.seconds()
    wall = time.perf_counter() - start_wall
    result = {
        "channel": args.channel,
        "nodes": args.nodes,
        "min_connections": min_connections,
        "expected_connections": pools[0].config.expected_connections,
        "max_connections": pools[0].config.max_connections,
        "bootstrap_max_incoming_connections": pools[0].config.max_incoming_connections,
        "maintenance_idle_time": idle,
        "converged": converged_at is not None,
        "simulated_seconds_to_converge": converged_at,
        "simulated_limit": limit,
        "target_simulated_seconds": 3 * idle,
        "wall_seconds": round(wall, 1),
        "wall_seconds_building": round(build_wall, 1),
        "cpu_seconds": round(time.process_time() - start_cpu, 1),
        "connections_made": network.connections_made,
        "cpu_ms_per_connection_made": round(
            1000 * (time.process_time() - start_cpu) / max(network.connections_made, 1), 2
        ),
        "wall_ms_per_simulated_node_second": round(1000 * wall / (args.nodes * sim), 3),
        "degrees": degree_stats(pools),
        "graph_connected": is_connected(pools),
        "connections": sum(p.active_connections() for p in pools) // 2,
        "max_rss_mib": max_rss_mib(),
        "load_average": os.getloadavg()[0],
    }
    return network, pools, result


def compare_channels(args: argparse.Namespace) -> dict[str, Any]:
    """
    The same network on the same seed through TLS (the baseline) and
    through the simulation channel: both reports, whether they ended with
    the same connections, and the wall-time ratio.
    """
    reports = {}
    edges = {}
    for channel in ("tls", "sim"):
        args.channel = channel
        network, pools, reports[channel] = converged_network(args)
        edges[channel] = sorted(
            (p.config.listen.ip, c.remote_ip, c.incoming) for p in pools for c in p.connections.list()
        )
    return {
        "tls": reports["tls"],
        "sim": reports["sim"],
        "same_topology": edges["tls"] == edges["sim"],
        "sim_wall_over_tls_wall": round(reports["sim"]["wall_seconds"] / max(reports["tls"]["wall_seconds"], 0.1), 3),
    }


def max_rss_mib() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def churn(args: argparse.Namespace) -> dict[str, Any]:
    """
    Converge, then --churn-rounds times: stop 10 % of the nodes (chosen by
    the seed, the bootstrap node among the candidates), check after
    --churn-seconds that the survivors' graph is connected, restart the
    stopped nodes (same address, identity and peers file) and run until
    every node has min_connections again.
    """
    network, pools, converged = converged_network(args)
    start_wall = time.perf_counter()
    chooser = random.Random(args.seed)
    by_ip = {pool.config.listen.ip: pool for pool in pools}
    limit = args.max_sim or 3 * (pools[0].config.maintenance_idle_time or 0.0)
    rounds = []
    for _ in range(args.churn_rounds):
        leaving = chooser.sample(sorted(by_ip), max(1, len(by_ip) // 10))
        removals = []
        for ip in leaving:
            removals.append(network.remove_pool(ip))
            del by_ip[ip]
        network.advance(args.churn_seconds)
        # A node comes back once it has stopped (saved its peers file).
        network.run_until(lambda removals=removals: all(d.called for d in removals))
        survivors = list(by_ip.values())
        survivors_connected = is_connected(survivors)
        survivors_min = min(p.active_connections() for p in survivors)
        for ip in leaving:
            if ip == host(0):
                by_ip[ip] = network.add_pool(ip, **bootstrap_config(args))
            else:
                by_ip[ip] = network.add_pool(ip, bootstrap_points=(PointSpec(host(0), PORT),), **node_config(args))
        everyone = list(by_ip.values())
        back_after = run_to_min_connections(network, everyone, limit, start_wall)
        rounds.append(
            {
                "stopped": len(leaving),
                "survivors_connected": survivors_connected,
                "survivors_min_degree": survivors_min,
                "simulated_seconds_until_all_at_min_connections": back_after,
                "graph_connected_after_restart": is_connected(everyone),
                "degrees_after_restart": degree_stats(everyone),
            }
        )
    return {
        "converge": converged,
        "churn_fraction": 0.1,
        "churn_seconds": args.churn_seconds,
        "rounds": rounds,
        "stayed_connected": all(r["survivors_connected"] and r["graph_connected_after_restart"] for r in rounds),
        "wall_seconds_churning": round(time.perf_counter() - start_wall, 1),
        "max_rss_mib": max_rss_mib(),
    }


def eclipse(args: argparse.Namespace) -> dict[str, Any]:
    """
    An honest network of --nodes nodes, an attacker with 500 addresses in
    two /16s, and one more honest node that the attacker floods with
    advertisements of its addresses from the moment it connects.
    """
    network = make_network(args)
    honest = build(network, args.nodes, node_config(args), bootstrap_config(args))
    attackers = [
        network.add_pool(attacker_host(i), maintenance_idle_time=None, ip_greylist_size_in_kilobytes=1)
        for i in range(500)
    ]
    attacker_points = tuple(Point(attacker_host(i), PORT) for i in range(500))
    network.advance(30.0)
    victim = network.add_pool(
        "200.200.0.1",
        bootstrap_points=(PointSpec(attacker_host(0), PORT), PointSpec(host(0), PORT)),
        **node_config(args),
    )
    flooder = attackers[0]
    victim_point = Point("200.200.0.1", PORT)
    sent = 0
    for _ in range(args.eclipse_seconds):
        conn = flooder.connections.find_by_point(victim_point) or next(
            (c for c in flooder.connections.list() if c.peer_id == victim.peer_id), None
        )
        if conn is not None:
            batch = tuple(attacker_points[(sent + k) % 500] for k in range(100))
            conn.send_control(encode(Advertise(batch)))
            sent += 100
        network.advance(1.0)
    outbound = [c for c in victim.connections.list() if not c.incoming]
    hostile = [c for c in outbound if c.remote_ip.startswith("66.")]
    known_hostile = sum(1 for info in victim.points if info.point.ip.startswith("66."))
    return {
        "channel": args.channel,
        "honest_nodes": len(honest),
        "attacker_addresses": len(attackers),
        "attacker_netgroups": 2,
        "advertised_points_sent": sent,
        "attacker_points_known_by_victim": known_hostile,
        "victim_outbound": len(outbound),
        "victim_outbound_to_attacker": len(hostile),
        "attacker_share_of_outbound": round(len(hostile) / len(outbound), 3) if outbound else None,
        "victim_inbound_from_attacker": sum(
            1 for c in victim.connections.list() if c.incoming and c.remote_ip.startswith("66.")
        ),
        "target_share": 0.25,
        "simulated_seconds": args.eclipse_seconds,
    }


def warnings_to(stream: Any) -> Any:
    """
    A log observer that writes warnings and errors to C{stream}.
    """
    text = textFileLogObserver(stream)
    shown = {LogLevel.warn, LogLevel.error, LogLevel.critical}

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") in shown:
            text(event)

    return observe


def _count(minimum: int) -> Callable[[str], int]:
    """
    An option type: a whole number, at least C{minimum}.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    """
    An option type: a finite number of seconds, not negative.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, 0 or more, got {text!r}")
    return value


def _gc_thresholds(text: str) -> tuple[int, int, int]:
    """
    An option type: the collector's three thresholds, C{A,B,C}.
    """
    parts = text.split(",")
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected three whole numbers, 0 or more, as A,B,C; got {text!r}")
    return values[0], values[1], values[2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """
    The options of C{argv} (default: the command line), with the defaults
    that depend on --quick filled in; a bad value or combination exits
    with status 2 and a message naming the option, as argparse does.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=_count(1), default=None, help="honest nodes (default 1000; --quick 20)")
    parser.add_argument(
        "--seed", type=int, default=1, help="determines the identities, choices and latencies (default 1)"
    )
    parser.add_argument(
        "--channel",
        choices=sorted(CHANNELS),
        default="tls",
        help="tls: real TLS (default); sim: the simulation-only channel (no cryptography)",
    )
    parser.add_argument(
        "--expected-connections",
        type=_count(0),
        default=None,
        help="each node's expected_connections (default: the pool's)",
    )
    parser.add_argument(
        "--max-connections", type=_count(0), default=None, help="each node's max_connections (default: the pool's)"
    )
    parser.add_argument(
        "--bootstrap-incoming",
        type=_count(0),
        default=None,
        help="the bootstrap node's max_incoming_connections (handshakes at once; default: the pool's, 20)",
    )
    parser.add_argument(
        "--latency", type=_seconds, default=0.02, help="one-way network latency, seconds (default 0.02)"
    )
    parser.add_argument(
        "--max-sim",
        type=_seconds,
        default=0.0,
        help="simulated seconds at most (default, or 0: 3 x the maintenance idle time)",
    )
    scenario = parser.add_mutually_exclusive_group()
    scenario.add_argument("--eclipse", action="store_true", help="run the eclipse scenario instead")
    parser.add_argument(
        "--eclipse-seconds",
        type=_count(0),
        default=None,
        help="simulated seconds of flooding (default 120; --quick 20)",
    )
    scenario.add_argument(
        "--churn", action="store_true", help="converge, then stop and restart 10%% of the nodes, --churn-rounds times"
    )
    parser.add_argument("--churn-rounds", type=_count(1), default=None, help="churn rounds (default 3; --quick 1)")
    parser.add_argument(
        "--churn-seconds",
        type=_seconds,
        default=30.0,
        help="simulated seconds the stopped nodes stay away (default 30)",
    )
    collector = parser.add_mutually_exclusive_group()
    collector.add_argument(
        "--gc-thresholds",
        type=_gc_thresholds,
        default=GC_THRESHOLDS,
        help=f"the collector's thresholds, as three integers (default: {','.join(map(str, GC_THRESHOLDS))})",
    )
    collector.add_argument(
        "--gc-default",
        action="store_true",
        help=f"keep Python's garbage collector thresholds (default: {GC_THRESHOLDS}, fewer collections)",
    )
    scenario.add_argument(
        "--quick",
        action="store_true",
        help="every scenario on a small network (convergence through both channels, churn, eclipse): a smoke run",
    )
    args = parser.parse_args(argv)
    if args.nodes is None:
        args.nodes = 20 if args.quick else 1000
    if args.eclipse_seconds is None:
        args.eclipse_seconds = 20 if args.quick else 120
    if args.churn_rounds is None:
        args.churn_rounds = 1 if args.quick else 3
    if (args.churn or args.quick) and args.nodes < 2:
        parser.error(f"--nodes: the churn stops a node and needs another to survive it: at least 2, got {args.nodes}")
    # The connection counts asked for must make a valid configuration.
    try:
        PoolConfig(**bootstrap_config(args))
    except ConfigError as error:
        parser.error(f"{error} (from --expected-connections, --max-connections, --bootstrap-incoming)")
    return args


def main() -> None:
    args = parse_args()
    # Pool events are debug and info log records: keep warnings and
    # errors, on stderr, instead of buffering every record until logging
    # begins (Twisted keeps the last 65,536). A plain level check: Twisted's
    # FilteringLogObserver costs more than the rest of the logging.
    globalLogBeginner.beginLoggingTo([warnings_to(sys.stderr)], redirectStandardIO=False)
    if not args.gc_default:
        gc.set_threshold(*args.gc_thresholds)
    gc.callbacks.append(COLLECTOR)
    if args.quick:
        report: dict[str, Any] = {"quick": True, "channels": compare_channels(args)}
        args.channel = "sim"
        report["churn"] = churn(args)
        # Fewer honest netgroups than the victim's outbound slots would let
        # the attacker's two fill the rest: the eclipse needs 30.
        args.nodes = max(args.nodes, 30)
        report["eclipse"] = eclipse(args)
    elif args.churn:
        report = churn(args)
    else:
        report = eclipse(args) if args.eclipse else converge(args)
    report["env"] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "gc_thresholds": gc.get_threshold(),
        "gc": COLLECTOR.report(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
