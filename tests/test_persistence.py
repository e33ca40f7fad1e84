# -*- test-case-name: tests.test_persistence -*-
"""
The peers file (L{p2pool.pool.persistence}): times and ids, the atomic writer,
the loader and every kind of damage it survives, and the pool's use of it
(load at start, checkpoints, save at stop and destroy, one save at a time),
on memory reactors.
"""

from __future__ import annotations

import errno
import gc
import io
import json
import os
import random
import re
import stat
from collections.abc import Callable
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from p2pool.admin.json_shapes import point_info_json
from p2pool.config import PoolConfig
from p2pool.core.addressing import PeerId, Point, PointSpec
from p2pool.core.states import (
    PeerInfo,
    PeerState,
    PointInfo,
    PointState,
    StateEvent,
    TrustSource,
    loaded_peer_info,
    loaded_point_info,
)
from p2pool.events import EventKind, PoolEvent
from p2pool.interfaces import BasePoolApplication
from p2pool.pool.persistence import (
    FORMAT,
    RESTART_DIAL_SPREAD,
    WRITE_BATCH,
    IncompatibleFile,
    PeersFileError,
    Snapshot,
    decode_document,
    format_time,
    read_peers_file,
    snapshot_pool,
    write_atomically,
    write_snapshot,
)
from p2pool.pool.persistence import decoder as decoder_module
from p2pool.pool.persistence.decoder import collector_paused
from p2pool.pool.persistence.document import PEER_ROW_SIZE, POINT_ROW_SIZE, RecordProblem
from p2pool.pool.persistence.encoder import metadata_texts, write_document
from p2pool.pool.persistence.scanner import scan_document
from p2pool.pool.service import Pool
from tests.helpers import identity

NETWORK = "test-net"
#: 2024-05-01T00:00:00Z
T0 = 1_714_521_600.0
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TEZOS_PEER_FIELDS = {
    "peer_id",
    "created",
    "trusted",
    "peer_metadata",
    "last_failed_connection",
    "last_rejected_connection",
    "last_established_connection",
    "last_disconnection",
    "events",
}


def _peer(i: int) -> PeerId:
    return PeerId(i.to_bytes(16, "big"))


def _point(i: int, port: int = 9732) -> Point:
    return Point(f"10.0.{i // 256}.{i % 256}", port)


class Counters:
    """
    Application peer metadata: two counters (Tezos keeps such counters as
    decimal strings in the file).
    """

    def __init__(self, good: int = 0, bad: int = 0) -> None:
        self.good = good
        self.bad = bad

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Counters) and (self.good, self.bad) == (other.good, other.bad)

    def __repr__(self) -> str:
        return f"Counters({self.good}, {self.bad})"


class CountersApp(BasePoolApplication):
    """
    An application whose peer metadata goes through its own encoder.
    """

    def initial_metadata(self) -> Any:
        return Counters()

    def encode_metadata(self, metadata: Any) -> Any:
        return {"good": str(metadata.good), "bad": str(metadata.bad)}

    def decode_metadata(self, value: Any) -> Any:
        if not isinstance(value, dict) or set(value) != {"good", "bad"}:
            raise ValueError(f"not counters: {value!r}")
        return Counters(int(value["good"]), int(value["bad"]))

    def score(self, metadata: Any) -> float:
        return float(metadata.good - metadata.bad)


def document(**fields: Any) -> dict[str, Any]:
    """
    A peers file document with no records, C{fields} replacing or adding
    top-level fields (None removes one).
    """
    doc: dict[str, Any] = {
        "format": FORMAT,
        "network": NETWORK,
        "saved_at": "2024-05-01T00:00:00.000Z",
        "peers": [],
        "points": [],
        "bans": {"ips": [], "peers": []},
    }
    for key, value in fields.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def _values(infos: list[Any]) -> list[tuple[Any, ...]]:
    """
    The field values of L{PeerInfo} or L{PointInfo} objects (which compare
    by identity).
    """
    return [attrs.astuple(info, recurse=False) for info in infos]


def encoded(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def peer_record(i: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"peer_id": str(_peer(i)), "created": "2024-05-01T00:00:00.000Z"}
    record.update(fields)
    return record


class _ThreadsReactor(MemoryReactorClock):
    """
    A memory reactor with a thread pool that runs work only when the test
    says so, to hold a save in its thread.
    """

    def __init__(self) -> None:
        super().__init__()
        self.work: list[tuple[Callable[..., None], Callable[..., Any], tuple[Any, ...]]] = []

    def getThreadPool(self) -> _ThreadsReactor:
        return self

    def callInThreadWithCallback(self, on_result: Callable[..., None], f: Callable[..., Any], *args: Any) -> None:
        self.work.append((on_result, f, args))

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        f(*args, **kw)

    def run_work(self) -> None:
        on_result, f, args = self.work.pop(0)
        try:
            result = f(*args)
        except Exception:
            on_result(False, Failure())
        else:
            on_result(True, result)


class _CountingClock(Clock):
    """
    A clock that counts the calls scheduled on it.
    """

    turns = 0

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        self.turns += 1
        return super().callLater(delay, f, *args, **kw)


class _PoolCase(SynchronousTestCase):
    """
    Pools on memory reactors sharing one data directory.
    """

    def setUp(self) -> None:
        self.data_dir = self.mktemp()
        self.path = os.path.join(self.data_dir, "peers.json")
        self.events: list[PoolEvent] = []

    def make_pool(self, app: Any = None, reactor: Any = None, start: bool = True, **config: Any) -> Pool:
        settings: dict[str, Any] = dict(
            listen=Point("127.0.0.2", 0),
            expected_proof_of_work=0,
            maintenance_idle_time=None,
            data_dir=self.data_dir,
            network=NETWORK,
        )
        settings.update(config)
        if reactor is None:
            reactor = MemoryReactorClock()
        reactor.rightNow = T0
        self.reactor = reactor
        pool = Pool(PoolConfig(**settings), app, reactor=reactor, identity=identity(0), log=self.events.append)
        if start:
            pool.startService()
            self.successResultOf(pool.when_started())
            self.addCleanup(lambda: pool.running and pool.stopService())
        return pool

    def named(self, event: EventKind) -> list[PoolEvent]:
        return [e for e in self.events if e.event == event]

    def write_file(self, content: Any, path: str | None = None) -> bytes:
        data = content if isinstance(content, bytes) else encoded(content)
        os.makedirs(self.data_dir, exist_ok=True)
        with open(path or self.path, "wb") as f:
            f.write(data)
        return data

    def read_bytes(self, path: str | None = None) -> bytes:
        with open(path or self.path, "rb") as f:
            return f.read()

    def read_json(self, path: str | None = None) -> Any:
        return json.loads(self.read_bytes(path))

    def corrupt_files(self) -> list[str]:
        return sorted(n for n in os.listdir(self.data_dir) if n.startswith("peers.json.corrupt-"))


# ---------------------------------------------------------------------------


class WriteAtomicallyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        self.path = os.path.join(self.directory, "sub", "peers.json")

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def test_generations(self) -> None:
        """
        The first write creates the file (and its directory) with mode
        0600; each later one keeps the file it replaces as C{.bak}; no
        temporary file is left.
        """
        self.assertEqual(write_atomically(self.path, b"one"), 3)
        self.assertEqual(self.read(self.path), b"one")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertFalse(os.path.exists(self.path + ".bak"))
        write_atomically(self.path, lambda out: out.write(b"two"))
        write_atomically(self.path, b"three")
        self.assertEqual((self.read(self.path), self.read(self.path + ".bak")), (b"three", b"two"))
        self.assertEqual(sorted(os.listdir(os.path.dirname(self.path))), ["peers.json", "peers.json.bak"])

    def test_without_backup(self) -> None:
        write_atomically(self.path, b"one")
        write_atomically(self.path, b"two", keep_backup=False)
        self.assertFalse(os.path.exists(self.path + ".bak"))

    def test_failure_leaves_both_generations(self) -> None:
        """
        When writing the new content fails, the file and its backup are
        as they were and the temporary file is gone.
        """
        write_atomically(self.path, b"one")
        write_atomically(self.path, b"two")

        def broken(out: Any) -> None:
            out.write(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")

        with self.assertRaises(OSError):
            write_atomically(self.path, broken)
        self.assertEqual((self.read(self.path), self.read(self.path + ".bak")), (b"two", b"one"))
        self.assertFalse(os.path.exists(self.path + ".tmp"))

    def test_copy_when_links_are_impossible(self) -> None:
        write_atomically(self.path, b"one")

        def no_links(source: str, target: str) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        self.patch(os, "link", no_links)
        write_atomically(self.path, b"two")
        self.assertEqual((self.read(self.path), self.read(self.path + ".bak")), (b"two", b"one"))

    def test_parent_is_a_file(self) -> None:
        os.makedirs(self.directory)
        blocker = os.path.join(self.directory, "sub")
        with open(blocker, "wb"):
            pass
        with self.assertRaises(OSError):
            write_atomically(self.path, b"x")


# ---------------------------------------------------------------------------


#: JSON values, with the text that separates metadata values in a batch.
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.sampled_from(["\x00", ", ", '"\x00"']),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4),
    max_leaves=12,
)


