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


#: (peer_id, created, trusted through the API, metadata JSON text, last_failed_connection,
#: last_rejected_connection, last_established_connection, last_disconnection,
#: events); each last_* is None or (Point or None, time).
PeerRow = tuple[Any, ...]
#: (point, trusted through the API, expected_peer_id, known_public, last_failed_connection,
#: last_rejected_connection, last_established_connection, last_disconnection,
#: source_group).
PointRow = tuple[Any, ...]


@attrs.frozen
class Snapshot:
    """
    What a save writes, copied from the pool on the reactor thread. The
    rows hold only values nothing changes (peer ids, points, times, tuples
    of events, JSON text), so a thread may read them while the reactor
    runs; the lists belong to the writer, which empties them.
    """

    network: str
    saved_at: float
    peers: list[PeerRow]
    points: list[PointRow]
    banned_ips: list[str]
    banned_peers: list[PeerId]
    metadata_errors: int = 0
    #: (address, peer id) of each peer ban placed by banning that address.
    peer_bans_by_ip: list[tuple[str, PeerId]] = attrs.field(factory=list)


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
