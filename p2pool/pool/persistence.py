# -*- test-case-name: tests.test_persistence -*-
"""
The peers file (C{peers.json}): the known peers, the known points and the
bans, saved atomically at every checkpoint and at shutdown, loaded at start,
and never a reason not to start.

The file is one JSON object::

    {"format": 1, "network": "p2pool-mainnet", "saved_at": "2024-05-01T12:00:00.000Z",
     "peers": [{"peer_id": "id...", "created": "...", "trusted": false, "peer_metadata": null,
                "last_established_connection": [{"addr": "::ffff:1.2.3.4", "port": 9732}, "..."],
                "events": [{"kind": "connection_established", "timestamp": "...",
                            "addr": "::ffff:1.2.3.4", "port": 9732}]}],
     "points": [{"point": "1.2.3.4:9732", "trusted": false, "known_public": true,
                 "last_established_connection": ["id...", "..."]}],
     "bans": {"ips": ["10.0.0.0/8"], "peers": ["id..."]}}

Peer objects keep the field names of Tezos's C{peers.json}; times are RFC
3339 with three fractional digits. See C{docs/PEERS_FILE.md}.

The work is split so that the reactor never waits long:

  - L{snapshot_pool} copies the tables into plain tuples on the reactor
    thread, a slice of L{SNAPSHOT_SLICE} records per reactor turn;
  - L{write_snapshot} turns them into JSON text and writes it atomically
    (L{write_atomically}); L{read_peers_file} reads and checks a file.
    Both are blocking and run in the reactor's thread pool;
  - L{apply_content} puts what was read into the pool's tables, on the
    reactor thread.

L{PeersFile} ties them together for a pool: one save at a time (a request
during a save is coalesced into one follow-up), failures logged and
counted, never raised.
"""

from __future__ import annotations

import collections
import datetime
import errno
import gc
import hashlib
import json
import os
import shutil
import time
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import IO, TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pool.core.acl import IPBlacklist
from p2pool.core.addressing import AddressError, PeerId, Point
from p2pool.events import EventKind
from p2pool.core.lifetime import weak_owner
from p2pool.core.states import EVENT_RING_SIZE, PeerInfo, PointInfo, StateEvent

if TYPE_CHECKING:
    from p2pool.pool.service import Pool

__all__ = [
    "FORMAT",
    "IncompatibleFile",
    "LoadOutcome",
    "NO_METADATA",
    "PeersFile",
    "PeersFileContent",
    "PeersFileError",
    "RecordProblem",
    "Snapshot",
    "apply_content",
    "decode_document",
    "format_time",
    "parse_time",
    "read_peers_file",
    "snapshot_pool",
    "write_atomically",
    "write_snapshot",
]

#: The version of the file layout this module writes and reads.
FORMAT = 1
#: Records copied per reactor turn when taking a snapshot.
SNAPSHOT_SLICE = 2000
#: Records turned into text per write to the temporary file.
WRITE_BATCH = 1000
#: Skipped records reported one by one at load; the rest are counted.
MAX_REPORTED_PROBLEMS = 100
#: Seconds over which a pool without maintenance spreads its dials to the
#: loaded points it was connected to before the restart.
RESTART_DIAL_SPREAD = 3.0

BACKUP_SUFFIX = ".bak"
TEMPORARY_SUFFIX = ".tmp"
CORRUPT_INFIX = ".corrupt-"

_log = Logger()

# Tezos writes the peer event of an accepted incoming request as
# "incoming_request"; the pool's state machine calls it "accepting_request".
_KIND_TO_FILE = {"accepting_request": "incoming_request"}
_KIND_FROM_FILE = {v: k for k, v in _KIND_TO_FILE.items()}

T = TypeVar("T")


# ---------------------------------------------------------------------------
# Times


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
#: The times RFC 3339 can write: years 0001 to 9999.
_FIRST_TIME = (datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc) - _EPOCH).total_seconds()
_LAST_TIME = (datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc) - _EPOCH).total_seconds()
_day_prefixes: dict[int, str] = {}
# Text pieces, so that formatting a time is a few lookups.
_HOUR_MINUTE = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SECOND = [f"{s:02d}." for s in range(60)]
_MILLISECOND = [f"{ms:03d}Z" for ms in range(1000)]


def _day_prefix(day: int) -> str:
    date = _EPOCH + datetime.timedelta(days=day)
    prefix = f"{date.year:04d}-{date.month:02d}-{date.day:02d}T"
    if len(_day_prefixes) < 100_000:
        _day_prefixes[day] = prefix
    return prefix


def format_time(t: float) -> str:
    """
    C{t} (seconds since the epoch) as RFC 3339 text in UTC with three
    fractional digits: C{2024-05-01T12:00:00.250Z}.
    """
    sec, ms = divmod(round(t * 1000.0), 1000)
    day, rem = divmod(sec, 86400)
    minutes, second = divmod(rem, 60)
    return (_day_prefixes.get(day) or _day_prefix(day)) + _HOUR_MINUTE[minutes] + _SECOND[second] + _MILLISECOND[ms]


