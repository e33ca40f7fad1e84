# -*- test-case-name: tests.test_persistence_schema -*-
"""
The records of a peers file as C{msgspec} types, for the typed reading of
a file (L{p2pool.pool.persistence.decoder}): C{msgspec} parses a record
and checks the JSON type of every member in C code, into one of these
structs, and the decoder builds the pool's record from it.

Each type here admits only values the checking decoder also accepts, in
the same JSON types (a time is RFC 3339 text or a number, a port an integer,
a flag C{true} or C{false}); what they cannot express (a peer id's
checksum, an address's syntax, a time's range) the decoder still checks.
Members they do not name are ignored, as everywhere in the file.

The structs are not tracked by the cyclic garbage collector (C{gc=False}):
each lives only while its record is built and holds no cycle.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import msgspec

__all__ = [
    "Address",
    "PeerRecord",
    "PeerStamp",
    "PointRecord",
    "PointStamp",
    "RecordEvent",
    "Skeleton",
    "Time",
]

#: A time: RFC 3339 text with a UTC offset (read as L{parse_time} reads
#: it), or seconds since the epoch as a JSON number.
#:
#: @see: L{p2pool.core.timestamps.parse_time}
Time = Annotated[datetime.datetime, msgspec.Meta(tz=True)] | float


class Skeleton(msgspec.Struct):
    """
    The top level of a peers file with each value left as its JSON text,
    the record arrays as the text of each element.
    """

    format: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    network: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    saved_at: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    bans: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    peers: list[msgspec.Raw] = []
    points: list[msgspec.Raw] = []


class Address(msgspec.Struct, gc=False):
    """
    A Tezos address object: C{{"addr": "::ffff:1.2.3.4", "port": 9732}};
    without a port it names no point.
    """

    addr: str
    port: int | None = None


class RecordEvent(msgspec.Struct, gc=False):
    """
    One of a peer's events: its kind, its time, and the address it names,
    if any (C{addr} and C{port} in the event itself).
    """

    kind: str
    timestamp: Time
    addr: str | msgspec.UnsetType = msgspec.UNSET
    port: int | None = None


#: A peer's C{last_*} member: [address or null, time].
PeerStamp = tuple[Address | None, Time]
#: A point's C{last_*} member (but C{last_failed_connection}, a time): [peer id, time].
PointStamp = tuple[str, Time]


class PeerRecord(msgspec.Struct, gc=False):
    """
    A record of the C{peers} array.
    """

    peer_id: str
    created: Time
    trusted: bool = False
    peer_metadata: Any = msgspec.UNSET
    last_failed_connection: PeerStamp | None = None
    last_rejected_connection: PeerStamp | None = None
    last_established_connection: PeerStamp | None = None
    last_disconnection: PeerStamp | None = None
    events: list[RecordEvent] | None = None


class PointRecord(msgspec.Struct, gc=False):
    """
    A record of the C{points} array.
    """

    point: str
    trusted: bool = False
    expected_peer_id: str | None = None
    last_failed_connection: Time | None = None
    last_rejected_connection: PointStamp | None = None
    last_established_connection: PointStamp | None = None
    last_disconnection: PointStamp | None = None
    known_public: bool = False
    source_group: str | None = None
