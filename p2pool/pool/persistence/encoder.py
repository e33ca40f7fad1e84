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
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

from p2pool.core.addressing import Point
from p2pool.core.timestamps import format_time
from p2pool.pool.persistence.document import FORMAT, PeerRow, PointRow, Snapshot, kind_to_file, tezos_address

__all__ = ["WRITE_BATCH", "metadata_texts", "write_document"]

#: Records turned into text per write to the file.
WRITE_BATCH = 1000

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
    Per-batch memo of the JSON text pieces of times and addresses: the same
    values come back several times within a record and its neighbours (an
    event's time is often a last_* time, a peer's events name its address).
    A memo of a whole save would grow into one large table whose resizes
    each hold the interpreter for milliseconds: it is emptied after each
    batch (L{forget_batch}). Event kinds and source groups are few: they are
    kept for the whole save.
    """

    def __init__(self) -> None:
        #: The text of each time.
        self.times: dict[float, str] = {}
        #: C{{"addr": "...", "port": N}} of each point, Tezos style.
        self.address_objects: dict[Point, str] = {}
        #: The end of an event naming a point: its address object and the
        #: brace that closes the event (C{, "addr": "...", "port": N} and
        #: two closing braces).
        self.event_ends: dict[Point, str] = {}
        #: The same for an event as loaded from the file, by address and port.
        self.packed_event_ends: dict[tuple[str, int], str] = {}
        #: The start of an event of each kind, up to its time's text.
        self.event_starts: dict[str, str] = {}
        self.groups: dict[str, str] = {}

    def forget_batch(self) -> None:
        self.times.clear()
        self.address_objects.clear()
        self.event_ends.clear()
        self.packed_event_ends.clear()

    def time(self, t: float) -> str:
        text = self.times[t] = format_time(t)
        return text

    def address_object(self, point: Point) -> str:
        text = self.address_objects[point] = '{"addr": "%s", "port": %d}' % (tezos_address(point.ip), point.port)
        return text

    def event_end(self, point: Point) -> str:
        text = self.event_ends[point] = '", "addr": "%s", "port": %d}' % (tezos_address(point.ip), point.port)
        return text

    def packed_event_end(self, ip: str, port: int) -> str:
        text = self.packed_event_ends[ip, port] = '", "addr": "%s", "port": %d}' % (tezos_address(ip), port)
        return text

    def event_start(self, kind: str) -> str:
        text = self.event_starts[kind] = '{"kind": %s, "timestamp": "' % json.dumps(kind_to_file(kind))
        return text

    def group(self, group: str) -> str:
        text = self.groups[group] = ', "source_group": %s' % json.dumps(group)
        return text


# The fixed pieces of the records' text, between the values.
_PEER_STAMP_STARTS = (
    ', "last_failed_connection": [',
    ', "last_rejected_connection": [',
    ', "last_established_connection": [',
    ', "last_disconnection": [',
)
_POINT_STAMP_STARTS = (
    ', "last_rejected_connection": ["',
    ', "last_established_connection": ["',
    ', "last_disconnection": ["',
)
_PEER_TRUSTED = ('", "trusted": false, "peer_metadata": ', '", "trusted": true, "peer_metadata": ')
_POINT_FLAGS = (
    ('", "trusted": false, "known_public": false', '", "trusted": false, "known_public": true'),
    ('", "trusted": true, "known_public": false', '", "trusted": true, "known_public": true'),
)


def _peer_texts(rows: Iterable[PeerRow], texts: _Texts, out: list[str]) -> None:
    """
    Append the pieces of the JSON text of C{rows} (peers), one per line.
    """
    times, time = texts.times, texts.time
    address_objects, address_object = texts.address_objects, texts.address_object
    event_ends, event_end = texts.event_ends, texts.event_end
    packed_event_ends, packed_event_end = texts.packed_event_ends, texts.packed_event_end
    event_starts, event_start = texts.event_starts, texts.event_start
    extend, append = out.extend, out.append
    stamp_starts = _PEER_STAMP_STARTS
    separator = '{"peer_id": "'
    for peer_id, created, trusted, metadata, f_by, f_at, r_by, r_at, e_by, e_at, d_by, d_at, events in rows:
        extend((separator, str(peer_id), '", "created": "', times.get(created) or time(created)))
        extend((_PEER_TRUSTED[1 if trusted else 0], metadata))
        separator = ',\n{"peer_id": "'
        for start, point, t in zip(stamp_starts, (f_by, r_by, e_by, d_by), (f_at, r_at, e_at, d_at)):
            if t is not None:
                if point is None:
                    extend((start, 'null, "', times.get(t) or time(t), '"]'))
                else:
                    where = address_objects.get(point) or address_object(point)
                    extend((start, where, ', "', times.get(t) or time(t), '"]'))
        append(', "events": [')
        comma = ""
        for event in events:
            if type(event) is tuple:
                # As loaded from the file (PackedEvent).
                kind, t, ip, port = event
                if ip is None:
                    end = '"}'
                else:
                    end = packed_event_ends.get((ip, port)) or packed_event_end(ip, port)
            else:
                kind, t, point = event.kind, event.timestamp, event.point
                end = '"}' if point is None else event_ends.get(point) or event_end(point)
            extend((comma, event_starts.get(kind) or event_start(kind), times.get(t) or time(t), end))
            comma = ", "
        append("]}")


def _point_texts(rows: Iterable[PointRow], texts: _Texts, out: list[str]) -> None:
    """
    The same for points.
    """
    times, time, groups, group = texts.times, texts.time, texts.groups, texts.group
    extend, append = out.extend, out.append
    separator = '{"point": "'
    for point, trusted, expected, known_public, failed, r_by, r_at, e_by, e_at, d_by, d_at, source_group in rows:
        extend((separator, str(point), _POINT_FLAGS[1 if trusted else 0][1 if known_public else 0]))
        separator = ',\n{"point": "'
        if expected is not None:
            extend((', "expected_peer_id": "', str(expected), '"'))
        if failed is not None:
            extend((', "last_failed_connection": "', times.get(failed) or time(failed), '"'))
        for start, peer_id, t in zip(_POINT_STAMP_STARTS, (r_by, e_by, d_by), (r_at, e_at, d_at)):
            if t is not None:
                extend((start, str(peer_id), '", "', times.get(t) or time(t), '"]'))
        if source_group is not None:
            append(groups.get(source_group) or group(source_group))
        append("}")


def _write_records(
    out: IO[bytes], columns: list[list[Any]], encode: Callable[[Iterable[Any], _Texts, list[str]], None], texts: _Texts
) -> None:
    """
    Write the records whose values are in C{columns} (see L{Snapshot}) as
    the body of a JSON array, one record per line, in batches, so that no
    single step holds the interpreter long; then empty the columns, a batch
    at a time for the same reason.
    """
    count = len(columns[0]) if columns else 0
    for start in range(0, count, WRITE_BATCH):
        # Between two batches, what is between two records of one.
        pieces: list[str] = [",\n"] if start else []
        encode(zip(*[column[start : start + WRITE_BATCH] for column in columns]), texts, pieces)
        out.write("".join(pieces).encode("ascii"))
        texts.forget_batch()
    while count and columns[0]:
        for column in columns:
            del column[-WRITE_BATCH:]


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
        "peers": [str(p) for p in snapshot.banned_peers],
    }
    if snapshot.peer_bans_by_ip:
        bans["peers_by_ip"] = [{"ip": addr, "peer_id": str(p)} for addr, p in snapshot.peer_bans_by_ip]
    header = '{"format": %d, "network": %s, "saved_at": "%s",\n"bans": %s,\n"peers": [\n' % (
        FORMAT,
        json.dumps(snapshot.network),
        format_time(snapshot.saved_at),
        json.dumps(bans),
    )
    out.write(header.encode("ascii"))
    _write_records(out, snapshot.peers, _peer_texts, texts)
    out.write(b'\n],\n"points": [\n')
    _write_records(out, snapshot.points, _point_texts, texts)
    out.write(b"\n]}\n")