def _flat(stamps: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(value for stamp in stamps for value in (stamp or (None, None)))


def _columns(rows: list[tuple[Any, ...]], size: int) -> list[list[Any]]:
    """
    The C{size} columns of C{rows}, as a L{Snapshot} holds its records.
    """
    assert all(len(row) == size for row in rows)
    return [[row[k] for row in rows] for k in range(size)]


def _peer_columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return _columns([_flat_peer_row(row) for row in rows], PEER_ROW_SIZE)


def _point_columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return _columns([_flat_point_row(row) for row in rows], POINT_ROW_SIZE)


def _flat_peer_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """
    A peer row as these tests write it, each stamp C{(who, time)} or None,
    as the writer takes it: the stamps laid flat (L{PeerInfo.stamp_values}).
    """
    return (*row[:4], *_flat(row[4:8]), row[8])


def _flat_point_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """
    The same for a point row (L{PointInfo.stamp_values}).
    """
    return (*row[:5], *_flat(row[5:8]), row[8])


class CodecTests(SynchronousTestCase):
    """
    The encoder and the decoder on their own: a L{Snapshot} written as
    text reads back as the same records.
    """

    def test_round_trip(self) -> None:
        v6 = Point("2001:db8::7", 9732)
        events = (
            StateEvent("accepting_request", T0 + 0.125, point=_point(1)),
            StateEvent("connection_established", T0 + 0.25, point=_point(1)),
            StateEvent("request_rejected", T0 + 9.5),
        )
        peers = [
            (_peer(1), T0, False, '{"good": "5"}', None, None, (_point(1), T0 + 0.25), (_point(1), T0 + 60.5), events),
            (_peer(2), T0 + 1, True, "null", (v6, T0 + 2), (None, T0 + 3.001), None, None, ()),
        ]
        points = [
            (_point(1), False, None, True, None, None, (_peer(1), T0 + 0.25), (_peer(1), T0 + 60.5), None),
            (v6, True, _peer(2), False, T0 + 2, (_peer(2), T0 + 3.001), None, None, "2001:db8::/32"),
        ]
        snapshot = Snapshot(
            NETWORK,
            T0 + 61,
            _peer_columns(peers),
            _point_columns(points),
            ["10.0.0.0/8", "192.0.2.7"],
            [_peer(9)],
        )
        out = io.BytesIO()
        write_document(out, snapshot)
        self.assertEqual(
            (snapshot.peers, snapshot.points),
            ([[]] * PEER_ROW_SIZE, [[]] * POINT_ROW_SIZE),
            "the writer empties the snapshot",
        )
        content = decode_document(out.getvalue(), NETWORK)
        self.assertEqual(content.skipped, [])
        self.assertEqual((content.network, content.saved_at), (NETWORK, T0 + 61))
        self.assertEqual((content.banned_ips, content.banned_peers), (["10.0.0.0/8", "192.0.2.7"], [_peer(9)]))
        first, second = content.peers
        self.assertEqual(
            (first.peer_id, first.created, first.trusted, first.metadata), (_peer(1), T0, False, {"good": "5"})
        )
        self.assertEqual((first.last_established_connection, first.last_disconnection), (peers[0][6], peers[0][7]))
        self.assertEqual(tuple(first.events), events)
        self.assertEqual((second.trusted, second.metadata, second.events), (True, None, ()))
        self.assertEqual(
            (second.last_failed_connection, second.last_rejected_connection), ((v6, T0 + 2), (None, T0 + 3.001))
        )
        for info, row in zip(content.points, points):
            self.assertEqual(
                (
                    info.point,
                    info.trusted,
                    info.expected_peer_id,
                    info.known_public,
                    info.last_failed_connection,
                    info.last_rejected_connection,
                    info.last_established_connection,
                    info.last_disconnection,
                    info.source_group,
                ),
                row,
            )

    def test_batches(self) -> None:
        """
        Records written over several batches are one record per line,
        separated by commas.
        """
        count = 2 * WRITE_BATCH + 1
        rows = [(_point(i), False, None, False, T0 + i, None, None, None, None) for i in range(count)]
        out = io.BytesIO()
        write_document(out, Snapshot(NETWORK, T0, [], _point_columns(rows), [], []))
        lines = [line for line in out.getvalue().decode().splitlines() if line.startswith('{"point": ')]
        self.assertEqual(len(lines), count)
        self.assertTrue(all(line.endswith("},") for line in lines[:-1]) and lines[-1].endswith("}"))
        content = decode_document(out.getvalue(), NETWORK)
        self.assertEqual([i.last_failed_connection for i in content.points], [T0 + i for i in range(count)])

    def test_metadata_texts(self) -> None:
        """
        Metadata values are encoded together, each to its own compact
        ASCII text; one that is not JSON gets None, and the others their
        text all the same.
        """
        cycle: list[Any] = []
        cycle.append(cycle)
        fine: list[Any] = [None, {"a": [1, "\u00e9", 2.5, None, True]}, "x", [], {}]
        bad: list[Any] = [{"x": float("nan")}, [float("inf")], {1j}, cycle, object()]
        texts = ["null", '{"a": [1, "\\u00e9", 2.5, null, true]}', '"x"', "[]", "{}"]
        self.assertEqual(metadata_texts(fine), texts)
        self.assertEqual(metadata_texts(fine + bad + fine), texts + [None] * len(bad) + texts)
        self.assertEqual(metadata_texts([]), [])

    def test_metadata_holding_the_boundary(self) -> None:
        """
        A value whose text holds what separates the values of a batch
        still gets its own text.
        """
        boundary = "\x00"
        values: list[Any] = [boundary, [1, boundary, 2], {boundary: boundary}, ", " + boundary, [boundary, boundary], 3]
        self.assertEqual(metadata_texts(values), [json.dumps(v) for v in values])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(_json_values, max_size=8))
    def test_metadata_texts_as_one_at_a_time(self, values: list[Any]) -> None:
        expected = []
        for value in values:
            try:
                expected.append(json.dumps(value, allow_nan=False))
            except ValueError:
                expected.append(None)
        self.assertEqual(metadata_texts(values), expected)


#: JSON values that compare equal to themselves once read back (no NaN).
_plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=8,
)
_documents = st.dictionaries(
    st.sampled_from(["peers", "points", "bans", "format", "p"]),
    _plain_json | st.lists(_plain_json, max_size=4),
    max_size=5,
)


_times = st.integers(0, 4_102_444_800_000).map(lambda ms: ms / 1000)
_points = st.sampled_from([_point(1), _point(2, 1), Point("2001:db8::7", 9732), Point("::1", 0)])
#: Event kinds, and those a file may hold (any string, as loaded).
_kinds = st.sampled_from(["accepting_request", "connection_established", "disconnection"]) | st.text(max_size=6)
_state_events = st.builds(StateEvent, _kinds, _times, st.none() | st.sampled_from([_peer(1)]), st.none() | _points)
_packed_events = st.tuples(_kinds, _times, _points).map(lambda e: (e[0], e[1], e[2].ip, e[2].port)) | st.tuples(
    _kinds, _times, st.none(), st.none()
)
_peer_rows = st.tuples(
    st.integers(0, 2**128 - 1).map(lambda i: PeerId(i.to_bytes(16, "big"))),
    _times,
    st.booleans(),
    _plain_json.map(json.dumps),
    *[st.none() | st.tuples(st.none() | _points, _times)] * 4,
    st.lists(_state_events, max_size=3).map(tuple) | st.lists(_packed_events, max_size=3).map(tuple),
)
_point_rows = st.tuples(
    _points,
    st.booleans(),
    st.none() | st.sampled_from([_peer(3)]),
    st.booleans(),
    st.none() | _times,
    *[st.none() | st.tuples(st.sampled_from([_peer(1), _peer(2)]), _times)] * 3,
    st.none() | st.text(min_size=1, max_size=5),
)


def _address_json(point: Point) -> dict[str, Any]:
    return {"addr": point.ip if point.is_ipv6 else "::ffff:" + point.ip, "port": point.port}


def _peer_row_json(row: tuple[Any, ...]) -> str:
    """
    A peer row as C{json.dumps} writes it: what the writer must write.
    """
    peer_id, created, trusted, metadata, failed, rejected, established, disconnection, events = row
    record: dict[str, Any] = {
        "peer_id": str(peer_id),
        "created": format_time(created),
        "trusted": trusted,
        "peer_metadata": json.loads(metadata),
    }
    names = ("last_failed_connection", "last_rejected_connection", "last_established_connection", "last_disconnection")
    for name, stamp in zip(names, (failed, rejected, established, disconnection)):
        if stamp is not None:
            record[name] = [None if stamp[0] is None else _address_json(stamp[0]), format_time(stamp[1])]
    record["events"] = []
    for event in events:
        if isinstance(event, tuple):
            kind, t, ip, port = event
            point = None if ip is None else Point(ip, port)
        else:
            kind, t, point = event.kind, event.timestamp, event.point
        kind = "incoming_request" if kind == "accepting_request" else kind
        item = {"kind": kind, "timestamp": format_time(t)}
        record["events"].append(item if point is None else {**item, **_address_json(point)})
    return json.dumps(record)


def _point_row_json(row: tuple[Any, ...]) -> str:
    """
    A point row as C{json.dumps} writes it: what the writer must write.
    """
    point, trusted, expected, known_public, failed, rejected, established, disconnection, group = row
    record: dict[str, Any] = {"point": str(point), "trusted": trusted, "known_public": known_public}
    if expected is not None:
        record["expected_peer_id"] = str(expected)
    if failed is not None:
        record["last_failed_connection"] = format_time(failed)
    names = ("last_rejected_connection", "last_established_connection", "last_disconnection")
    for name, stamp in zip(names, (rejected, established, disconnection)):
        if stamp is not None:
            record[name] = [str(stamp[0]), format_time(stamp[1])]
    if group is not None:
        record["source_group"] = group
    return json.dumps(record)


class WriterTextTests(SynchronousTestCase):
    """
    The writer puts each record's text together from pieces: the text is
    what C{json.dumps} writes for the record, one record per line.
    """

    @settings(max_examples=200, deadline=None)
    @given(st.lists(_peer_rows, max_size=4), st.lists(_point_rows, max_size=4))
    def test_records_as_json_dumps_writes_them(self, peers: list[Any], points: list[Any]) -> None:
        expected_peers = [_peer_row_json(row) for row in peers]
        expected_points = [_point_row_json(row) for row in points]
        out = io.BytesIO()
        write_document(
            out,
            Snapshot(NETWORK, T0, _peer_columns(peers), _point_columns(points), [], []),
        )
        text = out.getvalue().decode("ascii")
        body = text[text.index('"peers": [\n') :]
        self.assertEqual(
            body,
            '"peers": [\n%s\n],\n"points": [\n%s\n]}\n' % (",\n".join(expected_peers), ",\n".join(expected_points)),
        )
        self.assertEqual(json.loads(text)["peers"], [json.loads(line) for line in expected_peers])

    def test_batches_as_json_dumps_writes_them(self) -> None:
        """
        Records over several batches: the pieces remembered in one batch
        are forgotten in the next, and the text is the same.
        """
        rng = random.Random(5)
        peers = []
        for i in range(2 * WRITE_BATCH + 3):
            t = T0 + rng.randrange(10**6) / 1000
            point = _point(i % 300)
            events = (StateEvent("accepting_request", t, point=point), ("disconnection", t + 1.5, point.ip, point.port))
            peers.append((_peer(i), t, i % 2 == 0, "null", None, None, (point, t), (point, t + 1.5), events))
        points = [(_point(i), False, None, True, None, None, (_peer(i), T0 + i), None, "g") for i in range(2500)]
        out = io.BytesIO()
        write_document(
            out,
            Snapshot(NETWORK, T0, _peer_columns(peers), _point_columns(points), [], []),
        )
        lines = out.getvalue().decode("ascii").splitlines()
        records = [
            line.removesuffix(",") for line in lines if line.startswith("{") and not line.startswith('{"format"')
        ]
        self.assertEqual(records, [_peer_row_json(r) for r in peers] + [_point_row_json(r) for r in points])


def _scan(text: str) -> tuple[Any, dict[str, list[Any]]]:
    streamed: dict[str, list[Any]] = {}

    def section(name: str, members: dict[str, Any]) -> Callable[[int, Any], None]:
        records = streamed[name] = []
        return lambda index, value: records.append(value)

    scan = scan_document(text, ("peers", "points"), section)
    return scan, streamed