def parse_time(value: object) -> float:
    """
    Seconds since the epoch from an RFC 3339 string with an offset (C{Z},
    C{+02:00}, C{-00:00}) or, as Tezos also reads, a number of seconds.

    @raise ValueError: neither.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an RFC 3339 time: {value!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"time without a UTC offset: {value!r}")
        t = parsed.timestamp()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            t = float(value)
        except OverflowError:
            raise ValueError(f"time out of range: {value!r}") from None
    else:
        raise ValueError(f"expected a time, got {_kind(value)}")
    # Also refuses NaN and infinities, which json.loads accepts.
    if not _FIRST_TIME <= t <= _LAST_TIME:
        raise ValueError(f"time out of range: {value!r}")
    return t


# ---------------------------------------------------------------------------
# Peer ids and addresses, fast

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_PAIRS = [a + b for a in _B58 for b in _B58]
_PAIR_INDEX = {pair: i for i, pair in enumerate(_PAIRS)}
_PEER_ID_PREFIX = b"\x99\x67"


def _peer_id_text(peer_id: PeerId) -> str:
    """
    C{str(peer_id)}, computed two base58 digits at a time.
    """
    payload = _PEER_ID_PREFIX + peer_id.raw
    number = int.from_bytes(payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4], "big")
    digits = []
    while number:
        number, pair = divmod(number, 3364)
        digits.append(_PAIRS[pair])
    # The payload starts with a non-zero byte: no leading "1" is meaningful.
    return "".join(reversed(digits)).lstrip("1")


def _parse_peer_id(text: object) -> PeerId:
    """
    L{PeerId.parse}, decoding two base58 digits at a time.

    @raise AddressError: C{text} is not a peer id.
    """
    if not isinstance(text, str):
        raise AddressError(f"a peer id is a string, not {_kind(text)}")
    if len(text) > 32:
        # Not a peer id; decoding it here would cost time quadratic in its length.
        return PeerId.parse(text)
    padded = text if len(text) % 2 == 0 else "1" + text
    number = 0
    try:
        for i in range(0, len(padded), 2):
            number = number * 3364 + _PAIR_INDEX[padded[i : i + 2]]
    except KeyError:
        return PeerId.parse(text)
    if number.bit_length() > 8 * 22:
        return PeerId.parse(text)
    decoded = number.to_bytes(22, "big")
    payload, check = decoded[:18], decoded[18:]
    if not payload.startswith(_PEER_ID_PREFIX) or hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != check:
        return PeerId.parse(text)
    return PeerId(payload[2:])


def _addr_text(ip: str) -> str:
    """
    An address as Tezos writes it (C{Ipaddr.V6.to_string}): IPv4 as
    IPv4-mapped IPv6.
    """
    return ip if ":" in ip else "::ffff:" + ip


# ---------------------------------------------------------------------------
# Snapshots: plain data taken on the reactor thread

#: (peer_id, created, trusted, metadata JSON text, last_failed_connection,
#: last_rejected_connection, last_established_connection, last_disconnection,
#: events); each last_* is None or (Point or None, time).
PeerRow = tuple[Any, ...]
#: (point, trusted, expected_peer_id, known_public, last_failed_connection,
#: last_rejected_connection, last_established_connection, last_disconnection).
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


def _not_json(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _json_encoder() -> Callable[[Any], str]:
    """
    A function from a JSON value to compact ASCII JSON text that refuses
    NaN and infinities, made once (C{json.dumps} with options builds a new
    encoder at every call).
    """
    if c_make_encoder is None:  # pragma: no cover (CPython has it)
        return json.JSONEncoder(allow_nan=False, default=_not_json).encode
    # markers, default, encoder, indent, key separator, item separator,
    # sort_keys, skipkeys, allow_nan. Without markers a cycle ends in
    # RecursionError instead of ValueError: both are reported the same.
    encoder = c_make_encoder(None, _not_json, encode_basestring_ascii, None, ": ", ", ", False, False, False)
    return lambda value: "".join(encoder(value, 0))


_to_json = _json_encoder()


def _peer_row(info: PeerInfo, encode: Callable[[Any], Any]) -> tuple[PeerRow, bool]:
    ok = True
    try:
        value = encode(info.metadata)
        text = "null" if value is None else _to_json(value)
    except Exception:
        text, ok = "null", False
    events = info._events
    return (
        (
            info.peer_id,
            info.created,
            info.trusted,
            text,
            info.last_failed_connection,
            info.last_rejected_connection,
            info.last_established_connection,
            info.last_disconnection,
            tuple(events) if events else (),
        ),
        ok,
    )


def _point_row(info: PointInfo) -> PointRow:
    return (
        info.point,
        info.trusted,
        info.expected_peer_id,
        info.known_public,
        info.last_failed_connection,
        info.last_rejected_connection,
        info.last_established_connection,
        info.last_disconnection,
    )


async def snapshot_pool(pool: Pool, clock: Any, slice_size: int = SNAPSHOT_SLICE) -> Snapshot:
    """
    Copy C{pool}'s peers, points and bans into a L{Snapshot}, running at
    most C{slice_size} records per reactor turn (so a large table never
    holds the reactor long). Records added while the snapshot is taken may
    be missed: they are in the next one.

    The application's C{encode_metadata} runs here, on the reactor thread,
    and its result is turned into JSON text at once.
    """
    encode = pool._meta.encode_metadata
    peer_infos = list(pool._peers)
    saved_at = pool.now()
    banned_ips = pool.acl.ip_blacklist.listing()
    banned_peers = pool.acl.peer_blacklist.listing()
    peers: list[PeerRow] = []
    points: list[PointRow] = []
    errors = 0
    budget = slice_size
    for info in peer_infos:
        if budget <= 0:
            await deferLater(clock, 0, lambda: None)
            budget = slice_size
        budget -= 1
        row, ok = _peer_row(info, encode)
        peers.append(row)
        if not ok:
            errors += 1
    # Copying a large table takes milliseconds: when the points do not
    # fit in what is left of this turn, copy them in the next one.
    if len(pool._points) > budget:
        await deferLater(clock, 0, lambda: None)
        budget = slice_size
    point_infos = list(pool._points)
    for point_info in point_infos:
        if budget <= 0:
            await deferLater(clock, 0, lambda: None)
            budget = slice_size
        budget -= 1
        points.append(_point_row(point_info))
    return Snapshot(pool.config.network, saved_at, peers, points, banned_ips, banned_peers, errors)


# ---------------------------------------------------------------------------
# Writing (blocking: run in a thread)


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

    def time(self, t: float) -> str:
        text = self.times.get(t)
        if text is None:
            text = self.times[t] = format_time(t)
        return text

    def peer_id(self, peer_id: PeerId) -> str:
        text = self.peer_ids.get(peer_id)
        if text is None:
            text = self.peer_ids[peer_id] = _peer_id_text(peer_id)
        return text

    def address(self, point: Point) -> str:
        """
        C{"addr": "...", "port": N} of C{point}, Tezos style.
        """
        text = self.addresses.get(point)
        if text is None:
            text = self.addresses[point] = '"addr": "%s", "port": %d' % (_addr_text(point.ip), point.port)
        return text

    def kind(self, kind: str) -> str:
        text = self.kinds.get(kind)
        if text is None:
            text = self.kinds[kind] = json.dumps(_KIND_TO_FILE.get(kind, kind))
        return text


_PEER_STAMPS = ("last_failed_connection", "last_rejected_connection", "last_established_connection", "last_disconnection")


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
        point = event.point
        if point is None:
            event_texts.append('{"kind": %s, "timestamp": "%s"}' % (kind_text(event.kind), time_text(event.timestamp)))
        else:
            event_texts.append(
                '{"kind": %s, "timestamp": "%s", %s}' % (kind_text(event.kind), time_text(event.timestamp), address(point))
            )
    parts.append(', "events": [%s]}' % ", ".join(event_texts))
    return "".join(parts)


def _point_json(row: PointRow, texts: _Texts) -> str:
    point, trusted, expected, known_public, failed, rejected, established, disconnection = row
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
    for name, stamp in (
        ("last_rejected_connection", rejected),
        ("last_established_connection", established),
        ("last_disconnection", disconnection),
    ):
        if stamp is not None:
            parts.append(', "%s": ["%s", "%s"]' % (name, texts.peer_id(stamp[0]), texts.time(stamp[1])))
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


def write_snapshot(path: str, snapshot: Snapshot, keep_backup: bool = True) -> int:
    """
    Write C{snapshot} to C{path} atomically (see L{write_atomically}).
    Blocking: meant for a thread. The snapshot's lists are emptied on the
    way (a large snapshot is freed here, a slice at a time, not all at
    once on the reactor thread).

    @return: the size of the file written, in bytes.
    @raise OSError: the file could not be written; C{path} is unchanged.
    """
    texts = _Texts()

    def body(out: IO[bytes]) -> None:
        header = '{"format": %d, "network": %s, "saved_at": "%s",\n"peers": [\n' % (
            FORMAT,
            json.dumps(snapshot.network),
            format_time(snapshot.saved_at),
        )
        out.write(header.encode("ascii"))
        _write_records(out, snapshot.peers, _peer_json, texts)
        out.write(b'\n],\n"points": [\n')
        _write_records(out, snapshot.points, _point_json, texts)
        bans = {"ips": list(snapshot.banned_ips), "peers": [texts.peer_id(p) for p in snapshot.banned_peers]}
        out.write(('\n],\n"bans": %s}\n' % json.dumps(bans)).encode("ascii"))

    return write_atomically(path, body, keep_backup)


def _sync_directory(directory: str) -> None:
    """
    fsync a directory, so that a rename in it is durable.

    @raise OSError: the directory cannot be opened or synced.
    """
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_atomically(path: str, content: Union[bytes, Callable[[IO[bytes]], None]], keep_backup: bool = True) -> int:
    """
    Replace C{path} with new content, whole or not at all: write
    C{path.tmp}, flush and fsync it; when C{keep_backup}, make the file it
    replaces C{path.bak} (a hard link, or a copy where links are not
    possible); rename the temporary file over C{path}; fsync the directory.
    The parent directory is created if missing.

    A crash at any moment leaves C{path} either the old file or the new
    one; C{path.bak} either the generation before or the old file.

    @param content: the bytes, or a function writing them to a file.
    @return: the size written, in bytes.
    @raise OSError: the write failed; C{path} is the old file, unless only
        the final directory fsync failed (the new file is then in place
        but perhaps not yet durable).
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = path + TEMPORARY_SUFFIX
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(content, bytes):
                out.write(content)
            else:
                content(out)
            out.flush()
            size = out.tell()
            os.fsync(out.fileno())
        if keep_backup and os.path.exists(path):
            _replace_backup(path)
        os.replace(temporary, path)
    except BaseException:
        _remove_quietly(temporary)
        raise
    _sync_directory(directory)
    return size


