# -*- test-case-name: tests.test_persistence -*-
"""
What a peers file holds, on both sides of the JSON text: the layout
version, the rows a save writes (L{Snapshot}), the records a load reads
(L{PeersFileContent}), and the errors of a file that cannot be used.

The encoder (L{p2pool.pool.persistence.encoder}) turns a L{Snapshot} into the
text; the decoder (L{p2pool.pool.persistence.decoder}) turns the text into a
L{PeersFileContent}. The names and forms they share are here.
"""

from __future__ import annotations

from typing import Any

import attrs

from p2pool.core.addressing import PeerId
from p2pool.core.states import PeerInfo, PointInfo

__all__ = [
    "FORMAT",
    "FileHead",
    "IncompatibleFile",
    "NO_METADATA",
    "PEER_ROW_SIZE",
    "POINT_ROW_SIZE",
    "PeerRow",
    "PeersFileContent",
    "PeersFileError",
    "PointRow",
    "RECORD_SECTIONS",
    "RecordProblem",
    "SECTIONS",
    "Snapshot",
    "kind_from_file",
    "kind_to_file",
    "tezos_address",
]

#: The version of the file layout this version writes and reads.
FORMAT = 1
#: The sections of records, in the order their problems are reported.
SECTIONS = ("peers", "points", "bans.ips", "bans.peers", "bans.peers_by_ip")
#: The top-level members that hold the records.
RECORD_SECTIONS = ("peers", "points")

# Tezos writes the peer event of an accepted incoming request as
# "incoming_request"; the pool's state machine calls it "accepting_request".
_KIND_TO_FILE = {"accepting_request": "incoming_request"}
_KIND_FROM_FILE = {v: k for k, v in _KIND_TO_FILE.items()}


def kind_to_file(kind: str) -> str:
    """
    The name the file gives the peer event C{kind} (Tezos's name).
    """
    return _KIND_TO_FILE.get(kind, kind)


def kind_from_file(kind: str) -> str:
    """
    The pool's name of the peer event the file calls C{kind}.
    """
    return _KIND_FROM_FILE.get(kind, kind)


def tezos_address(ip: str) -> str:
    """
    An address as Tezos writes it (C{Ipaddr.V6.to_string}): IPv4 as
    IPv4-mapped IPv6.
    """
    return ip if ":" in ip else "::ffff:" + ip


#: A peer as the writer takes it: (peer_id, created, trusted through the API,
#: metadata JSON text, then the last_failed_connection, last_rejected_connection,
#: last_established_connection and last_disconnection stamps laid flat (point
#: or None, time: None and None for no stamp; see PeerInfo.stamp_values),
#: events). A snapshot holds the peers by column (L{Snapshot.peers}).
PeerRow = tuple[Any, ...]
#: A point as the writer takes it: (point, trusted through the API,
#: expected_peer_id, known_public, last_failed_connection (a time), then the
#: last_rejected_connection, last_established_connection and last_disconnection
#: stamps laid flat (peer id, time: None and None for no stamp; see
#: PointInfo.stamp_values), source_group). By column in a snapshot.
PointRow = tuple[Any, ...]
#: Values in L{PeerRow} and in L{PointRow}.
PEER_ROW_SIZE = 13
POINT_ROW_SIZE = 12


@attrs.frozen
class Snapshot:
    """
    What a save writes, copied from the pool on the reactor thread. It
    holds only values nothing changes (peer ids, points, times, tuples of
    events, JSON text), so a thread may read them while the reactor runs;
    the lists belong to the writer, which empties them.

    The peers and the points are held by column: C{peers[k][i]} is the
    C{k}th value of the C{i}th peer's L{PeerRow}, and the same for
    C{points}; no columns at all is no records. A column is one list
    whatever the number of records, where rows would be one more object
    per record for the cyclic garbage collector: with a large book, the
    rows of a snapshot made it walk the whole heap once more during the
    save, on the reactor thread.
    """

    network: str
    saved_at: float
    peers: list[list[Any]]
    points: list[list[Any]]
    banned_ips: list[str]
    banned_peers: list[PeerId]
    metadata_errors: int = 0
    #: (address, peer id) of each peer ban placed by banning that address.
    peer_bans_by_ip: list[tuple[str, PeerId]] = attrs.field(factory=list)

    @property
    def peer_count(self) -> int:
        return len(self.peers[0]) if self.peers else 0

    @property
    def point_count(self) -> int:
        return len(self.points[0]) if self.points else 0


class PeersFileError(ValueError):
    """
    The file as a whole cannot be used: not JSON, truncated, or not shaped
    like a peers file. The message says what is wrong.
    """


class IncompatibleFile(Exception):
    """
    A well-formed peers file this node must neither load nor overwrite: a
    newer C{format}, or another C{network}.

    @ivar reason: C{"format"} or C{"network"}.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@attrs.frozen
class RecordProblem:
    """
    A record skipped while loading: its section (C{peers}, C{points},
    C{bans.ips}, C{bans.peers}, C{bans.peers_by_ip}), its index there, and
    what is wrong.
    """

    section: str
    index: int
    problem: str


@attrs.frozen
class FileHead:
    """
    The head of a peers file, read before its records: its time and its
    bans (a file written by this version holds them before the records).
    """

    saved_at: float | None
    banned_ips: list[str]
    banned_peers: list[PeerId]
    peer_bans_by_ip: list[tuple[str, PeerId]]


#: Stands for the peer_metadata of a record that has none, in a loaded
#: L{PeerInfo} whose metadata is not decoded yet.
NO_METADATA = object()


@attrs.define
class PeersFileContent:
    """
    A decoded peers file: the good records, and the problems of the
    skipped ones.

    The peers are L{PeerInfo} objects in state Disconnected whose
    C{metadata} is still the JSON value from the file (or L{NO_METADATA}):
    the application decodes it on the reactor thread
    (L{p2pool.pool.persistence.snapshot.apply_content}). The points are
    L{PointInfo} objects in state Disconnected, with no reconnection
    back-off.
    """

    network: str
    saved_at: float | None
    peers: list[PeerInfo]
    points: list[PointInfo]
    banned_ips: list[str]
    banned_peers: list[PeerId]
    skipped: list[RecordProblem] = attrs.field(factory=list)
    #: (address, peer id) of each peer ban placed by banning that address.
    peer_bans_by_ip: list[tuple[str, PeerId]] = attrs.field(factory=list)
    #: Records of a section (C{peers}, C{points}) beyond what the tables
    #: keep, parsed but not built: how many, by section.
    left_out: dict[str, int] = attrs.field(factory=dict)
    #: Skipped records beyond those C{skipped} lists (the first 1000 of
    #: each section): how many.
    unlisted: int = 0