class ScannerTests(SynchronousTestCase):
    """
    L{scan_document} reads what C{json.loads} reads, and refuses what it
    refuses, with its message.
    """

    @settings(max_examples=200, deadline=None)
    @given(_documents, st.sampled_from([None, 0, 2]))
    def test_as_json_loads(self, doc: dict[str, Any], indent: int | None) -> None:
        text = json.dumps(doc, indent=indent)
        scan, streamed = _scan(text)
        self.assertTrue(scan.is_object)
        expected = json.loads(text)
        for name in ("peers", "points"):
            if isinstance(expected.get(name), list):
                self.assertEqual(streamed[name], expected.pop(name))
                self.assertNotIn(name, scan.members)
        self.assertEqual(scan.members, expected)

    @settings(max_examples=300, deadline=None)
    @given(_documents, st.sampled_from([None, 0]), st.data())
    def test_damage_as_json_loads(self, doc: dict[str, Any], indent: int | None, data: st.DataObject) -> None:
        """
        Damage anywhere, also next to the separator the writer puts
        between records (C{",\\n{"}, which indent 0 writes too), is refused
        as C{json.loads} refuses it.
        """
        text = json.dumps(doc, indent=indent)
        cut = data.draw(st.integers(0, len(text)))
        insert = data.draw(st.sampled_from(["", ",", "]", "}", "x", " ", '"', ",\n{", "\n"]))
        damaged = text[:cut] + insert + text[cut + 1 :]
        try:
            expected = json.loads(damaged)
        except ValueError as e:
            with self.assertRaises(ValueError) as caught:
                _scan(damaged)
            self.assertEqual(str(caught.exception), str(e))
            return
        scan, _ = _scan(damaged)
        self.assertEqual(scan.is_object, isinstance(expected, dict))

    def test_records_after_the_writers_separator(self) -> None:
        """
        Records one per line as the writer puts them, and the same records
        with other whitespace around the commas, read as C{json.loads}
        reads them.
        """
        for body in (
            '{"a": 1},\n{"b": 2},\n{"c": [3]}',
            '{"a": 1} ,\n {"b": 2},\n\n{"c": [3]}',
            '{"a": 1},{"b": 2},{"c": [3]}',
        ):
            text = '{"peers": [\n%s\n], "x": 1}' % body
            scan, streamed = _scan(text)
            self.assertEqual(streamed["peers"], json.loads(text)["peers"], body)
            self.assertEqual(scan.members, {"x": 1})
        for damaged in (
            '{"peers": [{"a": 1},\n{]}',
            '{"peers": [{"a": 1},\n{"b": 2},\n]}',
            '{"peers": [{"a": 1},\n{"b"',
        ):
            with self.assertRaises(ValueError) as caught:
                _scan(damaged)
            with self.assertRaises(ValueError) as expected:
                json.loads(damaged)
            self.assertEqual(str(caught.exception), str(expected.exception), damaged)

    def test_not_an_object(self) -> None:
        for text, value in (("[1, 2]", [1, 2]), (' "peers" ', "peers"), ("null", None), ("3", 3)):
            scan, streamed = _scan(text)
            self.assertEqual((scan.is_object, scan.value, scan.members, streamed), (False, value, {}, {}))


