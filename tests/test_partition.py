"""
Partition and heal (issue #7, item 4): two groups of two nodes, each
trusting all the others, with maintenance on. While a partition separates
the groups, each side stays healthy and keeps its internal connections;
once healed, the full mesh re-forms within a bounded time set by the
reconnection back-off.

L{PartitionHealTests} runs the pools on L{p2pool.testing.MemoryNetwork} in
simulated time (deterministic; there a cut also aborts established links).
L{NamespacePartitionTests} runs four twistd nodes in two Linux network
namespaces joined by a veth link cut with C{ip link set down}; it is
skipped where C{ip netns} is not permitted. There a cut is silent: the
nodes notice it through their keepalive (a connection silent for three
intervals is closed), so the test waits for the events that show each
step happened (failed dials across, connections across closed) rather
than for time to pass.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from p2pool.config import ReconnectionConfig
from p2pool.core.addressing import PeerId, PointSpec
from p2pool.core.identity import Identity, save_identity
from p2pool.events import EventKind, PoolEvent
from p2pool.pool.service import Pool
from p2pool.testing.network import MemoryNetwork
from tests.helpers import RecordingApp, async_test, wait_for

GROUP_A = ["10.99.1.1", "10.99.1.2"]
GROUP_B = ["10.99.2.1", "10.99.2.2"]
ALL = GROUP_A + GROUP_B
#: Dials retry after at most this long (plus jitter).
RETRY_CAP = 8.0


class PartitionHealTests(SynchronousTestCase):
    """
    Two groups of two pools on a memory network, cut apart and healed.
    """

    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=99)
        self.addCleanup(self.network.stop)
        self.apps: dict[str, RecordingApp] = {}
        self.events: dict[str, list[PoolEvent]] = {ip: [] for ip in ALL}
        self.pools: dict[str, Pool] = {}
        for ip in ALL:
            trusted = tuple(PointSpec(o, 9732, self.network.identity(o).peer_id) for o in ALL if o != ip)
            self.apps[ip] = RecordingApp()
            self.pools[ip] = self.network.add_pool(
                ip,
                app=self.apps[ip],
                log=self.events[ip].append,
                trusted_points=trusted,
                maintenance_idle_time=2.0,
                min_connections=1,
                expected_connections=3,
                max_connections=6,
                connection_timeout=3.0,
                reconnection=ReconnectionConfig(initial_delay=0.5, disconnection_delay=1.0, increase_cap=RETRY_CAP),
            )

    def peers_of(self, ip: str) -> set[PeerId]:
        return set(self.pools[ip].connected_peer_ids())

    def ids(self, ips: list[str]) -> set[PeerId]:
        return {self.network.identity(ip).peer_id for ip in ips}

    def full_mesh(self) -> bool:
        return all(self.peers_of(ip) == self.ids([o for o in ALL if o != ip]) for ip in ALL)

    def assert_groups_only(self) -> None:
        """
        Each node is connected to its group mate and to nobody else.
        """
        for group in (GROUP_A, GROUP_B):
            for ip in group:
                self.assertEqual(self.peers_of(ip), self.ids([o for o in group if o != ip]), ip)

    def test_partition_then_heal(self) -> None:
        """
        The mesh forms; a dropping partition leaves each group connected
        inside for two simulated minutes of failed cross dials; after
        healing the full mesh is back within the retry cap plus one dial
        and one maintenance pass, and messages cross again.
        """
        self.assertTrue(self.network.run_until(self.full_mesh, timeout=30), "the mesh forms")
        self.network.partition(GROUP_A, GROUP_B, drop=True)
        self.network.advance(0.1)
        self.assert_groups_only()
        lost_at_cut = {ip: len(self.apps[ip].lost) for ip in ALL}
        self.assertEqual(set(lost_at_cut.values()), {2}, "each node lost exactly its two cross links")
        for _ in range(120):
            self.network.advance(1.0)
            self.assert_groups_only()
        for ip in ALL:
            self.assertEqual(len(self.apps[ip].lost), 2, f"{ip} lost nothing inside its group")
            self.assertTrue(self.pools[ip].running)
            failed = [e for e in self.events[ip] if e.event == EventKind.CONNECTION_FAILED]
            self.assertGreater(len(failed), 2, f"{ip} kept trying the other side")
        # Inside each group, messages still flow.
        for a, b in (GROUP_A, GROUP_B):
            self.pools[a].send(self.network.identity(b).peer_id, b"inside")
        self.network.advance(0.1)
        for group in (GROUP_A, GROUP_B):
            self.assertIn(b"inside", [m for _, m in self.apps[group[1]].messages])

        healed_at = self.network.seconds()
        self.network.heal()
        bound = RETRY_CAP * 1.1 + 3.0 + 2.0 + 1.0
        self.assertTrue(self.network.run_until(self.full_mesh, timeout=bound), f"the mesh re-forms within {bound} s")
        self.assertLessEqual(self.network.seconds() - healed_at, bound)
        for ip in GROUP_A:
            self.assertEqual(self.pools[ip].broadcast(b"across"), 3)
        self.network.advance(0.1)
        for ip in GROUP_B:
            self.assertEqual([m for _, m in self.apps[ip].messages].count(b"across"), 2)

    def test_partition_of_one_node(self) -> None:
        """
        Cutting one node off leaves the other three in a triangle; healing
        brings the node back to all three.
        """
        self.assertTrue(self.network.run_until(self.full_mesh, timeout=30))
        alone, rest = ALL[0], ALL[1:]
        self.network.partition([alone], rest, drop=True)
        self.network.advance(30)
        self.assertEqual(self.peers_of(alone), set())
        for ip in rest:
            self.assertEqual(self.peers_of(ip), self.ids([o for o in rest if o != ip]))
        self.network.heal()
        self.assertTrue(self.network.run_until(self.full_mesh, timeout=RETRY_CAP * 1.1 + 6.0))


#: The namespace nodes' keepalive interval: a connection across a cut is
#: closed after three silent intervals, while a node starved of CPU for less
#: than that keeps its inside connections.
KEEPALIVE = 1.0

#: Starts twistd (C{python -m twisted.scripts.twistd} has no main and exits
#: at once, doing nothing).
#: Disconnect reasons that are a node's own choice, not caused by a
#: partition: a maintenance swap or trim, an eviction for a newcomer.
_CHOSEN = "(?:peer_swapped|maintenance_too_many|evicted)"
_TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"
_EVENT = re.compile(r"\] (connection_established|external_disconnection|disconnection) .*?\bpeer_id=(\S+)")


class _NodeProcess(ProcessProtocol):
    """
    A twistd p2pool node in a network namespace; follows its connected
    peers through the events it logs.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.peers: set[str] = set()
        self.log: list[str] = []
        self._buffer = b""
        self.ended: Deferred[None] = Deferred()
        self.exit_code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            self.log.append(line)
            match = _EVENT.search(line)
            if match is None:
                continue
            event, peer_id = match.groups()
            if event == EventKind.CONNECTION_ESTABLISHED:
                self.peers.add(peer_id)
            else:
                self.peers.discard(peer_id)

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.exit_code = reason.value.exitCode
        self.ended.callback(None)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=10)


