# -*- test-case-name: tests.test_persistence -*-
"""
The bytes of a peers file as a L{PeersFileContent}: the whole file is
checked (JSON, shape, format, network), then each record is decoded on its
own; a bad record is left out and reported, never a reason to refuse the
rest. Blocking: meant for a thread.
"""

from __future__ import annotations

import contextlib
import gc
import json
import operator
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import msgspec

from p2pool.core.acl import IPBlacklist, canonical_entry
from p2pool.core.addressing import AddressError, PeerId, Point, built_point, parse_point_once
from p2pool.core.json_kind import json_kind
from p2pool.core.states import EVENT_RING_SIZE, PackedEvent, PeerInfo, PointInfo, loaded_peer_info, loaded_point_info
from p2pool.core.timestamps import parse_time, time_seconds
from p2pool.pool.persistence.document import (
    FORMAT,
    NO_METADATA,
    SECTIONS,
    FileHead,
    IncompatibleFile,
    PeersFileContent,
    PeersFileError,
    RecordProblem,
    kind_from_file,
    tezos_address,
)
from p2pool.pool.persistence.scanner import scan_document
from p2pool.pool.persistence.schema import PeerRecord, PeerStamp, PointRecord, PointStamp, RecordEvent, Skeleton

__all__ = ["MAX_LISTED_PROBLEMS", "collector_paused", "decode_document", "decode_head"]

#: Times remembered while decoding, at most.
_TIME_MEMO_SIZE = 4096

#: The longest C{source_group} text a point record may carry (a network
#: group is at most 43 characters, a bootstrap URL's group longer).
MAX_SOURCE_GROUP_TEXT = 300