def _replace_backup(path: str) -> None:
    """
    Make C{path.bak} the current C{path}, atomically.
    """
    backup = path + BACKUP_SUFFIX
    staging = backup + TEMPORARY_SUFFIX
    _remove_quietly(staging)
    try:
        os.link(path, staging)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV, errno.EACCES):
            raise
        with open(path, "rb") as source, open(staging, "wb") as copy:
            shutil.copyfileobj(source, copy)
            copy.flush()
            os.fsync(copy.fileno())
    os.replace(staging, backup)


# ---------------------------------------------------------------------------
# Reading (blocking: run in a thread)


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
    C{bans.ips}, C{bans.peers}), its index there, and what is wrong.
    """

    section: str
    index: int
    problem: str


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
    the application decodes it on the reactor thread (L{apply_content}).
    The points are L{PointInfo} objects in state Disconnected, with no
    reconnection back-off.
    """

    network: str
    saved_at: Optional[float]
    peers: list[PeerInfo]
    points: list[PointInfo]
    banned_ips: list[str]
    banned_peers: list[PeerId]
    skipped: list[RecordProblem] = attrs.field(factory=list)


class _BadRecord(ValueError):
    """
    One record is unusable; the message names the field.
    """


def _kind(value: object) -> str:
    """
    The JSON kind of a decoded value, for messages.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class _Decoder:
    """
    Record decoding, with memos of the values that repeat across records
    (peer ids, addresses and times appear in several places). Each method
    raises L{_BadRecord} with a message naming the field.
    """

    def __init__(self) -> None:
        self.peer_ids: dict[str, PeerId] = {}
        self.addresses: dict[tuple[str, int], Point] = {}
        self.points: dict[str, Point] = {}
        self.times: dict[str, float] = {}
        self.blacklist = IPBlacklist()

    def peer_id(self, value: object, field: str) -> PeerId:
        if type(value) is str:
            known = self.peer_ids.get(value)  # type: ignore[arg-type]
            if known is not None:
                return known
        try:
            peer_id = _parse_peer_id(value)
        except AddressError as e:
            raise _BadRecord(f"{field}: {e}") from None
        self.peer_ids[value] = peer_id  # type: ignore[index]
        return peer_id

    def time(self, value: object, field: str) -> float:
        if type(value) is str:
            known = self.times.get(value)  # type: ignore[arg-type]
            if known is not None:
                return known
        try:
            t = parse_time(value)
        except ValueError as e:
            raise _BadRecord(f"{field}: {e}") from None
        if type(value) is str:
            self.times[value] = t  # type: ignore[index]
        return t

    @staticmethod
    def flag(record: dict[str, Any], field: str) -> bool:
        value = record.get(field, False)
        if value is not True and value is not False:
            raise _BadRecord(f"{field}: expected a boolean, got {_kind(value)}")
        return value  # type: ignore[no-any-return]

    def address(self, value: Any, field: str) -> Optional[Point]:
        """
        A Tezos address object C{{"addr", "port"?}}, or null. Without a
        port there is no point to record: None.
        """
        if value is None:
            return None
        if type(value) is not dict:
            raise _BadRecord(f"{field}: expected an address object, got {_kind(value)}")
        addr, port = value.get("addr"), value.get("port")
        if type(addr) is not str:
            raise _BadRecord(f"{field}: addr: expected a string, got {_kind(addr)}")
        if port is None:
            return None
        if type(port) is not int:
            raise _BadRecord(f"{field}: port: expected an integer, got {_kind(port)}")
        point = self.addresses.get((addr, port))
        if point is None:
            # Tezos writes IPv4 as IPv4-mapped IPv6; the IPv4 text is
            # much cheaper to check.
            ip = addr[7:] if addr.startswith("::ffff:") and "." in addr else addr
            try:
                point = Point(ip, port)
            except AddressError as e:
                raise _BadRecord(f"{field}: {e}") from None
            self.addresses[addr, port] = point
        return point

    def point_text(self, value: object, field: str) -> Point:
        if type(value) is not str:
            raise _BadRecord(f"{field}: expected a string like '1.2.3.4:9732', got {_kind(value)}")
        point = self.points.get(value)  # type: ignore[arg-type]
        if point is None:
            try:
                point = Point.parse(value)  # type: ignore[arg-type]
            except AddressError as e:
                raise _BadRecord(f"{field}: {e}") from None
            self.points[value] = point  # type: ignore[index]
            # The peers name the same points in Tezos's address form.
            self.addresses.setdefault((_addr_text(point.ip), point.port), point)
        return point

    def peer_stamp(self, record: dict[str, Any], field: str) -> Optional[tuple[Optional[Point], float]]:
        value = record.get(field)
        if value is None:
            return None
        if type(value) is not list or len(value) != 2:
            raise _BadRecord(f"{field}: expected [address, time], got {_kind(value)}")
        return (self.address(value[0], field), self.time(value[1], field))

    def point_stamp(self, record: dict[str, Any], field: str) -> Optional[tuple[PeerId, float]]:
        value = record.get(field)
        if value is None:
            return None
        if type(value) is not list or len(value) != 2:
            raise _BadRecord(f"{field}: expected [peer_id, time], got {_kind(value)}")
        return (self.peer_id(value[0], field), self.time(value[1], field))

    def events(self, value: Any) -> Optional[collections.deque[StateEvent]]:
        if value is None:
            return None
        if type(value) is not list:
            raise _BadRecord(f"events: expected an array, got {_kind(value)}")
        if not value:
            return None
        events: collections.deque[StateEvent] = collections.deque(maxlen=EVENT_RING_SIZE)
        first = max(0, len(value) - EVENT_RING_SIZE)
        for i in range(first, len(value)):
            item = value[i]
            try:
                if type(item) is not dict:
                    raise _BadRecord(f"expected an object, got {_kind(item)}")
                kind = item.get("kind")
                if type(kind) is not str:
                    raise _BadRecord(f"kind: expected a string, got {_kind(kind)}")
                point = self.address(item, "address") if "addr" in item else None
                timestamp = self.time(item.get("timestamp"), "timestamp")
            except _BadRecord as e:
                raise _BadRecord(f"events[{i}]: {e}") from None
            events.append(StateEvent(_KIND_FROM_FILE.get(kind, kind), timestamp, None, point))
        return events

    def peer(self, record: Any) -> PeerInfo:
        if type(record) is not dict:
            raise _BadRecord(f"expected an object, got {_kind(record)}")
        if "peer_id" not in record:
            raise _BadRecord("peer_id: missing")
        if "created" not in record:
            raise _BadRecord("created: missing")
        peer_stamp = self.peer_stamp
        return PeerInfo(
            self.peer_id(record["peer_id"], "peer_id"),
            self.time(record["created"], "created"),
            record.get("peer_metadata", NO_METADATA),
            self.flag(record, "trusted"),
            last_failed_connection=peer_stamp(record, "last_failed_connection"),
            last_rejected_connection=peer_stamp(record, "last_rejected_connection"),
            last_established_connection=peer_stamp(record, "last_established_connection"),
            last_disconnection=peer_stamp(record, "last_disconnection"),
            events=self.events(record.get("events")),
        )

    def point(self, record: Any) -> PointInfo:
        if type(record) is not dict:
            raise _BadRecord(f"expected an object, got {_kind(record)}")
        if "point" not in record:
            raise _BadRecord("point: missing")
        expected = record.get("expected_peer_id")
        failed = record.get("last_failed_connection")
        point_stamp = self.point_stamp
        return PointInfo(
            self.point_text(record["point"], "point"),
            self.flag(record, "trusted"),
            None if expected is None else self.peer_id(expected, "expected_peer_id"),
            last_failed_connection=None if failed is None else self.time(failed, "last_failed_connection"),
            last_rejected_connection=point_stamp(record, "last_rejected_connection"),
            last_established_connection=point_stamp(record, "last_established_connection"),
            last_disconnection=point_stamp(record, "last_disconnection"),
            known_public=self.flag(record, "known_public"),
        )

    def banned_ip(self, value: object) -> str:
        if type(value) is not str:
            raise _BadRecord(f"expected an address or CIDR range, got {_kind(value)}")
        try:
            self.blacklist.ban(value)  # type: ignore[arg-type]
        except AddressError as e:
            raise _BadRecord(str(e)) from None
        return value  # type: ignore[return-value]

    def banned_peer(self, value: object) -> PeerId:
        return self.peer_id(value, "peer id")


def _records(items: list[Any], section: str, decode: Callable[[Any], T], skipped: list[RecordProblem]) -> list[T]:
    """
    The decoded C{items}; the bad ones are left out and listed in
    C{skipped} with their index.
    """
    good = []
    for index, item in enumerate(items):
        try:
            good.append(decode(item))
        except _BadRecord as e:
            skipped.append(RecordProblem(section, index, str(e)))
    return good


_SECTIONS = ("peers", "points", "bans.ips", "bans.peers")


def _section(document: dict[str, Any], name: str, container: str = "") -> list[Any]:
    value = document.get(name, [])
    if not isinstance(value, list):
        raise PeersFileError(f"'{container}{name}' must be an array, not {_kind(value)}")
    return value


def decode_document(data: bytes, network: str) -> PeersFileContent:
    """
    Check and decode the bytes of a peers file. Records that are not
    usable are left out and listed in C{skipped}; unknown fields are
    ignored.

    @raise PeersFileError: the file is not JSON (or is truncated), is not
        an object, has no integer C{format} or string C{network}, or has a
        top-level field of the wrong type.
    @raise IncompatibleFile: its C{format} is newer than L{FORMAT}, or its
        C{network} is not C{network}.
    """
    if not data.strip():
        raise PeersFileError("the file is empty")
    try:
        text = data.decode("utf-8")
        document = json.loads(text)
    except UnicodeDecodeError as e:
        raise PeersFileError(f"not UTF-8 text: {e}") from None
    except ValueError as e:
        raise PeersFileError(f"not JSON (truncated or damaged): {e}") from None
    except RecursionError:
        raise PeersFileError("not JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise PeersFileError(f"expected a JSON object, found {_kind(document)}")
    file_format = document.get("format")
    if not isinstance(file_format, int) or isinstance(file_format, bool):
        raise PeersFileError(f"'format' must be an integer, not {_kind(file_format)}")
    if file_format > FORMAT:
        raise IncompatibleFile(
            "format",
            f"format {file_format} is newer than this version of p2pool reads (format {FORMAT})",
        )
    if file_format < 1:
        raise PeersFileError(f"unknown format {file_format}")
    file_network = document.get("network")
    if not isinstance(file_network, str):
        raise PeersFileError(f"'network' must be a string, not {_kind(file_network)}")
    if file_network != network:
        raise IncompatibleFile("network", f"the file is for network {file_network!r}, this node runs {network!r}")
    saved_at = None
    if document.get("saved_at") is not None:
        try:
            saved_at = parse_time(document["saved_at"])
        except ValueError as e:
            raise PeersFileError(f"'saved_at': {e}") from None
    peers = _section(document, "peers")
    points = _section(document, "points")
    bans = document.get("bans", {})
    if not isinstance(bans, dict):
        raise PeersFileError(f"'bans' must be an object, not {_kind(bans)}")
    ips = _section(bans, "ips", "bans.")
    banned_peers = _section(bans, "peers", "bans.")
    decoder = _Decoder()
    skipped: list[RecordProblem] = []
    # Points first: the peers refer to the same addresses, which are then
    # known already.
    decoded_points = _records(points, "points", decoder.point, skipped)
    decoded_peers = _records(peers, "peers", decoder.peer, skipped)
    return PeersFileContent(
        network=file_network,
        saved_at=saved_at,
        peers=decoded_peers,
        points=decoded_points,
        banned_ips=_records(ips, "bans.ips", decoder.banned_ip, skipped),
        banned_peers=_records(banned_peers, "bans.peers", decoder.banned_peer, skipped),
        skipped=sorted(skipped, key=lambda p: (_SECTIONS.index(p.section), p.index)),
    )


@attrs.frozen
class LoadOutcome:
    """
    What L{read_peers_file} found.

    @ivar status: C{"missing"} (no file: an empty start), C{"loaded"},
        C{"recovered"} (the file was damaged, C{.bak} was loaded instead),
        C{"damaged"} (the file and C{.bak} were both unusable: an empty
        start), or C{"refused"} (a newer format or another network: an
        empty start, the file left alone and not overwritten).
    @ivar content: the decoded content, when loaded or recovered.
    @ivar source: the file the content came from.
    @ivar error: what was wrong with the file (and the backup).
    @ivar moved_to: where the damaged file was moved.
    @ivar refused: C{"format"} or C{"network"} for a refused file.
    @ivar fingerprint: C{(inode, size, mtime_ns)} of a refused file, to
        notice when an operator has moved or replaced it.
    @ivar duration: seconds spent reading and decoding.
    """

    status: str
    content: Optional[PeersFileContent] = None
    source: Optional[str] = None
    error: Optional[str] = None
    moved_to: Optional[str] = None
    refused: Optional[str] = None
    fingerprint: Optional[tuple[int, int, int]] = None
    duration: float = 0.0


def file_fingerprint(path: str) -> Optional[tuple[int, int, int]]:
    """
    C{(inode, size, mtime_ns)} of C{path}, or None when it does not exist.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _aside_name(path: str, now: float) -> str:
    stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    candidate = f"{path}{CORRUPT_INFIX}{stamp}"
    n = 1
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{path}{CORRUPT_INFIX}{stamp}-{n}"
    return candidate


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _without_gc(f: Callable[[], T]) -> T:
    """
    Run C{f} with the cyclic garbage collector paused: decoding a large
    file allocates hundreds of thousands of containers, none of them
    garbage, and collections triggered on the way would traverse them all
    again and again.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return f()
    finally:
        if enabled:
            gc.enable()


def read_peers_file(path: str, network: str, now: Optional[float] = None) -> LoadOutcome:
    """
    Read the peers file at C{path} for C{network}. Blocking: meant for a
    thread.

      - No file: status C{missing}.
      - A newer format or another network: status C{refused}; the file is
        left alone.
      - Damaged (unreadable, not JSON, truncated, wrong shape): it is
        renamed C{path.corrupt-<UTC time>}; C{path.bak} is loaded when it is
        usable (status C{recovered}, and it is copied back to C{path} so
        that a crash before the next save does not lose it), else status
        C{damaged}.

    A temporary file left by a crash during a save is removed. Never
    raises for a problem with the files.
    """
    started = time.perf_counter()
    now = time.time() if now is None else now
    _remove_quietly_logged(path + TEMPORARY_SUFFIX)
    _remove_quietly_logged(path + BACKUP_SUFFIX + TEMPORARY_SUFFIX)
    try:
        data = _read(path)
    except (FileNotFoundError, NotADirectoryError):
        return LoadOutcome("missing", duration=time.perf_counter() - started)
    except OSError as e:
        data, read_error = None, f"cannot be read: {e.strerror or e}"
    else:
        read_error = None
    if data is not None:
        try:
            content = _without_gc(lambda: decode_document(data, network))
        except IncompatibleFile as e:
            return LoadOutcome(
                "refused",
                source=path,
                error=str(e),
                refused=e.reason,
                fingerprint=file_fingerprint(path),
                duration=time.perf_counter() - started,
            )
        except PeersFileError as e:
            read_error = str(e)
        else:
            return LoadOutcome("loaded", content, source=path, duration=time.perf_counter() - started)
    moved_to: Optional[str] = _aside_name(path, now)
    try:
        os.replace(path, moved_to)  # type: ignore[arg-type]
        _sync_directory(os.path.dirname(path) or ".")
    except OSError as e:
        read_error = f"{read_error}; it could not be moved aside: {e.strerror or e}"
        moved_to = None
    backup = path + BACKUP_SUFFIX
    try:
        backup_data = _read(backup)
    except FileNotFoundError:
        return LoadOutcome("damaged", source=path, error=read_error, moved_to=moved_to, duration=time.perf_counter() - started)
    except OSError as e:
        error = f"{read_error}; {backup} cannot be read either: {e.strerror or e}"
        return LoadOutcome("damaged", source=path, error=error, moved_to=moved_to, duration=time.perf_counter() - started)
    try:
        content = _without_gc(lambda: decode_document(backup_data, network))
    except (PeersFileError, IncompatibleFile) as e:
        error = f"{read_error}; {backup} is not usable either: {e}"
        return LoadOutcome("damaged", source=path, error=error, moved_to=moved_to, duration=time.perf_counter() - started)
    try:
        write_atomically(path, backup_data, keep_backup=False)
    except OSError as e:
        read_error = f"{read_error}; restoring {backup} as {path} failed: {e.strerror or e}"
    return LoadOutcome(
        "recovered", content, source=backup, error=read_error, moved_to=moved_to, duration=time.perf_counter() - started
    )


def _remove_quietly_logged(path: str) -> None:
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as e:
        _log.warn("cannot remove the leftover {path}: {error}", path=path, error=str(e))


# ---------------------------------------------------------------------------
# Applying a loaded file to a pool (reactor thread)


@attrs.frozen
class Applied:
    """
    What L{apply_content} put into a pool.

    @ivar established: the loaded points that had an established
        connection, most recent first.
    """

    peers: int
    points: int
    banned_ips: int
    banned_peers: int
    problems: list[RecordProblem]
    established: list[Point]


def apply_content(pool: Pool, content: PeersFileContent) -> Applied:
    """
    Put a loaded file's peers (Disconnected, with their times, events,
    trusted flags and metadata decoded by the application), points (with
    their trusted flags, expected peer ids, times and C{known_public}) and
    bans into C{pool}. Peers and points the pool already knows stay as
    they are, and so do its own points; a record repeating an earlier one
    is skipped. A table over its C{max_known_*} limit is then trimmed as
    the pool's GC does.
    """
    problems: list[RecordProblem] = []
    meta = pool._meta
    peers = pool._peers
    points = pool._points
    own_id = pool.identity.peer_id if pool.identity is not None else None
    seen_peers: set[PeerId] = set()
    added_peers = 0
    for index, info in enumerate(content.peers):
        peer_id = info.peer_id
        if peer_id in seen_peers:
            problems.append(RecordProblem("peers", index, f"duplicate peer_id {peer_id}"))
            continue
        seen_peers.add(peer_id)
        if peer_id in peers or peer_id == own_id:
            continue
        encoded = info.metadata
        if encoded is NO_METADATA:
            info.metadata = meta.initial_metadata()
        else:
            try:
                info.metadata = meta.decode_metadata(encoded)
            except Exception as e:
                problems.append(RecordProblem("peers", index, f"peer_metadata: {e}; the initial metadata is used"))
                info.metadata = meta.initial_metadata()
        peers.add(info)
        added_peers += 1
    seen_points: set[Point] = set()
    fresh: list[PointInfo] = []
    own_points = pool._my_points
    for index, point_info in enumerate(content.points):
        point = point_info.point
        if point in seen_points:
            problems.append(RecordProblem("points", index, f"duplicate point {point}"))
            continue
        seen_points.add(point)
        if point not in points and point not in own_points:
            fresh.append(point_info)
    # The table keeps its points ordered by last_seen and appends in O(1)
    # when times come in order: add them oldest first.
    fresh.sort(key=lambda i: (i.last_seen is not None, i.last_seen or 0.0))
    for point_info in fresh:
        points.add(point_info)
    for entry in content.banned_ips:
        pool.acl.ip_blacklist.ban(entry)
    for banned in content.banned_peers:
        pool.acl.peer_blacklist.ban(banned)
    removed_points = points.gc(pool.now()) if points.needs_gc() > 0 else []
    if removed_points:
        pool.events.emit(EventKind.GC_POINTS, removed=len(removed_points))
    removed_peers = peers.gc(lambda i: pool.score(i.metadata)) if peers.needs_gc() > 0 else []
    if removed_peers:
        pool.events.emit(EventKind.GC_PEER_IDS, removed=len(removed_peers))
    connected = [i for i in fresh if i.last_established_connection is not None and i.point in points]
    connected.sort(key=lambda i: i.last_established_connection[1], reverse=True)  # type: ignore[index]
    return Applied(
        peers=added_peers - len(removed_peers),
        points=len(fresh) - len(removed_points),
        banned_ips=len(content.banned_ips),
        banned_peers=len(content.banned_peers),
        problems=problems,
        established=[i.point for i in connected],
    )


# ---------------------------------------------------------------------------
# The pool's peers file


class PeersFile:
    """
    A pool's peers file: loaded once at start, saved at checkpoints, at
    shutdown and by C{save_peers}.

    Saves run one at a time; asking for a save while one runs schedules a
    single follow-up that every such request waits for. A save never
    fails: problems are logged (C{save_error_peers}) and counted.

    Nothing is written before the file has been loaded (a pool stopped
    before it started must not replace a good file with empty tables), nor
    while a refused file (newer format, other network) is in place.

    @ivar path: the file.
    @ivar loaded: the file has been loaded (or found missing or damaged).
    @ivar load_outcome: what loading found.
    @ivar writing_disabled: why saves are skipped (C{"format"},
        C{"network"}), or None.
    @ivar saves: successful saves.
    @ivar failures: failed saves (the C{persistence_failures} metric).
    @ivar last_error: the error of the last failed save.
    @ivar last_save_duration: wall-clock seconds of the last successful
        save, snapshot included.
    @ivar last_save_at: pool time of the last successful save's snapshot.
    @ivar last_save_bytes: size of the last file written.
    @ivar restart_points: the loaded points that had an established
        connection, most recent first.
    """

    def __init__(self, pool: Pool, reactor: Any) -> None:
        self._pool = weak_owner(pool)
        self._reactor = reactor
        self.path = pool.config.peers_path
        self.loaded = False
        self.load_outcome: Optional[LoadOutcome] = None
        self.writing_disabled: Optional[str] = None
        self._refused_fingerprint: Optional[tuple[int, int, int]] = None
        self.saves = 0
        self.failures = 0
        self.last_error: Optional[str] = None
        self.last_save_duration: Optional[float] = None
        self.last_save_at: Optional[float] = None
        self.last_save_bytes: Optional[int] = None
        self.restart_points: list[Point] = []
        self._busy = False
        self._pending: Optional[list[Deferred[None]]] = None

    def _in_thread(self, f: Callable[..., T], *args: Any) -> Deferred[T]:
        """
        Run blocking C{f} in the reactor's thread pool; inline when the
        reactor has none (a memory reactor in tests).
        """
        get_pool = getattr(self._reactor, "getThreadPool", None)
        if get_pool is None:
            return maybeDeferred(f, *args)
        return deferToThreadPool(self._reactor, get_pool(), f, *args)

    # -- loading -------------------------------------------------------------

    def load(self) -> Deferred[LoadOutcome]:
        """
        Read the file in a thread and put its content into the pool.
        Fires with the L{LoadOutcome}; never fails.
        """
        return Deferred.fromCoroutine(self._load())

    async def _load(self) -> LoadOutcome:
        pool = self._pool
        network = pool.config.network
        try:
            if os.path.lexists(self.path):
                outcome = await self._in_thread(read_peers_file, self.path, network)
            else:
                # Nothing to read: no need to wait for a thread (a fresh
                # pool starts within the same reactor turn).
                outcome = read_peers_file(self.path, network)
        except Exception as e:
            outcome = LoadOutcome("damaged", source=self.path, error=f"{type(e).__name__}: {e}")
        self.load_outcome = outcome
        if outcome.status == "refused":
            self.writing_disabled = outcome.refused
            self._refused_fingerprint = outcome.fingerprint
            pool.events.emit(EventKind.LOAD_REFUSED_PEERS, path=self.path, reason=outcome.refused, error=outcome.error)
            _log.error(
                "Peers file {path} not loaded: {error}. The node starts with empty tables and will not "
                "overwrite the file; move it away (or delete it) to let it save its peers again.",
                path=self.path,
                error=outcome.error,
            )
        elif outcome.status in ("recovered", "damaged"):
            pool.events.emit(
                EventKind.LOAD_ERROR_PEERS,
                path=self.path,
                error=outcome.error,
                moved_to=outcome.moved_to,
                used_backup=outcome.status == "recovered",
            )
            _log.error(
                "Peers file {path} is damaged ({error}); moved to {moved_to}; {what}.",
                path=self.path,
                error=outcome.error,
                moved_to=outcome.moved_to,
                what="loaded the previous generation " + str(outcome.source)
                if outcome.status == "recovered"
                else "starting with empty tables",
            )
        if outcome.content is not None:
            self._apply(outcome)
        elif outcome.status != "refused":
            pool.events.emit(
                EventKind.LOAD_PEERS,
                path=self.path,
                status=outcome.status,
                peers=0,
                points=0,
                banned_ips=0,
                banned_peers=0,
                skipped=0,
                duration=outcome.duration,
            )
        self.loaded = True
        return outcome

    def _apply(self, outcome: LoadOutcome) -> None:
        """
        Put a loaded file's content into the pool and report what was
        skipped (the first L{MAX_REPORTED_PROBLEMS} records one by one).
        """
        pool = self._pool
        content = outcome.content
        assert content is not None
        started = time.perf_counter()
        try:
            applied = _without_gc(lambda: apply_content(pool, content))
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            pool.events.emit(EventKind.LOAD_ERROR_PEERS, path=outcome.source, error=error, moved_to=None, used_backup=False)
            _log.failure("Cannot load the peers from {path}", path=outcome.source)
            return
        self.restart_points = applied.established
        problems = [*content.skipped, *applied.problems]
        for problem in problems[:MAX_REPORTED_PROBLEMS]:
            pool.events.emit(
                EventKind.LOAD_RECORD_SKIPPED, path=outcome.source, section=problem.section, index=problem.index, problem=problem.problem
            )
            _log.warn(
                "Peers file {path}: {section}[{index}] skipped: {problem}",
                path=outcome.source,
                section=problem.section,
                index=problem.index,
                problem=problem.problem,
            )
        if len(problems) > MAX_REPORTED_PROBLEMS:
            _log.warn(
                "Peers file {path}: {count} more records skipped",
                path=outcome.source,
                count=len(problems) - MAX_REPORTED_PROBLEMS,
            )
        pool.events.emit(
            EventKind.LOAD_PEERS,
            path=outcome.source,
            status=outcome.status,
            peers=applied.peers,
            points=applied.points,
            banned_ips=applied.banned_ips,
            banned_peers=applied.banned_peers,
            skipped=len(problems),
            duration=outcome.duration + time.perf_counter() - started,
        )

    # -- saving --------------------------------------------------------------

    def save(self) -> Deferred[None]:
        """
        Save the pool's tables. Fires when a save that started after this
        call has ended (written, skipped or failed); never fails.
        """
        d: Deferred[None] = Deferred()
        if self._busy:
            if self._pending is None:
                self._pending = []
            self._pending.append(d)
        else:
            self._run([d])
        return d

    def _run(self, waiters: list[Deferred[None]]) -> None:
        self._busy = True

        def finished(result: object) -> None:
            if isinstance(result, Failure):
                _log.failure("peers file save failed unexpectedly", result)
            # Settle the state before firing the waiters: one of them may
            # ask for another save at once.
            pending, self._pending = self._pending, None
            if pending:
                self._run(pending)
            else:
                self._busy = False
            for waiter in waiters:
                waiter.callback(None)

        Deferred.fromCoroutine(self._save_once()).addBoth(finished)

    def _writable(self) -> bool:
        """
        Whether a save may write now; re-enables writing once a refused
        file has been moved, deleted or replaced.
        """
        pool = self._pool
        if not self.loaded:
            pool.events.emit(EventKind.SAVE_SKIPPED_PEERS, path=self.path, reason="not loaded yet")
            return False
        if self.writing_disabled is None:
            return True
        if file_fingerprint(self.path) == self._refused_fingerprint:
            pool.events.emit(EventKind.SAVE_SKIPPED_PEERS, path=self.path, reason=f"refused file in place ({self.writing_disabled})")
            return False
        _log.info("Peers file {path} was moved or replaced: saving peers again", path=self.path)
        pool.events.emit(EventKind.SAVE_ENABLED_PEERS, path=self.path)
        self.writing_disabled = None
        self._refused_fingerprint = None
        return True

    async def _save_once(self) -> None:
        pool = self._pool
        if not self._writable():
            return
        pool.events.emit(EventKind.SAVE_METADATA, path=self.path)
        started = time.perf_counter()
        try:
            snapshot = await snapshot_pool(pool, self._reactor)
            if snapshot.metadata_errors:
                pool.events.emit(EventKind.SAVE_METADATA_ERRORS, path=self.path, peers=snapshot.metadata_errors)
            peers, points = len(snapshot.peers), len(snapshot.points)
            size = await self._in_thread(write_snapshot, self.path, snapshot)
        except Exception as e:
            self.failures += 1
            self.last_error = f"{type(e).__name__}: {e}"
            pool.events.emit(EventKind.SAVE_ERROR_PEERS, path=self.path, error=self.last_error)
            _log.error("Cannot save the peers file {path}: {error}", path=self.path, error=self.last_error)
            return
        self.saves += 1
        self.last_save_duration = time.perf_counter() - started
        self.last_save_at = snapshot.saved_at
        self.last_save_bytes = size
        pool.events.emit(
            EventKind.SAVE_PEERS,
            path=self.path,
            peers=peers,
            points=points,
            size=size,
            duration=self.last_save_duration,
        )