def _must(*args: str) -> None:
    done = _ip(*args)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class NamespacePartitionTests(TestCase):
    """
    Four twistd nodes in two network namespaces joined by a veth link:
    10.99.1.1-2 on the loopback of one, 10.99.2.1-2 on the other's, routed
    over 10.99.0.0/24. Cutting the link (C{ip link set down}) partitions
    them; bringing it up heals.
    """

    timeout = 120

    def setUp(self) -> None:
        if shutil.which("ip") is None:
            raise SkipTest("the ip command (iproute2) is missing")
        if os.geteuid() != 0:
            raise SkipTest("network namespaces need root")
        tag = f"{os.getpid() % 100000}"
        self.ns_a, self.ns_b = f"p2pa{tag}", f"p2pb{tag}"
        self.veth_a, self.veth_b = f"p2pva{tag}", f"p2pvb{tag}"
        probe = _ip("netns", "add", self.ns_a)
        if probe.returncode != 0:
            raise SkipTest(f"ip netns add is not permitted here: {probe.stderr.strip()}")
        self.addCleanup(_ip, "netns", "del", self.ns_a)
        _must("netns", "add", self.ns_b)
        self.addCleanup(_ip, "netns", "del", self.ns_b)
        _must("link", "add", self.veth_a, "type", "veth", "peer", "name", self.veth_b)
        self.addCleanup(_ip, "link", "del", self.veth_a)
        _must("link", "set", self.veth_a, "netns", self.ns_a)
        _must("link", "set", self.veth_b, "netns", self.ns_b)
        for ns, veth, own, transit in (
            (self.ns_a, self.veth_a, "10.99.1", "10.99.0.1"),
            (self.ns_b, self.veth_b, "10.99.2", "10.99.0.2"),
        ):
            _must("-n", ns, "link", "set", "lo", "up")
            _must("-n", ns, "addr", "add", f"{own}.1/32", "dev", "lo")
            _must("-n", ns, "addr", "add", f"{own}.2/32", "dev", "lo")
            _must("-n", ns, "addr", "add", f"{transit}/24", "dev", veth)
        self.nodes: dict[str, _NodeProcess] = {}
        self.processes: dict[str, Any] = {}
        self.peer_ids: dict[str, str] = {}

    def link_up(self) -> None:
        """
        Heal: bring the link up and restore the routes between the groups.
        """
        _must("-n", self.ns_a, "link", "set", self.veth_a, "up")
        _must("-n", self.ns_b, "link", "set", self.veth_b, "up")
        _must("-n", self.ns_a, "route", "replace", "10.99.2.0/24", "via", "10.99.0.2", "src", "10.99.1.1")
        _must("-n", self.ns_b, "route", "replace", "10.99.1.0/24", "via", "10.99.0.1", "src", "10.99.2.1")

    def link_down(self) -> None:
        """
        Partition: take group A's end of the link down.
        """
        _must("-n", self.ns_a, "link", "set", self.veth_a, "down")

    def spawn(self, ns: str, ip: str, others: list[str]) -> None:
        data_dir = os.path.abspath(self.mktemp())
        ident = Identity.generate(0)
        save_identity(os.path.join(data_dir, "identity.json"), ident)
        self.peer_ids[ip] = str(ident.peer_id)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        args = ["ip", "netns", "exec", ns, sys.executable, "-c", _TWISTD, "-n", "--pidfile=", "p2pool"]
        args += ["--listen", f"{ip}:9732", "--data-dir", data_dir, "--admin", "false", "--expected-proof-of-work", "0"]
        args += ["--min-connections", "1", "--expected-connections", "3", "--max-connections", "6"]
        args += ["--maintenance-idle-time", "0.5", "--connection-timeout", "1"]
        args += ["--reconnection-initial-delay", "0.2", "--reconnection-increase-cap", "1"]
        args += ["--reconnection-disconnection-delay", "0.5", "--keepalive-interval", str(KEEPALIVE)]
        args += ["--log-level", "debug"]  # the end of the test reads save_peers, a debug event
        for other in others:
            args += ["--peer", f"{other}:9732"]
        node = _NodeProcess(ip)
        process = reactor.spawnProcess(node, args[0], args, env=env, path=data_dir)  # type: ignore[attr-defined]
        self.nodes[ip] = node
        self.processes[ip] = process

        async def stop() -> None:
            if node.ended.called:
                return
            with contextlib.suppress(ProcessExitedAlready, OSError):
                process.signalProcess("TERM")
            try:
                await wait_for(lambda: node.ended.called, timeout=15, what=f"{ip} ends on SIGTERM")
            except AssertionError:
                with contextlib.suppress(ProcessExitedAlready, OSError):
                    process.signalProcess("KILL")
                await node.ended

        self.addCleanup(lambda: ensureDeferred(stop()))

    def ids(self, ips: list[str]) -> set[str]:
        return {self.peer_ids[ip] for ip in ips}

    def groups_only(self) -> bool:
        return all(
            self.nodes[ip].peers == self.ids([o for o in group if o != ip])
            for group in (GROUP_A, GROUP_B)
            for ip in group
        )

    def full_mesh(self) -> bool:
        return all(self.nodes[ip].peers == self.ids([o for o in ALL if o != ip]) for ip in ALL)

    def describe(self) -> str:
        return "; ".join(f"{ip}: {sorted(n.peers)} ({len(n.log)} lines)" for ip, n in self.nodes.items())

    def marks(self) -> dict[str, int]:
        """
        How many lines each node has logged so far.
        """
        return {ip: len(node.log) for ip, node in self.nodes.items()}

    def logged_since(self, ip: str, marks: dict[str, int], pattern: str) -> list[str]:
        return [line for line in self.nodes[ip].log[marks[ip] :] if re.search(pattern, line)]

    def cross(self, ip: str) -> list[str]:
        return GROUP_B if ip in GROUP_A else GROUP_A

    def group_mate(self, ip: str) -> str:
        [mate] = [o for o in (GROUP_A if ip in GROUP_A else GROUP_B) if o != ip]
        return mate

    def failed_across_since(self, marks: dict[str, int]) -> bool:
        """
        Whether every node has failed to dial both nodes across since
        C{marks}.
        """
        return all(
            self.logged_since(ip, marks, rf"connection_failed point={re.escape(other)}:9732")
            for ip in ALL
            for other in self.cross(ip)
        )

    def assert_inside_kept(self, marks: dict[str, int]) -> None:
        """
        No node lost its group mate since C{marks} (a swap, trim or eviction
        that either node chose to make is no loss: it is not caused by the
        partition).
        """
        for ip in ALL:
            mate_ip = self.group_mate(ip)
            mate = re.escape(self.peer_ids[mate_ip])
            lost = self.logged_since(ip, marks, rf"disconnection .*peer_id={mate} .*reason=(?!{_CHOSEN}\b)")
            # Closed by the mate's own choice (its side names the reason;
            # this side only sees remote_disconnect): no loss either.
            chosen_by_mate = self.logged_since(
                mate_ip, marks, rf"disconnection .*peer_id={re.escape(self.peer_ids[ip])} .*reason={_CHOSEN}\b"
            )
            if chosen_by_mate:
                lost = [line for line in lost if "reason=remote_disconnect" not in line]
            mate_side = self.logged_since(mate_ip, marks, rf"disconnection .*peer_id={re.escape(self.peer_ids[ip])}")
            self.assertEqual(lost, [], f"{ip} lost its group mate (the mate's side: {mate_side})")

    @async_test
    async def test_partition_and_heal_in_namespaces(self) -> None:
        """
        Started partitioned, each group connects inside and its dials
        across fail; healed, the full mesh forms; cut again, each node's
        keepalive closes its connections across while the inside ones
        stay; healed again, the mesh is whole; the nodes then stop cleanly
        on SIGTERM.
        """
        for group, ns in ((GROUP_A, self.ns_a), (GROUP_B, self.ns_b)):
            for ip in group:
                self.spawn(ns, ip, [o for o in ALL if o != ip])
        try:
            await wait_for(self.groups_only, what="each group connects inside")
            formed = self.marks()
            # Every node tries both nodes across and fails, after which the
            # groups are still exactly as they were.
            await wait_for(lambda: self.failed_across_since(formed), what="every node fails to dial across")
            self.assertTrue(self.groups_only(), self.describe())
            self.assert_inside_kept(formed)
            self.link_up()
            await wait_for(self.full_mesh, what="the mesh forms once healed")
            cut = self.marks()
            self.link_down()
            # The cut is silent: each side's keepalive closes the
            # connections across; the inside ones stay.
            await wait_for(self.groups_only, what="the keepalive closes the connections across the cut")
            self.assert_inside_kept(cut)
            self.link_up()
            await wait_for(self.full_mesh, what="the mesh re-forms once healed again")
            self.assert_inside_kept(cut)
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.describe()}") from None
        for node in self.nodes.values():
            self.assertIsNone(node.exit_code, f"{node.name} is still running")
        for process in self.processes.values():
            process.signalProcess("TERM")
        await wait_for(lambda: all(n.ended.called for n in self.nodes.values()), what="every node ends on SIGTERM")
        # twistd re-raises the stopping signal at exit, so the exit status is
        # SIGTERM's: a clean stop shows in the log instead.
        for node in self.nodes.values():
            self.assertFalse([line for line in node.log if "Traceback (most recent call last)" in line], node.name)
            self.assertTrue(any("save_peers path=" in line for line in node.log), f"{node.name} saved its peers")
            self.assertTrue(any("Server Shut Down." in line for line in node.log), node.name)