class _CollectorPause:
    """
    Pauses of CPython's cyclic garbage collector, by any number of threads
    at once: the first pause finds whether it runs, the last one puts that
    back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pauses = 0
        self._was_enabled = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if not self._pauses:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._pauses += 1
        try:
            yield
        finally:
            with self._lock:
                self._pauses -= 1
                if not self._pauses and self._was_enabled:
                    gc.enable()


#: A context in which CPython's cyclic garbage collector does not run
#: (C{gc.disable}); at its end the collector runs again if it ran when the
#: first of the pauses open at once began, whatever the block raised. The
#: collector is process-wide: every thread's objects wait meanwhile.
#:
#: A decode pauses it while it builds the records: they all outlive the
#: decode and hold no cycles, so the passes it would make over them as they
#: accumulate (a full pass over all of them each time their number grows
#: by a quarter) would find nothing to free. The JSON of each record is
#: freed by reference counting as before.
collector_paused = _CollectorPause()

#: Problems of skipped records listed per section of a file, at most; the
#: others are counted (a damaged file of millions of bad records would
#: otherwise hold one L{RecordProblem} per record).
MAX_LISTED_PROBLEMS = 1000

#: After a decode that left more than this many new objects for the cyclic
#: collector, one full pass is made at once (L{_settle_new_objects}).
SETTLE_ABOVE = 50_000


def _forget_memos(decoder: _Decoder, sections: Mapping[str, _Section]) -> None:
    """
    Empty what the records' decoding remembered, before the collector's
    pass over the new objects (L{_settle_new_objects}): the memos hold a
    reference to every peer id and point, for the pass to follow again.
    """
    decoder.forget_memos()
    for records in sections.values():
        records.forget_keys()


def _settle_new_objects(young_before: int) -> None:
    """
    One full pass of the cyclic collector, if a paused decode left more
    than L{SETTLE_ABOVE} new objects to it: its youngest generation held
    C{young_before} when the decode began (while it is still paused; the
    caller makes none when the collector did not run before the pause).
    What the rest of the process left there does not count: an application
    that allocates much between collections pays no full pass for a small
    file.

    Left in the youngest generation, they would be walked three times once
    the collector runs again: by a young pass, a middle one, and the full
    pass their number then triggers. One full pass now moves them to the
    oldest generation, where they wait for the next full pass like any
    other long-lived object. It holds the GIL (every thread waits) for
    about as long as one of those passes.
    """
    if gc.get_count()[0] - young_before > SETTLE_ABOVE:
        gc.collect()


#: The members of a peer or point record stamping its last connection
#: events, in the order the records' constructors take them.
_LAST_MEMBERS = (
    "last_failed_connection",
    "last_rejected_connection",
    "last_established_connection",
    "last_disconnection",
)


class _BadRecord(ValueError):
    """
    One record is unusable; the message names the field.
    """


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
        self.groups: dict[str, str] = {}
        #: The pool's name of each event kind seen, by the file's name.
        self.kinds: dict[str, str] = {}
        self.blacklist = IPBlacklist()

    def forget_memos(self) -> None:
        """
        Empty the memos of the records' values, once the records are built.
        """
        self.peer_ids.clear()
        self.addresses.clear()
        self.points.clear()
        self.times.clear()

    def peer_id(self, value: object, field: str) -> PeerId:
        peer_id = self.peer_ids.get(value) if type(value) is str else None
        if peer_id is None:
            if type(value) is not str:
                raise _BadRecord(f"{field}: a peer id is a string, not {json_kind(value)}")
            try:
                peer_id = self.peer_ids[value] = PeerId.parse(value)
            except AddressError as e:
                raise _BadRecord(f"{field}: {e}") from None
        return peer_id

    def time(self, value: object, field: str) -> float:
        if type(value) is str:
            known = self.times.get(value)
            if known is not None:
                return known
        try:
            t = parse_time(value)
        except ValueError as e:
            raise _BadRecord(f"{field}: {e}") from None
        if type(value) is str:
            # Times repeat within a record and its neighbours: a memo of
            # them all would only grow.
            if len(self.times) >= _TIME_MEMO_SIZE:
                self.times.clear()
            self.times[value] = t
        return t

    @staticmethod
    def flag(record: dict[str, Any], field: str) -> bool:
        value = record.get(field, False)
        if value is not True and value is not False:
            raise _BadRecord(f"{field}: expected a boolean, got {json_kind(value)}")
        return value

    def address(self, value: Any, field: str) -> Point | None:
        """
        A Tezos address object C{{"addr", "port"?}}, or null. Without a
        port there is no point to record: None.
        """
        if type(value) is dict:
            addr, port = value.get("addr"), value.get("port")
            if type(addr) is str and type(port) is int:
                point = self.addresses.get((addr, port))
                if point is not None:
                    return point
        elif value is None:
            return None
        else:
            raise _BadRecord(f"{field}: expected an address object, got {json_kind(value)}")
        if type(addr) is not str:
            raise _BadRecord(f"{field}: addr: expected a string, got {json_kind(addr)}")
        if port is None:
            return None
        if type(port) is not int:
            raise _BadRecord(f"{field}: port: expected an integer, got {json_kind(port)}")
        return self.new_address(addr, port, field)

    def new_address(self, addr: str, port: int, field: str) -> Point:
        """
        The point at Tezos address C{addr} and C{port}, not yet in the
        memo.
        """
        # Tezos writes IPv4 as IPv4-mapped IPv6; the IPv4 text is much
        # cheaper to check.
        ip = addr[7:] if addr.startswith("::ffff:") and "." in addr else addr
        try:
            point = built_point(ip, port)
        except AddressError as e:
            raise _BadRecord(f"{field}: {e}") from None
        self.addresses[addr, port] = point
        # The points name the same points as text.
        self.points.setdefault(str(point), point)
        return point

    def point_text(self, value: object, field: str) -> Point:
        point = self.points.get(value) if type(value) is str else None
        if point is None:
            if type(value) is not str:
                raise _BadRecord(f"{field}: expected a string like '1.2.3.4:9732', got {json_kind(value)}")
            try:
                point = parse_point_once(value)
            except AddressError as e:
                raise _BadRecord(f"{field}: {e}") from None
            self.points[value] = point
            # The peers name the same points in Tezos's address form.
            self.addresses.setdefault((tezos_address(point.ip), point.port), point)
        return point

    def peer_stamp(self, value: Any, field: str) -> tuple[Point | None, float]:
        if type(value) is not list or len(value) != 2:
            raise _BadRecord(f"{field}: expected [address, time], got {json_kind(value)}")
        return (self.address(value[0], field), self.time(value[1], field))

    def point_stamp(self, value: Any, field: str) -> tuple[PeerId, float]:
        if type(value) is not list or len(value) != 2:
            raise _BadRecord(f"{field}: expected [peer_id, time], got {json_kind(value)}")
        return (self.peer_id(value[0], field), self.time(value[1], field))

    def events(self, value: Any) -> tuple[PackedEvent, ...] | None:
        if type(value) is not list:
            raise _BadRecord(f"events: expected an array, got {json_kind(value)}")
        if not value:
            return None
        events: list[PackedEvent] = []
        address, time, kinds = self.address, self.time, self.kinds
        first = max(0, len(value) - EVENT_RING_SIZE)
        for i in range(first, len(value)):
            item = value[i]
            try:
                if type(item) is not dict:
                    raise _BadRecord(f"expected an object, got {json_kind(item)}")
                kind = item.get("kind")
                if type(kind) is not str:
                    raise _BadRecord(f"kind: expected a string, got {json_kind(kind)}")
                point = address(item, "address") if "addr" in item else None
                timestamp = time(item.get("timestamp"), "timestamp")
            except _BadRecord as e:
                raise _BadRecord(f"events[{i}]: {e}") from None
            name = kinds.get(kind)
            if name is None:
                name = kinds[kind] = kind_from_file(kind)
            if point is None:
                events.append((name, timestamp, None, None))
            else:
                events.append((name, timestamp, point.ip, point.port))
        return tuple(events)

    def peer(self, record: Any) -> PeerInfo:
        if type(record) is not dict:
            raise _BadRecord(f"expected an object, got {json_kind(record)}")
        if "peer_id" not in record:
            raise _BadRecord("peer_id: missing")
        if "created" not in record:
            raise _BadRecord("created: missing")
        get = record.get
        peer_stamp = self.peer_stamp
        # Absent members are the common case: no call for them.
        failed, rejected, established, disconnection = map(get, _LAST_MEMBERS)
        events = get("events")
        # The constructor's checks are the decoder's (loaded_peer_info).
        return loaded_peer_info(
            self.peer_id(record["peer_id"], "peer_id"),
            self.time(record["created"], "created"),
            get("peer_metadata", NO_METADATA),
            self.flag(record, "trusted"),
            None if failed is None else peer_stamp(failed, "last_failed_connection"),
            None if rejected is None else peer_stamp(rejected, "last_rejected_connection"),
            None if established is None else peer_stamp(established, "last_established_connection"),
            None if disconnection is None else peer_stamp(disconnection, "last_disconnection"),
            None if events is None else self.events(events),
        )

    def point(self, record: Any) -> PointInfo:
        if type(record) is not dict:
            raise _BadRecord(f"expected an object, got {json_kind(record)}")
        if "point" not in record:
            raise _BadRecord("point: missing")
        get = record.get
        point_stamp = self.point_stamp
        expected = get("expected_peer_id")
        failed, rejected, established, disconnection = map(get, _LAST_MEMBERS)
        source_group = get("source_group")
        return loaded_point_info(
            self.point_text(record["point"], "point"),
            self.flag(record, "trusted"),
            None if expected is None else self.peer_id(expected, "expected_peer_id"),
            None if failed is None else self.time(failed, "last_failed_connection"),
            None if rejected is None else point_stamp(rejected, "last_rejected_connection"),
            None if established is None else point_stamp(established, "last_established_connection"),
            None if disconnection is None else point_stamp(disconnection, "last_disconnection"),
            self.flag(record, "known_public"),
            None if source_group is None else self.source_group(source_group),
        )

    def source_group(self, value: object) -> str | None:
        """
        A point's optional C{source_group}: a non-empty string of at most
        L{MAX_SOURCE_GROUP_TEXT} characters, or null (absent in files
        written before it existed).
        """
        if value is None:
            return None
        if type(value) is not str or not 0 < len(value) <= MAX_SOURCE_GROUP_TEXT:
            got = f"{len(value)} characters" if type(value) is str else json_kind(value)
            raise _BadRecord(f"source_group: expected a string of 1 to {MAX_SOURCE_GROUP_TEXT} characters, got {got}")
        # The same few groups name many points: one string each.
        return self.groups.setdefault(value, value)

    # -- Records the typed schema read (schema.py) -------------------------
    #
    # The schema has checked every member's JSON type; what it cannot
    # express is checked by the methods above. A record these refuse is
    # read again by the checking methods, which say what is wrong: the
    # messages are theirs alone.

    def typed_peer_stamp(self, value: PeerStamp) -> tuple[Point | None, float]:
        address, time = value
        if address is None or address.port is None:
            return (None, time_seconds(time))
        addr, port = address.addr, address.port
        point = self.addresses.get((addr, port))
        if point is None:
            point = self.new_address(addr, port, "address")
        return (point, time_seconds(time))

    def typed_point_stamp(self, value: PointStamp) -> tuple[PeerId, float]:
        text, time = value
        peer_id = self.peer_ids.get(text)
        return (self.peer_id(text, "peer_id") if peer_id is None else peer_id, time_seconds(time))

    def typed_events(self, record_events: list[RecordEvent]) -> tuple[PackedEvent, ...]:
        events: list[PackedEvent] = []
        kinds, addresses = self.kinds, self.addresses
        for event in record_events[-EVENT_RING_SIZE:]:
            name = kinds.get(event.kind)
            if name is None:
                name = kinds[event.kind] = kind_from_file(event.kind)
            addr, port = event.addr, event.port
            if addr is msgspec.UNSET or port is None:
                events.append((name, time_seconds(event.timestamp), None, None))
                continue
            point = addresses.get((addr, port))
            if point is None:
                point = self.new_address(addr, port, "address")
            events.append((name, time_seconds(event.timestamp), point.ip, point.port))
        return tuple(events)

    # A stamp or the events are often absent: no call for them then.

    def typed_peer(self, record: PeerRecord) -> PeerInfo:
        metadata, events = record.peer_metadata, record.events
        failed, rejected = record.last_failed_connection, record.last_rejected_connection
        established, disconnection = record.last_established_connection, record.last_disconnection
        stamp = self.typed_peer_stamp
        return loaded_peer_info(
            self.peer_id(record.peer_id, "peer_id"),
            time_seconds(record.created),
            NO_METADATA if metadata is msgspec.UNSET else metadata,
            record.trusted,
            None if failed is None else stamp(failed),
            None if rejected is None else stamp(rejected),
            None if established is None else stamp(established),
            None if disconnection is None else stamp(disconnection),
            self.typed_events(events) if events else None,
        )

    def typed_point(self, record: PointRecord) -> PointInfo:
        expected, failed = record.expected_peer_id, record.last_failed_connection
        rejected, established = record.last_rejected_connection, record.last_established_connection
        disconnection = record.last_disconnection
        stamp = self.typed_point_stamp
        return loaded_point_info(
            self.point_text(record.point, "point"),
            record.trusted,
            None if expected is None else self.peer_id(expected, "expected_peer_id"),
            None if failed is None else time_seconds(failed),
            None if rejected is None else stamp(rejected),
            None if established is None else stamp(established),
            None if disconnection is None else stamp(disconnection),
            record.known_public,
            self.source_group(record.source_group),
        )

    def banned_ip(self, value: object) -> str:
        if type(value) is not str:
            raise _BadRecord(f"expected an address or CIDR range, got {json_kind(value)}")
        try:
            self.blacklist.ban(value)
        except AddressError as e:
            raise _BadRecord(str(e)) from None
        return value

    def banned_peer(self, value: object) -> PeerId:
        return self.peer_id(value, "peer id")

    def peer_ban_by_ip(self, record: object) -> tuple[str, PeerId]:
        """
        A peer ban placed by banning an address: C{{"ip", "peer_id"}}.
        """
        if type(record) is not dict:
            raise _BadRecord(f"expected an object, got {json_kind(record)}")
        ip = record.get("ip")
        if type(ip) is not str or "/" in ip:
            raise _BadRecord(f"ip: expected an address, got {ip!r}")
        try:
            addr = canonical_entry(ip)
        except AddressError as e:
            raise _BadRecord(f"ip: {e}") from None
        return addr, self.peer_id(record.get("peer_id"), "peer_id")


class _Section:
    """
    The records of one section as they are decoded: the good ones, the
    problems of the bad ones, and how many were left unbuilt beyond
    C{limit}.
    """

    def __init__(
        self,
        name: str,
        decode: Callable[[Any], Any],
        limit: int | None = None,
        keep: Callable[[Any], bool] = lambda item: False,
        key: tuple[str, Callable[[Any], Any]] | None = None,
        typed: tuple[Callable[[bytes], Any], Callable[[Any], Any]] | None = None,
    ) -> None:
        """
        @param keep: whether a record beyond C{limit} is built anyway.
        @param key: the name and function of what identifies a record: a
            record repeating an earlier one's is skipped as a duplicate.
        @param typed: how a record's JSON text is read into the typed
            schema (whose records have a C{trusted} flag) and built from
            it, for L{take_texts}.
        """
        self.name = name
        self._decode = decode
        self._limit = limit
        self._keep_anyway = keep
        self._key = key
        self._typed = typed
        self.active = True
        self.reset()

    def reset(self) -> None:
        self.records: list[Any] = []
        self.skipped: list[RecordProblem] = []
        #: Problems beyond the first MAX_LISTED_PROBLEMS: counted only.
        self.unlisted = 0
        self.left_out = 0
        self._keys: set[Any] = set()

    def forget_keys(self) -> None:
        """
        Empty the keys that found duplicates, once every record is taken.
        """
        self._keys.clear()

    def take(self, index: int, item: Any) -> None:
        """
        Decode the C{index}th record C{item}, unless the section is
        inactive (the file is refused) or full.
        """
        if not self.active:
            return
        limit = self._limit
        if limit is not None and len(self.records) >= limit and not self._keep_anyway(item):
            self.left_out += 1
            return
        try:
            record = self._decode(item)
        except _BadRecord as e:
            self._skip(index, str(e))
            return
        self._add(index, record)

    def take_texts(self, texts: Iterable[msgspec.Raw]) -> None:
        """
        Decode the records from their JSON C{texts}, in file order, through
        the typed schema; a record the schema or the typed building refuses
        is parsed with C{json} and decoded as L{take} does, which says what
        is wrong with it.
        """
        if not self.active:
            return
        assert self._typed is not None
        parse, build = self._typed
        limit, records, add = self._limit, self.records, self._add
        for index, text in enumerate(texts):
            try:
                typed = parse(text)
                if limit is not None and len(records) >= limit and not typed.trusted:
                    self.left_out += 1
                    continue
                record = build(typed)
            except ValueError:
                # msgspec's errors, _BadRecord and AddressError alike.
                self.take(index, _json_value(text))
                continue
            add(index, record)

    def _skip(self, index: int, problem: str) -> None:
        """
        Note that the C{index}th record is skipped for C{problem}: listed
        up to L{MAX_LISTED_PROBLEMS}, then counted.
        """
        if len(self.skipped) < MAX_LISTED_PROBLEMS:
            self.skipped.append(RecordProblem(self.name, index, problem))
        else:
            self.unlisted += 1

    def _add(self, index: int, record: Any) -> None:
        """
        Keep the decoded C{record}, unless it repeats an earlier one.
        """
        if self._key is not None:
            what, key = self._key
            value = key(record)
            if value in self._keys:
                self._skip(index, f"duplicate {what} {value}")
                return
            self._keys.add(value)
        self.records.append(record)

    def take_all(self, items: list[Any]) -> None:
        for index, item in enumerate(items):
            self.take(index, item)


def _trusted(item: Any) -> bool:
    """
    Whether the JSON record C{item} says it is trusted: such records are
    built beyond a section's limit (the tables never drop them either).
    """
    return type(item) is dict and item.get("trusted") is True


#: What identifies a peer record and a point record.
_peer_key: Callable[[PeerInfo], PeerId] = operator.attrgetter("peer_id")
_point_key: Callable[[PointInfo], Point] = operator.attrgetter("point")


def _decode_bans(document: dict[str, Any], decoder: _Decoder) -> tuple[_Section, _Section, _Section]:
    """
    The C{bans} member of a file's top level, decoded: the address bans,
    the peer bans, the peer bans placed by banning an address.

    @raise PeersFileError: it, or one of its lists, has the wrong type.
    """
    bans = document.get("bans", {})
    if not isinstance(bans, dict):
        raise PeersFileError(f"'bans' must be an object, not {json_kind(bans)}")
    sections = (
        _Section("bans.ips", decoder.banned_ip),
        _Section("bans.peers", decoder.banned_peer),
        _Section("bans.peers_by_ip", decoder.peer_ban_by_ip),
    )
    for section, name in zip(sections, ("ips", "peers", "peers_by_ip")):
        section.take_all(_array(bans.get(name, []), section.name))
    return sections


def decode_head(members: dict[str, Any], network: str) -> FileHead:
    """
    Check and decode the head of a peers file: its top-level members before
    the records (see L{p2pool.pool.persistence.scanner.scan_head}), which
    must hold C{format}, C{network} and C{bans}.

    @raise PeersFileError: they are missing or not shaped as in a peers
        file.
    @raise IncompatibleFile: a newer C{format}, or another C{network}.
    """
    saved_at = _check_header(members, network)
    if "bans" not in members:
        raise PeersFileError("no 'bans' before the records")
    ip_section, peer_section, by_ip_section = _decode_bans(members, _Decoder())
    return FileHead(
        saved_at=saved_at,
        banned_ips=ip_section.records,
        banned_peers=peer_section.records,
        peer_bans_by_ip=by_ip_section.records,
    )


def _array(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise PeersFileError(f"'{name}' must be an array, not {json_kind(value)}")
    return value


def _text(data: bytes) -> str:
    """
    The text of C{data}.

    @raise PeersFileError: C{data} is empty or not UTF-8.
    """
    # Not data.strip(): that copies the whole file.
    if not data or data.isspace():
        raise PeersFileError("the file is empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PeersFileError(f"not UTF-8 text: {e}") from None


def _check_header(document: Any, network: str) -> float | None:
    """
    Check the top level of a peers file: an object with an integer
    C{format} this version reads and the string C{network} of this node.

    @return: its C{saved_at}, if any.
    @raise PeersFileError: not so shaped.
    @raise IncompatibleFile: a newer format, or another network.
    """
    if not isinstance(document, dict):
        raise PeersFileError(f"expected a JSON object, found {json_kind(document)}")
    file_format = document.get("format")
    if not isinstance(file_format, int) or isinstance(file_format, bool):
        raise PeersFileError(f"'format' must be an integer, not {json_kind(file_format)}")
    if file_format > FORMAT:
        raise IncompatibleFile(
            "format",
            f"format {file_format} is newer than this version of p2pool reads (format {FORMAT})",
        )
    if file_format < 1:
        raise PeersFileError(f"unknown format {file_format}")
    file_network = document.get("network")
    if not isinstance(file_network, str):
        raise PeersFileError(f"'network' must be a string, not {json_kind(file_network)}")
    if file_network != network:
        raise IncompatibleFile("network", f"the file is for network {file_network!r}, this node runs {network!r}")
    if document.get("saved_at") is None:
        return None
    try:
        return parse_time(document["saved_at"])
    except ValueError as e:
        raise PeersFileError(f"'saved_at': {e}") from None


#: The typed readers of the whole file and of one record of each section.
_read_skeleton: Callable[[bytes], Skeleton] = msgspec.json.Decoder(Skeleton).decode
_read_peer: Callable[[bytes], PeerRecord] = msgspec.json.Decoder(PeerRecord).decode
_read_point: Callable[[bytes], PointRecord] = msgspec.json.Decoder(PointRecord).decode

#: The top-level members of a file other than its record arrays.
_HEAD_MEMBERS = ("format", "network", "saved_at", "bans")


def _record_sections(decoder: _Decoder, limits: Mapping[str, int]) -> dict[str, _Section]:
    """
    The C{peers} and C{points} sections of a file, empty.
    """
    return {
        "peers": _Section(
            "peers",
            decoder.peer,
            limits.get("peers"),
            _trusted,
            ("peer_id", _peer_key),
            (_read_peer, decoder.typed_peer),
        ),
        "points": _Section(
            "points",
            decoder.point,
            limits.get("points"),
            _trusted,
            ("point", _point_key),
            (_read_point, decoder.typed_point),
        ),
    }


def _content(
    network: str,
    saved_at: float | None,
    sections: dict[str, _Section],
    members: dict[str, Any],
    decoder: _Decoder,
) -> PeersFileContent:
    """
    The content of a file whose records are in C{sections} and whose
    top-level members are C{members}: its bans decoded, the problems of
    every section in file order.
    """
    ip_section, peer_section, by_ip_section = _decode_bans(members, decoder)
    every = [*sections.values(), ip_section, peer_section, by_ip_section]
    skipped = [problem for records in every for problem in records.skipped]
    return PeersFileContent(
        network=network,
        saved_at=saved_at,
        peers=sections["peers"].records,
        points=sections["points"].records,
        banned_ips=ip_section.records,
        banned_peers=peer_section.records,
        peer_bans_by_ip=by_ip_section.records,
        skipped=sorted(skipped, key=lambda p: (SECTIONS.index(p.section), p.index)),
        left_out={name: records.left_out for name, records in sections.items() if records.left_out},
        unlisted=sum(records.unlisted for records in every),
    )


def decode_document(
    data: bytes,
    network: str,
    limits: Mapping[str, int] | None = None,
    typed: bool = True,
) -> PeersFileContent:
    """
    Check and decode the bytes of a peers file. Records that are not
    usable are left out and listed in C{skipped}; unknown fields are
    ignored.

    The records are parsed and decoded one at a time. With C{typed} (the
    default) C{msgspec} reads each into the typed schema of
    L{p2pool.pool.persistence.schema}; a file or record it cannot read is
    read by the checking decoder, which says what is wrong with it. Both
    give the same content: C{typed=False} reads every record with the
    checking decoder alone (see L{p2pool.pool.persistence.scanner}). With
    C{limits} (records by section, C{"peers"} and C{"points"}), a section's
    records beyond its limit are parsed but not built, except trusted
    ones; they are counted in C{left_out}.

    CPython's cyclic garbage collector is paused, for the whole process,
    while the records are built (L{collector_paused}), and one full pass
    follows a large file (L{_settle_new_objects}).

    @raise PeersFileError: the file is not JSON (or is truncated), is not
        an object, has no integer C{format} or string C{network}, or has a
        top-level field of the wrong type.
    @raise IncompatibleFile: its C{format} is newer than L{FORMAT}, or its
        C{network} is not C{network}.
    """
    limits = limits or {}
    if typed:
        content = _decode_typed(data, network, limits)
        if content is not None:
            return content
    return _decode_checked(data, network, limits)


def _json_value(text: msgspec.Raw) -> Any:
    """
    The value of JSON C{text} as C{json.loads} reads it.

    @raise PeersFileError: C{json} cannot read it (msgspec reads integers
        that C{json} refuses to convert, of over 4300 digits): the file is
        refused as the checking decoder refuses it.
    """
    try:
        return json.loads(bytes(text))
    except ValueError as e:
        raise PeersFileError(f"not JSON (truncated or damaged): {e}") from None


def _decode_typed(data: bytes, network: str, limits: Mapping[str, int]) -> PeersFileContent | None:
    """
    L{decode_document} through the typed schema; None when C{msgspec}
    cannot read the top level of the file (not JSON, not an object, a
    record member not an array), for the checking decoder to explain.
    """
    if not data.isascii():
        # msgspec checks the UTF-8 of the values it decodes, not of those
        # it only skips: the whole text is checked here.
        _text(data)
    collecting = gc.isenabled()
    try:
        with collector_paused():
            young_before = gc.get_count()[0]
            try:
                skeleton = _read_skeleton(data)
            except msgspec.DecodeError:
                return None
            members = {
                name: _json_value(raw)
                for name in _HEAD_MEMBERS
                if (raw := getattr(skeleton, name)) is not msgspec.UNSET
            }
            saved_at = _check_header(members, network)
            decoder = _Decoder()
            sections = _record_sections(decoder, limits)
            sections["peers"].take_texts(skeleton.peers)
            sections["points"].take_texts(skeleton.points)
            del skeleton
            _forget_memos(decoder, sections)
            if collecting:
                _settle_new_objects(young_before)
    except RecursionError:
        raise PeersFileError("not JSON: nested too deeply") from None
    return _content(network, saved_at, sections, members, decoder)


def _decode_checked(data: bytes, network: str, limits: Mapping[str, int]) -> PeersFileContent:
    """
    L{decode_document} with every record read by the checking decoder.
    """
    text = _text(data)
    decoder = _Decoder()
    sections = _record_sections(decoder, limits)

    def section(name: str, members: dict[str, Any]) -> Callable[[int, Any], None]:
        records = sections[name]
        records.reset()
        if "format" in members and "network" in members:
            # A file this node refuses is still checked to the end (damage
            # wins over refusal), but its records are not built.
            try:
                _check_header(members, network)
            except (PeersFileError, IncompatibleFile):
                records.active = False
        return records.take

    try:
        collecting = gc.isenabled()
        with collector_paused():
            young_before = gc.get_count()[0]
            scan = scan_document(text, sections, section)
            _forget_memos(decoder, sections)
            if collecting:
                _settle_new_objects(young_before)
    except ValueError as e:
        raise PeersFileError(f"not JSON (truncated or damaged): {e}") from None
    except RecursionError:
        raise PeersFileError("not JSON: nested too deeply") from None
    del text
    if not scan.is_object:
        raise PeersFileError(f"expected a JSON object, found {json_kind(scan.value)}")
    document = scan.members
    saved_at = _check_header(document, network)
    for name in sections:
        if name in document:
            _array(document[name], name)
    return _content(network, saved_at, sections, document, decoder)
