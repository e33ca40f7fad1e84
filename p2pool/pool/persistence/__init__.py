# -*- test-case-name: tests.test_persistence -*-
"""
The peers file (C{peers.json}): the known peers, the known points and the
bans, saved atomically at every checkpoint and at shutdown, loaded at start,
and never a reason not to start.

The file is one JSON object::

    {"format": 1, "network": "p2pool-mainnet", "saved_at": "2024-05-01T12:00:00.000Z",
     "bans": {"ips": ["10.0.0.0/8"], "peers": ["id..."]},
     "peers": [{"peer_id": "id...", "created": "...", "trusted": false, "peer_metadata": null,
                "last_established_connection": [{"addr": "::ffff:1.2.3.4", "port": 9732}, "..."],
                "events": [{"kind": "connection_established", "timestamp": "...",
                            "addr": "::ffff:1.2.3.4", "port": 9732}]}],
     "points": [{"point": "1.2.3.4:9732", "trusted": false, "known_public": true,
                 "last_established_connection": ["id...", "..."]}]}

The bans come first, so that a node can put them in force and listen
before it has read the records (L{read_head}); a file with its members in
any other order is read as well.

Peer objects keep the field names of Tezos's C{peers.json}; times are RFC
3339 with three fractional digits (L{p2pool.core.timestamps}). See
C{docs/PEERS_FILE.md}.

The work is split by concern, so that the reactor never waits long:

  - L{p2pool.pool.persistence.snapshot}: on the reactor thread, copy the pool's
    tables into a L{Snapshot} of plain values, a slice of records per
    reactor turn (L{snapshot_pool}); put a loaded file's records into the
    tables, a slice per turn, merged into what the pool learnt since it
    started (L{apply_content_in_slices});
  - L{p2pool.pool.persistence.document}: what the file holds, on both sides of
    the text;
  - L{p2pool.pool.persistence.encoder} and L{p2pool.pool.persistence.decoder}: a
    snapshot as JSON text, and the bytes of a file as checked records;
  - L{p2pool.pool.persistence.store}: the files on disk: the atomic write with
    its C{.bak} generation (L{write_atomically}, L{write_snapshot}), and
    the load that moves a damaged file aside and falls back on the C{.bak}
    (L{read_peers_file}). Blocking: run in the reactor's thread pool;
  - L{p2pool.pool.persistence.peers_file}: L{PeersFile} ties them together for
    a pool: one save at a time (a request during a save is coalesced into
    one follow-up), failures logged and counted, never raised.
"""

from p2pool.core.timestamps import format_time, parse_time
from p2pool.pool.persistence.decoder import decode_document
from p2pool.pool.persistence.document import (
    FORMAT,
    NO_METADATA,
    FileHead,
    IncompatibleFile,
    PeersFileContent,
    PeersFileError,
    RecordProblem,
    Snapshot,
)
from p2pool.pool.persistence.encoder import WRITE_BATCH
from p2pool.pool.persistence.peers_file import MAX_REPORTED_PROBLEMS, RESTART_DIAL_SPREAD, PeersFile
from p2pool.pool.persistence.snapshot import (
    APPLY_SLICE,
    SNAPSHOT_SLICE,
    Applied,
    apply_content,
    apply_content_in_slices,
    snapshot_pool,
)
from p2pool.pool.persistence.store import (
    BACKUP_SUFFIX,
    CORRUPT_INFIX,
    TEMPORARY_SUFFIX,
    LoadOutcome,
    file_fingerprint,
    read_head,
    read_peers_file,
    write_atomically,
    write_snapshot,
)

__all__ = [
    "APPLY_SLICE",
    "Applied",
    "BACKUP_SUFFIX",
    "CORRUPT_INFIX",
    "FORMAT",
    "FileHead",
    "IncompatibleFile",
    "LoadOutcome",
    "MAX_REPORTED_PROBLEMS",
    "NO_METADATA",
    "PeersFile",
    "PeersFileContent",
    "PeersFileError",
    "RESTART_DIAL_SPREAD",
    "RecordProblem",
    "SNAPSHOT_SLICE",
    "Snapshot",
    "TEMPORARY_SUFFIX",
    "WRITE_BATCH",
    "apply_content",
    "apply_content_in_slices",
    "decode_document",
    "file_fingerprint",
    "format_time",
    "parse_time",
    "read_head",
    "read_peers_file",
    "snapshot_pool",
    "write_atomically",
    "write_snapshot",
]
