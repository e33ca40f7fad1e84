# -*- test-case-name: tests.test_persistence -*-
"""
A L{Snapshot} as the JSON text of a peers file, one record per line.

The text of each record is put together from pieces (times, peer ids,
addresses) remembered while a batch of records is written: most come back
several times. Writing is blocking and meant for a thread; it holds the
interpreter for at most one batch of L{WRITE_BATCH} records at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import IO, Any, TypeVar

from p2pool.core.addressing import PeerId, Point
from p2pool.core.timestamps import format_time
from p2pool.pool.persistence.document import FORMAT, PeerRow, PointRow, Snapshot, kind_to_file, tezos_address

__all__ = ["WRITE_BATCH", "metadata_texts", "write_document"]

#: Records turned into text per write to the file.
WRITE_BATCH = 1000

T = TypeVar("T")

# Made once: json.dumps with options makes a new encoder at every call.
_METADATA_ENCODER = json.JSONEncoder(allow_nan=False)
# Encoded between the values of a batch, so that the batch's text splits
# into theirs. The split cannot miss a boundary: that would take a value
# whose text ends with ", " and the boundary's text, and no JSON value's
# text does (a string's has no unescaped quote inside, a container's ends
# with a bracket). A value whose text holds the boundary's gives more
# pieces than values: the values are then encoded one at a time.
_BOUNDARY = "\x00"
_BOUNDARY_TEXT = ", " + json.dumps(_BOUNDARY) + ", "


def _metadata_text(value: Any) -> str | None:
    try:
        return _METADATA_ENCODER.encode(value)
    except Exception:
        return None


def metadata_texts(values: Sequence[Any]) -> list[str | None]:
    """
    The compact ASCII JSON text of each of C{values}, peers' metadata as
    the application's C{encode_metadata} returned it; None for a value
    that is not JSON (NaN, an infinity, a cycle, something that is not a
    JSON type).

    The values are encoded together, in one call of the encoder: calling it
    for each value costs several times as much as the encoding itself.
    """
    if not values:
        return []
    batch: list[Any] = [_BOUNDARY] * (2 * len(values) - 1)
    batch[::2] = values
    try:
        texts: list[str | None] = list(_METADATA_ENCODER.encode(batch)[1:-1].split(_BOUNDARY_TEXT))
    except Exception:
        texts = []
    if len(texts) != len(values):
        texts = [_metadata_text(value) for value in values]
    return texts


class _Texts:
    """
    Per-save memo of the JSON texts of times, peer ids and addresses: the
    same values come back many times (an event's time is often a last_*
    time, a peer's events name its address, the points name the peers).
    """

    def __init__(self) -> None:
        self.times: dict[float, str] = {}
        self.peer_ids: dict[PeerId, str] = {}
        self.addresses: dict[Point, str] = {}
        self.ip_addresses: dict[tuple[str, int], str] = {}
        self.kinds: dict[str, str] = {}

    def forget_batch(self) -> None:
        """
        Forget the times and addresses: they repeat within a record and
        its neighbours, and a memo of them all would grow into one large
        table whose resizes each hold the interpreter for milliseconds.
        Peer ids are kept (the points name the peers).
        """
        self.times.clear()
        self.addresses.clear()
        self.ip_addresses.clear()

    def time(self, t: float) -> str:
        text = self.times.get(t)
        if text is None:
            text = self.times[t] = format_time(t)
        return text

    def peer_id(self, peer_id: PeerId) -> str:
        text = self.peer_ids.get(peer_id)
        if text is None:
            text = self.peer_ids[peer_id] = str(peer_id)
        return text

    def address(self, point: Point) -> str:
        """
        C{"addr": "...", "port": N} of C{point}, Tezos style.
        """
        text = self.addresses.get(point)
        if text is None:
            text = self.addresses[point] = '"addr": "%s", "port": %d' % (tezos_address(point.ip), point.port)
        return text

    def ip_address(self, ip: str, port: int) -> str:
        """
        C{"addr": "...", "port": N} of an address and port, Tezos style.
        """
        key = (ip, port)
        text = self.ip_addresses.get(key)
        if text is None:
            text = self.ip_addresses[key] = '"addr": "%s", "port": %d' % (tezos_address(ip), port)
        return text

    def kind(self, kind: str) -> str:
        text = self.kinds.get(kind)
        if text is None:
            text = self.kinds[kind] = json.dumps(kind_to_file(kind))
        return text


_PEER_STAMPS = (
    "last_failed_connection",
    "last_rejected_connection",
    "last_established_connection",
    "last_disconnection",
)
_POINT_STAMPS = _PEER_STAMPS[1:]


def _peer_json(row: PeerRow, texts: _Texts) -> str:
    peer_id, created, trusted, metadata, failed, rejected, established, disconnection, events = row
    time_text = texts.time
    address = texts.address
    parts = [
        '{"peer_id": "%s", "created": "%s", "trusted": %s, "peer_metadata": %s'
        % (texts.peer_id(peer_id), time_text(created), "true" if trusted else "false", metadata)
    ]
    for name, stamp in zip(_PEER_STAMPS, (failed, rejected, established, disconnection)):
        if stamp is not None:
            point = stamp[0]
            if point is None:
                parts.append(', "%s": [null, "%s"]' % (name, time_text(stamp[1])))
            else:
                parts.append(', "%s": [{%s}, "%s"]' % (name, address(point), time_text(stamp[1])))
    kind_text = texts.kind
    event_texts = []
    for event in events:
        if type(event) is tuple:
            # As loaded from the file (PackedEvent).
            kind, timestamp, ip, port = event
            where = None if ip is None else texts.ip_address(ip, port)
        else:
            kind, timestamp, point = event.kind, event.timestamp, event.point
            where = None if point is None else address(point)
        if where is None:
            event_texts.append('{"kind": %s, "timestamp": "%s"}' % (kind_text(kind), time_text(timestamp)))
        else:
            event_texts.append('{"kind": %s, "timestamp": "%s", %s}' % (kind_text(kind), time_text(timestamp), where))
    parts.append(', "events": [%s]}' % ", ".join(event_texts))
    return "".join(parts)


def _point_json(row: PointRow, texts: _Texts) -> str:
    point, trusted, expected, known_public, failed, rejected, established, disconnection, source_group = row
    parts = [
        '{"point": "',
        str(point),
        '", "trusted": ',
        "true" if trusted else "false",
        ', "known_public": ',
        "true" if known_public else "false",
    ]
    if expected is not None:
        parts.append(', "expected_peer_id": "%s"' % texts.peer_id(expected))
    if failed is not None:
        parts.append(', "last_failed_connection": "%s"' % texts.time(failed))
    for name, stamp in zip(_POINT_STAMPS, (rejected, established, disconnection)):
        if stamp is not None:
            parts.append(', "%s": ["%s", "%s"]' % (name, texts.peer_id(stamp[0]), texts.time(stamp[1])))
    if source_group is not None:
        parts.append(', "source_group": %s' % json.dumps(source_group))
    parts.append("}")
    return "".join(parts)


def _write_records(out: IO[bytes], rows: list[T], encode: Callable[[T, _Texts], str], texts: _Texts) -> None:
    """
    Write C{rows} as the body of a JSON array, one record per line, in
    batches, so that no single step holds the interpreter long; then empty
    C{rows}, a batch at a time for the same reason.
    """
    for start in range(0, len(rows), WRITE_BATCH):
        batch = rows[start : start + WRITE_BATCH]
        text = ",\n".join([encode(row, texts) for row in batch])
        if start + WRITE_BATCH < len(rows):
            text += ",\n"
        out.write(text.encode("ascii"))
        texts.forget_batch()
    while rows:
        del rows[-WRITE_BATCH:]


def write_document(out: IO[bytes], snapshot: Snapshot) -> None:
    """
    Write C{snapshot} to C{out} as a peers file. The snapshot's lists are
    emptied on the way (a large snapshot is freed here, a slice at a time,
    not all at once on the reactor thread).
    """
    texts = _Texts()
    # The bans come before the records: a node reads them (and the header)
    # first and starts listening with them in force while it builds the
    # records (see L{p2pool.pool.persistence.store.read_head}).
    bans: dict[str, Any] = {
        "ips": list(snapshot.banned_ips),
        "peers": [texts.peer_id(p) for p in snapshot.banned_peers],
    }
    if snapshot.peer_bans_by_ip:
        bans["peers_by_ip"] = [{"ip": addr, "peer_id": texts.peer_id(p)} for addr, p in snapshot.peer_bans_by_ip]
    header = '{"format": %d, "network": %s, "saved_at": "%s",\n"bans": %s,\n"peers": [\n' % (
        FORMAT,
        json.dumps(snapshot.network),
        format_time(snapshot.saved_at),
        json.dumps(bans),
    )
    out.write(header.encode("ascii"))
    _write_records(out, snapshot.peers, _peer_json, texts)
    out.write(b'\n],\n"points": [\n')
    _write_records(out, snapshot.points, _point_json, texts)
    out.write(b"\n]}\n")