class DecodeTests(SynchronousTestCase):
    """
    L{decode_document}: what makes a whole file unusable, and what only
    skips one record.
    """

    def decode(self, doc: Any) -> Any:
        return decode_document(encoded(doc), NETWORK)

    def test_whole_file_damage(self) -> None:
        good = encoded(document(peers=[peer_record(1)]))
        cases: dict[str, bytes] = {
            "empty": b"",
            "blank": b"  \n",
            "blank, every kind": b" \t\n\r\x0b\x0c",
            "not JSON": b"garbage\x00",
            "truncated": good[: len(good) // 2],
            "not UTF-8": b'{"format": 1, "network": "\xff"}',
            "an array": b"[1, 2]",
            "a string": b'"peers"',
            "no format": encoded(document(format=None)),
            "format as text": encoded(document(format="1")),
            "format as boolean": encoded(document(format=True)),
            "format zero": encoded(document(format=0)),
            "no network": encoded(document(network=None)),
            "network as number": encoded(document(network=5)),
            "peers an object": encoded(document(peers={"a": 1})),
            "points a string": encoded(document(points="none")),
            "bans an array": encoded(document(bans=[])),
            "bans.ips a string": encoded(document(bans={"ips": "10.0.0.1"})),
            "bans.peers a number": encoded(document(bans={"peers": 3})),
            "saved_at not a time": encoded(document(saved_at="yesterday")),
        }
        for name, data in cases.items():
            with self.assertRaises(PeersFileError, msg=name) as caught:
                decode_document(data, NETWORK)
            self.assertTrue(str(caught.exception), name)
        with self.assertRaises(PeersFileError) as caught:
            decode_document(encoded(document(peers="x")), NETWORK)
        self.assertIn("'peers' must be an array", str(caught.exception))

    def test_incompatible(self) -> None:
        with self.assertRaises(IncompatibleFile) as caught:
            self.decode(document(network="other-net"))
        self.assertEqual(caught.exception.reason, "network")
        self.assertIn("'other-net'", str(caught.exception))
        # A newer format is recognised before anything else is checked:
        # it may have changed everything else.
        with self.assertRaises(IncompatibleFile) as caught:
            self.decode({"format": FORMAT + 1, "peers": "whatever"})
        self.assertEqual(caught.exception.reason, "format")
        self.assertIn(f"format {FORMAT + 1}", str(caught.exception))

    def test_any_layout_reads_as_json_does(self) -> None:
        """
        Any layout of the same JSON reads the same, and a repeated member
        is read as C{json.loads} reads it (the last one wins).
        """
        records = [peer_record(1), {"peer_id": 5}, peer_record(2)]
        points = [{"point": "10.0.0.1:9732"}, {"point": "nowhere"}]
        expected = self.decode(document(peers=records, points=points))
        self.assertEqual([p.peer_id for p in expected.peers], [_peer(1), _peer(2)])
        self.assertEqual([(p.section, p.index) for p in expected.skipped], [("peers", 1), ("points", 1)])
        peers_text, points_text = json.dumps(records), json.dumps(points)
        layouts = {
            "records first": '{"points": %s, "peers": %s, "format": 1, "network": "%s"}'
            % (points_text, peers_text, NETWORK),
            "no spaces": json.dumps(document(peers=records, points=points), separators=(",", ":")),
            "indented": json.dumps(document(peers=records, points=points), indent=2),
            "escaped name": '{"format": 1, "network": "%s", "p\\u0065ers": %s, "points": %s}'
            % (NETWORK, peers_text, points_text),
            "repeated": '{"format": 1, "network": "%s", "peers": [7, 8], "peers": %s, "points": %s}'
            % (NETWORK, peers_text, points_text),
        }
        for name, text in layouts.items():
            content = decode_document(text.encode(), NETWORK)
            self.assertEqual(_values(content.peers), _values(expected.peers), name)
            self.assertEqual(_values(content.points), _values(expected.points), name)
            self.assertEqual(content.skipped, expected.skipped, name)

    def test_damage_after_records_is_reported_as_json_reports_it(self) -> None:
        """
        Damage after good records makes the whole file unusable, with the
        message C{json.loads} gives; a newer format or another network in a
        damaged file is damage, not a refusal.
        """
        good = encoded(document(peers=[peer_record(1), peer_record(2)]))
        cases = {
            "truncated in a record": good[: good.index(b"created", 60)],
            "trailing comma": good.replace(b"}]", b"},]", 1),
            "extra data": good + b" {}",
            "newer and truncated": encoded(document(format=FORMAT + 1, peers=[peer_record(1)]))[:-3],
            "other network and truncated": encoded(document(network="other-net", peers=[peer_record(1)]))[:-3],
        }
        for name, data in cases.items():
            try:
                json.loads(data)
            except ValueError as e:
                json_error = str(e)
            else:
                self.fail(f"{name}: valid JSON")
            with self.assertRaises(PeersFileError, msg=name) as caught:
                decode_document(data, NETWORK)
            self.assertEqual(str(caught.exception), f"not JSON (truncated or damaged): {json_error}", name)

    def test_records_beyond_the_limits_are_not_built(self) -> None:
        """
        With limits, a section's records beyond its limit are parsed but
        not built (a bad one there is not even reported), except trusted
        ones; they are counted by section.
        """
        peers = [peer_record(i) for i in range(6)] + [5, peer_record(6, trusted=True)]
        points = [{"point": str(_point(i)), "trusted": i == 8} for i in range(10)]
        content = decode_document(encoded(document(peers=peers, points=points)), NETWORK, {"peers": 3, "points": 4})
        self.assertEqual([p.peer_id for p in content.peers], [_peer(0), _peer(1), _peer(2), _peer(6)])
        self.assertEqual([p.point for p in content.points], [_point(i) for i in (0, 1, 2, 3, 8)])
        self.assertEqual(content.left_out, {"peers": 4, "points": 5})
        self.assertEqual(content.skipped, [])
        unlimited = decode_document(encoded(document(peers=peers, points=points)), NETWORK, {"points": 10})
        self.assertEqual((len(unlimited.peers), len(unlimited.points), unlimited.left_out), (7, 10, {}))

    def test_refused_file_builds_no_records(self) -> None:
        """
        Once the header says the file is refused, the records after it
        are checked as JSON but not built.
        """
        doc = document(network="other-net", peers=[peer_record(1), 7])
        with self.assertRaises(IncompatibleFile):
            decode_document(encoded(doc), NETWORK)
        text = encoded(document(network="other-net", peers=[peer_record(1)]))
        with self.assertRaises(PeersFileError, msg="damage after the records is still damage"):
            decode_document(text[:-1] + b",}", NETWORK)

    def test_missing_sections_are_empty(self) -> None:
        content = self.decode({"format": 1, "network": NETWORK})
        self.assertEqual((content.peers, content.points, content.banned_ips, content.banned_peers), ([], [], [], []))
        self.assertIsNone(content.saved_at)

    def test_minimal_records_take_defaults(self) -> None:
        content = self.decode(document(peers=[peer_record(1)], points=[{"point": "10.0.0.1:9732"}]))
        [peer] = content.peers
        self.assertEqual((peer.peer_id, peer.created, peer.trusted), (_peer(1), T0, False))
        self.assertEqual(
            (peer.last_established_connection, peer.events, peer.state), (None, (), PeerState.DISCONNECTED)
        )
        [point] = content.points
        self.assertEqual(point.point, Point("10.0.0.1", 9732))
        self.assertEqual(
            (point.trusted, point.known_public, point.expected_peer_id, point.last_seen), (False, False, None, None)
        )
        # Files written before source groups existed: a point of the operator's.
        self.assertIsNone(point.source_group)

    def test_bad_source_group_skips_the_record(self) -> None:
        """
        A C{source_group} that is not a short non-empty string makes its
        point record skipped, with the field named.
        """
        points = [
            {"point": "10.0.0.1:9732", "source_group": 7},
            {"point": "10.0.0.2:9732", "source_group": ""},
            {"point": "10.0.0.3:9732", "source_group": "x" * 301},
            {"point": "10.0.0.4:9732", "source_group": "10.7.0.0/16"},
        ]
        content = self.decode(document(points=points))
        self.assertEqual([p.point for p in content.points], [Point("10.0.0.4", 9732)])
        self.assertEqual(content.points[0].source_group, "10.7.0.0/16")
        self.assertEqual([p.index for p in content.skipped], [0, 1, 2])
        details = [p.problem for p in content.skipped]
        self.assertIn("source_group: expected a string of 1 to 300 characters, got a number", details[0])
        self.assertIn("got 301 characters", details[2])

    def test_unknown_fields_are_ignored(self) -> None:
        """
        Unknown fields anywhere are ignored, including ones that name
        state a file must not carry (a point's state, its back-off).
        """
        doc = document(
            comment="written by hand",
            lowest_compatible=1,
            peers=[
                peer_record(
                    1, score=9, state="running", events=[{"kind": "disconnection", "timestamp": 1714521600, "extra": 1}]
                )
            ],
            points=[{"point": "10.0.0.1:9732", "state": "running", "reconnection_delay": 5, "p2p_peer_id": "x"}],
            bans={"ips": [], "peers": [], "greylist": ["10.0.0.9"]},
        )
        content = self.decode(doc)
        self.assertEqual(content.skipped, [])
        self.assertEqual(content.peers[0].state, PeerState.DISCONNECTED)
        self.assertEqual([e.kind for e in content.peers[0].events], ["disconnection"])
        point = content.points[0]
        self.assertEqual(
            (point.state, point.reconnection_delay, point.current_peer_id), (PointState.DISCONNECTED, None, None)
        )

    def test_tezos_forms(self) -> None:
        """
        A peer as Tezos writes it: IPv4-mapped addresses, C{-00:00}
        offsets, an address without a port, C{incoming_request} events.
        """
        record = {
            "peer_id": str(_peer(3)),
            "created": "2024-05-01T00:00:00.499-00:00",
            "peer_metadata": {"responses": "3"},
            "last_established_connection": [
                {"addr": "::ffff:127.0.0.1", "port": 19732},
                "2024-05-01T00:00:01.000-00:00",
            ],
            "last_rejected_connection": [{"addr": "::ffff:127.0.0.9"}, 1714521602],
            "events": [
                {
                    "kind": "incoming_request",
                    "timestamp": "2024-05-01T00:00:00.900-00:00",
                    "addr": "::ffff:127.0.0.1",
                    "port": 19732,
                },
                {
                    "kind": "connection_established",
                    "timestamp": "2024-05-01T00:00:01.000-00:00",
                    "addr": "::ffff:127.0.0.1",
                },
            ],
        }
        [peer] = self.decode(document(peers=[record])).peers
        self.assertEqual(peer.created, T0 + 0.499)
        self.assertEqual(peer.last_established_connection, (Point("127.0.0.1", 19732), T0 + 1))
        self.assertEqual(peer.last_rejected_connection, (None, T0 + 2))
        self.assertEqual(
            [(e.kind, e.point) for e in peer.events],
            [("accepting_request", Point("127.0.0.1", 19732)), ("connection_established", None)],
        )
        self.assertEqual(peer.metadata, {"responses": "3"}, "decoded later, by the application")

    def test_events_keep_the_latest_hundred(self) -> None:
        events = [{"kind": "disconnection", "timestamp": 1714521600 + i} for i in range(150)]
        [peer] = self.decode(document(peers=[peer_record(1, events=events)])).peers
        self.assertEqual(len(peer.events), 100)
        self.assertEqual(peer.events[0].timestamp, T0 + 50)

    def test_problems_listed_up_to_a_bound(self) -> None:
        """
        A section's first L{decoder_module.MAX_LISTED_PROBLEMS} problems
        are listed, the others counted: a file of millions of bad records
        does not hold a problem for each.
        """
        bound = decoder_module.MAX_LISTED_PROBLEMS
        data = encoded(document(peers=[5] * (bound + 7) + [peer_record(1)], points=[5, 5]))
        for typed in (True, False):
            content = decode_document(data, NETWORK, typed=typed)
            self.assertEqual([p.peer_id for p in content.peers], [_peer(1)])
            self.assertEqual(len(content.skipped), bound + 2)
            self.assertEqual(
                content.skipped[bound - 1], RecordProblem("peers", bound - 1, "expected an object, got a number")
            )
            self.assertEqual(content.unlisted, 7)

    def test_bad_records_are_skipped(self) -> None:
        """
        Each bad record is left out with its section, index and problem;
        the good ones around it are loaded.
        """
        t = "2024-05-01T00:00:00.000Z"
        peers = [
            peer_record(1),
            5,
            peer_record(2, peer_id="idnotapeer"),
            {"created": t},
            {"peer_id": str(_peer(3))},
            peer_record(4, created="noon"),
            peer_record(5, trusted="yes"),
            peer_record(6, last_established_connection="10.0.0.1:9732"),
            peer_record(7, last_disconnection=[{"addr": "::ffff:10.0.0.1", "port": 1}, t, "extra"]),
            peer_record(8, last_failed_connection=[{"addr": 5, "port": 1}, t]),
            peer_record(9, last_failed_connection=[{"addr": "::ffff:10.0.0.1", "port": "80"}, t]),
            peer_record(10, last_failed_connection=[{"addr": "nowhere", "port": 80}, t]),
            peer_record(11, last_failed_connection=[{"addr": "::ffff:10.0.0.1", "port": 70000}, t]),
            peer_record(12, events="none"),
            peer_record(13, events=[{"kind": "disconnection", "timestamp": t}, 7]),
            peer_record(14, events=[{"kind": 5, "timestamp": t}]),
            peer_record(15, events=[{"kind": "disconnection", "timestamp": "later"}]),
            peer_record(16, events=[{"kind": "disconnection", "timestamp": t, "addr": "x", "port": 1}]),
            peer_record(17, last_established_connection=[{"addr": "::ffff:10.0.0.1", "port": 9732}, t]),
        ]
        points = [
            {"point": "10.0.0.1:9732"},
            "10.0.0.2:9732",
            {"point": "nope"},
            {"point": 5},
            {},
            {"point": "10.0.0.3:9732", "expected_peer_id": "idbad"},
            {"point": "10.0.0.4:9732", "trusted": 1},
            {"point": "10.0.0.5:9732", "known_public": "true"},
            {"point": "10.0.0.6:9732", "last_failed_connection": "x"},
            {"point": "10.0.0.7:9732", "last_established_connection": ["idbad", t]},
            {"point": "10.0.0.8:9732", "last_disconnection": [str(_peer(1))]},
            {"point": "[::1]:9732", "trusted": True},
        ]
        bans = {
            "ips": ["10.0.0.0/8", "nope", 5, "10.0.0.1/8", "2001:db8::/32"],
            "peers": [str(_peer(40)), "idbad", 7],
            "peers_by_ip": [
                {"ip": "::ffff:10.0.0.9", "peer_id": str(_peer(41))},
                {"ip": "10.0.0.0/8", "peer_id": str(_peer(41))},
                {"ip": "10.0.0.9", "peer_id": "idbad"},
                [],
            ],
        }
        content = self.decode(document(peers=peers, points=points, bans=bans))
        self.assertEqual([p.peer_id for p in content.peers], [_peer(1), _peer(17)])
        self.assertEqual(content.peers[1].last_established_connection, (Point("10.0.0.1", 9732), T0))
        self.assertEqual([p.point for p in content.points], [Point("10.0.0.1", 9732), Point("::1", 9732)])
        self.assertEqual(content.banned_ips, ["10.0.0.0/8", "2001:db8::/32"])
        self.assertEqual(content.banned_peers, [_peer(40)])
        self.assertEqual(content.peer_bans_by_ip, [("10.0.0.9", _peer(41))])
        problems = {(p.section, p.index): p.problem for p in content.skipped}
        expected = {
            ("peers", 1): "expected an object, got a number",
            ("peers", 2): "peer_id: malformed peer id",
            ("peers", 3): "peer_id: missing",
            ("peers", 4): "created: missing",
            ("peers", 5): "created: not an RFC 3339 time",
            ("peers", 6): "trusted: expected a boolean, got a string",
            ("peers", 7): "last_established_connection: expected [address, time], got a string",
            ("peers", 8): "last_disconnection: expected [address, time]",
            ("peers", 9): "last_failed_connection: addr: expected a string, got a number",
            ("peers", 10): "last_failed_connection: port: expected an integer, got a string",
            ("peers", 11): "last_failed_connection: not an IP address",
            ("peers", 12): "last_failed_connection: port must be an integer 0-65535",
            ("peers", 13): "events: expected an array, got a string",
            ("peers", 14): "events[1]: expected an object, got a number",
            ("peers", 15): "events[0]: kind: expected a string, got a number",
            ("peers", 16): "events[0]: timestamp: not an RFC 3339 time",
            ("peers", 17): "events[0]: address: not an IP address",
            ("points", 1): "expected an object, got a string",
            ("points", 2): "point: malformed point",
            ("points", 3): "point: expected a string like '1.2.3.4:9732', got a number",
            ("points", 4): "point: missing",
            ("points", 5): "expected_peer_id: malformed peer id",
            ("points", 6): "trusted: expected a boolean, got a number",
            ("points", 7): "known_public: expected a boolean, got a string",
            ("points", 8): "last_failed_connection: not an RFC 3339 time",
            ("points", 9): "last_established_connection: malformed peer id",
            ("points", 10): "last_disconnection: expected [peer_id, time], got an array",
            ("bans.ips", 1): "not an IP address",
            ("bans.ips", 2): "expected an address or CIDR range, got a number",
            ("bans.ips", 3): "not an IP address or CIDR range",
            ("bans.peers", 1): "peer id: malformed peer id",
            ("bans.peers", 2): "peer id: a peer id is a string, not a number",
            ("bans.peers_by_ip", 1): "ip: expected an address",
            ("bans.peers_by_ip", 2): "peer_id: malformed peer id",
            ("bans.peers_by_ip", 3): "expected an object, got an array",
        }
        self.assertEqual(sorted(problems), sorted(expected))
        for key, fragment in expected.items():
            self.assertIn(fragment, problems[key], key)
        sections = ("peers", "points", "bans.ips", "bans.peers", "bans.peers_by_ip")
        in_file_order = sorted(expected, key=lambda k: (sections.index(k[0]), k[1]))
        self.assertEqual([(p.section, p.index) for p in content.skipped], in_file_order)


# ---------------------------------------------------------------------------


class CollectorPauseTests(SynchronousTestCase):
    """
    A decode pauses CPython's cyclic collector while it builds records
    (L{collector_paused}) and puts back exactly the state it found.
    """

    def setUp(self) -> None:
        self.addCleanup(gc.enable if gc.isenabled() else gc.disable)
        passes: list[int] = []

        def count(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                passes.append(info["generation"])

        gc.callbacks.append(count)
        self.addCleanup(gc.callbacks.remove, count)
        self.passes = passes

    def test_restored_after_a_decode(self) -> None:
        good = encoded(document(peers=[peer_record(1), peer_record(2)], points=[{"point": "10.0.0.1:9732"}]))
        damaged = {
            "truncated": good[: len(good) // 2],
            "a bad record": encoded(document(peers=[peer_record(1, created="soon")])),
            "refused": encoded(document(network="other-net", peers=[peer_record(1)])),
        }
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            self.assertEqual(len(decode_document(good, NETWORK).peers), 2)
            self.assertEqual(gc.isenabled(), enabled)
            for name, data in damaged.items():
                try:
                    decode_document(data, NETWORK)
                except (PeersFileError, IncompatibleFile):
                    pass
                self.assertEqual(gc.isenabled(), enabled, f"{name}, collector enabled before: {enabled}")

    def test_paused_while_records_are_built(self) -> None:
        """
        The collector is paused while the records are built, whatever the
        application's setting.
        """
        for typed, builder in ((True, "typed_peer"), (False, "peer")):
            seen: list[bool] = []
            original = getattr(decoder_module._Decoder, builder)

            def peer(decoder: Any, record: Any, original: Any = original, seen: list[bool] = seen) -> Any:
                seen.append(gc.isenabled())
                return original(decoder, record)

            self.patch(decoder_module._Decoder, builder, peer)
            gc.enable()
            decode_document(encoded(document(peers=[peer_record(1), peer_record(2)])), NETWORK, typed=typed)
            self.assertEqual(seen, [False, False], builder)
            self.assertTrue(gc.isenabled())

    def test_pauses_overlap(self) -> None:
        """
        Pauses opened at once (by several threads) end in any order; the
        collector runs again after the last.
        """
        gc.enable()
        first, second = collector_paused(), collector_paused()
        first.__enter__()
        second.__enter__()
        self.assertFalse(gc.isenabled())
        first.__exit__(None, None, None)
        self.assertFalse(gc.isenabled())
        second.__exit__(None, None, None)
        self.assertTrue(gc.isenabled())
        with self.assertRaises(KeyError):
            with collector_paused():
                raise KeyError("inside")
        self.assertTrue(gc.isenabled())

    def test_settled_after_a_large_decode(self) -> None:
        """
        A decode leaving more than L{SETTLE_ABOVE} new objects makes one
        full pass; a smaller one none, nor one while the application has
        the collector off.
        """
        gc.enable()
        data = encoded(document(peers=[peer_record(i) for i in range(50)]))
        gc.collect()
        self.passes.clear()
        decode_document(data, NETWORK)
        self.assertNotIn(2, self.passes)
        self.patch(decoder_module, "SETTLE_ABOVE", 10)
        gc.collect()
        self.passes.clear()
        decode_document(data, NETWORK)
        self.assertEqual(self.passes.count(2), 1)
        # An application that turned the collector off gets no pass.
        gc.disable()
        self.passes.clear()
        decode_document(data, NETWORK)
        self.assertEqual(self.passes, [])
        self.assertFalse(gc.isenabled())

    def test_not_settled_for_the_rest_of_the_process(self) -> None:
        """
        Objects the rest of the process left in the youngest generation do
        not count: a small decode makes no full pass however many there are.
        """
        gc.enable()
        data = encoded(document(peers=[peer_record(0)]))
        self.patch(decoder_module, "SETTLE_ABOVE", 200)
        gc.collect()
        others = [[i] for i in range(300)]
        self.assertGreater(gc.get_count()[0], 200)
        self.passes.clear()
        decode_document(data, NETWORK)
        self.assertNotIn(2, self.passes)
        self.assertEqual(len(others), 300)


class LoadedRecordTests(SynchronousTestCase):
    """
    L{loaded_peer_info} and L{loaded_point_info} build what the
    constructors build from the same values.
    """

    stamps = st.none() | st.tuples(st.sampled_from([_point(1), _point(2)]), st.floats(0, 2e9))

    @given(
        st.integers(0, 2**64),
        st.floats(0, 2e9),
        st.none() | st.dictionaries(st.text(max_size=3), st.text(max_size=3)),
        st.booleans(),
        st.tuples(stamps, stamps, stamps, stamps),
        st.none() | st.lists(st.tuples(st.sampled_from(["disconnection"]), st.floats(0, 2e9), st.none(), st.none())),
    )
    def test_peer(
        self, i: int, created: float, metadata: Any, trusted: bool, stamps: tuple[Any, ...], events: Any
    ) -> None:
        loaded = None if events is None else tuple(events)
        failed, rejected, established, disconnection = stamps
        built = PeerInfo(
            _peer(i),
            created,
            metadata,
            trusted,
            last_failed_connection=failed,
            last_rejected_connection=rejected,
            last_established_connection=established,
            last_disconnection=disconnection,
            loaded_events=loaded,
        )
        fast = loaded_peer_info(_peer(i), created, metadata, trusted, *stamps, loaded)
        self.assertEqual(_values([fast]), _values([built]))
        self.assertIs(fast.trust, built.trust)

    peer_stamps = st.none() | st.tuples(st.sampled_from([_peer(1), _peer(2)]), st.floats(0, 2e9))

    @given(
        st.booleans(),
        st.none() | st.sampled_from([_peer(3)]),
        st.none() | st.floats(0, 2e9),
        st.tuples(peer_stamps, peer_stamps, peer_stamps),
        st.booleans(),
        st.none() | st.text(min_size=1, max_size=5),
    )
    def test_point(
        self, trusted: bool, expected: Any, failed: Any, stamps: tuple[Any, ...], known_public: bool, group: Any
    ) -> None:
        built = PointInfo(
            _point(1),
            trusted,
            expected,
            last_failed_connection=failed,
            last_rejected_connection=stamps[0],
            last_established_connection=stamps[1],
            last_disconnection=stamps[2],
            known_public=known_public,
            source_group=group,
        )
        fast = loaded_point_info(_point(1), trusted, expected, failed, *stamps, known_public, group)
        self.assertEqual(_values([fast]), _values([built]))
        self.assertIs(fast.trust, built.trust)


class ReadPeersFileTests(_PoolCase):
    """
    L{read_peers_file}: generations on disk after each kind of damage.
    """

    NOW = T0 + 61.5

    def test_missing(self) -> None:
        outcome = read_peers_file(self.path, NETWORK)
        self.assertEqual((outcome.status, outcome.content), ("missing", None))

    def test_parent_is_not_a_directory(self) -> None:
        self.write_file(b"a file where a directory would be")
        outcome = read_peers_file(os.path.join(self.path, "peers.json"), NETWORK)
        self.assertEqual(outcome.status, "missing")

    def test_loaded(self) -> None:
        self.write_file(document(peers=[peer_record(1)]))
        outcome = read_peers_file(self.path, NETWORK)
        self.assertEqual((outcome.status, outcome.source), ("loaded", self.path))
        assert outcome.content is not None
        self.assertEqual([p.peer_id for p in outcome.content.peers], [_peer(1)])

    def test_leftover_temporary_files_removed(self) -> None:
        self.write_file(b"half a fi", path=self.path + ".tmp")
        self.write_file(b"x", path=self.path + ".bak.tmp")
        self.assertEqual(read_peers_file(self.path, NETWORK).status, "missing")
        self.assertEqual(os.listdir(self.data_dir), [])

    def test_damaged_without_backup(self) -> None:
        garbage = self.write_file(b"\x00\x01garbage")
        outcome = read_peers_file(self.path, NETWORK, now=self.NOW)
        self.assertEqual(outcome.status, "damaged")
        self.assertIsNone(outcome.content)
        self.assertIn("not JSON", outcome.error or "")
        self.assertEqual(outcome.moved_to, self.path + ".corrupt-20240501T000101.500000Z")
        self.assertFalse(os.path.exists(self.path))
        self.assertEqual(self.read_bytes(outcome.moved_to), garbage)

    def test_every_damage_moved_aside_and_backup_used(self) -> None:
        """
        Whatever the damage, the file is moved aside, the previous
        generation is loaded and copied back in its place.
        """
        good = document(peers=[peer_record(1)])
        full = encoded(good)
        damages = [
            b"",
            b"not json",
            full[: len(full) - 7],
            b"[]",
            encoded(document(format="x")),
            encoded(document(network=None)),
            encoded(document(peers=3)),
        ]
        backup = self.write_file(document(peers=[peer_record(2)]), path=self.path + ".bak")
        for n, damage in enumerate(damages):
            self.write_file(damage)
            outcome = read_peers_file(self.path, NETWORK, now=self.NOW + n)
            self.assertEqual((outcome.status, outcome.source), ("recovered", self.path + ".bak"), damage)
            assert outcome.content is not None
            self.assertEqual([p.peer_id for p in outcome.content.peers], [_peer(2)])
            assert outcome.moved_to is not None
            self.assertEqual(self.read_bytes(outcome.moved_to), damage)
            self.assertEqual(self.read_bytes(), backup, "the good generation is back in place")
            self.assertEqual(self.read_bytes(self.path + ".bak"), backup)
        self.assertEqual(len(self.corrupt_files()), len(damages))

    def test_too_large_moved_aside_unread(self) -> None:
        """
        A file over the size limit is not read: it is renamed
        C{.too-large-<time>}, byte for byte, and the C{.bak} is used if it
        fits; a file of exactly the limit is read.
        """
        data = self.write_file(document(peers=[peer_record(1), peer_record(2)]))
        self.assertEqual(read_peers_file(self.path, NETWORK, max_size=len(data)).status, "loaded")
        outcome = read_peers_file(self.path, NETWORK, now=self.NOW, max_size=len(data) - 1)
        self.assertEqual((outcome.status, outcome.too_large), ("damaged", True))
        self.assertIn(f"larger than p2p.max_peers_file_size ({len(data) - 1} bytes)", outcome.error or "")
        self.assertEqual(outcome.moved_to, self.path + ".too-large-20240501T000101.500000Z")
        self.assertEqual(self.read_bytes(outcome.moved_to), data)
        self.assertFalse(os.path.exists(self.path))
        backup = self.write_file(document(peers=[peer_record(3)]), path=self.path + ".bak")
        self.write_file(data)
        outcome = read_peers_file(self.path, NETWORK, now=self.NOW, max_size=len(data) - 1)
        self.assertEqual((outcome.status, outcome.too_large), ("recovered", True))
        assert outcome.content is not None
        self.assertEqual([p.peer_id for p in outcome.content.peers], [_peer(3)])
        self.assertEqual(self.read_bytes(), backup)
        self.write_file(data)
        outcome = read_peers_file(self.path, NETWORK, now=self.NOW, max_size=len(backup) - 1)
        self.assertEqual(outcome.status, "damaged")
        backup_aside = self.path + ".bak.too-large-20240501T000101.500000Z"
        self.assertIn(f"is too large as well (moved to {backup_aside})", outcome.error or "")
        self.assertEqual(self.read_bytes(backup_aside), backup, "the backup is moved aside, byte for byte")
        self.assertFalse(os.path.exists(self.path + ".bak"))
        aside = sorted(n for n in os.listdir(self.data_dir) if ".too-large-" in n)
        self.assertEqual(len(aside), 4, "nothing is deleted")

    def test_corrupt_names_never_collide(self) -> None:
        for _ in range(3):
            self.write_file(b"{")
            read_peers_file(self.path, NETWORK, now=self.NOW)
        self.assertEqual(
            self.corrupt_files(),
            [
                "peers.json.corrupt-20240501T000101.500000Z",
                "peers.json.corrupt-20240501T000101.500000Z-2",
                "peers.json.corrupt-20240501T000101.500000Z-3",
            ],
        )

    def test_backup_unusable_too(self) -> None:
        """
        A damaged C{.bak} is moved aside as C{.bak.corrupt-<time>}, byte
        for byte: left in place, the second save after the start would
        replace it.
        """
        self.write_file(b"{")
        backup = self.write_file(b"also broken", path=self.path + ".bak")
        outcome = read_peers_file(self.path, NETWORK, now=self.NOW)
        self.assertEqual(outcome.status, "damaged")
        aside = self.path + ".bak.corrupt-20240501T000101.500000Z"
        self.assertIn("peers.json.bak is not usable either", outcome.error or "")
        self.assertIn(f"(moved to {aside})", outcome.error or "")
        self.assertEqual(self.read_bytes(aside), backup, "kept for the operator")
        self.assertFalse(os.path.exists(self.path))
        self.assertFalse(os.path.exists(self.path + ".bak"))

    def test_unreadable_backup_moved_aside(self) -> None:
        """
        A C{.bak} that cannot be read (here a directory) is moved aside as
        C{.bak.corrupt-<time>} too.
        """
        self.write_file(b"{")
        os.mkdir(self.path + ".bak")
        outcome = read_peers_file(self.path, NETWORK, now=self.NOW)
        self.assertEqual(outcome.status, "damaged")
        self.assertIn("peers.json.bak cannot be read either", outcome.error or "")
        self.assertTrue(os.path.isdir(self.path + ".bak.corrupt-20240501T000101.500000Z"))
        self.assertFalse(os.path.lexists(self.path + ".bak"))

    def test_backup_of_another_network_not_used(self) -> None:
        """
        A C{.bak} of another network (or a newer format) is not loaded, and
        is moved aside as C{.bak.refused-<time>}, byte for byte.
        """
        self.write_file(b"{")
        backup = self.write_file(document(network="other-net", peers=[peer_record(1)]), path=self.path + ".bak")
        outcome = read_peers_file(self.path, NETWORK, now=self.NOW)
        self.assertEqual(outcome.status, "damaged")
        self.assertIn("other-net", outcome.error or "")
        aside = self.path + ".bak.refused-20240501T000101.500000Z"
        self.assertIn(f"(moved to {aside})", outcome.error or "")
        self.assertEqual(self.read_bytes(aside), backup)
        self.assertFalse(os.path.exists(self.path + ".bak"))

    def test_unusable_backup_survives_the_saves_after_start(self) -> None:
        """
        The saves after a start on a damaged file and an unusable C{.bak}
        (two saves: the first makes no C{.bak}, the second rotates one in)
        leave the unusable generation where it was moved.
        """
        self.write_file(b"{")
        backup = self.write_file(b"\x00 not json", path=self.path + ".bak")
        read_peers_file(self.path, NETWORK, now=self.NOW)
        write_atomically(self.path, b"first")
        write_atomically(self.path, b"second")
        self.assertEqual(self.read_bytes(self.path + ".bak"), b"first")
        self.assertEqual(self.read_bytes(self.path + ".bak.corrupt-20240501T000101.500000Z"), backup)

    def test_refused_files_left_alone(self) -> None:
        for doc, reason in ((document(network="other-net"), "network"), ({"format": 7, "anything": True}, "format")):
            data = self.write_file(doc)
            outcome = read_peers_file(self.path, NETWORK, now=self.NOW)
            self.assertEqual((outcome.status, outcome.refused, outcome.content), ("refused", reason, None))
            self.assertEqual(self.read_bytes(), data)
            self.assertEqual(self.corrupt_files(), [])
            st = os.stat(self.path)
            self.assertEqual(outcome.fingerprint, (st.st_ino, st.st_size, st.st_mtime_ns))


# ---------------------------------------------------------------------------


class RoundTripTests(_PoolCase):
    """
    What one pool saves, another loads: peers with their times, events,
    trusted flags and metadata through the application's encoder; points
    with trust, pins, times and C{known_public} but no back-off; bans.
    """

    def populate(self, pool: Pool) -> None:
        reactor = self.reactor
        directory = pool.directory
        # A peer connected once at a point, then gone.
        peer = pool.register_peer(_peer(1))
        pool.peers.set_peer_metadata(_peer(1), Counters(5, 2))
        reactor.advance(1.125)
        directory.peer_accepted(peer, _point(1), pool.now())
        reactor.advance(0.25)
        directory.peer_running(peer, _point(1), pool.now())
        reactor.advance(30)
        directory.peer_disconnected(peer, pool.now())
        # A trusted peer rejected before it told its port, and one still
        # running when the file is written.
        trusted = pool.register_peer(_peer(2))
        directory.set_peer_trusted(trusted, True)
        directory.peer_accepted(trusted, None, pool.now())
        directory.peer_disconnected(trusted, pool.now())
        running = pool.register_peer(_peer(3))
        directory.peer_running(running, _point(3), pool.now())
        # Points: a pinned trusted one, one that was connected, one that
        # failed, one connected now.
        pool.register_point(_point(10), trusted=True, expected_peer_id=_peer(1))
        connected = pool.register_point(_point(1))
        directory.set_known_public(connected, True)
        directory.point_requested(connected, pool.now())
        directory.point_running(connected, _peer(1), pool.now())
        reactor.advance(2.5)
        directory.point_disconnected(connected, pool.now())
        failed = pool.register_point(_point(11))
        directory.point_requested(failed, pool.now())
        directory.point_disconnected(failed, pool.now())
        self.assertIsNotNone(failed.reconnection_time, "a back-off the file must not keep")
        now = pool.register_point(_point(3))
        directory.point_requested(now, pool.now())
        directory.point_running(now, _peer(3), pool.now())
        pool.acl.ip_blacklist.ban("192.0.2.7")
        pool.acl.ip_blacklist.ban("10.9.0.0/16")
        pool.acl.ip_blacklist.ban("2001:db8::/32")
        pool.acl.peer_blacklist.ban(_peer(9))

    def test_round_trip(self) -> None:
        first = self.make_pool(app=CountersApp())
        self.populate(first)
        self.successResultOf(first.save_peers())
        self.assertEqual(first.persistence.saves, 1)
        second = self.make_pool(app=CountersApp())
        self.assertEqual(self.named(EventKind.LOAD_PEERS)[-1].fields["status"], "loaded")
        for old in first.peers:
            new = second.peers.info(old.peer_id)
            assert new is not None, old.peer_id
            self.assertEqual(new.state, PeerState.DISCONNECTED)
            self.assertEqual((new.created, new.trusted, new.metadata), (old.created, old.trusted, old.metadata))
            for field in (
                "last_failed_connection",
                "last_rejected_connection",
                "last_established_connection",
                "last_disconnection",
            ):
                self.assertEqual(getattr(new, field), getattr(old, field), field)
            self.assertEqual(
                [(e.kind, e.timestamp, e.point) for e in new.events],
                [(e.kind, e.timestamp, e.point) for e in old.events],
            )
        self.assertEqual(second.peers.info(_peer(1)).metadata, Counters(5, 2))  # type: ignore[union-attr]
        self.assertEqual(second.peers.info(_peer(2)).last_rejected_connection, (None, T0 + 31.375))  # type: ignore[union-attr]
        self.assertEqual({i.point for i in second.points}, {_point(1), _point(3), _point(10), _point(11)})
        for old_point in first.points:
            new_point = second.points.info(old_point.point)
            assert new_point is not None
            self.assertEqual(new_point.state, PointState.DISCONNECTED)
            self.assertEqual(
                (new_point.trusted, new_point.expected_peer_id, new_point.known_public),
                (old_point.trusted, old_point.expected_peer_id, old_point.known_public),
            )
            for field in (
                "last_failed_connection",
                "last_rejected_connection",
                "last_established_connection",
                "last_disconnection",
            ):
                self.assertEqual(getattr(new_point, field), getattr(old_point, field), field)
            self.assertEqual((new_point.reconnection_delay, new_point.reconnection_time), (None, None))
        self.assertEqual(second.acl.ip_blacklist.listing(), ["192.0.2.7", "10.9.0.0/16", "2001:db8::/32"])
        self.assertTrue(second.acl.banned_addr("10.9.200.1"))
        self.assertEqual(second.acl.peer_blacklist.listing(), [_peer(9)])

    def test_source_groups_survive_a_restart(self) -> None:
        """
        A learnt point keeps its source group through the file, so that the
        group's share and dial budget still apply after a restart.
        """
        first = self.make_pool()
        first.register_list_of_new_points(
            [_point(20), _point(21)], medium="advertise", source="x", source_group="10.7.0.0/16"
        )
        self.assertEqual(first.directory.learnt_count("10.7.0.0/16"), 2)
        self.successResultOf(first.save_peers())
        saved = {p["point"]: p for p in self.read_json()["points"]}
        self.assertEqual(saved[str(_point(20))]["source_group"], "10.7.0.0/16")
        second = self.make_pool()
        self.assertEqual(second.directory.learnt_groups(), {"10.7.0.0/16": 2})
        info = second.points.info(_point(21))
        assert info is not None
        self.assertEqual(info.source_group, "10.7.0.0/16")
        self.assertEqual(point_info_json(info)["source_group"], "10.7.0.0/16")
        self.assertEqual(second.directory.index_errors(), [])

    def test_file_layout(self) -> None:
        """
        The A5 layout: Tezos field names and address objects, RFC 3339
        times with milliseconds, one record per line.
        """
        pool = self.make_pool(app=CountersApp())
        self.populate(pool)
        self.successResultOf(pool.save_peers())
        doc = self.read_json()
        self.assertEqual(set(doc), {"format", "network", "saved_at", "peers", "points", "bans"})
        self.assertEqual((doc["format"], doc["network"]), (1, NETWORK))
        self.assertRegex(doc["saved_at"], RFC3339_MS)
        peers = {p["peer_id"]: p for p in doc["peers"]}
        first = peers[str(_peer(1))]
        self.assertLessEqual(set(first), TEZOS_PEER_FIELDS)
        self.assertEqual(first["peer_metadata"], {"good": "5", "bad": "2"})
        self.assertEqual(first["created"], "2024-05-01T00:00:00.000Z")
        self.assertEqual(
            first["last_established_connection"],
            [{"addr": "::ffff:10.0.0.1", "port": 9732}, "2024-05-01T00:00:01.375Z"],
        )
        self.assertEqual(
            [e["kind"] for e in first["events"]],
            ["incoming_request", "connection_established", "external_disconnection"],
        )
        self.assertEqual(peers[str(_peer(2))]["last_rejected_connection"], [None, "2024-05-01T00:00:31.375Z"])
        points = {p["point"]: p for p in doc["points"]}
        self.assertEqual(
            points["10.0.0.10:9732"],
            {"point": "10.0.0.10:9732", "trusted": True, "known_public": False, "expected_peer_id": str(_peer(1))},
        )
        self.assertEqual(points["10.0.0.1:9732"]["last_disconnection"], [str(_peer(1)), "2024-05-01T00:00:33.875Z"])
        self.assertRegex(points["10.0.0.11:9732"]["last_failed_connection"], RFC3339_MS)
        self.assertEqual(doc["bans"], {"ips": ["192.0.2.7", "10.9.0.0/16", "2001:db8::/32"], "peers": [str(_peer(9))]})
        lines = self.read_bytes().decode().splitlines()
        self.assertEqual(len(lines), 3 + len(doc["peers"]) + 1 + len(doc["points"]) + 2)

    def test_times_as_the_admin_api_writes_them(self) -> None:
        """
        The file writes a time as the admin API shows it, to the
        millisecond, cut and not rounded.
        """
        pool = self.make_pool()
        self.reactor.advance(0.0006789)
        info = pool.register_point(_point(11))
        info.set_requested(pool.now())
        info.set_disconnected(pool.now(), pool.config.reconnection, random.Random(0))
        self.successResultOf(pool.save_peers())
        [record] = self.read_json()["points"]
        self.assertEqual(record["last_failed_connection"], "2024-05-01T00:00:00.000Z")
        self.assertEqual(record["last_failed_connection"], point_info_json(info)["last_failed_connection"])

    def test_metadata_that_cannot_be_encoded(self) -> None:
        """
        Metadata the encoder cannot turn into JSON is written as null and
        counted; on load the peer gets the initial metadata.
        """
        pool = self.make_pool()
        pool.register_peer(_peer(1)).metadata = {"nan": float("nan")}
        pool.register_peer(_peer(2)).metadata = {"fine": [1, "two"]}
        self.successResultOf(pool.save_peers())
        self.assertEqual(self.named(EventKind.SAVE_METADATA_ERRORS)[0].fields["peers"], 1)
        peers = {p["peer_id"]: p["peer_metadata"] for p in self.read_json()["peers"]}
        self.assertEqual(peers, {str(_peer(1)): None, str(_peer(2)): {"fine": [1, "two"]}})

    def test_metadata_the_application_refuses(self) -> None:
        self.write_file(
            document(
                peers=[
                    peer_record(1, peer_metadata={"good": "1", "bad": "0"}),
                    peer_record(2, peer_metadata=[1]),
                    peer_record(3),
                ]
            )
        )
        pool = self.make_pool(app=CountersApp())
        self.assertEqual(pool.peers.info(_peer(1)).metadata, Counters(1, 0))  # type: ignore[union-attr]
        self.assertEqual(pool.peers.info(_peer(2)).metadata, Counters(), "initial metadata")  # type: ignore[union-attr]
        self.assertEqual(pool.peers.info(_peer(3)).metadata, Counters(), "no metadata in the file")  # type: ignore[union-attr]
        [skipped] = self.named(EventKind.LOAD_RECORD_SKIPPED)
        self.assertEqual((skipped.fields["section"], skipped.fields["index"]), ("peers", 1))
        self.assertIn("peer_metadata: not counters", skipped.fields["problem"])

    def test_duplicates_and_own_id(self) -> None:
        self.write_file(
            document(
                peers=[
                    peer_record(1),
                    peer_record(1, trusted=True),
                    {"peer_id": str(identity(0).peer_id), "created": 0},
                ],
                points=[{"point": "10.0.0.1:9732"}, {"point": "10.0.0.1:9732", "trusted": True}],
            )
        )
        pool = self.make_pool()
        self.assertEqual(len(pool.peers), 1)
        self.assertFalse(pool.peers.info(_peer(1)).trusted, "the first record wins")  # type: ignore[union-attr]
        self.assertFalse(pool.points.info(_point(1)).trusted)  # type: ignore[union-attr]
        problems = [(e.fields["section"], e.fields["index"]) for e in self.named(EventKind.LOAD_RECORD_SKIPPED)]
        self.assertEqual(problems, [("peers", 1), ("points", 1)])
        self.assertEqual(self.named(EventKind.LOAD_PEERS)[0].fields["skipped"], 2)


# ---------------------------------------------------------------------------


class PoolLoadTests(_PoolCase):
    """
    What a pool does with the file when it starts.
    """

    def test_missing_file_is_an_empty_start(self) -> None:
        pool = self.make_pool()
        self.assertEqual((len(pool.peers), len(pool.points)), (0, 0))
        self.assertEqual(self.named(EventKind.LOAD_PEERS)[0].fields["status"], "missing")
        self.assertTrue(pool.persistence.loaded)

    def test_config_trusted_points_reapplied_on_top(self) -> None:
        """
        Trusted flags and pins come back from the file; the configured
        trusted points are then registered over them.
        """
        self.write_file(
            document(
                points=[
                    {"point": "10.0.0.1:9732", "trusted": False, "expected_peer_id": str(_peer(1))},
                    {"point": "10.0.0.2:9732", "trusted": True, "expected_peer_id": str(_peer(2))},
                ]
            )
        )
        spec = PointSpec("10.0.0.1", 9732, _peer(5))
        pool = self.make_pool(trusted_points=(spec,))
        first, second = pool.points.info(_point(1)), pool.points.info(_point(2))
        assert first is not None and second is not None
        self.assertEqual((first.trusted, first.expected_peer_id), (True, _peer(5)))
        self.assertEqual((second.trusted, second.expected_peer_id), (True, _peer(2)))
        # A file's trust is trust given through the API (a file written
        # before trust had sources cannot tell configured trust apart).
        self.assertEqual((first.trust, second.trust), (TrustSource.CONFIG, TrustSource.API))

    def test_peer_bans_of_older_files_stay(self) -> None:
        """
        A file without C{peers_by_ip} holds peer bans on their own:
        opening an address does not lift them.
        """
        self.write_file(document(bans={"ips": ["10.0.0.1"], "peers": [str(_peer(1))]}))
        pool = self.make_pool()
        pool.points.unban(_point(1))
        self.assertFalse(pool.points.banned(_point(1)))
        self.assertTrue(pool.peers.banned(_peer(1)))

    def test_points_known_before_start_win(self) -> None:
        self.write_file(
            document(points=[{"point": "10.0.0.1:9732", "trusted": False}], peers=[peer_record(1, trusted=False)])
        )
        pool = self.make_pool(start=False)
        pool.register_point(_point(1), trusted=True)
        pool.directory.set_peer_trusted(pool.register_peer(_peer(1)), True)
        pool.startService()
        self.addCleanup(pool.stopService)
        self.successResultOf(pool.when_started())
        self.assertTrue(pool.points.info(_point(1)).trusted)  # type: ignore[union-attr]
        self.assertTrue(pool.peers.info(_peer(1)).trusted)  # type: ignore[union-attr]

    def test_tables_trimmed_to_their_limits(self) -> None:
        self.write_file(
            document(
                points=[{"point": str(_point(i)), "trusted": i < 2} for i in range(30)],
                peers=[peer_record(i) for i in range(30)],
            )
        )
        pool = self.make_pool(max_known_points=(20, 10), max_known_peer_ids=(25, 15))
        self.assertLessEqual(len(pool.points), 20)
        self.assertLessEqual(len(pool.peers), 25)
        self.assertTrue(all(pool.points.info(_point(i)) is not None for i in range(2)), "trusted points stay")
        self.assertEqual(len(self.named(EventKind.GC_POINTS)), 1)
        self.assertEqual(len(self.named(EventKind.GC_PEER_IDS)), 1)
        loaded = self.named(EventKind.LOAD_PEERS)[0].fields
        self.assertEqual((loaded["points"], loaded["peers"]), (len(pool.points), len(pool.peers)))

    def test_file_over_the_size_limit(self) -> None:
        """
        A pool given a peers file larger than C{max_peers_file_size}
        starts with empty tables, and says where the file went.
        """
        data = self.write_file(document(peers=[peer_record(i) for i in range(5)]))
        pool = self.make_pool(max_peers_file_size=len(data) // 2)
        self.assertEqual((len(pool.peers), len(pool.points)), (0, 0))
        [error] = self.named(EventKind.LOAD_ERROR_PEERS)
        self.assertIn("max_peers_file_size", error.fields["error"])
        self.assertIn(".too-large-", error.fields["moved_to"])
        self.assertEqual(self.read_bytes(error.fields["moved_to"]), data)

    def test_records_beyond_the_tables_are_not_loaded(self) -> None:
        self.write_file(
            document(points=[{"point": str(_point(i))} for i in range(30)], peers=[peer_record(i) for i in range(5)])
        )
        with capturedLogs() as captured:
            pool = self.make_pool(max_known_points=(12, 8))
        self.assertEqual(len(pool.peers), 5)
        self.assertLessEqual(len(pool.points), 12)
        self.assertEqual(self.named(EventKind.LOAD_PEERS)[0].fields["skipped"], 0)
        lines = [formatEvent(e) for e in captured if "beyond the table" in formatEvent(e)]
        self.assertEqual(
            lines,
            [f"Peers file {self.path}: 18 points beyond the table's limit (p2p.max_known_points) were not loaded"],
        )

    def test_save_over_the_size_limit_warns(self) -> None:
        pool = self.make_pool(max_peers_file_size=200)
        for i in range(10):
            pool.register_point(_point(i))
        with capturedLogs() as captured:
            self.successResultOf(pool.save_peers())
        self.assertGreater(len(self.read_bytes()), 200)
        [line] = [formatEvent(e) for e in captured if "max_peers_file_size" in formatEvent(e)]
        self.assertIn("the next start will move it aside unread", line)

    def test_damaged_file_uses_backup(self) -> None:
        self.write_file(document(peers=[peer_record(2)], points=[{"point": "10.0.0.2:9732"}]), path=self.path + ".bak")
        self.write_file(b'{"format": 1, "network": "test-net", "peers": [{"peer_id": "id')
        pool = self.make_pool()
        self.assertIsNotNone(pool.peers.info(_peer(2)))
        self.assertIsNotNone(pool.points.info(_point(2)))
        [error] = self.named(EventKind.LOAD_ERROR_PEERS)
        self.assertTrue(error.fields["used_backup"])
        self.assertIn("not JSON", error.fields["error"])
        self.assertEqual([os.path.basename(error.fields["moved_to"])], self.corrupt_files())
        self.assertEqual(self.named(EventKind.LOAD_PEERS)[0].fields["status"], "recovered")

    def test_damaged_file_without_backup(self) -> None:
        self.write_file(b"\xff\xfe garbage")
        pool = self.make_pool()
        self.assertEqual(len(pool.peers), 0)
        self.assertFalse(self.named(EventKind.LOAD_ERROR_PEERS)[0].fields["used_backup"])
        self.assertEqual(len(self.corrupt_files()), 1)
        pool.register_point(_point(4))
        self.successResultOf(pool.save_peers())
        self.assertEqual([p["point"] for p in self.read_json()["points"]], [str(_point(4))], "saving works again")

    def test_refused_file_is_never_overwritten(self) -> None:
        """
        A newer format or another network: the pool starts empty, says
        so, and neither checkpoints nor the stop overwrite the file, until
        the operator moves it away.
        """
        cases = (
            (document(format=FORMAT + 1, peers=[peer_record(1)]), "format"),
            (document(network="main", peers=[peer_record(1)]), "network"),
        )
        for doc, reason in cases:
            self.events.clear()
            data = self.write_file(doc)
            pool = self.make_pool(checkpoint_interval=5.0)
            self.assertEqual(len(pool.peers), 0)
            [refused] = self.named(EventKind.LOAD_REFUSED_PEERS)
            self.assertEqual(refused.fields["reason"], reason)
            self.assertEqual(pool.persistence.writing_disabled, reason)
            pool.register_point(_point(1))
            self.reactor.advance(5.0)
            self.successResultOf(pool.save_peers())
            self.successResultOf(pool.stopService())
            self.assertEqual(self.read_bytes(), data)
            self.assertFalse(os.path.exists(self.path + ".bak"))
            self.assertEqual(len(self.named(EventKind.SAVE_SKIPPED_PEERS)), 3)
            self.assertEqual(self.named(EventKind.SAVE_PEERS), [])
            os.unlink(self.path)

    def test_writing_resumes_once_the_refused_file_is_moved(self) -> None:
        data = self.write_file(document(format=FORMAT + 1))
        pool = self.make_pool()
        pool.register_point(_point(1))
        self.successResultOf(pool.save_peers())
        self.assertEqual(self.read_bytes(), data)
        os.rename(self.path, self.path + ".v2")
        self.successResultOf(pool.save_peers())
        self.assertEqual([p["point"] for p in self.read_json()["points"]], [str(_point(1))])
        self.assertIsNone(pool.persistence.writing_disabled)
        self.assertEqual(len(self.named(EventKind.SAVE_ENABLED_PEERS)), 1)

    def test_restart_dials_known_points_without_maintenance(self) -> None:
        """
        Without maintenance, the points the node was connected to are
        dialed once, spread over a few seconds; not points it never
        reached, nor banned ones. Trusted points are dialed as always.
        """
        t = "2024-04-30T00:00:00.000Z"
        self.write_file(
            document(
                points=[
                    {"point": "10.0.0.1:9732", "last_established_connection": [str(_peer(1)), t]},
                    {"point": "10.0.0.2:9732", "last_failed_connection": t},
                    {"point": "10.0.0.3:9732", "trusted": True, "last_established_connection": [str(_peer(3)), t]},
                    {"point": "192.0.2.4:9732", "last_established_connection": [str(_peer(4)), t]},
                ],
                bans={"ips": ["192.0.2.0/24"]},
            )
        )
        self.make_pool()
        self.assertEqual(self.reactor.tcpClients, [])
        self.reactor.advance(RESTART_DIAL_SPREAD + 0.1)
        self.assertEqual(sorted(c[:2] for c in self.reactor.tcpClients), [("10.0.0.1", 9732), ("10.0.0.3", 9732)])

    def test_restart_dials_nothing_untrusted_in_private_mode(self) -> None:
        t = "2024-04-30T00:00:00.000Z"
        self.write_file(
            document(points=[{"point": "10.0.0.1:9732", "last_established_connection": [str(_peer(1)), t]}])
        )
        self.make_pool(private_mode=True)
        self.reactor.advance(RESTART_DIAL_SPREAD + 0.1)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_maintenance_dials_loaded_points(self) -> None:
        t = "2024-04-30T00:00:00.000Z"
        point = {"point": "10.0.0.1:9732", "known_public": True, "last_established_connection": [str(_peer(1)), t]}
        self.write_file(document(points=[point]))
        self.make_pool(maintenance_idle_time=120.0, min_connections=1, expected_connections=2, max_connections=3)
        self.reactor.advance(1.0)
        self.assertEqual([c[:2] for c in self.reactor.tcpClients], [("10.0.0.1", 9732)])


# ---------------------------------------------------------------------------


class PoolSaveTests(_PoolCase):
    """
    When a pool writes the file, and how saves follow one another.
    """

    def test_checkpoints(self) -> None:
        pool = self.make_pool(checkpoint_interval=10.0)
        pool.register_point(_point(1))
        self.reactor.advance(9.9)
        self.assertFalse(os.path.exists(self.path))
        self.reactor.advance(0.1)
        self.assertEqual([p["point"] for p in self.read_json()["points"]], [str(_point(1))])
        pool.register_point(_point(2))
        self.reactor.advance(10.0)
        self.assertEqual(len(self.read_json()["points"]), 2)
        self.assertEqual(len(self.named(EventKind.SAVE_PEERS)), 2)
        self.successResultOf(pool.stopService())
        saves = len(self.named(EventKind.SAVE_PEERS))
        self.reactor.advance(30.0)
        self.assertEqual(len(self.named(EventKind.SAVE_PEERS)), saves, "no checkpoint after stop")

    def test_stop_saves_after_tearing_down(self) -> None:
        pool = self.make_pool()
        pool.register_point(_point(1))
        teardown: Deferred[None] = Deferred()
        self.patch(pool, "tear_down_connections", lambda: teardown)
        stopped = pool.stopService()
        self.assertNoResult(stopped)
        self.assertFalse(os.path.exists(self.path), "nothing written while connections close")
        teardown.callback(None)
        self.successResultOf(stopped)
        self.assertEqual([p["point"] for p in self.read_json()["points"]], [str(_point(1))])

    def test_destroy_saves_after_tearing_down(self) -> None:
        pool = self.make_pool()
        pool.register_peer(_peer(1))
        teardown: Deferred[None] = Deferred()
        self.patch(pool, "tear_down_connections", lambda: teardown)
        destroyed = pool.destroy()
        self.assertFalse(os.path.exists(self.path))
        teardown.callback(None)
        self.successResultOf(destroyed)
        self.assertEqual([p["peer_id"] for p in self.read_json()["peers"]], [str(_peer(1))])

    def test_nothing_written_before_loading(self) -> None:
        """
        A pool that has not loaded the file (not started, or stopped while
        starting) must not replace it with empty tables.
        """
        data = self.write_file(document(peers=[peer_record(1)]))
        pool = self.make_pool(start=False)
        self.successResultOf(pool.save_peers())
        self.successResultOf(pool.destroy())
        self.assertEqual(self.read_bytes(), data)
        self.assertEqual([e.fields["reason"] for e in self.named(EventKind.SAVE_SKIPPED_PEERS)], ["not loaded yet"] * 2)

    def test_failures_are_counted_not_raised(self) -> None:
        # The file's directory is a regular file: every write fails.
        blocker = self.mktemp()
        with open(blocker, "wb"):
            pass
        pool = self.make_pool(peers_file=os.path.join(blocker, "peers.json"))
        self.assertEqual(self.named(EventKind.LOAD_PEERS)[0].fields["status"], "missing")
        self.successResultOf(pool.save_peers())
        self.successResultOf(pool.save_peers())
        self.assertEqual((pool.persistence.failures, pool.persistence.saves), (2, 0))
        self.assertRegex(pool.persistence.last_error or "", r"^(FileExists|NotADirectory)Error: ")
        self.assertEqual(len(self.named(EventKind.SAVE_ERROR_PEERS)), 2)
        os.unlink(blocker)
        self.successResultOf(pool.save_peers())
        self.assertEqual((pool.persistence.failures, pool.persistence.saves), (2, 1))
        self.assertGreater(pool.persistence.last_save_duration or 0, 0)
        self.assertEqual(pool.persistence.last_save_at, T0)
        self.assertEqual(pool.persistence.last_save_bytes, os.path.getsize(os.path.join(blocker, "peers.json")))

    def test_saves_never_interleave(self) -> None:
        """
        A save requested while one runs waits for it, and all such
        requests share one follow-up save, which sees what changed since
        the first began.
        """
        reactor = _ThreadsReactor()
        pool = self.make_pool(reactor=reactor)
        first = pool.save_peers()
        self.assertEqual(len(reactor.work), 1)
        pool.register_point(_point(1))
        second, third = pool.save_peers(), pool.save_peers()
        self.assertEqual(len(reactor.work), 1, "no second write while the first runs")
        for d in (first, second, third):
            self.assertNoResult(d)
        reactor.run_work()
        self.successResultOf(first)
        self.assertNoResult(second)
        self.assertEqual(len(reactor.work), 1, "one follow-up for both")
        reactor.run_work()
        self.successResultOf(second)
        self.successResultOf(third)
        self.assertEqual(reactor.work, [])
        self.assertEqual(pool.persistence.saves, 2)
        self.assertEqual([p["point"] for p in self.read_json()["points"]], [str(_point(1))])

    def test_save_asked_when_one_ends(self) -> None:
        reactor = _ThreadsReactor()
        pool = self.make_pool(reactor=reactor)
        again: list[Deferred[None]] = []
        pool.save_peers().addCallback(lambda _: again.append(pool.save_peers()))
        reactor.run_work()
        self.assertEqual(len(again), 1)
        self.assertEqual(len(reactor.work), 1, "the new save runs")
        reactor.run_work()
        self.successResultOf(again[0])
        self.assertEqual(pool.persistence.saves, 2)

    def test_stop_waits_for_a_running_checkpoint(self) -> None:
        reactor = _ThreadsReactor()
        pool = self.make_pool(reactor=reactor, checkpoint_interval=1.0)
        reactor.advance(1.0)
        self.assertEqual(len(reactor.work), 1)
        pool.register_point(_point(1))
        stopped = pool.stopService()
        self.assertEqual(len(reactor.work), 1)
        reactor.run_work()
        self.assertNoResult(stopped)
        reactor.run_work()
        self.successResultOf(stopped)
        self.assertEqual([p["point"] for p in self.read_json()["points"]], [str(_point(1))])

    def test_snapshot_makes_no_object_per_record(self) -> None:
        """
        A snapshot holds its records by column: copying a large book adds
        a few lists for the cyclic garbage collector, not an object per
        record (rows were one each: with a large book of never-connected
        points, enough to set off a full pass of the collector during the
        save, a stall of the reactor of over 100 ms at 100k points).
        """
        pool = self.make_pool()
        for i in range(2000):
            pool.register_point(_point(i % 250, 1 + i // 250))
        for i in range(500):
            pool.register_peer(_peer(i))
        clock = _CountingClock()
        with collector_paused():
            before = len(gc.get_objects())
            d = Deferred.fromCoroutine(snapshot_pool(pool, clock, slice_size=10_000))
            snapshot = self.successResultOf(d)
            added = len(gc.get_objects()) - before
        counts = (pool.directory.peer_count(), pool.directory.point_count())
        self.assertEqual((snapshot.peer_count, snapshot.point_count), counts)
        self.assertGreater(min(counts), 300, "the table limits keep a few hundred of each")
        self.assertLess(added, 100, "a few lists and the snapshot, whatever the number of records")

    def test_stamps_held_without_a_tuple(self) -> None:
        """
        A record keeps each last_* stamp in two slots, not as a tuple: a
        large book holds no object per stamp. Reading one makes the tuple;
        setting None clears it.
        """
        peer = PeerInfo(
            _peer(1), T0, last_established_connection=(_point(1), T0 + 1), last_disconnection=(None, T0 + 2)
        )
        point = PointInfo(_point(1), last_rejected_connection=(_peer(1), T0 + 3))
        for info in (peer, point):
            self.assertFalse([r for r in gc.get_referents(info) if type(r) is tuple], info)
        self.assertEqual(
            (peer.last_established_connection, peer.last_disconnection, peer.last_failed_connection),
            ((_point(1), T0 + 1), (None, T0 + 2), None),
        )
        self.assertEqual((peer.last_seen, peer.last_miss), (T0 + 2, T0 + 2))
        self.assertEqual(
            (point.last_rejected_connection, point.last_seen, point.has_connected), ((_peer(1), T0 + 3), T0 + 3, False)
        )
        peer.last_disconnection = None
        self.assertEqual((peer.last_disconnection, peer.last_seen, peer.last_miss), (None, T0 + 1, None))
        self.assertEqual(peer.stamp_values(), (None, None, None, None, _point(1), T0 + 1, None, None))

    def test_snapshot_in_slices(self) -> None:
        """
        A snapshot takes at most C{slice_size} records per reactor turn.
        """
        pool = self.make_pool()
        for i in range(25):
            pool.register_peer(_peer(i))
        for i in range(5):
            pool.register_point(_point(i))
        clock = _CountingClock()
        d = Deferred.fromCoroutine(snapshot_pool(pool, clock, slice_size=10))
        self.assertNoResult(d)
        clock.advance(0)
        snapshot = self.successResultOf(d)
        self.assertEqual(clock.turns, 2, "30 records in slices of 10: two waits for the next turn")
        whole = Deferred.fromCoroutine(snapshot_pool(pool, clock, slice_size=30))
        self.assertEqual(self.successResultOf(whole).peer_count, 25)
        self.assertEqual(clock.turns, 2, "no wait when one slice holds everything")
        self.assertEqual((snapshot.peer_count, snapshot.point_count), (25, 5))
        self.assertEqual(snapshot.network, NETWORK)
        size = write_snapshot(self.path, snapshot)
        self.assertEqual((snapshot.peer_count, snapshot.point_count), (0, 0), "emptied as written")
        self.assertFalse(any(snapshot.peers + snapshot.points), "every column emptied")
        self.assertEqual(size, os.path.getsize(self.path))
        self.assertEqual(len(self.read_json()["peers"]), 25)
