# -*- test-case-name: tests.test_persistence_start -*-
"""
A pool listens before its peers file's records are loaded: the file's head
(its bans) first (L{read_head}), then the port, then the records, a slice
per reactor turn, merged into what the pool learnt meanwhile
(L{apply_content}); on memory reactors.
"""

from __future__ import annotations

import collections
import gc
import json
import os
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from p2pool.config import PoolConfig
from p2pool.core.addressing import Point, PointSpec
from p2pool.core.states import PeerInfo, PointInfo, PointState, StateEvent, TrustSource
from p2pool.events import EventKind
from p2pool.pool.persistence import (
    APPLY_SLICE,
    NO_METADATA,
    PeersFileContent,
    apply_content,
    apply_content_in_slices,
    read_head,
)
from p2pool.pool.persistence import store as store_module
from p2pool.pool.service import Pool
from tests.helpers import identity
from tests.test_persistence import (
    NETWORK,
    T0,
    Counters,
    CountersApp,
    _peer,
    _point,
    _PoolCase,
    _ThreadsReactor,
    document,
    peer_record,
)


def head_first(doc: dict[str, Any]) -> dict[str, Any]:
    """
    C{doc} with its members in the order this version writes them: the
    header, the bans, then the records.
    """
    order = ["format", "network", "saved_at", "bans"]
    return {**{k: doc[k] for k in order if k in doc}, **{k: v for k, v in doc.items() if k not in order}}


