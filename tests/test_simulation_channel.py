# -*- test-case-name: tests.test_simulation_channel -*-
"""
The simulation channel of L{p2pool.testing}: a network reaches the same
topology, at the same simulated times, through it as through TLS; it makes
the same decisions about wrong pins, unknown keys and bytes that are not
its handshake; and nothing but a L{MemoryNetwork} can select it.
"""

from __future__ import annotations

import ast
import pathlib
from typing import Any

from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

import p2pool
from p2pool.config import CONFIG_KEYS, ConfigError, PoolConfig, config_from_mapping
from p2pool.core.addressing import Point, PointSpec
from p2pool.errors import IdentityCheckFailure, InvalidAuth
from p2pool.events import EventKind, PoolEvent
from p2pool.testing.network import SIMULATION_CHANNEL, TLS_CHANNEL, MemoryNetwork
from p2pool.testing.simulation_channel import SimulationNotary

PORT = 9732
#: The events that make up a network's topology over time.
_TOPOLOGY_EVENTS = frozenset(
    {
        EventKind.CONNECTION_ESTABLISHED,
        EventKind.DISCONNECTION,
        EventKind.OUTGOING_CONNECTION,
        EventKind.INCOMING_CONNECTION,
    }
)


def _host(i: int) -> str:
    return f"{11 + i}.{i}.0.1"


def _grow(channel: str, nodes: int = 12, seconds: float = 90.0, seed: int = 7) -> dict[str, Any]:
    """
    C{nodes} pools bootstrapped from the first, run C{seconds} on a
    network with C{channel}: their connections, and the topology events
    with their times.
    """
    network = MemoryNetwork(seed=seed, latency=0.02, jitter=0.5, channel=channel)
    timeline: list[tuple[float, str, str, str]] = []

    def observe(time: float, ip: str, event: PoolEvent) -> None:
        if event.event in _TOPOLOGY_EVENTS:
            fields = event.fields
            peer = fields.get("peer_id") or fields.get("point") or fields.get("addr")
            timeline.append((round(time, 9), ip, event.event.value, str(peer)))

    network.observe(observe)
    bootstrap = (PointSpec(_host(0), PORT),)
    # A small maximum makes maintenance close and replace connections too.
    limits = {"min_connections": 2, "expected_connections": 4, "max_connections": 6}
    pools = [network.add_pool(_host(0), **limits)]
    pools += [network.add_pool(_host(i), bootstrap_points=bootstrap, **limits) for i in range(1, nodes)]
    network.advance(seconds)
    edges = sorted(
        (pool.config.listen.ip, conn.remote_ip, conn.incoming) for pool in pools for conn in pool.connections.list()
    )
    result = {"edges": edges, "timeline": timeline, "connections_made": network.connections_made}
    network.stop()
    return result


class SameTopologyTests(SynchronousTestCase):
    """
    The simulation channel keeps the flights of the TLS 1.3 handshake and
    its close: the same network on the same seed goes through the same
    connections at the same simulated times.
    """

    def test_same_topology_as_tls(self) -> None:
        tls = _grow(TLS_CHANNEL)
        sim = _grow(SIMULATION_CHANNEL)
        self.assertGreater(len(tls["edges"]), 12)
        self.assertEqual(sim["edges"], tls["edges"])
        self.assertEqual(sim["connections_made"], tls["connections_made"])

    def test_same_timeline_as_tls(self) -> None:
        """
        Not only the end state: every dial, acceptance, establishment and
        disconnection happens at the same simulated time (maintenance
        closing connections above C{max_connections} included).
        """
        tls = _grow(TLS_CHANNEL, nodes=10, seconds=60.0, seed=3)
        sim = _grow(SIMULATION_CHANNEL, nodes=10, seconds=60.0, seed=3)
        kinds = {entry[2] for entry in tls["timeline"]}
        self.assertIn(EventKind.DISCONNECTION.value, kinds)
        self.assertEqual(sim["timeline"], tls["timeline"])

    def test_bytes_differ(self) -> None:
        """
        The difference: fewer bytes go over the wire (no TLS records, no
        certificates, no session tickets). No pool decision reads byte
        counts and the network has no bandwidth limit, so it does not
        change the topology, except through one path: a writer is paused
        when its peer has more than C{MemoryTransport.buffer_size} bytes
        unread, which happens only while that peer has paused reading
        (flow control), and TLS's larger records reach that mark a little
        sooner. In large simulations (hundreds of nodes flooding each
        other with point lists) this shifts some timings, so the two
        channels give statistically alike, not identical, networks; the
        properties a simulation checks (convergence, connectivity,
        eclipse resistance) do not depend on it.
        """
        counts = {}
        for channel in (TLS_CHANNEL, SIMULATION_CHANNEL):
            network = MemoryNetwork(seed=1, channel=channel)
            a = network.add_pool("10.0.0.1")
            network.add_pool("10.0.0.2")
            a.connect(Point("10.0.0.2", PORT))
            network.advance(1.0)
            self.assertEqual(a.active_connections(), 1)
            counts[channel] = network.bytes_sent
            network.stop()
        self.assertLess(counts[SIMULATION_CHANNEL], counts[TLS_CHANNEL] / 2)


