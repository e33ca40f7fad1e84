"""
Tests for the typed reading of a peers file (L{p2pool.pool.persistence.schema}
and its use in L{p2pool.pool.persistence.decoder.decode_document}): every
file reads to the same content as through the checking decoder alone, and a
file as the writer writes it is read without the checking decoder.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pool.core.addressing import PeerId
from p2pool.pool.persistence import decode_document
from p2pool.pool.persistence import decoder as decoder_module
from p2pool.pool.persistence.document import FORMAT, PeersFileError
from p2pool.pool.persistence.schema import PeerRecord, PointRecord

NETWORK = "test"
TIME = "2024-05-01T00:00:00.250Z"


def _peer(i: int) -> str:
    return str(PeerId(i.to_bytes(16, "big")))


def _file(peers: list[Any], points: list[Any], **top: Any) -> bytes:
    document = {"format": FORMAT, "network": NETWORK, "bans": {"ips": [], "peers": []}}
    document.update(top)
    document["peers"] = peers
    document["points"] = points
    return json.dumps(document).encode()


def _content(content: Any) -> tuple[Any, ...]:
    """
    Everything a decoded file holds, as comparable values (records compare
    by identity).
    """

    def fields(info: Any) -> tuple[Any, ...]:
        return attrs.astuple(info, recurse=False)

    return (
        content.saved_at,
        [fields(info) for info in content.peers],
        [fields(info) for info in content.points],
        content.banned_ips,
        content.banned_peers,
        content.peer_bans_by_ip,
        content.skipped,
        content.left_out,
    )


# Values for each member: good ones of every form, and bad ones of every kind.
_times = st.one_of(
    st.sampled_from(
        [
            TIME,
            "2024-05-01T02:00:00.250+02:00",
            "2024-05-01T00:00:00.250-00:00",
            "2024-05-01t00:00:00.250z",
            "2024-05-01 00:00:00Z",
            "2024-05-01T00:00:00.1234567Z",
            "2024-05-01T00:00:00",
            "2024-05-01T00:00Z",
            "9999-12-31T23:59:59-23:00",
            "noon",
            "",
        ]
    ),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.sampled_from([None, True, [TIME], {"t": 1}]),
)
_addrs = st.sampled_from(["::ffff:10.0.0.1", "10.0.0.2", "2001:db8::1", "::ffff:2001:db8::1", "nowhere", "", 5, None])
_ports = st.sampled_from([9732, 0, 65535, 70000, -1, "80", 1.5, None, True])
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=6,
)


@st.composite
def _address(draw: st.DrawFn) -> Any:
    address: dict[str, Any] = {}
    if draw(st.booleans()):
        address["addr"] = draw(_addrs)
    if draw(st.booleans()):
        address["port"] = draw(_ports)
    return draw(st.sampled_from([address, address, None, "10.0.0.1:9732"]))


@st.composite
def _event(draw: st.DrawFn) -> Any:
    event: dict[str, Any] = {
        "kind": draw(st.sampled_from(["incoming_request", "disconnection", "rejecting_request", 5])),
        "timestamp": draw(_times),
    }
    if draw(st.booleans()):
        event["addr"] = draw(_addrs)
    if draw(st.booleans()):
        event["port"] = draw(_ports)
    if draw(st.booleans()):
        del event["timestamp"]
    return draw(st.sampled_from([event, event, event, 7]))


def _optional(record: dict[str, Any], draw: st.DrawFn, name: str, values: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        record[name] = draw(values)


@st.composite
def _peer_record(draw: st.DrawFn) -> Any:
    record: dict[str, Any] = {
        "peer_id": draw(st.one_of(st.integers(0, 5).map(_peer), st.sampled_from(["idbad", "", 5, None]))),
        "created": draw(_times),
    }
    stamp = st.one_of(st.tuples(_address(), _times).map(list), st.sampled_from([None, "x", [TIME]]))
    _optional(record, draw, "trusted", st.sampled_from([True, False, None, "yes", 1]))
    _optional(record, draw, "peer_metadata", _json)
    for name in decoder_module._LAST_MEMBERS:
        _optional(record, draw, name, stamp)
    _optional(record, draw, "events", st.one_of(st.lists(_event(), max_size=4), st.sampled_from([None, "none"])))
    _optional(record, draw, "unknown", _json)
    for name in ("peer_id", "created"):
        if draw(st.integers(0, 9)) == 0:
            del record[name]
    return draw(st.sampled_from([record, record, record, 5, [record]]))


@st.composite
def _point_record(draw: st.DrawFn) -> Any:
    record: dict[str, Any] = {
        "point": draw(st.sampled_from(["10.0.0.1:9732", "10.0.0.2:9732", "[2001:db8::1]:9732", "nope", 5])),
    }
    stamp = st.one_of(
        st.tuples(st.one_of(st.integers(0, 5).map(_peer), st.just("idbad")), _times).map(list),
        st.sampled_from([None, "x", [TIME]]),
    )
    _optional(record, draw, "trusted", st.sampled_from([True, False, None, 1]))
    _optional(record, draw, "known_public", st.sampled_from([True, False, None, "true"]))
    _optional(
        record, draw, "expected_peer_id", st.one_of(st.integers(0, 5).map(_peer), st.sampled_from([None, "idbad", 3]))
    )
    _optional(record, draw, "last_failed_connection", _times)
    for name in decoder_module._LAST_MEMBERS[1:]:
        _optional(record, draw, name, stamp)
    _optional(record, draw, "source_group", st.sampled_from(["10.0.0.0/16", "", "x" * 301, None, 5]))
    if draw(st.integers(0, 9)) == 0:
        del record["point"]
    return draw(st.sampled_from([record, record, record, "10.0.0.1:9732"]))


class SameContentTests(SynchronousTestCase):
    """
    The typed reading and the checking decoder make the same content of
    any file: the same records, the same problems in the same words.
    """

    def assertSameContent(self, data: bytes, limits: dict[str, int] | None = None) -> Any:
        checked = decode_document(data, NETWORK, limits, typed=False)
        typed = decode_document(data, NETWORK, limits, typed=True)
        self.assertEqual(_content(typed), _content(checked))
        return typed

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(_peer_record(), max_size=6),
        st.lists(_point_record(), max_size=6),
        st.one_of(st.none(), st.fixed_dictionaries({"peers": st.integers(0, 3), "points": st.integers(0, 3)})),
    )
    def test_any_records(self, peers: list[Any], points: list[Any], limits: dict[str, int] | None) -> None:
        self.assertSameContent(_file(peers, points), limits)

    def test_values_msgspec_does_not_read(self) -> None:
        """
        JSON that C{msgspec} refuses and C{json} reads (a lone surrogate, a
        NaN) is read by the checking decoder, in the record or in the head.
        """
        peer = {"peer_id": _peer(1), "created": TIME, "peer_metadata": {"name": "\ud800"}}
        content = self.assertSameContent(_file([peer], []))
        self.assertEqual(content.peers[0].metadata, {"name": "\ud800"})
        data = _file([peer], [], saved_at=float("nan"))
        for typed in (True, False):
            with self.assertRaises(PeersFileError) as caught:
                decode_document(data, NETWORK, typed=typed)
            self.assertIn("'saved_at': time out of range", str(caught.exception))

    def test_integers_json_will_not_convert(self) -> None:
        """
        An integer of more digits than C{json} converts, which msgspec
        reads, makes the whole file refused on both paths, in a record or
        in the head.
        """
        huge = "1" + "0" * 5000
        for data in (
            _file([], [{"point": "10.0.0.1:9732", "last_failed_connection": 0}]).replace(
                b": 0}", f": {huge}}}".encode()
            ),
            _file([], []).replace(b'"format": 1', f'"format": {huge}'.encode()),
        ):
            for typed in (True, False):
                with self.assertRaises(PeersFileError) as caught:
                    decode_document(data, NETWORK, typed=typed)
                self.assertIn("not JSON (truncated or damaged): Exceeds the limit", str(caught.exception))

    def test_head_members_null(self) -> None:
        """
        A null C{bans} is refused as before, not taken for a missing one.
        """
        for typed in (True, False):
            with self.assertRaises(PeersFileError) as caught:
                decode_document(_file([], [], bans=None), NETWORK, typed=typed)
            self.assertIn("'bans' must be an object, not null", str(caught.exception))


class TypedPathTests(SynchronousTestCase):
    """
    Records of every form the writer writes are read through the typed
    schema, never through the checking decoder.
    """

    def test_written_records_need_no_checking_decoder(self) -> None:
        address = {"addr": "::ffff:10.0.0.1", "port": 9732}
        peers = [
            {
                "peer_id": _peer(1),
                "created": TIME,
                "trusted": True,
                "peer_metadata": {"score": 1.5, "tags": ["a"], "n": 2**70},
                "last_failed_connection": [None, TIME],
                "last_rejected_connection": [{"addr": "::ffff:10.0.0.1"}, 1714521600],
                "last_established_connection": [address, TIME],
                "last_disconnection": [address, "2024-05-01T02:00:00.250+02:00"],
                "events": [
                    {"kind": "incoming_request", "timestamp": TIME, **address},
                    {"kind": "disconnection", "timestamp": 1714521600.5},
                ],
            },
            {"peer_id": _peer(2), "created": TIME},
        ]
        points = [
            {
                "point": "10.0.0.1:9732",
                "trusted": True,
                "known_public": True,
                "expected_peer_id": _peer(1),
                "last_failed_connection": TIME,
                "last_rejected_connection": [_peer(2), TIME],
                "last_established_connection": [_peer(1), TIME],
                "last_disconnection": [_peer(1), TIME],
                "source_group": "10.7.0.0/16",
            },
            {"point": "[2001:db8::1]:9732"},
        ]
        data = _file(peers, points)
        checked = decode_document(data, NETWORK, typed=False)

        def refuse(self: Any, record: Any) -> Any:
            raise AssertionError(f"read by the checking decoder: {record!r}")

        self.patch(decoder_module._Decoder, "peer", refuse)
        self.patch(decoder_module._Decoder, "point", refuse)
        typed = decode_document(data, NETWORK)
        self.assertEqual(_content(typed), _content(checked))
        self.assertEqual(len(typed.peers), 2)
        self.assertEqual(len(typed.points), 2)

    def test_schema_reads_the_written_forms(self) -> None:
        """
        The schema's types admit the writer's records as they are.
        """
        peer = msgspec.json.decode(
            json.dumps({"peer_id": _peer(1), "created": TIME, "events": [{"kind": "x", "timestamp": 1}]}),
            type=PeerRecord,
        )
        self.assertEqual(peer.peer_id, _peer(1))
        self.assertEqual(peer.events[0].timestamp, 1.0)
        self.assertIs(peer.peer_metadata, msgspec.UNSET)
        point = msgspec.json.decode(b'{"point": "10.0.0.1:9732", "unknown": [1]}', type=PointRecord)
        self.assertEqual((point.point, point.trusted, point.source_group), ("10.0.0.1:9732", False, None))
        self.assertRaises(msgspec.ValidationError, msgspec.json.decode, b'{"point": 5}', type=PointRecord)