def point_records(count: int) -> list[dict[str, Any]]:
    return [{"point": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:9732"} for i in range(count)]


BANS = {"ips": ["192.0.2.7", "10.9.0.0/16"], "peers": [str(_peer(9))]}


class ReadHeadTests(SynchronousTestCase):
    """
    L{read_head}: the header and bans of a file that holds them before its
    records, or None.
    """

    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp(), "peers.json")
        os.makedirs(os.path.dirname(self.path))

    def write(self, data: bytes | dict[str, Any]) -> None:
        with open(self.path, "wb") as f:
            f.write(data if isinstance(data, bytes) else json.dumps(data).encode())

    def test_head_before_records(self) -> None:
        self.write(head_first(document(bans=BANS, peers=[peer_record(1)])))
        head = read_head(self.path, NETWORK)
        assert head is not None
        self.assertEqual(head.banned_ips, BANS["ips"])
        self.assertEqual(head.banned_peers, [_peer(9)])
        self.assertEqual(head.saved_at, T0)

    def test_records_are_not_read(self) -> None:
        """
        What follows the head is not read: damage there is found by the
        whole read (L{read_peers_file}), not here.
        """
        text = json.dumps(head_first(document(bans=BANS)))
        cut = text.rindex('"peers"')  # the records, after the bans' own "peers"
        self.write((text[:cut] + '"peers": [{"peer_id": ').encode())
        head = read_head(self.path, NETWORK)
        assert head is not None
        self.assertEqual(head.banned_peers, [_peer(9)])

    def test_head_longer_than_the_first_read(self) -> None:
        self.patch(store_module, "HEAD_READ", 64)
        ips = [f"192.0.2.{i}" for i in range(200)]
        self.write(head_first(document(bans={"ips": ips, "peers": []}, points=point_records(10))))
        head = read_head(self.path, NETWORK)
        assert head is not None
        self.assertEqual(head.banned_ips, ips)

    def test_no_usable_head(self) -> None:
        """
        No head: the bans come after the records (the older layout), or
        are missing; the file is refused, damaged in its head, not UTF-8,
        not an object, missing, or over the size limit.
        """
        cases: dict[str, bytes | dict[str, Any]] = {
            "bans after the records": document(bans=BANS),
            "no bans": document(bans=None),
            "another network": head_first(document(network="other")),
            "a newer format": head_first(document(format=99)),
            "no format": head_first(document(format=None)),
            "damaged head": b'{"format": 1, "network": "test-net", "bans": {"ips": [1',
            "not UTF-8": b'{"format": 1, "network": "\xff"}',
            "not an object": b"[]",
            "bad bans": head_first(document(bans=[])),
        }
        for what, data in cases.items():
            self.write(data)
            self.assertIsNone(read_head(self.path, NETWORK), what)
        self.write(head_first(document()))
        self.assertIsNone(read_head(self.path, NETWORK, max_size=10), "over the size limit")
        os.unlink(self.path)
        self.assertIsNone(read_head(self.path, NETWORK), "missing")


class ListenBeforeLoadingTests(_PoolCase):
    """
    The start sequence: bans, port, records.
    """

    def start(self, **config: Any) -> tuple[Pool, _ThreadsReactor]:
        reactor = _ThreadsReactor()
        pool = self.make_pool(reactor=reactor, start=False, **config)
        pool.startService()
        self.addCleanup(lambda: pool.running and pool.stopService())
        return pool, reactor

    def test_listens_with_the_bans_before_the_records(self) -> None:
        data = self.write_file(head_first(document(bans=BANS, points=point_records(10))))
        pool, reactor = self.start()
        started = pool.when_started()
        self.assertIsNone(pool.listening_port, "not before the head is read")
        reactor.run_work()  # the head
        self.assertIsNotNone(pool.listening_port)
        self.assertTrue(pool.is_started)
        self.assertTrue(pool.acl.banned_addr("10.9.1.1"), "the bans are in force")
        self.assertTrue(pool.peers.banned(_peer(9)))
        self.assertFalse(pool.persistence.loaded)
        self.assertEqual(len(pool.points), 0)
        self.assertNoResult(started)
        # A checkpoint before the records are in writes nothing.
        self.successResultOf(pool.save_peers())
        self.assertEqual(self.read_bytes(), data)
        self.assertEqual(self.named(EventKind.SAVE_SKIPPED_PEERS)[-1].fields["reason"], "not loaded yet")
        reactor.run_work()  # the whole file
        self.successResultOf(started)
        self.assertTrue(pool.persistence.loaded)
        self.assertEqual(len(pool.points), 10)
        self.assertEqual(self.named(EventKind.LOAD_PEERS)[0].fields["banned_ips"], 2)

    def test_older_layout_is_read_whole_before_listening(self) -> None:
        """
        Bans after the records: they are known only once the whole file
        is read, and the port opens after that.
        """
        self.write_file(document(bans=BANS, points=point_records(10)))
        pool, reactor = self.start()
        reactor.run_work()  # the head: not usable
        self.assertIsNone(pool.listening_port)
        reactor.run_work()  # the whole file
        self.assertIsNotNone(pool.listening_port)
        self.assertTrue(pool.acl.banned_addr("10.9.1.1"))
        self.successResultOf(pool.when_started())
        self.assertEqual(len(pool.points), 10)
        self.assertFalse(reactor.work, "the file was read once")

    def test_records_go_in_by_slices(self) -> None:
        count = 2 * APPLY_SLICE + 10
        self.write_file(head_first(document(points=point_records(count))))
        pool, reactor = self.start(max_known_points=(2 * count, count))
        reactor.run_work()
        reactor.run_work()
        self.assertEqual(len(pool.points), APPLY_SLICE, "one slice in this turn")
        self.assertFalse(pool.persistence.loaded)
        self.assertEqual(pool.directory.index_errors(), [])
        reactor.advance(0)  # the next turns
        self.assertEqual(len(pool.points), count)
        self.assertTrue(pool.persistence.loaded)
        self.successResultOf(pool.when_started())
        self.assertEqual(pool.directory.index_errors(), [])

    def test_what_connects_while_loading_is_merged(self) -> None:
        """
        A point that connects after the first slice keeps its live state
        when the file's record of it goes in, and gains the file's trust
        and history; so does its peer.
        """
        count = 2 * APPLY_SLICE
        points = point_records(count)
        late = points[-1]["point"]
        points[-1].update(
            trusted=True,
            known_public=True,
            last_disconnection=[str(_peer(1)), "2024-05-01T00:00:05.000Z"],
        )
        # The first turn puts in APPLY_SLICE peers; the last one comes later.
        peers = [peer_record(i) for i in range(2, APPLY_SLICE + 2)]
        peers.append(peer_record(1, trusted=True, last_disconnection=[None, "2024-05-01T00:00:05.000Z"]))
        self.write_file(head_first(document(peers=peers, points=points)))
        pool, reactor = self.start(max_known_points=(2 * count, count), max_known_peer_ids=(2 * count, count))
        reactor.run_work()
        reactor.run_work()
        self.assertFalse(pool.persistence.loaded)
        point = Point.parse(late)
        self.assertIsNone(pool.points.info(point), "not in yet")
        self.assertIsNone(pool.peers.info(_peer(1)), "not in yet")
        # It connects now, as a dial would make it.
        live = pool.register_point(point)
        peer = pool.register_peer(_peer(1))
        pool.directory.point_requested(live, T0 + 100)
        pool.directory.point_running(live, _peer(1), T0 + 101)
        pool.directory.peer_running(peer, point, T0 + 101)
        reactor.advance(0)
        self.successResultOf(pool.when_started())
        info = pool.points.info(point)
        self.assertIs(info, live)
        assert info is not None
        self.assertEqual((info.state, info.current_peer_id), (PointState.RUNNING, _peer(1)))
        self.assertEqual((info.trust, info.known_public), (TrustSource.API, True))
        self.assertEqual(info.last_disconnection, (_peer(1), T0 + 5))
        self.assertEqual(info.last_established_connection, (_peer(1), T0 + 101))
        self.assertIs(pool.peers.info(_peer(1)), peer)
        self.assertEqual((peer.trust, peer.last_disconnection), (TrustSource.API, (None, T0 + 5)))
        self.assertEqual(len(pool.points), count)
        self.assertEqual(pool.directory.index_errors(), [])
        loaded = [e for e in self.events if e.event == EventKind.LOAD_PEERS][0].fields
        self.assertEqual((loaded["points"], loaded["peers"]), (count - 1, APPLY_SLICE))

    def test_stop_while_loading_keeps_the_file(self) -> None:
        """
        A pool stopped before its records are in stops loading, and saves
        nothing over the file (it holds what the tables do not).
        """
        count = 2 * APPLY_SLICE
        data = self.write_file(head_first(document(points=point_records(count))))
        pool, reactor = self.start(max_known_points=(2 * count, count))
        started = pool.when_started()
        reactor.run_work()
        reactor.run_work()
        self.assertEqual(len(pool.points), APPLY_SLICE)
        stopped = pool.stopService()
        reactor.advance(0)
        self.successResultOf(stopped)
        self.failureResultOf(started, CancelledError)
        self.assertEqual(len(pool.points), APPLY_SLICE, "no slice after the stop")
        self.assertFalse(pool.persistence.loaded)
        self.assertEqual(self.read_bytes(), data)
        self.assertFalse(self.named(EventKind.SAVE_PEERS))

    def test_stop_while_reading_the_head(self) -> None:
        data = self.write_file(head_first(document(bans=BANS)))
        pool, reactor = self.start()
        started = pool.when_started()
        stopped = pool.stopService()
        reactor.run_work()
        self.successResultOf(stopped)
        self.failureResultOf(started, CancelledError)
        self.assertIsNone(pool.listening_port, "never listens")
        self.assertFalse(reactor.tcpServers, "no port opened after the stop")
        self.assertEqual(self.read_bytes(), data)

    def test_configured_trusted_points_dialed_before_the_records(self) -> None:
        self.write_file(head_first(document(points=[{"point": str(_point(2)), "trusted": True}])))
        pool, reactor = self.start(trusted_points=(PointSpec("10.0.0.1", 9732),))
        reactor.run_work()
        reactor.advance(0.3)
        self.assertEqual(pool.points.info(_point(1)).state, PointState.REQUESTED)  # type: ignore[union-attr]
        self.assertIsNone(pool.points.info(_point(2)))
        reactor.run_work()
        self.successResultOf(pool.when_started())
        reactor.advance(0.3)
        self.assertEqual(pool.points.info(_point(2)).state, PointState.REQUESTED)  # type: ignore[union-attr]

    def test_damaged_records_fall_back_on_the_backup(self) -> None:
        """
        A file whose head is good and whose records are damaged: its bans
        are in force from the start; it is moved aside and the C{.bak}
        loaded (its bans too).
        """
        text = json.dumps(head_first(document(bans=BANS)))
        self.write_file(text[: text.rindex('"peers"')].encode() + b'"peers": [{')
        backup = head_first(document(bans={"ips": ["198.51.100.1"], "peers": []}, points=point_records(3)))
        self.write_file(backup, path=self.path + ".bak")
        pool, reactor = self.start()
        reactor.run_work()
        self.assertIsNotNone(pool.listening_port)
        reactor.run_work()
        self.successResultOf(pool.when_started())
        self.assertEqual(self.named(EventKind.LOAD_PEERS)[0].fields["status"], "recovered")
        self.assertEqual(len(pool.points), 3)
        self.assertTrue(pool.acl.banned_addr("198.51.100.1"))
        self.assertTrue(pool.acl.banned_addr("10.9.1.1"), "the head's bans stay")
        self.assertEqual(len(self.corrupt_files()), 1)


class MergeTests(SynchronousTestCase):
    """
    The merge rule: a peer or point the pool learnt while the file loaded
    keeps its live state; the file adds its trust, pin (when the live
    record has none), history and, for a peer whose metadata is still the
    initial one, its metadata.
    """

    def setUp(self) -> None:
        config = PoolConfig(maintenance_idle_time=None, network=NETWORK, data_dir=self.mktemp())
        reactor = MemoryReactorClock()
        reactor.rightNow = T0 + 100
        self.pool = Pool(config, CountersApp(), reactor=reactor, identity=identity(0))
        self.directory = self.pool.directory

    def content(self, peers: list[PeerInfo] | None = None, points: list[PointInfo] | None = None) -> PeersFileContent:
        return PeersFileContent(NETWORK, T0, peers or [], points or [], [], [])

    def test_point(self) -> None:
        live = self.pool.register_point(_point(1), trusted=True, source=TrustSource.CONFIG)
        self.directory.point_requested(live, T0 + 90)
        self.directory.point_running(live, _peer(1), T0 + 91)
        loaded = PointInfo(
            _point(1),
            trusted=True,
            expected_peer_id=_peer(2),
            last_failed_connection=T0 + 5,
            last_established_connection=(_peer(3), T0 + 10),
            last_disconnection=(_peer(3), T0 + 20),
            known_public=True,
            source_group="10.1",
            events=collections.deque([StateEvent("connection_established", T0 + 10, _peer(3))]),
        )
        applied = apply_content(self.pool, self.content(points=[loaded]))
        self.assertEqual((applied.points, applied.merged_points), (0, 1))
        info = self.pool.points.info(_point(1))
        self.assertIs(info, live, "the live record stays")
        assert info is not None
        self.assertEqual(info.state, PointState.RUNNING)
        self.assertEqual(info.current_peer_id, _peer(1))
        self.assertEqual(info.trust, TrustSource.CONFIG | TrustSource.API)
        self.assertEqual(info.expected_peer_id, _peer(2), "the file's pin where the live record has none")
        self.assertTrue(info.known_public)
        self.assertEqual(info.last_failed_connection, T0 + 5)
        self.assertEqual(info.last_established_connection, (_peer(1), T0 + 91), "the later one")
        self.assertEqual(info.last_disconnection, (_peer(3), T0 + 20))
        self.assertEqual(
            [(e.kind, e.timestamp) for e in info.events],
            [("connection_established", T0 + 10), ("outgoing_request", T0 + 90), ("connection_established", T0 + 91)],
        )
        self.assertIsNone(info.source_group, "the operator's point is not a learnt one")
        self.assertEqual(self.directory.index_errors(), [])

    def test_live_pin_wins(self) -> None:
        self.pool.register_point(_point(1), expected_peer_id=_peer(1))
        apply_content(self.pool, self.content(points=[PointInfo(_point(1), expected_peer_id=_peer(2))]))
        self.assertEqual(self.pool.points.info(_point(1)).expected_peer_id, _peer(1))  # type: ignore[union-attr]

    def test_learnt_point_with_a_history(self) -> None:
        """
        A point learnt meanwhile that the file knows connected is no longer
        counted against its source group.
        """
        self.directory.add_learnt_point(PointInfo(_point(1), source_group="10.7"), T0)
        self.assertEqual(self.directory.learnt_count("10.7"), 1)
        loaded = PointInfo(_point(1), last_established_connection=(_peer(3), T0), source_group="10.7")
        apply_content(self.pool, self.content(points=[loaded]))
        self.assertEqual(self.directory.learnt_count("10.7"), 0)
        self.assertEqual(self.directory.index_errors(), [])

    def test_peer_with_initial_metadata_takes_the_file_s(self) -> None:
        live = self.pool.register_peer(_peer(1))
        live_events = len(live.events)
        loaded = PeerInfo(
            _peer(1),
            created=T0 - 50,
            metadata={"good": "7", "bad": "1"},
            trusted=True,
            last_disconnection=(_point(1), T0 - 10),
            events=collections.deque([StateEvent("disconnection", T0 - 10, point=_point(1))]),
        )
        applied = apply_content(self.pool, self.content(peers=[loaded]))
        self.assertEqual((applied.peers, applied.merged_peers), (0, 1))
        info = self.pool.peers.info(_peer(1))
        self.assertIs(info, live)
        assert info is not None
        self.assertEqual(info.metadata, Counters(7, 1))
        self.assertEqual(info.created, T0 - 50)
        self.assertEqual(info.trust, TrustSource.API)
        self.assertEqual(info.last_disconnection, (_point(1), T0 - 10))
        self.assertEqual(len(info.events), live_events + 1)

    def test_peer_whose_metadata_changed_keeps_it(self) -> None:
        live = self.pool.register_peer(_peer(1))
        self.directory.set_peer_metadata(live, Counters(1, 0))
        loaded = PeerInfo(_peer(1), created=T0, metadata={"good": "7", "bad": "1"})
        apply_content(self.pool, self.content(peers=[loaded]))
        self.assertEqual(live.metadata, Counters(1, 0))

    def test_peer_metadata_the_application_refuses(self) -> None:
        live = self.pool.register_peer(_peer(1))
        loaded = PeerInfo(_peer(1), created=T0, metadata={"bad": "x"})
        applied = apply_content(self.pool, self.content(peers=[loaded]))
        self.assertEqual(live.metadata, Counters())
        self.assertEqual(len(applied.problems), 1)
        self.assertIn("the current metadata is kept", applied.problems[0].problem)

    def test_records_given_twice_merge_into_the_first(self) -> None:
        """
        A peer or point given twice in one file (the decoder skips such
        repeats; content built otherwise may have them) is added from its
        first record, and the later one is merged into it.
        """
        peers = [
            PeerInfo(_peer(1), created=T0, metadata={"good": "1", "bad": "0"}),
            PeerInfo(_peer(1), created=T0 - 9, metadata={"good": "7", "bad": "0"}, trusted=True),
        ]
        points = [PointInfo(_point(1)), PointInfo(_point(1), trusted=True, known_public=True)]
        applied = apply_content(self.pool, self.content(peers=peers, points=points))
        self.assertEqual((applied.peers, applied.merged_peers, applied.points, applied.merged_points), (1, 1, 1, 1))
        peer = self.pool.peers.info(_peer(1))
        self.assertIs(peer, peers[0])
        assert peer is not None
        self.assertEqual((peer.metadata, peer.created, peer.trusted), (Counters(1, 0), T0 - 9, True))
        point = self.pool.points.info(_point(1))
        self.assertIs(point, points[0])
        assert point is not None
        self.assertEqual((point.trusted, point.known_public), (True, True))
        self.assertEqual(self.directory.list_known_points(True, 5, None), [_point(1)])
        self.assertEqual(self.directory.index_errors(), [])

    def test_own_peer_id_skipped(self) -> None:
        """
        The pool's own peer id is not put in, nor its metadata decoded.
        """
        own = self.pool.identity.peer_id  # type: ignore[union-attr]
        peers = [PeerInfo(_peer(1), created=T0, metadata=NO_METADATA), PeerInfo(own, created=T0, metadata={"bad": "x"})]
        applied = apply_content(self.pool, self.content(peers=peers))
        self.assertEqual((applied.peers, applied.merged_peers, applied.problems), (1, 0, []))
        self.assertIsNone(self.pool.peers.info(own))

    def test_metadata_refused_for_new_and_known_peers(self) -> None:
        live = self.pool.register_peer(_peer(2))
        kept = live.metadata
        peers = [
            PeerInfo(_peer(1), created=T0, metadata={"bad": "x"}),
            PeerInfo(_peer(2), created=T0, metadata={"bad": "y"}),
            PeerInfo(_peer(3), created=T0, metadata={"good": "2", "bad": "1"}),
        ]
        applied = apply_content(self.pool, self.content(peers=peers))
        self.assertEqual(
            [(p.index, p.problem.split("; ")[1]) for p in applied.problems],
            [(0, "the initial metadata is used"), (1, "the current metadata is kept")],
        )
        self.assertEqual(self.pool.peers.info(_peer(1)).metadata, Counters())  # type: ignore[union-attr]
        self.assertIs(live.metadata, kept)
        self.assertEqual(self.pool.peers.info(_peer(3)).metadata, Counters(2, 1))  # type: ignore[union-attr]

    def test_peer_without_metadata_keeps_the_live_one(self) -> None:
        live = self.pool.register_peer(_peer(1))
        kept = live.metadata
        applied = apply_content(self.pool, self.content(peers=[PeerInfo(_peer(1), created=T0, metadata=NO_METADATA)]))
        self.assertEqual((applied.merged_peers, applied.problems), (1, []))
        self.assertIs(live.metadata, kept)

    def test_established_points_most_recent_first(self) -> None:
        """
        The points added that had an established connection, the
        C{expected_connections} most recent of them, most recent first
        (of equal times, the later record first), across slices.
        """
        config = PoolConfig(
            maintenance_idle_time=None, network=NETWORK, min_connections=1, expected_connections=3, data_dir="x"
        )
        pool = Pool(config, CountersApp(), reactor=MemoryReactorClock(), identity=identity(0))
        pool.register_point(_point(99))
        times = [7.0, 3.0, None, 9.0, 1.0, 9.0, None, 5.0, 8.0]
        points = [
            PointInfo(_point(i), last_established_connection=None if t is None else (_peer(i), T0 + t))
            for i, t in enumerate(times)
        ]
        points.append(PointInfo(_point(99), last_established_connection=(_peer(99), T0 + 99)))
        clock = Clock()
        applying = Deferred.fromCoroutine(
            apply_content_in_slices(pool, self.content(points=points), clock, slice_size=2)
        )
        while not applying.called:
            clock.advance(0)
        applied = self.successResultOf(applying)
        assert applied is not None
        self.assertEqual(applied.established, [_point(5), _point(3), _point(8)])

    def test_loaded_points_older_than_live_ones_keep_the_order(self) -> None:
        """
        Loaded points older than those seen meanwhile are placed without
        a sort of the table, and the orders stay right.
        """
        for i in range(5):
            live = self.pool.register_point(_point(100 + i))
            self.directory.point_requested(live, T0 + 90 + i)
            self.directory.point_running(live, _peer(i), T0 + 90 + i)
        loaded = [PointInfo(_point(i), last_disconnection=(_peer(1), T0 + (i * 7) % 50)) for i in range(50)]
        apply_content(self.pool, self.content(points=loaded))
        self.assertEqual(len(self.pool.points), 55)
        self.assertEqual(self.directory.index_errors(), [])


class LoadedEventsTests(_PoolCase):
    """
    A loaded peer keeps the file's events as plain values until it records
    one of its own.
    """

    EVENTS = [
        {"kind": "incoming_request", "timestamp": "2024-05-01T00:00:01.000Z", "addr": "::ffff:10.0.0.1", "port": 9732},
        {"kind": "connection_established", "timestamp": "2024-05-01T00:00:02.000Z", "addr": "10.0.0.1", "port": 9732},
        {"kind": "external_disconnection", "timestamp": "2024-05-01T00:00:03.000Z"},
    ]

    def load(self) -> Pool:
        self.write_file(head_first(document(peers=[peer_record(1, events=self.EVENTS)])))
        return self.make_pool()

    def test_events_read_as_state_events(self) -> None:
        pool = self.load()
        info = pool.peers.info(_peer(1))
        assert info is not None
        self.assertEqual(
            [(e.kind, e.timestamp, e.peer_id, e.point) for e in info.events],
            [
                ("accepting_request", T0 + 1, None, _point(1)),
                ("connection_established", T0 + 2, None, _point(1)),
                ("external_disconnection", T0 + 3, None, None),
            ],
        )
        self.assertTrue(all(type(e) is tuple for e in info.event_values()))
        # A collection stops tracking a tuple of untracked values (the
        # second one sees the outer tuple's items untracked by the first).
        gc.collect()
        gc.collect()
        self.assertFalse(gc.is_tracked(info.event_values()), "plain values: not tracked by the cyclic GC")

    def test_a_new_event_follows_the_loaded_ones(self) -> None:
        pool = self.load()
        info = pool.peers.info(_peer(1))
        assert info is not None
        pool.directory.peer_accepted(info, _point(2), T0 + 10)
        self.assertEqual(
            [e.kind for e in info.events],
            ["accepting_request", "connection_established", "external_disconnection", "accepting_request"],
        )
        self.assertEqual([type(e) for e in info.event_values()], [StateEvent] * 4)

    def test_saved_again_as_loaded(self) -> None:
        pool = self.load()
        self.successResultOf(pool.save_peers())
        with open(self.path) as f:
            saved = json.load(f)["peers"][0]["events"]
        expected = [dict(e, addr="::ffff:10.0.0.1") if "addr" in e else e for e in self.EVENTS]
        self.assertEqual(saved, expected)