class _Garbage(Protocol):
    """
    A client that sends an HTTP request where the handshake should be, and
    records how its connection ended.
    """

    lost: list[Failure] = []

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"GET / HTTP/1.0\r\n\r\n" * 20)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self.lost.append(reason)


class DecisionTests(SynchronousTestCase):
    """
    The simulation channel refuses what TLS refuses, with the same errors,
    so the pools make the same decisions.
    """

    def test_wrong_pin(self) -> None:
        """
        A dial to a point pinned to another peer id fails with
        L{IdentityCheckFailure} before the Hello, through either channel.
        """
        outcomes = {}
        for channel in (TLS_CHANNEL, SIMULATION_CHANNEL):
            network = MemoryNetwork(seed=2, channel=channel)
            wrong = network.identity("10.0.0.3").peer_id
            pinned = PointSpec("10.0.0.2", PORT, wrong)
            a = network.add_pool("10.0.0.1", maintenance_idle_time=None, trusted_points=(pinned,))
            b = network.add_pool("10.0.0.2")
            result: list[Any] = []
            a.connect(Point("10.0.0.2", PORT)).addBoth(result.append)
            network.advance(2.0)
            self.assertIsInstance(result[0], Failure)
            result[0].trap(IdentityCheckFailure)
            outcomes[channel] = (a.active_connections(), b.active_connections(), b.acl.banned_addr("10.0.0.1"))
            network.stop()
        self.assertEqual(outcomes[SIMULATION_CHANNEL], outcomes[TLS_CHANNEL])

    def test_unvouched_key(self) -> None:
        """
        A key that belongs to no pool of the network is refused as an
        invalid certificate is: the dialer fails with L{InvalidAuth}.
        """
        network = MemoryNetwork(seed=2, channel=SIMULATION_CHANNEL)
        a = network.add_pool("10.0.0.1")
        network.add_pool("10.0.0.2", pool_options={"channel": SimulationNotary()})
        result: list[Any] = []
        a.connect(Point("10.0.0.2", PORT)).addBoth(result.append)
        network.advance(2.0)
        self.assertIsInstance(result[0], Failure)
        self.assertIn("belongs to no pool", str(result[0].trap(InvalidAuth) and result[0].value))
        network.stop()

    def test_not_the_channel(self) -> None:
        """
        Bytes that are not the handshake fail it as they fail TLS: the
        acceptor greylists the sender (an authentication failure).
        """
        greylisted = {}
        for channel in (TLS_CHANNEL, SIMULATION_CHANNEL):
            network = MemoryNetwork(seed=2, channel=channel)
            b = network.add_pool("10.0.0.2")
            factory = ClientFactory.forProtocol(_Garbage)
            network.reactor("10.0.0.9").connectTCP("10.0.0.2", PORT, factory)
            network.advance(2.0)
            self.assertEqual(len(_Garbage.lost), 1)
            _Garbage.lost.clear()
            greylisted[channel] = b.acl.banned_addr("10.0.0.9")
            network.stop()
        self.assertEqual(greylisted, {TLS_CHANNEL: True, SIMULATION_CHANNEL: True})


class NotFromConfigTests(SynchronousTestCase):
    """
    No node configuration can select the simulation channel: a node always
    runs TLS.
    """

    def test_no_config_key(self) -> None:
        names = [key.dotted for key in CONFIG_KEYS] + [field.name for field in PoolConfig.__attrs_attrs__]
        self.assertEqual([name for name in names if "channel" in name or "simulat" in name], [])

    def test_config_refuses_channel_key(self) -> None:
        for key in ("channel", "simulation_channel", "transport"):
            with self.assertRaises(ConfigError) as caught:
                config_from_mapping({"p2p": {key: SIMULATION_CHANNEL}})
            self.assertIn("unknown", str(caught.exception))

    def test_only_testing_selects_it(self) -> None:
        """
        Outside C{p2pool.testing}, no module imports the simulation channel
        and no call passes a C{channel} to a L{Pool}.
        """
        root = pathlib.Path(p2pool.__file__).parent
        offenders = []
        for path in sorted(root.rglob("*.py")):
            if path.parent.name == "testing":
                continue
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and "simulation_channel" in node.module:
                    offenders.append(f"{path.name}: imports {node.module}")
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Pool":
                    if any(keyword.arg == "channel" for keyword in node.keywords):
                        offenders.append(f"{path.name}: Pool(channel=...)")
        self.assertEqual(offenders, [])
        self.assertGreater(len(list(root.rglob("*.py"))), 20)

    def test_unknown_channel_refused(self) -> None:
        with self.assertRaises(ValueError) as caught:
            MemoryNetwork(channel="plaintext")
        self.assertIn("channel must be one of", str(caught.exception))
